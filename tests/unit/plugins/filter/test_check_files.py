"""check_files: the check scripts, the watchdog's state directory and both cron entries."""

import re
import shlex
import subprocess

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import NODE_CHECKS, preflight_node, settings

from ansible_collections.terafleet.cluster.plugins.filter.check_files import FilterModule, check_files


def by_path(files):
    return {entry["path"]: entry for entry in files}


def test_a_gpu_node_gets_both_scripts_and_both_cron_entries():
    files = by_path(check_files(preflight_node(), NODE_CHECKS, "gpu01"))
    assert files["/usr/local/sbin/terafleet-watchdog"] == {"path": "/usr/local/sbin/terafleet-watchdog",
                                                            "content": "#!/usr/bin/python3\n", "mode": "0755"}
    assert files["/var/lib/terafleet"] == {"path": "/var/lib/terafleet", "state": "directory", "mode": "0700"}
    assert files["/etc/cron.d/terafleet-checks-disk"]["content"] == (
        "# terafleet: the $LSTOR check (node_checks_disk_interval_minutes: 15)\n"
        "*/15 * * * * root /usr/local/sbin/terafleet-disk-check --path /lstor --scratch-root /lstor/terafleet/scratch"
        " --max-percent 85 --min-free-gb 50 --prune-age-hours 72 2>&1 | logger -t terafleet-disk-check\n")
    assert files["/etc/cron.d/terafleet-checks-watchdog"]["content"] == (
        "# terafleet: the restart watchdog (node_checks_watchdog_interval_minutes: 1)\n"
        "* * * * * root flock --wait 60 /var/lib/terafleet/watchdog.lock /usr/local/sbin/terafleet-watchdog"
        " --state-file /var/lib/terafleet/watchdog.json --max-restarts 5 --window 3600 --watch 50 --every 5"
        " 2>&1 | logger -t terafleet-watchdog\n")


def test_a_node_without_gpus_loses_the_disk_check():
    files = by_path(check_files(preflight_node(gpu_node=False), NODE_CHECKS, "head01"))
    disk = "/etc/cron.d/terafleet-checks-disk"
    assert files[disk] == {"path": disk, "state": "absent"}
    assert "content" in files["/etc/cron.d/terafleet-checks-watchdog"]


def test_a_webhook_a_slower_watchdog_and_no_polling():
    files = by_path(check_files(preflight_node(), settings(NODE_CHECKS, webhook_url="https://chat.example/hook?a=1&b=2",
                                                           watchdog_interval_minutes=5, watchdog_poll_seconds=0,
                                                           disk_min_free_gb=0.5), "gpu01"))
    watchdog = files["/etc/cron.d/terafleet-checks-watchdog"]["content"].splitlines()[1]
    assert watchdog.startswith("*/5 * * * * root ") and "--watch" not in watchdog
    assert "--webhook 'https://chat.example/hook?a=1&b=2'" in watchdog
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


@pytest.mark.parametrize("url", ["https://chat.example/hook?token=a%2Fb%25c&x=1",
                                 "https://chat.example/it's \"quoted\" #1 $HOME `id`"])
def test_a_webhook_with_cron_and_shell_characters_reaches_the_watchdog_unchanged(url):
    files = by_path(check_files(preflight_node(), settings(NODE_CHECKS, webhook_url=url), "gpu01"))
    for path in ("/etc/cron.d/terafleet-checks-watchdog", "/etc/cron.d/terafleet-checks-disk"):
        argv = cron_argv(files[path]["content"].splitlines()[1])
        assert argv[argv.index("--webhook") + 1] == url


@pytest.mark.parametrize("url", ["https://chat.example/hook\nevil", "https://chat.example/\rhook"])
def test_a_webhook_no_cron_line_can_carry_is_refused(url):
    with pytest.raises(AnsibleFilterError, match="node_checks_webhook_url contains a line break"):
        check_files(preflight_node(), settings(NODE_CHECKS, webhook_url=url), "gpu01")


def test_disabled_checks_lose_both_cron_entries():
    assert check_files(preflight_node(), settings(NODE_CHECKS, enabled="false"), "gpu01") == [
        {"path": "/etc/cron.d/terafleet-checks-disk", "state": "absent"},
        {"path": "/etc/cron.d/terafleet-checks-watchdog", "state": "absent"}]


@pytest.mark.parametrize("changes, message", [
    ({"disk_interval_minutes": 0}, "node_checks_disk_interval_minutes must be at least 1, got 0"),
    ({"disk_max_percent": "lots"}, "node_checks_disk_max_percent must be a number, got 'lots'"),
    ({"bin_dir": "sbin"}, "node_checks_bin_dir must be an absolute path"),
    ({"scripts": {"terafleet-watchdog": ""}}, "node_checks_scripts lacks the content of ['terafleet-disk-check']"),
    ({"watchdog_max_restarts": None}, "node_checks_watchdog_max_restarts is not set"),
])
def test_bad_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError) as error:
        check_files(preflight_node(), settings(NODE_CHECKS, **changes), "gpu01")
    assert message in str(error.value)


def test_registered_as_a_filter():
    assert FilterModule().filters()["check_files"] is check_files
