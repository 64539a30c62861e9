"""Calculation documents: what the worker accepts, converts, and refuses before any server sees it."""

import json

import pytest

from terafleet_worker.chemistry import BOHR_PER_ANGSTROM, InputError, Limits, check_method, read_xyz, validate
from terafleet_worker.qc import from_document

WATER = {"structure": {"symbols": ["O", "H", "H"],
                       "geometry": [[0.0, -0.0757918, 0.0], [0.8668, 0.6014, 0.0], [-0.8668, 0.6014, 0.0]]},
         "method": "HF", "basis": "STO-3G"}


def with_(**changes):
    doc = {**WATER, "structure": dict(WATER["structure"])}
    for key, value in changes.items():
        if key in ("symbols", "geometry", "units", "charge", "multiplicity"):
            doc["structure"][key] = value
        else:
            doc[key] = value
    return doc


def test_angstrom_is_the_default_and_becomes_bohr():
    calc = validate(WATER)
    assert calc["geometry_bohr"][3] == pytest.approx(0.8668 * BOHR_PER_ANGSTROM)
    assert calc["method"] == "hf" and calc["basis"] == "sto-3g" and calc["calctype"] == "energy"


def test_bohr_is_kept_and_flat_geometry_accepted():
    calc = validate(with_(units="Bohr", geometry=[0, 0, 0, 0, 0, 1.4, 0, 1.4, 0]))
    assert calc["geometry_bohr"][5] == 1.4


@pytest.mark.parametrize("doc, message", [
    ("water", "a calculation is a JSON object"),
    (with_(symbols=[]), "structure.symbols must be a non-empty list"),
    (with_(symbols=["O", "H"]), "structure.geometry has 9 coordinates for 2 atoms (needs 6)"),
    (with_(geometry=[[0, 0, "x"], [0, 0, 1], [0, 1, 0]]), "structure.geometry must hold numbers only"),
    (with_(geometry=[[0, 0, True], [0, 0, 1], [0, 1, 0]]), "structure.geometry must hold numbers only"),
    (with_(units="nm"), "structure.units must be one of"),
    (with_(charge=0.5), "structure.charge must be a whole number"),
    (with_(multiplicity=0), "structure.multiplicity must be a whole number of at least 1"),
    (with_(calctype="hessian"), "calctype 'hessian' is not supported"),
    (with_(method=""), "method is missing"),
    (with_(keywords=["a"]), "keywords must be an object"),
    (with_(solvent="water"), "unknown fields ['solvent']"),
    (with_(geometry=json.loads("[[0, 0, NaN], [0, 0, 1], [0, 1, 0]]")), "finite numbers only (no NaN or Infinity)"),
    (with_(geometry=json.loads("[[0, 0, Infinity], [0, 0, 1], [0, 1, 0]]")), "finite numbers only"),
    (with_(symbols=["O", "H", "H\nscrdir /"]), "structure.symbols holds 'H\\nscrdir /', not an element symbol"),
    (with_(keywords={"scrdir": "/tmp"}), "keyword 'scrdir' is set by the farm"),
    (with_(keywords={"GPUS": "4 0 1 2 3"}), "keyword 'GPUS' is set by the farm"),
    (with_(keywords={"convthre": "1e-6\ngpus 8"}), "keyword 'convthre' must be one line of printable text"),
    (with_(keywords={"convthre": "x" * 1001}), "at most 1000 characters"),
    (with_(keywords={"bad name": 1}), "keyword 'bad name' is not a keyword name"),
    (with_(keywords={"levelshift": float("nan")}), "keyword 'levelshift' must be a finite number"),
    (with_(keywords={"guess": ["a", "b"]}), "keyword 'guess' must be a string, number or boolean, got list"),
    (with_(keywords={f"k{i}": 1 for i in range(201)}), "201 keywords, above the limit of 200"),
    (with_(keywords={"charge": 1}), "(charge and multiplicity go in structure)"),
    (with_(keywords={"restricted": "no"}), "keyword 'restricted' must be true or false, got 'no'"),
    (with_(keywords={"guess": "/opt/terachem/license.key"}), "keyword 'guess' names files relative to the job"),
    (with_(keywords={"orb1afile": "../../other/scr/c0"}), "keyword 'orb1afile' names files relative to the job"),
    (with_(geometry=[[0, 0, 10**400], [0, 0, 1], [0, 1, 0]]), "a number too large for a coordinate"),
])
def test_refusals(doc, message):
    with pytest.raises(InputError) as error:
        validate(doc)
    assert message in str(error.value)


def test_size_and_atom_limits():
    assert validate(WATER, Limits(max_atoms=3, max_bytes=10_000))["symbols"] == ["O", "H", "H"]
    with pytest.raises(InputError, match=r"3 atoms, above the limit of 2 \(TERAFLEET_MAX_ATOMS\)"):
        validate(WATER, Limits(max_atoms=2))
    with pytest.raises(InputError, match=r"the document is \d+ bytes, above the limit of 100 "
                                         r"\(TERAFLEET_MAX_INPUT_BYTES\)"):
        validate(WATER, Limits(max_bytes=100))


def test_plain_keywords_pass_unchanged():
    keywords = {"convthre": 1e-6, "dftd": "d3", "precision": "double", "maxit": 200, "purify": False,
                "guess": "scr/ca0 scr/cb0", "restricted": False}
    assert validate(with_(keywords=keywords))["keywords"] == keywords


def test_program_input_carries_bohr_geometry():
    program = from_document(validate(WATER))
    assert program.structure.geometry[1][0] == pytest.approx(0.8668 * BOHR_PER_ANGSTROM)
    assert program.model.method == "hf" and program.calctype.value == "energy"


def test_unknown_method_is_refused_before_the_server():
    with pytest.raises(InputError, match="method 'mp2' is not a TeraChem method"):
        check_method(validate(with_(method="mp2"))["method"])


def test_read_xyz():
    doc = read_xyz("3\nwater\nO 0 0 0\nH 0 0 0.96\nH 0.93 0 -0.24\n", method="hf", basis="sto-3g")
    assert doc["structure"]["symbols"] == ["O", "H", "H"]
    assert validate(doc)["geometry_bohr"][5] == pytest.approx(0.96 * BOHR_PER_ANGSTROM)


@pytest.mark.parametrize("text, message", [("", "starts with the atom count"),
                                           ("3\nwater\nO 0 0 0\n", "announces 3 atoms but lists 1")])
def test_read_xyz_refusals(text, message):
    with pytest.raises(InputError, match=message):
        read_xyz(text)
