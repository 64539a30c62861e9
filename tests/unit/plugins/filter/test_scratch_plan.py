"""scratch_plan: the scratch root, one directory per server, and a volume bound to each."""

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import preflight_node

from ansible_collections.terafleet.cluster.plugins.filter.scratch_plan import FilterModule, scratch_plan

SETTINGS = {"root": "/lstor/terafleet", "root_mode": "0755", "dir_mode": "0750"}


def test_root_then_one_directory_and_volume_per_server():
    plan = scratch_plan(preflight_node(size=2)["instances"], SETTINGS, "gpu01")
    assert plan["directories"] == [
        {"path": "/lstor/terafleet", "mode": "0755"}, {"path": "/lstor/terafleet/scratch", "mode": "0755"},
        {"path": "/lstor/terafleet/scratch/gpu01-gpu0-1", "mode": "0750"},
        {"path": "/lstor/terafleet/scratch/gpu01-gpu2-3", "mode": "0750"}]
    assert plan["volumes"][1] == {"name": "terafleet-scratch-gpu2-3",
                                  "device": "/lstor/terafleet/scratch/gpu01-gpu2-3",
                                  "labels": {"org.terafleet.role": "scratch",
                                             "org.terafleet.instance": "terachem-gpu2-3"}}


def test_a_directory_outside_the_root_is_refused():
    servers = [{"scratch_dir": "/tmp/elsewhere", "scratch_volume": "v"}]
    with pytest.raises(AnsibleFilterError, match=r"gpu01: scratch directories \['/tmp/elsewhere'\] must lie under"):
        scratch_plan(servers, SETTINGS, "gpu01")


def test_the_root_itself_is_not_under_the_root():
    with pytest.raises(AnsibleFilterError, match="must lie under"):
        scratch_plan([{"scratch_dir": "/lstor/terafleet", "scratch_volume": "v"}], SETTINGS, "gpu01")


@pytest.mark.parametrize("servers", [None, [{"scratch_dir": "/lstor/terafleet/x"}], "terachem-gpu0"])
def test_servers_without_scratch_names_are_refused(servers):
    with pytest.raises(AnsibleFilterError, match="scratch_instances must be a list of servers"):
        scratch_plan(servers, SETTINGS, "gpu01")


def test_a_relative_root_is_refused():
    with pytest.raises(AnsibleFilterError, match="scratch_root must be an absolute path"):
        scratch_plan([], {**SETTINGS, "root": "lstor"}, "gpu01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["scratch_plan"] is scratch_plan
