"""terafleet's Python client: calculations through the broker, qcdata's ProgramInput in, ProgramOutput out.

    from qcdata import ProgramInput
    from terafleet_worker.client import compute, hessian, frequencies, optimize

    output = compute("pyscf", program_input)        # one calculation on its program's workers
    output = hessian("terachem", program_input)     # 6N + 1 gradients over every TeraChem server
    output = frequencies("terachem", program_input) # that Hessian's harmonic analysis (geomeTRIC)
    output = optimize("terachem", program_input)    # geomeTRIC, each step's gradient through the farm

The broker and result backend come from the environment, as for the workers: TERAFLEET_BROKER_URL and
TERAFLEET_RESULT_BACKEND (or their _FILE forms) and TERAFLEET_TLS_CA_FILE. Every function returns a
ProgramOutput; a calculation that failed returns one with success false and the error in
`extras["error"]`. Input the farm would refuse (an unknown program, a calctype the program cannot
compute, a malformed ProgramInput) raises ValueError before anything is sent.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import time
import traceback
from typing import Any

from . import programs, qc
from .chemistry import Limits
from .programs import PROGRAMS, InputRefused

# Central differences: the step of each Cartesian coordinate, in Bohr.
DISPLACEMENT = 5.0e-3
DEFAULT_TIMEOUT = 3600.0


def check(program: str, program_input: Any, calctype: str | None = None):
    """A checked ProgramInput (optionally with another calctype); ValueError for what the farm refuses."""
    value = program_input.model_dump(mode="json") if hasattr(program_input, "model_dump") else program_input
    parsed = qc.parse_input(value, Limits())
    if calctype is not None:
        parsed = changed(parsed, calctype=calctype)
    programs.check(program, parsed.calctype.value, parsed.model.method, dict(parsed.keywords), tuple(PROGRAMS))
    return parsed


def changed(program_input, **fields):
    """A copy of a ProgramInput with fields replaced (geometry: an N x 3 array in Bohr), validated again."""
    from qcdata import ProgramInput

    data = program_input.model_dump(mode="json")
    if "geometry" in fields:
        data["structure"]["geometry"] = [[float(x) for x in row] for row in fields.pop("geometry")]
    data.update(fields)
    return ProgramInput.model_validate(data)


def displaced(center, displacement: float) -> list:
    """The structure itself, then each Cartesian coordinate moved by +displacement and -displacement."""
    import numpy as np

    geometry = np.asarray(center.structure.geometry, dtype=float).ravel()
    inputs = [center]
    for index in range(geometry.size):
        for sign in (1.0, -1.0):
            moved = geometry.copy()
            moved[index] += sign * displacement
            inputs.append(changed(center, geometry=moved.reshape(-1, 3)))
    return inputs


def assemble(gradients: list, displacement: float):
    """The Hessian from the gradients at displaced() structures: central differences, symmetrised."""
    import numpy as np

    flat = [np.asarray(g, dtype=float).ravel() for g in gradients]
    size = flat[0].size
    if len(flat) != 2 * size + 1:
        raise ValueError(f"{len(flat)} gradients for {size} coordinates (needs {2 * size + 1})")
    matrix = np.array([(flat[1 + 2 * i] - flat[2 + 2 * i]) / (2 * displacement) for i in range(size)])
    return (matrix + matrix.T) / 2


def submit(program: str, program_input: Any, *, queue: str | None = None):
    """Send one calculation; return its Celery AsyncResult (its .get() is the ProgramOutput's JSON object)."""
    return _send(program, check(program, program_input), queue)


def _send(program: str, parsed, queue: str | None):
    """Send a ProgramInput check() already passed."""
    from .tasks import compute as task

    return task.apply_async(args=[program, qc.input_dict(parsed)], **({"queue": queue} if queue else {}))


def collect(result, program: str, program_input, timeout: float = DEFAULT_TIMEOUT):
    """The ProgramOutput of a sent calculation; a task that raised becomes a failed one."""
    from qcdata import ProgramOutput

    try:
        return ProgramOutput.model_validate(result.get(timeout=timeout, propagate=True))
    except Exception as error:  # noqa: BLE001 - a task's exception, or a timeout, is this calculation's failure
        return _failed(program, program_input, f"{type(error).__name__}: {error}",
                       getattr(result, "traceback", None) or traceback.format_exc())


def compute(program: str, program_input: Any, *, queue: str | None = None, timeout: float = DEFAULT_TIMEOUT):
    """Run one calculation through the farm and return its ProgramOutput."""
    parsed = check(program, program_input)
    return collect(_send(program, parsed, queue), program, parsed, timeout)


def _failed(program: str, program_input, error: str, details: str | None, extra: dict | None = None):
    from qcdata import ProgramOutput

    return ProgramOutput.model_validate(qc.failure(program_input, program, error, details, extra or {}))


def hessian(program: str, program_input: Any, *, displacement: float = DISPLACEMENT, queue: str | None = None,
            timeout: float = DEFAULT_TIMEOUT, finite_differences: bool | None = None):
    """The Hessian of the input's structure (Hartree/Bohr^2) as a ProgramOutput with calctype hessian.

    A program with an analytic Hessian (pyscf) computes it in one calculation; for the others (terachem,
    xtb), or with finite_differences=True, it is assembled from central differences of 6N gradients plus
    the gradient at the structure itself, sent as one Celery group: every worker on the program's queue
    takes a share of them at once.
    """
    import numpy as np
    from celery import group
    from qcdata import ProgramOutput

    analytic = "hessian" in PROGRAMS[program].calctypes if program in PROGRAMS else False
    if finite_differences is None:
        finite_differences = not analytic
    if not finite_differences:
        return compute(program, check(program, program_input, "hessian"), queue=queue, timeout=timeout)
    if not math.isfinite(displacement) or displacement <= 0:
        raise ValueError(f"displacement must be above 0 Bohr, got {displacement}")
    from .tasks import compute as task

    started = time.monotonic()
    center = check(program, program_input, "gradient")
    result_input = changed(center, calctype="hessian")
    inputs = displaced(center, displacement)
    options = {"queue": queue} if queue else {}
    sent = group(task.s(program, qc.input_dict(item)).set(**options) for item in inputs).apply_async()
    try:
        answers = sent.get(timeout=timeout, propagate=False)
    except Exception as error:  # noqa: BLE001 - a timeout: the whole Hessian failed
        sent.revoke()
        return _failed(program, result_input, f"the Hessian's gradients did not all arrive: "
                       f"{type(error).__name__}: {error}", traceback.format_exc())
    outputs = []
    for number, answer in enumerate(answers):
        where = "the structure itself" if number == 0 else \
            f"coordinate {(number - 1) // 2} displaced by {'+' if number % 2 else '-'}{displacement} Bohr"
        if isinstance(answer, BaseException):
            return _failed(program, result_input, f"the gradient at {where} failed: {type(answer).__name__}: "
                           f"{answer}", None)
        output = ProgramOutput.model_validate(answer)
        if not output.success:
            return _failed(program, result_input, f"the gradient at {where} failed: "
                           f"{output.extras.get('error', 'no error text')}", output.traceback)
        outputs.append(output)
    matrix = assemble([output.data.gradient for output in outputs], displacement)
    servers = sorted({str(output.provenance.extras.get("terafleet", {}).get("server"))
                      for output in outputs})
    details = {"wall_time": round(time.monotonic() - started, 3), "method": "finite differences of gradients",
               "displacement_bohr": displacement, "gradients": len(outputs), "servers": servers,
               "group": sent.id}
    data = {"energy": outputs[0].data.energy, "gradient": np.asarray(outputs[0].data.gradient).tolist(),
            "hessian": matrix.tolist(), "calcinfo_natoms": len(center.structure.symbols)}
    return ProgramOutput.model_validate(qc.success(result_input, program, data, None, details))


def frequencies(program: str, program_input: Any, **options):
    """hessian(), then geomeTRIC's harmonic analysis: freqs_wavenumber (cm^-1, imaginary ones negative),
    normal_modes_cartesian, and the harmonic Gibbs free energy at 300 K and 1 bar."""
    import numpy as np
    from geometric.normal_modes import frequency_analysis
    from qcdata import SinglePointData

    output = hessian(program, program_input, **options)
    if not output.success:
        return output
    structure = output.input_data.structure
    with _quiet_geometric():
        freqs, modes, gibbs = frequency_analysis(np.asarray(structure.geometry, dtype=float).ravel(),
                                                 np.asarray(output.data.hessian, dtype=float),
                                                 elem=list(structure.symbols), energy=output.data.energy)
    data = SinglePointData(**{**output.data.model_dump(), "freqs_wavenumber": [float(f) for f in freqs],
                              "normal_modes_cartesian": np.asarray(modes).reshape(len(freqs), -1, 3),
                              "gibbs_free_energy": float(gibbs)})
    return output.model_copy(update={"data": data})


@contextlib.contextmanager
def _quiet_geometric():
    """geomeTRIC logs to its own logger; keep its text out of the caller's output."""
    logger = logging.getLogger("geometric")
    saved = logger.handlers[:], logger.propagate, logger.level
    buffer = io.StringIO()
    logger.handlers[:] = [logging.StreamHandler(buffer)]
    logger.propagate = False
    try:
        yield buffer
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def optimize(program: str, program_input: Any, *, queue: str | None = None, timeout: float = DEFAULT_TIMEOUT,
             max_steps: int = 100, convergence: str = "GAU"):
    """A geometry optimisation by geomeTRIC (TRIC coordinates), each step's gradient a calculation through
    the farm. Returns a ProgramOutput whose input_data is a DualProgramInput (calctype optimization,
    subprogram the program) and whose data holds the trajectory: each step's gradient ProgramOutput, the
    last at the optimised structure."""
    import geometric.engine
    import geometric.errors
    import geometric.molecule
    import geometric.optimize
    import numpy as np
    from qcdata import DualProgramInput, OptimizationData, ProgramOutput

    center = check(program, program_input, "gradient")
    dual = DualProgramInput(calctype="optimization", structure=center.structure,
                            keywords={"maxiter": max_steps, "convergence_set": convergence},
                            subprogram=program,
                            subprogram_args={"model": center.model, "keywords": center.keywords})
    trajectory: list = []

    class FarmEngine(geometric.engine.Engine):
        def calc_new(self, coords, dirname):
            output = compute(program, changed(center, geometry=np.asarray(coords).reshape(-1, 3)), queue=queue,
                             timeout=timeout)
            trajectory.append(output)
            if not output.success:
                raise geometric.errors.EngineError(output.extras.get("error", "a gradient failed"))
            return {"energy": output.data.energy, "gradient": np.asarray(output.data.gradient).ravel()}

    molecule = geometric.molecule.Molecule()
    molecule.elem = list(center.structure.symbols)
    molecule.xyzs = [np.asarray(center.structure.geometry, dtype=float).reshape(-1, 3) * BOHR_TO_ANGSTROM]
    started = time.monotonic()
    error = None
    with tempfile.TemporaryDirectory(prefix="terafleet-optimize-") as directory, _quiet_geometric() as log:
        try:
            geometric.optimize.run_optimizer(customengine=FarmEngine(molecule), check=1, maxiter=max_steps,
                                             convergence_set=convergence,
                                             input=os.path.join(directory, "optimization.tric"))
        except Exception as failure:  # noqa: BLE001 - geomeTRIC's or a step's failure ends the optimisation
            error = f"{type(failure).__name__}: {failure}", traceback.format_exc()
    details = {"wall_time": round(time.monotonic() - started, 3), "steps": len(trajectory), "optimizer": "geomeTRIC"}
    if error is not None:
        return ProgramOutput.model_validate(qc.failure(dual, "geometric", error[0], error[1], details,
                                                       logs=log.getvalue()))
    data = OptimizationData(trajectory=trajectory, calcinfo_natoms=len(center.structure.symbols))
    return ProgramOutput(input_data=dual, success=True, data=data, logs=log.getvalue() or None,
                         provenance=qc.provenance("geometric", details))


BOHR_TO_ANGSTROM = 0.52917721092
__all__ = ["DISPLACEMENT", "InputRefused", "assemble", "changed", "check", "collect", "compute", "displaced",
           "frequencies", "hessian", "optimize", "submit"]
