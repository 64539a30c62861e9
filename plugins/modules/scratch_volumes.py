#!/usr/bin/python
"""Ansible module: scratch directories on a node and the Docker volumes bound to them, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: scratch_volumes
short_description: Create scratch directories and the Docker volumes of each server's scratch, in one call
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - terafleet.cluster.docker_api
description:
  - Creates each directory in O(directories) (with missing parents) and sets its owner, group and mode,
    then makes sure each volume in O(volumes) exists as a volume of Docker's C(local) driver with its
    options - bound to a directory (C(type=none), C(o=bind)) or on an NFS export (C(type=nfs)).
  - One module run per node instead of one per directory and one per volume.
  - An existing volume with other options (bound to another directory, another NFS server) fails the task
    naming both; Docker cannot change a volume's options, and removing it is for the admin to decide.
  - Docker mounts an NFS volume only when a container using it starts; creating one needs no NFS client.
options:
  directories:
    description: Directories, parents first.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      mode: {description: 'Octal mode, as a string (C("0750")).', type: str, required: true}
  owner:
    description: Owner of every directory in O(directories).
    type: str
    default: root
  group:
    description: Group of every directory in O(directories).
    type: str
    default: root
  volumes:
    description: Volumes of the C(local) driver.
    type: list
    elements: dict
    default: []
    suboptions:
      name: {description: Volume name., type: str, required: true}
      options:
        description:
          - "The local driver's options - C(type), C(o) and C(device): C(type=none), C(o=bind) and the
            directory, or C(type=nfs), C(o=addr=10.1.0.20,nfsvers=4.2) and C(device=:/export/node1-gpu0)."
          - A bound directory must exist or be in O(directories).
        type: dict
        required: true
      labels: {description: Labels of a new volume; an existing volume keeps its own., type: dict, default: {}}
attributes:
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Scratch for two servers
  terafleet.cluster.scratch_volumes:
    directories:
      - {path: /lstor/terafleet, mode: "0755"}
      - {path: /lstor/terafleet/scratch/node1-gpu0, mode: "0750"}
      - {path: /lstor/terafleet/scratch/node1-gpu1, mode: "0750"}
    volumes:
      - name: terafleet-scratch-gpu0
        options: {type: none, o: bind, device: /lstor/terafleet/scratch/node1-gpu0}
      - name: terafleet-scratch-gpu1
        options: {type: none, o: bind, device: /lstor/terafleet/scratch/node1-gpu1}

- name: Scratch on an NFS server
  terafleet.cluster.scratch_volumes:
    volumes:
      - name: terafleet-scratch-nfs-gpu0
        options: {type: nfs, o: "addr=10.1.0.20,nfsvers=4.2,hard", device: ":/export/node1-gpu0"}
"""

RETURN = r"""
directories:
  description: The directories created or changed (owner, group or mode).
  returned: always
  type: list
  elements: str
  sample: [/lstor/terafleet/scratch/node1-gpu1]
volumes:
  description: The volumes created.
  returned: always
  type: list
  elements: str
  sample: [terafleet-scratch-gpu1]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import (
    DOCKER_SOCKET_OPTION,
    DockerAPI,
    DockerAPIError,
    string_map,
)
from ansible_collections.terafleet.cluster.plugins.module_utils.node_paths import (
    FilesError,
    ensure_directory,
    resolve_ids,
)

__all__ = ["ScratchError", "ensure_directory", "ensure_volume", "resolve_ids"]


# A directory or volume cannot be made as asked.
ScratchError = FilesError


def _comparable(options: dict) -> dict:
    """Options as Docker keeps them, a bound directory's path normalised."""
    result = {str(key): str(value) for key, value in (options or {}).items()}
    if result.get("type") == "none" and result.get("device"):
        result["device"] = os.path.normpath(result["device"])
    return result


def ensure_volume(api: DockerAPI, name: str, options: dict, labels: dict, check_mode: bool) -> bool:
    """A local volume `name` with `options`; True when it was created."""
    wanted = _comparable(options)
    if not wanted.get("type") or not wanted.get("device"):
        raise ScratchError(f"volume {name} needs the options type and device, got {options!r}")
    current = api.volume(name)
    if current is not None:
        have = _comparable(current.get("Options") or {})
        if current.get("Driver") != "local" or have != wanted:
            differ = [f"driver {current.get('Driver')!r}, not 'local'"] if current.get("Driver") != "local" else []
            differ += [f"{key} {have.get(key)!r}, not {wanted.get(key)!r}"
                       for key in sorted(set(have) | set(wanted)) if have.get(key) != wanted.get(key)]
            raise ScratchError(
                f"volume {name} exists with {'; '.join(differ)}; stop the containers using it and remove it "
                f"(docker volume rm {name}) to have it recreated")
        return False
    if not check_mode:
        api.create_volume({"Name": name, "Driver": "local", "DriverOpts": wanted, "Labels": string_map(labels)})
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": [],
                            "options": {"path": {"type": "path", "required": True},
                                        "mode": {"type": "str", "required": True}}},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "volumes": {"type": "list", "elements": "dict", "default": [],
                        "options": {"name": {"type": "str", "required": True},
                                    "options": {"type": "dict", "required": True},
                                    "labels": {"type": "dict", "default": {}}}},
            **DOCKER_SOCKET_OPTION,
        },
        supports_check_mode=True,
    )
    params = module.params
    changed_dirs: list[str] = []
    created_volumes: list[str] = []
    try:
        uid, gid = resolve_ids(params["owner"], params["group"])
        for directory in params["directories"]:
            if ensure_directory(directory["path"], directory["mode"], uid, gid, module.check_mode):
                changed_dirs.append(directory["path"])
        api = DockerAPI(params["docker_socket"])
        for volume in params["volumes"]:
            if ensure_volume(api, volume["name"], volume["options"], volume["labels"], module.check_mode):
                created_volumes.append(volume["name"])
    except (FilesError, DockerAPIError, OSError) as error:
        module.fail_json(msg=str(error), directories=changed_dirs, volumes=created_volumes)
    module.exit_json(changed=bool(changed_dirs or created_volumes), directories=changed_dirs,
                     volumes=created_volumes)


if __name__ == "__main__":
    main()
