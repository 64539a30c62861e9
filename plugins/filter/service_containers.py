"""The node-wide containers: the file frontend of a GPU node, the head's RabbitMQ and Redis, and Flower."""

from __future__ import annotations

DOCUMENTATION = r"""
name: service_containers
short_description: Plan a node's file frontend, or the head's broker and result backend, or Flower
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
  - With O(kind=flower), turns the flower role's settings into the C(terafleet-flower) container (the
    worker image as C(terafleet-worker flower)), or none when Flower is off. It reads the broker and
    backend URLs and the CA from files, as the workers do, and its basic authentication's C(user:password)
    from another; all are in C(secrets) (written by the flower role into C(config_dir), root only, mounted
    read-only at C(/run/terafleet)), never in Docker's configuration.
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
    choices: [frontend, broker, flower]
    required: true
  settings:
    description:
      - For C(frontend), the frontend role's variables without their C(frontend_) prefix - C(enabled),
        C(image), C(publish_address) (an IP address), C(allowed_sources) (networks in CIDR notation, the
        only sources nginx answers), C(basic_auth) (whether a password file guards every server),
        C(config_dir), C(delete_jobs), C(uploads) - and C(network), the servers' network.
      - For C(broker), the broker role's variables without their C(broker_) prefix - C(rabbitmq_image),
        C(redis_image), C(bind_address), C(rabbitmq_port), C(redis_port), C(config_dir), C(tls),
        C(rabbitmq_metrics_port) (C(rabbitmq_prometheus)'s metrics published there on the bind address;
        0 for the plugin off).
      - With C(tls), RabbitMQ listens for AMQP over TLS only (container port 5671) and Redis for TLS only;
        each mounts the CA certificate, its certificate and key from C(<config_dir>/tls) read-only.
      - For C(flower), the flower role's variables without their C(flower_) prefix - C(enabled), C(image),
        C(publish_address), C(port), C(config_dir), C(basic_auth_user), C(basic_auth_password) - and
        C(worker), the celery_worker role's C(broker_url), C(result_backend), C(broker) and C(tls_ca), from
        which the URLs are built as for the workers.
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
        authentication, C(rabbitmq), C(redis), C(rabbitmq_plugins), RabbitMQ's C(enabled_plugins)).
      type: dict
    plugins:
      description: Only for O(kind=broker), the RabbitMQ plugins C(rabbitmq_plugins) enables.
      type: list
      elements: str
    access:
      description: Only for O(kind=frontend) with a frontend, who nginx answers - C(allowed_sources) (networks)
        and C(basic_auth) (a bool); empty otherwise.
      type: dict
    tls_files:
      description: Only for O(kind=broker), the TLS files' paths on the node by name (C(ca.crt),
        C(broker.crt), C(broker.key)); empty otherwise.
      type: dict
    secrets:
      description: Only for O(kind=flower), the files of C(config_dir) by name and their contents.
      type: dict
"""

import posixpath

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.worker_containers import urls
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
FLOWER = ("enabled", "image", "publish_address", "port", "config_dir", "basic_auth_user", "basic_auth_password",
          "worker")
# Where Flower finds the files of its configuration directory, and the port it listens on inside.
FLOWER_FILES = "/run/terafleet"
FLOWER_PORT = 5555
BROKER = ("rabbitmq_image", "redis_image", "bind_address", "rabbitmq_port", "redis_port", "config_dir", "tls",
          "rabbitmq_metrics_port")
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
    # The plugins RabbitMQ enables: rabbitmq_prometheus, serving its metrics on 15692, unless the port is 0.
    plugins = f"{config_dir}/rabbitmq/enabled_plugins"
    metrics_port = s.int("rabbitmq_metrics_port", 0, 65535)
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
        "published_ports": [f"{address}:{s.int('rabbitmq_port', 1, 65535)}:{5671 if tls else 5672}",
                            *([f"{address}:{metrics_port}:15692"] if metrics_port else [])],
        "mounts": [{"type": "volume", "source": "terafleet-rabbitmq-data", "target": "/var/lib/rabbitmq"},
                   {"type": "bind", "source": rabbitmq_conf, "target": "/etc/rabbitmq/conf.d/10-terafleet.conf",
                    "read_only": True},
                   {"type": "bind", "source": plugins, "target": "/etc/rabbitmq/enabled_plugins", "read_only": True},
                   *tls_mounts("/etc/rabbitmq/tls")],
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
            "config_files": {"rabbitmq": rabbitmq_conf, "redis": redis_conf, "rabbitmq_plugins": plugins},
            "plugins": ["rabbitmq_prometheus"] if metrics_port else [],
            "tls_files": tls_files}


