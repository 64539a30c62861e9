"""The shipped alert rules and Grafana dashboard read only metrics that exist: terafleet's own (as the
node checks write them), node-exporter's `up`, and rabbitmq_prometheus' per-queue ones."""

import json
import re
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[3]
TERAFLEET = re.compile(r'\("(terafleet_[a-z_]+)", "(?:gauge|counter)"')
RABBITMQ = {"rabbitmq_detailed_queue_messages_ready", "rabbitmq_detailed_queue_messages_unacked",
            "rabbitmq_detailed_queue_consumers"}
PROMQL_WORDS = {"sum", "avg", "by", "on", "or", "and", "unless", "increase", "time", "up", "group_left"}


def written_metrics() -> set[str]:
    files = REPO / "roles" / "node_checks" / "files"
    return {name for script in files.iterdir() for name in TERAFLEET.findall(script.read_text())}


def metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"|\b(?:by|on|without|group_left)\s*\([^)]*\)", "", expr)
    return {word for word in re.findall(r"[a-z_][a-z0-9_]*", without_labels)
            if word not in PROMQL_WORDS and "_" in word}


def rules() -> list[dict]:
    template = (REPO / "roles" / "monitoring" / "templates" / "terafleet-rules.yml.j2").read_text()
    defaults = yaml.safe_load((REPO / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    rendered = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(**defaults)
    return yaml.safe_load(rendered)["groups"][0]["rules"]


def test_the_alert_rules_read_metrics_the_farm_writes():
    known = written_metrics() | RABBITMQ
    assert {"terafleet_container_crash_loop", "terafleet_gpu_utilization_percent"} <= known
    names = [rule["alert"] for rule in rules()]
    assert {"TerafleetLstorFull", "TerafleetCrashLoop", "TerafleetServerUnhealthy", "TerafleetQueueBacklog",
            "TerafleetWorkerUnreachable"} <= set(names)
    for rule in rules():
        assert metric_names(rule["expr"]) <= known, (rule["alert"], metric_names(rule["expr"]) - known)
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert "{{ $labels." in rule["annotations"]["summary"]


def test_the_dashboard_is_grafana_json_over_metrics_the_farm_writes():
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    known = written_metrics() | RABBITMQ
    assert dashboard["uid"] == "terafleet" and dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert metric_names(target["expr"]) <= known, (panel["title"], metric_names(target["expr"]) - known)
