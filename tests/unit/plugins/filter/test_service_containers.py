"""service_containers: the frontend of a GPU node, and the head's RabbitMQ and Redis."""

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import BROKER, BROKER_ROLE, FRONTEND, NFS, preflight_node, scratch, settings

from ansible_collections.terafleet.cluster.plugins.filter.service_containers import FilterModule, service_containers


def test_the_frontend_publishes_one_port_per_server_over_its_scratch_read_only_as_nobody():
    node = preflight_node(size=1)
    plan = service_containers(node, "frontend", FRONTEND, "gpu01", scratch(node))
    assert plan["config_files"] == {"nginx": "/etc/terafleet/frontend/nginx.conf"}
    assert plan["containers"] == [{
        "name": "terafleet-frontend", "image": "nginx:stable", "restart_policy": "unless-stopped",
        "user": "65534:0",
        "mounts": [*({"type": "volume", "source": f"terafleet-scratch-gpu{i}", "target": f"/scratch/gpu01-gpu{i}",
                      "no_copy": True, "read_only": True} for i in range(4)),
                   {"type": "bind", "source": "/etc/terafleet/frontend/nginx.conf", "target": "/etc/nginx/nginx.conf",
                    "read_only": True}],
        "published_ports": ["10.1.0.21:8080:8080", "10.1.0.21:8081:8081", "10.1.0.21:8082:8082",
                            "10.1.0.21:8083:8083"],
        "network": "terafleet", "labels": {"org.terafleet.role": "frontend", "org.terafleet.node": "gpu01"}}]
    assert plan["access"] == {"allowed_sources": ["10.1.0.0/16", "10.2.0.7/32"], "basic_auth": False}


def test_with_basic_auth_the_frontend_mounts_its_password_file():
    node = preflight_node(size=2)
    plan = service_containers(node, "frontend", settings(FRONTEND, basic_auth=True), "gpu01", scratch(node))
    assert plan["config_files"]["htpasswd"] == "/etc/terafleet/frontend/htpasswd"
    assert plan["containers"][0]["mounts"][-1] == {"type": "bind", "source": "/etc/terafleet/frontend/htpasswd",
                                                   "target": "/etc/nginx/htpasswd", "read_only": True}
    assert plan["access"]["basic_auth"] is True


@pytest.mark.parametrize("switch", ["delete_jobs", "uploads"])
def test_a_frontend_that_deletes_or_takes_uploads_runs_as_root_over_writable_scratch(switch):
    node = preflight_node(size=2)
    container = service_containers(node, "frontend", settings(FRONTEND, **{switch: "true"}), "gpu01",
                                   scratch(node))["containers"][0]
    assert container["user"] is None
    assert [m["read_only"] for m in container["mounts"][:-1]] == [False, False]


@pytest.mark.parametrize("changes, message", [
    ({"publish_address": "node01"}, "frontend_publish_address must be an IP address, got 'node01'"),
    ({"allowed_sources": []}, "frontend_allowed_sources is empty"),
    ({"allowed_sources": ["10.0.0.0/33"]}, "frontend_allowed_sources holds '10.0.0.0/33', which is not a network"),
])
def test_an_address_or_allow_list_that_is_not_one_is_refused_by_name(changes, message):
    with pytest.raises(AnsibleFilterError, match=message):
        service_containers(preflight_node(), "frontend", settings(FRONTEND, **changes), "gpu01",
                           scratch(preflight_node()))


@pytest.mark.parametrize("switch", ["delete_jobs", "uploads"])
def test_a_frontend_switch_that_is_not_a_boolean_is_refused_by_name(switch):
    with pytest.raises(AnsibleFilterError, match=f"frontend_{switch} must be true or false"):
        service_containers(preflight_node(), "frontend", settings(FRONTEND, **{switch: "sometimes"}), "gpu01",
                           scratch(preflight_node()))


