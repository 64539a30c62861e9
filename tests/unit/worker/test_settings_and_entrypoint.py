"""Settings come from the environment in one place; the entry point execs Celery with them."""

import pytest

from terafleet_worker import entrypoint
from terafleet_worker import settings as settings_module
from terafleet_worker.entrypoint import celery_argv
from terafleet_worker.server import calculation_error


def test_defaults(monkeypatch):
    for name in ("TERAFLEET_CONCURRENCY", "TERAFLEET_QUEUES", "TCPB_HOST", "TCPB_PORT", "TERAFLEET_GPU_SET"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_module.load()
    assert settings.concurrency == 1
    assert settings.queues == ("terachem",)
    assert settings.server == "127.0.0.1:11111"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TERAFLEET_QUEUES", "terachem, priority")
    monkeypatch.setenv("TCPB_HOST", "terachem-gpu0-1")
    monkeypatch.setenv("TCPB_PORT", "11112")
    monkeypatch.setenv("TERAFLEET_NODE", "gpu01")
    monkeypatch.setenv("TERAFLEET_GPU_SET", "gpu0-1")
    settings = settings_module.load()
    assert settings.queues == ("terachem", "priority")
    assert settings.worker_name == "terachem@gpu01-gpu0-1"
    argv = celery_argv(settings, ["--max-tasks-per-child", "100"])
    assert argv[:4] == ["celery", "--app", "terafleet_worker.app", "worker"]
    assert argv[argv.index("--hostname") + 1] == "terachem@gpu01-gpu0-1"
    assert argv[argv.index("--queues") + 1] == "terachem,priority"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"
    assert argv[argv.index("--heartbeat-interval") + 1] == "30"
    assert argv[-2:] == ["--max-tasks-per-child", "100"]


@pytest.mark.parametrize("name, value, message", [
    ("TERAFLEET_CONCURRENCY", "two", "TERAFLEET_CONCURRENCY must be a whole number, got 'two'"),
    ("TERAFLEET_CONCURRENCY", "0", "TERAFLEET_CONCURRENCY must be at least 1, got 0"),
    ("TERAFLEET_QUEUES", " , ", "TERAFLEET_QUEUES names no queue"),
    ("TERAFLEET_RETRY_BACKOFF", "fast", "TERAFLEET_RETRY_BACKOFF must be a number"),
    ("TERAFLEET_UNAVAILABLE_TIMEOUT", "0", "TERAFLEET_UNAVAILABLE_TIMEOUT must be above 0, got 0.0"),
    ("TERAFLEET_MAX_LOST_RUNS", "-1", "TERAFLEET_MAX_LOST_RUNS must be above 0, got -1"),
    ("TERAFLEET_MAX_ATOMS", "many", "TERAFLEET_MAX_ATOMS must be a whole number"),
])
def test_bad_settings_stop_with_a_clear_message(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=message):
        settings_module.load()


def test_urls_with_passwords_come_from_their_files(monkeypatch, tmp_path):
    (tmp_path / "broker_url").write_text("amqp://terafleet:s3cret@head:5672/terafleet\n")
    (tmp_path / "result_backend").write_text("redis://:r3dis@head:6379/0\n")
    monkeypatch.setenv("TERAFLEET_BROKER_URL", "amqp://ignored//")
    monkeypatch.setenv("TERAFLEET_BROKER_URL_FILE", str(tmp_path / "broker_url"))
    monkeypatch.setenv("TERAFLEET_RESULT_BACKEND_FILE", str(tmp_path / "result_backend"))
    settings = settings_module.load()
    assert settings.broker_url == "amqp://terafleet:s3cret@head:5672/terafleet"
    assert settings.result_backend == "redis://:r3dis@head:6379/0"


@pytest.mark.parametrize("content, message", [(None, "cannot read .*broker_url: No such file"),
                                              ("\n", ".*broker_url is empty")])
def test_a_missing_or_empty_url_file_stops_with_its_name(monkeypatch, tmp_path, content, message):
    if content is not None:
        (tmp_path / "broker_url").write_text(content)
    monkeypatch.setenv("TERAFLEET_BROKER_URL_FILE", str(tmp_path / "broker_url"))
    with pytest.raises(SystemExit, match=f"TERAFLEET_BROKER_URL_FILE: {message}"):
        settings_module.load()


def test_calculation_error_reads_tc_out(tmp_path):
    job = tmp_path / "server_2026-01-01-00.00.00" / "job_3"
    job.mkdir(parents=True)
    (job / "tc.out").write_text("TeraChem\nMethod: HF\nERROR: basis set xyz not found\nJob terminated\n")
    assert calculation_error(tmp_path, "server_2026-01-01-00.00.00/job_3") == "ERROR: basis set xyz not found"


@pytest.mark.parametrize("content", [None, "TeraChem\nJob finished\n"])
def test_no_calculation_error_without_an_error_line(tmp_path, content):
    if content is not None:
        (tmp_path / "job_1").mkdir()
        (tmp_path / "job_1" / "tc.out").write_text(content)
    assert calculation_error(tmp_path, "job_1") is None
    assert calculation_error(tmp_path, None) is None


def test_flower_gets_its_credentials_through_its_environment_never_its_arguments(tmp_path):
    auth = tmp_path / "auth"
    auth.write_text("terafleet:s3cret\n")
    argv, environment = entrypoint.flower({"TERAFLEET_FLOWER_AUTH_FILE": str(auth), "TERAFLEET_FLOWER_PORT": "5556",
                                           "PATH": "/usr/bin"})
    assert argv[:4] == ["celery", "--app", "terafleet_worker.app", "flower"] and "--port=5556" in argv
    assert not any("s3cret" in word for word in argv)
    assert environment["FLOWER_BASIC_AUTH"] == "terafleet:s3cret" and environment["PATH"] == "/usr/bin"
    auth.write_text("no-colon\n")
    with pytest.raises(SystemExit, match="does not hold user:password"):
        entrypoint.flower({"TERAFLEET_FLOWER_AUTH_FILE": str(auth)})
    argv, environment = entrypoint.flower({})
    assert "FLOWER_BASIC_AUTH" not in environment and "--port=5555" in argv
