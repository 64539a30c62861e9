"""The cron checks of one node: the scripts, the watchdog's state directory and the two cron entries."""

from __future__ import annotations

DOCUMENTATION = r"""
name: check_files
short_description: Plan a node's cron checks ($LSTOR, restart watchdog, metrics) as files
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the node_checks role's settings into the entries M(terafleet.cluster.node_files) takes - the check
    scripts and the module they share, the watchdog's state directory, the alert receivers' file
    (C(/etc/terafleet/alerts.json), readable by root only, since a webhook URL is a secret), and the
    files in C(/etc/cron.d) that schedule the checks.
  - The disk check and the node metrics (GPUs, $LSTOR) are scheduled on GPU nodes only; the watchdog on
    every node. A check that is off loses its cron entry (its script stays, unused). With metrics on, each
    check writes its metrics file in C(metrics_dir) for node-exporter's textfile collector. Output goes to
    syslog through C(logger).
  - A setting that is missing, null or of the wrong type fails with the inventory variable's name
    (C(node_checks_<setting>)).
positional: settings, host
options:
  _input:
    description: C(preflight_node), the node fact the preflight role publishes (C(gpu_node), C(lstor_path),
      C(scratch_root), C(instances)).
    type: dict
    required: true
  settings:
    description:
      - The node_checks role's variables without their C(node_checks_) prefix - C(enabled), C(bin_dir),
        C(state_dir), C(webhook_url), C(webhook_body), C(alertmanager_url), C(disk_interval_minutes),
        C(disk_max_percent), C(disk_min_free_gb), C(prune_age_hours), C(watchdog_interval_minutes),
        C(watchdog_poll_seconds), C(watchdog_probe_seconds), C(watchdog_hang_seconds), C(watchdog_max_restarts),
        C(watchdog_window_seconds), C(metrics_enabled),
        C(metrics_dir), C(metrics_every_seconds).
      - C(scripts), a dict of each script's name (C(terafleet-disk-check), C(terafleet-watchdog),
        C(terafleet-node-metrics), C(terafleet_checks.py)) to its content.
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

import json
import posixpath
import shlex
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import Settings

SETTINGS = ("enabled", "bin_dir", "state_dir", "webhook_url", "webhook_body", "alertmanager_url",
            "disk_interval_minutes", "disk_max_percent", "disk_min_free_gb", "prune_age_hours",
            "watchdog_interval_minutes", "watchdog_poll_seconds", "watchdog_probe_seconds", "watchdog_hang_seconds",
            "watchdog_max_restarts", "watchdog_window_seconds",
            "metrics_enabled", "metrics_dir", "metrics_every_seconds", "scripts")
SCRIPTS = ("terafleet-disk-check", "terafleet-watchdog", "terafleet-node-metrics")
MODULE = "terafleet_checks.py"
ALERTS_FILE = "/etc/terafleet/alerts.json"
DISK_CRON = "/etc/cron.d/terafleet-checks-disk"
WATCHDOG_CRON = "/etc/cron.d/terafleet-checks-watchdog"
METRICS_CRON = "/etc/cron.d/terafleet-checks-metrics"
PLACEHOLDERS = ("{message}", "{alert}", "{severity}", "{node}", "{source}")


def command(words: list[str]) -> str:
    """A cron line's command: each word shell-quoted, and `%` escaped (cron turns a bare one into a newline)."""
    return " ".join(shlex.quote(word) for word in words).replace("%", "\\%")


def url(s: Settings, name: str) -> str:
    value = s.str(name, empty=True)
    if value and not value.startswith(("http://", "https://")):
        raise s.fail(name, f"is {value!r}, not an http:// or https:// URL")
    return value


def alert_receivers(s: Settings) -> dict:
    """The content of ALERTS_FILE."""
    body = s.raw("webhook_body")
    if not isinstance(body, Mapping) or not body:
        raise s.fail("webhook_body", "must be a mapping, the JSON body sent to the webhook, such as "
                                     "{text: '{message}'}")
    try:
        body = json.loads(json.dumps(body))
    except (TypeError, ValueError) as error:
        raise s.fail("webhook_body", f"cannot be sent as JSON: {error}") from error
    if not any(placeholder in json.dumps(body) for placeholder in PLACEHOLDERS):
        raise s.fail("webhook_body", f"holds none of {', '.join(PLACEHOLDERS)}: every alert would read the same")
    return {"webhook_url": url(s, "webhook_url"), "webhook_body": body, "alertmanager_url": url(s, "alertmanager_url")}


