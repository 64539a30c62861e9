#!/usr/bin/python
"""Ansible module: run a group of Docker containers on a node in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: docker_containers
short_description: Run a group of Docker containers on a node in one call
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - terafleet.cluster.docker_api
description:
  - Brings every container in O(containers) to its configuration and running, with one module run per
    node instead of one per container. A node with 16 GPU sets runs 16 servers and 16 workers; one
    call each cost a second or more of Python start-up and inspection on the node.
  - Each container carries the label C(org.terafleet.config-hash), a hash of its configuration as given
    here, and C(org.terafleet.config), that configuration itself with every O(containers[].secret_env)
    value replaced by a short hash of it. A container is recreated (stopped with its own stop timeout,
    removed, created, started) when that hash differs or when its image reference now names another
    image; otherwise it is left running. Containers made by an earlier release, without the hash label,
    are recreated once.
  - A container with O(containers[].state=absent) is stopped (with its own stop timeout) and removed.
    With O(retire), every container that carries a selector's labels and that O(containers) does not name
    is retired the same way - the selectors in the order given, the containers of one selector side by side,
    all before any container is recreated or started. A Celery worker stopped so finishes the
    calculations it runs (warm shutdown) and takes no new ones.
  - With C(--diff), each container to be created, recreated, retired or removed, or whose restart policy
    changes, shows as a diff of its configuration, one line per setting, secrets masked. In
    check mode nothing is changed and the result lists what would be.
  - The restart policy is compared on its own and changed in place, so a policy the terafleet watchdog
    set to C(no) for a crash loop is restored without recreating the container. A stopped container
    is started.
  - Recreated containers are stopped side by side, then the containers are created and started, four
    at a time. With O(healthy_wait_timeout) or O(start_delay), they start one after another in the order
    given, and with O(healthy_wait_timeout) each must turn healthy before the next starts.
  - Talks to the engine through its unix socket with the Python standard library only.
options:
  containers:
    description: The containers, in start order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Container name.
        type: str
        required: true
      state:
        description: C(present) runs the container; C(absent) stops and removes it (only O(containers[].name)
          is read).
        type: str
        choices: [present, absent]
        default: present
      image:
        description: Image reference; it must already be on the node. Required when
          O(containers[].state=present).
        type: str
      hostname:
        description: Host name inside the container.
        type: str
      command:
        description: Command, as a list of arguments; the image's own when not given.
        type: list
        elements: str
      working_dir:
        description: Working directory inside the container.
        type: str
      env:
        description: Environment; values are turned into strings.
        type: dict
        default: {}
      secret_env:
        description:
          - Environment that holds secrets (URLs with passwords); values are turned into strings. Part of
            the configuration like O(containers[].env), but kept out of the task's output and the diff, and
            recorded in the container's C(org.terafleet.config) label only as a short hash.
          - A key may not be in both O(containers[].env) and O(containers[].secret_env).
          - Docker keeps a container's environment where C(docker inspect) shows it; prefer
            O(containers[].secrets).
        type: dict
        default: {}
      secrets:
        description:
          - Secrets the container reads from files written on the node beforehand (a read-only mount), by
            any name; values are turned into strings. They are not given to Docker. They are part of the
            configuration, so a changed value recreates the container, and are recorded in its
            C(org.terafleet.config) label and the diff only as a short hash, like O(containers[].secret_env).
        type: dict
        default: {}
      labels:
        description: Labels; values are turned into strings.
        type: dict
        default: {}
      init:
        description: Run Docker's init as PID 1, which passes signals on to the command.
        type: bool
        default: false
      user:
        description: User (and group) the container's command runs as, C(UID[:GID]) or a name the image
          knows (Docker's C(--user)); the image's own user when not given.
        type: str
      runtime:
        description: OCI runtime name (for example C(nvidia)); the engine's default when not given.
        type: str
      device_requests:
        description: Device requests, as Docker's C(--gpus) makes them.
        type: list
        elements: dict
        default: []
        suboptions:
          driver:
            description: Device driver (C(nvidia)).
            type: str
          count:
            description:
              - How many devices; C(-1) for all. Ignored when O(containers[].device_requests[].device_ids) is given.
            type: int
            default: 0
          device_ids:
            description: Device ids (GPU indices or UUIDs).
            type: list
            elements: str
            default: []
          capabilities:
            description: Capability sets, for example C([[gpu]]).
            type: list
            elements: list
            default: []
      mounts:
        description: Bind and volume mounts.
        type: list
        elements: dict
        default: []
        suboptions:
          type:
            description: Mount type.
            type: str
            choices: [bind, volume]
            default: volume
          source:
            description: Host path (bind) or volume name.
            type: str
            required: true
          target:
            description: Path inside the container.
            type: str
            required: true
          read_only:
            description: Mount read-only.
            type: bool
            default: false
          no_copy:
            description: Do not copy the image's content at the target into a new volume.
            type: bool
            default: false
      network:
        description: Docker network to attach to; the engine's default bridge when not given.
        type: str
      aliases:
        description: Aliases on O(containers[].network).
        type: list
        elements: str
        default: []
      published_ports:
        description: Ports published on the node, each C([address:]node_port:container_port[/protocol]).
        type: list
        elements: str
        default: []
      restart_policy:
        description: Docker's restart policy.
        type: str
        choices: ['no', always, unless-stopped, on-failure]
        default: unless-stopped
      stop_timeout:
        description: Seconds between SIGTERM and SIGKILL when the container is stopped.
        type: int
      memory:
        description:
          - The container's memory limit (Docker's C(--memory)), in bytes or with a C(k), C(m) or C(g) suffix;
            the kernel ends a process of the container that would use more. Unset, no limit.
        type: str
      cpus:
        description:
          - How many CPUs' worth of time the container may use (Docker's C(--cpus)), such as C(4) or C(1.5).
            Unset, no limit.
        type: float
      healthcheck:
        description: Health check. Durations take C(ms), C(s), C(m) and C(h) units, or are seconds.
        type: dict
        suboptions:
          test:
            description: Check command, C([CMD, ...]) or C([CMD-SHELL, ...]).
            type: list
            elements: str
            required: true
          interval:
            description: Time between checks.
            type: str
            default: 30s
          timeout:
            description: Time one check may take.
            type: str
            default: 30s
          retries:
            description: Failures in a row that make the container unhealthy.
            type: int
            default: 3
          start_period:
            description: Time after start during which failures do not count.
            type: str
            default: 0s
      restart:
        description: Restart the container when it is otherwise left running (for example after its
          configuration file changed).
        type: bool
        default: false
      stop_first:
        description:
          - Containers to stop, each with its own stop timeout, before this one is stopped to be recreated
            or restarted, and to leave stopped (whoever runs them starts them again). A TeraChem server's
            Celery worker, so that it finishes its calculation (warm shutdown) before the server goes.
          - Not part of the configuration; a container not there or not running is left as it is.
        type: list
        elements: str
        default: []
  networks:
    description: Networks (C(bridge) driver) created before the containers where they are missing; an
      existing network is left as it is.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: Network name., type: str, required: true}
      labels: {description: Labels of a new network; values are turned into strings., type: dict, default: {}}
  volumes:
    description: Named volumes (C(local) driver) created before the containers where they are missing, with
      their labels (a volume a container mounts would otherwise be created by the engine, unlabelled); an
      existing volume is left as it is, data and labels.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: Volume name., type: str, required: true}
      labels: {description: Labels of a new volume; values are turned into strings., type: dict, default: {}}
  retire:
    description:
      - Label selectors. A container that carries every label of a selector (with that value; a value of
        null matches any) and that O(containers) does not name is stopped with its own stop timeout and
        removed. The selectors are worked through in the order given, so that, for example, the workers of
        retiring TeraChem servers have finished their calculations before the servers stop.
      - A selector with no labels is refused, so that a mistake cannot retire every container of the node.
    type: list
    elements: dict
    default: []
    suboptions:
      labels:
        description: The labels a container must carry to be retired.
        type: dict
        required: true
      stop_timeout:
        description: Seconds to wait for these containers to stop, instead of each one's own stop timeout.
        type: int
  keep:
    description: Names O(retire) leaves alone besides those in O(containers), so that one call can retire
      what a node's whole plan no longer names before other calls bring up the rest.
    type: list
    elements: str
    default: []
  changed_marker:
    description: A file created (with its directory) before anything is changed, when something will be;
      it stays until whoever tests the change removes it (terafleet's smoke test), so a run that fails
      before that test leaves the test due.
    type: path
  watchdog_pause_file:
    description:
      - The terafleet watchdog's maintenance mark (C(watchdog.pause) beside its state file). When something
        will change, the module writes into it a deadline O(watchdog_pause_seconds) from now, so that the
        watchdog acts on nothing while containers are stopped, removed and recreated, and removes it when
        done, whatever happened. A mark with a later deadline (an admin's C(terafleet-watchdog --pause)) is
        left as it is, and one the module did not write is never removed.
    type: path
  watchdog_pause_seconds:
    description: How long the mark holds at most, should the run die before it removes it.
    type: int
    default: 3600
  healthy_wait_timeout:
    description: When above 0, start the containers one at a time, each after the one before it turned
      healthy, waiting at most this many seconds for each. 0 starts them all at once.
    type: int
    default: 0
  start_delay:
    description: Seconds to wait after starting one container before starting the next.
    type: int
    default: 0
attributes:
  platform:
    platforms: posix
notes:
  - Without O(retire), only the containers listed are touched; removing one from the list leaves it running.
  - Images are not pulled; a missing image fails the task before any container is changed, and so do a
    missing bind source, network or OCI runtime of a container to be created.
  - A container the engine refuses to create or start does not keep the others from starting; the task
    fails afterwards naming each refusal.
  - A paused container is left paused.
"""

