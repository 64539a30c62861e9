"""The harness nodes are real systemd hosts whose own Docker engine runs containers."""

import json

import pytest

testinfra_hosts = ["ansible://cpu_nodes"]


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running")
    assert state.stdout.strip() in ("running", "degraded"), state.stdout


def test_docker_service_running_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_inner_engine_uses_overlay2_not_vfs(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == "/var/lib/docker"


def test_probe_container_runs_inside_node(host):
    state = json.loads(host.check_output("docker inspect --format '{{json .State}}' harness-probe"))
    assert state["Running"] is True
    assert state["Restarting"] is False


@pytest.mark.parametrize("command, expected", [
    ("cat /etc/debian_version", "12."),
    ("cat /proc/1/comm", "docker-init"),
])
def test_commands_run_in_probe_container(host, command, expected):
    out = host.check_output(f"docker exec harness-probe {command}")
    assert out.startswith(expected), out


def test_probe_container_is_isolated_from_node(host):
    node_hostname = host.check_output("hostname")
    probe_hostname = host.check_output("docker exec harness-probe hostname")
    assert probe_hostname != node_hostname
