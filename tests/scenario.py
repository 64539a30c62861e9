"""Handles on a converged Molecule scenario for its verifiers: nodes, secrets, the broker, playbook runs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import testinfra
import yaml

REPO = Path(__file__).resolve().parents[1]
VAULT_PASSWORD = REPO / "molecule" / "shared" / "files" / "vault-password"


def node(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def inspect(host, container: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {container}"))[0]


def passes_check(host, container: str) -> bool:
    """The container's own health check, run now (Docker runs it only every interval, minutes by default)."""
    test = inspect(host, container)["Config"]["Healthcheck"]["Test"]
    argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    return host.run(f"docker exec {container} {shlex.join(argv)}").rc == 0


def control(gpu_node: str, gpu_set: str, **switches) -> None:
    """Set a stand-in server's fault switches (job_seconds, crash_on_start, ...) through its control file."""
    path = f"/lstor/terafleet/scratch/{gpu_node}-{gpu_set}/standin-control.json"
    node(gpu_node).check_output(f"printf '%s' '{json.dumps(switches)}' > {path}")


def expected_energy(doc: dict) -> float:
    """The energy the stand-in's fake backend (the scenarios' servers) returns for a water document in Bohr."""
    sys.path.insert(0, str(REPO / "standin"))
    from terachem_standin.backends import Job, fake

    return fake(Job(["O", "H", "H"], doc["structure"]["geometry"], 0, 1, True, "HF", "sto-3g", False)).energy


def server_pid(host, container: str) -> str:
    """The PID, as the node sees it, of the TeraChem process in a server container: the child of the
    container's init (servers run with init: true)."""
    return host.check_output(f"pgrep --parent {inspect(host, container)['State']['Pid']}").split()[0]


def secrets(scenario: str) -> dict:
    plain = subprocess.run(["ansible-vault", "view", "--vault-password-file", str(VAULT_PASSWORD),
                            str(REPO / "molecule" / scenario / "group_vars" / "all" / "vault.yml")],
                           capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(plain)


def address(container: str, scenario: str) -> str:
    """A node container's address on the scenario's network, which this machine routes to."""
    info = json.loads(subprocess.run(["docker", "inspect", container], capture_output=True, text=True,
                                     check=True).stdout)[0]
    return info["NetworkSettings"]["Networks"][f"terafleet-{scenario}"]["IPAddress"]


HEAD_CA = "/etc/terafleet/broker/tls/ca.crt"


def head_ca(head: str) -> Path:
    """The CA certificate the head's RabbitMQ and Redis present theirs under, copied to this machine."""
    path = Path(tempfile.gettempdir()) / f"terafleet-{head}-ca.crt"
    path.write_text(subprocess.run(["docker", "exec", head, "cat", HEAD_CA], capture_output=True, text=True,
                                   check=True).stdout)
    return path


def client_environment(scenario: str, head: str) -> dict:
    """What a client (terafleet_worker's settings) needs to reach the scenario's broker and backend over TLS."""
    keys, host = secrets(scenario), address(head, scenario)
    return {"TERAFLEET_BROKER_URL": f"amqps://terafleet:{keys['broker_rabbitmq_password']}@{host}:5671/terafleet",
            "TERAFLEET_RESULT_BACKEND": f"rediss://terafleet:{keys['broker_redis_password']}@{host}:6379/0",
            "TERAFLEET_TLS_CA_FILE": str(head_ca(head))}


def celery_app(scenario: str, head: str):
    """terafleet's Celery app pointed at the scenario's broker and result backend on its head node."""
    os.environ.update(client_environment(scenario, head))
    from terafleet_worker.app import app

    return app


def broker_fixtures(scenario: str, head: str):
    """The session fixtures `celery_app` and `compute` (terafleet's compute task) for a scenario's conftest:
    `celery_app, compute = scenario.broker_fixtures(NAME, HEAD)`."""
    import pytest

    @pytest.fixture(scope="session", name="celery_app")
    def app_fixture():
        return celery_app(scenario, head)

    @pytest.fixture(scope="session", name="compute")
    def compute_fixture(celery_app):  # noqa: ARG001 - the app points the task at the scenario's broker
        from terafleet_worker.tasks import compute

        return compute

    return app_fixture, compute_fixture


def water(scale: float = 1.0) -> dict:
    """Water at the Crawford geometry in Bohr, every coordinate scaled."""
    from terafleet_worker.reference import WATER_SYMBOLS, water_flat

    return {"structure": {"symbols": list(WATER_SYMBOLS), "geometry": water_flat(scale), "units": "bohr"},
            "method": "hf", "basis": "sto-3g"}


def _playbook_argv(name: str, args: tuple[str, ...]) -> tuple[list[str], dict]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_VAULT_PASSWORD_FILE=str(VAULT_PASSWORD))
    return ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], name, *args], env


def playbook(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run one of the root playbooks against the scenario's inventory."""
    argv, env = _playbook_argv(name, args)
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def start_playbook(name: str, *args: str) -> subprocess.Popen:
    """Start one of the root playbooks in the background; its output (stdout and stderr) in .stdout."""
    argv, env = _playbook_argv(name, args)
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def tasks_outside_preflight(stdout: str) -> list[str]:
    """The TASK lines of a playbook's output that ran in a play other than preflight's."""
    play, outside = "", []
    for line in stdout.splitlines():
        if line.startswith("PLAY ["):
            play = line
        elif line.startswith("TASK [") and not play.startswith("PLAY [Check every node before changing any]"):
            outside.append(line)
    return outside
