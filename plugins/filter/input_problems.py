"""What is wrong with a host's inputs, one named rule per problem, all shown at once."""

from __future__ import annotations

DOCUMENTATION = r"""
name: input_problems
short_description: List every problem with the inputs a host's plan needs, one rule each
version_added: 0.2.0
author: terafleet developers
description:
  - Runs every rule in RV(_value) against one host's inputs and returns each problem found, so preflight
    can refuse a run naming all of them at once, before any host changes.
  - "Rules: C(license_file) (a GPU node needs the TeraChem license on the controller), C(passwords) (every
    host whose plan renders a broker or backend URL - the head, GPU nodes, CPU nodes with workers (remote
    TeraChem or the CPU programs) - needs
    C(broker_rabbitmq_password) and C(broker_redis_password) as strings that are not empty, the RabbitMQ one
    one that C(rabbitmq.conf) can hold, see P(terafleet.cluster.config_value#filter), and a GPU node whose
    frontend asks for basic authentication needs C(frontend_basic_auth_password)), C(image_archives)
    (each archive in C(container_images_archives) exists on the controller), C(cpu_workers) (each entry of
    C(celery_worker_cpu_workers) is usable, names do not repeat), C(tls) (the site's C(broker_tls_ca_cert),
    C(broker_tls_cert) and C(broker_tls_key) are given all three or none with C(broker_tls) on, and each
    one given exists on the controller), C(network) (C(preflight_cluster_address) is an IP address; on a GPU
    node, C(preflight_allowed_sources) a list of networks in CIDR notation), C(retired) (no variable
    terafleet no longer reads is set, so a setting is never silently ignored)."
  - An input that is an undefined variable fails in Ansible, naming the variable, before any rule runs.
positional: host
options:
  _input:
    description:
      - The inputs, a dict - C(gpu_node), C(head), C(cpu_node) (booleans), C(license_file),
        C(rabbitmq_password), C(redis_password), C(broker_url), C(result_backend) (the workers' explicit
        URLs; a password is then not needed on GPU and CPU nodes), C(image_archives), C(cpu_workers),
        C(cpu_program_cores) (C(celery_worker_cpu_program_cores); a CPU node runs the CPU programs' worker
        unless it is 0),
        C(tls) (boolean), C(tls_ca_cert), C(tls_cert), C(tls_key), C(cluster_address), C(allowed_sources),
        C(frontend_basic_auth) (boolean, false where the frontend is off), C(frontend_basic_auth_password),
        C(set_variables) (the names of the
        host's variables that start with a role's prefix, from the C(ansible.builtin.varnames) lookup).
      - Paths are read on the controller, relative to its working directory.
    type: dict
    required: true
  host:
    description: Inventory host name, for error messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse the run on any problem
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ inventory_hostname }}: {{ problems | join('; ') }}"
  vars:
    problems: "{{ inputs | terafleet.cluster.input_problems(inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem, each naming the variable to fix; empty when all is well.
  type: list
  elements: str
  sample: ["broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"]
"""

import os
from collections.abc import Callable, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.config_syntax import rabbitmq_problem
from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import (
    as_address,
    as_int,
    as_network,
    cpu_workers_problems,
    password_problem,
)

INPUTS = ("gpu_node", "head", "cpu_node", "license_file", "rabbitmq_password", "redis_password", "broker_url",
          "result_backend", "image_archives", "cpu_workers", "cpu_program_cores", "tls", "tls_ca_cert", "tls_cert",
          "tls_key", "cluster_address", "allowed_sources", "frontend_basic_auth", "frontend_basic_auth_password",
          "set_variables")
# Variables terafleet read once, and what replaces each.
RETIRED = {
    "celery_worker_max_retries": "a calculation now waits for its server up to celery_worker_unavailable_timeout "
                                 "seconds after its first try",
}


def license_file(inputs: Mapping) -> list[str]:
    if not inputs["gpu_node"]:
        return []
    path = inputs["license_file"]
    if isinstance(path, str) and path and os.path.isfile(path):
        return []
    return [f"TeraChem license file '{path or ''}' not found on the controller (terachem_license_file)"]


