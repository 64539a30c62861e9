"""terafleet-watchdog's own decisions, with Docker replaced: who is busy (read from a real network namespace),
crash-loop bookkeeping, a failing Docker call, the maintenance pause. The real engine: tests/integration."""

import json
import os
import socket
import threading
import time
import urllib.parse

import pytest

from script_loader import load_script

watchdog = load_script("terafleet-watchdog")

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def row(local: str, remote: str, state: str) -> str:
    return f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0        0 1 1\n"


def test_clients_count_established_peers_on_the_server_port_but_not_loopback():
    tcp = HEADER + "".join([
        row("00000000:2B67", "00000000:0000", "0A"),   # listening
        row("0200110A:2B67", "0300110A:C350", "01"),   # 10.17.0.2:11111 <- 10.17.0.3 (a worker)
        row("0100007F:2B67", "0100007F:D431", "01"),   # the health check, from inside the container
        row("0200110A:2B67", "0400110A:C351", "08"),   # a client that left (CLOSE_WAIT)
        row("0200110A:1F90", "0500110A:C352", "01"),   # another port
    ])
    tcp6 = HEADER + row("00000000000000000000000001000000:2B67", "00000000000000000000000001000000:D000", "01") + \
        row("0000000000000000FFFF00000200110A:2B67", "0000000000000000FFFF00000600110A:D001", "01")
    assert watchdog.clients([tcp]) == 1
    assert watchdog.clients([tcp, tcp6]) == 2  # ::1 is loopback; ::ffff:10.17.0.6 is a client


def peer_address() -> str:
    """This machine's own non-loopback address (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            pytest.skip("no non-loopback IPv4 address")
        return probe.getsockname()[0]


def test_a_connected_client_is_seen_in_the_servers_network_namespace():
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        port = server.getsockname()[1]
        me = {"State": {"Pid": os.getpid()}}
        assert watchdog.server_clients(me, port=port) == 0
        with socket.create_connection(("127.0.0.1", port)), server.accept()[0]:
            assert watchdog.server_clients(me, port=port) == 0  # loopback: a health check
        with socket.create_connection((peer_address(), port)):
            # Not accepted yet, as at a hung server: in the listen backlog, not a client being served.
            assert watchdog.server_clients(me, port=port) == 0
            accepted, _ = server.accept()
            with accepted:
                assert watchdog.server_clients(me, port=port) == 1


def test_connections_that_cannot_be_read_are_unknown(tmp_path):
    assert watchdog.server_clients({"State": {"Pid": 0}}) is None
    assert watchdog.server_clients({"State": {"Pid": 4242}}, proc=tmp_path) is None
    (tmp_path / "4242" / "net").mkdir(parents=True)
    (tmp_path / "4242" / "net" / "tcp").write_text(HEADER + "garbage line with fields x y z\n")
    assert watchdog.server_clients({"State": {"Pid": 4242}}, proc=tmp_path) is None


class FakeDocker:
    """Docker as the watchdog reaches it: its API's container list and inspect (recorded as ("ps",) and
    ("inspect", name)), the docker CLI's actions, and failures on demand ("ps", "inspect NAME", "restart
    NAME", ...)."""

    def __init__(self, containers, fail=()):
        self.containers = {c["Name"].lstrip("/"): c for c in containers}
        self.fail = set(fail)
        self.calls = []

    def __call__(self, *args, check=True, timeout=120):
        self.calls.append(args)
        if args[0] in self.fail or (len(args) > 1 and f"{args[0]} {args[-1]}" in self.fail):
            raise watchdog.DockerError(f"docker {' '.join(args)}: no answer within {timeout} s")
        return ""

    def engine(self, path, timeout=120):
        if path.startswith("/containers/json?"):
            call = ("ps",)
        else:
            assert path.startswith("/containers/") and path.endswith("/json"), path
            call = ("inspect", urllib.parse.unquote(path.split("/")[2]))
        self.calls.append(call)
        if " ".join(call) in self.fail:
            raise watchdog.DockerError(f"Docker's API, GET {path}: no answer within {timeout} s")
        if call == ("ps",):
            return [{"Id": c["Id"], "Names": [c["Name"]]} for c in self.containers.values()]
        found = [c for name, c in self.containers.items() if call[1] in (name, c["Id"])]
        if not found:
            raise watchdog.DockerError(f"Docker's API, GET {path}: 404 Not Found: No such container", 404)
        return found[0]

    def install(self, monkeypatch):
        monkeypatch.setattr(watchdog, "docker", self)
        monkeypatch.setattr(watchdog, "engine", self.engine)
        return self


