"""The scratch of one GPU node: its directories on $LSTOR and the Docker volume bound to each server's."""

from __future__ import annotations

DOCUMENTATION = r"""
name: scratch_plan
short_description: Plan a GPU node's scratch - directories on $LSTOR or NFS exports - and each server's volume
version_added: 0.2.0
author: terafleet developers
description:
  - Turns the servers whose scratch to create (by default the GPU sets preflight planned) and the scratch
    role's settings into the directories and volumes M(terafleet.cluster.scratch_volumes) takes, and names
    the volume each GPU set's server, worker and frontend mount (RV(_value.volume_of)).
  - "Backend C(local): the scratch root, its C(scratch/) directory, one directory per server, and a local
    volume C(terafleet-scratch-<set>) bound to each (C(type=none), C(o=bind))."
  - "Backend C(nfs): a volume C(terafleet-scratch-nfs-<set>) of Docker's local driver with C(type=nfs),
    C(o=addr=<server>,<options>) and C(device=:<export>/<host>-<set>); Docker mounts it when a container
    using it starts. The export directories must exist on the file server. The scratch root is still made on
    $LSTOR (the disk check and earlier local scratch live there)."
  - The two backends name their volumes apart, so switching backends recreates each server, worker and
    frontend on the new volume and leaves the old volume and its data in place.
  - Every local directory must lie under the scratch root; a setting that is missing, null or of the wrong
    type fails with the inventory variable's name (C(scratch_<setting>)).
  - A node with no servers (no GPU node) plans nothing.
positional: settings, host
options:
  _input:
    description: The servers, each with C(name) (the GPU set), C(scratch_dir) and C(instance) (for the label).
    type: list
    elements: dict
    required: true
  settings:
    description:
      - The scratch role's settings without their C(scratch_) prefix - C(root), C(root_mode), C(dir_mode),
        C(backend) (C(local) or C(nfs)), C(nfs_server), C(nfs_export), C(nfs_options).
      - The C(nfs_) settings are read only for the C(nfs) backend.
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
           'root_mode': '0755', 'dir_mode': '0750', 'backend': 'local'}, inventory_hostname) }}

- name: Plan scratch on an NFS server
  ansible.builtin.set_fact:
    scratch: >-
      {{ preflight_node.instances | terafleet.cluster.scratch_plan({'root': '/lstor/terafleet',
           'root_mode': '0755', 'dir_mode': '0750', 'backend': 'nfs', 'nfs_server': '10.1.0.20',
           'nfs_export': '/export/terafleet', 'nfs_options': 'nfsvers=4.2,hard'}, inventory_hostname) }}
  # volumes: [{name: terafleet-scratch-nfs-gpu0,
  #            options: {type: nfs, o: 'addr=10.1.0.20,nfsvers=4.2,hard', device: ':/export/terafleet/gpu01-gpu0'}}]
"""

RETURN = r"""
_value:
  description: What to create, and which volume each GPU set mounts.
  type: dict
  contains:
    backend:
      description: C(local) or C(nfs).
      type: str
    directories:
      description: Directories on the node with their modes, the root first.
      type: list
      elements: dict
    volumes:
      description:
        - One volume per server - C(name), C(options) (the local driver's C(type), C(o), C(device)) and
          C(labels).
      type: list
      elements: dict
    volume_of:
      description: The scratch volume of each GPU set, by set name.
      type: dict
"""

import posixpath
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.plugin_utils.plan import ROLE_LABEL, SAFE_NAME, Settings

SETTINGS = ("root", "root_mode", "dir_mode", "backend", "nfs_server", "nfs_export", "nfs_options")
BACKENDS = ("local", "nfs")
# A host name, an IPv4 address or an IPv6 address (which Docker's NFS option takes without brackets).
_NFS_SERVER = re.compile(r"^[A-Za-z0-9:][A-Za-z0-9.:_-]*$")
# Mount options: comma-separated words or key=value, no spaces; addr= is the server's, set from nfs_server.
_NFS_OPTION = re.compile(r"^[A-Za-z0-9_]+(=[A-Za-z0-9_.:/-]+)?$")


def _nfs(s: Settings) -> tuple[str, str]:
    """The o= and the export root of an NFS backend, checked."""
    server, export, options = s.str("nfs_server"), s.path("nfs_export"), s.str("nfs_options", empty=True)
    if not _NFS_SERVER.match(server):
        raise s.fail("nfs_server", f"must be a host name or an IP address, got {server!r}")
    words = [word.strip() for word in options.split(",")] if options.strip() else []
    bad = [word for word in words if not _NFS_OPTION.match(word)]
    if bad:
        raise s.fail("nfs_options", f"must be comma-separated mount options (nfsvers=4.2,hard), got {bad}")
    if any(word.split("=")[0] == "addr" for word in words):
        raise s.fail("nfs_options", "must not set addr=; scratch_nfs_server gives the server's address")
    return ",".join([f"addr={server}", *words]), export


def scratch_plan(servers: list, settings: dict, host: str) -> dict:
    """Return the node's scratch directories and volumes; see DOCUMENTATION."""
    s = Settings(settings, "scratch_", host, SETTINGS)
    root, root_mode, dir_mode = s.path("root"), s.str("root_mode"), s.str("dir_mode")
    backend = s.choice("backend", BACKENDS)
    if not isinstance(servers, list) or not all(
            isinstance(item, Mapping) and isinstance(item.get("name"), str) and SAFE_NAME.match(item["name"])
            and item.get("scratch_dir") for item in servers):
        raise AnsibleFilterError(f"{host}: scratch_instances must be a list of servers with name and scratch_dir, "
                                 f"got {servers!r}")
    outside = [item["scratch_dir"] for item in servers
               if not posixpath.normpath(str(item["scratch_dir"])).startswith(root + "/")]
    if outside:
        raise AnsibleFilterError(f"{host}: scratch directories {outside} must lie under the scratch root '{root}' "
                                 "(scratch_root)")
    if not servers:
        return {"backend": backend, "directories": [], "volumes": [], "volume_of": {}}
    directories = [{"path": root, "mode": root_mode}, {"path": f"{root}/scratch", "mode": root_mode}]
    volumes, volume_of = [], {}
    if backend == "nfs":
        mount_options, export = _nfs(s)
    for item in servers:
        labels = {ROLE_LABEL: "scratch", "org.terafleet.instance": str(item.get("instance") or item["name"])}
        if backend == "local":
            directories.append({"path": str(item["scratch_dir"]), "mode": dir_mode})
            volumes.append({"name": f"terafleet-scratch-{item['name']}",
                            "options": {"type": "none", "o": "bind", "device": str(item["scratch_dir"])},
                            "labels": labels})
        else:
            device = posixpath.join(export, posixpath.basename(posixpath.normpath(str(item["scratch_dir"]))))
            volumes.append({"name": f"terafleet-scratch-nfs-{item['name']}",
                            "options": {"type": "nfs", "o": mount_options, "device": f":{device}"},
                            "labels": {**labels, "org.terafleet.scratch_backend": "nfs"}})
        volume_of[item["name"]] = volumes[-1]["name"]
    return {"backend": backend, "directories": directories, "volumes": volumes, "volume_of": volume_of}


class FilterModule:
    """terafleet's scratch plan."""

    def filters(self) -> dict:
        return {"scratch_plan": scratch_plan}
