"""The programs a worker runs, what each can compute, and the open-source ones run in the worker itself.

`terachem` runs on the paired TeraChem server (tasks.py drives it through the tcpb client); `pyscf`
(HF and DFT) and `xtb` (GFN1/GFN2-xTB through tblite) run inside the worker's own process, on its CPU
cores. PySCF and tblite are imported by the calculation that needs them, never at the worker's start
or by its health check.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    name: str
    calctypes: tuple[str, ...]
    # "server": a TeraChem server computes it; "local": the worker's own process does.
    where: str
    # The queue its calculations go to unless the sender names another (routing.py).
    queue: str
    summary: str


PROGRAMS = {
    "terachem": Program("terachem", ("energy", "gradient"), "server", "terachem",
                        "TeraChem on the worker's paired GPU server (Hessians: terafleet.client.hessian, by finite "
                        "differences over the farm)"),
    "pyscf": Program("pyscf", ("energy", "gradient", "hessian"), "local", "cpu",
                     "PySCF on CPU: HF and DFT energies, analytic gradients and Hessians"),
    "xtb": Program("xtb", ("energy", "gradient"), "local", "cpu",
                   "tblite on CPU: GFN1-xTB and GFN2-xTB energies and gradients"),
}
CPU_PROGRAMS = tuple(name for name, program in PROGRAMS.items() if program.where == "local")

# Keywords each local program takes, and what they set.
PYSCF_KEYWORDS = {"conv_tol": float, "conv_tol_grad": float, "max_cycle": int, "level_shift": float,
                  "init_guess": str, "grids_level": int, "direct_scf_tol": float}
XTB_METHODS = {"gfn1-xtb": "GFN1-xTB", "gfn1xtb": "GFN1-xTB", "gfn2-xtb": "GFN2-xTB", "gfn2xtb": "GFN2-xTB",
               "ipea1-xtb": "IPEA1-xTB", "ipea1xtb": "IPEA1-xTB"}
XTB_KEYWORDS = {"accuracy": float, "max_iter": int, "electronic_temperature": float}
HARTREE_PER_KELVIN = 3.166811563e-6
MAX_LOG_CHARACTERS = 200_000


class InputRefused(ValueError):
    """The input cannot be run as asked (unknown program, calctype or keyword); retrying will not help."""


class ProgramError(Exception):
    """The program ran and failed on this input (no SCF convergence, unknown basis); not retried."""


def check(program: str, calctype: str, method: str, keywords: dict, available: tuple[str, ...]) -> Program:
    """The program, if it can compute this here; InputRefused naming what is wrong otherwise."""
    spec = PROGRAMS.get(program) if isinstance(program, str) else None
    if spec is None:
        raise InputRefused(f"unknown program {program!r}; the farm runs {', '.join(sorted(PROGRAMS))}")
    if calctype not in spec.calctypes:
        hint = " (a Hessian by finite differences over the farm: terafleet_worker.client.hessian)" \
            if calctype == "hessian" else ""
        raise InputRefused(f"{program} cannot compute calctype {calctype!r}; it computes "
                           f"{', '.join(spec.calctypes)}{hint}")
    if program not in available:
        raise InputRefused(f"program {program} does not run on this worker (it runs {', '.join(available)}); send "
                           f"it to the queue of a worker that does (by default {spec.queue!r})")
    if program == "xtb":
        if method.lower() not in XTB_METHODS:
            raise InputRefused(f"xtb runs {', '.join(sorted(set(XTB_METHODS.values())))}, not {method!r}")
        _typed_keywords(program, keywords, XTB_KEYWORDS)
    elif program == "pyscf":
        _typed_keywords(program, keywords, PYSCF_KEYWORDS)
    return spec


def _typed_keywords(program: str, keywords: dict, allowed: dict) -> None:
    for name, value in keywords.items():
        kind = allowed.get(name)
        if kind is None:
            raise InputRefused(f"{program} takes the keywords {', '.join(sorted(allowed))}, not {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise InputRefused(f"{program} keyword {name!r} must be a {kind.__name__}, got {value!r}"[:200])
        if kind is float and not math.isfinite(value):
            raise InputRefused(f"{program} keyword {name!r} must be finite, got {value!r}")


def run_local(program: str, program_input) -> tuple[dict, str]:
    """Run a CPU program on a checked ProgramInput: its results (SinglePointData's fields) and its log."""
    runner = {"pyscf": _pyscf, "xtb": _xtb}[program]
    return runner(program_input)


def _atoms(program_input):
    import numpy as np

    structure = program_input.structure
    return list(structure.symbols), np.asarray(structure.geometry, dtype=float).reshape(-1, 3)


def _pyscf(program_input) -> tuple[dict, str]:
    from pyscf import dft, gto, scf

    symbols, positions = _atoms(program_input)
    structure = program_input.structure
    log = io.StringIO()
    keywords = dict(program_input.keywords)
    try:
        mol = gto.M(atom=[(s, tuple(positions[i])) for i, s in enumerate(symbols)], unit="Bohr",
                    basis=program_input.model.basis or "", charge=structure.charge,
                    spin=structure.multiplicity - 1, verbose=0)
    except (KeyError, RuntimeError, ValueError, AssertionError) as error:
        raise ProgramError(f"PySCF cannot build the molecule in basis {program_input.model.basis!r}: "
                           f"{error}") from None
    mol.stdout, mol.verbose = log, 4
    method = program_input.model.method.lower()
    restricted = structure.multiplicity == 1
    if method in ("hf", "rhf", "uhf", "rohf"):
        kind = {"hf": "RHF" if restricted else "UHF", "rhf": "RHF", "uhf": "UHF", "rohf": "ROHF"}[method]
        mf = getattr(scf, kind)(mol)
    else:
        try:
            dft.libxc.parse_xc(method)
        except (KeyError, ValueError) as error:
            raise ProgramError(f"PySCF knows no method or functional {method!r}: {error}") from None
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = method
        if "grids_level" in keywords:
            mf.grids.level = keywords.pop("grids_level")
    mf.conv_tol = 1e-10
    for name, value in keywords.items():
        setattr(mf, name, value)
    energy = float(mf.kernel())
    if not mf.converged:
        raise ProgramError(f"the SCF did not converge in {mf.max_cycle} cycles ({method}/{mol.basis})")
    data = {"energy": energy, "calcinfo_natoms": mol.natm, "calcinfo_nbasis": mol.nao,
            "calcinfo_nalpha": mol.nelec[0], "calcinfo_nbeta": mol.nelec[1],
            "nuclear_repulsion_energy": float(mol.energy_nuc()),
            "scf_dipole_moment": [float(d) for d in mf.dip_moment(unit="AU", verbose=0)]}
    calctype = program_input.calctype.value
    if calctype in ("gradient", "hessian"):
        data["gradient"] = mf.nuc_grad_method().kernel().tolist()
    if calctype == "hessian":
        hessian = mf.Hessian().kernel()  # (atom, atom, xyz, xyz)
        n = mol.natm
        data["hessian"] = hessian.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n).tolist()
    return data, log.getvalue()[-MAX_LOG_CHARACTERS:]


