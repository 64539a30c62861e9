"""Bad input stops site.yml in preflight, with the host and value named, before anything on the node changes.

Each case runs the real site.yml against tf-gpu-blank, a node nothing has converged, then checks that no
file under the system's directories or $LSTOR is newer than a marker written just before the run.
"""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from scenario import tasks_outside_preflight  # noqa: E402

testinfra_hosts = ["ansible://blank_nodes"]

REPO = Path(__file__).resolve().parents[3]
NODE = "tf-gpu-blank"
WATCHED = "/etc /usr /opt /var/lib /lstor"
MARKER = "/var/tmp/terafleet-preflight-marker"
LICENSE = REPO / "molecule" / "shared" / "files" / "terachem-license.key"
VAULT_PASSWORD = REPO / "molecule" / "shared" / "files" / "vault-password"

CASES = [
    ("overlapping-sets", {"preflight_gpu_sets": [[0, 1], [1, 2]]}, "GPU sets overlap: GPU 1 is in [0, 1] and [1, 2]"),
    ("gpu-7-of-4", {"preflight_gpu_sets": [[0, 7]]},
     "names GPU 7, which this node does not have (its GPUs: 0, 1, 2, 3)"),
    ("size-3-of-4", {"preflight_gpu_set_size": 3}, "GPU set size 3 does not divide the 4 usable GPUs"),
    ("size-0", {"preflight_gpu_set_size": 0}, "GPU set size must be at least 1, got 0"),
    ("empty-set", {"preflight_gpu_sets": [[0, 1], []]}, "GPU set number 2 is empty"),
    ("unknown-uuid", {"preflight_gpu_sets": [["GPU-00000000-dead-beef-0000-000000000000"]]},
     "names GPU GPU-00000000-dead-beef-0000-000000000000, a UUID this node does not have"),
    ("lstor-missing", {"preflight_lstor_path": "/nonexistent/lstor"},
     "$LSTOR /nonexistent/lstor does not exist or is not a directory"),
    ("lstor-not-mounted", {"preflight_lstor_path": "/var/tmp"}, "$LSTOR /var/tmp is not a mount point"),
    ("lstor-too-full", {"preflight_lstor_min_free_gb": 100000}, "GB free, less than the 100000 GB required"),
    ("nvidia-smi-absent", {}, "nvidia-smi not found on this node"),
    ("license-missing", {"terachem_license_file": "/nonexistent/license.key"},
     "TeraChem license file '/nonexistent/license.key' not found on the controller"),
    ("port-collision", {"preflight_tcpb_ports": [11111, 11111]}, "port collision: 11111 is both the TeraChem port"),
    # The inventory's own pattern, broker_rabbitmq_password: "{{ vault_broker_rabbitmq_password }}", with the
    # vault variable missing: Ansible names it.
    ("undefined-vault-password", {"broker_rabbitmq_password": "{{ vault_missing_rabbitmq_password }}"},
     "'vault_missing_rabbitmq_password' is undefined"),
    ("null-password", {"broker_redis_password": None}, "broker_redis_password is null; set it (Ansible Vault)"),
    ("empty-password", {"vault_broker_rabbitmq_password": ""}, "broker_rabbitmq_password is empty"),
    ("undefined-in-terachem-env", {"terachem_env": {"OMP_NUM_THREADS": "{{ vault_missing_threads }}"}},
     "'vault_missing_threads' is undefined"),
    ("undefined-in-worker-env", {"celery_worker_env": {"SITE": "{{ missing_site_name }}"}},
     "'missing_site_name' is undefined"),
    ("bad-terachem-setting", {"terachem_gpu_mode": "mig"}, "terachem_gpu_mode must be one of"),
    # Checked against the roles' argument specs in preflight, not when the node play reaches the role.
    ("docker-source-unknown", {"docker_engine_source": "snap"},
     "value of docker_engine_source must be one of: distro, docker, got: snap"),
    ("worker-concurrency-not-a-number", {"celery_worker_concurrency": "many"},
     "argument 'celery_worker_concurrency' is of type str and we were unable to convert to int"),
    # This kernel has no NFS client (and the node no /lib/modules): the backend is refused before servers stop.
    ("nfs-without-client", {"scratch_backend": "nfs", "scratch_nfs_server": "10.1.0.20"},
     "scratch_backend is nfs but the running kernel"),
    ("nfs-without-server", {"scratch_backend": "nfs"}, "scratch_nfs_server is empty"),
    # The argument spec's choices refuse it first (scratch_plan's own rule, unit-tested, stays behind it).
    ("unknown-scratch-backend", {"scratch_backend": "ceph"},
     "value of scratch_backend must be one of: local, nfs, got: ceph"),
]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    path = tmp_path_factory.mktemp("inventory") / "hosts.yml"
    path.write_text(json.dumps({"all": {"children": {
        "gpu_nodes": {"hosts": {NODE: {"ansible_connection": "community.docker.docker"}},
                      "vars": {"preflight_gpu_set_size": 2, "preflight_lstor_min_free_gb": 0.5,
                               "terachem_license_file": str(LICENSE),
                               "broker_rabbitmq_password": "{{ vault_broker_rabbitmq_password }}",
                               "vault_broker_rabbitmq_password": "rabbitmq-test",
                               "broker_redis_password": "redis-test"}}}}}))
    return path


@contextlib.contextmanager
def nvidia_smi_hidden(host, hide):
    """Take nvidia-smi away for the duration of a case, as on a node whose driver is not installed."""
    if not hide:
        yield
        return
    host.check_output("mv /usr/bin/nvidia-smi /usr/bin/nvidia-smi.away")
    try:
        yield
    finally:
        host.check_output("mv /usr/bin/nvidia-smi.away /usr/bin/nvidia-smi")


def site(inventory, extra_vars):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(["ansible-playbook", "-i", str(inventory), "--limit", NODE, "site.yml",
                           "-e", json.dumps(extra_vars)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize("extra_vars, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_in_preflight_and_changes_nothing(host, inventory, extra_vars, message, request):
    with nvidia_smi_hidden(host, request.node.callspec.id.endswith("nvidia-smi-absent")):
        host.check_output(f"touch {MARKER}")
        result = site(inventory, extra_vars)
        changed = host.check_output(f"find {WATCHED} -xdev -newer {MARKER} -print 2>/dev/null || true")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert NODE in output
    assert tasks_outside_preflight(result.stdout) == []
    assert changed == "", f"files changed on {NODE}: {changed}"


def test_a_license_in_clear_is_warned_about_and_one_from_vault_is_not(host, inventory, tmp_path):
    clear = tmp_path / "license.key"
    clear.write_text("TERACHEM-LICENSE-IN-CLEAR\n")
    # A refused set size stops the run in preflight; the warning comes before the refusal.
    warned = site(inventory, {"terachem_license_file": str(clear), "preflight_gpu_set_size": 0})
    # The YAML callback folds a long message over lines.
    assert f"the TeraChem license {clear} is not encrypted with Ansible Vault" in " ".join(warned.stdout.split()), \
        warned.stdout[-3000:]
    assert "TERACHEM-LICENSE-IN-CLEAR" not in warned.stdout + warned.stderr
    quiet = site(inventory, {"preflight_gpu_set_size": 0})
    assert "GPU set size must be at least 1" in quiet.stdout + quiet.stderr
    assert f"the TeraChem license {LICENSE} is not encrypted" not in " ".join(quiet.stdout.split())


def test_blank_node_was_never_given_docker(host):
    assert not host.exists("dockerd")
    assert not host.file("/etc/docker/daemon.json").exists
