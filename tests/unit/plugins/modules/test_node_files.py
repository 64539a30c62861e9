"""node_files: a role's directories and files on a real file system, checked as a whole before any change."""

import grp
import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from ansible_collections.terafleet.cluster.plugins.modules.node_files import FilesError, apply, validate

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def entry(path, state="file", content=None, mode="0644"):
    return {"path": str(path), "state": state, "content": content, "mode": mode, "owner": ME, "group": MY_GROUP}


def run(entries, check_mode=False, diff=False):
    validate(entries)
    changed, diffs = [], []
    apply(entries, check_mode, diff, changed, diffs)
    return changed, diffs


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_directories_and_files_are_made_then_left_alone(tmp_path):
    etc = tmp_path / "etc" / "terafleet"
    entries = [entry(etc, "directory", mode="0700"),
               entry(etc / "redis.conf", content="port 6379\n", mode="0640")]
    changed, _ = run(entries)
    assert changed == [str(etc), str(etc / "redis.conf")]
    assert (etc / "redis.conf").read_text() == "port 6379\n"
    assert mode_of(etc) == 0o700 and mode_of(etc / "redis.conf") == 0o640
    assert run(entries) == ([], [])


def test_changed_content_is_replaced_whole_and_diffed(tmp_path):
    path = tmp_path / "nginx.conf"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    inode = os.stat(path).st_ino
    changed, diffs = run([entry(path, content="new\n")], diff=True)
    assert changed == [str(path)] and path.read_text() == "new\n"
    assert os.stat(path).st_ino != inode, "written to a temporary file and renamed over the old one"
    assert diffs == [{"before_header": str(path), "after_header": str(path), "before": "old\n", "after": "new\n"}]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nginx.conf.")], "no temporary file left"


def test_only_a_wrong_mode_is_corrected_in_place(tmp_path):
    path = tmp_path / "terafleet-watchdog"
    path.write_text("#!/usr/bin/python3\n")
    os.chmod(path, 0o600)
    inode = os.stat(path).st_ino
    changed, diffs = run([entry(path, content="#!/usr/bin/python3\n", mode="0755")], diff=True)
    assert changed == [str(path)] and diffs == []
    assert mode_of(path) == 0o755 and os.stat(path).st_ino == inode


def test_absent_removes_files_and_trees_and_is_quiet_when_gone(tmp_path):
    cron = tmp_path / "terafleet-checks-disk"
    cron.write_text("* * * * * root true\n")
    tree = tmp_path / "old"
    (tree / "inner").mkdir(parents=True)
    assert run([entry(cron, "absent", mode=None), entry(tree, "absent", mode=None)])[0] == [str(cron), str(tree)]
    assert not cron.exists() and not tree.exists()
    assert run([entry(cron, "absent", mode=None)]) == ([], [])


def test_check_mode_reports_and_changes_nothing(tmp_path):
    existing = tmp_path / "a.conf"
    existing.write_text("old\n")
    entries = [entry(tmp_path / "new", "directory", mode="0755"), entry(existing, content="new\n"),
               entry(tmp_path / "gone", "absent", mode=None)]
    (tmp_path / "gone").write_text("x")
    changed, _ = run(entries, check_mode=True)
    assert changed == [str(tmp_path / "new"), str(existing), str(tmp_path / "gone")]
    assert not (tmp_path / "new").exists() and existing.read_text() == "old\n" and (tmp_path / "gone").exists()


@pytest.mark.parametrize("entries, message", [
    ([entry("/tmp/x.conf", content=None)], "state=file needs content"),
    ([entry("/tmp/x.conf", content="a", mode=None)], "a mode is required"),
    ([entry("/tmp/x.conf", content="a", mode="rw-r--r--")], "is not an octal mode"),
    ([entry("relative.conf", content="a")], "not an absolute path"),
    ([entry("/tmp/d", "directory", content="a", mode="0755")], "content given for a directory"),
    ([entry("/tmp/x", "absent", content="a", mode=None)], "content given for a path that must be absent"),
    ([entry("/tmp/x.conf", content="a"), entry("/tmp/x.conf", content="b")], "/tmp/x.conf is listed twice"),
    ([dict(entry("/tmp/x.conf", content="a"), owner="no-such-user-tf")], "no user 'no-such-user-tf'"),
])
def test_bad_input_is_refused_before_any_path_changes(entries, message):
    with pytest.raises(FilesError, match=message):
        validate(entries)


