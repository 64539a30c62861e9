"""Handles on the converged cluster: its nodes, its broker through the head's address, its secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from polling import wait_for  # noqa: E402  (re-exported to the tests)
SCENARIO = REPO / "molecule" / "cluster"
VAULT_PASSWORD = REPO / "molecule" / "shared" / "files" / "vault-password"
GPU_NODES = ("tf-cl-gpu1", "tf-cl-gpu2")
SETS = ("gpu0-1", "gpu2-3")


def node(name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def inspect(host, container: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {container}"))[0]


@pytest.fixture(scope="session")
def secrets() -> dict:
    plain = subprocess.run(["ansible-vault", "view", "--vault-password-file", str(VAULT_PASSWORD),
                            str(SCENARIO / "group_vars" / "all" / "vault.yml")],
                           capture_output=True, text=True, check=True).stdout
    return yaml.safe_load(plain)


@pytest.fixture(scope="session")
def head_address() -> str:
    info = json.loads(subprocess.run(["docker", "inspect", "tf-cl-head"], capture_output=True, text=True,
                                     check=True).stdout)[0]
    return info["NetworkSettings"]["Networks"]["terafleet-cluster"]["IPAddress"]


@pytest.fixture(scope="session")
def celery_app(secrets, head_address):
    os.environ["TERAFLEET_BROKER_URL"] = (f"amqp://terafleet:{secrets['broker_rabbitmq_password']}"
                                          f"@{head_address}:5672/terafleet")
    os.environ["TERAFLEET_RESULT_BACKEND"] = f"redis://:{secrets['broker_redis_password']}@{head_address}:6379/0"
    from terafleet_worker.app import app

    return app


@pytest.fixture(scope="session")
def compute(celery_app):
    from terafleet_worker.tasks import compute as task

    return task
