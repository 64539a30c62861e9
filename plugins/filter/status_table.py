"""One node's status, as status.yml prints it: a header line and a table whose columns line up."""

from __future__ import annotations

DOCUMENTATION = r"""
name: status_table
short_description: Lay out a node's status as a plain-text table
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the node status the status role assembles into lines of text - the node's $LSTOR, the shared
    queue's depth and consumers, kept scratch and other containers, then a table with a row per GPU set.
  - Every column is as wide as its widest cell, columns are two spaces apart, no line ends in a space, so
    the table reads the same in any terminal and the YAML callback prints it as a literal block.
  - A value that is missing prints as C(-).
options:
  _input:
    description:
      - The node's status - C(node), C(lstor_used), C(lstor_free_gb), C(shared_queue) (C(name), C(ready),
        C(consumers), or null when no worker could ask the broker), C(retired_scratch), C(others), and
        C(servers), a row per GPU set with C(gpu_set), C(gpus), C(gpu_use), C(server), C(server_state),
        C(worker), C(worker_state), C(active_tasks), C(queued), C(restarts_docker), C(restarts_watchdog),
        C(crash_loop).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Print the node's table
  ansible.builtin.debug:
    msg: "{{ _status_node | terafleet.cluster.status_table }}"
"""

RETURN = r"""
_value:
  description: The lines, joined by newlines.
  type: str
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# (header, key) per column, in order.
COLUMNS = (("GPU set", "gpu_set"), ("GPUs", "gpus"), ("GPU %", "gpu_use"), ("server", "server"),
           ("health", "server_state"), ("worker", "worker"), ("state", "worker_state"), ("tasks", "active_tasks"),
           ("queued", "queued"), ("restarts", "restarts_docker"), ("watchdog", "watchdog"))
TITLES = tuple(title for title, key in COLUMNS)
KEYS = tuple(key for title, key in COLUMNS)


def cell(value) -> str:
    return "-" if value is None or value == "" else str(value)


def header(status: Mapping) -> list[str]:
    if status.get("lstor_used", "-") != "-":
        disk = f"$LSTOR {status['lstor_used']} used, {status.get('lstor_free_gb', '-')} GB free"
    else:
        disk = "no $LSTOR (not a GPU node)"
    queue = status.get("shared_queue")
    waiting = (f"queue {queue['name']}: {cell(queue.get('ready'))} waiting, {cell(queue.get('consumers'))} consumers"
               if isinstance(queue, Mapping) else "queue: not read (no worker here answered)")
    others = " ".join(status.get("others") or []) or "-"
    lines = [f"node {status['node']}: {disk}; {waiting}; other containers: {others}"]
    if status.get("retired_scratch"):
        lines.append("retired GPU sets' scratch, kept: " + " ".join(status["retired_scratch"]))
    return lines


def status_table(status: Mapping) -> str:
    """Return the node's header and table; see DOCUMENTATION."""
    if not isinstance(status, Mapping) or "node" not in status:
        raise AnsibleFilterError(f"status_table takes a node's status with a 'node', got {status!r}")
    rows = [[cell(({**row, "watchdog": ("LOOP " if row.get("crash_loop") else "") + cell(row.get("restarts_watchdog"))}
                   ).get(key)) for key in KEYS] for row in status.get("servers") or []]
    table = [list(TITLES), *rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(COLUMNS))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in table]
    return "\n".join(header(status) + (lines if rows else ["no GPU set on this node"]))


class FilterModule:
    """terafleet's status table."""

    def filters(self) -> dict:
        return {"status_table": status_table}
