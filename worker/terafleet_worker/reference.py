"""A reference calculation with a published result, for checks that the whole chain computes correctly:
water at the geometry of the Crawford group's programming project #3 (Bohr) and its HF/STO-3G energy.
The smoke test role carries the same geometry in YAML (roles/smoke_test/vars/main.yml)."""

from __future__ import annotations

WATER_SYMBOLS = ("O", "H", "H")
WATER_BOHR = ((0.0, -0.143225816552, 0.0),
              (1.638036840407, 1.136548822547, 0.0),
              (-1.638036840407, 1.136548822547, 0.0))
WATER_HF_STO3G_ENERGY = -74.942079928192


def water_flat(scale: float = 1.0) -> list[float]:
    """The water geometry as one flat list of coordinates (Bohr), each multiplied by scale."""
    return [x * scale for row in WATER_BOHR for x in row]


# GFN2-xTB water at the geometry of xtb's own documentation and test suite (Bohr), and the total energy
# the xtb program's unit test expects there (grimme-lab/xtb, test/unit/test_gfn2.f90): an independent
# implementation of the method for checking tblite through the farm.
XTB_WATER_BOHR = ((0.0, 0.0, -0.73578586109551),
                  (1.44183152868459, 0.0, 0.36789293054775),
                  (-1.44183152868459, 0.0, 0.36789293054775))
XTB_WATER_GFN2_ENERGY = -5.070451355118
