"""node_facts' own parts on this machine: $LSTOR's file system and an engine that does not answer. The
GPU reading is gpu_facts' (test_gpu_facts.py); the whole module runs in the gpu_node scenario."""

import os

import pytest

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import DockerAPI, DockerAPIError
from ansible_collections.terafleet.cluster.plugins.modules import node_facts
from ansible_collections.terafleet.cluster.plugins.modules.node_facts import (
    FactsError,
    docker_api_version,
    kernel_filesystems,
    labelled_containers,
    lstor_facts,
    mount_point,
    mount_points,
    parse_dpkg_query,
    parse_systemctl_show,
    read_json,
    services,
)


def test_a_directory_on_the_root_file_system_reports_root_as_its_mount_point(tmp_path):
    inner = tmp_path / "lstor" / "inner"
    inner.mkdir(parents=True)
    expected = str(tmp_path)
    while not os.path.ismount(expected):
        expected = os.path.dirname(expected)
    assert mount_point(str(inner)) == expected
    facts = lstor_facts(str(inner) + "/")
    assert facts["path"] == str(inner) and facts["is_dir"] is True and facts["mount_point"] == expected
    usage = os.statvfs(inner)
    assert abs(facts["available_bytes"] - usage.f_bavail * usage.f_frsize) < 64 * 1024 * 1024


def test_proc_is_its_own_mount_point():
    assert mount_point("/proc/self") == "/proc"


def test_a_symlink_is_followed_to_the_file_system_it_points_into(tmp_path):
    (tmp_path / "link").symlink_to("/proc")
    assert mount_point(str(tmp_path / "link")) == "/proc"


def test_a_missing_path_or_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "file"):
        assert lstor_facts(str(path)) == {"path": str(path), "is_dir": False, "mount_point": None,
                                          "available_bytes": None}


def test_no_engine_on_the_socket_is_no_version(tmp_path):
    assert docker_api_version(DockerAPI(str(tmp_path / "docker.sock"))) is None


