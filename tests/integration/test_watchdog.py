"""terafleet-watchdog against the real Docker API: restarts what is down or unhealthy, stops crash loops."""

from __future__ import annotations

import json
import socket
import time
import uuid

import pytest

from minicluster import wait_for
from script_loader import load_script

watchdog_module = load_script("terafleet-watchdog")
RUN = uuid.uuid4().hex[:6]


@pytest.fixture()
def containers(docker_client):
    made = []

    def make(name: str, command: list[str], role: str = "frontend", **kwargs):
        container = docker_client.containers.run(
            "terafleet/base:bookworm", command, name=f"wd-{RUN}-{name}", detach=True,
            labels={"org.terafleet.role": role, "org.terafleet.test": f"watchdog-{RUN}"}, **kwargs)
        made.append(container)
        return container

    yield make
    for container in made:
        container.remove(force=True)


def run_watchdog(tmp_path, now=None, max_restarts=3):
    # Only this test's containers: the watchdog acts on everything its selector matches.
    dog = watchdog_module.Watchdog(tmp_path / "state.json", max_restarts, 600, None, now=now,
                                   selector=f"org.terafleet.test=watchdog-{RUN}")
    return dog.run()


def test_exited_container_is_restarted(containers, tmp_path):
    container = containers("exited", ["sh", "-c", "sleep 1; exit 3"])
    wait_for(lambda: container.reload() or container.status == "exited", 20, "the container to exit")
    results = run_watchdog(tmp_path)
    assert results[container.name] == "restarted (exited)"
    container.reload()
    assert container.status == "running"


def test_container_stopped_on_purpose_is_left_stopped(containers, tmp_path):
    # A worker's warm shutdown after a stop exits 0; a crash does not.
    container = containers("stopped", ["sh", "-c", "sleep 1; exit 0"])
    wait_for(lambda: container.reload() or container.status == "exited", 20, "the container to exit")
    assert run_watchdog(tmp_path)[container.name] == "left stopped (exited 0: stopped on purpose)"
    container.reload()
    assert container.status == "exited"


def test_container_stopped_with_docker_stop_is_left_stopped(containers, tmp_path):
    # Docker restarts a crash of an unless-stopped container itself; one that stays exited was stopped.
    container = containers("docker-stop", ["sleep", "infinity"], restart_policy={"Name": "unless-stopped"})
    container.stop(timeout=1)
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] != 0
    assert run_watchdog(tmp_path)[container.name] == "left stopped (docker stop: Docker restarts a crash itself)"
    container.reload()
    assert container.status == "exited"


def test_unhealthy_container_is_restarted(containers, tmp_path):
    container = containers("hung", ["sleep", "infinity"], healthcheck={
        "test": ["CMD", "false"], "interval": 500_000_000, "timeout": 500_000_000, "retries": 1})
    wait_for(lambda: container.reload() or container.attrs["State"]["Health"]["Status"] == "unhealthy", 30,
             "the container to turn unhealthy")
    started = container.attrs["State"]["StartedAt"]
    assert run_watchdog(tmp_path)[container.name] == "restarted (unhealthy)"
    container.reload()
    assert container.attrs["State"]["StartedAt"] != started


