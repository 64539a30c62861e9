#!/usr/bin/python
"""Ansible module: the NVIDIA GPUs a node has, from nvidia-smi."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather the NVIDIA GPUs of a node from nvidia-smi
version_added: 0.1.0
author: terafleet developers
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) and returns, per GPU, its index,
    UUID, name, total memory, PCI bus id and whether nvidia-smi could read it.
  - Sets the facts C(gpus) and C(gpu_driver_version).
  - A node whose driver sees no GPU returns an empty list; a missing or failing nvidia-smi fails with
    nvidia-smi's own message.
options:
  nvidia_smi_path:
    description: Path of nvidia-smi. Looked up on C(PATH) and in C(/usr/bin) when not given.
    type: path
  timeout:
    description: Seconds to wait for nvidia-smi, which can hang on a GPU that has fallen off the bus.
    type: int
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - Only reads; it changes nothing on the node.
requirements:
  - The NVIDIA driver (nvidia-smi).
"""

EXAMPLES = r"""
- name: Find the GPUs
  terafleet.cluster.gpu_facts:

- name: Show them
  ansible.builtin.debug:
    msg: "{{ ansible_facts.gpus | map(attribute='uuid') }} on driver {{ ansible_facts.gpu_driver_version }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts about the node's GPUs.
  returned: success
  type: dict
  contains:
    gpus:
      description: One entry per GPU, in index order.
      type: list
      elements: dict
      contains:
        index: {description: GPU index as nvidia-smi numbers it., type: int}
        uuid: {description: GPU UUID., type: str}
        name: {description: Product name., type: str}
        memory_total_mib: {description: Total memory in MiB, null when unreadable., type: int}
        pci_bus_id: {description: PCI bus id., type: str}
        healthy: {description: False when nvidia-smi reports an error for this GPU., type: bool}
      sample:
        - {index: 0, uuid: GPU-3b1c9f4e-0b62-5f7e-8e15-0c6f0d3a1b22, name: NVIDIA A100-SXM4-40GB,
           memory_total_mib: 40960, pci_bus_id: "00000000:07:00.0", healthy: true}
    gpu_driver_version:
      description: NVIDIA driver version, null when no GPU is visible.
      type: str
      sample: 550.54.15
"""

import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule

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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    path = module.params["nvidia_smi_path"] or shutil.which("nvidia-smi") or (
        "/usr/bin/nvidia-smi" if shutil.which("nvidia-smi", path="/usr/bin") else None)
    if not path:
        module.fail_json(msg="nvidia-smi not found on this node: install the NVIDIA driver, or move the host "
                             "out of the gpu_nodes group")
    command = [path, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                timeout=module.params["timeout"])
    except subprocess.TimeoutExpired:
        module.fail_json(msg=f"nvidia-smi did not answer within {module.params['timeout']} s; a GPU may have "
                             "fallen off the bus (check dmesg for Xid errors)")
    except OSError as error:
        module.fail_json(msg=f"cannot run {path}: {error}")
    rc, out, err = result.returncode, result.stdout, result.stderr
    if rc == NO_DEVICES_EXIT and "No devices were found" in out + err:
        module.exit_json(changed=False, ansible_facts={"gpus": [], "gpu_driver_version": None})
    if rc != 0:
        message = (err or out).strip() or f"exit code {rc}"
        module.fail_json(msg=f"nvidia-smi failed: {message}", rc=rc, stdout=out, stderr=err)
    try:
        gpus, driver = parse_query(out)
    except NvidiaSmiError as error:
        module.fail_json(msg=str(error), stdout=out)
    module.exit_json(changed=False, ansible_facts={"gpus": gpus, "gpu_driver_version": driver})


if __name__ == "__main__":
    main()