class Listing:
    """DockerAPI's `containers(labels)`: the engine's answer to a label filter, or its error."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def containers(self, labels):
        self.asked.append(labels)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_labelled_containers_are_named_with_the_labels_value():
    engine = Listing([{"Names": ["/terachem-gpu0"], "Labels": {"org.terafleet.role": "terachem"}},
                      {"Names": ["/worker-gpu0"], "Labels": {"org.terafleet.role": "worker", "other": "x"}},
                      {"Names": ["/terafleet-rabbitmq"], "Labels": {"org.terafleet.role": "broker"}}])
    assert labelled_containers(engine, "org.terafleet.role") == {
        "terachem-gpu0": "terachem", "worker-gpu0": "worker", "terafleet-rabbitmq": "broker"}
    # Asked of the engine by the label's key, any value.
    assert engine.asked == [{"org.terafleet.role": None}]
    assert labelled_containers(Listing([]), "org.terafleet.role") == {}


def test_no_engine_is_no_container_list_not_an_empty_one(tmp_path):
    assert labelled_containers(DockerAPI(str(tmp_path / "docker.sock")), "org.terafleet.role") is None
    assert labelled_containers(Listing(DockerAPIError("500: daemon busy")), "org.terafleet.role") is None


def test_dpkg_query_output_says_installed_held_and_unknown_per_package():
    output = ("docker.io\thold ok installed\t20.10.24+dfsg1-1+b3\n"
              "python3-requests\tdeinstall ok config-files\t2.28.1+dfsg-1\n"
              "nvidia-container-toolkit\tinstall ok half-configured\t1.17.8-1\n")
    assert parse_dpkg_query(output, ["docker.io", "python3-requests", "nvidia-container-toolkit", "absent"]) == {
        "docker.io": {"installed": True, "selection": "hold", "version": "20.10.24+dfsg1-1+b3"},
        "python3-requests": {"installed": False, "selection": "deinstall", "version": "2.28.1+dfsg-1"},
        "nvidia-container-toolkit": {"installed": False, "selection": "install", "version": "1.17.8-1"},
        "absent": None,
    }


@pytest.mark.parametrize("output, expected", [
    ("ActiveState=active\nUnitFileState=enabled\n", {"active": "active", "enabled": "enabled"}),
    ("ActiveState=failed\nUnitFileState=disabled\n", {"active": "failed", "enabled": "disabled"}),
    ("ActiveState=inactive\nUnitFileState=\n", {"active": "inactive", "enabled": ""}),  # no such unit
    ("", {"active": "", "enabled": ""}),
])
def test_systemctl_show_output_gives_state_and_enablement(output, expected):
    assert parse_systemctl_show(output) == expected


def fake_systemctl(tmp_path, monkeypatch, script: str) -> None:
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\n" + script)
    systemctl.chmod(0o755)
    monkeypatch.setattr(node_facts.shutil, "which", lambda name: str(systemctl) if name == "systemctl" else None)


def test_services_asks_systemctl_per_unit(tmp_path, monkeypatch):
    fake_systemctl(tmp_path, monkeypatch, 'if [ "$4" = docker.service ]; then echo ActiveState=active; '
                   'echo UnitFileState=enabled; else echo ActiveState=inactive; echo UnitFileState=; fi\n')
    assert services(["docker.service", "absent.service"]) == {
        "docker.service": {"active": "active", "enabled": "enabled"},
        "absent.service": {"active": "inactive", "enabled": ""}}


def test_services_without_a_running_systemd_are_unknown(tmp_path, monkeypatch):
    fake_systemctl(tmp_path, monkeypatch, "echo 'System has not been booted with systemd' >&2; exit 1\n")
    assert services(["docker.service"]) is None
    monkeypatch.setattr(node_facts.shutil, "which", lambda name: None)
    assert services(["docker.service"]) is None


def test_json_files_read_as_documents_a_missing_one_as_none(tmp_path):
    (tmp_path / "daemon.json").write_text('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}')
    (tmp_path / "empty.json").write_text("\n")
    assert read_json(str(tmp_path / "daemon.json")) == {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
    assert read_json(str(tmp_path / "empty.json")) == {}
    assert read_json(str(tmp_path / "missing.json")) is None


def test_a_json_file_that_is_not_json_is_named(tmp_path):
    (tmp_path / "daemon.json").write_text("{broken")
    with pytest.raises(FactsError, match=r"daemon.json is not valid JSON .*; fix or remove it by hand"):
        read_json(str(tmp_path / "daemon.json"))


def test_a_bind_mount_on_the_same_file_system_is_its_own_mount_point(tmp_path):
    lstor = tmp_path / "lstor"
    (lstor / "terafleet").mkdir(parents=True)
    points = ["/", str(tmp_path), str(lstor)]
    assert mount_point(str(lstor / "terafleet"), points) == str(lstor)
    assert mount_point(str(lstor), points) == str(lstor)
    assert mount_point(str(tmp_path / "lstorage"), points + [str(tmp_path / "lstorage")]) == str(tmp_path / "lstorage")
    assert mount_point(str(tmp_path / "other"), points) == str(tmp_path)


def test_mountinfo_escapes_are_read(tmp_path):
    table = tmp_path / "mountinfo"
    table.write_text("36 35 98:0 /mnt1 /local\\040disk rw,noatime master:1 - ext3 /dev/root rw\n"
                     "37 35 98:0 / / rw - ext4 /dev/sda1 rw\n")
    assert mount_points(str(table)) == ["/local disk", "/"]


def test_a_file_system_the_kernel_registered_can_be_mounted(tmp_path):
    proc = tmp_path / "filesystems"
    proc.write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\tnfs\nnodev\tnfs4\n")
    assert kernel_filesystems(["nfs", "xfs"], str(proc), str(tmp_path / "none")) == {"nfs": True, "xfs": False}


def test_a_module_of_the_running_release_or_a_built_in_counts(tmp_path):
    proc = tmp_path / "filesystems"
    proc.write_text("\text4\n")
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "modules.dep").write_text("kernel/fs/nfs/nfs.ko.zst: kernel/fs/nfs_common/grace.ko.zst\n"
                                         "kernel/fs/nfs/nfsv4.ko.zst: kernel/fs/nfs/nfs.ko.zst\n")
    (modules / "modules.builtin").write_text("kernel/fs/xfs/xfs.ko\n")
    assert kernel_filesystems(["nfs", "xfs", "cifs"], str(proc), str(modules)) == {
        "nfs": True, "xfs": True, "cifs": False}


def test_no_nfs_on_a_kernel_without_it_and_without_modules(tmp_path):
    # As on the machines these tests run on: no nfs in /proc/filesystems, no /lib/modules.
    assert kernel_filesystems(["nfs"], str(tmp_path / "missing"), str(tmp_path / "missing")) == {"nfs": False}