def container(name, role="terachem", status="running", health="healthy", exit_code=0, policy="unless-stopped",
              pid=0, cid=None, restarts=0, error=""):
    return {"Name": f"/{name}", "Id": cid or f"id-{name}", "RestartCount": restarts,
            "State": {"Status": status, "Running": status == "running", "ExitCode": exit_code, "Pid": pid,
                      "Health": {"Status": health}, "Error": error},
            "HostConfig": {"RestartPolicy": {"Name": policy}},
            "Config": {"Labels": {"org.terafleet.role": role}}}


# What Docker records when it cannot start a container (its restart policy then does not retry).
NO_START = "error gathering device information while adding custom device \"/dev/nvidia0\": no such file"


@pytest.fixture()
def dog(tmp_path, monkeypatch):
    def make(containers, fail=(), now=1000.0, proc=None):
        fake = FakeDocker(containers, fail).install(monkeypatch)
        fake.alerts = []
        monkeypatch.setattr(watchdog.checks, "send", lambda source, alert, message, *args, **kwargs:
                            fake.alerts.append((alert, message)))
        made = watchdog.Watchdog(tmp_path / "watchdog.json", 3, 600, None, now=now, proc=proc or tmp_path / "proc")
        return made, fake
    return make


def test_a_busy_unhealthy_server_is_left_alone_and_an_idle_one_restarted(dog, tmp_path):
    for pid, peers in ((11, ["0300110A:C350"]), (12, [])):
        (tmp_path / "proc" / str(pid) / "net").mkdir(parents=True)
        (tmp_path / "proc" / str(pid) / "net" / "tcp").write_text(
            HEADER + row("00000000:2B67", "00000000:0000", "0A")
            + "".join(row("0200110A:2B67", peer, "01") for peer in peers))
    made, fake = dog([container("terachem-gpu0", health="unhealthy", pid=11),
                      container("terachem-gpu1", health="unhealthy", pid=12),
                      container("terachem-gpu2", health="unhealthy", pid=13)])
    results = made.run()
    assert results == {"terachem-gpu0": "unhealthy but serving 1 client(s), a calculation; left alone",
                       "terachem-gpu1": "restarted (unhealthy)",
                       "terachem-gpu2": "unhealthy, but whether a calculation runs on it cannot be read; left alone"}
    assert [c for c in fake.calls if c[0] == "restart"] == [("restart", "--time", "30", "terachem-gpu1")]


def test_an_unhealthy_worker_running_a_calculation_is_left_alone(dog, tmp_path):
    # worker-gpu0 holds a connection to its server's port 11111; worker-remote to 11112, its TCPB_PORT;
    # worker-gpu1 holds only its broker connection (5672) and a closed server connection.
    tables = {21: [row("0300110A:C350", "0200110A:2B67", "01")],
              22: [row("0300110A:C351", "0100000A:1628", "01"), row("0300110A:C352", "0200110A:2B67", "06")],
              23: [row("0300110A:C353", "1500010A:2B68", "01")]}
    for pid, rows in tables.items():
        (tmp_path / "proc" / str(pid) / "net").mkdir(parents=True)
        (tmp_path / "proc" / str(pid) / "net" / "tcp").write_text(HEADER + "".join(rows))
    remote = container("worker-remote", role="worker", health="unhealthy", pid=23)
    remote["Config"]["Env"] = ["TCPB_HOST=10.1.0.21", "TCPB_PORT=11112"]
    made, fake = dog([container("worker-gpu0", role="worker", health="unhealthy", pid=21),
                      container("worker-gpu1", role="worker", health="unhealthy", pid=22), remote,
                      container("worker-gpu2", role="worker", health="unhealthy", pid=24),
                      container("worker-gpu3", role="worker")])
    assert made.run() == {
        "worker-gpu0": "unhealthy but running a calculation on its server; left alone",
        "worker-gpu1": "restarted (unhealthy)",
        "worker-remote": "unhealthy but running a calculation on its server; left alone",
        "worker-gpu2": "unhealthy, but whether it runs a calculation cannot be read; left alone",
        "worker-gpu3": "ok"}
    assert [c for c in fake.calls if c[0] == "restart"] == [("restart", "--time", "30", "worker-gpu1")]


