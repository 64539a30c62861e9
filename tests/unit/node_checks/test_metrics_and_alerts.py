"""The node checks' alerts (a chat webhook, Alertmanager; real HTTP on loopback) and their metrics files, read
back with Prometheus' own parser: the watchdog's, the disk check's and terafleet-node-metrics' (run against
the stand-in nvidia-smi the test nodes use)."""

import json
import os
import subprocess
import sys
import syslog
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from script_loader import ROLES, load_script

watchdog = load_script("terafleet-watchdog")
disk_check = load_script("terafleet-disk-check")
node_metrics = load_script("terafleet-node-metrics")
checks = sys.modules["terafleet_checks"]

FAKE_NVIDIA_SMI = Path(__file__).resolve().parents[3] / "images" / "node" / "nvidia-smi"


def samples(path: Path) -> dict:
    """{(name, frozenset(labels)): value} of a textfile, parsed as Prometheus parses it."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    matches = [v for (n, lab), v in found.items() if n == name and set(labels.items()) <= set(lab)]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


@pytest.fixture()
def receiver():
    """An HTTP listener on loopback that keeps every POST (path, JSON body)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_an_alert_reaches_a_chat_webhook_as_text_and_alertmanager_in_its_api_format(receiver):
    url, received = receiver
    message = 'terachem-gpu0-1: crash loop, 5 restarts; "quoted" \\ and a {brace}'
    checks.send("terafleet-watchdog", "TerafleetCrashLoop", message, syslog.LOG_ERR, {"container": "terachem-gpu0-1"},
                {"webhook_url": f"{url}/hooks/abc", "webhook_body": {"text": "{message}"},
                 "alertmanager_url": f"{url}/"}, now=0.0)
    assert received[0] == ("/hooks/abc", {"text": message})
    path, alerts = received[1]
    assert path == "/api/v2/alerts"
    assert alerts == [{"labels": {"alertname": "TerafleetCrashLoop", "severity": "critical",
                                  "node": os.uname().nodename, "source": "terafleet-watchdog",
                                  "container": "terachem-gpu0-1"},
                       "annotations": {"summary": message}, "startsAt": "1970-01-01T00:00:00Z"}]


def test_the_webhook_body_is_a_template_filled_in_every_string():
    body = {"username": "terafleet {source}", "attachments": [{"title": "{alert} on {node}", "text": "{message}",
                                                                "color": "{severity}", "keep": "{other}", "n": 3}]}
    filled = checks.fill(body, {"message": "m", "alert": "A", "severity": "warning", "node": "gpu01",
                                "source": "terafleet-disk-check"})
    assert filled == {"username": "terafleet terafleet-disk-check",
                      "attachments": [{"title": "A on gpu01", "text": "m", "color": "warning", "keep": "{other}",
                                       "n": 3}]}


def test_a_receiver_that_is_down_is_logged_and_the_check_goes_on(capsys):
    checks.send("terafleet-disk-check", "TerafleetLstorFull", "full", syslog.LOG_WARNING, {},
                {"webhook_url": "http://127.0.0.1:9/hook", "alertmanager_url": "http://127.0.0.1:9"})
    assert "full" in capsys.readouterr().out


def test_receivers_come_from_the_root_only_file(tmp_path):
    path = tmp_path / "alerts.json"
    assert checks.load_alerts(path) == {}
    path.write_text('{"alertmanager_url": "http://head:9093"}')
    assert checks.load_alerts(path) == {"alertmanager_url": "http://head:9093"}
    path.write_text("not json")
    assert checks.load_alerts(path) == {}


def test_metrics_files_escape_label_values_and_replace_the_file_whole(tmp_path):
    path = tmp_path / "textfiles" / "x.prom"
    checks.write_metrics(path, [("t_bytes", "gauge", "Bytes.", [({"path": 'a "b"\\c\nd'}, 12345678901), ({}, 0.25)])])
    found = samples(path)
    assert found[("t_bytes", frozenset({("path", 'a "b"\\c\nd')}))] == 12345678901
    assert found[("t_bytes", frozenset())] == 0.25
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["x.prom"]


def worker_container(pid, drained):
    return {"Name": "/worker-gpu0-1", "Id": "id-w", "RestartCount": 0,
            "State": {"Status": "running", "Running": True, "Pid": pid, "Health": {"Status": "healthy"}},
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
            "Config": {"Labels": {"org.terafleet.role": "worker", "org.terafleet.gpu_set": "gpu0-1",
                                  "org.terafleet.server": "terachem-gpu0-1"},
                       "Env": ["TERAFLEET_STATE_DIR=/var/lib/terafleet-worker"]}}


