"""node_facts' own parts on this machine: $LSTOR's file system and an engine that does not answer. The
GPU reading is gpu_facts' (test_gpu_facts.py); the whole module runs in the gpu_node scenario."""

import os

from node_facts import docker_api_version, lstor_facts, mount_point


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
    assert docker_api_version(str(tmp_path / "docker.sock")) is None
