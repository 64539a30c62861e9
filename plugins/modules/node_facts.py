#!/usr/bin/python
"""Ansible module: what preflight reads on a node (GPUs, $LSTOR, the Docker API), in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_facts
short_description: Read a node's GPUs, $LSTOR, Docker engine, packages, services and files, in one call
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - terafleet.cluster.docker_api
description:
  - With O(gpus), reads the GPUs the way M(terafleet.cluster.gpu_facts) does and sets the same facts
    C(gpus) and C(gpu_driver_version). A missing, hanging or failing nvidia-smi fails the task with its
    own words.
  - With O(lstor_path), sets C(terafleet_lstor) to what the path is, the mount point of the file system
    holding it (as C(findmnt --target) finds it) and the space left there for unprivileged users (as
    C(df) counts it).
  - Sets C(terafleet_docker_api_version) to the API version of the running Docker engine, or null when
    none answers on O(docker_socket), and C(terafleet_images_present) to those of O(images) the engine has.
  - With O(container_label), sets C(terafleet_containers) to the containers, running or not, that carry
    the label, each name with the label's value; null when no engine answers.
  - Sets C(terafleet_cpus) to the number of CPUs the node's processes may run on.
  - With O(packages), O(services), O(paths) and O(json_files), sets C(terafleet_packages) (dpkg),
    C(terafleet_services) (systemd), C(terafleet_paths) and C(terafleet_json).
  - With O(filesystems), sets C(terafleet_filesystems) to whether the running kernel can mount each file
    system type - registered in C(/proc/filesystems), built in, or a module of the running release that the
    kernel loads on the first mount.
  - Only reads, and fails only where it cannot read (nvidia-smi, a JSON file that is not JSON, a hung
    dpkg-query or systemctl); the checks on what it read belong to the playbook, which names the variable
    to fix.
options:
  gpus:
    description: Read the GPUs with nvidia-smi.
    type: bool
    default: false
  nvidia_smi_path:
    description: Path of nvidia-smi. Looked up on C(PATH) and in C(/usr/bin) when not given.
    type: path
  nvidia_smi_timeout:
    description: Seconds to wait for nvidia-smi, which can hang on a GPU that has fallen off the bus.
    type: int
    default: 30
  lstor_path:
    description: The node-local disk's path ($LSTOR) to look at; none when not given.
    type: path
  images:
    description: Image references to look for in the Docker engine (an untagged name means C(:latest)).
    type: list
    elements: str
    default: []
  paths:
    description: Paths to ask whether they exist (links followed).
    type: list
    elements: path
    default: []
  json_files:
    description:
      - JSON files to read (such as Docker's C(daemon.json)); a missing one reads as null, one that is not
        JSON fails the task naming it.
    type: list
    elements: path
    default: []
  packages:
    description:
      - Debian packages to ask C(dpkg-query) about, so a role installs or holds only what needs it
        instead of loading apt's whole package cache to find nothing to do.
    type: list
    elements: str
    default: []
  services:
    description:
      - systemd units to ask C(systemctl show) about, so a role changes a service only where its state or
        enablement differs.
    type: list
    elements: str
    default: []
  filesystems:
    description: File system types (C(nfs)) to ask whether the kernel can mount.
    type: list
    elements: str
    default: []
  container_label:
    description: A label key (C(org.terafleet.role)) to list the engine's containers by.
    type: str
attributes:
  facts:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Read the GPUs, $LSTOR and the Docker engine
  terafleet.cluster.node_facts:
    gpus: true
    lstor_path: /lstor

- name: Show them
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.gpus | length }} GPUs; $LSTOR on {{ ansible_facts.terafleet_lstor.mount_point }}
      with {{ ansible_facts.terafleet_lstor.available_bytes }} bytes free; Docker API
      {{ ansible_facts.terafleet_docker_api_version }}
"""

