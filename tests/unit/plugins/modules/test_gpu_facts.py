"""gpu_facts on captured nvidia-smi output, and as Ansible runs it."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.terafleet.cluster.plugins.module_utils.nvidia_smi import NvidiaSmiError, parse_query

from conftest import REPO_ROOT

MODULE = REPO_ROOT / "plugins" / "modules" / "gpu_facts.py"

ONE_GPU = "0, GPU-5c0b3f1a-9d2e-4c7b-8f61-2a7e9d1c4b30, NVIDIA GeForce RTX 3090, 24576, 00000000:01:00.0, 535.183.01\n"
EIGHT_V100 = "".join(
    f"{i}, GPU-4b2f1f5e-7c1d-3a9e-b0{i:02d}-6d8e2f1a9c{i:02d}, Tesla V100-SXM2-16GB, 16160, "
    f"00000000:{0x15 + i:02X}:00.0, 470.57.02\n" for i in range(8))
SIXTEEN_A100 = "".join(
    f"{i}, GPU-{i:08x}-1111-2222-3333-444455556666, NVIDIA A100-SXM4-80GB, 81920, "
    f"00000000:{0x07 + i:02X}:00.0, 550.54.15\n" for i in range(16))
ONE_IN_ERROR = (
    "0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA A100-SXM4-80GB, 81920, 00000000:07:00.0, 535.129.03\n"
    "1, GPU-aaaaaaaa-0000-0000-0000-000000000001, NVIDIA A100-SXM4-80GB, [GPU requires reset], "
    "00000000:0B:00.0, 535.129.03\n"
    "2, GPU-aaaaaaaa-0000-0000-0000-000000000002, NVIDIA A100-SXM4-80GB, [Unknown Error], "
    "[Unknown Error], 535.129.03\n")
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
             "Make sure that the latest NVIDIA driver is installed and running.\n")


@pytest.mark.parametrize("output, count, name, memory, driver", [
    (ONE_GPU, 1, "NVIDIA GeForce RTX 3090", 24576, "535.183.01"),
    (EIGHT_V100, 8, "Tesla V100-SXM2-16GB", 16160, "470.57.02"),
    (SIXTEEN_A100, 16, "NVIDIA A100-SXM4-80GB", 81920, "550.54.15"),
])
def test_parses_healthy_nodes(output, count, name, memory, driver):
    gpus, found_driver = parse_query(output)
    assert [g["index"] for g in gpus] == list(range(count))
    assert len({g["uuid"] for g in gpus}) == count
    assert all(g["name"] == name and g["memory_total_mib"] == memory and g["healthy"] for g in gpus)
    assert found_driver == driver


def test_marks_gpus_in_error_state_unhealthy():
    gpus, driver = parse_query(ONE_IN_ERROR)
    assert [g["healthy"] for g in gpus] == [True, False, False]
    assert gpus[1]["memory_total_mib"] is None
    assert gpus[2]["pci_bus_id"] is None
    assert driver == "535.129.03"


def test_sorts_by_index():
    gpus, _ = parse_query("".join(reversed(EIGHT_V100.splitlines(keepends=True))))
    assert [g["index"] for g in gpus] == list(range(8))


@pytest.mark.parametrize("output, message", [
    ("0, GPU-x, Tesla T4, 15360\n", "has 4 fields, expected 6"),
    ("GPU 0: Tesla T4 (UUID: GPU-x), a, b, c, d, e\n", "has no GPU index"),
    (ONE_GPU + ONE_GPU.replace("535.183.01", "550.54.15").replace("0,", "1,", 1), "several driver versions"),
])
def test_rejects_output_it_cannot_read(output, message):
    with pytest.raises(NvidiaSmiError, match=message):
        parse_query(output)


def run_module(tmp_path, script_body, **args):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n" + script_body)
    fake.chmod(0o755)
    args.setdefault("nvidia_smi_path", str(fake))
    # Run as a script, the module imports its module_utils from the collection, as the unit tests do.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT / ".collections"))
    result = subprocess.run([sys.executable, str(MODULE)], input=json.dumps({"ANSIBLE_MODULE_ARGS": args}),
                            capture_output=True, text=True, check=False, env=env)
    return json.loads(result.stdout)


def test_module_returns_facts(tmp_path):
    out = run_module(tmp_path, f"cat <<'EOF'\n{EIGHT_V100}EOF\n")
    assert out["changed"] is False
    assert len(out["ansible_facts"]["gpus"]) == 8
    assert out["ansible_facts"]["gpu_driver_version"] == "470.57.02"


def test_module_no_devices_is_an_empty_list(tmp_path):
    out = run_module(tmp_path, "echo 'No devices were found'; exit 6\n")
    assert out.get("failed") is not True
    assert out["ansible_facts"] == {"gpus": [], "gpu_driver_version": None}


def test_module_no_driver_fails_with_nvidia_smis_message(tmp_path):
    out = run_module(tmp_path, f"printf '%s' \"{NO_DRIVER.strip()}\"; exit 9\n")
    assert out["failed"] is True
    assert out["msg"].startswith("nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate")


def test_module_nvidia_smi_missing(tmp_path):
    out = run_module(tmp_path, "", nvidia_smi_path=str(tmp_path / "absent" / "nvidia-smi"))
    assert out["failed"] is True
    assert "cannot run" in out["msg"]


def test_module_times_out_on_a_hung_nvidia_smi(tmp_path):
    out = run_module(tmp_path, "exec sleep 30\n", timeout=1)
    assert out["failed"] is True
    assert "did not answer within 1 s" in out["msg"]
