"""Closed doors on the converged cluster: the broker and backend speak TLS only, with a certificate no other
CA vouches for; the workers' passwords live in root-only files, not in their environment; Redis lets
Celery's user do a result backend's work and nothing else; RabbitMQ's guest never logs in; a new password
reaches every worker without showing in any output."""

from __future__ import annotations

import json
import ssl
from urllib.parse import quote

import kombu
import pytest
import redis
import yaml
from certificates import CA
from test_cluster_operations import smoke_test_result

import scenario
from conftest import GPU_NODES, inspect, node, playbook

testinfra_hosts = ["ansible://tf-cl-head"]
HEAD = "tf-cl-head"
# The head runs a CPU-only worker; the GPU nodes one worker per server.
WORKER_NODES = (HEAD, *GPU_NODES)
SECRETS_DIR = "/etc/terafleet/worker"


def workers(host) -> list[str]:
    return host.check_output("docker ps --filter label=org.terafleet.role=worker --format '{{.Names}}'").split()


def forms(secret: str) -> set[str]:
    """A secret as it may appear in output: as it is, and quoted in a URL."""
    return {secret, quote(secret, safe="")}


def assert_no_secret(text: str, secrets: dict) -> None:
    for name, secret in secrets.items():
        for form in forms(secret):
            assert form not in text, f"{name} appears in the output"


def backend(password: str, ca, username: str | None = "terafleet") -> redis.Redis:
    """A Redis client for the head's result backend over TLS, trusting `ca`."""
    return redis.Redis(host=scenario.address(HEAD, "cluster"), port=6379, username=username, password=password,
                       socket_timeout=10, ssl=True, ssl_ca_certs=str(ca), ssl_cert_reqs="required")


def amqp_login(user: str, password: str, ca=None, port: int = 5671) -> None:
    """Log in to the head's RabbitMQ (over TLS trusting `ca`, or in plaintext without); raises when refused."""
    tls = {"ca_certs": str(ca), "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None} if ca else False
    address = scenario.address(HEAD, "cluster")
    with kombu.Connection(f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@{address}:{port}/terafleet",
                          ssl=tls, connect_timeout=10) as connection:
        connection.ensure_connection(max_retries=1, timeout=20)


def other_ca(directory) -> str:
    """A CA certificate of another site's, which vouches for nothing terafleet made."""
    path = directory / "other-ca.crt"
    path.write_text(CA("another CA").pem)
    return str(path)


def test_the_broker_and_backend_speak_tls_only_with_a_certificate_from_the_clusters_ca(tmp_path):
    keys, ca = scenario.secrets("cluster"), scenario.head_ca(HEAD)
    amqp_login("terafleet", keys["broker_rabbitmq_password"], ca)
    assert backend(keys["broker_redis_password"], ca).ping() is True
    # Plaintext: on the TLS port nothing answers AMQP, and the plaintext port is closed.
    for port in (5671, 5672):
        with pytest.raises(Exception):  # noqa: B017,PT011 - a broken handshake, a reset or a refusal
            amqp_login("terafleet", keys["broker_rabbitmq_password"], port=port)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host=scenario.address(HEAD, "cluster"), port=6379, username="terafleet",
                    password=keys["broker_redis_password"], socket_timeout=10).ping()
    # A client that trusts another CA refuses the head's certificate.
    other = other_ca(tmp_path)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):  # noqa: PT011
        amqp_login("terafleet", keys["broker_rabbitmq_password"], other)
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        backend(keys["broker_redis_password"], other).ping()


def test_workers_read_their_urls_from_root_only_files_and_docker_shows_no_password():
    keys = scenario.secrets("cluster")
    for name in WORKER_NODES:
        host = node(name)
        directory = host.file(SECRETS_DIR)
        assert (directory.mode, directory.user) == (0o700, "root"), name
        urls = {}
        for file in ("broker_url", "result_backend"):
            entry = host.file(f"{SECRETS_DIR}/{file}")
            assert (entry.mode, entry.user) == (0o400, "root"), f"{name}:{file}"
            urls[file] = entry.content_string.strip()
        assert urls["broker_url"].startswith("amqps://terafleet:")
        assert quote(keys["broker_rabbitmq_password"], safe="") in urls["broker_url"]
        assert urls["result_backend"].startswith("rediss://terafleet:")
        assert host.file(f"{SECRETS_DIR}/ca.crt").content_string == scenario.head_ca(HEAD).read_text()
        names = workers(host)
        assert names, f"{name} runs no worker"
        for worker in names:
            assert_no_secret(host.check_output(f"docker inspect {worker}"), keys)
            info = inspect(host, worker)
            assert "TERAFLEET_BROKER_URL_FILE=/run/terafleet/broker_url" in info["Config"]["Env"]
            mount = next(m for m in info["Mounts"] if m["Destination"] == "/run/terafleet")
            assert mount["Source"] == SECRETS_DIR and mount["RW"] is False
            # The worker's processes carry no password in their arguments or environment either.
            processes = "cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\\0' ' '"
            assert_no_secret(host.check_output(f"docker exec {worker} sh -c \"{processes}\""), keys)