def test_a_bad_last_entry_leaves_the_first_untouched(tmp_path):
    first = tmp_path / "first.conf"
    with pytest.raises(FilesError, match="needs content"):
        run([entry(first, content="a\n"), entry(tmp_path / "second.conf", content=None)])
    assert not first.exists()


def test_file_where_a_directory_is_refused_and_earlier_changes_reported(tmp_path):
    (tmp_path / "conf").mkdir()
    changed, diffs = [], []
    entries = [entry(tmp_path / "ok.conf", content="a\n"), entry(tmp_path / "conf", content="b\n")]
    validate(entries)
    with pytest.raises(FilesError, match="exists and is not a regular file"):
        apply(entries, False, False, changed, diffs)
    assert changed == [str(tmp_path / "ok.conf")]


def test_file_in_a_missing_directory_names_the_directory(tmp_path):
    with pytest.raises(FilesError, match="its directory .* does not exist"):
        run([entry(tmp_path / "missing" / "x.conf", content="a\n")])


def merge_entry(path, keys, backup=False):
    return dict(entry(path, content=None), json_merge=keys, backup=backup)


def test_json_merge_keeps_other_keys_and_writes_like_to_nice_json(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}, "debug": true}')
    changed, _ = run([merge_entry(path, {"live-restore": True, "runtimes": {"runc": {"path": "runc"}}})])
    assert changed == [str(path)]
    assert json.loads(path.read_text()) == {"debug": True, "live-restore": True, "runtimes": {
        "nvidia": {"path": "nvidia-container-runtime", "args": []}, "runc": {"path": "runc"}}}
    assert path.read_text() == json.dumps(json.loads(path.read_text()), indent=4, sort_keys=True,
                                          separators=(",", ": ")) + "\n"


def test_json_merge_that_changes_nothing_keeps_the_files_own_formatting(tmp_path):
    path = tmp_path / "daemon.json"
    original = '{"live-restore":true,\n  "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}'
    path.write_text(original)
    os.chmod(path, 0o644)
    assert run([merge_entry(path, {"live-restore": True})]) == ([], [])
    assert path.read_text() == original


def test_json_merge_starts_a_missing_file_empty(tmp_path):
    path = tmp_path / "daemon.json"
    assert run([merge_entry(path, {"live-restore": True})])[0] == [str(path)]
    assert json.loads(path.read_text()) == {"live-restore": True}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_json_merge_refuses_a_file_that_is_not_a_json_object_and_leaves_it(tmp_path, text):
    path = tmp_path / "daemon.json"
    path.write_text(text)
    with pytest.raises(FilesError, match="is not a JSON object; fix or remove it by hand"):
        run([merge_entry(path, {"live-restore": True})])
    assert path.read_text() == text


def test_backup_keeps_the_old_file_when_it_is_rewritten_only(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"debug": true}\n')
    os.chmod(path, 0o644)
    changed, diffs, backups = [], [], []
    apply([merge_entry(path, {"debug": True}, backup=True)], False, False, changed, diffs, backups)
    assert backups == [] and changed == []
    apply([merge_entry(path, {"debug": False}, backup=True)], False, False, changed, diffs, backups)
    assert len(backups) == 1 and backups[0].startswith(str(path) + ".") and backups[0].endswith("~")
    assert json.loads(Path(backups[0]).read_text()) == {"debug": True}
    assert json.loads(path.read_text()) == {"debug": False}


def test_content_and_json_merge_together_are_refused():
    with pytest.raises(FilesError, match="needs content or json_merge, one of them"):
        validate([dict(entry("/tmp/x.json", content="{}"), json_merge={"a": 1})])


def test_an_unquoted_mode_is_refused_with_the_reason():
    with pytest.raises(FilesError, match="must be a quoted octal string"):
        validate([entry("/tmp/x.conf", content="a", mode=420)])


def test_an_absent_entry_with_a_relative_path_is_refused_before_any_change():
    with pytest.raises(FilesError, match="not an absolute path"):
        validate([entry("/tmp/x.conf", content="a"), entry("old.conf", "absent", mode=None)])


def test_a_secret_file_is_written_but_never_diffed(tmp_path):
    path = tmp_path / "license.key"
    changed, diffs = run([dict(entry(path, content="SECRET\n", mode="0400"), secret=True)], diff=True)
    assert changed == [str(path)] and diffs == [] and path.read_text() == "SECRET\n"