RETURN = r"""
ansible_facts:
  description: What the node has.
  returned: success
  type: dict
  contains:
    gpus:
      description: With O(gpus), one entry per GPU, as M(terafleet.cluster.gpu_facts) returns them.
      type: list
      elements: dict
    gpu_driver_version:
      description: With O(gpus), the NVIDIA driver version, null when no GPU is visible.
      type: str
    terafleet_lstor:
      description: With O(lstor_path), the path and the file system holding it.
      type: dict
      contains:
        path: {description: "The path looked at, normalised.", type: str}
        is_dir: {description: The path exists and is a directory., type: bool}
        mount_point:
          description: Mount point of the file system holding the path; null when it is not a directory.
          type: str
        available_bytes:
          description: Bytes free there for unprivileged users; null when it is not a directory.
          type: int
      sample: {path: /lstor, is_dir: true, mount_point: /lstor, available_bytes: 1869122002944}
    terafleet_docker_api_version:
      description: API version of the running Docker engine, null when none answers.
      type: str
      sample: "1.43"
    terafleet_paths:
      description: With O(paths), whether each exists.
      type: dict
      sample: {/usr/share/keyrings/nvidia-container-toolkit-keyring.asc: true}
    terafleet_filesystems:
      description: With O(filesystems), whether the running kernel can mount each type.
      type: dict
      sample: {nfs: true}
    terafleet_json:
      description: With O(json_files), each file's document, null for a missing file.
      type: dict
      sample: {/etc/docker/daemon.json: {live-restore: true}}
    terafleet_packages:
      description:
        - With O(packages), per package what dpkg knows of it, null for a package it does not know.
        - The whole fact is null where the node has no C(dpkg-query) (not the Debian family).
      type: dict
      sample: {docker.io: {installed: true, selection: hold, version: "20.10.24+dfsg1-1+b3"}, python3-docker: null}
    terafleet_services:
      description:
        - With O(services), per unit its C(ActiveState) and C(UnitFileState) (empty for a unit systemd does
          not know).
        - The whole fact is null where C(systemctl) is missing or systemd does not run.
      type: dict
      sample: {docker.service: {active: active, enabled: enabled}}
    terafleet_images_present:
      description: The references of O(images) the engine has, in the order given.
      type: list
      elements: str
      sample: ["terafleet/worker:latest"]
    terafleet_containers:
      description:
        - With O(container_label), each container carrying the label, by name, with the label's value.
        - The whole fact is null where no engine answers on O(docker_socket).
      type: dict
      sample: {terachem-gpu0: terachem, worker-gpu0: worker}
    terafleet_cpus:
      description: The number of CPUs the node's processes may run on (their affinity).
      type: int
      sample: 64
"""

import os
import re
import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import (
    DOCKER_SOCKET_OPTION,
    DockerAPI,
    DockerAPIError,
)
from ansible_collections.terafleet.cluster.plugins.module_utils.node_paths import load_json
from ansible_collections.terafleet.cluster.plugins.module_utils.nvidia_smi import NvidiaSmiError, read_gpus


class FactsError(Exception):
    """Something the node holds cannot be read as asked."""


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point of this mount namespace (bind mounts included), as the kernel lists them."""
    points = []
    try:
        with open(mountinfo, encoding="utf-8") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 4:
                    # Spaces and other specials are octal escapes (\040) in mountinfo.
                    points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    except OSError:
        return []
    return points


def mount_point(path: str, points: list[str] | None = None) -> str:
    """The mount point of the file system holding `path` (symlinks resolved), as findmnt --target finds it:
    the longest mount point the path lies under, a bind mount included."""
    current = os.path.realpath(path)
    points = mount_points() if points is None else points
    under = [p for p in points if current == p or current.startswith(p.rstrip("/") + "/")]
    if under:
        return max(under, key=len)
    while not os.path.ismount(current):  # no mountinfo (not Linux): the file system's own boundary
        current = os.path.dirname(current)
    return current


def lstor_facts(path: str) -> dict:
    path = os.path.normpath(path)
    if not os.path.isdir(path):
        return {"path": path, "is_dir": False, "mount_point": None, "available_bytes": None}
    usage = os.statvfs(path)
    return {"path": path, "is_dir": True, "mount_point": mount_point(path),
            "available_bytes": usage.f_bavail * usage.f_frsize}


def docker_api_version(api: DockerAPI) -> str | None:
    """The engine's API version as it says it, old or new (the playbook judges it), or None."""
    try:
        return api.reported_version() or None
    except (DockerAPIError, OSError):
        return None


def labelled_containers(api: DockerAPI, label: str) -> dict | None:
    """Each container carrying `label`, running or not, by name, with the label's value; None when the engine
    does not answer."""
    try:
        listed = api.containers({label: None})
    except (DockerAPIError, OSError):
        return None
    return {name.lstrip("/"): (entry.get("Labels") or {}).get(label, "")
            for entry in listed for name in (entry.get("Names") or [])[:1]}


def parse_dpkg_query(output: str, names: list[str]) -> dict:
    """`dpkg-query -W -f='${Package}\\t${Status}\\t${Version}\\n'` output, per name asked."""
    known = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        name, status, version = fields
        words = status.split()
        known[name] = {"installed": len(words) == 3 and words[2] == "installed",
                       "selection": words[0] if words else "", "version": version}
    return {name: known.get(name) for name in names}


