"""The ecosystem's data model on the wire: qcdata's ProgramInput in, ProgramOutput out, as JSON.

A task takes a ProgramInput as its JSON text (`model_dump_json()`) or the same as a JSON object, and
returns the ProgramOutput as a JSON object (`model_dump(mode="json")`): Celery's JSON serializer carries
both; nothing is pickled. qcdata (and pydantic behind it) is imported by the functions here, so a worker
starts and a health check runs without it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .chemistry import Limits
from .programs import InputRefused

MAX_ERROR_CHARACTERS = 2000


def parse_input(value: Any, limits: Limits):
    """A checked ProgramInput from its JSON text or JSON object; InputRefused saying what is wrong."""
    from pydantic import ValidationError
    from qcdata import ProgramInput

    if isinstance(value, str):
        size = len(value.encode())
    elif isinstance(value, dict):
        try:
            size = len(json.dumps(value, allow_nan=False).encode())
        except (TypeError, ValueError) as error:
            raise InputRefused(f"a ProgramInput must be plain JSON: {error}") from None
    else:
        raise InputRefused(f"a ProgramInput is a JSON object or its text, got {type(value).__name__}")
    if size > limits.max_bytes:
        raise InputRefused(f"the input is {size} bytes, above the limit of {limits.max_bytes} "
                           "(TERAFLEET_MAX_INPUT_BYTES)")
    try:
        program_input = (ProgramInput.model_validate_json(value) if isinstance(value, str)
                         else ProgramInput.model_validate(value))
    except ValidationError as error:
        raise InputRefused(f"not a valid ProgramInput: {_short(error)}") from None
    structure = program_input.structure
    if len(structure.symbols) > limits.max_atoms:
        raise InputRefused(f"{len(structure.symbols)} atoms, above the limit of {limits.max_atoms} "
                           "(TERAFLEET_MAX_ATOMS)")
    if not all(math.isfinite(float(x)) for x in structure.geometry.ravel()):
        raise InputRefused("structure.geometry must hold finite numbers only (no NaN or Infinity)")
    if program_input.files:
        raise InputRefused("input files (ProgramInput.files) are not taken by the farm")
    if program_input.structures:
        raise InputRefused("extra structures (ProgramInput.structures) are not taken by the farm")
    return program_input


def _short(error) -> str:
    """A pydantic ValidationError in one line per problem, shortened."""
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()]
    return "; ".join(problems)[:MAX_ERROR_CHARACTERS]


def input_dict(program_input) -> dict:
    """A ProgramInput (or its JSON text or object) as the JSON object a task takes."""
    if isinstance(program_input, str):
        return json.loads(program_input)
    if isinstance(program_input, dict):
        return program_input
    return program_input.model_dump(mode="json")


def from_document(calc: dict):
    """The ProgramInput for a simple calculation document already checked by chemistry.validate."""
    from qcdata import ProgramInput, Structure

    flat = calc["geometry_bohr"]
    structure = Structure(symbols=calc["symbols"], geometry=[flat[i:i + 3] for i in range(0, len(flat), 3)],
                          charge=calc["charge"], multiplicity=calc["multiplicity"])
    return ProgramInput(structure=structure, calctype=calc["calctype"],
                        model={"method": calc["method"], "basis": calc["basis"]}, keywords=calc["keywords"])


def provenance(program: str, details: dict) -> dict:
    """qcdata's Provenance for a calculation the farm ran; the farm's own details in its extras."""
    return {"program": program, "program_version": _version(program), "hostname": details.get("node"),
            "wall_time": details.get("wall_time"), "scratch_dir": details.get("job_dir") or None,
            "hostcpus": None, "extras": {"terafleet": details}}


def _version(program: str) -> str | None:
    from importlib import metadata

    package = {"pyscf": "pyscf", "xtb": "tblite", "geometric": "geometric"}.get(program)
    if package is None:
        return None
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def success(program_input, program: str, data: dict, logs: str | None, details: dict) -> dict:
    """A successful ProgramOutput as a JSON object."""
    from qcdata import ProgramOutput, SinglePointData

    output = ProgramOutput(input_data=program_input, success=True, data=SinglePointData(**data), logs=logs or None,
                           provenance=provenance(program, details))
    return output.model_dump(mode="json")


def failure(program_input, program: str, error: str, traceback: str | None, details: dict,
            logs: str | None = None) -> dict:
    """A failed ProgramOutput as a JSON object: the error in extras.error, the traceback (or the error)."""
    from qcdata import Files, ProgramOutput

    output = ProgramOutput(input_data=program_input, success=False, data=Files(), logs=logs or None,
                           traceback=traceback or error, extras={"error": error[:MAX_ERROR_CHARACTERS]},
                           provenance=provenance(str(program)[:64], details))
    return output.model_dump(mode="json")
