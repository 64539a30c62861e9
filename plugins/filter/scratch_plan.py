"""The scratch of one GPU node: its directories on $LSTOR and the Docker volume bound to each server's."""

from __future__ import annotations

DOCUMENTATION = r"""
name: scratch_plan
short_description: Plan a GPU node's scratch directories and the volume bound to each server's
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the servers whose scratch to create (by default the GPU sets preflight planned) and the scratch
    role's settings into the directories and volumes M(terafleet.cluster.scratch_volumes) takes - the
    scratch root, its C(scratch/) directory, one directory per server, and one local volume bound to each.
  - Every server's directory must lie under the scratch root; a setting that is missing, null or of the
    wrong type fails with the inventory variable's name (C(scratch_<setting>)).
positional: settings, host
options:
  _input:
    description: The servers, each with C(scratch_dir) and C(scratch_volume) (and C(instance), for the label).
    type: list
    elements: dict
    required: true
  settings:
    description: The scratch role's C(root), C(root_mode) and C(dir_mode), without their C(scratch_) prefix.
    type: dict
    required: true
  host:
    description: Inventory host name, for error messages.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the node's scratch
  ansible.builtin.set_fact:
    scratch: >-
      {{ preflight_node.instances | terafleet.cluster.scratch_plan({'root': '/lstor/terafleet',
           'root_mode': '0755', 'dir_mode': '0750'}, inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: What to create.
  type: dict
  contains:
    directories:
      description: Directories with their modes, the root first.
      type: list
      elements: dict
    volumes:
      description: One volume per server, with the directory it binds (C(device)) and its labels.
      type: list
      elements: dict
"""

import posixpath
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import ROLE_LABEL, Settings

SETTINGS = ("root", "root_mode", "dir_mode")


def scratch_plan(servers: list, settings: dict, host: str) -> dict:
    """Return the node's scratch directories and volumes; see DOCUMENTATION."""
    s = Settings(settings, "scratch_", host, SETTINGS)
    root, root_mode, dir_mode = s.path("root"), s.str("root_mode"), s.str("dir_mode")
    if not isinstance(servers, list) or not all(isinstance(item, Mapping) and item.get("scratch_dir")
                                                and item.get("scratch_volume") for item in servers):
        raise AnsibleFilterError(f"{host}: scratch_instances must be a list of servers with scratch_dir and "
                                 f"scratch_volume, got {servers!r}")
    outside = [item["scratch_dir"] for item in servers
               if not posixpath.normpath(str(item["scratch_dir"])).startswith(root + "/")]
    if outside:
        raise AnsibleFilterError(f"{host}: scratch directories {outside} must lie under the scratch root '{root}' "
                                 "(scratch_root)")
    return {
        "directories": [{"path": root, "mode": root_mode}, {"path": f"{root}/scratch", "mode": root_mode}]
        + [{"path": str(item["scratch_dir"]), "mode": dir_mode} for item in servers],
        "volumes": [{"name": str(item["scratch_volume"]), "device": str(item["scratch_dir"]),
                     "labels": {ROLE_LABEL: "scratch",
                                "org.terafleet.instance": str(item.get("instance") or item["scratch_volume"])}}
                    for item in servers],
    }


class FilterModule:
    """terafleet's scratch plan."""

    def filters(self) -> dict:
        return {"scratch_plan": scratch_plan}