def check_files(node: dict, settings: dict, host: str) -> list[dict]:
    """Return the node_files entries of the node's checks; see DOCUMENTATION."""
    s = Settings(settings, "node_checks_", host, SETTINGS)
    if not isinstance(node, Mapping):
        raise AnsibleFilterError(f"{host}: preflight_node is missing; run the preflight role first")
    if not s.bool("enabled"):
        return [{"path": cron, "state": "absent"} for cron in (DISK_CRON, WATCHDOG_CRON, METRICS_CRON)]
    bin_dir, state_dir = s.path("bin_dir"), s.path("state_dir")
    scripts = s.raw("scripts")
    missing = [name for name in (*SCRIPTS, MODULE)
               if not isinstance(scripts, Mapping) or not isinstance(scripts.get(name), str)]
    if missing:
        raise s.fail("scripts", f"lacks the content of {missing}")
    receivers = alert_receivers(s)
    metrics = s.bool("metrics_enabled")
    metrics_dir = s.path("metrics_dir") if metrics else ""
    alerts = ["--alerts", ALERTS_FILE]
    files: list[dict] = [{"path": f"{bin_dir}/{name}", "content": scripts[name], "mode": "0755"} for name in SCRIPTS]
    files += [{"path": f"{bin_dir}/{MODULE}", "content": scripts[MODULE], "mode": "0644"},
              {"path": state_dir, "state": "directory", "mode": "0700"},
              {"path": posixpath.dirname(ALERTS_FILE), "state": "directory", "mode": "0755"},
              {"path": ALERTS_FILE, "content": json.dumps(receivers, indent=1, sort_keys=True) + "\n", "mode": "0600"}]
    if metrics:
        files.append({"path": metrics_dir, "state": "directory", "mode": "0755"})

    def metrics_file(name: str) -> list[str]:
        return ["--metrics-file", f"{metrics_dir}/{name}.prom"] if metrics else []

    if node.get("gpu_node"):
        every = s.int("disk_interval_minutes", minimum=1)
        disk = command([f"{bin_dir}/terafleet-disk-check", "--path", str(node.get("lstor_path") or ""),
                        "--scratch-root", f"{node.get('scratch_root') or ''}/scratch",
                        "--max-percent", s.number("disk_max_percent"), "--min-free-gb", s.number("disk_min_free_gb"),
                        "--prune-age-hours", s.number("prune_age_hours"), *alerts,
                        "--state-file", f"{state_dir}/disk-check.json", *metrics_file("terafleet_disk")])
        files.append({"path": DISK_CRON, "mode": "0644",
                      "content": f"# terafleet: the $LSTOR check (node_checks_disk_interval_minutes: {every})\n"
                                 f"*/{every} * * * * root {disk} 2>&1 | logger -t terafleet-disk-check\n"})
    else:
        files.append({"path": DISK_CRON, "state": "absent"})

    if node.get("gpu_node") and metrics:
        sample_every = s.int("metrics_every_seconds", minimum=1, maximum=60)
        gpu_sets = [f"{instance['name']}={','.join(str(d) for d in instance['devices'])}"
                    for instance in node.get("instances") or []]
        node_metrics = command([f"{bin_dir}/terafleet-node-metrics", *metrics_file("terafleet_node"),
                                "--lstor", str(node.get("lstor_path") or ""),
                                *[word for spec in gpu_sets for word in ("--gpu-set", spec)],
                                "--watch", "50", "--every", str(sample_every)])
        lock = command(["flock", "--nonblock", f"{state_dir}/node-metrics.lock"])
        files.append({"path": METRICS_CRON, "mode": "0644",
                      "content": f"# terafleet: GPU and $LSTOR metrics (node_checks_metrics_every_seconds: "
                                 f"{sample_every})\n"
                                 f"* * * * * root {lock} {node_metrics} 2>&1 | logger -t terafleet-node-metrics\n"})
    else:
        files.append({"path": METRICS_CRON, "state": "absent"})

    interval, poll = s.int("watchdog_interval_minutes", minimum=1), s.int("watchdog_poll_seconds", minimum=0)
    # Each run watches until shortly before cron starts the next (Docker's events, a pass every poll seconds,
    # the servers' STATUS probes); the lock keeps two runs from overlapping.
    probe, hang = s.int("watchdog_probe_seconds", minimum=0), s.int("watchdog_hang_seconds", minimum=0)
    watch = ["--watch", str(interval * 60 - 10), "--every", str(poll), "--probe-every", str(probe),
             "--hang-after", str(hang)] if poll > 0 else []
    watchdog = command([f"{bin_dir}/terafleet-watchdog", "--state-file", f"{state_dir}/watchdog.json",
                        "--max-restarts", str(s.int("watchdog_max_restarts", minimum=1)),
                        "--window", str(s.int("watchdog_window_seconds", minimum=1)), *alerts,
                        *metrics_file("terafleet_containers"), *watch])
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
