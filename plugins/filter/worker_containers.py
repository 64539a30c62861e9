"""The Celery worker containers of one node: one per TeraChem server, and the CPU-only ones."""

from __future__ import annotations

DOCUMENTATION = r"""
name: worker_containers
short_description: Plan a node's Celery worker containers, with their broker and result backend
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the GPU sets preflight planned (C(preflight_node)) and the celery_worker role's settings into the
    full spec of every worker container, in the terms of M(terafleet.cluster.docker_containers).
  - One worker per TeraChem server (C(worker-<set>)), on the node's network, reading its server's scratch,
    consuming the shared queues and its own C(terachem.<node>.<set>); then the CPU-only workers
    (C(cpu_workers)), each driving a server elsewhere through its published port; then C(worker-cpu), the
    worker running the CPU programs (C(cpu_programs), PySCF and xTB) in its own processes, from
    C(cpu_program_queues), one task per C(cpu_program_threads) of its C(cpu_program_cores) cores (Docker's
    C(--cpus) holds it to them), with C(cpu_program_memory) per task.
  - The broker and result backend URLs are built from the broker role's settings (C(broker)) unless
    C(broker_url) and C(result_backend) are given. A password that is undefined, null, not a string or
    empty is refused with the variable's name, on every host whose plan has a worker.
  - The URLs hold the passwords, so they are in no container's environment. Each worker's C(secrets)
    holds them under the names of the files the celery_worker role writes into C(secrets_dir) (root,
    0400), which every worker mounts read-only at C(/run/terafleet); C(TERAFLEET_BROKER_URL_FILE) and
    C(TERAFLEET_RESULT_BACKEND_FILE) name those files.
  - With the broker role's C(tls) on, the built URLs are C(amqps://) and C(rediss://). With C(tls_ca) (the
    CA certificate's text) each worker's C(secrets) also holds C(ca.crt), which it reads through
    C(TERAFLEET_TLS_CA_FILE) to verify the broker's and backend's certificates; without it, the system's
    CAs do.
positional: scratch, settings, host, host_short
options:
  _input:
    description: C(preflight_node), the node fact the preflight role publishes (its C(instances) and C(cpus)).
    type: dict
    required: true
  scratch:
    description: C(scratch_plan), the scratch role's plan; each GPU set's worker mounts its volume read-only.
    type: dict
    required: true
  settings:
    description:
      - The celery_worker role's variables without their C(celery_worker_) prefix - C(image), C(queues),
        C(concurrency), C(stop_timeout), C(result_expires), C(unavailable_timeout), C(retry_backoff),
        C(memory), C(env),
        C(network), C(broker_url), C(result_backend), C(cpu_workers), C(secrets_dir), C(tls_ca), C(cpu_programs),
        C(cpu_program_queues), C(cpu_program_cores), C(cpu_program_threads), C(cpu_program_memory), C(cpu_node)
        (whether the host is in C(cpu_nodes)) - and
        C(broker), a dict of the broker role's C(tls), C(rabbitmq_user), C(rabbitmq_password),
        C(rabbitmq_port), C(rabbitmq_vhost), C(redis_user), C(redis_password), C(redis_port),
        C(redis_database) and the C(host) the workers reach them at.
      - C(cpu_workers) entries are C({name, queues, server_host, server_port}); give C([]) on hosts that
        run none.
      - C(cpu_program_cores) null means every core of the node (C(_input.cpus)) where C(cpu_node) is true and
        the node is no GPU node, and none elsewhere; 0 means none.
      - C(broker) is read only where C(broker_url) or C(result_backend) is empty.
    type: dict
    required: true
  host:
    description: Inventory host name, for the C(org.terafleet.node) label and error messages.
    type: str
    required: true
  host_short:
    description: Short host name, in C(TERAFLEET_NODE) and the worker's own queue.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the node's workers
  ansible.builtin.set_fact:
    workers: >-
      {{ preflight_node | terafleet.cluster.worker_containers(scratch_plan, settings, inventory_hostname,
                                                              inventory_hostname_short) }}
"""

