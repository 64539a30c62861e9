"""Which queue a calculation goes to: its program's (programs.py), unless the sender names one.

TeraChem's calculations go to the shared `terachem` queue its GPU workers consume; the CPU programs
(pyscf, xtb) to `cpu`, which only the CPU workers consume, so a CPU calculation never waits behind
TeraChem work and never lands on a GPU worker. A site that names its queues otherwise says so in
TERAFLEET_PROGRAM_QUEUES (`program=queue,...`) for its clients.
"""

from __future__ import annotations

import os

from .programs import PROGRAMS


def queues(environment: dict | None = None) -> dict[str, str]:
    """Each program's queue: the defaults, with TERAFLEET_PROGRAM_QUEUES' entries over them."""
    mapping = {name: program.queue for name, program in PROGRAMS.items()}
    raw = (os.environ if environment is None else environment).get("TERAFLEET_PROGRAM_QUEUES", "")
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, queue = item.partition("=")
        if not sep or name.strip() not in PROGRAMS or not queue.strip():
            raise ValueError(f"TERAFLEET_PROGRAM_QUEUES: {item!r} is not program=queue for a program among "
                             f"{', '.join(sorted(PROGRAMS))}")
        mapping[name.strip()] = queue.strip()
    return mapping


def route(name, args, kwargs, options, task=None, **_):
    """Celery router (task_routes): compute(program, input) to its program's queue."""
    if name != "terafleet.compute":
        return None
    program = args[0] if args else (kwargs or {}).get("program")
    if isinstance(program, str) and program in PROGRAMS:
        return {"queue": queues()[program]}
    return None