def test_on_nfs_the_frontend_mounts_each_servers_nfs_volume_where_nginx_serves_it():
    node = preflight_node(size=2)
    mounts = service_containers(node, "frontend", FRONTEND, "gpu01", scratch(node, NFS))["containers"][0]["mounts"]
    assert [(m["source"], m["target"]) for m in mounts[:-1]] == [
        ("terafleet-scratch-nfs-gpu0-1", "/scratch/gpu01-gpu0-1"),
        ("terafleet-scratch-nfs-gpu2-3", "/scratch/gpu01-gpu2-3")]


def test_the_frontend_needs_the_scratch_plan():
    with pytest.raises(AnsibleFilterError, match="gpu01: scratch_plan.volume_of is missing"):
        service_containers(preflight_node(), "frontend", FRONTEND, "gpu01")


def test_a_disabled_frontend_plans_no_container():
    assert service_containers(preflight_node(), "frontend", settings(FRONTEND, enabled=False), "gpu01")[
        "containers"] == []


def test_the_broker_and_backend_with_their_volumes_on_one_address():
    plan = service_containers({}, "broker", BROKER_ROLE, "head01")
    rabbitmq, redis = plan["containers"]
    assert rabbitmq["name"] == "terafleet-rabbitmq" and rabbitmq["hostname"] == "terafleet-rabbitmq"
    # AMQP, and rabbitmq_prometheus' metrics, on the one address.
    assert rabbitmq["published_ports"] == ["10.1.0.10:5672:5672", "10.1.0.10:15692:15692"]
    assert redis["published_ports"] == ["10.1.0.10:6379:6379"]
    assert rabbitmq["mounts"][1] == {"type": "bind", "source": "/etc/terafleet/broker/rabbitmq/10-terafleet.conf",
                                     "target": "/etc/rabbitmq/conf.d/10-terafleet.conf", "read_only": True}
    assert rabbitmq["mounts"][2] == {"type": "bind", "source": "/etc/terafleet/broker/rabbitmq/enabled_plugins",
                                     "target": "/etc/rabbitmq/enabled_plugins", "read_only": True}
    assert plan["plugins"] == ["rabbitmq_prometheus"]
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert rabbitmq["labels"] == {"org.terafleet.role": "broker"}
    assert redis["labels"] == {"org.terafleet.role": "backend"}
    assert [v["name"] for v in plan["volumes"]] == ["terafleet-rabbitmq-data", "terafleet-redis-data"]
    assert plan["config_files"] == {"rabbitmq": "/etc/terafleet/broker/rabbitmq/10-terafleet.conf",
                                    "redis": "/etc/terafleet/broker/redis/redis.conf",
                                    "rabbitmq_plugins": "/etc/terafleet/broker/rabbitmq/enabled_plugins"}
    assert plan["tls_files"] == {} and len(rabbitmq["mounts"]) == 3 and len(redis["mounts"]) == 2


def test_metrics_port_zero_turns_the_plugin_off_and_publishes_nothing_more():
    plan = service_containers({}, "broker", settings(BROKER_ROLE, rabbitmq_metrics_port=0), "head01")
    assert plan["containers"][0]["published_ports"] == ["10.1.0.10:5672:5672"]
    assert plan["plugins"] == []


def test_with_tls_both_mount_the_certificates_and_rabbitmq_publishes_its_tls_port():
    plan = service_containers({}, "broker", settings(BROKER_ROLE, tls=True, rabbitmq_port=5671), "head01")
    rabbitmq, redis = plan["containers"]
    assert rabbitmq["published_ports"] == ["10.1.0.10:5671:5671", "10.1.0.10:15692:15692"]
    assert redis["published_ports"] == ["10.1.0.10:6379:6379"]
    files = ("ca.crt", "broker.crt", "broker.key")
    assert plan["tls_files"] == {name: f"/etc/terafleet/broker/tls/{name}" for name in files}
    assert rabbitmq["mounts"][3:] == [{"type": "bind", "source": f"/etc/terafleet/broker/tls/{name}",
                                       "target": f"/etc/rabbitmq/tls/{name}", "read_only": True} for name in files]
    assert [m["target"] for m in redis["mounts"][2:]] == [f"/usr/local/etc/redis/tls/{name}" for name in files]
    assert all(m["read_only"] for m in redis["mounts"][1:])


