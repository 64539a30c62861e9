"""terafleet-firewall: the chain it gives iptables-restore lets each allowed network reach each published port
and drops every other source; no ports, an empty chain."""

import json

from script_loader import load_script

firewall = load_script("terafleet-firewall", role="terachem")


def test_each_port_accepts_the_allowed_networks_and_drops_the_rest():
    text = firewall.restore_input([11111, 11112], ["10.1.0.0/16", "10.2.0.7/32"])
    # Only connections Docker rewrote from a published port: a worker reaching its server on the node's
    # own network is never matched.
    match = "-p tcp -m conntrack --ctstate DNAT --ctorigdstport {} --ctdir ORIGINAL"
    assert text.splitlines() == [
        "*filter", ":TERAFLEET-TCPB - [0:0]",
        f"-A TERAFLEET-TCPB {match.format(11111)} -s 10.1.0.0/16 -j RETURN",
        f"-A TERAFLEET-TCPB {match.format(11111)} -s 10.2.0.7/32 -j RETURN",
        f"-A TERAFLEET-TCPB {match.format(11111)} -j DROP",
        f"-A TERAFLEET-TCPB {match.format(11112)} -s 10.1.0.0/16 -j RETURN",
        f"-A TERAFLEET-TCPB {match.format(11112)} -s 10.2.0.7/32 -j RETURN",
        f"-A TERAFLEET-TCPB {match.format(11112)} -j DROP",
        "COMMIT"]


def test_no_published_port_leaves_the_chain_empty():
    assert firewall.restore_input([], ["10.1.0.0/16"]).splitlines() == ["*filter", ":TERAFLEET-TCPB - [0:0]", "COMMIT"]


def test_main_replaces_the_chain_and_puts_the_jump_first_once(tmp_path, monkeypatch):
    config = tmp_path / "firewall.json"
    config.write_text(json.dumps({"ports": [11111], "sources": ["10.1.0.0/16", "fd00::/8", "10.2.0.7"]}))
    monkeypatch.setattr(firewall, "CONFIG", str(config))
    calls = []

    class Done:
        def __init__(self, returncode):
            self.returncode = returncode

    def run(argv, **kwargs):
        calls.append((argv, kwargs.get("input")))
        return Done(1 if argv[1] == "-C" else 0)

    monkeypatch.setattr(firewall.subprocess, "run", run)
    assert firewall.main() == 0
    (restore, given), _, (check, _), (insert, _) = calls
    assert restore == ["iptables-restore", "--noflush"]
    assert "-s 10.2.0.7/32 -j RETURN" in given and "fd00" not in given  # IPv4 rules only
    assert check == ["iptables", "-C", "DOCKER-USER", "-j", "TERAFLEET-TCPB"]
    assert insert == ["iptables", "-I", "DOCKER-USER", "1", "-j", "TERAFLEET-TCPB"]
