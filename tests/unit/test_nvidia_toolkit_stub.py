"""The stand-in NVIDIA container toolkit behaves like NVIDIA's where terafleet depends on it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT

BIN = REPO_ROOT / "images" / "aptrepo" / "nvidia-container-toolkit" / "usr" / "bin"
FAKE_SMI_DIR = REPO_ROOT / "images" / "node"


def ctk(*args):
    return subprocess.run([sys.executable, str(BIN / "nvidia-ctk"), *args], capture_output=True, text=True, check=False)


def test_runtime_configure_merges_existing_keys(tmp_path):
    daemon = tmp_path / "daemon.json"
    daemon.write_text(json.dumps({"log-driver": "journald", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}))
    result = ctk("runtime", "configure", "--runtime=docker", f"--config={daemon}")
    assert result.returncode == 0, result.stderr
    config = json.loads(daemon.read_text())
    assert config["log-driver"] == "journald"
    assert config["runtimes"]["crun"] == {"path": "/usr/bin/crun"}
    assert config["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert "default-runtime" not in config


def test_runtime_configure_set_as_default_creates_file(tmp_path):
    daemon = tmp_path / "docker" / "daemon.json"
    assert ctk("runtime", "configure", "--runtime=docker", "--set-as-default", f"--config={daemon}").returncode == 0
    assert json.loads(daemon.read_text())["default-runtime"] == "nvidia"


def test_runtime_configure_rejects_unknown_runtime(tmp_path):
    result = ctk("runtime", "configure", "--runtime=podman", f"--config={tmp_path / 'x.json'}")
    assert result.returncode == 1
    assert 'unrecognized runtime "podman"' in result.stderr


def _hook(tmp_path: Path, env_list: list[str], pid: int | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"env": env_list}}))
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "nvidia-smi").write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE_SMI_DIR / 'nvidia-smi'} \"$@\"\n")
    (shim / "nvidia-smi").chmod(0o755)
    record = tmp_path / "hook.jsonl"
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", FAKE_NVIDIA_GPUS="4",
               FAKE_NVIDIA_SMI_CONFIG=str(tmp_path / "none.json"), NVIDIA_HOOK_RECORD=str(record))
    result = subprocess.run([sys.executable, str(BIN / "nvidia-container-runtime-hook"), "prestart"],
                            input=json.dumps({"id": "abc123", "bundle": str(bundle),
                                              **({"pid": pid} if pid else {})}), env=env,
                            capture_output=True, text=True, check=False)
    return result, record


@pytest.mark.parametrize("visible, recorded", [("2,3", ["2", "3"]), ("all", ["0", "1", "2", "3"]), ("0", ["0"])])
def test_hook_records_requested_gpus(tmp_path, visible, recorded):
    result, record = _hook(tmp_path, [f"NVIDIA_VISIBLE_DEVICES={visible}", "PATH=/usr/bin"])
    assert result.returncode == 0, result.stderr
    entry = json.loads(record.read_text())
    assert entry["id"] == "abc123"
    assert entry["devices"] == recorded


def test_hook_records_gpus_asked_for_by_uuid_with_their_indices(tmp_path):
    uuids = subprocess.run([sys.executable, str(FAKE_SMI_DIR / "nvidia-smi"), "--query-gpu=uuid",
                            "--format=csv,noheader"], env=dict(os.environ, FAKE_NVIDIA_GPUS="4",
                                                               FAKE_NVIDIA_SMI_CONFIG=str(tmp_path / "none.json")),
                           capture_output=True, text=True, check=True).stdout.split()
    result, record = _hook(tmp_path, [f"NVIDIA_VISIBLE_DEVICES={uuids[3]},{uuids[1]}"])
    assert result.returncode == 0, result.stderr
    entry = json.loads(record.read_text())
    assert entry["event"] == "start" and entry["indices"] == ["3", "1"] and entry["uuids"] == [uuids[3], uuids[1]]


def test_hook_records_when_the_container_stops(tmp_path):
    container = subprocess.Popen(["sleep", "30"])
    try:
        result, record = _hook(tmp_path, ["NVIDIA_VISIBLE_DEVICES=0"], pid=container.pid)
        assert result.returncode == 0, result.stderr
        time.sleep(0.3)
        assert [json.loads(line)["event"] for line in record.read_text().splitlines()] == ["start"]
        container.kill()
        container.wait()
        stopped = time.time()
        for _ in range(100):
            events = [json.loads(line) for line in record.read_text().splitlines()]
            if len(events) == 2:
                break
            time.sleep(0.05)
        assert [e["event"] for e in events] == ["start", "stop"] and events[1]["id"] == "abc123"
        assert events[0]["time"] < events[1]["time"] and abs(events[1]["time"] - stopped) < 1
    finally:
        container.kill()


def test_hook_rejects_unknown_gpu(tmp_path):
    result, record = _hook(tmp_path, ["NVIDIA_VISIBLE_DEVICES=7"])
    assert result.returncode == 1
    assert "7: unknown device" in result.stderr
    assert not record.exists()


def test_hook_ignores_containers_without_gpus(tmp_path):
    result, record = _hook(tmp_path, ["PATH=/usr/bin"])
    assert result.returncode == 0
    assert not record.exists()
