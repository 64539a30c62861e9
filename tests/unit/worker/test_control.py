"""terafleet-worker-control reports a drain or resume only once the worker's consumer shows it: Celery
acknowledges add_consumer and cancel_consumer before the change happens on the worker's event loop."""

import pytest

from terafleet_worker import control


def states(*queue_lists):
    answers = iter(queue_lists)
    last = []

    def state():
        nonlocal last
        last = next(answers, last)
        return {"worker": "terachem@node-gpu0", "queues": list(last), "active": 0, "reserved": 0, "scheduled": 0}
    return state


@pytest.mark.parametrize("consume, seen, expected", [
    (True, [["terachem"], ["terachem"], ["only-a", "terachem"]], ["only-a", "terachem"]),
    (False, [["only-a", "terachem"], ["terachem"], []], []),
])
def test_the_state_is_read_again_until_it_shows_the_change(monkeypatch, consume, seen, expected):
    monkeypatch.setattr(control, "state", states(*seen))
    monkeypatch.setattr(control.time, "sleep", lambda seconds: None)
    queues = ["only-a", "terachem"] if not consume else ["only-a"]
    assert control.settled_state(queues, consume)["queues"] == expected


def test_a_change_that_never_shows_is_reported_as_it_is_after_the_timeout(monkeypatch):
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(control, "state", states(["terachem"]))
    monkeypatch.setattr(control.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(control.time, "sleep", lambda seconds: None)
    assert control.settled_state(["only-a"], True)["queues"] == ["terachem"]
