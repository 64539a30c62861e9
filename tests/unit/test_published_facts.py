"""The facts roles publish for others are the ones their readers read: a renamed one cannot go unnoticed."""

import re

import yaml

from conftest import REPO_ROOT


def published(suffix: str) -> dict[str, str]:
    """Fact name -> role, for every set_fact in the roles' tasks whose name ends with suffix."""
    found = {}
    for path in sorted((REPO_ROOT / "roles").glob("*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for name in (task.get("ansible.builtin.set_fact") or {}):
                if name.endswith(suffix):
                    found[name] = path.parts[-3]
    return found


def test_every_changed_fact_is_read_by_the_smoke_test():
    facts = published("_changed")
    assert set(facts) == {"terachem_changed", "celery_worker_changed", "docker_engine_changed",
                          "nvidia_container_toolkit_changed", "broker_changed"}
    due = (REPO_ROOT / "roles/smoke_test/vars/main.yml").read_text()
    for name, role in facts.items():
        assert name.startswith(role + "_")
        assert re.search(rf"\b{name}\b", due), f"{name} ({role}) is published but the smoke test does not read it"


def test_every_plan_is_computed_in_the_preflight_play_and_applied_by_its_role():
    plans = published("_plan")
    assert set(plans) == {"terachem_plan", "celery_worker_plan", "frontend_plan", "broker_plan", "flower_plan",
                          "scratch_plan", "node_checks_plan", "container_images_plan"}
    preflight = (REPO_ROOT / "playbooks/preflight.yml").read_text()
    for name, role in plans.items():
        assert f"name: terafleet.cluster.{role}\n        tasks_from: plan" in preflight, role
        applied = "".join(p.read_text() for p in (REPO_ROOT / "roles" / role).glob("*/*.yml")
                          if p.name != "plan.yml")
        assert re.search(rf"\b{name}\b", applied), f"{role} publishes {name} but never applies it"


def test_no_role_reads_another_roles_registers():
    for path in sorted((REPO_ROOT / "roles").glob("*/*/*.yml")):
        role = path.parts[-3]
        for register in re.findall(r"\b__([a-z]+(?:_[a-z]+)*)", path.read_text()):
            assert register.startswith(role + "_"), f"{path.relative_to(REPO_ROOT)} reads __{register}"


def test_every_read_is_planned_in_the_preflight_play_and_read_where_the_node_play_starts():
    reads = published("_reads")
    assert set(reads) == {"docker_engine_reads", "nvidia_container_toolkit_reads", "node_checks_reads",
                          "container_images_reads"}
    preflight = (REPO_ROOT / "playbooks/preflight.yml").read_text()
    node_layer = (REPO_ROOT / "roles/preflight/tasks/node_layer.yml").read_text()
    node_play = (REPO_ROOT / "playbooks/node.yml").read_text()
    assert "name: terafleet.cluster.preflight\n        tasks_from: node_layer" in node_play
    assert node_play.index("tasks_from: node_layer") < node_play.index("name: terafleet.cluster.docker_engine")
    for name, role in reads.items():
        assert f"name: terafleet.cluster.{role}\n        tasks_from: plan" in preflight, role
        assert f'"{{{{ {name} }}}}"' in node_layer, f"{role} publishes {name} but the node play does not read it"


def test_the_images_docker_engine_reads_are_the_ones_container_images_would():
    verify = yaml.safe_load((REPO_ROOT / "roles/docker_engine/tasks/verify.yml").read_text())
    read = next(task for task in verify if "terafleet.cluster.node_facts" in task)
    assert "container_images_reads.images" in read["terafleet.cluster.node_facts"]["images"]
    assert published("_images_read") == {"docker_engine_images_read": "docker_engine"}
    assert published("_reads")["container_images_reads"] == "container_images"
    pull = (REPO_ROOT / "roles/container_images/tasks/pull.yml").read_text()
    assert "docker_engine_images_read" in pull
