"""Drained queues stay drained when a worker restarts or is replaced, until they are resumed."""

from types import SimpleNamespace

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from terafleet_worker import control, hold


class FakeRedis:
    """The two set commands hold.py uses, on a dict, failing `failures` times first."""

    def __init__(self, failures: int = 0):
        self.sets: dict[str, set[bytes]] = {}
        self.failures = failures

    def _maybe_fail(self):
        if self.failures:
            self.failures -= 1
            raise RedisConnectionError("Error 111 connecting to backend:6379. Connection refused.")

    def smembers(self, key):
        self._maybe_fail()
        return set(self.sets.get(key, set()))

    def sadd(self, key, *members):
        self._maybe_fail()
        self.sets.setdefault(key, set()).update(m.encode() for m in members)

    def srem(self, key, *members):
        self._maybe_fail()
        self.sets.get(key, set()).difference_update(m.encode() for m in members)


def test_hold_and_release_are_kept_per_worker_name():
    redis = FakeRedis()
    hold.hold(redis, "terachem@gpu01-gpu0", ["terachem", "priority"])
    hold.hold(redis, "terachem@gpu01-gpu1", ["terachem"])
    hold.release(redis, "terachem@gpu01-gpu0", ["priority"])
    assert hold.held(redis, "terachem@gpu01-gpu0") == {"terachem"}
    assert hold.held(redis, "terachem@gpu01-gpu1") == {"terachem"}
    assert hold.held(redis, "terachem@gpu02-gpu0") == set()
    assert set(redis.sets) == {"terafleet:held:terachem@gpu01-gpu0", "terafleet:held:terachem@gpu01-gpu1"}


@pytest.mark.parametrize("failures, clock, expected", [
    (0, [0.0], {"terachem"}),
    (2, [0.0, 1.0, 2.0], {"terachem"}),  # the backend answers within the deadline
    (9, [0.0, 10.0, 31.0], None),  # it does not: unknown
])
def test_the_held_queues_are_asked_until_the_deadline(monkeypatch, failures, clock, expected):
    redis = FakeRedis(failures)
    redis.sets["terafleet:held:w"] = {b"terachem"}
    times = iter(clock)
    monkeypatch.setattr(hold.time, "monotonic", lambda: next(times))
    sleeps = []
    got = hold.read_at_start(lambda: hold.held(redis, "w"), 30.0, (RedisConnectionError,), sleeps.append)
    assert got == expected
    assert len(sleeps) == min(failures, len(clock) - 1)


class Consumer:
    """A Celery consumer before its event loop first consumes: its task consumer and the app's queues."""

    def __init__(self, *names):
        self.deselected, self.cancelled = [], []
        self.task_consumer = SimpleNamespace(queues=[SimpleNamespace(name=n) for n in names],
                                             cancel_by_queue=self.cancelled.append)
        self.app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(deselect=self.deselected.append)))


@pytest.mark.parametrize("held, dropped", [
    ({"terachem"}, ["terachem"]),  # a rolling update's new worker: its own queue only
    ({"terachem", "terachem.gpu01.gpu0"}, ["terachem", "terachem.gpu01.gpu0"]),  # everything drained
    ({"some-other-queue"}, []),  # held but not given to this worker
    (set(), []),
    (None, []),  # the backend did not answer: every queue
])
def test_a_starting_worker_drops_its_held_queues_once(monkeypatch, held, dropped):
    monkeypatch.setattr(hold, "read_at_start", lambda read, deadline, errors: held)
    step = hold.HeldQueuesStep.__new__(hold.HeldQueuesStep)
    step.applied = False
    consumer = Consumer("terachem", "terachem.gpu01.gpu0")
    step.start(consumer)
    assert consumer.deselected == dropped and consumer.cancelled == dropped
    monkeypatch.setattr(hold, "read_at_start", lambda read, deadline, errors: pytest.fail("read again"))
    step.start(Consumer("terachem"))  # the consumer restarting after a broker outage


@pytest.fixture()
def commands(monkeypatch):
    """control.main with the broker and the result backend replaced by records of the calls."""
    calls, redis = [], FakeRedis()
    monkeypatch.setattr(hold, "client", lambda url, tls: redis)
    monkeypatch.setattr(control, "set_consuming", lambda workers, queues, consume: calls.append(
        ("add" if consume else "cancel", list(queues), list(workers))))
    monkeypatch.setattr(control, "settled_states", lambda workers, queues, consume: [{"queues": []}])
    monkeypatch.setattr(control, "SETTINGS", SimpleNamespace(result_backend="redis://backend:6379/0",
                                                             worker_name="terachem@gpu01-gpu0",
                                                             backend_tls=lambda: None))
    return calls, redis


def test_drain_records_the_queues_before_cancelling_and_resume_forgets_them(commands):
    calls, redis = commands
    control.main(["drain", "terachem", "priority"])
    assert hold.held(redis, "terachem@gpu01-gpu0") == {"terachem", "priority"}
    assert calls == [("cancel", ["terachem", "priority"], ["terachem@gpu01-gpu0"])]
    control.main(["resume", "priority"])
    assert hold.held(redis, "terachem@gpu01-gpu0") == {"terachem"}
    assert calls[-1] == ("add", ["priority"], ["terachem@gpu01-gpu0"])


def test_workers_named_with_worker_are_each_recorded_and_addressed_at_once(commands):
    calls, redis = commands
    names = ["--worker", "terachem@gpu01-gpu0", "--worker", "terachem@gpu01-gpu1"]
    control.main(["drain", "terachem", *names])
    assert hold.held(redis, "terachem@gpu01-gpu0") == hold.held(redis, "terachem@gpu01-gpu1") == {"terachem"}
    assert calls == [("cancel", ["terachem"], ["terachem@gpu01-gpu0", "terachem@gpu01-gpu1"])]
    control.main(["resume", "terachem", *names])
    assert hold.held(redis, "terachem@gpu01-gpu0") == hold.held(redis, "terachem@gpu01-gpu1") == set()


def test_a_drain_the_backend_cannot_record_fails_before_cancelling(commands, capsys):
    calls, redis = commands
    redis.failures = 1
    with pytest.raises(SystemExit) as exit_code:
        control.main(["drain", "terachem"])
    assert exit_code.value.code == 69 and calls == []
    assert "cannot record the drain in the result backend: Error 111" in capsys.readouterr().err