RETURN = r"""
_value:
  description: One container spec per worker, the GPU sets' first, in the order of C(preflight_node.instances).
  type: list
  elements: dict
  sample:
    - name: worker-gpu0
      hostname: worker-gpu0
      image: terafleet/worker:latest
      env: {TERAFLEET_QUEUES: "terachem,terachem.gpu01.gpu0", TCPB_HOST: terachem-gpu0, TCPB_PORT: "11111",
            TERAFLEET_BROKER_URL_FILE: /run/terafleet/broker_url,
            TERAFLEET_RESULT_BACKEND_FILE: /run/terafleet/result_backend}
      secrets: {broker_url: "amqp://terafleet:...@10.0.0.1:5672/terafleet",
                result_backend: "redis://terafleet:...@10.0.0.1:6379/0"}
      mounts: [{type: volume, source: terafleet-scratch-gpu0, target: /scratch, read_only: true},
               {type: bind, source: /etc/terafleet/worker, target: /run/terafleet, read_only: true}]
      network: terafleet
      init: true
      stop_timeout: 86400
      labels: {org.terafleet.role: worker, org.terafleet.node: gpu01, org.terafleet.gpu_set: gpu0,
               org.terafleet.server: terachem-gpu0}
"""

from urllib.parse import quote, urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import memory_bytes
from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import (
    NODE_LABEL,
    ROLE_LABEL,
    Settings,
    as_int,
    cpu_workers_problems,
    instances,
    scratch_volumes,
)

SETTINGS = ("image", "queues", "concurrency", "stop_timeout", "result_expires", "unavailable_timeout",
            "retry_backoff", "memory",
            "env", "network", "broker_url", "result_backend", "cpu_workers", "secrets_dir", "tls_ca", "broker",
            "cpu_programs", "cpu_program_queues", "cpu_program_cores", "cpu_program_threads", "cpu_program_memory",
            "cpu_node")
# The programs a worker runs in its own processes (the worker package's programs.py).
CPU_PROGRAMS = ("pyscf", "xtb")
PROGRAM_WORKER = "worker-cpu"
BROKER = ("host", "tls", "rabbitmq_user", "rabbitmq_password", "rabbitmq_port", "rabbitmq_vhost", "redis_user",
          "redis_password", "redis_port", "redis_database")
SERVER_PORT = "11111"
# Where a worker finds the files of the node's secrets directory.
SECRETS_TARGET = "/run/terafleet"
SECRET_FILES = {"broker_url": "TERAFLEET_BROKER_URL", "result_backend": "TERAFLEET_RESULT_BACKEND"}
CA_FILE = "ca.crt"


