"""The TeraChem server containers of one GPU node: what a server looks like, in one function."""

from __future__ import annotations

DOCUMENTATION = r"""
name: server_containers
short_description: Plan a GPU node's TeraChem server containers, one per GPU set
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the GPU sets preflight planned (C(preflight_node)) and the terachem role's settings into the
    full spec of every TeraChem server container, in the terms of M(terafleet.cluster.docker_containers).
  - One server per GPU set, named C(terachem-<set>), owning exactly that set's GPUs (by device request, or
    with the C(nvidia) runtime and C(NVIDIA_VISIBLE_DEVICES)), with its own scratch volume, the license
    bind-mounted read-only, a TCPB STATUS health check and terafleet's labels.
  - GPUs are asked for by UUID, so a server keeps its GPUs when the driver numbers them anew (a GPU fell
    off the bus); the indices stay in the set's name and the C(org.terafleet.gpus) label, for people.
  - A setting that is missing, null or of the wrong type fails with the inventory variable's name
    (C(terachem_<setting>)); an undefined variable inside one fails in Ansible with its name.
positional: scratch, settings, host
options:
  _input:
    description: C(preflight_node), the node fact the preflight role publishes (its C(instances)).
    type: dict
    required: true
  scratch:
    description: C(scratch_plan), the scratch role's plan; each server mounts its set's volume (C(volume_of)).
    type: dict
    required: true
  settings:
    description:
      - The terachem role's variables without their C(terachem_) prefix - C(image), C(command),
        C(gpu_mode), C(scratch_path), C(license_path), C(license_node_path), C(env), C(network),
        C(publish_ports), C(publish_address), C(allowed_sources), C(stop_timeout), C(healthcheck_interval),
        C(healthcheck_timeout), C(healthcheck_retries), C(healthcheck_start_period).
      - With C(publish_ports), each server's port is published on C(publish_address) (an IP address) and
        C(allowed_sources) must be a list of networks (CIDR), which the terachem role's firewall lets
        through and no other source; both are checked here, before any host changes.
      - Every key is required; the role's C(tasks/plan.yml) passes them all.
    type: dict
    required: true
  host:
    description: Inventory host name, for the C(org.terafleet.node) label and error messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the node's TeraChem servers
  ansible.builtin.set_fact:
    servers: "{{ preflight_node | terafleet.cluster.server_containers(scratch_plan, settings, inventory_hostname) }}"
  vars:
    settings:
      image: mtzgroup/terachem:latest
      command: [terachem, -s, "11111"]
      gpu_mode: device_request
      scratch_path: /scratch
      license_path: /opt/terachem/license.key
      license_node_path: /etc/terafleet/terachem/license.key
      env: {}
      network: terafleet
      publish_ports: true
      publish_address: 10.1.0.21
      allowed_sources: [10.1.0.0/16]
      stop_timeout: 30
      healthcheck_interval: 300s
      healthcheck_timeout: 5s
      healthcheck_retries: 3
      healthcheck_start_period: 60s
"""

RETURN = r"""
_value:
  description: One container spec per GPU set, in the order of C(preflight_node.instances).
  type: list
  elements: dict
  sample:
    - name: terachem-gpu0
      hostname: terachem-gpu0
      image: mtzgroup/terachem:latest
      init: true
      command: [terachem, -s, "11111"]
      working_dir: /scratch
      env: {}
      device_requests: [{driver: nvidia, device_ids: ["GPU-5a6e0d2c-..."], capabilities: [[gpu]]}]
      mounts:
        - {type: volume, source: terafleet-scratch-gpu0, target: /scratch, no_copy: true}
        - {type: bind, source: /etc/terafleet/terachem/license.key, target: /opt/terachem/license.key,
           read_only: true}
      network: terafleet
      aliases: [terachem-gpu0]
      published_ports: ["10.1.0.21:11111:11111"]
      stop_timeout: 30
      stop_first: [worker-gpu0]
      healthcheck: {test: [CMD, bash, -c, "..."], interval: 300s, timeout: 5s, retries: 3, start_period: 60s}
      labels: {org.terafleet.role: terachem, org.terafleet.node: gpu01, org.terafleet.gpu_set: gpu0,
               org.terafleet.gpus: "0", org.terafleet.gpu_uuids: "GPU-5a6e0d2c-..."}
"""

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import (
    NODE_LABEL,
    ROLE_LABEL,
    Settings,
    instances,
    scratch_volumes,
)