def test_the_watchdog_writes_each_containers_state_restarts_and_crash_loop(tmp_path, monkeypatch):
    server = {"Name": "/terachem-gpu0-1", "Id": "id-s", "RestartCount": 2,
              "State": {"Status": "running", "Running": True, "Pid": 0, "Health": {"Status": "unhealthy"}},
              "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}},
              "Config": {"Labels": {"org.terafleet.role": "terachem", "org.terafleet.gpu_set": "gpu0-1",
                                    "org.terafleet.gpus": "0,1"}, "Env": []}}
    looping = {"Name": "/terachem-gpu2-3", "Id": "id-l", "RestartCount": 0,
               "State": {"Status": "exited", "Running": False, "Pid": 0, "ExitCode": 137},
               "HostConfig": {"RestartPolicy": {"Name": "no"}},
               "Config": {"Labels": {"org.terafleet.role": "terachem", "org.terafleet.gpu_set": "gpu2-3"}, "Env": []}}
    status = tmp_path / "proc" / "77" / "root" / "var" / "lib" / "terafleet-worker" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"queues": ["terachem.gpu01.gpu0-1"], "drained": ["terachem"], "active": 1}))
    containers = {c["Name"].lstrip("/"): c for c in (server, looping, worker_container(77, True))}

    def engine(path, timeout=120):
        """Docker's API: the container list, and each container's inspect."""
        if path.startswith("/containers/json?"):
            return [{"Id": c["Id"]} for c in containers.values()]
        return next(c for c in containers.values() if path == f"/containers/{c['Id']}/json")

    monkeypatch.setattr(watchdog, "engine", engine)
    monkeypatch.setattr(watchdog.checks, "send", lambda *args, **kwargs: None)
    state = tmp_path / "watchdog.json"
    state.write_text(json.dumps({"terachem-gpu2-3": {"id": "id-l", "restarts": [990.0] * 5, "docker_restart_count": 0,
                                                     "stopped_for_crash_loop": True, "since": 0.0,
                                                     "watchdog_restarts": 5},
                                 "terachem-gpu0-1": {"id": "id-s", "restarts": [], "docker_restart_count": 2,
                                                     "stopped_for_crash_loop": False, "since": 0.0}}))
    metrics = tmp_path / "textfiles" / "terafleet_containers.prom"
    dog = watchdog.Watchdog(state, 5, 600, {}, now=1000.0, proc=tmp_path / "proc", metrics_file=metrics)
    dog.run()
    found = samples(metrics)
    assert value(found, "terafleet_container_running", container="terachem-gpu0-1", gpus="0,1") == 1
    assert value(found, "terafleet_container_unhealthy", container="terachem-gpu0-1") == 1
    assert value(found, "terafleet_container_restarts_total", container="terachem-gpu0-1") == 2
    assert value(found, "terafleet_container_crash_loop", container="terachem-gpu0-1") == 0
    assert value(found, "terafleet_container_running", container="terachem-gpu2-3") == 0
    assert value(found, "terafleet_container_crash_loop", container="terachem-gpu2-3", gpu_set="gpu2-3") == 1
    assert value(found, "terafleet_container_restarts_total", container="terachem-gpu2-3") == 5
    assert value(found, "terafleet_worker_active_tasks", container="worker-gpu0-1", server="terachem-gpu0-1") == 1
    assert value(found, "terafleet_worker_drained", container="worker-gpu0-1") == 1
    assert value(found, "terafleet_watchdog_docker_up") == 1
    assert value(found, "terafleet_watchdog_last_run_timestamp_seconds") == 1000

    # Paused for maintenance: still written, and says so.
    dog = watchdog.Watchdog(state, 5, 600, {}, now=1010.0, proc=tmp_path / "proc", metrics_file=metrics)
    dog.pause(300)
    dog.run()
    found = samples(metrics)
    assert value(found, "terafleet_watchdog_paused") == 1
    assert value(found, "terafleet_container_running", container="terachem-gpu0-1") == 1

    # Docker away meanwhile (a converge restarting it): no alert, and the metrics say Docker is not read.
    sent = []
    monkeypatch.setattr(watchdog.checks, "send", lambda *args, **kwargs: sent.append(args))

    def away(*args, **kwargs):
        raise watchdog.DockerError("Docker's API, GET /containers/json: no answer within 120 s")

    monkeypatch.setattr(watchdog, "engine", away)
    watchdog.Watchdog(state, 5, 600, {}, now=1020.0, proc=tmp_path / "proc", metrics_file=metrics).run()
    assert sent == []
    assert value(samples(metrics), "terafleet_watchdog_docker_up") == 0


def test_a_worker_status_that_is_missing_or_malformed_gives_no_sample(tmp_path):
    assert watchdog.worker_status(worker_container(0, False), tmp_path) is None
    assert watchdog.worker_status(worker_container(5, False), tmp_path) is None
    path = tmp_path / "5" / "root" / "var" / "lib" / "terafleet-worker" / "status.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"active": "many"}')
    assert watchdog.worker_status(worker_container(5, False), tmp_path) is None