def test_idle_workers_all_unhealthy_mean_the_broker_is_away_and_none_is_restarted(dog, tmp_path):
    for pid in (21, 22):  # each holds only its broker connection
        (tmp_path / "proc" / str(pid) / "net").mkdir(parents=True)
        (tmp_path / "proc" / str(pid) / "net" / "tcp").write_text(HEADER + row("0300110A:C351", "0100000A:1628", "01"))
    workers = [container("worker-gpu0", role="worker", health="unhealthy", pid=21),
               container("worker-gpu1", role="worker", health="unhealthy", pid=22)]
    # An hour of broker outage: many passes, no restart, so no crash loop that would outlast it.
    for minute in range(60):
        made, fake = dog([*workers, container("terachem-gpu0")], now=1000.0 + 60 * minute)
        assert made.run()["worker-gpu0"] == "unhealthy, as is every worker on the node: the broker is away; left alone"
        assert not [c for c in fake.calls if c[0] in ("restart", "stop", "update")]
    # One worker starting is no sign of the broker; one healthy is, and the other is restarted.
    starting = container("worker-gpu1", role="worker", health="starting", pid=22)
    assert dog([workers[0], starting], now=5000.0)[0].run()["worker-gpu0"].endswith("the broker is away; left alone")
    assert dog([workers[0], container("worker-gpu1", role="worker", pid=22)], now=5001.0)[0].run() == {
        "worker-gpu0": "restarted (unhealthy)", "worker-gpu1": "ok"}


def test_one_failing_container_does_not_stop_the_pass_and_the_state_is_saved(dog, tmp_path):
    made, fake = dog([container("worker-gpu0", role="worker", status="exited", exit_code=1, error=NO_START),
                      container("worker-gpu1", role="worker", status="exited", exit_code=1, error=NO_START)],
                     fail={"restart worker-gpu0"})
    results = made.run()
    assert results == {"worker-gpu0": "restart failed (exited)", "worker-gpu1": "restarted (exited)"}
    state = json.loads((tmp_path / "watchdog.json").read_text())
    assert len(state["worker-gpu0"]["restarts"]) == 1  # a failed restart counts toward the crash loop
    assert len(state["worker-gpu1"]["restarts"]) == 1


def test_failed_restarts_end_in_a_crash_loop_stop(dog):
    for number in range(4):
        made, fake = dog([container("worker-gpu0", role="worker", status="exited", exit_code=1, error=NO_START)],
                         fail={"restart worker-gpu0"}, now=1000.0 + number)
        result = made.run()["worker-gpu0"]
    assert result == "stopped: crash loop"
    assert ("update", "--restart=no", "worker-gpu0") in fake.calls


def test_a_docker_that_does_not_answer_is_reported_and_the_state_still_saved(dog, tmp_path):
    made, _ = dog([container("worker-gpu0", role="worker")], fail={"ps"})
    results = made.run()
    assert list(results) == ["*"] and results["*"].startswith("error: Docker's API, GET /containers/json?")
    assert results["*"].endswith("no answer within 120 s")
    assert (tmp_path / "watchdog.json").exists()


def test_a_converge_that_restores_the_restart_policy_or_recreates_ends_the_crash_loop(dog, tmp_path):
    (tmp_path / "watchdog.json").write_text(json.dumps({
        "terachem-gpu0": {"id": "id-terachem-gpu0", "restarts": [999.0] * 3, "docker_restart_count": 0,
                          "stopped_for_crash_loop": True},
        "terachem-gpu1": {"id": "old-id", "restarts": [999.0] * 3, "docker_restart_count": 0,
                          "stopped_for_crash_loop": True},
        "terachem-gpu2": {"id": "id-terachem-gpu2", "restarts": [999.0] * 3, "docker_restart_count": 0,
                          "stopped_for_crash_loop": True}}))
    made, _ = dog([container("terachem-gpu0"),                                 # policy restored
                   container("terachem-gpu1", policy="no"),                    # recreated (new id)
                   container("terachem-gpu2", status="exited", exit_code=137, policy="no")])  # still stopped
    assert made.run() == {"terachem-gpu0": "ok", "terachem-gpu1": "ok", "terachem-gpu2": "left stopped (crash loop)"}
    state = json.loads((tmp_path / "watchdog.json").read_text())
    assert not state["terachem-gpu0"]["stopped_for_crash_loop"] and state["terachem-gpu0"]["restarts"] == []
    assert state["terachem-gpu1"]["id"] == "id-terachem-gpu1"


