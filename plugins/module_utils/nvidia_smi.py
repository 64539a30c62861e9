"""Reading a node's NVIDIA GPUs with nvidia-smi: shared by the gpu_facts and node_facts modules."""

from __future__ import annotations

import shutil
import subprocess

QUERY_FIELDS = ("index", "uuid", "name", "memory.total", "pci.bus_id", "driver_version")
NO_DEVICES_EXIT = 6


class NvidiaSmiError(Exception):
    """nvidia-smi printed something this module cannot read."""


def _is_error(value: str) -> bool:
    return value.startswith("[") or value in ("ERR!", "N/A", "")


def parse_query(output: str) -> tuple[list[dict], str | None]:
    """Parse `nvidia-smi --query-gpu=<QUERY_FIELDS> --format=csv,noheader,nounits` output."""
    gpus = []
    drivers = set()
    for number, line in enumerate(output.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(QUERY_FIELDS):
            raise NvidiaSmiError(f"nvidia-smi line {number} has {len(cells)} fields, expected "
                                 f"{len(QUERY_FIELDS)}: {line!r}")
        index, uuid, name, memory, bus_id, driver = cells
        if not index.isdigit():
            raise NvidiaSmiError(f"nvidia-smi line {number} has no GPU index: {line!r}")
        healthy = not any(_is_error(value) for value in (uuid, memory, bus_id))
        gpus.append({
            "index": int(index),
            "uuid": uuid,
            "name": name,
            "memory_total_mib": int(memory) if memory.isdigit() else None,
            "pci_bus_id": None if _is_error(bus_id) else bus_id,
            "healthy": healthy,
        })
        if not _is_error(driver):
            drivers.add(driver)
    if len(drivers) > 1:
        raise NvidiaSmiError(f"nvidia-smi reports several driver versions: {sorted(drivers)}")
    return sorted(gpus, key=lambda gpu: gpu["index"]), (drivers.pop() if drivers else None)


def find_nvidia_smi(path: str | None) -> str:
    found = path or shutil.which("nvidia-smi") or (
        "/usr/bin/nvidia-smi" if shutil.which("nvidia-smi", path="/usr/bin") else None)
    if not found:
        raise NvidiaSmiError("nvidia-smi not found on this node: install the NVIDIA driver, or move the host "
                             "out of the gpu_nodes group")
    return found


def read_gpus(path: str | None, timeout: int) -> tuple[list[dict], str | None]:
    """The node's GPUs and driver version; a node whose driver sees no GPU has none.

    Raises NvidiaSmiError with nvidia-smi's own words when it is missing, hangs or fails.
    """
    found = find_nvidia_smi(path)
    command = [found, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NvidiaSmiError(f"nvidia-smi did not answer within {timeout} s; a GPU may have "
                             "fallen off the bus (check dmesg for Xid errors)") from None
    except OSError as error:
        raise NvidiaSmiError(f"cannot run {found}: {error}") from None
    rc, out, err = result.returncode, result.stdout, result.stderr
    if rc == NO_DEVICES_EXIT and "No devices were found" in out + err:
        return [], None
    if rc != 0:
        message = (err or out).strip() or f"exit code {rc}"
        raise NvidiaSmiError(f"nvidia-smi failed: {message}")
    return parse_query(out)