EXAMPLES = r"""
- name: Run two servers, each with its own GPU and scratch volume
  terafleet.cluster.docker_containers:
    containers:
      - name: terachem-gpu0
        image: mtzgroup/terachem:latest
        init: true
        command: [terachem, -s, "11111"]
        device_requests: [{driver: nvidia, device_ids: ["0"], capabilities: [[gpu]]}]
        mounts: [{type: volume, source: terafleet-scratch-gpu0, target: /scratch, no_copy: true}]
        network: terafleet
        published_ports: ["0.0.0.0:11111:11111"]
        stop_timeout: 30
      - name: terachem-gpu1
        image: mtzgroup/terachem:latest
        init: true
        command: [terachem, -s, "11111"]
        device_requests: [{driver: nvidia, device_ids: ["1"], capabilities: [[gpu]]}]
        mounts: [{type: volume, source: terafleet-scratch-gpu1, target: /scratch, no_copy: true}]
        network: terafleet
        published_ports: ["0.0.0.0:11112:11111"]
        stop_timeout: 30
"""

RETURN = r"""
networks:
  description: The networks created.
  returned: always
  type: list
  elements: str
  sample: [terafleet]
volumes:
  description: The volumes created.
  returned: always
  type: list
  elements: str
  sample: [terafleet-rabbitmq-data]
containers:
  description: What was done to each container, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Container name.
      type: str
    action:
      description: C(created), C(recreated), C(started), C(restarted), C(updated) (restart policy),
        C(updated, started), C(unchanged), C(removed) (O(containers[].state=absent)), C(absent) (it was not
        there), or C(retired) (by O(retire); these follow the containers given).
      type: str
    reason:
      description: Why it was recreated, when it was.
      type: str
  sample:
    - {name: terachem-gpu0, action: unchanged}
    - {name: terachem-gpu1, action: recreated, reason: image terafleet/standin:v2 is another image}
    - {name: terachem-gpu2, action: retired, reason: "carries org.terafleet.role=terachem, not named"}
"""

