"""Name the TeraChem server, scratch directory and scratch volume of each GPU set, once."""

from __future__ import annotations

DOCUMENTATION = r"""
name: instance_plan
short_description: Name each GPU set's TeraChem server, scratch directory and scratch volume
version_added: 0.1.0
author: terafleet developers
description:
  - Takes the GPU sets from P(terafleet.cluster.gpu_sets#filter) and adds the names every later role uses,
    so that no role derives them again.
  - Names depend only on the host and the set's GPU indices, so they stay the same across runs.
positional: scratch_root, host
options:
  _input:
    description: GPU sets, each with C(name), C(devices) and C(uuids).
    type: list
    elements: dict
    required: true
  scratch_root:
    description: Directory under which each server gets C(scratch/<host>-<set name>).
    type: path
    required: true
  host:
    description: Short host name, part of each scratch directory's name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the servers
  ansible.builtin.set_fact:
    instances: "{{ sets | terafleet.cluster.instance_plan('/lstor/terafleet', inventory_hostname_short) }}"
  # [{name: gpu0-1, devices: ['0', '1'], uuids: [...], instance: terachem-gpu0-1,
  #   scratch_dir: /lstor/terafleet/scratch/gpu01-gpu0-1, scratch_volume: terafleet-scratch-gpu0-1}]
"""

RETURN = r"""
_value:
  description: The input sets, each with three more keys.
  type: list
  elements: dict
  contains:
    instance: {description: TeraChem container name, C(terachem-<set name>)., type: str}
    scratch_dir: {description: The server's own scratch directory., type: str}
    scratch_volume: {description: Docker volume bound to RV(_value.scratch_dir)., type: str}
"""

import posixpath
import re

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - only without ansible-core installed
    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        """Stand-in so the module imports for documentation tooling."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def instance_plan(sets: list[dict], scratch_root: str, host: str) -> list[dict]:
    """Return the sets with instance, scratch_dir and scratch_volume; see DOCUMENTATION."""
    if not isinstance(scratch_root, str) or not scratch_root.startswith("/"):
        raise AnsibleFilterError(f"{host}: scratch root must be an absolute path, got {scratch_root!r}")
    if not isinstance(host, str) or not _SAFE_NAME.match(host):
        raise AnsibleFilterError(f"host name {host!r} cannot name a directory")
    plan = []
    for entry in sets:
        name = entry.get("name", "") if isinstance(entry, dict) else ""
        if not _SAFE_NAME.match(name):
            raise AnsibleFilterError(f"{host}: GPU set {entry!r} has no usable name")
        plan.append({**entry,
                     "instance": f"terachem-{name}",
                     "scratch_dir": posixpath.join(posixpath.normpath(scratch_root), "scratch", f"{host}-{name}"),
                     "scratch_volume": f"terafleet-scratch-{name}"})
    return plan


class FilterModule:
    """terafleet instance naming filter."""

    def filters(self) -> dict:
        return {"instance_plan": instance_plan}
