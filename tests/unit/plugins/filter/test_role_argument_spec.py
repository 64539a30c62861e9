"""role_argument_spec: every role the playbooks run, checked in one step of preflight."""

import re
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.terafleet.cluster.plugins.filter.role_argument_spec import FilterModule, role_argument_spec

REPO = Path(__file__).resolve().parents[4]
ROLES = REPO / "roles"
CHECKED = yaml.safe_load((ROLES / "preflight" / "vars" / "main.yml").read_text())["_preflight_checked_roles"]
# The playbooks site.yml imports after preflight.yml; their includes skip the roles' own check.
PLAYBOOKS = ["node.yml", "services.yml", "smoke.yml"]


def _role(tmp_path, name, entry_points):
    (tmp_path / name / "meta").mkdir(parents=True)
    (tmp_path / name / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": entry_points}))


def _errors(spec, values):
    return ArgumentSpecValidator(spec).validate(values, validate_role_argument_spec=True).error_messages


def test_the_checked_roles_merge_without_a_conflict_and_keep_every_option():
    spec = role_argument_spec(CHECKED, str(ROLES))
    for role in CHECKED:
        document = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry_point in document.values():
            assert set(entry_point.get("options") or {}) <= set(spec), role
    assert spec["docker_engine_source"] == {"type": "str", "choices": ["distro", "docker"]}
    assert spec["celery_worker_concurrency"] == {"type": "int"}


def test_bad_types_and_choices_are_named_and_good_values_pass():
    spec = role_argument_spec(CHECKED, str(ROLES))
    errors = _errors(spec, {"docker_engine_source": "snap", "celery_worker_concurrency": "many",
                            "smoke_test_timeout": 30, "terachem_env": {"OMP_NUM_THREADS": "4"}})
    assert any("value of docker_engine_source must be one of: distro, docker, got: snap" in e for e in errors)
    assert any("'celery_worker_concurrency' is of type str" in e for e in errors)
    assert len(errors) == 2
    assert _errors(spec, {"docker_engine_source": "docker", "celery_worker_concurrency": "2"}) == []


def test_defaults_are_left_to_the_roles():
    # broker_rabbitmq_port's default is a template over broker_tls: checked as its text it would be refused.
    spec = role_argument_spec(CHECKED, str(ROLES))
    assert not [name for name, option in spec.items() if "default" in option or "description" in option]
    assert _errors(spec, {}) == []


def test_the_same_option_declared_the_same_way_twice_is_one_option(tmp_path):
    _role(tmp_path, "one", {"main": {"options": {"shared": {"type": "int", "description": "here", "default": 1}}},
                            "extra": {"options": {"shared": {"type": "int", "description": "there", "default": 1}}}})
    assert role_argument_spec(["one"], str(tmp_path)) == {"shared": {"type": "int"}}


def test_an_option_declared_differently_is_refused_naming_both_places(tmp_path):
    _role(tmp_path, "one", {"main": {"options": {"shared": {"type": "int"}}}})
    _role(tmp_path, "two", {"install": {"options": {"shared": {"type": "str"}}}})
    with pytest.raises(AnsibleFilterError, match=r"shared is declared differently in one \(main\) and two \(install\)"):
        role_argument_spec(["one", "two"], str(tmp_path))


@pytest.mark.parametrize("roles, message", [
    ("docker_engine", "expected a list of role names"),
    ([{"role": "docker_engine"}], "expected a list of role names"),
    (["no_such_role"], "no_such_role: cannot read"),
], ids=["a-string", "not-names", "missing-role"])
def test_bad_arguments_are_refused(roles, message):
    with pytest.raises(AnsibleFilterError, match=message):
        role_argument_spec(roles, str(ROLES))


def test_a_spec_without_argument_specs_is_refused(tmp_path):
    (tmp_path / "bare" / "meta").mkdir(parents=True)
    (tmp_path / "bare" / "meta" / "argument_specs.yml").write_text("main: {}\n")
    with pytest.raises(AnsibleFilterError, match="bare: .* has no argument_specs"):
        role_argument_spec(["bare"], str(tmp_path))


def _includes(playbook):
    plays = yaml.safe_load((REPO / "playbooks" / playbook).read_text())
    for play in plays:
        for task in play.get("tasks", []):
            for action in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                if action in task:
                    yield task[action]
        assert "roles" not in play, f"{playbook}: a role listed under roles: checks its own variables again"


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_role_the_playbooks_run_is_checked_in_preflight_and_not_again(playbook):
    for include in _includes(playbook):
        role = include["name"].removeprefix("terafleet.cluster.")
        entry_point = include.get("tasks_from", "main")
        document = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        if entry_point not in document:
            continue  # no spec, no check (preflight's node_layer)
        assert role in CHECKED, f"{playbook}: {role} is not in _preflight_checked_roles"
        assert include.get("rolespec_validate") is False, f"{playbook}: {role} ({entry_point}) checks again"


def test_preflight_runs_the_check():
    tasks = (ROLES / "preflight" / "tasks" / "main.yml").read_text()
    assert re.search(r"validate_argument_spec:\n\s+argument_spec: .*_preflight_checked_roles \| "
                     r"terafleet\.cluster\.role_argument_spec", tasks)


def test_filter_is_registered():
    assert FilterModule().filters()["role_argument_spec"] is role_argument_spec
