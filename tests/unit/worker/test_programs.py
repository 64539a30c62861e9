"""The programs a worker runs in its own process (PySCF, tblite), what each accepts, and the farm's data
model around them: ProgramInput parsing, ProgramOutputs, routing by program, finite-difference Hessians."""

import json

import numpy as np
import pytest
from qcdata import ProgramOutput

from terafleet_worker import client, programs, qc, routing
from terafleet_worker import settings as settings_module
from terafleet_worker.chemistry import Limits
from terafleet_worker.programs import InputRefused, ProgramError
from terafleet_worker.reference import WATER_BOHR, WATER_HF_STO3G_ENERGY, WATER_SYMBOLS

WATER = {"structure": {"symbols": list(WATER_SYMBOLS), "geometry": [list(row) for row in WATER_BOHR]},
         "calctype": "energy", "model": {"method": "hf", "basis": "sto-3g"}}


def water(**changes):
    data = json.loads(json.dumps(WATER))
    data.update(changes)
    return qc.parse_input(data, Limits())


def test_pyscf_water_hf_sto3g_is_the_published_energy():
    data, log = programs.run_local("pyscf", water())
    assert data["energy"] == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6)
    assert data["calcinfo_natoms"] == 3 and data["calcinfo_nalpha"] == 5
    assert "converged SCF energy" in log


def test_pyscf_gradient_matches_central_differences_of_its_energies():
    step = 1e-4
    gradient = np.array(programs.run_local("pyscf", water(calctype="gradient"))[0]["gradient"])
    moved = np.array(WATER_BOHR)
    moved[1, 0] += step
    plus = programs.run_local("pyscf", client.changed(water(), geometry=moved))[0]["energy"]
    moved[1, 0] -= 2 * step
    minus = programs.run_local("pyscf", client.changed(water(), geometry=moved))[0]["energy"]
    assert gradient[1, 0] == pytest.approx((plus - minus) / (2 * step), abs=1e-6)


def test_finite_difference_hessian_gives_pyscfs_analytic_frequencies():
    from geometric.normal_modes import frequency_analysis

    center = water(calctype="gradient")
    inputs = client.displaced(center, client.DISPLACEMENT)
    assert len(inputs) == 19 and inputs[0] is center
    assert np.asarray(inputs[1].structure.geometry)[0, 0] == pytest.approx(client.DISPLACEMENT)
    assert np.asarray(inputs[2].structure.geometry)[0, 0] == pytest.approx(-client.DISPLACEMENT)
    gradients = [programs.run_local("pyscf", item)[0]["gradient"] for item in inputs]
    numeric = client.assemble(gradients, client.DISPLACEMENT)
    analytic = np.array(programs.run_local("pyscf", water(calctype="hessian"))[0]["hessian"])
    assert np.allclose(numeric, numeric.T)
    with client._quiet_geometric():
        coords = np.array(WATER_BOHR).ravel()
        numeric_freqs = frequency_analysis(coords, numeric, elem=list(WATER_SYMBOLS))[0]
        analytic_freqs = frequency_analysis(coords, analytic, elem=list(WATER_SYMBOLS))[0]
    assert len(analytic_freqs) == 3 and 2000 < analytic_freqs[0] < 2300
    assert np.abs(numeric_freqs - analytic_freqs).max() < 1.0
    with pytest.raises(ValueError, match="18 gradients for 9 coordinates"):
        client.assemble(gradients[:-1], client.DISPLACEMENT)


def test_xtb_is_tblite_itself():
    from tblite.interface import Calculator

    data, _ = programs.run_local("xtb", water(calctype="gradient", model={"method": "GFN2-xTB"}))
    direct = Calculator("GFN2-xTB", np.array([8, 1, 1]), np.array(WATER_BOHR))
    direct.set("verbosity", 0)
    result = direct.singlepoint()
    assert data["energy"] == pytest.approx(float(result.get("energy")), abs=1e-8)
    assert np.allclose(data["gradient"], result.get("gradient"), atol=1e-8)
    from terafleet_worker.reference import XTB_WATER_BOHR, XTB_WATER_GFN2_ENERGY

    published, _ = programs.run_local("xtb", client.changed(water(model={"method": "gfn2-xtb"}),
                                                            geometry=XTB_WATER_BOHR))
    assert published["energy"] == pytest.approx(XTB_WATER_GFN2_ENERGY, abs=1e-6)
    gfn1, _ = programs.run_local("xtb", water(model={"method": "gfn1-xtb"}))
    assert gfn1["energy"] != pytest.approx(data["energy"], abs=1e-3)


