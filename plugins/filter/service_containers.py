"""The node-wide containers: the file frontend of a GPU node, and the head's RabbitMQ and Redis."""

from __future__ import annotations

DOCUMENTATION = r"""
name: service_containers
short_description: Plan a node's file frontend, or the head's broker and result backend
version_added: 0.2.0
author: terafleet developers
description:
  - With O(kind=frontend), turns the GPU sets preflight planned (C(preflight_node)) and the frontend role's
    settings into the C(terafleet-frontend) container (nginx over each server's scratch volume, mounted at
    C(/scratch/<host>-<set>), one published port per TeraChem server), or no container when the frontend is
    disabled or the node has no GPU set. A frontend that only reads (neither C(delete_jobs) nor C(uploads))
    mounts the scratch read-only and runs as C(nobody) in group root (C(65534:0)), which may read the
    scratch directories (mode 0750, root's); one that deletes or takes uploads runs as root, as TeraChem
    writes its scratch as root.
  - With O(kind=broker), turns the broker role's settings into the C(terafleet-rabbitmq) and
    C(terafleet-redis) containers and their labelled data volumes.
  - Containers are given in the terms of M(terafleet.cluster.docker_containers). A setting that is missing,
    null or of the wrong type fails with the inventory variable's name.
positional: kind, settings, host, scratch
options:
  _input:
    description: C(preflight_node), the node fact the preflight role publishes.
    type: dict
    required: true
  kind:
    description: Which containers to plan.
    type: str
    choices: [frontend, broker]
    required: true
  settings:
    description:
      - For C(frontend), the frontend role's variables without their C(frontend_) prefix - C(enabled),
        C(image), C(publish_address) (an IP address), C(allowed_sources) (networks in CIDR notation, the
        only sources nginx answers), C(basic_auth) (whether a password file guards every server),
        C(config_dir), C(delete_jobs), C(uploads) - and C(network), the servers' network.
      - For C(broker), the broker role's variables without their C(broker_) prefix - C(rabbitmq_image),
        C(redis_image), C(bind_address), C(rabbitmq_port), C(redis_port), C(config_dir), C(tls).
      - With C(tls), RabbitMQ listens for AMQP over TLS only (container port 5671) and Redis for TLS only;
        each mounts the CA certificate, its certificate and key from C(<config_dir>/tls) read-only.
    type: dict
    required: true
  host:
    description: Inventory host name, for the C(org.terafleet.node) label and error messages.
    type: str
    required: true
  scratch:
    description: C(scratch_plan), the scratch role's plan (C(volume_of)); required for O(kind=frontend).
    type: dict
"""

EXAMPLES = r"""
- name: Plan the frontend
  ansible.builtin.set_fact:
    frontend: >-
      {{ preflight_node | terafleet.cluster.service_containers('frontend', {'enabled': true,
           'image': 'nginx:stable', 'publish_address': '10.1.0.21', 'allowed_sources': ['10.1.0.0/16'],
           'basic_auth': false, 'config_dir': '/etc/terafleet/frontend',
           'delete_jobs': false, 'uploads': false, 'network': 'terafleet'}, inventory_hostname, scratch_plan) }}
"""

RETURN = r"""
_value:
  description: The containers and the volumes they need.
  type: dict
  contains:
    containers:
      description: Container specs, in start order; empty for a disabled frontend.
      type: list
      elements: dict
    volumes:
      description: Named volumes to create where missing, with their labels.
      type: list
      elements: dict
    config_files:
      description: Configuration file paths on the node, by service (C(nginx), C(htpasswd) with basic
        authentication, C(rabbitmq), C(redis)).
      type: dict
    access:
      description: Only for O(kind=frontend) with a frontend, who nginx answers - C(allowed_sources) (networks)
        and C(basic_auth) (a bool); empty otherwise.
      type: dict
    tls_files:
      description: Only for O(kind=broker), the TLS files' paths on the node by name (C(ca.crt),
        C(broker.crt), C(broker.key)); empty otherwise.
      type: dict
"""

import posixpath

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import (
    NODE_LABEL,
    ROLE_LABEL,
    Settings,
    instances,
    scratch_volumes,
)

FRONTEND = ("enabled", "image", "publish_address", "allowed_sources", "basic_auth", "config_dir", "delete_jobs",
            "uploads", "network")
# Who a frontend that only reads runs as: nobody, in group root, which the scratch directories (root's,
# scratch_dir_mode 0750) let read; no more than reading the scratch TeraChem wrote.
READER = "65534:0"
BROKER = ("rabbitmq_image", "redis_image", "bind_address", "rabbitmq_port", "redis_port", "config_dir", "tls")
# Where RabbitMQ and Redis find the TLS files the broker role writes into <config_dir>/tls.
TLS_FILES = ("ca.crt", "broker.crt", "broker.key")