def test_watching_restarts_a_container_that_exits_while_it_watches(containers, tmp_path, capsys):
    container = containers("late", ["sh", "-c", "sleep 2; exit 3"])
    watchdog_module.main(["--state-file", str(tmp_path / "state.json"),
                          "--selector", f"org.terafleet.test=watchdog-{RUN}", "--watch", "6", "--every", "1", "--json"])
    passes = [json.loads(line)[container.name] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(passes) >= 5 and passes[0] == "ok"
    assert "restarted (exited)" in passes
    container.reload()
    assert container.status == "running"


def test_docker_events_start_a_pass_without_polling(containers, tmp_path, capsys):
    container = containers("event", ["sh", "-c", "sleep 3; exit 3"])
    started = time.monotonic()
    watchdog_module.main(["--state-file", str(tmp_path / "state.json"),
                          "--selector", f"org.terafleet.test=watchdog-{RUN}",
                          "--watch", "8", "--every", "0", "--probe-every", "0", "--json"])
    assert time.monotonic() - started >= 7.5
    passes = [json.loads(line)[container.name] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    # The first pass at once; then only each exit, and the start its restart makes, start one: no polling.
    restarts = passes.count("restarted (exited)")
    assert passes[0] == "ok" and restarts >= 1 and len(passes) <= 1 + 2 * restarts, passes
    container.reload()
    assert container.status == "running"


def test_a_hung_server_is_found_by_the_probes_and_restarted_and_an_answering_one_is_not(docker_client, tmp_path,
                                                                                        capsys):
    # Docker's own check would not run for an hour: only the watchdog's STATUS probes can find the hang.
    servers = {}
    for name, hang in (("hung", "1"), ("fine", "0")):
        servers[name] = docker_client.containers.run(
            "terafleet/standin:latest", name=f"wd-{RUN}-{name}", detach=True, environment={"STANDIN_HANG": hang},
            labels={"org.terafleet.role": "terachem", "org.terafleet.test": f"watchdog-{RUN}"},
            healthcheck={"test": ["CMD", "true"], "interval": 3600 * 10**9, "timeout": 10**9, "retries": 1,
                         "start_period": 5 * 10**9})
    try:
        for server in servers.values():
            server.reload()
        started = {name: server.attrs["State"]["StartedAt"] for name, server in servers.items()}
        watchdog_module.main(["--state-file", str(tmp_path / "state.json"),
                              "--selector", f"org.terafleet.test=watchdog-{RUN}", "--json", "--watch", "20",
                              "--every", "0", "--probe-every", "1", "--hang-after", "3"])
        passes = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        assert "restarted (not answering)" in [p[servers["hung"].name] for p in passes], passes
        assert {p[servers["fine"].name] for p in passes} == {"ok"}, passes
        for server in servers.values():
            server.reload()
        assert servers["hung"].attrs["State"]["StartedAt"] != started["hung"]
        assert servers["fine"].attrs["State"]["StartedAt"] == started["fine"]
    finally:
        for server in servers.values():
            server.remove(force=True)


def test_an_unhealthy_server_with_a_client_is_left_alone_until_the_client_leaves(docker_client, tmp_path):
    # A TCPB stand-in whose health check fails, as a TeraChem busy with one client's calculation looks.
    server = docker_client.containers.run(
        "terafleet/standin:latest", name=f"wd-{RUN}-server", detach=True,
        labels={"org.terafleet.role": "terachem", "org.terafleet.test": f"watchdog-{RUN}"},
        healthcheck={"test": ["CMD", "false"], "interval": 500_000_000, "timeout": 500_000_000, "retries": 1})
    try:
        wait_for(lambda: server.reload() or server.attrs["State"]["Health"]["Status"] == "unhealthy", 30,
                 "the server to turn unhealthy")
        address = next(iter(server.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        started = server.attrs["State"]["StartedAt"]
        with socket.create_connection((address, 11111), timeout=10):
            time.sleep(0.5)
            assert run_watchdog(tmp_path)[server.name] == (
                "unhealthy but serving 1 client(s), a calculation; left alone")
            server.reload()
            assert server.attrs["State"]["StartedAt"] == started
        wait_for(lambda: watchdog_module.server_clients(server.attrs) == 0, 10, "the client to be gone")
        assert run_watchdog(tmp_path)[server.name] == "restarted (unhealthy)"
        server.reload()
        assert server.attrs["State"]["StartedAt"] != started
    finally:
        server.remove(force=True)


def test_unhealthy_workers_are_restarted_only_while_another_worker_is_healthy(containers, tmp_path):
    # A worker's check is whether it reached the broker: when none on the node did, the broker is away.
    checks = {"test": ["CMD-SHELL", "test -e /tmp/healthy"], "interval": 500_000_000, "timeout": 500_000_000,
              "retries": 1}
    workers = [containers(f"worker{i}", ["sleep", "infinity"], role="worker", healthcheck=checks, init=True)
               for i in range(2)]
    for worker in workers:
        wait_for(lambda w=worker: w.reload() or w.attrs["State"]["Health"]["Status"] == "unhealthy", 30,
                 "the worker to turn unhealthy")
    away = "unhealthy, as is every worker on the node: the broker is away; left alone"
    assert run_watchdog(tmp_path) == {worker.name: away for worker in workers}
    workers[1].exec_run(["touch", "/tmp/healthy"])
    wait_for(lambda: workers[1].reload() or workers[1].attrs["State"]["Health"]["Status"] == "healthy", 30,
             "the other worker to turn healthy")
    assert run_watchdog(tmp_path) == {workers[0].name: "restarted (unhealthy)", workers[1].name: "ok"}


def test_healthy_container_is_left_alone(containers, tmp_path):
    container = containers("fine", ["sleep", "infinity"])
    assert run_watchdog(tmp_path)[container.name] == "ok"


def test_crash_loop_is_stopped_and_reported_and_stays_stopped(containers, tmp_path, capsys):
    container = containers("loop", ["sh", "-c", "exit 1"], restart_policy={"Name": "on-failure"})
    # Docker restarts it on its own; the watchdog counts those restarts too.
    wait_for(lambda: container.reload() or container.attrs["RestartCount"] >= 3, 60, "Docker's restarts")
    now = time.time()
    run_watchdog(tmp_path, now=now)  # first sight: remembers Docker's count
    wait_for(lambda: container.reload() or container.attrs["RestartCount"] >= 7, 90, "more restarts")
    results = run_watchdog(tmp_path, now=now + 1)
    assert results[container.name] == "stopped: crash loop"
    assert "crash loop" in capsys.readouterr().out
    container.reload()
    assert container.status == "exited"
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert run_watchdog(tmp_path, now=now + 2)[container.name] == "left stopped (crash loop)"
    state = json.loads((tmp_path / "state.json").read_text())
    assert state[container.name]["stopped_for_crash_loop"] is True
