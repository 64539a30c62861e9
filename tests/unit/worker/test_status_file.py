"""A worker tells the node what it consumes and runs in status.json, written only when that changes."""

import dataclasses
import json
from types import SimpleNamespace

from celery.worker import state

from terafleet_worker import app as worker_app
from terafleet_worker import status_file


def consumer(*queues):
    return SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues]))


def test_status_names_the_queues_it_takes_and_those_it_was_started_with_but_dropped():
    assert status_file.status(["terachem.gpu01.gpu0-1"], ("terachem", "terachem.gpu01.gpu0-1"), 1) == {
        "queues": ["terachem.gpu01.gpu0-1"], "drained": ["terachem"], "active": 1}


def test_the_file_is_written_when_the_state_changes_and_only_then(tmp_path, monkeypatch):
    monkeypatch.setattr(worker_app, "SETTINGS", dataclasses.replace(
        worker_app.SETTINGS, state_dir=tmp_path / "state", queues=("terachem", "terachem.gpu01.gpu0-1")))
    monkeypatch.setattr(state, "active_requests", set())
    step = status_file.StatusFileStep.__new__(status_file.StatusFileStep)
    step.last, step.timer = None, None
    path = tmp_path / "state" / "status.json"

    step.update(consumer("terachem", "terachem.gpu01.gpu0-1"))
    written = json.loads(path.read_text())
    assert written["queues"] == ["terachem", "terachem.gpu01.gpu0-1"] and written["drained"] == []
    assert written["active"] == 0

    path.unlink()
    step.update(consumer("terachem", "terachem.gpu01.gpu0-1"))
    assert not path.exists()  # unchanged: not written again

    monkeypatch.setattr(state, "active_requests", {"request"})
    step.update(consumer("terachem.gpu01.gpu0-1"))
    written = json.loads(path.read_text())
    assert written["drained"] == ["terachem"] and written["active"] == 1
