"""The cron checks of one node: the scripts, the watchdog's state directory and the two cron entries."""

from __future__ import annotations

DOCUMENTATION = r"""
name: check_files
short_description: Plan a node's cron checks ($LSTOR usage, restart watchdog) as files
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the node_checks role's settings into the entries M(terafleet.cluster.node_files) takes - both
    check scripts, the watchdog's state directory, and the files in C(/etc/cron.d) that schedule them.
  - The disk check is scheduled on GPU nodes only; a check that is off loses its cron entry (its script
    stays, unused). Output goes to syslog through C(logger).
  - A setting that is missing, null or of the wrong type fails with the inventory variable's name
    (C(node_checks_<setting>)).
positional: settings, host
options:
  _input:
    description: C(preflight_node), the node fact the preflight role publishes (C(gpu_node), C(lstor_path),
      C(scratch_root)).
    type: dict
    required: true
  settings:
    description:
      - The node_checks role's variables without their C(node_checks_) prefix - C(enabled), C(bin_dir),
        C(state_dir), C(webhook_url), C(disk_interval_minutes), C(disk_max_percent), C(disk_min_free_gb),
        C(prune_age_hours), C(watchdog_interval_minutes), C(watchdog_poll_seconds),
        C(watchdog_max_restarts), C(watchdog_window_seconds).
      - C(scripts), a dict of each script's name (C(terafleet-disk-check), C(terafleet-watchdog)) to its
        content.
    type: dict
    required: true
  host:
    description: Inventory host name, for error messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the node's checks
  ansible.builtin.set_fact:
    checks: "{{ preflight_node | terafleet.cluster.check_files(settings, inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: Entries for M(terafleet.cluster.node_files), in order.
  type: list
  elements: dict
  sample:
    - {path: /etc/cron.d/terafleet-checks-watchdog, mode: "0644",
       content: "# terafleet: the restart watchdog (node_checks_watchdog_interval_minutes: 1)\n* * * * * root ..."}
"""

import shlex
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import Settings

SETTINGS = ("enabled", "bin_dir", "state_dir", "webhook_url", "disk_interval_minutes", "disk_max_percent",
            "disk_min_free_gb", "prune_age_hours", "watchdog_interval_minutes", "watchdog_poll_seconds",
            "watchdog_max_restarts", "watchdog_window_seconds", "scripts")
SCRIPTS = ("terafleet-disk-check", "terafleet-watchdog")
DISK_CRON = "/etc/cron.d/terafleet-checks-disk"
WATCHDOG_CRON = "/etc/cron.d/terafleet-checks-watchdog"


def command(words: list[str]) -> str:
    """A cron line's command: each word shell-quoted, and `%` escaped (cron turns a bare one into a newline)."""
    return " ".join(shlex.quote(word) for word in words).replace("%", "\\%")


def check_files(node: dict, settings: dict, host: str) -> list[dict]:
    """Return the node_files entries of the node's checks; see DOCUMENTATION."""
    s = Settings(settings, "node_checks_", host, SETTINGS)
    if not isinstance(node, Mapping):
        raise AnsibleFilterError(f"{host}: preflight_node is missing; run the preflight role first")
    if not s.bool("enabled"):
        return [{"path": DISK_CRON, "state": "absent"}, {"path": WATCHDOG_CRON, "state": "absent"}]
    bin_dir, state_dir = s.path("bin_dir"), s.path("state_dir")
    scripts = s.raw("scripts")
    missing = [name for name in SCRIPTS if not isinstance(scripts, Mapping) or not isinstance(scripts.get(name), str)]
    if missing:
        raise s.fail("scripts", f"lacks the content of {missing}")
    webhook_url = s.str("webhook_url", empty=True)
    if any(char in webhook_url for char in "\r\n\0"):
        raise s.fail("webhook_url", "contains a line break or NUL, which no cron line can carry")
    webhook = ["--webhook", webhook_url] if webhook_url else []
    files: list[dict] = [{"path": f"{bin_dir}/{name}", "content": scripts[name], "mode": "0755"} for name in SCRIPTS]
    files.append({"path": state_dir, "state": "directory", "mode": "0700"})

    if node.get("gpu_node"):
        every = s.int("disk_interval_minutes", minimum=1)
        disk = command([f"{bin_dir}/terafleet-disk-check", "--path", str(node.get("lstor_path") or ""),
                        "--scratch-root", f"{node.get('scratch_root') or ''}/scratch",
                        "--max-percent", s.number("disk_max_percent"), "--min-free-gb", s.number("disk_min_free_gb"),
                        "--prune-age-hours", s.number("prune_age_hours"), *webhook])
        files.append({"path": DISK_CRON, "mode": "0644",
                      "content": f"# terafleet: the $LSTOR check (node_checks_disk_interval_minutes: {every})\n"
                                 f"*/{every} * * * * root {disk} 2>&1 | logger -t terafleet-disk-check\n"})
    else:
        files.append({"path": DISK_CRON, "state": "absent"})

    interval, poll = s.int("watchdog_interval_minutes", minimum=1), s.int("watchdog_poll_seconds", minimum=0)
    # Each run watches until shortly before cron starts the next; the lock keeps two runs from overlapping.
    watch = ["--watch", str(interval * 60 - 10), "--every", str(poll)] if poll > 0 else []
    watchdog = command([f"{bin_dir}/terafleet-watchdog", "--state-file", f"{state_dir}/watchdog.json",
                        "--max-restarts", str(s.int("watchdog_max_restarts", minimum=1)),
                        "--window", str(s.int("watchdog_window_seconds", minimum=1)), *webhook, *watch])
    lock = command(["flock", "--wait", "60", f"{state_dir}/watchdog.lock"])
    minute = "*" if interval == 1 else f"*/{interval}"
    files.append({"path": WATCHDOG_CRON, "mode": "0644",
                  "content": f"# terafleet: the restart watchdog (node_checks_watchdog_interval_minutes: {interval})\n"
                             f"{minute} * * * * root {lock} {watchdog} 2>&1 | logger -t terafleet-watchdog\n"})
    return files


class FilterModule:
    """terafleet's node checks plan."""

    def filters(self) -> dict:
        return {"check_files": check_files}
