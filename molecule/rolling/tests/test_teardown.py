"""teardown.yml on a node whose watchdog is running: a calculation in progress finishes, every container and
the network go and stay gone, scratch data and volumes stay; with purge they go too. The other nodes are
left alone. Runs after test_rolling.py (pytest takes the files in name order), on the node it left up."""

from __future__ import annotations

import time

import pytest

from conftest import GPU_NODES, SETS
from polling import wait_for
from scenario import control, expected_energy, node, playbook, water

testinfra_hosts = ["ansible://tf-ro-head"]
NODE = GPU_NODES[1]
LABELLED = "docker ps --all --quiet --filter label=org.terafleet.role"
VOLUMES = "docker volume ls --quiet --filter label=org.terafleet.role"
JOBS = "ls -d /lstor/terafleet/scratch/*/server_*/job_* 2>/dev/null | wc -l"
# [/]: the pattern must not match the shell running pgrep, whose command line holds it.
WATCHDOG = "pgrep --full --list-full '[/]usr/local/sbin/terafleet-watchdog'"


def test_teardown_finishes_calculations_and_keeps_data_then_purge_removes_it(compute):
    host, head = node(NODE), node("tf-ro-head")
    head_before = head.check_output(LABELLED).split()
    # A check run names what it would stop, the workers first, and stops nothing.
    containers = sorted(host.check_output(LABELLED).split())
    check = playbook("teardown.yml", "--limit", NODE, "--check")
    assert check.returncode == 0, check.stdout[-4000:]
    names = host.check_output("docker ps --all --filter label=org.terafleet.role --format '{{.Names}}'").split()
    order = sorted(names, key=lambda name: (not name.startswith("worker-"), name))
    # The callback folds a long message over lines.
    assert f"{NODE}: would stop and remove {', '.join(order)}" in " ".join(check.stdout.split()), check.stdout[-4000:]
    assert sorted(host.check_output(LABELLED).split()) == containers

    control(NODE, SETS[0], job_seconds=8)
    held = compute.apply_async(args=[water(1.4)], queue=f"terachem.{NODE}.{SETS[0]}")
    wait_for(lambda: held.state == "STARTED", 60, "the calculation on the node", interval=0.2)
    # Cron starts the watchdog every minute and each run watches for 50 s: teardown has to stop it.
    wait_for(lambda: host.run(WATCHDOG).rc == 0, 70, "a running watchdog")
    volumes = sorted(host.check_output(VOLUMES).split())
    assert volumes

    result = playbook("teardown.yml", "--limit", NODE)
    assert result.returncode == 0, result.stdout[-4000:]
    assert held.get(timeout=30)["energy"] == pytest.approx(expected_energy(water(1.4)), abs=1e-9)
    assert host.check_output(LABELLED) == ""
    time.sleep(10)  # longer than the watchdog's poll: anything it could restart would be back by now
    assert host.check_output(LABELLED) == "", "a container came back after teardown"
    left = host.run(WATCHDOG)
    assert left.rc == 1, left.stdout
    assert host.check_output("docker network ls --quiet --filter name=^terafleet$") == ""
    assert not host.file("/etc/cron.d/terafleet-checks-watchdog").exists
    assert host.file("/etc/cron.d/terafleet-checks-disk").exists
    assert sorted(host.check_output(VOLUMES).split()) == volumes
    assert int(host.check_output(JOBS)) > 0
    assert head.check_output(LABELLED).split() == head_before

    purge = playbook("teardown.yml", "--limit", NODE, "-e", "teardown_purge=true")
    assert purge.returncode == 0, purge.stdout[-4000:]
    assert host.check_output(VOLUMES) == ""
    for path in ("/lstor/terafleet", "/etc/terafleet", "/var/lib/terafleet", "/etc/cron.d/terafleet-checks-disk"):
        assert not host.file(path).exists, path
    assert head.check_output(LABELLED).split() == head_before
