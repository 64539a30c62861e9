"""One argument spec for several roles, so that preflight checks all their variables in one step."""

from __future__ import annotations

DOCUMENTATION = r"""
name: role_argument_spec
short_description: Merge roles' argument specs into one, for ansible.builtin.validate_argument_spec
version_added: 0.2.0
author: terafleet developers
description:
  - Reads C(meta/argument_specs.yml) of each role named, on the controller, and returns the options of all
    their entry points as one argument spec, so that a single M(ansible.builtin.validate_argument_spec) step
    checks every variable of every role a playbook will run, before any host changes.
  - The options carry no C(description) and no C(default). A variable that is not set takes the role's
    default when the role runs (its C(defaults/main.yml), which the argument spec documents), and is not
    checked here. Defaults that are templates (one role's default built from another's variables) would
    otherwise be checked as the template's text where the role's defaults are not loaded.
  - An option that two entry points declare must be declared the same way in both (descriptions aside),
    or the filter fails, naming the option and where each declaration is.
positional: roles_dir
options:
  _input:
    description: The roles' names.
    type: list
    elements: str
    required: true
  roles_dir:
    description: The directory holding the roles (a role's C(role_path) followed by C(/..)).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Check every role's variables against its argument spec
  ansible.builtin.validate_argument_spec:
    argument_spec: "{{ ['docker_engine', 'celery_worker'] | terafleet.cluster.role_argument_spec(role_path ~ '/..') }}"
"""

RETURN = r"""
_value:
  description: The options of every entry point of every role given, by name, without their descriptions and defaults.
  type: dict
  sample: {"docker_engine_source": {"type": "str", "choices": ["distro", "docker"]}}
"""

import os
from collections.abc import Mapping

import yaml
from ansible.errors import AnsibleFilterError

# What does not change what an option accepts.
_DOCUMENTATION_KEYS = frozenset({"description", "version_added"})
# Left out of the merged spec: a variable that is not set is the role's default, not checked here; the
# documentation would only lengthen the report of a failed check, which shows the spec.
_LEFT_OUT = _DOCUMENTATION_KEYS | {"default"}


def _meaning(option: Mapping) -> dict:
    return {key: value for key, value in option.items() if key not in _DOCUMENTATION_KEYS}


def _without_defaults(option: Mapping) -> dict:
    """The option, and the options nested in it (a dict's suboptions), without their defaults."""
    stripped = {key: value for key, value in option.items() if key not in _LEFT_OUT}
    if isinstance(stripped.get("options"), Mapping):
        stripped["options"] = {name: _without_defaults(sub) for name, sub in stripped["options"].items()}
    return stripped


def _entry_points(roles_dir: str, role: str) -> Mapping:
    path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as error:
        raise AnsibleFilterError(f"role_argument_spec: {role}: cannot read {path}: {error}") from error
    entry_points = document.get("argument_specs") if isinstance(document, Mapping) else None
    if not isinstance(entry_points, Mapping):
        raise AnsibleFilterError(f"role_argument_spec: {role}: {path} has no argument_specs")
    return entry_points


def role_argument_spec(roles: list, roles_dir: str) -> dict:
    if isinstance(roles, (str, Mapping)) or not all(isinstance(role, str) for role in roles):
        raise AnsibleFilterError(f"role_argument_spec: expected a list of role names, got {roles!r}")
    declared: dict = {}
    where: dict[str, str] = {}
    for role in roles:
        for entry_point, spec in _entry_points(roles_dir, role).items():
            for name, option in ((spec or {}).get("options") or {}).items():
                here = f"{role} ({entry_point})"
                if name in declared and _meaning(declared[name]) != _meaning(option):
                    raise AnsibleFilterError(
                        f"role_argument_spec: {name} is declared differently in {where[name]} and {here}")
                declared.setdefault(name, option)
                where.setdefault(name, here)
    return {name: _without_defaults(option) for name, option in declared.items()}


class FilterModule:
    """terafleet's merged role argument spec."""

    def filters(self) -> dict:
        return {"role_argument_spec": role_argument_spec}
