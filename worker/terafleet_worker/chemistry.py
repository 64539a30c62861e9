"""Simple calculation documents (TeraChem's): validation, keywords, methods and XYZ files."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092
CALCTYPES = ("energy", "gradient")
UNITS = ("angstrom", "bohr")
# Keywords the farm sets for every job (its GPUs, its scratch, the run type and molecule from the
# document's own fields): a document may not set them.
RESERVED_KEYWORDS = ("scrdir", "gpus", "gpuids", "coordinates", "run", "method", "basis", "charge", "spinmult",
                     "jobname")
KEYWORD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# Keywords the tcpb client turns into protobuf switches: true or false only.
BOOLEAN_KEYWORDS = ("closed_shell", "restricted", "bond_order", "mo_output")
# Keywords naming a file on the server: relative to the job, never outside it.
FILE_KEYWORDS = ("guess", "orb1afile", "orb1bfile")
MAX_KEYWORDS = 200
MAX_KEYWORD_VALUE = 1000


@dataclass(frozen=True)
class Limits:
    """What one calculation document may hold."""

    max_atoms: int = 10000
    max_bytes: int = 4 * 2**20


class InputError(ValueError):
    """The calculation document is wrong; retrying will not help."""


def validate(doc: Any, limits: Limits = Limits()) -> dict:  # noqa: B008 (a frozen dataclass)
    """Check a calculation document and return it normalised (geometry flat, in Bohr)."""
    if not isinstance(doc, dict):
        raise InputError(f"a calculation is a JSON object, got {type(doc).__name__}")
    try:
        size = len(json.dumps(doc, allow_nan=True).encode())
    except (TypeError, ValueError) as error:
        raise InputError(f"a calculation must be plain JSON: {error}") from None
    if size > limits.max_bytes:
        raise InputError(f"the document is {size} bytes, above the limit of {limits.max_bytes} "
                         "(TERAFLEET_MAX_INPUT_BYTES)")
    unknown = set(doc) - {"structure", "method", "basis", "calctype", "keywords"}
    if unknown:
        raise InputError(f"unknown fields {sorted(unknown)}")
    structure = doc.get("structure")
    if not isinstance(structure, dict):
        raise InputError("structure is missing or not an object")
    symbols = structure.get("symbols")
    if not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) and s for s in symbols):
        raise InputError(f"structure.symbols must be a non-empty list of element symbols, got {symbols!r}"[:300])
    if len(symbols) > limits.max_atoms:
        raise InputError(f"{len(symbols)} atoms, above the limit of {limits.max_atoms} (TERAFLEET_MAX_ATOMS)")
    bad_symbol = next((s for s in symbols if not re.fullmatch(r"[A-Za-z]{1,3}", s.strip())), None)
    if bad_symbol is not None:
        raise InputError(f"structure.symbols holds {bad_symbol[:20]!r}, not an element symbol")
    geometry = structure.get("geometry")
    flat = _flatten(geometry)
    if len(flat) != 3 * len(symbols):
        raise InputError(f"structure.geometry has {len(flat)} coordinates for {len(symbols)} atoms "
                         f"(needs {3 * len(symbols)})")
    units = str(structure.get("units", "angstrom")).lower()
    if units not in UNITS:
        raise InputError(f"structure.units must be one of {UNITS}, got {units!r}")
    scale = BOHR_PER_ANGSTROM if units == "angstrom" else 1.0
    charge = structure.get("charge", 0)
    multiplicity = structure.get("multiplicity", 1)
    if not isinstance(charge, int) or isinstance(charge, bool):
        raise InputError(f"structure.charge must be a whole number, got {charge!r}")
    if not isinstance(multiplicity, int) or isinstance(multiplicity, bool) or multiplicity < 1:
        raise InputError(f"structure.multiplicity must be a whole number of at least 1, got {multiplicity!r}")
    calctype = str(doc.get("calctype", "energy")).lower()
    if calctype not in CALCTYPES:
        raise InputError(f"calctype {calctype!r} is not supported; choose one of {CALCTYPES}")
    method = doc.get("method")
    if not isinstance(method, str) or not method:
        raise InputError("method is missing")
    basis = doc.get("basis", "")
    if not isinstance(basis, str):
        raise InputError(f"basis must be a string, got {basis!r}")
    keywords = doc.get("keywords", {}) or {}
    if not isinstance(keywords, dict):
        raise InputError(f"keywords must be an object, got {keywords!r}"[:300])
    check_keywords(keywords)
    return {"symbols": [s.strip().capitalize() for s in symbols], "geometry_bohr": [x * scale for x in flat],
            "charge": charge, "multiplicity": multiplicity, "method": method.lower(), "basis": basis.lower(),
            "calctype": calctype, "keywords": keywords}


def _flatten(geometry: Any) -> list[float]:
    if not isinstance(geometry, list):
        raise InputError(f"structure.geometry must be a list of coordinates, got {geometry!r}")
    flat: list[Any] = []
    for item in geometry:
        flat.extend(item if isinstance(item, list) else [item])
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in flat):
        raise InputError(f"structure.geometry must hold numbers only, got {geometry!r}"[:300])
    try:
        numbers = [float(x) for x in flat]
    except OverflowError:
        raise InputError("structure.geometry holds a number too large for a coordinate") from None
    if not all(math.isfinite(x) for x in numbers):
        raise InputError("structure.geometry must hold finite numbers only (no NaN or Infinity)")
    return numbers


def check_keywords(keywords: dict) -> None:
    """TeraChem reads keywords as `name value` lines: names are identifiers, values one-line scalars."""
    if len(keywords) > MAX_KEYWORDS:
        raise InputError(f"{len(keywords)} keywords, above the limit of {MAX_KEYWORDS}")
    for name, value in keywords.items():
        if not isinstance(name, str) or not KEYWORD_NAME.match(name):
            raise InputError(f"keyword {str(name)[:70]!r} is not a keyword name (letters, digits, _)")
        if name.lower() in RESERVED_KEYWORDS:
            raise InputError(f"keyword {name!r} is set by the farm or by the document's own fields (charge and "
                             "multiplicity go in structure); remove it")
        if name.lower() in BOOLEAN_KEYWORDS and not isinstance(value, bool):
            raise InputError(f"keyword {name!r} must be true or false, got {value!r}"[:200])
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"keyword {name!r} must be a finite number, got {value!r}")
        if not isinstance(value, (str, int, float, bool)):
            raise InputError(f"keyword {name!r} must be a string, number or boolean, got "
                             f"{type(value).__name__}")
        text = str(value)
        if len(text) > MAX_KEYWORD_VALUE or not text.isprintable():
            raise InputError(f"keyword {name!r} must be one line of printable text of at most "
                             f"{MAX_KEYWORD_VALUE} characters")
        if name.lower() in FILE_KEYWORDS and any(path.startswith("/") or ".." in path.split("/")
                                                 for path in text.split()):
            raise InputError(f"keyword {name!r} names files relative to the job's directory only, got {text!r}")


def check_method(method: str) -> None:
    """InputError unless TeraChem (tcpb's protobuf enum) knows the method."""
    from . import messages

    if method.upper() not in messages.load().JobInput.MethodType.keys():  # noqa: SIM118 (a protobuf enum)
        raise InputError(f"method {method!r} is not a TeraChem method")


def read_xyz(text: str, **fields: Any) -> dict:
    """A calculation document from an XYZ file (Angstrom), plus the given fields (method, basis, ...)."""
    lines = text.strip().splitlines()
    try:
        count = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise InputError("an XYZ file starts with the atom count") from None
    atoms = [line.split() for line in lines[2:2 + count]]
    if len(atoms) != count or any(len(a) < 4 for a in atoms):
        raise InputError(f"the XYZ file announces {count} atoms but lists {len(atoms)} usable lines")
    return {"structure": {"symbols": [a[0] for a in atoms], "geometry": [[float(x) for x in a[1:4]] for a in atoms],
                          "units": "angstrom"}, **fields}
