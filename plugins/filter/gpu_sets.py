"""Partition a node's GPUs into fixed, disjoint sets, one per TeraChem server."""

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_sets
short_description: Partition a node's GPUs into fixed, disjoint GPU sets
version_added: 0.1.0
author: terafleet developers
description:
  - Takes the GPUs that M(terafleet.cluster.gpu_facts) found on a node and returns the GPU sets that
    TeraChem servers will own, one server per set, no GPU in two sets.
  - Either cuts the usable GPUs (all found, less O(exclude) and less unhealthy ones) into sets of O(size)
    in index order, or validates the explicit O(sets) the inventory gives, by index or UUID.
  - Rejects bad input with an error that names the host and the offending value.
positional: size, sets, exclude, allow_remainder, host
options:
  _input:
    description: GPUs as returned by M(terafleet.cluster.gpu_facts), each with C(index), C(uuid) and C(healthy).
    type: list
    elements: dict
    required: true
  size:
    description: GPUs per set, used when O(sets) is empty. Must divide the usable GPU count unless O(allow_remainder).
    type: int
    default: 1
  sets:
    description: Explicit sets, each a list of GPU indices or UUIDs. When not empty, O(size) is ignored.
    type: list
    elements: list
    default: []
  exclude:
    description: GPUs (indices or UUIDs) to leave idle.
    type: list
    elements: raw
    default: []
  allow_remainder:
    description: Let GPUs that do not fill a whole set of O(size) stay idle instead of failing.
    type: bool
    default: false
  host:
    description: Host name to put in error messages.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Two GPUs per TeraChem server
  ansible.builtin.set_fact:
    gpu_sets: "{{ ansible_facts.gpus | terafleet.cluster.gpu_sets(size=2, host=inventory_hostname) }}"
  # 4 GPUs -> [{name: gpu0-1, devices: ['0', '1'], ...}, {name: gpu2-3, devices: ['2', '3'], ...}]

- name: Explicit sets by index and UUID
  ansible.builtin.set_fact:
    gpu_sets: "{{ ansible_facts.gpus | terafleet.cluster.gpu_sets(sets=[[0, 1], ['GPU-8c5a...']]) }}"
"""

RETURN = r"""
_value:
  description: One entry per set, in the order given (explicit) or by lowest index (computed).
  type: list
  elements: dict
  contains:
    name:
      description: Stable name from the set's indices, C(gpu0-1) for GPUs 0 and 1, C(gpu3) for GPU 3.
      type: str
    devices:
      description: The set's GPU indices as strings, the form Docker device requests take.
      type: list
      elements: str
    uuids:
      description: The set's GPU UUIDs, in the order of RV(_value.devices).
      type: list
      elements: str
"""

from typing import Any

from ansible.errors import AnsibleFilterError


def _where(host: str) -> str:
    return f"{host}: " if host else ""


def _as_int(value: Any, what: str, host: str) -> int:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{_where(host)}{what} must be a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{_where(host)}{what} must be a whole number, got {value!r}") from None
    return number


def _resolver(gpus: list[dict], host: str):
    by_index = {int(gpu["index"]): gpu for gpu in gpus}
    by_uuid = {str(gpu["uuid"]).lower(): gpu for gpu in gpus}
    have = ", ".join(str(i) for i in sorted(by_index)) or "none"

    def resolve(ref: Any, context: str) -> dict:
        if isinstance(ref, str) and ref.strip().upper().startswith(("GPU-", "MIG-")):
            gpu = by_uuid.get(ref.strip().lower())
            if gpu is None:
                raise AnsibleFilterError(f"{_where(host)}{context} names GPU {ref}, a UUID this node does not have")
            return gpu
        index = _as_int(ref, f"GPU {ref!r} in {context}", host)
        if index not in by_index:
            raise AnsibleFilterError(
                f"{_where(host)}{context} names GPU {index}, which this node does not have (its GPUs: {have})")
        return by_index[index]

    return resolve


def _entry(members: list[dict]) -> dict:
    indices = [int(gpu["index"]) for gpu in members]
    return {"name": "gpu" + "-".join(str(i) for i in indices),
            "devices": [str(i) for i in indices],
            "uuids": [str(gpu["uuid"]) for gpu in members]}


def gpu_sets(gpus: list[dict], size: Any = 1, sets: list | None = None, exclude: list | None = None,
             allow_remainder: bool = False, host: str = "") -> list[dict]:
    """Return the GPU sets for one node; see DOCUMENTATION."""
    if not isinstance(gpus, list):
        raise AnsibleFilterError(f"{_where(host)}gpu_sets expects the list of GPUs from gpu_facts, got {gpus!r}")
    resolve = _resolver(gpus, host)
    excluded = {int(resolve(ref, "exclude")["index"]) for ref in (exclude or [])}
    unhealthy = sorted(int(g["index"]) for g in gpus if not g.get("healthy", True) and int(g["index"]) not in excluded)

    if sets:
        if not isinstance(sets, list) or not all(isinstance(s, list) for s in sets):
            raise AnsibleFilterError(f"{_where(host)}GPU sets must be a list of lists, got {sets!r}")
        owner: dict[int, int] = {}
        result = []
        for number, members in enumerate(sets):
            context = f"GPU set {members!r}"
            if not members:
                raise AnsibleFilterError(f"{_where(host)}GPU set number {number + 1} is empty: {sets!r}")
            resolved = [resolve(ref, context) for ref in members]
            indices = [int(gpu["index"]) for gpu in resolved]
            for index in indices:
                if indices.count(index) > 1:
                    raise AnsibleFilterError(f"{_where(host)}{context} lists GPU {index} twice")
                if index in excluded:
                    raise AnsibleFilterError(f"{_where(host)}{context} uses GPU {index}, which is excluded")
                if index in unhealthy:
                    raise AnsibleFilterError(
                        f"{_where(host)}{context} uses GPU {index}, which nvidia-smi reports in error state; "
                        "exclude it or replace it")
                if index in owner:
                    raise AnsibleFilterError(
                        f"{_where(host)}GPU sets overlap: GPU {index} is in {sets[owner[index]]!r} and {members!r}")
                owner[index] = number
            result.append(_entry(resolved))
        return result

    set_size = _as_int(size, "GPU set size", host)
    if set_size < 1:
        raise AnsibleFilterError(f"{_where(host)}GPU set size must be at least 1, got {size!r}")
    if unhealthy:
        raise AnsibleFilterError(
            f"{_where(host)}GPU {unhealthy[0]} is in error state per nvidia-smi; add it to the excluded GPUs "
            "or replace it")
    usable = sorted((g for g in gpus if int(g["index"]) not in excluded), key=lambda g: int(g["index"]))
    if not usable:
        raise AnsibleFilterError(f"{_where(host)}no usable GPU (found {len(gpus)}, excluded {len(excluded)})")
    remainder = len(usable) % set_size
    if remainder and not allow_remainder:
        raise AnsibleFilterError(
            f"{_where(host)}GPU set size {set_size} does not divide the {len(usable)} usable GPUs; choose a size "
            f"that does, exclude {remainder} GPU(s), or allow the remainder to stay idle")
    whole = len(usable) - remainder
    if whole == 0:
        raise AnsibleFilterError(
            f"{_where(host)}GPU set size {set_size} is larger than the {len(usable)} usable GPUs")
    return [_entry(usable[start:start + set_size]) for start in range(0, whole, set_size)]


class FilterModule:
    """terafleet GPU set filters."""

    def filters(self) -> dict:
        return {"gpu_sets": gpu_sets}
