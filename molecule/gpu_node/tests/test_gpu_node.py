"""A converged GPU node: Docker with the NVIDIA runtime merged in, GPUs by device request, scratch on $LSTOR."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from scenario import playbook  # noqa: E402

testinfra_hosts = ["ansible://gpu_nodes"]

IMAGE = "registry:5000/terafleet/base:bookworm"
HOOK_RECORD = "/var/log/nvidia-container-toolkit/hook.jsonl"


def hook_entries(host, container_id, event):
    entries = [json.loads(line) for line in host.file(HOOK_RECORD).content_string.splitlines()]
    return [e for e in entries if e["id"] == container_id and e["event"] == event]


def run_and_record(host, docker_args):
    """Run a container to its end; its output and the hook's start record, once the hook also recorded
    its stop."""
    container_id = host.check_output(f"docker create {docker_args}")
    try:
        output = host.check_output(f"docker start --attach {container_id}")
    finally:
        host.run(f"docker rm -f {container_id}")
    starts = hook_entries(host, container_id, "start")
    assert len(starts) == 1, f"hook ran {len(starts)} times for {container_id}"
    deadline = time.monotonic() + 10
    while not hook_entries(host, container_id, "stop") and time.monotonic() < deadline:
        time.sleep(0.2)
    stops = hook_entries(host, container_id, "stop")
    assert len(stops) == 1 and stops[0]["time"] > starts[0]["time"], f"no stop recorded for {container_id}"
    return output, starts[0]


def test_daemon_json_keeps_planted_keys_and_gains_runtime(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["labels"] == ["planted-by=molecule"]
    assert config["max-concurrent-downloads"] == 5
    assert config["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert config["insecure-registries"] == ["registry:5000"]
    assert config["live-restore"] is True
    assert "default-runtime" not in config


def test_docker_registered_the_nvidia_runtime(host):
    runtimes = json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))
    assert runtimes["nvidia"]["path"] == "nvidia-container-runtime"


def test_device_request_sees_only_the_gpus_it_asked_for(host):
    output, entry = run_and_record(host, f"--gpus '\"device=2,3\"' {IMAGE} printenv NVIDIA_VISIBLE_DEVICES")
    assert output == "2,3"
    assert entry["devices"] == ["2", "3"]


def test_nvidia_runtime_path_also_records_gpus(host):
    output, entry = run_and_record(host, f"--runtime=nvidia -e NVIDIA_VISIBLE_DEVICES=1 {IMAGE} "
                                         "printenv NVIDIA_VISIBLE_DEVICES")
    assert output == "1"
    assert entry["devices"] == ["1"]


def test_gpu_the_node_lacks_is_refused(host):
    result = host.run(f"docker run --rm --gpus '\"device=7\"' {IMAGE} true")
    assert result.rc != 0
    assert "7: unknown device" in result.stderr


def test_container_without_gpus_is_not_touched_by_the_hook(host):
    before = host.file(HOOK_RECORD).content_string
    assert host.check_output(f"docker run --rm {IMAGE} printenv NVIDIA_VISIBLE_DEVICES || echo none") == "none"
    assert host.file(HOOK_RECORD).content_string == before


def test_toolkit_came_from_the_signed_repository(host):
    assert host.package("nvidia-container-toolkit").is_installed
    sources = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.list").content_string
    assert "signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.asc" in sources
    keyring = host.file("/usr/share/keyrings/nvidia-container-toolkit-keyring.asc")
    assert keyring.is_file and keyring.size > 0
    policy = host.check_output("apt-cache policy nvidia-container-toolkit")
    assert "http://aptrepo/stable/deb/" in policy
    update = host.run("apt-get update -o Dir::Etc::sourcelist=sources.list.d/nvidia-container-toolkit.list "
                      "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0")
    assert update.rc == 0, update.stderr
    assert "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr


def test_dev_char_symlinks_rule_is_persistent(host):
    rule = host.file("/etc/udev/rules.d/71-nvidia-dev-char.rules")
    assert rule.mode == 0o644
    assert "nvidia-ctk system create-dev-char-symlinks --create-all" in rule.content_string


def test_lstor_is_its_own_mount(host):
    mount = json.loads(host.check_output("findmnt --json --output TARGET,FSTYPE --target /lstor"))
    assert mount["filesystems"][0] == {"target": "/lstor", "fstype": "tmpfs"}


@pytest.mark.parametrize("gpu_set", ["gpu0-1", "gpu2-3"])
def test_each_gpu_set_has_its_own_scratch_directory(host, gpu_set):
    directory = host.file(f"/lstor/terafleet/scratch/tf-gpu-node-{gpu_set}")
    assert directory.is_directory
    assert directory.mode == 0o750
    assert directory.user == "root"


def test_only_the_planned_scratch_exists(host):
    assert sorted(host.check_output("ls /lstor/terafleet/scratch").split()) == ["tf-gpu-node-gpu0-1",
                                                                                 "tf-gpu-node-gpu2-3"]


@pytest.mark.parametrize("gpu_set", ["gpu0-1", "gpu2-3"])
def test_scratch_volume_is_bound_to_its_directory(host, gpu_set):
    volume = json.loads(host.check_output(f"docker volume inspect terafleet-scratch-{gpu_set}"))[0]
    assert volume["Options"] == {"device": f"/lstor/terafleet/scratch/tf-gpu-node-{gpu_set}",
                                 "o": "bind", "type": "none"}
    marker = f"written-through-volume-{gpu_set}"
    host.check_output(f"docker run --rm -v terafleet-scratch-{gpu_set}:/scratch {IMAGE} touch /scratch/{marker}")
    written = host.file(f"/lstor/terafleet/scratch/tf-gpu-node-{gpu_set}/{marker}")
    try:
        assert written.exists
    finally:
        host.run(f"rm -f {written.path}")


def exporter(host) -> tuple[str, list[str]]:
    """node-exporter's main PID and the addresses it listens on."""
    pid = host.check_output("systemctl show -p MainPID --value prometheus-node-exporter.service")
    listening = [line.split()[3] for line in host.check_output("ss -Hltnp").splitlines() if "prometheus-node" in line]
    return pid, listening


def test_node_exporter_restarts_for_its_own_options_only(host):
    converge = ("molecule/gpu_node/converge.yml", "--limit", "tf-gpu-node", "--tags", "node_checks")
    pid, listening = exporter(host)
    assert [address.rsplit(":", 1)[1] for address in listening] == ["9100"], listening
    try:
        # The disk check's cron line changes; node-exporter's options do not.
        other = playbook(*converge, "-e", "node_checks_disk_max_percent=91")
        assert other.returncode == 0 and "changed=1" in other.stdout, other.stdout[-3000:]
        assert exporter(host) == (pid, listening)
        moved = playbook(*converge, "-e", "node_checks_exporter_port=9109")
        assert moved.returncode == 0, moved.stdout[-3000:]
        moved_pid, moved_listening = exporter(host)
        assert moved_pid != pid
        assert [address.rsplit(":", 1)[1] for address in moved_listening] == ["9109"], moved_listening
    finally:
        restored = playbook(*converge)
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert [address.rsplit(":", 1)[1] for address in exporter(host)[1]] == ["9100"]
