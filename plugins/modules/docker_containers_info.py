#!/usr/bin/python
"""Ansible module: a node's labelled Docker containers, inspected, and its labelled volumes, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: docker_containers_info
short_description: Inspect a node's labelled Docker containers, list its labelled volumes and networks
version_added: 0.2.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - terafleet.cluster.docker_api
description:
  - Returns what C(docker inspect) returns for every container, running or not, that carries O(labels),
    less its environment (C(Config.Env), which holds a worker's broker passwords), and the engine's record
    of every volume and network that carries O(volume_labels), with one module run per node.
  - Changes nothing; runs in check mode too.
  - Talks to the engine through its unix socket with the Python standard library only.
options:
  labels:
    description: Labels a container must carry (with that value; null matches any value).
    type: dict
    default: {org.terafleet.role: null}
  volume_labels:
    description: Labels a volume or network must carry (with that value; null matches any value).
    type: dict
    default: {org.terafleet.role: null}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Inspect the node's terafleet containers and volumes
  terafleet.cluster.docker_containers_info:
  register: terafleet_docker

- name: Show the TeraChem servers' health
  ansible.builtin.debug:
    msg: "{{ item.Name }}: {{ item.State.Health.Status | default(item.State.Status) }}"
  loop: "{{ terafleet_docker.containers | selectattr('Config.Labels.org.terafleet.role', 'eq', 'terachem') }}"
  loop_control:
    label: "{{ item.Name }}"
"""

RETURN = r"""
containers:
  description: The containers as C(docker inspect) gives them, without C(Config.Env), by name.
  returned: always
  type: list
  elements: dict
  sample:
    - {Name: /terachem-gpu0, State: {Status: running, Health: {Status: healthy}}, RestartCount: 0,
       Config: {Labels: {org.terafleet.role: terachem}}}
volumes:
  description: The volumes as the engine lists them (C(Name), C(Labels), C(Options), C(Mountpoint)), by name.
  returned: always
  type: list
  elements: dict
  sample:
    - {Name: terafleet-scratch-gpu0, Labels: {org.terafleet.role: scratch},
       Options: {type: none, o: bind, device: /lstor/terafleet/scratch/gpu01-gpu0}}
networks:
  description: The networks as the engine lists them (C(Name), C(Labels), C(Driver)), by name.
  returned: always
  type: list
  elements: dict
  sample:
    - {Name: terafleet, Labels: {org.terafleet.role: network}, Driver: bridge}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import (
    DOCKER_SOCKET_OPTION,
    DockerAPI,
    DockerAPIError,
)


def gather(api: DockerAPI, labels: dict, volume_labels: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """The inspected containers, the volumes and the networks, each sorted by name; a container removed
    between the listing and its inspection is left out."""
    names = sorted((summary.get("Names") or ["/"])[0].lstrip("/") for summary in api.containers(labels))
    containers = [info for info in (api.container(name) for name in names if name) if info is not None]
    for info in containers:
        (info.get("Config") or {}).pop("Env", None)
    volumes = sorted(api.volumes(volume_labels), key=lambda volume: volume.get("Name") or "")
    networks = sorted(api.networks(volume_labels), key=lambda network: network.get("Name") or "")
    return containers, volumes, networks


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "labels": {"type": "dict", "default": {"org.terafleet.role": None}},
            "volume_labels": {"type": "dict", "default": {"org.terafleet.role": None}},
            **DOCKER_SOCKET_OPTION,
        },
        supports_check_mode=True,
    )
    try:
        api = DockerAPI(module.params["docker_socket"])
        containers, volumes, networks = gather(api, module.params["labels"], module.params["volume_labels"])
    except (DockerAPIError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, containers=containers, volumes=volumes, networks=networks)


if __name__ == "__main__":
    main()
