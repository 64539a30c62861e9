#!/usr/bin/python
"""Ansible module: the NVIDIA GPUs a node has, from nvidia-smi."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Gather the NVIDIA GPUs of a node from nvidia-smi
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
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
  platform:
    platforms: posix
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
        memory_total_mib: {description: "Total memory in MiB, null when unreadable.", type: int}
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.nvidia_smi import NvidiaSmiError, read_gpus


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path"},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    try:
        gpus, driver = read_gpus(module.params["nvidia_smi_path"], module.params["timeout"])
    except NvidiaSmiError as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts={"gpus": gpus, "gpu_driver_version": driver})


if __name__ == "__main__":
    main()
