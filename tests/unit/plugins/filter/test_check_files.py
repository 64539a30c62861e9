"""check_files: the check scripts, the alert receivers, the watchdog's state directory and the cron entries."""

import json
import re
import shlex
import subprocess

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import NODE_CHECKS, preflight_node, settings

from ansible_collections.terafleet.cluster.plugins.filter.check_files import FilterModule, check_files


def by_path(files):
    return {entry["path"]: entry for entry in files}


def test_a_gpu_node_gets_the_scripts_the_receivers_and_three_cron_entries():
    files = by_path(check_files(preflight_node(size=2), NODE_CHECKS, "gpu01"))
    assert files["/usr/local/sbin/terafleet-watchdog"] == {"path": "/usr/local/sbin/terafleet-watchdog",
                                                            "content": "#!/usr/bin/python3\n", "mode": "0755"}
    # The module the scripts share is imported, not run.
    assert files["/usr/local/sbin/terafleet_checks.py"]["mode"] == "0644"
    assert files["/var/lib/terafleet"] == {"path": "/var/lib/terafleet", "state": "directory", "mode": "0700"}
    assert files["/var/lib/prometheus/node-exporter"]["state"] == "directory"
    assert files["/etc/terafleet"] == {"path": "/etc/terafleet", "state": "directory", "mode": "0755"}
    # No receiver: the file says so, readable by root only.
    receivers = files["/etc/terafleet/alerts.json"]
    assert receivers["mode"] == "0600"
    assert json.loads(receivers["content"]) == {"webhook_url": "", "webhook_body": {"text": "{message}"},
                                                "alertmanager_url": ""}
    assert files["/etc/cron.d/terafleet-checks-disk"]["content"] == (
        "# terafleet: the $LSTOR check (node_checks_disk_interval_minutes: 15)\n"
        "*/15 * * * * root /usr/local/sbin/terafleet-disk-check --path /lstor --scratch-root /lstor/terafleet/scratch"
        " --max-percent 85 --min-free-gb 50 --prune-age-hours 72 --alerts /etc/terafleet/alerts.json"
        " --state-file /var/lib/terafleet/disk-check.json"
        " --metrics-file /var/lib/prometheus/node-exporter/terafleet_disk.prom 2>&1 | logger -t terafleet-disk-check\n")
    assert files["/etc/cron.d/terafleet-checks-watchdog"]["content"] == (
        "# terafleet: the restart watchdog (node_checks_watchdog_interval_minutes: 1)\n"
        "* * * * * root flock --wait 60 /var/lib/terafleet/watchdog.lock /usr/local/sbin/terafleet-watchdog"
        " --state-file /var/lib/terafleet/watchdog.json --max-restarts 5 --window 3600"
        " --alerts /etc/terafleet/alerts.json"
        " --metrics-file /var/lib/prometheus/node-exporter/terafleet_containers.prom"
        " --watch 50 --every 60 --probe-every 15 --hang-after 15"
        " 2>&1 | logger -t terafleet-watchdog\n")
    # The GPUs' metrics carry the set each GPU serves.
    assert files["/etc/cron.d/terafleet-checks-metrics"]["content"] == (
        "# terafleet: GPU and $LSTOR metrics (node_checks_metrics_every_seconds: 20)\n"
        "* * * * * root flock --nonblock /var/lib/terafleet/node-metrics.lock /usr/local/sbin/terafleet-node-metrics"
        " --metrics-file /var/lib/prometheus/node-exporter/terafleet_node.prom --lstor /lstor"
        " --gpu-set gpu0-1=0,1 --gpu-set gpu2-3=2,3 --watch 50 --every 20 2>&1 | logger -t terafleet-node-metrics\n")


def test_a_node_without_gpus_keeps_only_the_watchdog():
    files = by_path(check_files(preflight_node(gpu_node=False), NODE_CHECKS, "head01"))
    for cron in ("/etc/cron.d/terafleet-checks-disk", "/etc/cron.d/terafleet-checks-metrics"):
        assert files[cron] == {"path": cron, "state": "absent"}
    assert "--metrics-file" in files["/etc/cron.d/terafleet-checks-watchdog"]["content"]


def test_metrics_off_write_no_metrics_file():
    files = by_path(check_files(preflight_node(), settings(NODE_CHECKS, metrics_enabled=False), "gpu01"))
    assert files["/etc/cron.d/terafleet-checks-metrics"] == {"path": "/etc/cron.d/terafleet-checks-metrics",
                                                               "state": "absent"}
    assert "/var/lib/prometheus/node-exporter" not in files
    assert not any("--metrics-file" in entry.get("content", "") for entry in files.values()
                   if entry["path"].startswith("/etc/cron.d/"))


