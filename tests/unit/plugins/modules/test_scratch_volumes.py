"""scratch_volumes: directories with their owner and mode on a real file system, volumes against an
engine double that answers the way the Docker API does."""

import grp
import os
import pwd
import stat

import pytest

from ansible_collections.terafleet.cluster.plugins.modules.scratch_volumes import (
    ScratchError,
    ensure_directory,
    ensure_volume,
    resolve_ids,
)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


class Volumes:
    def __init__(self):
        self.volumes: dict[str, dict] = {}
        self.created: list[str] = []

    def volume(self, name):
        return self.volumes.get(name)

    def create_volume(self, body):
        self.created.append(body["Name"])
        self.volumes[body["Name"]] = {"Driver": body["Driver"], "Options": body["DriverOpts"],
                                      "Labels": body["Labels"]}
        return self.volumes[body["Name"]]


def test_directory_is_created_with_parents_and_mode_then_left_alone(tmp_path):
    uid, gid = os.getuid(), os.getgid()
    path = str(tmp_path / "terafleet" / "scratch" / "node1-gpu0")
    assert ensure_directory(path, "0750", uid, gid, check_mode=False) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    assert ensure_directory(path, "0750", uid, gid, check_mode=False) is False


def test_wrong_mode_is_corrected(tmp_path):
    path = tmp_path / "node1-gpu0"
    path.mkdir(mode=0o777)
    os.chmod(path, 0o777)
    assert ensure_directory(str(path), "0750", os.getuid(), os.getgid(), check_mode=False) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750


def test_check_mode_reports_without_creating(tmp_path):
    path = tmp_path / "node1-gpu0"
    assert ensure_directory(str(path), "0750", os.getuid(), os.getgid(), check_mode=True) is True
    assert not path.exists()


@pytest.mark.parametrize("path, mode, message", [
    ("relative/dir", "0750", "not an absolute path"),
    ("/tmp/x", "rwxr-x---", "is not an octal mode"),
    ("/tmp/x", "0999", "is not an octal mode"),
])
def test_bad_directory_input_is_refused(path, mode, message):
    with pytest.raises(ScratchError, match=message):
        ensure_directory(path, mode, 0, 0, check_mode=True)


def test_a_file_in_the_way_is_refused(tmp_path):
    path = tmp_path / "node1-gpu0"
    path.write_text("not a directory")
    with pytest.raises(ScratchError, match="exists and is not a directory"):
        ensure_directory(str(path), "0750", os.getuid(), os.getgid(), check_mode=False)


def test_owner_and_group_are_looked_up():
    assert resolve_ids(ME, MY_GROUP) == (os.getuid(), os.getgid())
    with pytest.raises(ScratchError, match="no user 'no-such-user-tf'"):
        resolve_ids("no-such-user-tf", MY_GROUP)
    with pytest.raises(ScratchError, match="no group 'no-such-group-tf'"):
        resolve_ids(ME, "no-such-group-tf")


def bind(device: str) -> dict:
    return {"type": "none", "o": "bind", "device": device}


NFS = {"type": "nfs", "o": "addr=10.1.0.20,nfsvers=4.2,hard", "device": ":/export/n1-gpu0"}


def test_volume_is_created_bound_to_its_directory_once():
    engine = Volumes()
    assert ensure_volume(engine, "terafleet-scratch-gpu0", bind("/lstor/terafleet/scratch/n1-gpu0"),
                         {"org.terafleet.role": "scratch"}, check_mode=False) is True
    assert engine.volumes["terafleet-scratch-gpu0"]["Options"] == {
        "type": "none", "o": "bind", "device": "/lstor/terafleet/scratch/n1-gpu0"}
    assert ensure_volume(engine, "terafleet-scratch-gpu0", bind("/lstor/terafleet/scratch/n1-gpu0/"), {},
                         check_mode=False) is False
    assert engine.created == ["terafleet-scratch-gpu0"]


def test_volume_bound_elsewhere_is_refused_with_both_paths():
    engine = Volumes()
    ensure_volume(engine, "terafleet-scratch-gpu0", bind("/old/lstor/n1-gpu0"), {}, check_mode=False)
    with pytest.raises(ScratchError, match=r"exists with device '/old/lstor/n1-gpu0', not "
                                           r"'/lstor/terafleet/scratch/n1-gpu0'; stop the containers"):
        ensure_volume(engine, "terafleet-scratch-gpu0", bind("/lstor/terafleet/scratch/n1-gpu0"), {}, check_mode=False)


def test_nfs_volume_is_created_with_its_options_once():
    engine = Volumes()
    assert ensure_volume(engine, "terafleet-scratch-nfs-gpu0", NFS, {}, check_mode=False) is True
    assert engine.volumes["terafleet-scratch-nfs-gpu0"]["Options"] == NFS
    assert ensure_volume(engine, "terafleet-scratch-nfs-gpu0", dict(NFS), {}, check_mode=False) is False


def test_nfs_volume_on_another_server_is_refused_naming_both():
    engine = Volumes()
    ensure_volume(engine, "terafleet-scratch-nfs-gpu0", NFS, {}, check_mode=False)
    moved = {**NFS, "o": "addr=10.1.0.21,nfsvers=4.2,hard"}
    with pytest.raises(ScratchError, match=r"o 'addr=10.1.0.20,nfsvers=4.2,hard', not 'addr=10.1.0.21"):
        ensure_volume(engine, "terafleet-scratch-nfs-gpu0", moved, {}, check_mode=False)


@pytest.mark.parametrize("options", [{}, {"type": "nfs", "o": "addr=x"}, {"o": "bind", "device": "/x"}])
def test_volume_options_without_type_or_device_are_refused(options):
    with pytest.raises(ScratchError, match="needs the options type and device"):
        ensure_volume(Volumes(), "v", options, {}, check_mode=False)


def test_volume_check_mode_creates_nothing():
    engine = Volumes()
    assert ensure_volume(engine, "terafleet-scratch-gpu0", bind("/lstor/x"), {}, check_mode=True) is True
    assert engine.created == []
