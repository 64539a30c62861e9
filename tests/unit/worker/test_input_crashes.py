"""The marks a worker leaves for the node's watchdog when an input crashed its server until it failed."""

import json
import os

from terafleet_worker import input_crashes


def test_a_mark_names_the_task_and_how_often_the_input_crashed_this_server(tmp_path):
    input_crashes.mark(tmp_path, "task-1", "terachem-gpu0:11111", 2, "TeraChem died 2 times", now=5000.0)
    path = tmp_path / "input-crashes" / "task-1.json"
    assert json.loads(path.read_text()) == {"task": "task-1", "server": "terachem-gpu0:11111", "crashes": 2,
                                            "time": 5000.0, "message": "TeraChem died 2 times"}
    assert not list(path.parent.glob("*.tmp"))


def test_marks_older_than_a_day_are_removed_when_a_new_one_is_left(tmp_path):
    input_crashes.mark(tmp_path, "old", "s:1", 2, "m", now=1000.0)
    old = tmp_path / "input-crashes" / "old.json"
    os.utime(old, (1000.0, 1000.0))
    input_crashes.mark(tmp_path, "new", "s:1", 2, "m", now=1000.0 + 86401)
    assert sorted(p.name for p in old.parent.iterdir()) == ["new.json"]


def test_a_state_directory_that_cannot_be_written_is_logged_not_raised(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("")
    input_crashes.mark(blocked, "task-1", "s:1", 2, "m")
    assert "cannot leave the input-crash mark of task task-1" in caplog.text
