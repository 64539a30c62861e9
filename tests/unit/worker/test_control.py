"""terafleet-worker-control reports a drain or resume only once the worker's consumer shows it: Celery
acknowledges add_consumer and cancel_consumer before the change happens on the worker's event loop."""

import pytest

from terafleet_worker import control

WORKERS = ["terachem@node-gpu0"]


def states(*queue_lists):
    answers = iter(queue_lists)
    last = []

    def state(workers):
        nonlocal last
        last = next(answers, last)
        return [{"worker": worker, "queues": list(last), "active": 0, "reserved": 0, "scheduled": 0}
                for worker in workers]
    return state


@pytest.mark.parametrize("consume, seen, expected", [
    (True, [["terachem"], ["terachem"], ["only-a", "terachem"]], ["only-a", "terachem"]),
    (False, [["only-a", "terachem"], ["terachem"], []], []),
])
def test_the_state_is_read_again_until_it_shows_the_change(monkeypatch, consume, seen, expected):
    monkeypatch.setattr(control, "states", states(*seen))
    monkeypatch.setattr(control.time, "sleep", lambda seconds: None)
    queues = ["only-a", "terachem"] if not consume else ["only-a"]
    assert control.settled_states(WORKERS, queues, consume)[0]["queues"] == expected


def test_a_change_that_never_shows_is_reported_as_it_is_after_the_timeout(monkeypatch):
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(control, "states", states(["terachem"]))
    monkeypatch.setattr(control.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(control.time, "sleep", lambda seconds: None)
    assert control.settled_states(WORKERS, ["only-a"], True)[0]["queues"] == ["terachem"]


class Inspector:
    """Celery's inspect, answering for the workers in `answering` only."""

    def __init__(self, answering):
        self.answering = answering

    def active_queues(self):
        return {w: [{"name": "terachem"}, {"name": f"terachem.{w}"}] for w in self.answering}

    def active(self):
        return {w: [{"id": "t1"}] if w.endswith("gpu0") else [] for w in self.answering}

    def reserved(self):
        return {w: [] for w in self.answering}

    def scheduled(self):
        return {w: [{"eta": "later"}] for w in self.answering}


def test_the_states_of_several_workers_come_from_one_inspection_each(monkeypatch):
    asked = []
    workers = ["terachem@node-gpu0", "terachem@node-gpu1"]
    monkeypatch.setattr(control.app.control, "inspect",
                        lambda destination, timeout: asked.append(destination) or Inspector(destination))
    assert control.states(workers) == [
        {"worker": "terachem@node-gpu0", "queues": ["terachem", "terachem.terachem@node-gpu0"], "active": 1,
         "reserved": 0, "scheduled": 1},
        {"worker": "terachem@node-gpu1", "queues": ["terachem", "terachem.terachem@node-gpu1"], "active": 0,
         "reserved": 0, "scheduled": 1}]
    assert asked == [workers]


def test_a_worker_that_does_not_answer_is_named(monkeypatch):
    monkeypatch.setattr(control.app.control, "inspect", lambda destination, timeout: Inspector(destination[:1]))
    with pytest.raises(control.NoReply, match="worker terachem@node-gpu1 did not answer through the broker"):
        control.states(["terachem@node-gpu0", "terachem@node-gpu1"])
    replies = [{"terachem@node-gpu0": {"ok": "added"}}]
    monkeypatch.setattr(control.app.control, "add_consumer", lambda queue, **kwargs: replies)
    with pytest.raises(control.NoReply, match="worker terachem@node-gpu1 did not"):
        control.set_consuming(["terachem@node-gpu0", "terachem@node-gpu1"], ["terachem"], True)
    control.set_consuming(["terachem@node-gpu0"], ["terachem"], True)


class NotFound(Exception):
    """What the broker answers a passive declare of a queue it does not have (it closes the channel)."""


class FakeConnection:
    connection_errors = (ConnectionError,)
    channel_errors = (NotFound,)

    def __init__(self, queues):
        self.queues, self.channels = queues, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def channel(self):
        self.channels += 1
        connection = self

        class Channel:
            def queue_declare(self, queue, passive):
                assert passive, "a state query must not create a queue"
                if queue not in connection.queues:
                    raise NotFound(queue)
                return (queue, *connection.queues[queue])
        return Channel()


def test_queue_depths_ask_the_broker_passively_and_survive_a_missing_queue(monkeypatch):
    connection = FakeConnection({"terachem": (3, 0), "terachem.gpu01.gpu0-1": (1, 1)})
    monkeypatch.setattr(control.app, "connection_for_read", lambda: connection)
    assert control.queue_depths(["terachem", "gone", "terachem.gpu01.gpu0-1"]) == {
        "terachem": {"ready": 3, "consumers": 0}, "gone": None,
        "terachem.gpu01.gpu0-1": {"ready": 1, "consumers": 1}}
    assert connection.channels == 2  # a new channel after the one the refusal closed