def test_receivers_a_slower_watchdog_and_no_polling():
    body = {"username": "terafleet", "text": ":warning: {node}: {message}"}
    files = by_path(check_files(preflight_node(), settings(NODE_CHECKS, webhook_url="https://chat.example/hook?a=1&b=2",
                                                           webhook_body=body, alertmanager_url="http://head:9093",
                                                           watchdog_interval_minutes=5, watchdog_poll_seconds=0,
                                                           disk_min_free_gb=0.5), "gpu01"))
    watchdog = files["/etc/cron.d/terafleet-checks-watchdog"]["content"].splitlines()[1]
    assert watchdog.startswith("*/5 * * * * root ") and "--watch" not in watchdog
    # The webhook's URL, a secret, is in the root-only file, never in a cron line anyone can read.
    assert "chat.example" not in watchdog
    assert json.loads(files["/etc/terafleet/alerts.json"]["content"]) == {
        "webhook_url": "https://chat.example/hook?a=1&b=2", "webhook_body": body, "alertmanager_url": "http://head:9093"}
    assert "--min-free-gb 0.5" in files["/etc/cron.d/terafleet-checks-disk"]["content"]


def cron_argv(line: str) -> list[str]:
    """What cron runs for a crontab line (crontab(5)): the command up to the first bare `%`, each `\\%`
    unescaped; then the shell's words, as sh itself splits them."""
    command = line.split(" root ", 1)[1]
    command = re.split(r"(?<!\\)%", command, maxsplit=1)[0].replace("\\%", "%")
    command = command.split(" 2>&1 | ", 1)[0]
    shown = subprocess.run(["sh", "-c", 'for word in "$@"; do printf "%s\\0" "$word"; done', "sh",
                            *shlex.split(command)], capture_output=True, text=True, check=True).stdout
    return shown.split("\0")[:-1]


def test_a_gpu_set_and_lstor_with_cron_and_shell_characters_reach_the_script_unchanged():
    node = preflight_node(size=2)
    node["lstor_path"] = "/scratch 50%/it's $HOME"
    node["instances"][0]["name"] = "set`id`"
    files = by_path(check_files(node, NODE_CHECKS, "gpu01"))
    argv = cron_argv(files["/etc/cron.d/terafleet-checks-metrics"]["content"].splitlines()[1])
    assert argv[argv.index("--lstor") + 1] == "/scratch 50%/it's $HOME"
    assert argv[argv.index("--gpu-set") + 1] == "set`id`=0,1"


def test_disabled_checks_lose_every_cron_entry():
    assert check_files(preflight_node(), settings(NODE_CHECKS, enabled="false"), "gpu01") == [
        {"path": "/etc/cron.d/terafleet-checks-disk", "state": "absent"},
        {"path": "/etc/cron.d/terafleet-checks-watchdog", "state": "absent"},
        {"path": "/etc/cron.d/terafleet-checks-metrics", "state": "absent"}]


@pytest.mark.parametrize("changes, message", [
    ({"disk_interval_minutes": 0}, "node_checks_disk_interval_minutes must be at least 1, got 0"),
    ({"disk_max_percent": "lots"}, "node_checks_disk_max_percent must be a number, got 'lots'"),
    ({"bin_dir": "sbin"}, "node_checks_bin_dir must be an absolute path"),
    ({"scripts": {"terafleet-watchdog": "", "terafleet-node-metrics": "", "terafleet_checks.py": ""}},
     "node_checks_scripts lacks the content of ['terafleet-disk-check']"),
    ({"watchdog_max_restarts": None}, "node_checks_watchdog_max_restarts is not set"),
    ({"webhook_url": "chat.example/hook"}, "node_checks_webhook_url is 'chat.example/hook', not an http:// or https://"),
    ({"alertmanager_url": "head:9093"}, "node_checks_alertmanager_url is 'head:9093', not an http:// or https://"),
    ({"webhook_body": "text"}, "node_checks_webhook_body must be a mapping"),
    ({"webhook_body": {"text": "disk full"}}, "node_checks_webhook_body holds none of {message}"),
    ({"webhook_body": None}, "node_checks_webhook_body is not set"),
    ({"metrics_every_seconds": 0}, "node_checks_metrics_every_seconds must lie in 1-60, got 0"),
    ({"metrics_dir": "textfiles"}, "node_checks_metrics_dir must be an absolute path"),
])
def test_bad_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError) as error:
        check_files(preflight_node(), settings(NODE_CHECKS, **changes), "gpu01")
    assert message in str(error.value)


def test_registered_as_a_filter():
    assert FilterModule().filters()["check_files"] is check_files