def urls(s: Settings) -> tuple[str, str]:
    """The broker and result backend URLs, given or built from the broker role's settings."""
    broker_url, backend_url = s.str("broker_url", empty=True), s.str("result_backend", empty=True)
    if not broker_url or not backend_url:
        broker = Settings(s.raw("broker"), "broker_", s.host, BROKER)
        rabbitmq_password, redis_password = broker.password("rabbitmq_password"), broker.password("redis_password")
        host = broker.str("host", empty=True)
        if not host:
            raise AnsibleFilterError(f"{s.host}: no broker address: the head node's facts are missing and "
                                     "celery_worker_broker_host is empty; set it or keep a head in the play")
        amqp, redis = ("amqps", "rediss") if broker.bool("tls") else ("amqp", "redis")
        if not broker_url:
            broker_url = (f"{amqp}://{quote(broker.str('rabbitmq_user'), safe='')}:"
                          f"{quote(rabbitmq_password, safe='')}@{host}:"
                          f"{broker.int('rabbitmq_port', 1, 65535)}/{broker.str('rabbitmq_vhost')}")
        if not backend_url:
            backend_url = (f"{redis}://{broker.name('redis_user')}:{quote(redis_password, safe='')}@{host}:"
                           f"{broker.int('redis_port', 1, 65535)}/{broker.int('redis_database', 0)}")
    for name, url in (("broker_url", broker_url), ("result_backend", backend_url)):
        if not urlsplit(url).password:
            raise s.fail(name, f"has no password in {redact(url)!r}")
    return broker_url, backend_url


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def worker_containers(node: dict, scratch: dict, settings: dict, host: str, host_short: str) -> list[dict]:
    """Return the node's Celery worker containers; see DOCUMENTATION."""
    s = Settings(settings, "celery_worker_", host, SETTINGS)
    image, queues, network = s.str("image"), s.strings("queues", empty=False), s.name("network")
    stop_timeout, env = s.int("stop_timeout", minimum=0), s.env("env")
    entries = s.raw("cpu_workers")
    problems = cpu_workers_problems(entries)
    if problems:
        raise AnsibleFilterError(f"{host}: {'; '.join(problems)}")
    cpu_workers = [{"name": entry["name"], "queues": [str(q) for q in entry["queues"]],
                    "server_host": str(entry["server_host"]), "server_port": as_int(entry["server_port"])}
                   for entry in entries]
    sets = instances(node, host)
    program_settings = cpu_programs(s, node)
    if not sets and not cpu_workers and program_settings is None:
        return []
    volumes = scratch_volumes(scratch, sets, host)
    broker_url, backend_url = urls(s)
    # The URLs carry the passwords: the workers read them from files, and docker_containers hashes them
    # into each worker's configuration (a new password recreates the workers) without giving them to Docker.
    secrets = {"broker_url": broker_url, "result_backend": backend_url}
    tls_ca = s.str("tls_ca", empty=True)
    if tls_ca.strip():
        secrets[CA_FILE] = tls_ca
    secrets_mount = {"type": "bind", "source": s.path("secrets_dir"), "target": SECRETS_TARGET, "read_only": True}
    reserved = {*SECRET_FILES.values(), *(f"{name}_FILE" for name in SECRET_FILES.values()), "TERAFLEET_TLS_CA_FILE"}
    common = {**{key: value for key, value in env.items() if key not in reserved},
              **{f"{name}_FILE": f"{SECRETS_TARGET}/{file}" for file, name in SECRET_FILES.items()},
              **({"TERAFLEET_TLS_CA_FILE": f"{SECRETS_TARGET}/{CA_FILE}"} if CA_FILE in secrets else {}),
              "TERAFLEET_RESULT_EXPIRES": str(s.int("result_expires", minimum=1)),
              "TERAFLEET_UNAVAILABLE_TIMEOUT": str(s.int("unavailable_timeout", minimum=1)),
              "TERAFLEET_RETRY_BACKOFF": s.number("retry_backoff"),
              "TERAFLEET_NODE": host_short}
    concurrency = str(s.int("concurrency", minimum=1))
    memory = s.str("memory")
    workers = []
    for item in sets:
        workers.append({
            "name": item["worker"],
            "hostname": item["worker"],
            "image": image,
            "env": {**common,
                    "TERAFLEET_QUEUES": ",".join([*queues, f"terachem.{host_short}.{item['name']}"]),
                    "TERAFLEET_CONCURRENCY": concurrency,
                    "TERAFLEET_GPU_SET": item["name"],
                    "TERAFLEET_SCRATCH_DIR": "/scratch",
                    "TCPB_HOST": item["instance"],
                    "TCPB_PORT": SERVER_PORT},
            "secrets": dict(secrets),
            "mounts": [{"type": "volume", "source": volumes[item["name"]], "target": "/scratch", "read_only": True},
                       dict(secrets_mount)],
            "network": network,
            # Docker's init as PID 1 passes SIGTERM on. Celery as PID 1 would have the kernel drop a SIGTERM
            # that comes before it sets its handler, as while the entry point waits for the server: a stop
            # then waits out the whole stop timeout.
            "init": True,
            "stop_timeout": stop_timeout,
            "memory": memory,
            "labels": {ROLE_LABEL: "worker", NODE_LABEL: host, "org.terafleet.gpu_set": item["name"],
                       "org.terafleet.server": item["instance"]},
        })
    for entry in cpu_workers:
        name = f"worker-{entry['name']}"
        workers.append({
            "name": name,
            "hostname": name,
            "image": image,
            "env": {**common,
                    "TERAFLEET_QUEUES": ",".join(entry["queues"]),
                    "TERAFLEET_CONCURRENCY": "1",
                    "TERAFLEET_GPU_SET": entry["name"],
                    "TCPB_HOST": entry["server_host"],
                    "TCPB_PORT": str(entry["server_port"])},
            "secrets": dict(secrets),
            "mounts": [dict(secrets_mount)],
            "init": True,
            "stop_timeout": stop_timeout,
            "memory": memory,
            "labels": {ROLE_LABEL: "worker", NODE_LABEL: host, "org.terafleet.gpu_set": entry["name"],
                       "org.terafleet.server": f"{entry['server_host']}:{entry['server_port']}"},
        })
    if program_settings is not None:
        programs, program_queues, cores, threads, memory_per_task = program_settings
        workers.append({
            "name": PROGRAM_WORKER,
            "hostname": PROGRAM_WORKER,
            "image": image,
            "env": {**common,
                    "TERAFLEET_QUEUES": ",".join(program_queues),
                    "TERAFLEET_CONCURRENCY": str(cores // threads),
                    "TERAFLEET_PROGRAMS": ",".join(programs),
                    "TERAFLEET_GPU_SET": "programs",
                    "OMP_NUM_THREADS": str(threads)},
            "secrets": dict(secrets),
            "mounts": [dict(secrets_mount)],
            "init": True,
            "stop_timeout": stop_timeout,
            "memory": str(memory_per_task * (cores // threads)),
            "cpus": float(cores),
            "labels": {ROLE_LABEL: "worker", NODE_LABEL: host, "org.terafleet.programs": ",".join(programs)},
        })
    return workers


def cpu_programs(s: Settings, node: dict) -> tuple | None:
    """The CPU programs' worker settings on this node (programs, queues, cores, threads per task, memory per
    task in bytes), or None where it runs none: celery_worker_cpu_program_cores null means every core on a
    cpu_nodes host that is no GPU node, and none elsewhere."""
    raw_cores = s.optional("cpu_program_cores")
    node_cpus = as_int(node.get("cpus")) if isinstance(node, dict) else None
    if raw_cores is None:
        if not s.bool("cpu_node") or (isinstance(node, dict) and node.get("gpu_node")):
            return None
        if not node_cpus:
            raise s.fail("cpu_program_cores", "is null (every core) but the node's CPU count is unknown; set it")
        cores = node_cpus
    else:
        cores = s.int("cpu_program_cores", minimum=0)
    if cores == 0:
        return None
    if node_cpus and cores > node_cpus:
        raise s.fail("cpu_program_cores", f"asks for {cores} cores; the node has {node_cpus}")
    programs = s.strings("cpu_programs", empty=False)
    unknown = sorted(set(programs) - set(CPU_PROGRAMS))
    if unknown:
        raise s.fail("cpu_programs", f"names {unknown}; the CPU programs are {', '.join(CPU_PROGRAMS)}")
    queues = s.strings("cpu_program_queues", empty=False)
    threads = s.int("cpu_program_threads", minimum=1)
    if threads > cores:
        raise s.fail("cpu_program_threads", f"is {threads}, more than the {cores} cores the CPU programs get "
                     "(celery_worker_cpu_program_cores)")
    memory = s.str("cpu_program_memory")
    size = memory_bytes(memory)
    if size is None:
        raise s.fail("cpu_program_memory", f"must be a size such as 512m or 4g, got {memory!r}")
    return programs, queues, cores, threads, size


class FilterModule:
    """terafleet's Celery worker plan."""

    def filters(self) -> dict:
        return {"worker_containers": worker_containers}