def passwords(inputs: Mapping) -> list[str]:
    # A CPU node has workers when it drives remote servers or runs the CPU programs (null cores: every core).
    workers = inputs["gpu_node"] or (inputs["cpu_node"] and (bool(inputs["cpu_workers"])
                                                             or as_int(inputs["cpu_program_cores"]) != 0))
    if inputs["head"]:
        needed = ("rabbitmq_password", "redis_password")
    elif workers:
        needed = tuple(name for name, url in (("rabbitmq_password", "broker_url"), ("redis_password", "result_backend"))
                       if not inputs[url])
    else:
        needed = ()
    problems = [password_problem(inputs[name], f"broker_{name}") for name in needed]
    # Redis's file can quote anything; rabbitmq.conf cannot hold every string (config_value).
    if "rabbitmq_password" in needed and not problems[0]:
        problem = rabbitmq_problem(inputs["rabbitmq_password"])
        problems.append(f"broker_rabbitmq_password {problem}" if problem else "")
    if inputs["gpu_node"] and inputs["frontend_basic_auth"]:
        problems.append(password_problem(inputs["frontend_basic_auth_password"], "frontend_basic_auth_password"))
    return [problem for problem in problems if problem]


def image_archives(inputs: Mapping) -> list[str]:
    archives = inputs["image_archives"]
    if not isinstance(archives, Mapping):
        return [f"container_images_archives must be a dict of image to archive path, got {archives!r}"]
    return [f"archive '{path}' for image {image} not found on the controller (container_images_archives)"
            for image, path in archives.items() if not (isinstance(path, str) and os.path.isfile(path))]


def cpu_workers(inputs: Mapping) -> list[str]:
    return cpu_workers_problems(inputs["cpu_workers"]) if inputs["cpu_node"] else []


def tls(inputs: Mapping) -> list[str]:
    given = {name: inputs[f"tls_{name}"] for name in ("ca_cert", "cert", "key")}
    problems = []
    if inputs["tls"] and any(given.values()) and not all(given.values()):
        problems.append("broker_tls_ca_cert, broker_tls_cert and broker_tls_key go together: give all three, "
                        "or none and terafleet makes a CA and the head's certificate")
    for name, path in given.items():
        if path and not (isinstance(path, str) and os.path.isfile(path)):
            problems.append(f"broker_tls_{name} '{path}' not found on the controller")
    return problems


def network(inputs: Mapping) -> list[str]:
    problems = []
    address, sources = inputs["cluster_address"], inputs["allowed_sources"]
    if as_address(address) is None:
        problems.append(f"preflight_cluster_address must be an IP address, got {address!r}")
    if not inputs["gpu_node"]:
        return problems
    if not isinstance(sources, list) or not sources:
        return [*problems, f"preflight_allowed_sources must be a list of networks (CIDR), got {sources!r}"]
    return problems + [f"preflight_allowed_sources: {source!r} is not a network (CIDR such as 10.1.0.0/16)"
                       for source in sources if as_network(source) is None]


def retired(inputs: Mapping) -> list[str]:
    return [f"{name} is no longer read: {RETIRED[name]}; remove it from the inventory"
            for name in sorted(set(inputs["set_variables"] or []) & set(RETIRED))]


RULES: dict[str, Callable[[Mapping], list[str]]] = {
    "license_file": license_file,
    "passwords": passwords,
    "image_archives": image_archives,
    "cpu_workers": cpu_workers,
    "tls": tls,
    "network": network,
    "retired": retired,
}


def input_problems(inputs: dict, host: str) -> list[str]:
    """Return every problem with the host's inputs; see DOCUMENTATION."""
    if not isinstance(inputs, Mapping):
        raise AnsibleFilterError(f"{host}: input_problems takes a dict of inputs, got {inputs!r}")
    missing = [name for name in INPUTS if name not in inputs]
    if missing:
        raise AnsibleFilterError(f"{host}: input_problems lacks the inputs {missing}")
    return [problem for rule in RULES.values() for problem in rule(inputs)]


class FilterModule:
    """terafleet's preflight input rules."""

    def filters(self) -> dict:
        return {"input_problems": input_problems}
