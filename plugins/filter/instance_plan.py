"""Name the TeraChem server, worker, scratch directory and node ports of each GPU set, once."""

from __future__ import annotations

DOCUMENTATION = r"""
name: instance_plan
short_description: Name each GPU set's TeraChem server, worker, scratch directory and ports
version_added: 0.1.0
author: terafleet developers
description:
  - Takes the GPU sets from P(terafleet.cluster.gpu_sets#filter) and adds the names every later role uses,
    so that no role derives them again.
  - Names depend only on the host and the set's GPU indices, so they stay the same across runs.
positional: scratch_root, host, tcpb_base_port, frontend_base_port, tcpb_ports
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
  tcpb_base_port:
    description: Node port of the first set's TeraChem server; the next sets count up from it.
    type: int
    default: 11111
  frontend_base_port:
    description: Node port of the first set's file frontend; the next sets count up from it.
    type: int
    default: 8080
  tcpb_ports:
    description: Explicit TeraChem node ports, one per set, instead of counting from O(tcpb_base_port).
    type: list
    elements: int
    default: []
"""

EXAMPLES = r"""
- name: Plan the servers
  ansible.builtin.set_fact:
    instances: "{{ sets | terafleet.cluster.instance_plan('/lstor/terafleet', inventory_hostname_short) }}"
  # [{name: gpu0-1, devices: ['0', '1'], uuids: [...], instance: terachem-gpu0-1,
  #   scratch_dir: /lstor/terafleet/scratch/gpu01-gpu0-1, worker: worker-gpu0-1,
  #   celery_name: terachem@gpu01-gpu0-1, port: 11111, frontend_port: 8080}]
"""

RETURN = r"""
_value:
  description: The input sets, each with its names and ports.
  type: list
  elements: dict
  contains:
    instance: {description: "TeraChem container name, C(terachem-<set name>).", type: str}
    scratch_dir:
      description:
        - The server's own scratch directory on $LSTOR; its base name C(<host>-<set>) also names the set's
          directory on a network scratch backend (P(terafleet.cluster.scratch_plan#filter)).
      type: str
    worker: {description: "Celery worker container name, C(worker-<set name>).", type: str}
    celery_name:
      description:
        - The name the set's Celery worker answers to through the broker, C(terachem@<host>-<set name>),
          as C(terafleet-worker-control --worker) addresses it.
      type: str
    port: {description: Node port the TeraChem server is published on., type: int}
    frontend_port: {description: Node port of the set's file frontend., type: int}
"""

import posixpath
import re

from ansible.errors import AnsibleFilterError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _port(value, what: str, host: str) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise AnsibleFilterError(f"{host}: {what} must be a port number, got {value!r}")
    port = int(str(value).strip())
    if not 1024 <= port <= 65535:
        raise AnsibleFilterError(f"{host}: {what} {port} is outside 1024-65535")
    return port


def instance_plan(sets: list[dict], scratch_root: str, host: str, tcpb_base_port=11111, frontend_base_port=8080,
                  tcpb_ports=None) -> list[dict]:
    """Return the sets with names, scratch and ports; see DOCUMENTATION."""
    if not isinstance(scratch_root, str) or not scratch_root.startswith("/"):
        raise AnsibleFilterError(f"{host}: scratch root must be an absolute path, got {scratch_root!r}")
    if not isinstance(host, str) or not _SAFE_NAME.match(host):
        raise AnsibleFilterError(f"host name {host!r} cannot name a directory")
    if tcpb_ports and len(tcpb_ports) != len(sets):
        raise AnsibleFilterError(f"{host}: {len(tcpb_ports)} TeraChem ports {list(tcpb_ports)!r} for "
                                 f"{len(sets)} GPU sets; give one port per set")
    tcpb = [_port(p, "TeraChem port", host) for p in tcpb_ports] if tcpb_ports else [
        _port(tcpb_base_port, "TeraChem base port", host) + i for i in range(len(sets))]
    frontend = [_port(frontend_base_port, "frontend base port", host) + i for i in range(len(sets))]
    owners: dict[int, str] = {}
    for number, (server_port, frontend_port) in enumerate(zip(tcpb, frontend, strict=True)):
        for port, what in ((server_port, "TeraChem"), (frontend_port, "frontend")):
            name = f"{what} port of GPU set {number + 1}"
            if port in owners:
                raise AnsibleFilterError(f"{host}: port collision: {port} is both the {owners[port]} and the {name}")
            if port > 65535:
                raise AnsibleFilterError(f"{host}: {name} would be {port}, beyond 65535")
            owners[port] = name
    plan = []
    for number, entry in enumerate(sets):
        name = entry.get("name", "") if isinstance(entry, dict) else ""
        if not _SAFE_NAME.match(name):
            raise AnsibleFilterError(f"{host}: GPU set {entry!r} has no usable name")
        plan.append({**entry,
                     "instance": f"terachem-{name}",
                     "scratch_dir": posixpath.join(posixpath.normpath(scratch_root), "scratch", f"{host}-{name}"),
                     "worker": f"worker-{name}",
                     "celery_name": f"terachem@{host}-{name}",
                     "port": tcpb[number],
                     "frontend_port": frontend[number]})
    return plan


class FilterModule:
    """terafleet instance naming filter."""

    def filters(self) -> dict:
        return {"instance_plan": instance_plan}