def test_the_celery_user_cannot_reconfigure_or_empty_redis_and_the_default_user_is_off():
    keys, ca = scenario.secrets("cluster"), scenario.head_ca(HEAD)
    client = backend(keys["broker_redis_password"], ca)
    assert client.ping() is True
    client.setex("terafleet-test-key", 60, b"x")
    assert client.get("terafleet-test-key") == b"x"
    for command in (("CONFIG", "GET", "*"), ("FLUSHALL",), ("KEYS", "*"),
                    ("ACL", "SETUSER", "intruder", "on", ">pw", "+@all")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    # requirepass-style logins go to the default user, which is off.
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        backend(keys["broker_redis_password"], ca, username=None).ping()


def test_guest_cannot_log_in_even_when_an_older_database_holds_it(host):
    rabbitmqctl = "docker exec terafleet-rabbitmq rabbitmqctl -q"

    def users():
        return [entry["user"] for entry in json.loads(host.check_output(f"{rabbitmqctl} list_users --formatter json"))]

    # The database the converge created: RabbitMQ's first boot made default_user and no guest, so no run
    # had a guest to remove.
    assert users() == ["terafleet"]
    host.check_output(f"{rabbitmqctl} add_user guest guest")
    host.check_output(f"{rabbitmqctl} set_permissions -p terafleet guest '.*' '.*' '.*'")
    # The database outlives its container, as one from an older setup does: a new container starts on it.
    host.check_output("docker rm -f terafleet-rabbitmq")
    try:
        result = playbook("site.yml", "--limit", HEAD, "--tags", "broker")
        assert result.returncode == 0, result.stdout[-3000:]
        assert "guest" not in users() and "terafleet" in users()
        with pytest.raises(Exception, match="ACCESS_REFUSED|refused"):  # noqa: PT011
            amqp_login("guest", "guest", scenario.head_ca(HEAD))
    finally:
        host.run(f"{rabbitmqctl} delete_user guest")


def test_new_passwords_reach_every_worker_and_show_in_no_output(tmp_path):
    keys = scenario.secrets("cluster")
    new = {name: f"{value}-rotated/+" for name, value in keys.items()}
    extra = tmp_path / "rotated.yml"
    extra.write_text(yaml.safe_dump(new))
    before = {(name, worker): inspect(node(name), worker)["Id"]
              for name in WORKER_NODES for worker in workers(node(name))}
    try:
        result = playbook("site.yml", "-vvv", "-e", f"@{extra}")
        output = result.stdout + result.stderr
        assert result.returncode == 0, result.stdout[-3000:]
        assert_no_secret(output, {**keys, **{f"new {name}": value for name, value in new.items()}})
        # RabbitMQ's database kept the old password: the role set the new one.
        assert "Set the configured RabbitMQ password" in result.stdout
        for name in WORKER_NODES:
            host = node(name)
            broker_url = host.file(f"{SECRETS_DIR}/broker_url").content_string
            assert quote(new["broker_rabbitmq_password"], safe="") in broker_url
            for worker in workers(host):
                assert inspect(host, worker)["Id"] != before[(name, worker)], f"{name}:{worker} kept the old password"
        # Each GPU node's smoke test sent a calculation through its workers with the new passwords.
        assert smoke_test_result(result.stdout) == "ok"
        assert backend(new["broker_redis_password"], scenario.head_ca(HEAD)).ping() is True
        with pytest.raises(redis.exceptions.AuthenticationError):
            backend(keys["broker_redis_password"], scenario.head_ca(HEAD)).ping()
        # The new password restarted Redis: it replayed its append-only file whole, no transaction refused.
        assert "NOPERM" not in node(HEAD).check_output("docker logs terafleet-redis 2>&1")
    finally:
        restored = playbook("site.yml")
        assert restored.returncode == 0, restored.stdout[-3000:]