@pytest.mark.parametrize("kind, base, changes, message", [
    ("frontend", FRONTEND, {"image": None}, "frontend_image is not set"),
    ("frontend", FRONTEND, {"config_dir": "etc/frontend"}, "frontend_config_dir must be an absolute path"),
    ("broker", BROKER_ROLE, {"rabbitmq_port": 70000}, "broker_rabbitmq_port must lie in 1-65535, got 70000"),
    ("broker", BROKER_ROLE, {"bind_address": ""}, "broker_bind_address is empty"),
    ("broker", BROKER_ROLE, {"tls": "maybe"}, "broker_tls must be true or false, got 'maybe'"),
    ("broker", BROKER_ROLE, {"rabbitmq_metrics_port": -1}, "broker_rabbitmq_metrics_port must lie in 0-65535, got -1"),
])
def test_bad_settings_are_refused_naming_the_variable(kind, base, changes, message):
    with pytest.raises(AnsibleFilterError) as error:
        service_containers(preflight_node(), kind, settings(base, **changes), "gpu01", scratch(preflight_node()))
    assert message in str(error.value)


def test_an_unknown_kind_is_refused():
    with pytest.raises(AnsibleFilterError, match="plans 'frontend', 'broker' or 'flower', not 'mail'"):
        service_containers({}, "mail", {}, "head01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["service_containers"] is service_containers


FLOWER = {"enabled": True, "image": "terafleet/worker:latest", "publish_address": "10.1.0.10", "port": 5555,
          "config_dir": "/etc/terafleet/flower", "basic_auth_user": "terafleet", "basic_auth_password": "fl0wer",
          "worker": {"broker_url": "", "result_backend": "", "tls_ca": "-----BEGIN CERTIFICATE-----\n",
                     "broker": {**BROKER, "tls": True, "rabbitmq_port": 5671}}}


def test_flower_reads_its_urls_and_credentials_from_files_docker_never_sees():
    plan = service_containers({}, "flower", FLOWER, "head01")
    (flower,) = plan["containers"]
    assert flower["command"] == ["flower"] and flower["image"] == "terafleet/worker:latest"
    assert flower["published_ports"] == ["10.1.0.10:5555:5555"]
    assert flower["init"] is True
    assert plan["secrets"] == {"broker_url": "amqps://terafleet:s3cret%2F%2Bpw@10.1.0.10:5671/terafleet",
                               "result_backend": "rediss://terafleet:r3dis@10.1.0.10:6379/0",
                               "auth": "terafleet:fl0wer", "ca.crt": "-----BEGIN CERTIFICATE-----\n"}
    assert flower["secrets"] == plan["secrets"]  # hashed into its configuration, never sent to Docker
    assert "fl0wer" not in repr(flower["env"]) and "r3dis" not in repr(flower["env"])
    assert flower["env"]["TERAFLEET_FLOWER_AUTH_FILE"] == "/run/terafleet/auth"
    assert flower["env"]["TERAFLEET_TLS_CA_FILE"] == "/run/terafleet/ca.crt"
    assert flower["mounts"] == [{"type": "bind", "source": "/etc/terafleet/flower", "target": "/run/terafleet",
                                 "read_only": True}]
    assert flower["labels"]["org.terafleet.role"] == "flower"


def test_flower_off_plans_nothing_and_needs_no_password():
    assert service_containers({}, "flower", settings(FLOWER, enabled=False, basic_auth_password=None),
                              "head01")["containers"] == []


@pytest.mark.parametrize("changes, message", [
    ({"basic_auth_password": ""}, "flower_basic_auth_password is empty"),
    ({"basic_auth_password": "a,b"}, "flower_basic_auth_password holds a comma"),
    ({"publish_address": "head"}, "flower_publish_address must be an IP address"),
    ({"worker": {**FLOWER["worker"], "broker": {**BROKER, "rabbitmq_password": None}}},
     "broker_rabbitmq_password"),
])
def test_bad_flower_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError, match=message):
        service_containers({}, "flower", settings(FLOWER, **changes), "head01")