def _xtb(program_input) -> tuple[dict, str]:
    import numpy as np
    from tblite.interface import Calculator

    symbols, positions = _atoms(program_input)
    try:
        numbers = np.array([_atomic_number(s) for s in symbols])
    except KeyError as error:
        raise ProgramError(f"unknown element {error.args[0]!r}") from None
    structure = program_input.structure
    method = XTB_METHODS[program_input.model.method.lower()]
    keywords = program_input.keywords
    try:
        calculator = Calculator(method, numbers, positions, charge=float(structure.charge),
                                uhf=structure.multiplicity - 1)
        calculator.set("verbosity", 0)
        if "accuracy" in keywords:
            calculator.set("accuracy", float(keywords["accuracy"]))
        if "max_iter" in keywords:
            calculator.set("max-iter", int(keywords["max_iter"]))
        if "electronic_temperature" in keywords:
            calculator.set("temperature", float(keywords["electronic_temperature"]) * HARTREE_PER_KELVIN)
        result = calculator.singlepoint()
    except RuntimeError as error:  # tblite's errors (no convergence, bad input) arrive as RuntimeError
        raise ProgramError(f"tblite {method}: {error}") from None
    data = {"energy": float(result.get("energy")), "calcinfo_natoms": len(symbols)}
    if program_input.calctype.value == "gradient":
        data["gradient"] = np.asarray(result.get("gradient")).tolist()
    return data, f"tblite {method}: energy {data['energy']:.10f} Eh\n"


def _atomic_number(symbol: str) -> int:
    from qcconst import periodic_table

    element = getattr(periodic_table, symbol.capitalize(), None) if symbol.isalpha() else None
    if element is None:
        raise KeyError(symbol)
    return int(element.number)
