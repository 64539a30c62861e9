"""service_containers: the frontend of a GPU node, and the head's RabbitMQ and Redis."""

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import BROKER_ROLE, FRONTEND, preflight_node, settings

from ansible_collections.terafleet.cluster.plugins.filter.service_containers import FilterModule, service_containers


def test_the_frontend_publishes_one_port_per_server_over_the_scratch():
    plan = service_containers(preflight_node(size=1), "frontend", FRONTEND, "gpu01")
    assert plan["config_files"] == {"nginx": "/etc/terafleet/frontend/nginx.conf"}
    assert plan["containers"] == [{
        "name": "terafleet-frontend", "image": "nginx:stable", "restart_policy": "unless-stopped",
        "mounts": [{"type": "bind", "source": "/lstor/terafleet/scratch", "target": "/scratch"},
                   {"type": "bind", "source": "/etc/terafleet/frontend/nginx.conf", "target": "/etc/nginx/nginx.conf",
                    "read_only": True}],
        "published_ports": ["0.0.0.0:8080:8080", "0.0.0.0:8081:8081", "0.0.0.0:8082:8082", "0.0.0.0:8083:8083"],
        "network": "terafleet", "labels": {"org.terafleet.role": "frontend", "org.terafleet.node": "gpu01"}}]


def test_a_disabled_frontend_plans_no_container():
    assert service_containers(preflight_node(), "frontend", settings(FRONTEND, enabled=False), "gpu01")[
        "containers"] == []


def test_the_broker_and_backend_with_their_volumes_on_one_address():
    plan = service_containers({}, "broker", BROKER_ROLE, "head01")
    rabbitmq, redis = plan["containers"]
    assert rabbitmq["name"] == "terafleet-rabbitmq" and rabbitmq["hostname"] == "terafleet-rabbitmq"
    assert rabbitmq["published_ports"] == ["10.1.0.10:5672:5672"]
    assert redis["published_ports"] == ["10.1.0.10:6379:6379"]
    assert rabbitmq["mounts"][1] == {"type": "bind", "source": "/etc/terafleet/broker/rabbitmq/10-terafleet.conf",
                                     "target": "/etc/rabbitmq/conf.d/10-terafleet.conf", "read_only": True}
    assert redis["command"] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert rabbitmq["labels"] == {"org.terafleet.role": "broker"}
    assert redis["labels"] == {"org.terafleet.role": "backend"}
    assert [v["name"] for v in plan["volumes"]] == ["terafleet-rabbitmq-data", "terafleet-redis-data"]
    assert plan["config_files"] == {"rabbitmq": "/etc/terafleet/broker/rabbitmq/10-terafleet.conf",
                                    "redis": "/etc/terafleet/broker/redis/redis.conf"}


@pytest.mark.parametrize("kind, base, changes, message", [
    ("frontend", FRONTEND, {"image": None}, "frontend_image is not set"),
    ("frontend", FRONTEND, {"config_dir": "etc/frontend"}, "frontend_config_dir must be an absolute path"),
    ("broker", BROKER_ROLE, {"rabbitmq_port": 70000}, "broker_rabbitmq_port must lie in 1-65535, got 70000"),
    ("broker", BROKER_ROLE, {"bind_address": ""}, "broker_bind_address is empty"),
])
def test_bad_settings_are_refused_naming_the_variable(kind, base, changes, message):
    with pytest.raises(AnsibleFilterError) as error:
        service_containers(preflight_node(), kind, settings(base, **changes), "gpu01")
    assert message in str(error.value)


def test_an_unknown_kind_is_refused():
    with pytest.raises(AnsibleFilterError, match="plans 'frontend' or 'broker', not 'mail'"):
        service_containers({}, "mail", {}, "head01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["service_containers"] is service_containers