import hashlib
import json
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import (
    DOCKER_SOCKET_OPTION,
    DockerAPI,
    DockerAPIError,
    string_map,
)
from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import memory_bytes as docker_memory_bytes
from ansible_collections.terafleet.cluster.plugins.module_utils.node_paths import FilesError, ensure_file

HASH_LABEL = "org.terafleet.config-hash"
CONFIG_LABEL = "org.terafleet.config"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
PORT = re.compile(r"^(?:(?P<address>.*):)?(?P<node>\d+):(?P<container>\d+)(?:/(?P<protocol>tcp|udp|sctp))?$")
# The keys of a container's spec that are not part of its configuration hash.
NOT_HASHED = ("restart", "restart_policy", "state", "stop_first")
# Containers created and started at once when no staggered start is asked for.
PARALLEL_STARTS = 4


class SpecError(Exception):
    """A container's spec cannot be turned into an engine configuration."""


def duration_ns(value: str | int, what: str) -> int:
    """'1m30s', '500ms', '10' (seconds) -> nanoseconds."""
    text = str(value).strip()
    if text.isdigit():
        return int(text) * 10**9
    parts = DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise SpecError(f"{what}: {value!r} is not a duration (use e.g. 10s, 1m30s, 500ms)")
    return int(sum(float(number) * UNIT_NS[unit] for number, unit in parts))


def port_bindings(published: list[str], name: str) -> dict:
    """['0.0.0.0:11111:11111'] -> {'11111/tcp': [{'HostIp': '0.0.0.0', 'HostPort': '11111'}]}."""
    bindings: dict = {}
    for entry in published:
        match = PORT.match(str(entry))
        if not match:
            raise SpecError(f"{name}: published port {entry!r} is not [address:]node_port:container_port[/protocol]")
        key = f"{match['container']}/{match['protocol'] or 'tcp'}"
        bindings.setdefault(key, []).append({"HostIp": (match["address"] or "").strip("[]"),
                                             "HostPort": match["node"]})
    return bindings


def normalized(spec: dict) -> dict:
    """The spec with strings where Docker keeps strings, so equal configurations hash alike; the secret
    environment joins the rest (where the secrets are written is not part of the configuration)."""
    spec = dict(spec)
    env, secrets = string_map(spec.get("env")), string_map(spec.pop("secret_env", None))
    both = sorted(set(env) & set(secrets))
    if both:
        raise SpecError(f"{spec['name']}: {both} in both env and secret_env")
    spec["env"] = {**env, **secrets}
    spec["secrets"] = string_map(spec.get("secrets"))
    spec["labels"] = string_map(spec.get("labels"))
    spec["published_ports"] = [str(p) for p in spec.get("published_ports") or []]
    return spec


