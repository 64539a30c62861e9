"""scratch_plan: the scratch root, one directory per server and a volume bound to each, or NFS volumes."""

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import NFS, SCRATCH, preflight_node, settings

from ansible_collections.terafleet.cluster.plugins.filter.scratch_plan import FilterModule, scratch_plan


def test_root_then_one_directory_and_volume_per_server():
    plan = scratch_plan(preflight_node(size=2)["instances"], SCRATCH, "gpu01")
    assert plan["backend"] == "local"
    assert plan["directories"] == [
        {"path": "/lstor/terafleet", "mode": "0755"}, {"path": "/lstor/terafleet/scratch", "mode": "0755"},
        {"path": "/lstor/terafleet/scratch/gpu01-gpu0-1", "mode": "0750"},
        {"path": "/lstor/terafleet/scratch/gpu01-gpu2-3", "mode": "0750"}]
    assert plan["volumes"][1] == {"name": "terafleet-scratch-gpu2-3",
                                  "options": {"type": "none", "o": "bind",
                                              "device": "/lstor/terafleet/scratch/gpu01-gpu2-3"},
                                  "labels": {"org.terafleet.role": "scratch",
                                             "org.terafleet.instance": "terachem-gpu2-3"}}
    assert plan["volume_of"] == {"gpu0-1": "terafleet-scratch-gpu0-1", "gpu2-3": "terafleet-scratch-gpu2-3"}


def test_nfs_gives_each_server_its_own_export_directory_and_no_local_one():
    plan = scratch_plan(preflight_node(size=2)["instances"], settings(NFS, nfs_options="nfsvers=4.1, hard,noatime"),
                        "gpu01")
    assert plan["backend"] == "nfs"
    assert plan["directories"] == [{"path": "/lstor/terafleet", "mode": "0755"},
                                   {"path": "/lstor/terafleet/scratch", "mode": "0755"}]
    assert plan["volumes"][0] == {
        "name": "terafleet-scratch-nfs-gpu0-1",
        "options": {"type": "nfs", "o": "addr=10.1.0.20,nfsvers=4.1,hard,noatime",
                    "device": ":/export/terafleet/gpu01-gpu0-1"},
        "labels": {"org.terafleet.role": "scratch", "org.terafleet.instance": "terachem-gpu0-1",
                   "org.terafleet.scratch_backend": "nfs"}}
    assert plan["volume_of"] == {"gpu0-1": "terafleet-scratch-nfs-gpu0-1", "gpu2-3": "terafleet-scratch-nfs-gpu2-3"}


def test_the_backends_name_their_volumes_apart():
    servers = preflight_node(size=1)["instances"]
    local, nfs = (set(scratch_plan(servers, backend, "gpu01")["volume_of"].values()) for backend in (SCRATCH, NFS))
    assert len(local) == len(nfs) == 4 and not local & nfs


def test_an_ipv6_server_and_no_options():
    plan = scratch_plan(preflight_node()["instances"], settings(NFS, nfs_server="fd00::20", nfs_options=""), "gpu01")
    assert plan["volumes"][0]["options"]["o"] == "addr=fd00::20"


def test_nfs_settings_are_not_read_for_the_local_backend():
    plan = scratch_plan(preflight_node()["instances"], settings(SCRATCH, nfs_server=None, nfs_export=None), "gpu01")
    assert plan["backend"] == "local"


def test_a_node_without_servers_plans_nothing():
    assert scratch_plan([], NFS, "cpu01") == {"backend": "nfs", "directories": [], "volumes": [], "volume_of": {}}


@pytest.mark.parametrize("changes, message", [
    ({"backend": "ceph"}, "scratch_backend must be one of local, nfs, got 'ceph'"),
    ({"backend": None}, "scratch_backend is not set"),
    ({"nfs_server": ""}, "scratch_nfs_server is empty"),
    ({"nfs_server": "nfs host"}, "scratch_nfs_server must be a host name or an IP address, got 'nfs host'"),
    ({"nfs_export": "export"}, "scratch_nfs_export must be an absolute path, got 'export'"),
    ({"nfs_options": "vers=4 hard"}, "scratch_nfs_options must be comma-separated mount options"),
    ({"nfs_options": "addr=10.0.0.9,hard"}, "scratch_nfs_options must not set addr="),
    ({"nfs_options": None}, "scratch_nfs_options is not set"),
])
def test_bad_nfs_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError, match="^gpu01: ") as error:
        scratch_plan(preflight_node()["instances"], settings(NFS, **changes), "gpu01")
    assert message in str(error.value)


def test_a_directory_outside_the_root_is_refused():
    servers = [{"name": "gpu0", "scratch_dir": "/tmp/elsewhere"}]
    with pytest.raises(AnsibleFilterError, match=r"gpu01: scratch directories \['/tmp/elsewhere'\] must lie under"):
        scratch_plan(servers, SCRATCH, "gpu01")


def test_the_root_itself_is_not_under_the_root():
    with pytest.raises(AnsibleFilterError, match="must lie under"):
        scratch_plan([{"name": "gpu0", "scratch_dir": "/lstor/terafleet"}], SCRATCH, "gpu01")


@pytest.mark.parametrize("servers", [None, [{"scratch_dir": "/lstor/terafleet/x"}], "terachem-gpu0",
                                     [{"name": "../x", "scratch_dir": "/lstor/terafleet/scratch/x"}]])
def test_servers_without_scratch_names_are_refused(servers):
    with pytest.raises(AnsibleFilterError, match="scratch_instances must be a list of servers"):
        scratch_plan(servers, SCRATCH, "gpu01")


def test_a_relative_root_is_refused():
    with pytest.raises(AnsibleFilterError, match="scratch_root must be an absolute path"):
        scratch_plan([], {**SCRATCH, "root": "lstor"}, "gpu01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["scratch_plan"] is scratch_plan
