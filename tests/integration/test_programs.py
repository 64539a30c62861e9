"""The ecosystem's data through the farm: ProgramInput in, ProgramOutput out, for TeraChem (the PySCF-backed
stand-in), PySCF and xTB on the CPU worker, and the farm's Hessians, frequencies and optimisations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from qcdata import ProgramInput, ProgramOutput

from terafleet_worker import client
from terafleet_worker.reference import WATER_BOHR, WATER_HF_STO3G_ENERGY, WATER_SYMBOLS

from minicluster import CPU_WORKER_NAME, started_on


def water(calctype: str = "energy", method: str = "hf", basis: str | None = "sto-3g", **extra) -> ProgramInput:
    return ProgramInput(structure={"symbols": list(WATER_SYMBOLS), "geometry": [list(row) for row in WATER_BOHR]},
                        calctype=calctype, model={"method": method, "basis": basis}, **extra)


def farm(output: ProgramOutput) -> dict:
    return output.provenance.extras["terafleet"]


def test_pyscf_on_the_cpu_worker_gives_the_published_energy(cluster):
    output = client.compute("pyscf", water(), timeout=120)
    assert output.success, output.extras
    assert output.data.energy == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6)
    assert farm(output)["worker"] == CPU_WORKER_NAME and farm(output)["retries"] == 0
    assert output.provenance.program == "pyscf" and output.provenance.program_version == "2.14.0"
    assert "converged SCF energy" in output.logs


def test_terachem_through_its_server_equals_pyscf_on_cpu(cluster):
    through_server = client.compute("terachem", water("gradient"), queue="chemistry", timeout=120)
    on_cpu = client.compute("pyscf", water("gradient"), timeout=120)
    assert through_server.success and on_cpu.success
    assert farm(through_server)["server"] == "standin-chem:11111" and farm(through_server)["job_dir"]
    assert through_server.provenance.scratch_dir is not None
    assert through_server.data.energy == pytest.approx(on_cpu.data.energy, abs=1e-6)
    assert np.allclose(through_server.data.gradient, on_cpu.data.gradient, atol=1e-6)
    assert through_server.data.energy == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6)


def test_xtb_through_the_farm_is_tblite_itself(cluster):
    from tblite.interface import Calculator

    output = client.compute("xtb", water("gradient", method="GFN2-xTB", basis=None), timeout=120)
    assert output.success, output.extras
    direct = Calculator("GFN2-xTB", np.array([8, 1, 1]), np.array(WATER_BOHR))
    direct.set("verbosity", 0)
    result = direct.singlepoint()
    assert output.data.energy == pytest.approx(float(result.get("energy")), abs=1e-8)
    assert np.allclose(output.data.gradient, result.get("gradient"), atol=1e-8)
    assert farm(output)["worker"] == CPU_WORKER_NAME and output.provenance.program_version == "0.8.0"
    # The xtb program's own reference value, at the geometry of its documentation.
    from terafleet_worker.reference import XTB_WATER_BOHR, XTB_WATER_GFN2_ENERGY

    published = client.compute("xtb", ProgramInput(
        structure={"symbols": list(WATER_SYMBOLS), "geometry": [list(row) for row in XTB_WATER_BOHR]},
        calctype="energy", model={"method": "gfn2-xtb"}), timeout=120)
    assert published.data.energy == pytest.approx(XTB_WATER_GFN2_ENERGY, abs=1e-6)


def test_farm_hessian_over_two_servers_gives_pyscfs_analytic_frequencies(cluster):
    fanned = client.frequencies("terachem", water(), queue="chem-farm", timeout=300)
    analytic = client.frequencies("pyscf", water(), timeout=300)
    assert fanned.success, fanned.extras
    assert analytic.success, analytic.extras
    details = farm(fanned)
    assert details["gradients"] == 19 and details["method"] == "finite differences of gradients"
    assert details["servers"] == ["standin-chem2:11111", "standin-chem:11111"], "both servers take gradients"
    assert fanned.input_data.calctype.value == "hessian"
    assert np.asarray(fanned.data.hessian).shape == (9, 9)
    assert np.allclose(fanned.data.hessian, analytic.data.hessian, atol=2e-4)
    assert len(fanned.data.freqs_wavenumber) == 3
    assert np.abs(np.array(fanned.data.freqs_wavenumber) - np.array(analytic.data.freqs_wavenumber)).max() < 1.0
    # HF/STO-3G water: bend near 2170 cm-1, stretches near 4140 and 4390 cm-1 (at its own minimum; this
    # geometry is not one, so only the order and the rough size are checked).
    assert 1500 < fanned.data.freqs_wavenumber[0] < fanned.data.freqs_wavenumber[1] < fanned.data.freqs_wavenumber[2]


def test_a_cpu_calculation_does_not_wait_for_busy_gpu_workers(cluster, pairs):
    from terafleet_worker.tasks import compute

    for pair in pairs.values():
        pair.control(job_seconds=15)
    busy = [compute.apply_async(args=["terachem", client.changed(water()).model_dump(mode="json")], queue=queue)
            for queue in ("terachem", "terachem", "chemistry", "chem-farm")]
    assert {started_on(result) for result in busy} == {pair.worker_name for pair in pairs.values()}
    started = time.monotonic()
    output = client.compute("xtb", water(method="gfn2-xtb", basis=None), timeout=60)
    took = time.monotonic() - started
    assert output.success and farm(output)["worker"] == CPU_WORKER_NAME
    assert took < 10, f"the CPU calculation took {took:.1f} s"
    assert all(result.state == "STARTED" for result in busy), "every GPU worker was still busy"
    for pair in pairs.values():
        pair.control()
    assert all(ProgramOutput.model_validate(result.get(timeout=60)).success for result in busy)


def sent_raw(program, value, queue):
    """Through Celery alone, as a client in another language would: no check before sending."""
    from terafleet_worker.app import app

    return app.send_task("terafleet.compute", args=[program, value], queue=queue)


@pytest.mark.parametrize("program, value, queue, message", [
    ("orca", water().model_dump(mode="json"), "cpu", "bad input: unknown program 'orca'"),
    ("xtb", water("hessian", method="gfn2-xtb", basis=None).model_dump(mode="json"), "cpu",
     "bad input: xtb cannot compute calctype 'hessian'"),
    ("terachem", water("hessian").model_dump(mode="json"), "terachem",
     "bad input: terachem cannot compute calctype 'hessian'"),
    ("pyscf", water().model_dump(mode="json"), "terachem", "bad input: program pyscf does not run on this worker "
     "(it runs terachem)"),
    ("terachem", water().model_dump(mode="json"), "cpu", "bad input: program terachem does not run on this worker"),
    ("pyscf", water(keywords={"scf_type": "df"}).model_dump(mode="json"), "cpu",
     "bad input: pyscf takes the keywords"),
    ("terachem", water(keywords={"gpus": "0 1"}).model_dump(mode="json"), "terachem",
     "bad input: keyword 'gpus' is set by the farm"),
])
def test_refused_inputs_return_a_failed_output_at_once(cluster, program, value, queue, message):
    started = time.monotonic()
    output = ProgramOutput.model_validate(sent_raw(program, value, queue).get(timeout=60))
    assert time.monotonic() - started < 10
    assert not output.success and output.extras["error"].startswith(message), output.extras["error"]
    assert output.traceback and farm(output)["retries"] == 0


def test_a_malformed_program_input_fails_the_task_at_once(cluster):
    result = sent_raw("pyscf", {"structure": {"symbols": ["O"]}, "model": {"method": "hf"}}, "cpu")
    with pytest.raises(Exception, match="bad input: not a valid ProgramInput") as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "CalculationError"
    assert result.state == "FAILURE" and (result.info is not None)


def test_a_program_that_fails_returns_its_error_and_traceback(cluster):
    output = client.compute("pyscf", water(basis="no-such-basis"), timeout=60)
    assert not output.success
    assert output.extras["error"].startswith("ProgramError: PySCF cannot build the molecule in basis 'no-such-basis'")
    assert "Traceback" in output.traceback and "programs.py" in output.traceback
    # TeraChem's own failure (the stand-in writes the error to tc.out and dies) is the same kind of answer.
    failed = client.compute("terachem", water(basis="no-such-basis"), queue="chemistry", timeout=120)
    assert not failed.success and failed.extras["error"].startswith("CalculationError: TeraChem on standin-chem")
    # The stand-in died as TeraChem does; the next calculation waits for Docker's restart and succeeds.
    assert client.compute("terachem", water(), queue="chemistry", timeout=120).success


def test_the_client_refuses_before_sending(cluster):
    with pytest.raises(ValueError, match="unknown program 'gaussian'"):
        client.compute("gaussian", water())
    with pytest.raises(ValueError, match="xtb cannot compute calctype 'hessian'"):
        client.compute("xtb", water("hessian", method="gfn2-xtb", basis=None))


def test_geometry_optimisation_takes_each_gradient_through_the_farm(cluster):
    output = client.optimize("xtb", water(method="gfn2-xtb", basis=None), timeout=120)
    assert output.success, output.extras
    trajectory = output.data.trajectory
    assert len(trajectory) >= 3 and all(step.success for step in trajectory)
    assert all(farm(step)["worker"] == CPU_WORKER_NAME for step in trajectory)
    energies = [step.data.energy for step in trajectory]
    assert energies[-1] < energies[0]
    assert np.abs(np.asarray(trajectory[-1].data.gradient)).max() < 4.5e-4  # geomeTRIC's GAU criterion
    assert output.input_data.subprogram == "xtb" and output.input_data.calctype.value == "optimization"


def test_terafleet_submit_with_a_program(cluster, tmp_path):
    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nwater\n" + "".join(f"{s} {' '.join(f'{c * 0.52917721092:.12f}' for c in row)}\n"
                                          for s, row in zip(WATER_SYMBOLS, WATER_BOHR, strict=True)))
    document = tmp_path / "doc.json"
    document.write_text(json.dumps({"structure": {"symbols": list(WATER_SYMBOLS),
                                                  "geometry": [list(r) for r in WATER_BOHR], "units": "bohr"},
                                    "method": "hf", "basis": "sto-3g"}))
    program_input = tmp_path / "input.json"
    program_input.write_text(water("gradient").model_dump_json())
    submit = Path(sys.executable).with_name("terafleet-submit")
    result = subprocess.run([str(submit), "--program", "pyscf", str(xyz), str(document), str(program_input)],
                            env=dict(os.environ), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    outputs = [ProgramOutput.model_validate_json(line) for line in result.stdout.splitlines()]
    assert [o.input_data.calctype.value for o in outputs] == ["energy", "energy", "gradient"]
    assert all(o.success and o.data.energy == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6) for o in outputs)
    assert "3 succeeded, 0 failed" in result.stderr
    refused = subprocess.run([str(submit), "--program", "orca", str(xyz)], env=dict(os.environ),
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "unknown program 'orca'" in refused.stderr