def test_a_server_stopped_with_docker_stop_stays_stopped_and_one_docker_could_not_start_is_restarted(dog):
    made, fake = dog([container("terachem-gpu0", status="exited", exit_code=143),
                      container("terachem-gpu1", status="exited", exit_code=128, error=NO_START),
                      container("worker-gpu2", role="worker", status="exited", exit_code=1, policy="on-failure")])
    assert made.run() == {"terachem-gpu0": "left stopped (docker stop: Docker restarts a crash itself)",
                          "terachem-gpu1": "restarted (exited)",
                          "worker-gpu2": "restarted (exited)"}  # on-failure: Docker gave up on it
    assert [c[-1] for c in fake.calls if c[0] == "restart"] == ["terachem-gpu1", "worker-gpu2"]


def test_a_container_held_with_restart_policy_no_is_left_alone(dog):
    made, fake = dog([container("terachem-gpu0", status="exited", exit_code=137, policy="no")])
    assert made.run() == {"terachem-gpu0": "left alone (restart policy no: stopped or held on purpose)"}
    assert not [c for c in fake.calls if c[0] == "restart"]


def test_a_maintenance_pause_acts_on_nothing_until_it_ends_or_is_resumed(dog, tmp_path):
    down = [container("worker-gpu0", role="worker", status="exited", exit_code=1, error=NO_START)]
    made, fake = dog(down)
    made.pause(300)
    assert made.run() == {"*": "paused for maintenance for 300 s more"}
    assert fake.calls == []
    later, _ = dog(down, now=1301.0)
    assert later.run() == {"worker-gpu0": "restarted (exited)"}
    made.pause(300)
    made.resume()
    assert dog(down)[0].run() == {"worker-gpu0": "restarted (exited)"}


def test_pause_and_resume_from_the_command_line(tmp_path, capsys):
    state = tmp_path / "watchdog.json"
    assert watchdog.main(["--state-file", str(state), "--pause", "60"]) == 0
    assert (tmp_path / "watchdog.pause").exists()
    assert watchdog.main(["--state-file", str(state), "--resume"]) == 0
    assert not (tmp_path / "watchdog.pause").exists()
    assert "paused for 60 s" in capsys.readouterr().out


def paired_worker(server, pid, state_dir=None):
    made = container(f"worker-{server.split('-', 1)[1]}", role="worker", pid=pid)
    made["Config"]["Labels"]["org.terafleet.server"] = server
    made["Config"]["Env"] = [f"TERAFLEET_STATE_DIR={state_dir}"] if state_dir else []
    return made


def leave_mark(proc, pid, task, crashes, when, state_dir="tmp/terafleet"):
    folder = proc / str(pid) / "root" / state_dir / "input-crashes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{task}.json").write_text(json.dumps({"task": task, "server": "terachem-gpu0:11111",
                                                     "crashes": crashes, "time": when, "message": "died"}))


def test_restarts_an_input_caused_do_not_count_toward_a_crash_loop(dog, tmp_path):
    proc = tmp_path / "proc"
    (proc / "31").mkdir(parents=True)
    pairs = [paired_worker("terachem-gpu0", 31), paired_worker("terachem-gpu1", 32)]
    made, _ = dog([container("terachem-gpu0"), container("terachem-gpu1"), *pairs], now=1000.0)
    made.run()
    # Two inputs crashed terachem-gpu0 twice each: four restarts, over the limit of three.
    leave_mark(proc, 31, "task-a", 2, 1005.0)
    leave_mark(proc, 31, "task-b", 2, 1010.0)
    made, fake = dog([container("terachem-gpu0", restarts=4), container("terachem-gpu1", restarts=4), *pairs],
                     now=1012.0)
    results = made.run()
    assert results["terachem-gpu0"] == "ok"
    assert results["terachem-gpu1"] == "stopped: crash loop", "another server's marks are not its own"
    state = json.loads((tmp_path / "watchdog.json").read_text())
    assert state["terachem-gpu0"]["restarts"] == [] and sorted(state["terachem-gpu0"]["forgiven"]) == [
        "task-a", "task-b"]
    # A mark is taken off once: one more crash counts.
    made, _ = dog([container("terachem-gpu0", restarts=5), *pairs], now=1020.0)
    made.run()
    assert len(json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]["restarts"]) == 1


