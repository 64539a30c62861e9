"""Published ports on the converged cluster: on each node's cluster address only, never on every address;
the TeraChem ports reach only the allowed networks (a chain in Docker's DOCKER-USER), the file frontend
answers only them and asks for a password when told to."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request

import pytest

import scenario
from conftest import GPU_NODES, inspect, node, playbook, water
from scenario import expected_energy

testinfra_hosts = ["ansible://tf-cl-head"]
HEAD = "tf-cl-head"


def bindings(host, container: str) -> set[str]:
    ports = inspect(host, container)["HostConfig"]["PortBindings"] or {}
    return {binding["HostIp"] for entries in ports.values() for binding in entries}


def reaches(address: str, port: int) -> bool:
    """Whether this machine (outside the cluster's nodes) opens a TCP connection to address:port."""
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def head_reaches(address: str, port: int) -> bool:
    """Whether the head node opens a TCP connection to address:port."""
    probe = f"import socket; socket.create_connection(('{address}', {port}), timeout=3).close()"
    return node(HEAD).run(f'python3 -c "{probe}"').rc == 0


def get(url: str, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"terafleet:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_no_port_is_published_on_every_address():
    for name in GPU_NODES:
        host = node(name)
        address = scenario.address(name, "cluster")
        for container in ("terachem-gpu0-1", "terachem-gpu2-3", "terafleet-frontend"):
            assert bindings(host, container) == {address}, f"{name}:{container}"
    head = node(HEAD)
    head_address = scenario.address(HEAD, "cluster")
    for container in ("terafleet-rabbitmq", "terafleet-redis"):
        assert bindings(head, container) == {head_address}, container


def test_published_tcpb_ports_reach_only_the_allowed_networks(compute):
    gpu_node = GPU_NODES[1]
    address, head_address = scenario.address(gpu_node, "cluster"), scenario.address(HEAD, "cluster")
    # The default allow-list is the node's own network, which this machine (its gateway) is on too.
    assert reaches(address, 11111) and head_reaches(address, 11112)
    only_head = json.dumps({"terachem_allowed_sources": [f"{head_address}/32"]})
    try:
        result = playbook("site.yml", "--limit", gpu_node, "--tags", "terachem", "-e", only_head)
        assert result.returncode == 0, result.stdout[-3000:]
        chain = node(gpu_node).check_output("iptables -S TERAFLEET-TCPB")
        assert f"-s {head_address}/32" in chain and "-j DROP" in chain, chain
        assert "-j TERAFLEET-TCPB" in node(gpu_node).check_output("iptables -S DOCKER-USER")
        assert not reaches(address, 11111) and not reaches(address, 11112)
        assert head_reaches(address, 11111) and head_reaches(address, 11112)
        # The node's own workers reach their servers on the node's network, untouched by the chain.
        for gpu_set in ("gpu0-1", "gpu2-3"):
            doc = water(1.05)
            value = compute.apply_async(args=[doc], queue=f"terachem.{gpu_node}.{gpu_set}").get(timeout=120)
            assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
        # Rules lost (a reboot empties the kernel's tables): they are applied again before Docker starts, so
        # they are in place when the restart returns.
        node(gpu_node).check_output("iptables -D DOCKER-USER -j TERAFLEET-TCPB && iptables -F TERAFLEET-TCPB")
        assert reaches(address, 11111)
        node(gpu_node).check_output("systemctl restart docker")
        assert "-j TERAFLEET-TCPB" in node(gpu_node).check_output("iptables -S DOCKER-USER")
        assert f"-s {head_address}/32" in node(gpu_node).check_output("iptables -S TERAFLEET-TCPB")
        assert not reaches(address, 11111)
    finally:
        restored = playbook("site.yml", "--limit", gpu_node, "--tags", "terachem")
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert reaches(address, 11111)


def test_the_frontend_answers_only_the_allowed_networks_and_asks_for_a_password_when_told():
    gpu_node = GPU_NODES[0]
    address, head_address = scenario.address(gpu_node, "cluster"), scenario.address(HEAD, "cluster")
    url = f"http://{address}:8080/"
    assert get(url) == 200
    password = "frontend-" + scenario.secrets("cluster")["broker_redis_password"][:6]
    try:
        result = playbook("site.yml", "--limit", gpu_node, "--tags", "frontend",
                          "-e", json.dumps({"frontend_allowed_sources": [f"{head_address}/32"]}))
        assert result.returncode == 0, result.stdout[-3000:]
        assert get(url) == 403
        fetch = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=10).status)"
        assert node(HEAD).check_output(f'python3 -c "{fetch}"') == "200"
        result = playbook("site.yml", "-vvv", "--limit", gpu_node, "--tags", "frontend",
                          "-e", json.dumps({"frontend_basic_auth": True, "frontend_basic_auth_password": password}))
        assert result.returncode == 0, result.stdout[-3000:]
        assert password not in result.stdout + result.stderr
        assert get(url) == 401 and get(url, "wrong") == 401
        assert get(url, password) == 200
        htpasswd = node(gpu_node).file("/etc/terafleet/frontend/htpasswd")
        assert (htpasswd.mode, htpasswd.user, htpasswd.group) == (0o640, "root", "root")
        assert htpasswd.content_string.startswith("terafleet:$6$") and password not in htpasswd.content_string
    finally:
        restored = playbook("site.yml", "--limit", gpu_node, "--tags", "frontend")
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert get(url) == 200
    assert not node(gpu_node).file("/etc/terafleet/frontend/htpasswd").exists


@pytest.mark.parametrize("extra_vars, message", [
    ({"terachem_allowed_sources": ["campus"]}, "terachem_allowed_sources holds 'campus', which is not a network"),
    ({"frontend_publish_address": "everywhere"}, "frontend_publish_address must be an IP address"),
    ({"frontend_basic_auth": True}, "frontend_basic_auth_password is empty"),
])
def test_a_bad_address_allow_list_or_password_is_refused_in_preflight(extra_vars, message):
    result = playbook("site.yml", "--limit", GPU_NODES[0], "-e", json.dumps(extra_vars))
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout[-3000:]
    assert scenario.tasks_outside_preflight(result.stdout) == []
