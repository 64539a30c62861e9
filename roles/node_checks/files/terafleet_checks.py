"""Shared by terafleet's node checks: alerts, and metrics files for node-exporter's textfile collector.

Installed beside the check scripts (terafleet-watchdog, terafleet-disk-check, terafleet-node-metrics),
which import it.

Alerts go to syslog, and where /etc/terafleet/alerts.json (root, 0600: a webhook URL is a secret) says so:
- `webhook_url`: a JSON POST of `webhook_body`, a template whose strings may hold {message}, {alert},
  {severity}, {node} and {source} ({"text": "{message}"} by default: Slack, Mattermost, Rocket.Chat);
- `alertmanager_url`: Alertmanager's API (POST <url>/api/v2/alerts), one alert with the labels alertname,
  severity, node, source and the event's own (container, path), and the message as its summary;
  Alertmanager resolves it after its resolve_timeout.
A receiver that fails is logged and the check goes on.

Metrics: a file per script in the textfile directory, replaced in one rename so node-exporter never
reads half of one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import syslog
import time
from pathlib import Path

ALERTS_FILE = Path("/etc/terafleet/alerts.json")
DEFAULT_BODY = {"text": "{message}"}
SEVERITY = {syslog.LOG_ERR: "critical", syslog.LOG_WARNING: "warning", syslog.LOG_NOTICE: "info",
            syslog.LOG_INFO: "info"}
PLACEHOLDER = re.compile(r"\{(message|alert|severity|node|source)\}")
TIMEOUT = 10


def load_alerts(path: Path = ALERTS_FILE) -> dict:
    """The receivers; none when the file is absent or unreadable (that is logged)."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        syslog.syslog(syslog.LOG_ERR, f"alert receivers not read from {path}: {error}")
        return {}
    return config if isinstance(config, dict) else {}


def fill(template, values: dict[str, str]):
    """The template with each {placeholder} in its strings replaced; keys and other values unchanged."""
    if isinstance(template, str):
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def alertmanager_payload(alert: str, message: str, severity: str, node: str, source: str, labels: dict,
                         now: float) -> list[dict]:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return [{"labels": {"alertname": alert, "severity": severity, "node": node, "source": source,
                        **{key: str(value) for key, value in labels.items()}},
             "annotations": {"summary": message}, "startsAt": started}]


def post(url: str, payload) -> None:
    # Imported here: urllib.request takes most of a check's start-up, and most runs send nothing.
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT):
        pass


def send(source: str, alert: str, message: str, level: int, labels: dict | None = None,
         config: dict | None = None, now: float | None = None) -> None:
    """Log `message` and send it to the configured receivers."""
    syslog.openlog(source, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(level, message)
    print(message, flush=True)
    config = load_alerts() if config is None else config
    node, severity = socket.gethostname(), SEVERITY.get(level, "warning")
    sends = []
    if config.get("webhook_url"):
        body = fill(config.get("webhook_body") or DEFAULT_BODY,
                    {"message": message, "alert": alert, "severity": severity, "node": node, "source": source})
        sends.append((config["webhook_url"], body))
    if config.get("alertmanager_url"):
        sends.append((config["alertmanager_url"].rstrip("/") + "/api/v2/alerts",
                      alertmanager_payload(alert, message, severity, node, source, labels or {},
                                           time.time() if now is None else now)))
    for url, payload in sends:
        try:
            post(url, payload)
        except (OSError, ValueError) as error:
            syslog.syslog(syslog.LOG_WARNING, f"alert to {url} not delivered: {error}")


# -- metrics --------------------------------------------------------------------------------------------------

def _label_value(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(families: list[tuple[str, str, str, list[tuple[dict, float]]]]) -> str:
    """Prometheus text format for (name, type, help, [(labels, value)]) families, in that order."""
    lines = []
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            inner = ",".join(f'{key}="{_label_value(labels[key])}"' for key in sorted(labels))
            whole = not isinstance(value, float) or value.is_integer()
            number = str(int(value)) if whole else repr(value)
            lines.append(f"{name}{{{inner}}} {number}" if inner else f"{name} {number}")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, families: list[tuple[str, str, str, list[tuple[dict, float]]]]) -> None:
    """Replace the textfile `path` (0644) with the families, in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(exposition(families))
    temporary.chmod(0o644)
    os.replace(temporary, path)