def configuration(spec: dict) -> dict:
    """What the hash covers: the options that are set, so an option added to this module later changes no hash."""
    return {key: value for key, value in normalized(spec).items()
            if key not in NOT_HASHED and value not in (None, "", [], {}, False)}


def config_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(configuration(spec), sort_keys=True).encode()).hexdigest()


def recorded(spec: dict) -> dict:
    """The configuration as the container's label records it: secrets as a short hash of their value."""
    config = configuration(spec)
    secrets = string_map(spec.get("secret_env"))
    if secrets:
        config["env"] = dict(config["env"], **{key: secret_hash(value) for key, value in secrets.items()})
    if config.get("secrets"):
        config["secrets"] = {key: secret_hash(value) for key, value in config["secrets"].items()}
    return config


def secret_hash(value: str) -> str:
    return f"(secret {hashlib.sha256(value.encode()).hexdigest()[:8]})"


def lines(value: object, prefix: str = "") -> list[str]:
    """A configuration as sorted `key: value` lines, nested keys joined by dots, so a diff shows one setting
    per line."""
    if isinstance(value, dict) and value:
        return [line for key in sorted(value) for line in lines(value[key], f"{prefix}.{key}" if prefix else key)]
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return [line for number, item in enumerate(value) for line in lines(item, f"{prefix}[{number}]")]
    return [f"{prefix}: {json.dumps(value)}"]


def memory_bytes(value: str, name: str) -> int:
    """Docker's memory notation (512m, 8g, bytes) in bytes."""
    size = docker_memory_bytes(value)
    if size is None:
        raise SpecError(f"{name}: memory {value!r} is not a size such as 512m or 8g")
    return size


def create_body(spec: dict) -> dict:
    """The engine's create-container body for one spec."""
    given, spec = spec, normalized(spec)
    name = spec["name"]
    bindings = port_bindings(spec["published_ports"], name)
    host_config: dict = {
        "Init": bool(spec.get("init")),
        "RestartPolicy": {"Name": spec.get("restart_policy") or "unless-stopped"},
        "Mounts": [],
        "DeviceRequests": [],
        "PortBindings": bindings,
    }
    for mount in spec.get("mounts") or []:
        entry = {"Type": mount.get("type") or "volume", "Source": mount["source"], "Target": mount["target"],
                 "ReadOnly": bool(mount.get("read_only"))}
        if mount.get("no_copy"):
            if entry["Type"] != "volume":
                raise SpecError(f"{name}: no_copy applies to volume mounts, not to the bind of {mount['source']}")
            entry["VolumeOptions"] = {"NoCopy": True}
        host_config["Mounts"].append(entry)
    for request in spec.get("device_requests") or []:
        ids = [str(i) for i in request.get("device_ids") or []]
        host_config["DeviceRequests"].append({
            "Driver": request.get("driver") or "", "Count": 0 if ids else int(request.get("count") or 0),
            "DeviceIDs": ids, "Capabilities": request.get("capabilities") or []})
    if spec.get("runtime"):
        host_config["Runtime"] = spec["runtime"]
    labels = dict(spec["labels"], **{HASH_LABEL: config_hash(given),
                                     CONFIG_LABEL: json.dumps(recorded(given), sort_keys=True)})
    body: dict = {
        "Image": spec["image"],
        "Env": [f"{key}={value}" for key, value in sorted(spec["env"].items())],
        "Labels": labels,
        "ExposedPorts": {key: {} for key in bindings},
        "HostConfig": host_config,
    }
    for key, field in (("hostname", "Hostname"), ("working_dir", "WorkingDir"), ("command", "Cmd"),
                       ("user", "User")):
        if spec.get(key):
            body[field] = spec[key]
    if spec.get("stop_timeout") is not None:
        body["StopTimeout"] = int(spec["stop_timeout"])
    if spec.get("memory"):
        host_config["Memory"] = memory_bytes(str(spec["memory"]), name)
    if spec.get("cpus"):
        if not math.isfinite(float(spec["cpus"])) or float(spec["cpus"]) <= 0:
            raise SpecError(f"{name}: cpus must be above 0, got {spec['cpus']}")
        host_config["NanoCpus"] = int(round(float(spec["cpus"]) * 10**9))
    check = spec.get("healthcheck")
    if check:
        body["Healthcheck"] = {
            "Test": check["test"],
            "Interval": duration_ns(check.get("interval") or "30s", f"{name} healthcheck interval"),
            "Timeout": duration_ns(check.get("timeout") or "30s", f"{name} healthcheck timeout"),
            "Retries": int(check.get("retries") if check.get("retries") is not None else 3),
            "StartPeriod": duration_ns(check.get("start_period") or "0s", f"{name} healthcheck start_period"),
        }
    if spec.get("network"):
        host_config["NetworkMode"] = spec["network"]
        body["NetworkingConfig"] = {"EndpointsConfig": {spec["network"]: {"Aliases": spec.get("aliases") or []}}}
    return body