def frontend(node: dict, scratch: dict | None, s: Settings) -> dict:
    config_dir = s.path("config_dir")
    config, htpasswd = f"{config_dir}/nginx.conf", f"{config_dir}/htpasswd"
    servers = instances(node, s.host)
    if not s.bool("enabled") or not servers:
        return {"containers": [], "volumes": [], "config_files": {"nginx": config}, "access": {}}
    volumes = scratch_volumes(scratch, servers, s.host)
    address = s.address("publish_address")
    basic_auth = s.bool("basic_auth")
    access = {"allowed_sources": s.networks("allowed_sources"), "basic_auth": basic_auth}
    writes = s.bool("delete_jobs") or s.bool("uploads")
    container = {
        "name": "terafleet-frontend",
        "image": s.str("image"),
        "restart_policy": "unless-stopped",
        "user": None if writes else READER,
        # Each server's scratch where nginx.conf serves it; no_copy: nothing of the image lands in a volume.
        "mounts": [*({"type": "volume", "source": volumes[item["name"]],
                      "target": f"/scratch/{posixpath.basename(item['scratch_dir'])}", "no_copy": True,
                      "read_only": not writes}
                     for item in servers),
                   {"type": "bind", "source": config, "target": "/etc/nginx/nginx.conf", "read_only": True},
                   *([{"type": "bind", "source": htpasswd, "target": "/etc/nginx/htpasswd", "read_only": True}]
                     if basic_auth else [])],
        "published_ports": [f"{address}:{item['frontend_port']}:{item['frontend_port']}"
                            for item in servers],
        "network": s.name("network"),
        "labels": {ROLE_LABEL: "frontend", NODE_LABEL: s.host},
    }
    return {"containers": [container], "volumes": [],
            "config_files": {"nginx": config, **({"htpasswd": htpasswd} if basic_auth else {})}, "access": access}


def broker(s: Settings) -> dict:
    address, config_dir = s.str("bind_address"), s.path("config_dir")
    rabbitmq_conf, redis_conf = f"{config_dir}/rabbitmq/10-terafleet.conf", f"{config_dir}/redis/redis.conf"
    tls = s.bool("tls")
    tls_files = {name: f"{config_dir}/tls/{name}" for name in TLS_FILES} if tls else {}

    def tls_mounts(target_dir: str) -> list[dict]:
        return [{"type": "bind", "source": source, "target": f"{target_dir}/{name}", "read_only": True}
                for name, source in tls_files.items()]

    rabbitmq = {
        "name": "terafleet-rabbitmq",
        "image": s.str("rabbitmq_image"),
        # RabbitMQ names its node, and so its database on the volume, after the host name.
        "hostname": "terafleet-rabbitmq",
        "restart_policy": "unless-stopped",
        "published_ports": [f"{address}:{s.int('rabbitmq_port', 1, 65535)}:{5671 if tls else 5672}"],
        "mounts": [{"type": "volume", "source": "terafleet-rabbitmq-data", "target": "/var/lib/rabbitmq"},
                   {"type": "bind", "source": rabbitmq_conf, "target": "/etc/rabbitmq/conf.d/10-terafleet.conf",
                    "read_only": True}, *tls_mounts("/etc/rabbitmq/tls")],
        "labels": {ROLE_LABEL: "broker"},
        "stop_timeout": 60,
    }
    redis = {
        "name": "terafleet-redis",
        "image": s.str("redis_image"),
        "command": ["redis-server", "/usr/local/etc/redis/redis.conf"],
        "restart_policy": "unless-stopped",
        "published_ports": [f"{address}:{s.int('redis_port', 1, 65535)}:6379"],
        "mounts": [{"type": "volume", "source": "terafleet-redis-data", "target": "/data"},
                   {"type": "bind", "source": redis_conf, "target": "/usr/local/etc/redis/redis.conf",
                    "read_only": True}, *tls_mounts("/usr/local/etc/redis/tls")],
        "labels": {ROLE_LABEL: "backend"},
        "stop_timeout": 30,
    }
    return {"containers": [rabbitmq, redis],
            "volumes": [{"name": "terafleet-rabbitmq-data", "labels": {ROLE_LABEL: "broker"}},
                        {"name": "terafleet-redis-data", "labels": {ROLE_LABEL: "broker"}}],
            "config_files": {"rabbitmq": rabbitmq_conf, "redis": redis_conf},
            "tls_files": tls_files}


def service_containers(node: dict, kind: str, settings: dict, host: str, scratch: dict | None = None) -> dict:
    """Return the frontend's or the broker's containers and volumes; see DOCUMENTATION."""
    if kind == "frontend":
        return frontend(node, scratch, Settings(settings, "frontend_", host, FRONTEND))
    if kind == "broker":
        return broker(Settings(settings, "broker_", host, BROKER))
    raise AnsibleFilterError(f"{host}: service_containers plans 'frontend' or 'broker', not {kind!r}")


class FilterModule:
    """terafleet's frontend and broker plan."""

    def filters(self) -> dict:
        return {"service_containers": service_containers}
