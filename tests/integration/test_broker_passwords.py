"""Passwords with URL, shell and config-file characters, end to end: written into rabbitmq.conf and
redis.conf as the broker role writes them (config_value), read by the real RabbitMQ and Redis images,
set with rabbitmqctl as the role sets a changed one, and used as the role's check and the workers use
them (their URLs)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import jinja2
import kombu
import pytest
import redis
import yaml
from test_broker_check import broker_and_backend

from test_node_modules import run_module

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))
from ansible_collections.terafleet.cluster.plugins.filter.worker_containers import urls  # noqa: E402
from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import Settings  # noqa: E402

LABEL = {"org.terafleet.test": "broker-passwords"}
# rabbitmq.conf has no quoting and keeps these as they are; preflight refuses one with #, outer spaces or
# anything outside printable ASCII, which it cannot hold (test_config_value, test_input_problems).
RABBITMQ_PASSWORDS = ["it's a/b%c\"d\\e f" + secrets.token_hex(2), "-starts-with-a-dash/" + secrets.token_hex(2)]
REDIS_PASSWORD = "a/b#c%d'e\"f g\\h " + secrets.token_hex(2)


@pytest.fixture(scope="module", params=RABBITMQ_PASSWORDS, ids=["quotes-slash-percent-space", "dash"])
def services(request, docker_client, tmp_path_factory):
    with broker_and_backend(docker_client, tmp_path_factory.mktemp("conf"), request.param, REDIS_PASSWORD,
                            LABEL) as running:
        yield {**running, "password": request.param}


def check(services: dict, rabbitmq_password: str) -> dict:
    return run_module("broker_check", {
        "rabbitmq": {"host": "127.0.0.1", "port": services["rabbitmq"], "user": "terafleet",
                     "password": rabbitmq_password, "vhost": "terafleet"},
        "redis": {"host": "127.0.0.1", "port": services["redis"], "user": "terafleet", "password": REDIS_PASSWORD},
        "timeout": 120})


def test_the_broker_roles_check_logs_in_with_each_password(services):
    result = check(services, services["password"])
    assert not result.get("failed"), result
    assert result["rabbitmq"]["authenticated"] is True, result["rabbitmq"]
    assert result["redis"] == {"pong": True}


def test_a_changed_password_is_set_with_the_roles_own_rabbitmqctl_call(services):
    # The call the broker role makes when RabbitMQ refuses the configured password (tasks/verify.yml): the
    # password goes to rabbitmqctl's standard input, never into its arguments.
    task = next(t for t in yaml.safe_load((REPO / "roles/broker/tasks/verify.yml").read_text())
                if t["name"] == "Set the configured RabbitMQ password")["community.docker.docker_container_exec"]

    def set_password(password: str) -> None:
        variables = {"broker_rabbitmq_user": "terafleet", "broker_rabbitmq_password": password}
        argv = [jinja2.Template(word).render(**variables) for word in task["argv"]]
        assert not any(password in word for word in argv), argv
        stdin = jinja2.Template(task["stdin"]).render(**variables) + "\n"  # stdin_add_newline's default
        done = subprocess.run(["docker", "exec", "-i", services["rabbitmq_container"].id, *argv], input=stdin,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    new = "-new/" + services["password"]
    set_password(new)
    try:
        assert check(services, new)["rabbitmq"]["authenticated"] is True
        assert check(services, services["password"])["rabbitmq"]["authenticated"] is False
    finally:
        set_password(services["password"])


def test_a_workers_urls_carry_each_password(services):
    settings = {"broker_url": "", "result_backend": "", "broker": {
        "host": "127.0.0.1", "tls": False, "rabbitmq_user": "terafleet", "rabbitmq_password": services["password"],
        "rabbitmq_port": services["rabbitmq"], "rabbitmq_vhost": "terafleet", "redis_user": "terafleet",
        "redis_password": REDIS_PASSWORD,
        "redis_port": services["redis"], "redis_database": 0}}
    broker_url, backend_url = urls(Settings(settings, "celery_worker_", "gpu01", ("broker_url", "result_backend",
                                                                                 "broker")))
    with kombu.Connection(broker_url, connect_timeout=10) as connection:
        connection.ensure_connection(max_retries=3)
        assert connection.connected
    assert redis.Redis.from_url(backend_url, socket_timeout=10).ping() is True
