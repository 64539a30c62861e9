#!/usr/bin/python
"""Ansible module: a role's directories and small files on a node, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
module: node_files
short_description: Make a role's directories and small files on a node as asked, in one call
version_added: 0.1.0
author: terafleet developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
description:
  - Brings each entry of O(files), in the order given, to its state. A directory is created with its
    missing parents; a file gets exactly O(files[].content); owner, group and mode are set on both.
    An C(absent) entry is removed, a directory with everything in it.
  - One module run per role instead of one M(ansible.builtin.file), M(ansible.builtin.copy),
    M(ansible.builtin.template) or M(ansible.builtin.cron) run per path. Render templates and read
    files on the controller with the C(template) and C(file) lookups.
  - A file is written to a temporary file in its directory and renamed over the old one, so nothing
    reads half a file. Every entry is checked (absolute path, octal mode, content for files, each path
    once, existing owner and group) before any path changes.
  - Returns the paths that changed, so a task can notify or register per path.
options:
  files:
    description: Paths, parents before what they hold.
    type: list
    elements: dict
    required: true
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      state:
        description: What the path must be.
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description: The file's whole content (C(state=file)); or give O(files[].json_merge).
        type: str
      json_merge:
        description:
          - Keys to merge into the JSON object the file holds (C(state=file)), dictionaries key by key at
            any depth and other values replaced; a missing file starts empty.
          - The file is rewritten, sorted and indented by 4 like C(to_nice_json), only when the merge changes
            what it holds, not for its formatting; a file that is not a JSON object fails the task untouched.
        type: dict
      secret:
        description:
          - The content is a secret (a license, a password in a configuration file). It is kept out of the
            task's result, the module's arguments returned with it and its diff.
        type: bool
        default: false
      backup:
        description: Keep a copy of a file before it is rewritten, named as M(ansible.builtin.copy) names its backups.
        type: bool
        default: false
      mode: {description: Octal mode as a quoted string (C("0644")); required unless C(state=absent)., type: raw}
      owner: {description: Owner., type: str, default: root}
      group: {description: Group., type: str, default: root}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Content is text. Mark a secret with O(files[].secret); C(no_log) on the task hides the rest of the
    result from the output too.
"""

EXAMPLES = r"""
- name: Install the check scripts and their cron entries
  terafleet.cluster.node_files:
    files:
      - {path: /var/lib/terafleet, state: directory, mode: "0700"}
      - path: /usr/local/sbin/terafleet-watchdog
        content: "{{ lookup('ansible.builtin.file', 'terafleet-watchdog', rstrip=false) }}"
        mode: "0755"
      - path: /etc/cron.d/terafleet-checks-watchdog
        content: "* * * * * root /usr/local/sbin/terafleet-watchdog\n"
        mode: "0644"
      - {path: /etc/cron.d/terafleet-old-entry, state: absent}
  register: __checks
"""

RETURN = r"""
backup_files:
  description: The copies O(files[].backup) kept.
  returned: always
  type: list
  elements: str
changed_paths:
  description: The paths created, rewritten, removed or given another owner, group or mode.
  returned: always
  type: list
  elements: str
  sample: [/etc/cron.d/terafleet-checks-watchdog]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.terafleet.cluster.plugins.module_utils.node_paths import (
    FilesError,
    backup,
    ensure_absent,
    ensure_directory,
    ensure_file,
    json_bytes,
    merged_json,
    parse_mode,
    resolve_ids,
)


def validate(entries: list[dict]) -> None:
    """Refuse bad input as a whole, before any path changes."""
    seen: set[str] = set()
    for entry in entries:
        path, state = entry["path"], entry["state"]
        if path in seen:
            raise FilesError(f"{path} is listed twice")
        seen.add(path)
        given = [key for key in ("content", "json_merge") if entry.get(key) is not None]
        if not os.path.isabs(path):
            raise FilesError(f"{path}: not an absolute path")
        if entry.get("mode") is not None and not isinstance(entry["mode"], str):
            raise FilesError(f"{path}: mode {entry['mode']!r} must be a quoted octal string such as '0644' "
                             "(YAML reads 0644 unquoted as the number 420)")
        if state == "absent":
            if given:
                raise FilesError(f"{path}: {given[0]} given for a path that must be absent")
            continue
        if entry.get("mode") is None:
            raise FilesError(f"{path}: a mode is required for state={state}")
        parse_mode(path, entry["mode"])
        if state == "file" and len(given) != 1:
            raise FilesError(f"{path}: state=file needs content or json_merge, one of them")
        if state == "directory" and given:
            raise FilesError(f"{path}: {given[0]} given for a directory")
        resolve_ids(entry["owner"], entry["group"])


def wanted_content(entry: dict) -> bytes:
    """The bytes the file must hold; for a JSON merge that changes nothing, the file's own bytes."""
    if entry.get("json_merge") is None:
        return entry["content"].encode()
    raw, document, merged = merged_json(entry["path"], entry["json_merge"])
    return raw if raw is not None and merged == document else json_bytes(merged)


def apply(entries: list[dict], check_mode: bool, want_diff: bool, changed: list[str], diffs: list[dict],
          backups: list[str] | None = None) -> None:
    """Bring every entry to its state, recording each changed path, each backup and, when asked, a diff per
    changed file (in the lists given, so a failure part way still reports what changed before it)."""
    for entry in entries:
        path, state = entry["path"], entry["state"]
        if state == "absent":
            if ensure_absent(path, check_mode):
                changed.append(path)
                if want_diff:
                    diffs.append({"before_header": path, "after_header": path, "before": "present\n",
                                  "after": "absent\n"})
            continue
        uid, gid = resolve_ids(entry["owner"], entry["group"])
        if state == "directory":
            if ensure_directory(path, entry["mode"], uid, gid, check_mode):
                changed.append(path)
            continue
        content = wanted_content(entry)
        if entry.get("backup") and not check_mode and backups is not None and os.path.isfile(path):
            with open(path, "rb") as current:
                if current.read() != content:
                    backups.append(backup(path))
        did_change, before = ensure_file(path, content, entry["mode"], uid, gid, check_mode)
        if did_change:
            changed.append(path)
            if want_diff and before != content and not entry.get("secret"):
                diffs.append({"before_header": path, "after_header": path,
                              "before": before.decode(errors="replace") if before is not None else "",
                              "after": content.decode(errors="replace")})


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True,
                      "options": {"path": {"type": "path", "required": True},
                                  "state": {"type": "str", "choices": ["file", "directory", "absent"],
                                            "default": "file"},
                                  "content": {"type": "str"},
                                  "json_merge": {"type": "dict"},
                                  "backup": {"type": "bool", "default": False},
                                  "secret": {"type": "bool", "default": False},
                                  "mode": {"type": "raw"},
                                  "owner": {"type": "str", "default": "root"},
                                  "group": {"type": "str", "default": "root"}}},
        },
        supports_check_mode=True,
    )
    changed: list[str] = []
    diffs: list[dict] = []
    backups: list[str] = []
    for entry in module.params["files"]:
        if entry.get("secret") and entry.get("content"):
            module.no_log_values.add(entry["content"])
    try:
        validate(module.params["files"])
        apply(module.params["files"], module.check_mode, module._diff, changed, diffs, backups)
    except (FilesError, OSError) as error:
        module.fail_json(msg=str(error), changed_paths=changed, backup_files=backups)
    result = {"changed": bool(changed), "changed_paths": changed, "backup_files": backups}
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