def test_a_mark_read_before_dockers_restart_is_counted_leaves_a_credit(dog, tmp_path):
    proc = tmp_path / "proc"
    pairs = [paired_worker("terachem-gpu0", 31, state_dir="/var/tmp/tf")]
    dog([container("terachem-gpu0"), *pairs], now=1000.0)[0].run()
    leave_mark(proc, 31, "task-a", 2, 1004.0, state_dir="var/tmp/tf")
    dog([container("terachem-gpu0", restarts=1), *pairs], now=1005.0)[0].run()
    state = json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]
    assert state["restarts"] == [] and state["credits"] == [1004.0]
    dog([container("terachem-gpu0", restarts=2), *pairs], now=1010.0)[0].run()
    state = json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]
    assert state["restarts"] == [] and state["credits"] == []


def test_marks_that_are_old_odd_or_not_files_take_nothing_off(dog, tmp_path):
    proc = tmp_path / "proc"
    pairs = [paired_worker("terachem-gpu0", 31)]
    dog([container("terachem-gpu0"), *pairs], now=1000.0)[0].run()
    leave_mark(proc, 31, "before-this-container", 2, 900.0)
    folder = proc / "31" / "root" / "tmp" / "terafleet" / "input-crashes"
    (folder / "garbage.json").write_text("{not json")
    (folder / "missing.json").write_text(json.dumps({"task": "x", "time": 1001.0}))
    (tmp_path / "elsewhere.json").write_text(json.dumps({"task": "y", "crashes": 2, "time": 1001.0}))
    (folder / "link.json").symlink_to(tmp_path / "elsewhere.json")
    leave_mark(proc, 31, "greedy", 50, 1002.0)
    made, _ = dog([container("terachem-gpu0", restarts=6), *pairs], now=1003.0)
    assert made.run()["terachem-gpu0"] == "stopped: crash loop"
    state = json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]
    assert list(state["forgiven"]) == ["greedy"] and len(state["restarts"]) == 3  # 6 less at most 3


