"""Standing by while the paired server is unavailable: which queues stop, when they come back."""

from types import SimpleNamespace

import pytest

from terafleet_worker import server, standby


class Queues:
    """The consumer's queues as Celery's cancel_task_queue and add_task_queue change them."""

    def __init__(self, *names):
        self.names = list(names)
        self.calls = []

    def cancel(self, queue):
        self.calls.append(("cancel", queue))
        self.names.remove(queue)

    def add(self, queue):
        self.calls.append(("add", queue))
        self.names.append(queue)


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    answers = {"up": False}

    def status(host, port, timeout):
        if not answers["up"]:
            raise server.ServerUnavailable(f"{host}:{port} did not answer STATUS: refused")
        return False

    monkeypatch.setattr(server, "status", status)
    settings = SimpleNamespace(state_dir=tmp_path, server="terachem-gpu0:11111", server_host="terachem-gpu0",
                               server_port=11111, status_timeout=1.0)
    queues = Queues("terachem", "terachem.gpu01.gpu0")
    return standby.Standby(settings, lambda: list(queues.names), queues.cancel, queues.add), queues, answers, tmp_path


def settle(watch):
    """Tick, and let the probe thread the tick started finish."""
    watch.tick()
    if watch.probe is not None:
        watch.probe.join(5)


def test_nothing_changes_while_no_task_marked_the_server_unavailable(setup):
    watch, queues, _, _ = setup
    for _ in range(3):
        settle(watch)
    assert queues.calls == [] and watch.probe is None, "no probing of a server nobody found down"


def test_a_marked_server_stops_every_queue_until_it_answers(setup):
    watch, queues, answers, state_dir = setup
    standby.mark(state_dir, "terachem-gpu0:11111: Problem connecting to server")
    settle(watch)
    assert queues.names == [] and watch.paused == ["terachem", "terachem.gpu01.gpu0"]
    settle(watch)
    settle(watch)
    assert queues.names == [], "still down: still standing by"
    answers["up"] = True
    settle(watch)  # the probe hears the answer
    settle(watch)  # the next tick takes the queues up
    assert queues.names == ["terachem", "terachem.gpu01.gpu0"]
    assert not standby.flag(state_dir).exists() and watch.paused is None
    settle(watch)
    assert queues.calls.count(("add", "terachem")) == 1


def test_a_queue_drained_by_hand_while_standing_by_stays_drained(setup):
    watch, queues, answers, state_dir = setup
    standby.mark(state_dir, "down")
    settle(watch)
    watch.forget("terachem")  # terafleet-worker-control drain terachem, during the outage
    answers["up"] = True
    settle(watch)
    settle(watch)
    assert queues.names == ["terachem.gpu01.gpu0"]


def test_a_consumer_that_is_reconnecting_is_left_for_the_next_tick(setup):
    watch, queues, _, state_dir = setup
    watch.consumed = lambda: None
    standby.mark(state_dir, "down")
    settle(watch)
    assert watch.paused is None and queues.calls == []


def test_an_unwritable_state_directory_does_not_fail_the_task(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    standby.mark(blocker / "state", "down")
    assert "cannot mark the server unavailable" in caplog.text
