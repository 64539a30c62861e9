"""The stand-in's fake backend (deterministic, unit-sensitive) and its fault switches."""

import json
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "standin"))
from terachem_standin.backends import CalculationError, Job, fake  # noqa: E402
from terachem_standin.server import Faults  # noqa: E402

H2 = Job(["H", "H"], [0, 0, 0, 0, 0, 1.4], 0, 1, True, "HF", "sto-3g", True)


def test_fake_is_deterministic_and_depends_on_distance():
    assert fake(H2).energy == fake(H2).energy
    stretched = Job(["H", "H"], [0, 0, 0, 0, 0, 2.0], 0, 1, True, "HF", "sto-3g", True)
    assert fake(stretched).energy != pytest.approx(fake(H2).energy)


def test_fake_gradient_matches_finite_difference():
    step = 1e-5
    plus = Job(["H", "H"], [0, 0, 0, 0, 0, 1.4 + step], 0, 1, True, "HF", "sto-3g", False)
    minus = Job(["H", "H"], [0, 0, 0, 0, 0, 1.4 - step], 0, 1, True, "HF", "sto-3g", False)
    numeric = (fake(plus).energy - fake(minus).energy) / (2 * step)
    assert fake(H2).gradient[5] == pytest.approx(numeric, abs=1e-7)
    assert sum(fake(H2).gradient) == pytest.approx(0.0, abs=1e-12)


def test_fake_restricted_occupations_are_two():
    result = fake(Job(["O", "H", "H"], [0, 0, 0, 1.8, 0, 0, 0, 1.8, 0], 0, 1, True, "HF", "sto-3g", False))
    assert sum(result.orba_occupations) == 10.0
    assert set(result.orba_occupations) == {2.0, 0.0}
    assert len(result.dipoles) == 4


@pytest.mark.parametrize("job, message", [
    (Job(["Xx"], [0, 0, 0], 0, 1, True, "HF", "sto-3g", False), "unknown element Xx"),
    (Job(["H"], [0, 0, 0], 0, 1, True, "HF", "sto-3g", False), "impossible for 1 electrons"),
])
def test_fake_refuses_impossible_molecules(job, message):
    with pytest.raises(CalculationError, match=message):
        fake(job)


def test_control_file_overrides_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_JOB_SECONDS", "2")
    monkeypatch.setenv("STANDIN_CRASH_AFTER_JOBS", "5")
    faults = Faults.from_env()
    control = tmp_path / "standin-control.json"
    assert faults.updated(control) == faults
    control.write_text(json.dumps({"hang": True, "job_seconds": 0.5, "unknown": 1}))
    updated = faults.updated(control)
    assert updated.hang is True and updated.job_seconds == 0.5 and updated.crash_after_jobs == 5
    control.write_text("not json")
    assert faults.updated(control) == faults


def test_server_dies_when_its_scratch_directory_exists(tmp_path):
    from terachem_standin.server import StandinServer

    first = StandinServer(0, tmp_path, "fake", Faults(), tmp_path / "control.json")
    first.make_server_dir()
    second = StandinServer(0, tmp_path, "fake", Faults(), tmp_path / "control.json")
    second.server_dir = first.server_dir  # started in the same second, in the same scratch directory
    with pytest.raises(SystemExit) as exit_info:
        second.make_server_dir()
    assert exit_info.value.code == 1
    assert first.server_dir.name.startswith("server_")
