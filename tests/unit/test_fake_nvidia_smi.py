"""The stand-in nvidia-smi answers like NVIDIA's for the GPU list a test chooses."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

FAKE = REPO_ROOT / "images" / "node" / "nvidia-smi"
QUERY = ["--query-gpu=index,uuid,name,memory.total,driver_version", "--format=csv,noheader,nounits"]


def run(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVIDIA")}
    env["FAKE_NVIDIA_SMI_CONFIG"] = "/nonexistent/fake-nvidia-smi.json"
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(FAKE), *args], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("count", [2, 4, 16])
def test_query_lists_each_gpu(count):
    result = run(QUERY, {"FAKE_NVIDIA_GPUS": str(count)})
    assert result.returncode == 0, result.stderr
    rows = [line.split(", ") for line in result.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(count))
    assert len({r[1] for r in rows}) == count
    assert all(r[1].startswith("GPU-") and len(r[1]) == 40 for r in rows)
    assert all(r[3] == "40960" for r in rows)


def test_uuids_are_stable_across_calls():
    first = run(QUERY, {"FAKE_NVIDIA_GPUS": "4"}).stdout
    assert first == run(QUERY, {"FAKE_NVIDIA_GPUS": "4"}).stdout


@pytest.mark.parametrize("spec", ["0", ""])
def test_no_gpu_answers_like_nvidia_smi(spec):
    result = run(QUERY, {"FAKE_NVIDIA_GPUS": spec})
    assert result.returncode == 6
    assert result.stdout.strip() == "No devices were found"


def test_header_and_units_without_noheader():
    result = run(["--query-gpu=index,memory.total", "--format=csv"],
                 {"FAKE_NVIDIA_GPUS": "2:Tesla V100-SXM2-16GB:16160"})
    assert result.stdout.splitlines() == ["index, memory.total [MiB]", "0, 16160 MiB", "1, 16160 MiB"]


def test_config_file_with_error_state(tmp_path):
    config = tmp_path / "gpus.json"
    config.write_text(json.dumps({"driver_version": "535.104.05", "gpus": [
        {"name": "Tesla V100", "uuid": "GPU-00000000-0000-0000-0000-000000000001", "memory_mib": 16160},
        {"name": "Tesla V100", "uuid": "GPU-00000000-0000-0000-0000-000000000002", "state": "error"}]}))
    result = run(QUERY, {"FAKE_NVIDIA_SMI_CONFIG": str(config)})
    assert result.stdout.splitlines() == [
        "0, GPU-00000000-0000-0000-0000-000000000001, Tesla V100, 16160, 535.104.05",
        "1, GPU-00000000-0000-0000-0000-000000000002, Tesla V100, [Unknown Error], 535.104.05",
    ]


@pytest.mark.parametrize("args, message", [
    (["--query-gpu=index,bogus", "--format=csv"], 'Field "bogus" is not a valid field to query.'),
    (["--frobnicate"], "Invalid combination of input arguments"),
])
def test_bad_arguments_fail(args, message):
    result = run(args, {"FAKE_NVIDIA_GPUS": "1"})
    assert result.returncode == 2
    assert message in result.stderr


def test_list_gpus():
    result = run(["-L"], {"FAKE_NVIDIA_GPUS": "2"})
    assert [line.split(" (UUID")[0] for line in result.stdout.splitlines()] == [
        "GPU 0: NVIDIA A100-SXM4-40GB", "GPU 1: NVIDIA A100-SXM4-40GB"]