def test_the_disk_check_counts_what_it_pruned_across_runs(tmp_path):
    lstor = tmp_path / "lstor"
    job = lstor / "terafleet" / "scratch" / "gpu01-gpu0-1" / "server_1" / "job_1"
    (job / "scr").mkdir(parents=True)
    (job / "tc.out").write_bytes(b"x" * 1000)
    newest = job.parent / "job_2"
    newest.mkdir()
    os.utime(job / "tc.out", (0, 0))
    os.utime(job / "scr", (0, 0))
    os.utime(job, (0, 0))
    metrics, state = tmp_path / "terafleet_disk.prom", tmp_path / "disk-check.json"
    argv = ["--path", str(lstor), "--scratch-root", str(lstor / "terafleet" / "scratch"), "--max-percent", "0",
            "--min-free-gb", "0", "--alerts", str(tmp_path / "none.json"), "--metrics-file", str(metrics),
            "--state-file", str(state)]
    assert disk_check.main(argv) == 1
    found = samples(metrics)
    assert value(found, "terafleet_lstor_alert") == 1
    assert value(found, "terafleet_scratch_pruned_total") == 1
    assert value(found, "terafleet_scratch_pruned_bytes_total") == 1000
    assert not job.exists() and newest.exists()
    assert disk_check.main(argv) == 1
    assert value(samples(metrics), "terafleet_scratch_pruned_total") == 1


def run_node_metrics(tmp_path, config: dict | None, *extra):
    metrics = tmp_path / "terafleet_node.prom"
    env = dict(os.environ, FAKE_NVIDIA_SMI_CONFIG=str(tmp_path / "gpus.json"), FAKE_NVIDIA_GPUS="")
    if config is not None:
        (tmp_path / "gpus.json").write_text(json.dumps(config))
    nvidia_smi = tmp_path / "nvidia-smi"  # as the node image installs it: executable
    nvidia_smi.write_text(FAKE_NVIDIA_SMI.read_text())
    nvidia_smi.chmod(0o755)
    subprocess.run([sys.executable, str(ROLES / "node_checks" / "files" / "terafleet-node-metrics"),
                    "--metrics-file", str(metrics), "--nvidia-smi", str(nvidia_smi), *extra],
                   env=env, check=True, timeout=60)
    return samples(metrics)


def test_node_metrics_read_each_gpu_from_nvidia_smi_and_lstor_as_df_does(tmp_path):
    gpus = [{"uuid": "GPU-a", "utilization": 37, "memory_used_mib": 1024, "temperature": 61},
            {"uuid": "GPU-b", "utilization": 81, "memory_used_mib": 0, "temperature": 40},
            {"uuid": "GPU-c", "state": "error"}]
    found = run_node_metrics(tmp_path, {"gpus": gpus}, "--lstor", str(tmp_path), "--gpu-set", "gpu0-1=0,1")
    assert value(found, "terafleet_nvidia_smi_up") == 1
    assert value(found, "terafleet_gpus") == 3
    assert value(found, "terafleet_gpu_utilization_percent", gpu="0", uuid="GPU-a", gpu_set="gpu0-1") == 37
    assert value(found, "terafleet_gpu_utilization_percent", gpu="1") == 81
    assert value(found, "terafleet_gpu_memory_used_bytes", gpu="0") == 1024 * 1024 * 1024
    assert value(found, "terafleet_gpu_temperature_celsius", gpu="0") == 61
    # A GPU nvidia-smi cannot read: listed, with no made-up values.
    assert value(found, "terafleet_gpu_info", gpu="2") == 1
    assert not [key for key in found if key[0] == "terafleet_gpu_utilization_percent" and ("gpu", "2") in key[1]]
    # This machine's /tmp is in use by others meanwhile; the scenario compares with df on a quiet $LSTOR.
    stats = os.statvfs(tmp_path)
    assert value(found, "terafleet_lstor_size_bytes") == stats.f_blocks * stats.f_frsize
    assert value(found, "terafleet_lstor_free_bytes") == pytest.approx(stats.f_bavail * stats.f_frsize, rel=0.01)
    assert value(found, "terafleet_lstor_used_bytes") == pytest.approx((stats.f_blocks - stats.f_bfree)
                                                                       * stats.f_frsize, rel=0.01)


def test_node_metrics_say_when_nvidia_smi_fails(tmp_path):
    found = run_node_metrics(tmp_path, {"gpus": []})
    assert value(found, "terafleet_nvidia_smi_up") == 0
    assert not [key for key in found if key[0] == "terafleet_gpus"]


def test_gpu_sets_label_each_gpu_index():
    assert node_metrics.gpu_set_map(["gpu0-1=0,1", "gpu2=2"]) == {"0": "gpu0-1", "1": "gpu0-1", "2": "gpu2"}
