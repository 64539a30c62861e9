"""terafleet-disk-check on real directories: alert thresholds, pruning that spares each server's current job."""

import json
import os
import time
from pathlib import Path

import pytest

from script_loader import load_script

disk_check = load_script("terafleet-disk-check")

DAY = 86400


def make_job(run: Path, number: int, age_days: float, size: int = 1000) -> Path:
    job = run / f"job_{number}"
    (job / "scr").mkdir(parents=True)
    (job / "tc.out").write_bytes(b"x" * size)
    old = time.time() - age_days * DAY
    for path in (job / "tc.out", job / "scr", job):
        os.utime(path, (old, old))
    return job


@pytest.fixture()
def lstor(tmp_path):
    scratch = tmp_path / "terafleet" / "scratch"
    old_run = scratch / "gpu01-gpu0-1" / "server_2026-11-01-10.00.00"
    current = scratch / "gpu01-gpu0-1" / "server_2026-11-20-08.00.00"
    other = scratch / "gpu01-gpu2-3" / "server_2026-11-20-08.00.00"
    jobs = {
        "old_run_1": make_job(old_run, 1, 20), "old_run_2": make_job(old_run, 2, 19),
        "current_1": make_job(current, 1, 6), "current_2": make_job(current, 2, 5, size=5000),
        "other_1": make_job(other, 1, 0.1), "other_2": make_job(other, 2, 10),
    }
    return tmp_path, scratch, jobs


def args(tmp_path, scratch, **overrides):
    values = {"path": str(tmp_path), "scratch_root": str(scratch), "max_percent": 0.0, "min_free_gb": 0.0,
              "prune_age_hours": 72.0, "webhook": None, "dry_run": False}
    values.update(overrides)
    return type("Args", (), values)


def test_no_alert_below_thresholds_prunes_nothing(lstor):
    tmp_path, scratch, jobs = lstor
    report = disk_check.run(args(tmp_path, scratch, max_percent=100.0))
    assert report["alert"] is False and report["pruned"] == []
    assert all(job.exists() for job in jobs.values())


def test_alert_prunes_old_jobs_but_never_a_servers_current_job(lstor):
    tmp_path, scratch, jobs = lstor
    report = disk_check.run(args(tmp_path, scratch))
    assert report["alert"] is True
    assert sorted(report["pruned"]) == sorted(str(jobs[k]) for k in ("old_run_1", "old_run_2", "current_1"))
    assert report["freed_bytes"] == 3000
    assert jobs["current_2"].exists(), "the newest job of the newest run is the one that may be running"
    assert jobs["other_1"].exists() and jobs["other_2"].exists()
    assert not jobs["old_run_1"].parent.exists(), "an old run left empty is removed"


def test_min_free_gb_alone_triggers(lstor):
    tmp_path, scratch, _ = lstor
    report = disk_check.run(args(tmp_path, scratch, max_percent=100.0, min_free_gb=1e9))
    assert report["alert"] is True and report["pruned"]


def test_dry_run_removes_nothing(lstor):
    tmp_path, scratch, jobs = lstor
    report = disk_check.run(args(tmp_path, scratch, dry_run=True))
    assert len(report["pruned"]) == 3
    assert all(job.exists() for job in jobs.values())


def test_cli_exit_codes_and_json(lstor, capsys):
    tmp_path, scratch, _ = lstor
    assert disk_check.main(["--path", str(tmp_path), "--scratch-root", str(scratch), "--max-percent", "100",
                            "--min-free-gb", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["alert"] is False
    assert disk_check.main(["--path", str(tmp_path / "missing"), "--scratch-root", str(scratch)]) == 2


def test_old_uploads_are_pruned_and_new_ones_kept(lstor):
    tmp_path, scratch, _ = lstor
    uploads = scratch / "gpu01-gpu0-1" / "uploads"
    (uploads / "old" / "deep").mkdir(parents=True)
    (uploads / "old" / "deep" / "guess.dat").write_bytes(b"x" * 700)
    (uploads / "new.xyz").write_bytes(b"y" * 300)
    (uploads / "dangling").symlink_to(tmp_path / "nowhere")
    old = time.time() - 10 * DAY
    for path in (uploads / "old" / "deep" / "guess.dat", uploads / "old" / "deep", uploads / "old"):
        os.utime(path, (old, old))
    os.utime(uploads / "dangling", (old, old), follow_symlinks=False)
    report = disk_check.run(args(tmp_path, scratch))
    assert str(uploads / "old") in report["pruned"] and str(uploads / "dangling") in report["pruned"]
    assert str(uploads / "new.xyz") not in report["pruned"]
    assert not (uploads / "old").exists() and not (uploads / "dangling").is_symlink()
    assert (uploads / "new.xyz").exists() and uploads.is_dir()
    assert report["freed_bytes"] >= 700 + 3000
