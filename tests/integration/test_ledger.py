"""The one-run-per-task ledger against a real Redis: leases, lost runs, first tries, a backend outage."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time

import docker
import pytest
import redis
from test_broker_check import role_config

from terafleet_worker.ledger import Ledger

LABEL = {"org.terafleet.test": "ledger"}


PASSWORD = "ledger-" + secrets.token_hex(4)


@contextlib.contextmanager
def redis_backend(docker_client, directory):
    """A Redis configured as the broker role configures it (the workers' ACL user, whose commands the ledger
    uses), its data in the container; yields the container and a function that connects to it (again after
    a restart, which may publish it on another port)."""
    conf = directory / "redis.conf"
    conf.write_text(role_config("redis.conf.j2", broker_redis_user="terafleet", broker_tls=False,
                                broker_redis_password=PASSWORD).replace("dir /data\n", ""))
    conf.chmod(0o644)
    container = docker_client.containers.run("terafleet/backend:latest", ["redis-server", "/etc/redis-test.conf"],
                                             name=f"tf-it-ledger-{secrets.token_hex(3)}", detach=True, labels=LABEL,
                                             ports={"6379/tcp": ("127.0.0.1", None)},
                                             volumes={str(conf): {"bind": "/etc/redis-test.conf", "mode": "ro"}})

    def connect() -> redis.Redis:
        for _ in range(100):
            container.reload()
            bindings = container.attrs["NetworkSettings"]["Ports"].get("6379/tcp")
            if bindings:
                break
            time.sleep(0.1)
        client = redis.Redis(host="127.0.0.1", port=int(bindings[0]["HostPort"]), socket_timeout=2,
                             socket_connect_timeout=2, username="terafleet", password=PASSWORD)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    return client
            time.sleep(0.1)
        raise AssertionError(f"Redis in {container.name} does not answer")

    try:
        yield container, connect
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


@pytest.fixture(scope="module")
def backend(docker_client, tmp_path_factory):
    with redis_backend(docker_client, tmp_path_factory.mktemp("ledger")) as (container, connect):
        yield container, connect()


def book(client, task_id: str, owner: str, lease: float = 1.0) -> Ledger:
    return Ledger(client, task_id, owner, lease=lease, keep=600,
                  retry_errors=(redis.ConnectionError, redis.TimeoutError))


def test_one_run_holds_the_lease_and_a_retry_finds_it_free(backend):
    _, client = backend
    task = secrets.token_hex(8)
    first = book(client, task, "worker-a:1").claim()
    assert first is not None and first.lost == 0
    assert book(client, task, "worker-b:1").claim() is None, "a second delivery must not run meanwhile"
    time.sleep(2.5)  # longer than the lease: the running one renews it
    assert book(client, task, "worker-b:1").claim() is None
    first.end(hold=0)
    second = book(client, task, "worker-b:1").claim()
    assert second is not None and second.lost == 0, "a run that ended cleanly is not a lost one"
    second.end(hold=0)


def test_a_finished_run_keeps_the_lease_for_its_hold_then_frees_it(backend):
    _, client = backend
    task = secrets.token_hex(8)
    run = book(client, task, "worker-a:1").claim()
    run.end(hold=1.5)
    run.end(hold=0)  # only the first end counts
    assert book(client, task, "worker-b:1").claim() is None
    time.sleep(2.0)
    later = book(client, task, "worker-b:1").claim()
    assert later is not None and later.lost == 0
    later.end(hold=0)


def test_runs_whose_worker_died_are_counted_as_lost(backend):
    _, client = backend
    task = secrets.token_hex(8)
    for expected_lost in (0, 1, 2):
        run = None
        deadline = time.monotonic() + 5
        while run is None and time.monotonic() < deadline:
            run = book(client, task, f"worker-{expected_lost}:1").claim()
            time.sleep(0.1)
        assert run is not None, "the dead run's lease runs out"
        assert run.lost == expected_lost
        run._stop.set()  # the process dies: nobody renews the lease, nobody ends the run


def test_first_try_is_kept_and_counters_count(backend):
    _, client = backend
    task = secrets.token_hex(8)
    assert book(client, task, "a:1").first_try(1000.5) == 1000.5
    assert book(client, task, "b:1").first_try(2000.0) == 1000.5
    assert [book(client, task, "a:1").count("server_crashes", event) for event in ("j1", "j2", "j2")] == [1, 2, 2]


def test_calls_wait_through_a_backend_outage(backend):
    container, client = backend
    task = secrets.token_hex(8)
    container.pause()
    results = []
    worker = threading.Thread(target=lambda: results.append(book(client, task, "a:1").count("server_crashes", "job_7")))
    try:
        worker.start()
        time.sleep(4)
        assert worker.is_alive() and not results, "the count waits for the backend, it does not guess"
    finally:
        container.unpause()
    worker.join(30)
    assert results == [1]


def test_a_lease_lost_in_an_outage_is_taken_back_and_no_copy_runs_meanwhile(backend):
    _, client = backend
    task = secrets.token_hex(8)
    first = book(client, task, "worker-a:1", lease=1.5).claim()
    client.delete(f"terafleet:task:{task}:lease")  # as a Redis restart without the key would leave it
    copy = book(client, task, "worker-b:1", lease=1.5)
    assert copy.claim() is None, "a free lease with a run that never ended: wait a lease period"
    time.sleep(2.0)  # the running one renews within a third of its lease, and takes it back
    assert client.get(f"terafleet:task:{task}:lease").decode().startswith("worker-a:1:")
    assert copy.claim() is None
    first.end(hold=0, outcome="success")
    assert copy.outcome() == "success"
    later = copy.claim()
    assert later is not None and later.lost == 0
    later.end(hold=0)


def test_a_failure_is_recorded_for_later_deliveries(backend):
    _, client = backend
    task = secrets.token_hex(8)
    run = book(client, task, "worker-a:1").claim()
    run.end(hold=0, outcome="CalculationError: TeraChem died 2 times running this input")
    run.end(hold=0, outcome="success")  # only the first end counts
    assert book(client, task, "worker-b:1").outcome() == "CalculationError: TeraChem died 2 times running this input"


def test_the_ledger_and_transactions_survive_a_backend_restart(docker_client, tmp_path):
    """Redis replays its append-only file as the default user and checks that user's rights again at each
    EXEC: with a default user that may run nothing, every transaction and every script of more than one
    write (the ledger's claims) would be dropped at a restart, and a task's second delivery would run again."""
    with redis_backend(docker_client, tmp_path) as (container, connect):
        client = connect()
        task = secrets.token_hex(8)
        run = book(client, task, "worker-a:1", lease=60).claim()
        assert run is not None
        run.end(hold=60)  # the result is being stored: no other delivery may run for a minute
        with client.pipeline(transaction=True) as pipe:
            pipe.set(f"{task}:a", "1").set(f"{task}:b", "2").execute()
        time.sleep(1.5)  # appendfsync everysec
        container.restart(timeout=10)
        client = connect()
        assert client.mget(f"{task}:a", f"{task}:b") == [b"1", b"2"], "the transaction was lost"
        assert book(client, task, "worker-b:1").claim() is None, "the lease held before the restart was lost"
        assert "NOPERM" not in container.logs().decode(errors="replace")
