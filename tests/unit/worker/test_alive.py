"""The worker's liveness: a broker round trip in a thread writes `alive`; the shell health check reads its
age and nothing else."""

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from terafleet_worker import alive
from terafleet_worker import settings as settings_module

SCRIPT = Path(__file__).resolve().parents[3] / "worker" / "terafleet-healthcheck"


class Channel:
    def __init__(self, fail=None, block=None):
        self.fail, self.block, self.declared = fail, block, []

    def exchange_declare(self, **kwargs):
        if self.block is not None:
            self.block.wait(5)
        if self.fail:
            raise self.fail
        self.declared.append(kwargs)


class Connection:
    def __init__(self, channel):
        self.default_channel, self.released, self.ensured = channel, False, []

    def ensure_connection(self, **kwargs):
        self.ensured.append(kwargs)

    def release(self):
        self.released = True


def probe(tmp_path, channel, made=None):
    made = [] if made is None else made

    def connect():
        made.append(Connection(channel))
        return made[-1]

    return alive.Probe(connect, tmp_path, timeout=5.0), made


def test_a_broker_that_answers_refreshes_the_file_on_one_kept_connection(tmp_path):
    channel = Channel()
    check, made = probe(tmp_path, channel)
    check.run("worker idle")
    check.run("worker busy with 1 task(s)")
    assert len(made) == 1 and made[0].ensured == [{"max_retries": 1, "timeout": 5.0}] * 2
    assert channel.declared == [{"exchange": "amq.direct", "type": "direct", "passive": True}] * 2
    seconds, state = alive.age(tmp_path)
    assert 0 <= seconds < 5 and state == "worker busy with 1 task(s)"


def test_a_broker_that_does_not_answer_leaves_the_file_as_old_as_it_is(tmp_path):
    alive.write(tmp_path, "worker idle", now=time.time() - 100)
    check, made = probe(tmp_path, Channel(fail=OSError("connection reset")))
    check.run("worker idle")
    assert alive.age(tmp_path)[0] >= 100
    assert made[0].released and check.connection is None, "the next probe connects again"


def test_one_probe_at_a_time(tmp_path):
    block = threading.Event()
    check, made = probe(tmp_path, Channel(block=block))
    check.start("worker idle")
    check.start("worker idle")  # the first still waits for the broker
    block.set()
    check.thread.join(5)
    assert len(made) == 1 and alive.age(tmp_path) is not None


def run_check(tmp_path, **env):
    environment = {"PATH": os.environ["PATH"], "TERAFLEET_STATE_DIR": str(tmp_path), **env}
    return subprocess.run(["sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=10,
                          check=False)


def test_the_health_check_reads_the_files_age(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 1 and "has not reached the broker since it started" in result.stdout
    alive.write(tmp_path, "worker idle; standing by: server terachem-gpu0:11111 unavailable")
    result = run_check(tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "worker idle; standing by: server terachem-gpu0:11111 unavailable"
    alive.write(tmp_path, "worker idle", now=time.time() - 61)
    result = run_check(tmp_path)
    assert result.returncode == 1 and "last reached the broker 6" in result.stdout
    assert run_check(tmp_path, TERAFLEET_ALIVE_MAX_AGE="120").returncode == 0


def test_the_interval_must_leave_room_in_the_maximum_age(monkeypatch):
    monkeypatch.setenv("TERAFLEET_ALIVE_INTERVAL", "40")
    with pytest.raises(SystemExit, match="TERAFLEET_ALIVE_MAX_AGE .60. must be more than twice"):
        settings_module.load()