SETTINGS = ("image", "command", "gpu_mode", "scratch_path", "license_path", "license_node_path", "env", "network",
            "publish_ports", "publish_address", "allowed_sources", "stop_timeout", "healthcheck_interval",
            "healthcheck_timeout", "healthcheck_retries", "healthcheck_start_period")
# The port TeraChem's server listens on inside its container (terachem -s 11111).
SERVER_PORT = 11111
# A TCPB STATUS round-trip with bash alone (TeraChem's images have no Python): send an empty STATUS header,
# expect a STATUS header back within the timeout. A TCP connect alone would pass a hung server. Builtins
# only, so each check starts one process: `read -d ''` stops at a NUL byte,
# so four empty reads are the four zero bytes of the message type STATUS, and `-t` bounds the wait.
HEALTHCHECK = [
    "CMD", "bash", "-c",
    f"exec 3<>/dev/tcp/127.0.0.1/{SERVER_PORT} && printf '\\0\\0\\0\\0\\0\\0\\0\\0' >&3"
    " && for byte in 1 2 3 4; do IFS= read -r -t 4 -d '' answer <&3 && [ -z \"$answer\" ] || exit 1; done",
]


def server_containers(node: dict, scratch: dict, settings: dict, host: str) -> list[dict]:
    """Return the node's TeraChem server containers; see DOCUMENTATION."""
    s = Settings(settings, "terachem_", host, SETTINGS)
    image, command, gpu_mode = s.str("image"), s.strings("command", empty=False), s.choice(
        "gpu_mode", ("device_request", "nvidia_runtime"))
    scratch_path, license_path, license_node_path = s.path("scratch_path"), s.path("license_path"), s.path(
        "license_node_path")
    env, network = s.env("env"), s.name("network")
    sets = instances(node, s.host)
    publish_ports = s.bool("publish_ports")
    # Checked here, before any host changes, where servers are published; the terachem role's firewall
    # applies the allow-list (DOCKER-USER).
    publish_address = s.address("publish_address") if publish_ports and sets else ""
    if publish_ports and sets:
        s.networks("allowed_sources")
    stop_timeout = s.int("stop_timeout", minimum=0)
    healthcheck = {"test": HEALTHCHECK, "interval": s.duration("healthcheck_interval"),
                   "timeout": s.duration("healthcheck_timeout"), "retries": s.int("healthcheck_retries", minimum=1),
                   "start_period": s.duration("healthcheck_start_period")}
    volumes = scratch_volumes(scratch, sets, host)
    servers = []
    for item in sets:
        indices, uuids = [str(device) for device in item["devices"]], [str(uuid) for uuid in item["uuids"]]
        spec = {
            "name": item["instance"],
            "hostname": item["instance"],
            "image": image,
            # Docker's init as PID 1 passes SIGTERM on to TeraChem, which as PID 1 would ignore it.
            "init": True,
            "command": command,
            "working_dir": scratch_path,
        }
        if gpu_mode == "nvidia_runtime":
            spec["env"] = {**env, "NVIDIA_VISIBLE_DEVICES": ",".join(uuids)}
            spec["runtime"] = "nvidia"
        else:
            spec["env"] = dict(env)
            spec["device_requests"] = [{"driver": "nvidia", "device_ids": uuids, "capabilities": [["gpu"]]}]
        spec.update({
            # no_copy: Docker would otherwise copy the image's directory, and its mode, onto the scratch.
            "mounts": [{"type": "volume", "source": volumes[item["name"]], "target": scratch_path, "no_copy": True},
                       {"type": "bind", "source": license_node_path, "target": license_path, "read_only": True}],
            "network": network,
            "aliases": [item["instance"]],
            "published_ports": [f"{publish_address}:{item['port']}:{SERVER_PORT}"] if publish_ports else [],
            "stop_timeout": stop_timeout,
            # A server is stopped (recreated, restarted) only after its worker has finished its calculation.
            "stop_first": [item["worker"]],
            "healthcheck": dict(healthcheck),
            "labels": {ROLE_LABEL: "terachem", NODE_LABEL: host, "org.terafleet.gpu_set": item["name"],
                       "org.terafleet.gpus": ",".join(indices), "org.terafleet.gpu_uuids": ",".join(uuids)},
        })
        servers.append(spec)
    return servers


class FilterModule:
    """terafleet's TeraChem server plan."""

    def filters(self) -> dict:
        return {"server_containers": server_containers}