def flower(s: Settings) -> dict:
    if not s.bool("enabled"):
        return {"containers": [], "volumes": [], "config_files": {}, "secrets": {}}
    worker = Settings(s.raw("worker"), "celery_worker_", s.host, ("broker_url", "result_backend", "broker", "tls_ca"))
    broker_url, backend_url = urls(worker)
    password = s.password("basic_auth_password")
    if "," in password:
        raise s.fail("basic_auth_password", "holds a comma, which Flower reads as the start of another user's entry")
    secrets = {"broker_url": broker_url, "result_backend": backend_url,
               "auth": f"{s.name('basic_auth_user')}:{password}"}
    tls_ca = worker.str("tls_ca", empty=True)
    if tls_ca.strip():
        secrets["ca.crt"] = tls_ca
    env = {"TERAFLEET_BROKER_URL_FILE": f"{FLOWER_FILES}/broker_url",
           "TERAFLEET_RESULT_BACKEND_FILE": f"{FLOWER_FILES}/result_backend",
           "TERAFLEET_FLOWER_AUTH_FILE": f"{FLOWER_FILES}/auth", "TERAFLEET_FLOWER_PORT": str(FLOWER_PORT),
           **({"TERAFLEET_TLS_CA_FILE": f"{FLOWER_FILES}/ca.crt"} if "ca.crt" in secrets else {})}
    container = {
        "name": "terafleet-flower",
        "image": s.str("image"),
        "command": ["flower"],
        "env": env,
        "secrets": dict(secrets),
        "mounts": [{"type": "bind", "source": s.path("config_dir"), "target": FLOWER_FILES, "read_only": True}],
        "published_ports": [f"{s.address('publish_address')}:{s.int('port', 1, 65535)}:{FLOWER_PORT}"],
        "restart_policy": "unless-stopped",
        "init": True,  # as the workers: a SIGTERM before Flower sets its handler stops it at once
        # The image's health check asks a worker; Flower's is whether it listens.
        "healthcheck": {"test": ["CMD", "python3", "-c", "import socket; socket.create_connection(('127.0.0.1', "
                                 f"{FLOWER_PORT}), 5).close()"], "interval": "30s", "timeout": "10s", "retries": 3,
                        "start_period": "30s"},
        "stop_timeout": 10,
        "labels": {ROLE_LABEL: "flower", NODE_LABEL: s.host},
    }
    return {"containers": [container], "volumes": [], "config_files": {}, "secrets": secrets}


def service_containers(node: dict, kind: str, settings: dict, host: str, scratch: dict | None = None) -> dict:
    """Return the frontend's, the broker's or Flower's containers and volumes; see DOCUMENTATION."""
    if kind == "frontend":
        return frontend(node, scratch, Settings(settings, "frontend_", host, FRONTEND))
    if kind == "broker":
        return broker(Settings(settings, "broker_", host, BROKER))
    if kind == "flower":
        return flower(Settings(settings, "flower_", host, FLOWER))
    raise AnsibleFilterError(f"{host}: service_containers plans 'frontend', 'broker' or 'flower', not {kind!r}")


class FilterModule:
    """terafleet's frontend, broker and Flower plan."""

    def filters(self) -> dict:
        return {"service_containers": service_containers}