def tcpb_listener(answer: bytes | None):
    """A loopback TCPB listener in a thread: it answers each request's 8-byte header with `answer`, or
    accepts and never answers (None), as a hung TeraChem does."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            if answer is not None:
                connection.recv(8)
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return listener, held


@pytest.mark.parametrize(("answer", "expected"), [
    (b"\0\0\0\0\0\0\0\x02\x08\x00", True),   # STATUS, a 2-byte body
    (b"\0\0\0\x01\0\0\0\0", False),          # another message type
    (b"\0\0", False),                         # closed half-way
    (None, False),                            # accepted, never answered
])
def test_a_status_probe_is_answered_only_by_a_status_message(answer, expected):
    listener, held = tcpb_listener(answer)
    with listener:
        if answer == b"\0\0":
            threading.Timer(0.2, lambda: [c.close() for c in held]).start()
        started = time.monotonic()
        assert watchdog.status_probe("127.0.0.1", listener.getsockname()[1], timeout=1.0) is expected
        assert time.monotonic() - started < 2
    for connection in held:
        connection.close()


def test_a_closed_port_is_not_answering_and_an_unreachable_address_is_unknown(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert watchdog.status_probe("127.0.0.1", port, timeout=1.0) is False

    def unreachable(*args, **kwargs):
        raise OSError(113, "No route to host")

    monkeypatch.setattr(watchdog.socket, "create_connection", unreachable)
    assert watchdog.status_probe("10.9.9.9", timeout=1.0) is None


def probed_server(name, pid, address, started="1970-01-01T00:10:00.123456789Z", start_period=60):
    made = container(name, pid=pid)
    made["State"]["StartedAt"] = started
    made["NetworkSettings"] = {"Networks": {"terafleet": {"IPAddress": address}}}
    made["Config"]["Healthcheck"] = {"StartPeriod": start_period * 10**9, "Timeout": 5 * 10**9}
    return made


def test_a_server_silent_for_hang_after_is_restarted_unless_busy_starting_or_answering(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    for pid in (41, 42, 43, 44):  # each server's listening socket; 44 has a client (a worker's calculation)
        (proc / str(pid) / "net").mkdir(parents=True)
        (proc / str(pid) / "net" / "tcp").write_text(
            HEADER + row("00000000:2B67", "00000000:0000", "0A")
            + (row("0200110A:2B67", "0300110A:C350", "01") if pid == 44 else ""))
    servers = [probed_server("terachem-gpu0", 41, "10.0.0.1"),     # hung
               probed_server("terachem-gpu1", 42, "10.0.0.2"),     # answers
               probed_server("terachem-gpu2", 43, "10.0.0.3", started="1970-01-01T00:16:30Z"),  # starting, silent
               probed_server("terachem-gpu3", 44, "10.0.0.4")]     # busy: never probed
    asked = []

    def probe(address, port, timeout):
        asked.append(address)
        return address not in ("10.0.0.1", "10.0.0.3")

    monkeypatch.setattr(watchdog, "status_probe", probe)
    fake = FakeDocker(servers)
    fake.install(monkeypatch)
    monkeypatch.setattr(watchdog.checks, "send", lambda *args, **kwargs: None)

    def dog_at(now):
        return watchdog.Watchdog(tmp_path / "watchdog.json", 3, 600, None, now=now, proc=proc, hang_after=15)

    first = dog_at(1000.0)
    assert set(first.run().values()) == {"ok"}
    assert dog_at(1000.0).probe(first.containers) == []  # one silence is not a hang
    assert sorted(asked) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # the busy one is not asked
    assert dog_at(1010.0).probe(first.containers) == []
    assert dog_at(1016.0).probe(first.containers) == ["terachem-gpu0"]
    state = json.loads((tmp_path / "watchdog.json").read_text())
    assert state["terachem-gpu0"]["not_answering_since"] == 1000.0
    assert all("not_answering_since" not in state[f"terachem-gpu{i}"] for i in (1, 2, 3))
    results = dog_at(1016.0).run()
    assert results["terachem-gpu0"] == "restarted (not answering)"
    assert {results[f"terachem-gpu{i}"] for i in (1, 2, 3)} == {"ok"}
    assert [c for c in fake.calls if c[0] == "restart"] == [("restart", "--time", "30", "terachem-gpu0")]
    assert "not_answering_since" not in json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]


def test_a_silent_server_that_took_a_client_since_is_left_alone_and_an_answer_clears_it(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "41" / "net").mkdir(parents=True)
    (proc / "41" / "net" / "tcp").write_text(HEADER + row("00000000:2B67", "00000000:0000", "0A"))
    server = probed_server("terachem-gpu0", 41, "10.0.0.1")
    answers = iter([False, False, True])
    monkeypatch.setattr(watchdog, "status_probe", lambda *args: next(answers))
    fake = FakeDocker([server])
    fake.install(monkeypatch)
    monkeypatch.setattr(watchdog.checks, "send", lambda *args, **kwargs: None)

    def dog_at(now, hang_after=15):
        return watchdog.Watchdog(tmp_path / "watchdog.json", 3, 600, None, now=now, proc=proc, hang_after=hang_after)

    listed = dog_at(1000.0)
    listed.run()
    dog_at(1000.0).probe(listed.containers)
    assert dog_at(1020.0).probe(listed.containers) == ["terachem-gpu0"]
    (proc / "41" / "net" / "tcp").write_text(HEADER + row("0200110A:2B67", "0300110A:C350", "01"))
    assert dog_at(1020.0).run()["terachem-gpu0"] == "not answering but serving 1 client(s), a calculation; left alone"
    assert dog_at(1020.0, hang_after=0).run()["terachem-gpu0"] == "ok"  # probes off: Docker's check decides
    (proc / "41" / "net" / "tcp").write_text(HEADER)
    assert dog_at(1030.0).probe(listed.containers) == []
    assert dog_at(1030.0).run()["terachem-gpu0"] == "ok"
    assert not [c for c in fake.calls if c[0] == "restart"]


def test_the_start_period_ends_at_the_first_answer_as_dockers_does(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "41" / "net").mkdir(parents=True)
    (proc / "41" / "net" / "tcp").write_text(HEADER + row("00000000:2B67", "00000000:0000", "0A"))
    # Started at 995 with a 60 s start period: silent at first (still starting), then it answers once.
    server = probed_server("terachem-gpu0", 41, "10.0.0.1", started="1970-01-01T00:16:35Z")
    answers = iter([False, True, False, False])
    monkeypatch.setattr(watchdog, "status_probe", lambda *args: next(answers))
    FakeDocker([server]).install(monkeypatch)
    monkeypatch.setattr(watchdog.checks, "send", lambda *args, **kwargs: None)

    def dog_at(now):
        return watchdog.Watchdog(tmp_path / "watchdog.json", 3, 600, None, now=now, proc=proc, hang_after=15)

    listed = dog_at(1000.0)
    listed.run()
    assert dog_at(1000.0).probe(listed.containers) == []   # silent while starting: not counted
    assert "not_answering_since" not in json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]
    assert dog_at(1005.0).probe(listed.containers) == []   # its first answer ends the start period
    assert dog_at(1010.0).probe(listed.containers) == []   # so this silence, within the period, counts
    assert dog_at(1025.0).probe(listed.containers) == ["terachem-gpu0"]


def sockstat(proc, pid, tcp, tcp6=None):
    (proc / str(pid) / "net" / "sockstat").write_text(
        f"sockets: used 4\nTCP: inuse {tcp} orphan 0 tw 0 alloc 232 mem 0\nUDP: inuse 1 mem 0\n")
    if tcp6 is not None:
        (proc / str(pid) / "net" / "sockstat6").write_text(f"TCP6: inuse {tcp6}\nUDP6: inuse 0\n")


def test_the_socket_count_spares_the_connection_table_only_while_it_equals_the_listeners(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "41" / "net").mkdir(parents=True)
    listening = HEADER + row("00000000:2B67", "00000000:0000", "0A") + row("0B00007F:B5C3", "00000000:0000", "0A")
    (proc / "41" / "net" / "tcp").write_text(listening)
    sockstat(proc, 41, 2, tcp6=0)
    server = probed_server("terachem-gpu0", 41, "10.0.0.1")
    asked = []
    monkeypatch.setattr(watchdog, "status_probe", lambda *args: asked.append(args[0]) or True)
    FakeDocker([server]).install(monkeypatch)
    read = []
    real_net_tables = watchdog.net_tables
    monkeypatch.setattr(watchdog, "net_tables", lambda *args: read.append(1) or real_net_tables(*args))

    def dog():
        return watchdog.Watchdog(tmp_path / "watchdog.json", 3, 600, None, now=1000.0, proc=proc, hang_after=15)

    def probe():
        dog().probe(listed.containers)
        return len(read), len(asked)

    listed = dog()
    listed.run()
    assert watchdog.tcp_sockets(server, proc) == 2
    assert probe() == (1, 1)  # the table is read once: two listeners, no client
    assert probe() == (1, 2)  # two sockets, as many as the listeners: the table is not read
    # A client: one socket more, so the table is read; busy, not probed.
    (proc / "41" / "net" / "tcp").write_text(listening + row("0200110A:2B67", "0300110A:C350", "01"))
    sockstat(proc, 41, 3, tcp6=0)
    assert probe() == (2, 2)
    # A dual-stack listener's IPv4 client is an IPv6 socket: sockstat6 counts it.
    (proc / "41" / "net" / "tcp6").write_text(
        HEADER + row("0000000000000000FFFF00000200110A:2B67", "0000000000000000FFFF00000300110A:C350", "01"))
    (proc / "41" / "net" / "tcp").write_text(listening)
    sockstat(proc, 41, 2, tcp6=1)
    assert probe() == (3, 2)
    # The client gone, its connection in TIME_WAIT (in the table, not a socket the count holds): idle.
    (proc / "41" / "net" / "tcp6").write_text(
        HEADER + row("0000000000000000FFFF00000200110A:2B67", "0000000000000000FFFF00000300110A:C350", "06"))
    sockstat(proc, 41, 2, tcp6=0)
    assert probe() == (3, 3)
    # The server's own health check (loopback, both ends in its namespace): read, not a client, probed.
    (proc / "41" / "net" / "tcp").write_text(listening + row("0100007F:2B67", "0100007F:C350", "01")
                                             + row("0100007F:C350", "0100007F:2B67", "01"))
    sockstat(proc, 41, 4, tcp6=0)
    assert probe() == (4, 4)
    # A listener fewer (the server restarting): read again, and one socket is idle from then on.
    (proc / "41" / "net" / "tcp").write_text(HEADER + row("0B00007F:B5C3", "00000000:0000", "0A"))
    sockstat(proc, 41, 1, tcp6=0)
    assert probe() == (5, 5)
    assert json.loads((tmp_path / "watchdog.json").read_text())["terachem-gpu0"]["listening"] == 1
    assert probe() == (5, 6)
    # Unreadable counts never stand for idle.
    (proc / "41" / "net" / "sockstat").write_text("TCP: inuse many\n")
    assert watchdog.tcp_sockets(server, proc) is None
    assert probe() == (6, 7)


def test_a_socket_count_without_ipv6_is_the_ipv4_count_and_without_sockstat_unknown(tmp_path):
    proc = tmp_path / "proc"
    (proc / "41" / "net").mkdir(parents=True)
    server = probed_server("terachem-gpu0", 41, "10.0.0.1")
    assert watchdog.tcp_sockets(server, proc) is None
    sockstat(proc, 41, 3)
    assert watchdog.tcp_sockets(server, proc) == 3
    assert watchdog.tcp_sockets({"State": {"Pid": 0}}, proc) is None


class FakeEngine:
    """A Unix socket that answers each connection's request with the next of `answers` (bytes, or None:
    read the request and say nothing), recording the requests."""

    def __init__(self, path, answers):
        self.answers = list(answers)
        self.requests = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        for answer in self.answers:
            connection, _ = self.listener.accept()
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            self.requests.append(request.decode())
            if answer is None:
                time.sleep(2)
            else:
                connection.sendall(answer)
            connection.close()

    def close(self):
        self.listener.close()


def http(status, body):
    return f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n\r\n".encode() + json.dumps(body).encode()


def test_containers_are_listed_and_inspected_through_dockers_api_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    server = container("terachem-gpu0", cid="abc")
    # Listed, then inspected; the second was removed in between (404) and is left out.
    engine = FakeEngine(tmp_path / "docker.sock", [
        http("200 OK", [{"Id": "abc"}, {"Id": "gone"}]), http("200 OK", server),
        http("404 Not Found", {"message": "No such container: gone"})])
    try:
        assert watchdog.terafleet_containers("org.terafleet.role") == [server]
    finally:
        engine.close()
    listed = engine.requests[0].split("\r\n")[0]
    assert listed.startswith("GET /containers/json?all=1&filters=") and listed.endswith(" HTTP/1.0")
    assert json.loads(urllib.parse.unquote(listed.split("filters=")[1].split(" ")[0])) == {
        "label": ["org.terafleet.role"]}
    assert [r.split(" ")[1] for r in engine.requests[1:]] == ["/containers/abc/json", "/containers/gone/json"]


def test_an_api_error_a_silent_engine_and_a_missing_socket_are_docker_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    engine = FakeEngine(tmp_path / "docker.sock", [http("500 Internal Server Error", {"message": "disk full"}),
                                                   b"garbage", None])
    try:
        with pytest.raises(watchdog.DockerError, match="500 Internal Server Error: disk full") as error:
            watchdog.engine("/containers/json")
        assert error.value.status == 500
        with pytest.raises(watchdog.DockerError, match="not an HTTP answer"):
            watchdog.engine("/containers/json")
        with pytest.raises(watchdog.DockerError, match="no answer within 0.5 s"):
            watchdog.engine("/containers/json", timeout=0.5)
    finally:
        engine.close()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(watchdog.DockerError, match="nothing.sock|No such file"):
        watchdog.engine("/containers/json")
    monkeypatch.delenv("DOCKER_HOST")
    assert watchdog.docker_socket() == "/var/run/docker.sock"


def test_events_wake_the_watch_and_a_stream_that_ends_leaves_it_polling(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "docker.sock"))
    listener.listen()
    events = watchdog.Events("org.terafleet.role")
    connection, _ = listener.accept()
    try:
        request = connection.recv(4096).decode()
        path = request.split(" ")[1]
        assert json.loads(urllib.parse.unquote(path.split("filters=")[1])) == {
            "type": ["container"], "label": ["org.terafleet.role"], "event": ["die", "start", "oom", "health_status"]}
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n")
        assert events.wait(0.2) is False  # half a head
        connection.sendall(b"\r\n")
        assert events.wait(0.2) is False  # the whole head, no event yet
        connection.sendall(b'{"Type":"container","Action":"die"}\n')
        assert events.wait(5) is True
        assert events.wait(0.2) is False  # all read
        connection.close()
        started = time.monotonic()
        assert events.wait(0.3) is False and events.stream is None  # ended: waits out its time, polling
        assert time.monotonic() - started >= 0.29
    finally:
        events.close()
        listener.close()


def test_an_event_stream_refused_by_docker_is_not_an_event(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    engine = FakeEngine(tmp_path / "docker.sock", [http("400 Bad Request", {"message": "invalid filter"})])
    events = watchdog.Events("org.terafleet.role")
    try:
        assert events.wait(1) is False and events.stream is None
    finally:
        events.close()
        engine.close()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    assert watchdog.Events("org.terafleet.role").stream is None
