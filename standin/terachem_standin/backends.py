"""What the stand-in computes: a deterministic fake, or real chemistry with PySCF."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Atomic numbers and covalent radii (Angstrom) for the elements the fake backend knows.
ELEMENTS = {"H": (1, 0.31), "He": (2, 0.28), "Li": (3, 1.28), "Be": (4, 0.96), "B": (5, 0.84), "C": (6, 0.76),
            "N": (7, 0.71), "O": (8, 0.66), "F": (9, 0.57), "Ne": (10, 0.58), "Na": (11, 1.66), "Mg": (12, 1.41),
            "Al": (13, 1.21), "Si": (14, 1.11), "P": (15, 1.07), "S": (16, 1.05), "Cl": (17, 1.02),
            "Ar": (18, 1.06)}
BOHR_PER_ANGSTROM = 1.0 / 0.52917721092
DEBYE_PER_AU = 2.541746473


class CalculationError(Exception):
    """The calculation itself failed (bad basis, no convergence): TeraChem prints an error and dies."""


@dataclass
class Job:
    atoms: list[str]
    xyz_bohr: list[float]
    charge: int
    multiplicity: int
    restricted: bool
    method: str
    basis: str
    gradient: bool
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    energy: float
    gradient: list[float]
    dipoles: list[float]
    charges: list[float]
    orba_energies: list[float]
    orba_occupations: list[float]
    orbb_energies: list[float]
    orbb_occupations: list[float]


def _electrons(job: Job) -> int:
    try:
        total = sum(ELEMENTS[a.capitalize()][0] for a in job.atoms) - job.charge
    except KeyError as error:
        raise CalculationError(f"unknown element {error.args[0]}") from None
    if total <= 0 or (total + job.multiplicity - 1) % 2:
        raise CalculationError(
            f"charge {job.charge} and multiplicity {job.multiplicity} are impossible for {total} electrons")
    return total


def fake(job: Job) -> Result:
    """Morse pair potential over covalent radii, in Bohr: cheap, deterministic, and sensitive to units."""
    electrons = _electrons(job)
    n = len(job.atoms)
    coords = [job.xyz_bohr[3 * i:3 * i + 3] for i in range(n)]
    atom_energy = sum(-0.5 * ELEMENTS[a.capitalize()][0] ** 2.2 for a in job.atoms)
    energy = atom_energy
    grad = [[0.0, 0.0, 0.0] for _ in range(n)]
    depth, steepness = 0.18, 1.1
    for i in range(n):
        for j in range(i + 1, n):
            delta = [coords[i][k] - coords[j][k] for k in range(3)]
            r = math.sqrt(sum(d * d for d in delta)) or 1e-12
            r0 = (ELEMENTS[job.atoms[i].capitalize()][1] + ELEMENTS[job.atoms[j].capitalize()][1]) * BOHR_PER_ANGSTROM
            decay = math.exp(-steepness * (r - r0))
            energy += depth * ((1.0 - decay) ** 2 - 1.0)
            d_energy_dr = 2.0 * depth * (1.0 - decay) * steepness * decay
            for k in range(3):
                grad[i][k] += d_energy_dr * delta[k] / r
                grad[j][k] -= d_energy_dr * delta[k] / r
    charges = [0.0] * n
    dipole = [0.0, 0.0, 0.0]
    occupied = electrons // 2
    orbitals = max(occupied + 2, 2)
    return Result(energy=energy,
                  gradient=[g for row in grad for g in row] if job.gradient else [],
                  dipoles=[*dipole, 0.0], charges=charges,
                  orba_energies=[-1.0 + 0.1 * k for k in range(orbitals)],
                  orba_occupations=[2.0 if k < occupied else 0.0 for k in range(orbitals)],
                  orbb_energies=[], orbb_occupations=[])


PYSCF_XC = {"B3LYP": "b3lyp", "BLYP": "blyp", "PBE": "pbe", "PBE0": "pbe0", "REVPBE": "revpbe", "SVWN": "svwn",
            "BHANDHLYP": "bhandhlyp", "CAMB3LYP": "camb3lyp", "WB97X": "wb97x", "B97": "b97"}


def pyscf(job: Job) -> Result:
    """Real SCF with PySCF: HF or a DFT functional, energy and analytic gradient."""
    _electrons(job)
    from pyscf import dft, gto, scf  # imported here: PySCF is large and only this backend needs it

    try:
        mol = gto.M(atom=[(a, job.xyz_bohr[3 * i:3 * i + 3]) for i, a in enumerate(job.atoms)], unit="Bohr",
                    basis=job.basis, charge=job.charge, spin=job.multiplicity - 1, verbose=0)
    except (KeyError, RuntimeError, ValueError) as error:
        raise CalculationError(f"cannot build the molecule in basis {job.basis!r}: {error}") from None
    restricted = job.restricted and job.multiplicity == 1
    if job.method == "HF":
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    elif job.method in PYSCF_XC:
        mf = dft.RKS(mol) if restricted else dft.UKS(mol)
        mf.xc = PYSCF_XC[job.method]
    else:
        raise CalculationError(f"method {job.method} is not available in the stand-in's PySCF backend")
    mf.conv_tol = 1e-10
    energy = float(mf.kernel())
    if not mf.converged:
        raise CalculationError(f"SCF did not converge ({job.method}/{job.basis})")
    gradient = [float(g) for g in mf.nuc_grad_method().kernel().ravel()] if job.gradient else []
    dipole = [float(d) for d in mf.dip_moment(unit="Debye", verbose=0)]
    charges = [float(c) for c in mf.mulliken_pop(verbose=0)[1]]
    if restricted:
        alpha_e, alpha_occ, beta_e, beta_occ = list(mf.mo_energy), list(mf.mo_occ), [], []
    else:
        alpha_e, beta_e = list(mf.mo_energy[0]), list(mf.mo_energy[1])
        alpha_occ, beta_occ = list(mf.mo_occ[0]), list(mf.mo_occ[1])
    return Result(energy=energy, gradient=gradient, dipoles=[*dipole, math.sqrt(sum(d * d for d in dipole))],
                  charges=charges, orba_energies=[float(e) for e in alpha_e],
                  orba_occupations=[float(o) for o in alpha_occ], orbb_energies=[float(e) for e in beta_e],
                  orbb_occupations=[float(o) for o in beta_occ])


BACKENDS = {"fake": fake, "pyscf": pyscf}
