"""Real-looking inputs for the plan filters: a node's preflight_node and each role's default settings."""

import copy

from ansible_collections.terafleet.cluster.plugins.filter.gpu_sets import gpu_sets
from ansible_collections.terafleet.cluster.plugins.filter.instance_plan import instance_plan
from ansible_collections.terafleet.cluster.plugins.filter.scratch_plan import scratch_plan

GPUS = [{"index": i, "uuid": f"GPU-{i:08x}-1111-2222-3333-444444444444", "healthy": True} for i in range(4)]


def preflight_node(size: int = 1, gpu_node: bool = True) -> dict:
    sets = gpu_sets(GPUS, size=size, host="gpu01.cluster") if gpu_node else []
    return {"gpu_node": gpu_node, "cpus": 16, "lstor_path": "/lstor", "scratch_root": "/lstor/terafleet",
            "smoke_marker": "/var/lib/terafleet/smoke-test-pending",
            "instances": instance_plan(sets, "/lstor/terafleet", "gpu01", 11111, 8080, [])}


SCRATCH = {"root": "/lstor/terafleet", "root_mode": "0755", "dir_mode": "0750", "backend": "local",
           "nfs_server": "", "nfs_export": "/export", "nfs_options": "nfsvers=4.2,hard"}
NFS = {**SCRATCH, "backend": "nfs", "nfs_server": "10.1.0.20", "nfs_export": "/export/terafleet"}


def scratch(node: dict, backend: dict = SCRATCH) -> dict:
    """The scratch plan of a node's GPU sets, local by default."""
    return scratch_plan(node["instances"], backend, "gpu01")


TERACHEM = {
    "image": "mtzgroup/terachem:latest", "command": ["terachem", "-s", "11111"], "gpu_mode": "device_request",
    "scratch_path": "/scratch", "license_path": "/opt/terachem/license.key",
    "license_node_path": "/etc/terafleet/terachem/license.key", "env": {}, "network": "terafleet",
    "publish_ports": True, "publish_address": "10.1.0.21", "allowed_sources": ["10.1.0.0/16"], "stop_timeout": 30,
    "healthcheck_interval": "10s",
    "healthcheck_timeout": "5s", "healthcheck_retries": 3, "healthcheck_start_period": "60s",
}

BROKER = {"host": "10.1.0.10", "tls": False, "rabbitmq_user": "terafleet", "rabbitmq_password": "s3cret/+pw",
          "rabbitmq_port": 5672, "rabbitmq_vhost": "terafleet", "redis_user": "terafleet", "redis_password": "r3dis",
          "redis_port": 6379, "redis_database": 0}

CELERY_WORKER = {
    "image": "terafleet/worker:latest", "queues": ["terachem"], "concurrency": 1, "stop_timeout": 86400,
    "result_expires": 604800, "unavailable_timeout": 21600, "memory": "2g", "retry_backoff": 2, "env": {},
    "network": "terafleet",
    "broker_url": "", "result_backend": "", "cpu_workers": [], "secrets_dir": "/etc/terafleet/worker",
    "tls_ca": "", "broker": BROKER, "cpu_programs": ["pyscf", "xtb"], "cpu_program_queues": ["cpu"],
    "cpu_program_cores": None, "cpu_program_threads": 1, "cpu_program_memory": "4g", "cpu_node": False,
}

FRONTEND = {"enabled": True, "image": "nginx:stable", "publish_address": "10.1.0.21",
            "allowed_sources": ["10.1.0.0/16", "10.2.0.7"], "basic_auth": False,
            "config_dir": "/etc/terafleet/frontend", "delete_jobs": False, "uploads": False, "network": "terafleet"}

BROKER_ROLE = {"rabbitmq_image": "rabbitmq:3.13", "redis_image": "redis:7", "bind_address": "10.1.0.10",
               "rabbitmq_port": 5672, "redis_port": 6379, "config_dir": "/etc/terafleet/broker",
               "tls": False, "rabbitmq_metrics_port": 15692}

NODE_CHECKS = {
    "enabled": True, "bin_dir": "/usr/local/sbin", "state_dir": "/var/lib/terafleet", "webhook_url": "",
    "webhook_body": {"text": "{message}"}, "alertmanager_url": "",
    "disk_interval_minutes": 15, "disk_max_percent": 85, "disk_min_free_gb": 50, "prune_age_hours": 72,
    "watchdog_interval_minutes": 1, "watchdog_poll_seconds": 60, "watchdog_probe_seconds": 15,
    "watchdog_hang_seconds": 15, "watchdog_max_restarts": 5,
    "watchdog_window_seconds": 3600, "metrics_enabled": True, "metrics_dir": "/var/lib/prometheus/node-exporter",
    "metrics_every_seconds": 20,
    "scripts": {"terafleet-disk-check": "#!/usr/bin/python3\n", "terafleet-watchdog": "#!/usr/bin/python3\n",
                "terafleet-node-metrics": "#!/usr/bin/python3\n", "terafleet_checks.py": "\"\"\"shared\"\"\"\n"},
}


def settings(base: dict, **changes) -> dict:
    """A copy of base with changes; a change to None removes the key (a setting not given)."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            result.pop(key)
        else:
            result[key] = value
    return result