def test_program_failures_are_program_errors():
    with pytest.raises(ProgramError, match="cannot build the molecule in basis 'no-such-basis'"):
        programs.run_local("pyscf", water(model={"method": "hf", "basis": "no-such-basis"}))
    with pytest.raises(ProgramError, match="did not converge in 1 cycles"):
        programs.run_local("pyscf", water(keywords={"max_cycle": 1}))
    with pytest.raises(ProgramError, match="knows no method or functional 'nonsense'"):
        programs.run_local("pyscf", water(model={"method": "nonsense", "basis": "sto-3g"}))


@pytest.mark.parametrize("program, calctype, method, keywords, available, message", [
    ("orca", "energy", "hf", {}, ("pyscf",), "unknown program 'orca'; the farm runs pyscf, terachem, xtb"),
    (None, "energy", "hf", {}, ("pyscf",), "unknown program None"),
    ("xtb", "hessian", "gfn2-xtb", {}, ("xtb",), "xtb cannot compute calctype 'hessian'; it computes energy, "
     "gradient (a Hessian by finite differences"),
    ("terachem", "hessian", "hf", {}, ("terachem",), "terachem cannot compute calctype 'hessian'"),
    ("terachem", "optimization", "hf", {}, ("terachem",), "cannot compute calctype 'optimization'"),
    ("pyscf", "energy", "hf", {}, ("terachem",), "program pyscf does not run on this worker (it runs terachem); "
     "send it to the queue of a worker that does (by default 'cpu')"),
    ("terachem", "energy", "hf", {}, ("pyscf", "xtb"), "program terachem does not run on this worker"),
    ("xtb", "energy", "hf", {}, ("xtb",), "xtb runs GFN1-xTB, GFN2-xTB, IPEA1-xTB, not 'hf'"),
    ("xtb", "energy", "gfn2-xtb", {"solvent": "water"}, ("xtb",), "xtb takes the keywords accuracy, "
     "electronic_temperature, max_iter, not 'solvent'"),
    ("pyscf", "energy", "hf", {"max_cycle": "many"}, ("pyscf",), "keyword 'max_cycle' must be a int"),
    ("pyscf", "energy", "hf", {"conv_tol": True}, ("pyscf",), "keyword 'conv_tol' must be a float"),
    ("pyscf", "energy", "hf", {"conv_tol": float("nan")}, ("pyscf",), "keyword 'conv_tol' must be finite"),
])
def test_check_refuses_what_a_program_cannot_do(program, calctype, method, keywords, available, message):
    with pytest.raises(InputRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        programs.check(program, calctype, method, keywords, available)


def test_check_accepts_each_programs_own_work():
    assert programs.check("pyscf", "hessian", "b3lyp", {"conv_tol": 1e-9, "max_cycle": 80}, ("pyscf",)).where \
        == "local"
    assert programs.check("terachem", "gradient", "hf", {}, ("terachem",)).queue == "terachem"
    assert programs.check("xtb", "gradient", "GFN1-xTB", {"accuracy": 1}, ("xtb", "pyscf")).queue == "cpu"


@pytest.mark.parametrize("value, message", [
    ([1, 2], "a ProgramInput is a JSON object or its text, got list"),
    ({"structure": WATER["structure"], "model": {"method": "hf"}},
     "not a valid ProgramInput: calctype: Field required"),
    ({**WATER, "calctype": "dance"}, "not a valid ProgramInput: calctype: Input should be"),
    ({**WATER, "structure": {"symbols": ["O"], "geometry": [[0, 0, float("nan")]]}},
     "a ProgramInput must be plain JSON: Out of range float values"),
    ('{"structure": ', "not a valid ProgramInput: input: Invalid JSON"),
    ('{"structure": {"symbols": ["O"], "geometry": [[0, 0, NaN]]}, "calctype": "energy", '
     '"model": {"method": "hf"}}', "finite numbers only"),
    ({**WATER, "files": {"guess": "AAAA"}}, "input files (ProgramInput.files) are not taken by the farm"),
])
def test_malformed_program_inputs_are_refused(value, message):
    with pytest.raises(InputRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        qc.parse_input(value, Limits())


def test_input_limits():
    with pytest.raises(InputRefused, match="3 atoms, above the limit of 2"):
        qc.parse_input(WATER, Limits(max_atoms=2))
    with pytest.raises(InputRefused, match="bytes, above the limit of 100"):
        qc.parse_input(json.dumps(WATER), Limits(max_bytes=100))


def test_outputs_are_programoutput_json_both_ways():
    parsed = water(calctype="gradient")
    data, log = programs.run_local("pyscf", parsed)
    good = qc.success(parsed, "pyscf", data, log, {"node": "n1", "gpu_set": "cpu", "wall_time": 0.5, "job_dir": ""})
    back = ProgramOutput.model_validate(json.loads(json.dumps(good)))
    assert back.success and back.data.energy == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6)
    assert np.asarray(back.data.gradient).shape == (3, 3)
    assert back.provenance.program == "pyscf" and back.provenance.program_version == "2.14.0"
    assert back.provenance.hostname == "n1" and back.provenance.extras["terafleet"]["gpu_set"] == "cpu"
    bad = qc.failure(parsed, "pyscf", "ProgramError: it broke", "Traceback ...", {"node": "n1"})
    back = ProgramOutput.model_validate(json.loads(json.dumps(bad)))
    assert not back.success and back.extras["error"] == "ProgramError: it broke"
    assert back.traceback == "Traceback ..." and back.input_data.calctype.value == "gradient"


def test_routing_sends_each_program_to_its_queue(monkeypatch):
    monkeypatch.delenv("TERAFLEET_PROGRAM_QUEUES", raising=False)
    assert routing.route("terafleet.compute", ["pyscf", {}], {}, {}) == {"queue": "cpu"}
    assert routing.route("terafleet.compute", ["xtb", {}], {}, {}) == {"queue": "cpu"}
    assert routing.route("terafleet.compute", ["terachem", {}], {}, {}) == {"queue": "terachem"}
    assert routing.route("terafleet.compute", [{"structure": {}}], {}, {}) is None  # a simple document
    assert routing.route("terafleet.compute", ["orca", {}], {}, {}) is None
    assert routing.route("terafleet.ping", [], {}, {}) is None
    monkeypatch.setenv("TERAFLEET_PROGRAM_QUEUES", "pyscf=big-cpu, xtb = small")
    assert routing.route("terafleet.compute", [], {"program": "pyscf"}, {}) == {"queue": "big-cpu"}
    assert routing.queues()["xtb"] == "small"
    monkeypatch.setenv("TERAFLEET_PROGRAM_QUEUES", "orca=cpu")
    with pytest.raises(ValueError, match="'orca=cpu' is not program=queue"):
        routing.queues()


def test_the_celery_app_routes_by_program(monkeypatch):
    from terafleet_worker.app import app

    monkeypatch.delenv("TERAFLEET_PROGRAM_QUEUES", raising=False)
    router = app.amqp.router
    assert router.route({}, "terafleet.compute", ["xtb", {}], {})["queue"].name == "cpu"
    # A queue the sender names stands.
    assert router.route({"queue": "special"}, "terafleet.compute", ["xtb", {}], {})["queue"].name == "special"


def test_cpu_workers_settings(monkeypatch):
    monkeypatch.setenv("TERAFLEET_PROGRAMS", "pyscf, xtb")
    monkeypatch.setenv("TERAFLEET_NODE", "cpu01")
    monkeypatch.setenv("TERAFLEET_GPU_SET", "programs")
    settings = settings_module.load()
    assert settings.programs == ("pyscf", "xtb") and not settings.drives_server
    assert settings.worker_name == "cpu@cpu01-programs"
    monkeypatch.setenv("TERAFLEET_PROGRAMS", "pyscf,orca")
    with pytest.raises(SystemExit, match="TERAFLEET_PROGRAMS must name programs among pyscf, terachem, xtb"):
        settings_module.load()


def test_client_refuses_before_sending():
    with pytest.raises(InputRefused, match="unknown program 'orca'"):
        client.check("orca", WATER)
    with pytest.raises(InputRefused, match="xtb cannot compute calctype 'hessian'"):
        client.check("xtb", {**WATER, "model": {"method": "gfn2-xtb"}}, "hessian")
    with pytest.raises(InputRefused, match="not a valid ProgramInput"):
        client.check("pyscf", {"structure": WATER["structure"]})
    assert client.check("terachem", WATER, "gradient").calctype.value == "gradient"


def test_the_worker_starts_and_checks_its_health_without_the_heavy_imports():
    import subprocess
    import sys

    code = ("import sys, terafleet_worker.app, terafleet_worker.tasks, terafleet_worker.healthcheck, "
            "terafleet_worker.entrypoint; print(sorted(m for m in ('pyscf', 'tblite', 'geometric', 'qcdata', "
            "'pydantic', 'numpy', 'scipy', 'tcpb') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