def check_prerequisites(api: DockerAPI, specs: list[dict]) -> None:
    """What the engine would refuse only at create or start, found before any container is touched: a
    bind source missing on the node, a network or an OCI runtime the engine does not have."""
    networks: dict = {}
    runtimes = None
    for spec in specs:
        for mount in spec.get("mounts") or []:
            if (mount.get("type") or "volume") == "bind" and not os.path.exists(mount["source"]):
                raise SpecError(f"{spec['name']}: bind source {mount['source']} does not exist on this node")
        network = spec.get("network")
        if network:
            if network not in networks:
                networks[network] = api.network(network) is not None
            if not networks[network]:
                raise SpecError(f"{spec['name']}: network {network} does not exist on this node")
        if spec.get("runtime"):
            if runtimes is None:
                runtimes = set(api.info().get("Runtimes") or {})
            if spec["runtime"] not in runtimes:
                raise SpecError(f"{spec['name']}: the engine has no runtime {spec['runtime']!r} "
                                f"(it has {sorted(runtimes)}); register it (nvidia_container_toolkit role)")


def mark(path: str) -> None:
    """Create the marker file `path` (and its directory), empty, root-only."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "a", encoding="utf-8"):
        pass
    os.chmod(path, 0o600)


def _write_mark(path: str, content: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    ensure_file(path, content.encode(), "0600", os.getuid(), os.getgid(), check_mode=False)


def pause_watchdog(path: str, seconds: int) -> tuple[str, str]:
    """Write the watchdog's maintenance mark with a deadline `seconds` from now, unless a mark already
    holds longer (or cannot be read: someone else's). Returns what was written ('' when nothing was) and
    the shorter mark it replaced, for resume_watchdog to put back."""
    deadline = time.time() + seconds
    previous = ""
    try:
        with open(path, encoding="utf-8") as mark_file:
            previous = mark_file.read()
        if float(previous.strip()) >= deadline:
            return "", ""
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        return "", ""
    content = f"{deadline:.0f}\n"
    _write_mark(path, content)
    return content, previous


def resume_watchdog(path: str, paused: tuple[str, str]) -> None:
    """Take back the mark pause_watchdog wrote, if it is still there: the mark it replaced returns while
    its deadline is ahead, else the watchdog watches again."""
    content, previous = paused
    if not content:
        return
    try:
        with open(path, encoding="utf-8") as mark_file:
            if mark_file.read() != content:
                return
        if previous and float(previous.strip()) > time.time():
            _write_mark(path, previous)
        else:
            os.unlink(path)
    except (OSError, ValueError, FilesError):
        pass


def ensure_networks(api: DockerAPI, missing: list[dict], check_mode: bool) -> list[str]:
    """Create the networks the engine lacks; their names."""
    for network in missing:
        if not check_mode:
            api.create_network({"Name": network["name"], "Driver": "bridge", "CheckDuplicate": True,
                                "Labels": string_map(network.get("labels"))})
    return [network["name"] for network in missing]


def ensure_volumes(api: DockerAPI, missing: list[dict], check_mode: bool) -> list[str]:
    """Create the volumes the engine lacks; their names."""
    for volume in missing:
        if not check_mode:
            api.create_volume({"Name": volume["name"], "Driver": "local", "Labels": string_map(volume.get("labels"))})
    return [volume["name"] for volume in missing]


def removal(name: str, current: dict | None, reason: str, how: str, stop: bool = False) -> dict:
    """A step with no spec: one that stops and removes a container (`how`: removed or retired), one that only
    stops it (`stop`), or one that notes it is absent."""
    return {"name": name, "spec": None, "current": current, "remove": how if current else "", "stop": stop,
            "recreate": False, "start": False, "restart": False, "update_policy": False, "exists": bool(current),
            "reason": reason if current else ""}


def plan(api: DockerAPI, specs: list[dict]) -> list[dict]:
    """Per container: what it needs (create, recreate, start, restart, policy update, removal or nothing)."""
    steps = []
    image_ids: dict = {}
    for spec in specs:
        name = spec["name"]
        if spec.get("state") == "absent":
            steps.append(removal(name, api.container(name), "state absent", "removed"))
            continue
        if not spec.get("image"):
            raise SpecError(f"{name}: image is required for a container that is present")
        body = create_body(spec)  # raises SpecError on bad input, before anything changes
        if spec["image"] not in image_ids:
            image = api.image(spec["image"])
            image_ids[spec["image"]] = image["Id"] if image else None
        image_id = image_ids[spec["image"]]
        current = api.container(name)
        step = {"name": name, "spec": spec, "body": body, "image_id": image_id, "current": current, "remove": "",
                "recreate": False, "start": False, "restart": False, "update_policy": False, "reason": ""}
        if current is None:
            step.update(recreate=True, reason="missing")
        elif (current["Config"].get("Labels") or {}).get(HASH_LABEL) != body["Labels"][HASH_LABEL]:
            step.update(recreate=True, reason="configuration changed")
        elif image_id is not None and current.get("Image") != image_id:
            step.update(recreate=True, reason=f"image {spec['image']} is another image")
        else:
            policy = (current["HostConfig"].get("RestartPolicy") or {}).get("Name") or "no"
            step["update_policy"] = policy != body["HostConfig"]["RestartPolicy"]["Name"]
            running = bool(current["State"].get("Running"))  # a paused container is left paused
            step["start"] = not running
            step["restart"] = bool(running and spec.get("restart"))
        step["exists"] = current is not None
        steps.append(step)
    return steps


def retirements(api: DockerAPI, selectors: list[dict], named: set[str]) -> list[list[dict]]:
    """Per selector, in order: removal steps for the containers carrying its labels that are not named."""
    groups = []
    seen = set(named)
    for selector in selectors:
        labels = selector.get("labels") or {}
        if not labels:
            raise SpecError("a retire selector has no labels; it would retire every container of the node")
        wanted = {str(key): None if value is None else str(value) for key, value in labels.items()}
        shown = ", ".join(key if value is None else f"{key}={value}" for key, value in wanted.items())
        group = []
        for summary in sorted(api.containers(wanted), key=lambda c: (c.get("Names") or ["/"])[0]):
            name = (summary.get("Names") or ["/"])[0].lstrip("/")
            if not name or name in seen:
                continue
            seen.add(name)
            current = api.container(name)
            if current is not None:
                step = removal(name, current, f"carries {shown}, not named", "retired")
                step["stop_timeout"] = selector.get("stop_timeout")
                group.append(step)
        groups.append(group)
    return groups


def stops_first(api: DockerAPI, steps: list[dict]) -> list[dict]:
    """Steps that stop (and leave stopped) the running containers named in `stop_first` of a container that
    is to be stopped - recreated or restarted -, other than the containers this call brings up itself."""
    named = {step["name"] for step in steps}
    owners: dict[str, list[str]] = {}
    for step in steps:
        if step["spec"] and ((step["recreate"] and step["exists"]) or step["restart"]):
            for name in step["spec"].get("stop_first") or []:
                if name not in named:
                    owners.setdefault(name, []).append(step["name"])
    result = []
    for name in sorted(owners):
        current = api.container(name)
        if current is not None and (current.get("State") or {}).get("Running"):
            result.append(removal(name, current, f"before {', '.join(owners[name])} stops", "", stop=True))
    return result


def action(step: dict) -> str:
    if step.get("stop"):
        return "stopped"
    if step["remove"]:
        return step["remove"]
    if step["spec"] is None:
        return "absent"
    if step["recreate"]:
        return "recreated" if step["exists"] else "created"
    done = (["updated"] if step["update_policy"] else []) + (["started"] if step["start"] else []) + (
        ["restarted"] if step["restart"] else [])
    return ", ".join(done) or "unchanged"


def before_text(current: dict | None) -> str:
    """A container's configuration as its label records it, and its live restart policy."""
    if current is None:
        return ""
    raw = (current["Config"].get("Labels") or {}).get(CONFIG_LABEL)
    try:
        config = json.loads(raw) if raw else None
    except ValueError:
        config = None
    policy = (current["HostConfig"].get("RestartPolicy") or {}).get("Name") or "no"
    if not isinstance(config, dict):
        config = {"(configuration not recorded: made before terafleet recorded it)": True,
                  "image": current["Config"].get("Image")}
    return "\n".join(lines({**config, "restart_policy": policy})) + "\n"


def diff(step: dict) -> dict | None:
    """The --diff entry of a step that changes a container's configuration or existence; None otherwise."""
    if not (step["remove"] or step["recreate"] or step["update_policy"]):
        return None
    after = "" if step["spec"] is None else "\n".join(lines(
        {**recorded(step["spec"]), "restart_policy": step["body"]["HostConfig"]["RestartPolicy"]["Name"]})) + "\n"
    label = action(step) + (f" ({step['reason']})" if step["reason"] else "")
    return {"before_header": f"{step['name']} (now)", "after_header": f"{step['name']}: {label}",
            "before": before_text(step["current"]), "after": after}


def wait_healthy(api: DockerAPI, name: str, timeout: int) -> None:
    """Wait until the container passes its health check, running the check itself each second rather than
    waiting for Docker's next interval (which may be minutes)."""
    deadline = time.monotonic() + timeout
    while True:
        container = api.container(name) or {}
        state = container.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy" or (health is None and state.get("Running")):
            return
        check = (container.get("Config") or {}).get("Healthcheck") or {}
        if state.get("Running") and not state.get("Restarting") and api.run_check(
                name, check.get("Test") or [], max(1.0, min((check.get("Timeout") or 30 * 10**9) / 1e9, 30.0))):
            return
        if not state.get("Running") and not state.get("Restarting"):
            raise DockerAPIError(f"{name} exited (code {state.get('ExitCode')}) before it turned healthy; "
                                 f"see docker logs {name}")
        if time.monotonic() > deadline:
            raise DockerAPIError(f"{name} is not healthy after {timeout} s (health: {health}); "
                                 f"see docker inspect {name}")
        time.sleep(1)


def starts(step: dict) -> bool:
    """The plan has this container (re)started: created, recreated, started or restarted."""
    return bool(step["recreate"] or step["start"] or step["restart"])


def stop_timeout(step: dict) -> int:
    """The retire selector's or the spec's stop timeout; for a container removed or retired without one, the
    one it was made with."""
    value = step.get("stop_timeout")
    if value is None and step["spec"]:
        value = step["spec"].get("stop_timeout")
    if value is None and step["current"]:
        value = step["current"]["Config"].get("StopTimeout")
    return 10 if value is None else int(value)


def apply(api: DockerAPI, steps: list[dict], retired: list[list[dict]], healthy_wait_timeout: int,
          start_delay: int, first: list[dict] | None = None) -> None:
    """Carry the plan out: stop and remove side by side, then create and start, a few at once or, for a
    staggered start, in order. A container the engine refuses does not keep the others from starting;
    every refusal is reported at the end."""
    missing = [s["spec"]["image"] for s in steps if s["recreate"] and s["image_id"] is None]
    if missing:
        raise DockerAPIError(f"image(s) {sorted(set(missing))} are not on this node; the container_images "
                             "role puts them there (site.yml runs it first), or pull them")
    replaced = [s for s in steps if s["recreate"] and s["exists"]]
    errors: list[str] = []

    def remove(step: dict) -> None:
        api.stop(step["name"], stop_timeout(step))
        api.remove_container(step["name"])

    def stop(step: dict) -> None:
        api.stop(step["name"], stop_timeout(step))

    # Side by side, each with its own stop timeout (a worker's warm shutdown may take hours): first what
    # is removed or retired, a group at a time, so that nothing new starts on what they held; then the
    # containers that stop first (a worker before its server); then what is recreated. A removal or a
    # stop that fails stops the run before anything starts.
    for group, work in ([([s for s in steps if s["remove"]], remove)] + [(group, remove) for group in retired]
                        + [(first or [], stop), (replaced, remove)]):
        if group:
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                list(pool.map(work, group))

    def bring_up(step: dict) -> None:
        """Create (or update the policy of) one container, then start or restart it as planned."""
        if step["spec"] is None:
            return
        try:
            if step["recreate"]:
                api.create_container(step["name"], step["body"])
            elif step["update_policy"]:
                api.update_container(step["name"], {"RestartPolicy": step["body"]["HostConfig"]["RestartPolicy"]})
            if step["restart"]:
                api.restart(step["name"], stop_timeout(step))
            elif step["recreate"] or step["start"]:
                api.start(step["name"])
            if healthy_wait_timeout > 0 and starts(step):
                wait_healthy(api, step["name"], healthy_wait_timeout)
        except DockerAPIError as error:
            errors.append(f"{step['name']}: {error}")

    if healthy_wait_timeout > 0 or start_delay > 0:
        # The staggered start: one after another, in the order given.
        started = 0
        for step in steps:
            if started and start_delay > 0 and starts(step):
                time.sleep(start_delay)
            started += starts(step)
            bring_up(step)
    else:
        # The engine's create and start are mostly waiting (mounts, network namespaces, runc): a few at once.
        with ThreadPoolExecutor(max_workers=PARALLEL_STARTS) as pool:
            list(pool.map(bring_up, steps))
    if errors:
        raise DockerAPIError("; ".join(errors))


def main() -> None:
    mount = {"type": {"type": "str", "choices": ["bind", "volume"], "default": "volume"},
             "source": {"type": "str", "required": True}, "target": {"type": "str", "required": True},
             "read_only": {"type": "bool", "default": False}, "no_copy": {"type": "bool", "default": False}}
    device_request = {"driver": {"type": "str"}, "count": {"type": "int", "default": 0},
                      "device_ids": {"type": "list", "elements": "str", "default": []},
                      "capabilities": {"type": "list", "elements": "list", "default": []}}
    healthcheck = {"test": {"type": "list", "elements": "str", "required": True},
                   "interval": {"type": "str", "default": "30s"}, "timeout": {"type": "str", "default": "30s"},
                   "retries": {"type": "int", "default": 3}, "start_period": {"type": "str", "default": "0s"}}
    labelled = {"name": {"type": "str", "required": True}, "labels": {"type": "dict", "default": {}}}
    container = {
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "image": {"type": "str"},
        "hostname": {"type": "str"},
        "command": {"type": "list", "elements": "str"},
        "working_dir": {"type": "str"},
        "env": {"type": "dict", "default": {}},
        "secret_env": {"type": "dict", "default": {}, "no_log": True},
        "secrets": {"type": "dict", "default": {}, "no_log": True},
        "labels": {"type": "dict", "default": {}},
        "init": {"type": "bool", "default": False},
        "user": {"type": "str"},
        "runtime": {"type": "str"},
        "device_requests": {"type": "list", "elements": "dict", "default": [], "options": device_request},
        "mounts": {"type": "list", "elements": "dict", "default": [], "options": mount},
        "network": {"type": "str"},
        "aliases": {"type": "list", "elements": "str", "default": []},
        "published_ports": {"type": "list", "elements": "str", "default": []},
        "restart_policy": {"type": "str", "choices": ["no", "always", "unless-stopped", "on-failure"],
                           "default": "unless-stopped"},
        "stop_timeout": {"type": "int"},
        "memory": {"type": "str"},
        "cpus": {"type": "float"},
        "healthcheck": {"type": "dict", "options": healthcheck},
        "restart": {"type": "bool", "default": False},
        "stop_first": {"type": "list", "elements": "str", "default": []},
    }
    module = AnsibleModule(
        argument_spec={
            "containers": {"type": "list", "elements": "dict", "required": True, "options": container},
            "networks": {"type": "list", "elements": "dict", "default": [], "options": labelled},
            "volumes": {"type": "list", "elements": "dict", "default": [], "options": labelled},
            "retire": {"type": "list", "elements": "dict", "default": [],
                       "options": {"labels": {"type": "dict", "required": True}, "stop_timeout": {"type": "int"}}},
            "keep": {"type": "list", "elements": "str", "default": []},
            "changed_marker": {"type": "path"},
            "watchdog_pause_file": {"type": "path"},
            "watchdog_pause_seconds": {"type": "int", "default": 3600},
            "healthy_wait_timeout": {"type": "int", "default": 0},
            "start_delay": {"type": "int", "default": 0},
            **DOCKER_SOCKET_OPTION,
        },
        supports_check_mode=True,
    )
    specs = module.params["containers"]
    names = [spec["name"] for spec in specs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        module.fail_json(msg=f"containers named more than once: {duplicated}")
    api = DockerAPI(module.params["docker_socket"])
    networks: list[str] = []
    volumes: list[str] = []
    paused = ("", "")
    try:
        missing_networks = [n for n in module.params["networks"] if api.network(n["name"]) is None]
        missing_volumes = [v for v in module.params["volumes"] if api.volume(v["name"]) is None]
        steps = plan(api, specs)
        retired = retirements(api, module.params["retire"], set(names) | set(module.params["keep"]))
        first = stops_first(api, steps)
        everything = steps + [step for group in retired for step in group] + first
        changed = bool(missing_networks or missing_volumes) or any(
            action(step) not in ("unchanged", "absent") for step in everything)
        if changed and module.params["changed_marker"] and not module.check_mode:
            mark(module.params["changed_marker"])
        if changed and module.params["watchdog_pause_file"] and not module.check_mode:
            paused = pause_watchdog(module.params["watchdog_pause_file"], module.params["watchdog_pause_seconds"])
        networks = ensure_networks(api, missing_networks, module.check_mode)
        volumes = ensure_volumes(api, missing_volumes, module.check_mode)
        if changed and not module.check_mode:
            check_prerequisites(api, [step["spec"] for step in steps if step["recreate"]])
            apply(api, steps, retired, module.params["healthy_wait_timeout"], module.params["start_delay"], first)
    except (SpecError, DockerAPIError, OSError, FilesError) as error:
        module.fail_json(msg=str(error), networks=networks, volumes=volumes)
    finally:  # also when the run fails, for whatever reason
        resume_watchdog(module.params["watchdog_pause_file"] or "", paused)
    report = [dict({"name": s["name"], "action": action(s)}, **({"reason": s["reason"]} if s["reason"] else {}))
              for s in everything]
    result = {"changed": changed, "containers": report, "networks": networks, "volumes": volumes}
    if module._diff:
        result["diff"] = [entry for entry in map(diff, everything) if entry]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
