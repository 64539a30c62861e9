"""broker_check against the real RabbitMQ and Redis images, run by Ansible as the broker role runs it:
it waits for both to start, logs in as a worker would, and tells a refused password from a broker that
is not there."""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from pathlib import Path

import docker
import jinja2
import pytest

from test_node_modules import run_module

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))
sys.path.insert(0, str(REPO / "tests"))
from certificates import CA  # noqa: E402

from ansible_collections.terafleet.cluster.plugins.filter.config_value import config_value  # noqa: E402

LABEL = {"org.terafleet.test": "broker-check"}
RABBITMQ_PASSWORD = "rabbit-" + secrets.token_hex(4)
REDIS_PASSWORD = "redis-" + secrets.token_hex(4)


def published_port(container, port: str) -> int:
    for _ in range(50):
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(port)
        if bindings:
            return int(bindings[0]["HostPort"])
        time.sleep(0.1)
    raise AssertionError(f"{container.name} publishes no {port}")


def role_config(template: str, **variables) -> str:
    """One of the broker role's templates rendered with the given variables (and its filters)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "roles/broker/templates"),
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    environment.filters["terafleet.cluster.config_value"] = config_value
    environment.filters["bool"] = bool
    return environment.get_template(template).render(**variables)


@contextlib.contextmanager
def broker_and_backend(docker_client, directory: Path, rabbitmq_password: str, redis_password: str, labels: dict,
                       tls: CA | None = None):
    """A RabbitMQ with the user terafleet and its vhost, and a Redis with the user terafleet, both just
    started from the images and configured by the broker role's own templates; with `tls`, over TLS only,
    with a certificate for 127.0.0.1 that CA signed. Yields both containers and their published ports (and
    the CA's file); removes them after."""
    rabbitmq_conf, redis_conf = directory / "10-terafleet.conf", directory / "redis.conf"
    rabbitmq_conf.write_text(role_config(
        "rabbitmq.conf.j2", broker_rabbitmq_user="terafleet", broker_rabbitmq_password=rabbitmq_password,
        broker_rabbitmq_vhost="terafleet", broker_rabbitmq_consumer_timeout_ms=604800000, broker_tls=bool(tls)))
    redis_conf.write_text(role_config("redis.conf.j2", broker_redis_user="terafleet", broker_tls=bool(tls),
                                      broker_redis_password=redis_password).replace("dir /data\n", ""))
    files = {"ca.crt": None, "broker.crt": None, "broker.key": None}
    if tls:
        files["broker.crt"], files["broker.key"] = tls.server("127.0.0.1", "localhost")
        files["ca.crt"] = tls.pem
        for name, text in files.items():
            (directory / name).write_text(text)
    for path in (rabbitmq_conf, redis_conf, *(directory / name for name in files if tls)):
        path.chmod(0o644)

    def mounts(target_dir: str) -> dict:
        return {str(directory / name): {"bind": f"{target_dir}/{name}", "mode": "ro"} for name in files if tls}

    amqp_port = "5671/tcp" if tls else "5672/tcp"
    tag = secrets.token_hex(3)
    rabbitmq = docker_client.containers.run(
        "terafleet/broker:latest", name=f"tf-it-{tag}-rabbitmq", detach=True, labels=labels,
        ports={amqp_port: ("127.0.0.1", None)},
        volumes={str(rabbitmq_conf): {"bind": "/etc/rabbitmq/conf.d/10-terafleet.conf", "mode": "ro"},
                 **mounts("/etc/rabbitmq/tls")})
    redis = docker_client.containers.run(
        "terafleet/backend:latest", ["redis-server", "/usr/local/etc/redis/redis.conf"], name=f"tf-it-{tag}-redis",
        detach=True, labels=labels, ports={"6379/tcp": ("127.0.0.1", None)},
        volumes={str(redis_conf): {"bind": "/usr/local/etc/redis/redis.conf", "mode": "ro"},
                 **mounts("/usr/local/etc/redis/tls")})
    try:
        yield {"rabbitmq_container": rabbitmq, "rabbitmq": published_port(rabbitmq, amqp_port),
               "redis_container": redis, "redis": published_port(redis, "6379/tcp"),
               "ca_file": str(directory / "ca.crt") if tls else None}
    finally:
        for container in (rabbitmq, redis):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture(scope="module")
def services(docker_client, tmp_path_factory):
    """A RabbitMQ with a user, password and vhost, and a Redis with a password, both just started."""
    with broker_and_backend(docker_client, tmp_path_factory.mktemp("conf"), RABBITMQ_PASSWORD, REDIS_PASSWORD,
                            LABEL) as running:
        yield running


def args(ports: dict, rabbitmq_password=RABBITMQ_PASSWORD, vhost="terafleet", redis_password=REDIS_PASSWORD,
         timeout=120) -> dict:
    return {"rabbitmq": {"host": "127.0.0.1", "port": ports["rabbitmq"], "user": "terafleet",
                         "password": rabbitmq_password, "vhost": vhost},
            "redis": {"host": "127.0.0.1", "port": ports["redis"], "user": "terafleet", "password": redis_password},
            "timeout": timeout}


def test_waits_for_a_starting_broker_then_logs_in(services):
    result = run_module("broker_check", args(services))
    assert not result.get("failed"), result
    assert result["rabbitmq"]["authenticated"] is True and result["rabbitmq"]["server_version"].startswith("3.")
    assert result["redis"] == {"pong": True}
    assert result["changed"] is False


def test_a_refused_rabbitmq_password_is_reported_not_failed(services):
    result = run_module("broker_check", args(services, rabbitmq_password="wrong"))
    assert not result.get("failed"), result
    assert result["rabbitmq"]["authenticated"] is False
    assert "ACCESS_REFUSED" in result["rabbitmq"]["message"], result["rabbitmq"]
    assert RABBITMQ_PASSWORD not in str(result) and "wrong" not in str(result["invocation"])


def test_a_vhost_the_user_cannot_open_fails(services):
    result = run_module("broker_check", args(services, vhost="no-such-vhost"))
    assert result.get("failed"), result
    assert "user terafleet cannot open virtual host 'no-such-vhost'" in result["msg"]


def test_a_refused_redis_password_fails(services):
    result = run_module("broker_check", args(services, redis_password="wrong"))
    assert result.get("failed"), result
    assert "refused the configured user 'terafleet' and password" in result["msg"]
    assert REDIS_PASSWORD not in str(result)


def test_redis_lets_the_celery_user_use_results_and_nothing_else(services):
    import redis

    client = redis.Redis(port=services["redis"], username="terafleet", password=REDIS_PASSWORD, socket_timeout=10)
    client.setex("celery-task-meta-x", 60, b"{}")
    assert client.get("celery-task-meta-x") == b"{}"
    with client.pipeline() as pipe:
        pipe.rpush("chord-x", b"1").expire("chord-x", 60).incr("chord-x.counter").execute()
    assert client.eval("return redis.call('GET', KEYS[1])", 1, "celery-task-meta-x") == b"{}"
    for command in (("CONFIG", "GET", "*"), ("FLUSHALL",), ("KEYS", "*"), ("MODULE", "LIST"), ("SHUTDOWN",),
                    ("ACL", "LIST")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    with pytest.raises(redis.exceptions.ResponseError):  # refused before the ACL is read: debug is off
        client.execute_command("DEBUG", "SLEEP", "0")
    # Redis's default user is off, whatever password is tried.
    for password in (REDIS_PASSWORD, None):
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            redis.Redis(port=services["redis"], password=password, socket_timeout=10).ping()


def test_nothing_listening_fails_after_the_timeout(services):
    closed = {"rabbitmq": 1, "redis": services["redis"]}
    started = time.monotonic()
    result = run_module("broker_check", args(closed, timeout=3))
    assert result.get("failed"), result
    assert "RabbitMQ at 127.0.0.1:1" in result["msg"] and "(after 3 s)" in result["msg"]
    assert 3 <= time.monotonic() - started < 30


@pytest.fixture(scope="module")
def tls_services(docker_client, tmp_path_factory):
    """Both over TLS only, with certificates from a CA of the test's own."""
    with broker_and_backend(docker_client, tmp_path_factory.mktemp("tls"), RABBITMQ_PASSWORD, REDIS_PASSWORD,
                            LABEL, tls=CA("integration CA")) as running:
        yield running


def test_over_tls_it_logs_in_verifying_both_certificates(tls_services):
    result = run_module("broker_check", {**args(tls_services), "tls_ca_file": tls_services["ca_file"]})
    assert not result.get("failed"), result
    assert result["rabbitmq"]["authenticated"] is True and result["redis"] == {"pong": True}


def test_a_certificate_another_ca_signed_fails_at_once(tls_services, tmp_path):
    other = tmp_path / "other-ca.crt"
    other.write_text(CA("another CA").pem)
    started = time.monotonic()
    result = run_module("broker_check", {**args(tls_services, timeout=60), "tls_ca_file": str(other)})
    assert result.get("failed"), result
    assert "its certificate is not trusted" in result["msg"] and "RabbitMQ" in result["msg"]
    assert time.monotonic() - started < 30, "a certificate that is not trusted is not waited out"


def test_over_tls_the_plaintext_protocols_get_no_answer(tls_services):
    result = run_module("broker_check", args(tls_services, timeout=3))
    assert result.get("failed"), result
    assert "(after 3 s)" in result["msg"]


def test_a_worker_reaches_both_over_tls_with_the_urls_the_plan_builds(tls_services, monkeypatch):
    import kombu
    import redis

    from ansible_collections.terafleet.cluster.plugins.filter.worker_containers import urls
    from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import Settings
    from terafleet_worker.settings import Settings as WorkerSettings

    settings = {"broker_url": "", "result_backend": "", "broker": {
        "host": "127.0.0.1", "tls": True, "rabbitmq_user": "terafleet", "rabbitmq_password": RABBITMQ_PASSWORD,
        "rabbitmq_port": tls_services["rabbitmq"], "rabbitmq_vhost": "terafleet", "redis_user": "terafleet",
        "redis_password": REDIS_PASSWORD, "redis_port": tls_services["redis"], "redis_database": 0}}
    broker_url, backend_url = urls(Settings(settings, "celery_worker_", "gpu01", ("broker_url", "result_backend",
                                                                                 "broker")))
    assert broker_url.startswith("amqps://") and backend_url.startswith("rediss://")
    for name, value in (("TERAFLEET_BROKER_URL", broker_url), ("TERAFLEET_RESULT_BACKEND", backend_url),
                        ("TERAFLEET_TLS_CA_FILE", tls_services["ca_file"])):
        monkeypatch.setenv(name, value)
    worker = WorkerSettings()
    with kombu.Connection(broker_url, ssl=worker.broker_tls(), connect_timeout=10) as connection:
        connection.ensure_connection(max_retries=3)
        assert connection.connected
    assert redis.Redis.from_url(backend_url, socket_timeout=10, **worker.backend_tls()).ping() is True