def packages(names: list[str]) -> dict | None:
    """What dpkg knows of each package, or None without dpkg-query."""
    dpkg_query = shutil.which("dpkg-query")
    if not dpkg_query:
        return None
    if not names:
        return {}
    # Exit status 1 only says some package is unknown; those are left out of the output.
    try:
        result = subprocess.run([dpkg_query, "-W", "-f=${Package}\t${Status}\t${Version}\n", *names],
                                capture_output=True, text=True, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        raise FactsError("dpkg-query did not answer within 60 s (is dpkg locked by a running upgrade?)") from None
    return parse_dpkg_query(result.stdout, names)


def parse_systemctl_show(output: str) -> dict:
    """`systemctl show --property=ActiveState,UnitFileState UNIT` output."""
    properties = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return {"active": properties.get("ActiveState", ""), "enabled": properties.get("UnitFileState", "")}


def services(names: list[str]) -> dict | None:
    """Each unit's state and enablement, or None without a running systemd."""
    systemctl = shutil.which("systemctl")
    if not systemctl:
        return None
    states = {}
    for name in names:
        try:
            result = subprocess.run([systemctl, "show", "--property=ActiveState,UnitFileState", "--", name],
                                    capture_output=True, text=True, check=False, timeout=30)
        except subprocess.TimeoutExpired:
            raise FactsError(f"systemctl show {name} did not answer within 30 s") from None
        if result.returncode != 0:  # "System has not been booted with systemd", or no bus
            return None
        states[name] = parse_systemctl_show(result.stdout)
    return states


def read_json(path: str) -> object:
    """The JSON document in `path`, None when there is no such file."""
    try:
        return load_json(path)[1]
    except ValueError as error:
        raise FactsError(f"{path} is not valid JSON ({error}); fix or remove it by hand") from None


def images_present(api: DockerAPI, references: list[str]) -> list[str]:
    """Those of `references` the engine can inspect (none when it does not answer)."""
    if not references:
        return []
    try:
        return [ref for ref in references if api.image(ref) is not None]
    except (DockerAPIError, OSError):
        return []


def kernel_filesystems(names: list[str], proc: str = "/proc/filesystems", modules: str | None = None) -> dict:
    """Whether the kernel can mount each type in `names`: registered, built in, or an installed module."""
    registered = set()
    try:
        with open(proc, encoding="utf-8") as table:
            registered = {line.split()[-1] for line in table if line.split()}
    except OSError:
        pass
    if all(name in registered for name in names):
        return dict.fromkeys(names, True)
    modules = modules or os.path.join("/lib/modules", os.uname().release)
    listed = ""
    for name in ("modules.builtin", "modules.dep"):
        try:
            with open(os.path.join(modules, name), encoding="utf-8") as listing:
                listed += listing.read()
        except OSError:
            continue
    shipped = set(re.findall(r"/([A-Za-z0-9_-]+)\.ko(?:\.[a-z]+)?\b", listed))
    return {name: name in registered or name in shipped for name in names}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "gpus": {"type": "bool", "default": False},
            "nvidia_smi_path": {"type": "path"},
            "nvidia_smi_timeout": {"type": "int", "default": 30},
            "lstor_path": {"type": "path"},
            "images": {"type": "list", "elements": "str", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "path", "default": []},
            "json_files": {"type": "list", "elements": "path", "default": []},
            "services": {"type": "list", "elements": "str", "default": []},
            "filesystems": {"type": "list", "elements": "str", "default": []},
            "container_label": {"type": "str"},
            **DOCKER_SOCKET_OPTION,
        },
        supports_check_mode=True,
    )
    params = module.params
    facts: dict = {"terafleet_cpus": len(os.sched_getaffinity(0))}
    if params["gpus"]:
        try:
            facts["gpus"], facts["gpu_driver_version"] = read_gpus(params["nvidia_smi_path"],
                                                                   params["nvidia_smi_timeout"])
        except NvidiaSmiError as error:
            module.fail_json(msg=str(error))
    if params["lstor_path"]:
        facts["terafleet_lstor"] = lstor_facts(params["lstor_path"])
    api = DockerAPI(params["docker_socket"], timeout=30)
    facts["terafleet_docker_api_version"] = docker_api_version(api)
    facts["terafleet_images_present"] = images_present(api, params["images"])
    if params["container_label"]:
        facts["terafleet_containers"] = labelled_containers(api, params["container_label"])
    try:
        if params["packages"]:
            facts["terafleet_packages"] = packages(params["packages"])
        if params["services"]:
            facts["terafleet_services"] = services(params["services"])
        if params["paths"]:
            facts["terafleet_paths"] = {path: os.path.exists(path) for path in params["paths"]}
        if params["filesystems"]:
            facts["terafleet_filesystems"] = kernel_filesystems(params["filesystems"])
        if params["json_files"]:
            facts["terafleet_json"] = {path: read_json(path) for path in params["json_files"]}
    except (FactsError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, ansible_facts=facts)


if __name__ == "__main__":
    main()
