"""The tasks: `terafleet.compute` runs one calculation (on the paired TeraChem server, or a CPU program in
the worker), `terafleet.ping` answers."""

from __future__ import annotations

import logging
import os
import time
import traceback

from celery import Task, states
from celery.exceptions import Ignore, Reject, Retry

from . import chemistry, input_crashes, programs, qc, server, standby
from .app import SETTINGS, app
from .ledger import Ledger, Run
from .programs import InputRefused, ProgramError

log = logging.getLogger(__name__)


class CalculationError(Exception):
    """TeraChem refused or failed the calculation; retrying will not help."""


class ServerBusy(Exception):
    """The server was unavailable (restarting, busy, down) for longer than the task may wait."""


class WorkerLost(Exception):
    """Runs of this task ended with their worker process dying; the task is not run again."""


def provenance(task: Task, started: float, **extra) -> dict:
    return {"node": SETTINGS.node, "gpu_set": SETTINGS.gpu_set, "server": SETTINGS.server,
            "worker": task.request.hostname, "wall_time": round(time.monotonic() - started, 3),
            "retries": task.request.retries, **extra}


def ledger(task: Task) -> Ledger:
    return Ledger(app.backend.client, task.request.id, f"{task.request.hostname}:{os.getpid()}",
                  lease=SETTINGS.lease_seconds, keep=SETTINGS.result_expires + 86400,
                  retry_errors=tuple(app.backend.connection_errors))


def stored_success(task: Task) -> dict | None:
    """The result an earlier delivery of this task stored, when it succeeded."""
    meta = app.backend.get_task_meta(task.request.id)
    return meta.get("result") if meta.get("status") == states.SUCCESS else None


@app.task(bind=True, name="terafleet.compute", acks_late=True, reject_on_worker_lost=True, max_retries=None)
def compute(self: Task, program, program_input=None) -> dict:
    """`compute(program, ProgramInput)`: run the program (programs.py) on qcdata's ProgramInput (a JSON
    object or its text) and return its ProgramOutput as a JSON object (qc.py); a calculation that fails
    returns one with success false. `compute(document)`: the simple calculation document of
    chemistry.validate, run by TeraChem, returning energy, gradient and provenance (failures raise)."""
    started = time.monotonic()
    if program_input is None and isinstance(program, dict):
        return compute_document(self, program, started)
    try:
        parsed = qc.parse_input(program_input, SETTINGS.limits)
    except InputRefused as error:
        raise CalculationError(f"bad input: {error}") from None
    try:
        check_program(program, parsed)
    except InputRefused as error:
        return qc.failure(parsed, program, f"bad input: {error}", None, provenance(self, started))
    try:
        return once(self, lambda book, run, first_try: run_program(self, program, parsed, book, run, first_try,
                                                                   started))
    except (CalculationError, ServerBusy, WorkerLost, ProgramError) as error:
        return qc.failure(parsed, program, f"{type(error).__name__}: {error}", getattr(error, "details", None),
                          provenance(self, started), logs=getattr(error, "logs", None))


def check_program(program, parsed) -> None:
    """InputRefused unless this worker can run the program on this input."""
    spec = programs.check(program, parsed.calctype.value, parsed.model.method, dict(parsed.keywords),
                          SETTINGS.programs)
    if spec.where == "server":
        try:
            chemistry.check_keywords(dict(parsed.keywords))
            chemistry.check_method(parsed.model.method)
        except chemistry.InputError as error:
            raise InputRefused(str(error)) from None
        if not parsed.model.basis:
            raise InputRefused("TeraChem needs a basis (model.basis)")


def run_program(task: Task, program: str, parsed, book: Ledger, run: Run, first_try: float, started: float) -> dict:
    """Run a checked ProgramInput; return the successful ProgramOutput, raise what failed."""
    if programs.PROGRAMS[program].where == "server":
        output, job_dir = run_on_server(task, parsed, book, run, first_try)
        data = {name: value for name, value in output.data.model_dump().items()
                if name in SERVER_RESULTS and value is not None}
        return qc.success(parsed, program, data, output.logs, provenance(task, started, job_dir=job_dir))
    try:
        data, logs = programs.run_local(program, parsed)
    except Exception as error:  # noqa: BLE001 - whatever the program raised is this calculation's failure
        failed = error if isinstance(error, ProgramError) else ProgramError(f"{type(error).__name__}: {error}")
        failed.details = traceback.format_exc()
        raise failed from None
    return qc.success(parsed, program, data, logs, provenance(task, started))


# What a TeraChem server's answer carries into the ProgramOutput.
SERVER_RESULTS = ("energy", "gradient", "calcinfo_natoms", "calcinfo_nalpha", "calcinfo_nbeta", "calcinfo_nbasis",
                  "calcinfo_nmo", "scf_dipole_moment", "nuclear_repulsion_energy")


def compute_document(task: Task, doc: dict, started: float) -> dict:
    """The simple document's path: energy, gradient and provenance, or an exception."""
    try:
        calc = chemistry.validate(doc, SETTINGS.limits)
        chemistry.check_method(calc["method"])
        parsed = qc.from_document(calc)
    except (chemistry.InputError, ValueError) as error:
        raise CalculationError(f"bad input: {error}") from None
    if not SETTINGS.drives_server:
        raise CalculationError(f"a calculation document is TeraChem's, and this worker runs "
                               f"{', '.join(SETTINGS.programs)} only")

    def work(book: Ledger, run: Run, first_try: float) -> dict:
        output, job_dir = run_on_server(task, parsed, book, run, first_try)
        data = output.data
        gradient = data.gradient.tolist() if data.gradient is not None and len(data.gradient) else None
        return {"energy": float(data.energy), "gradient": gradient, "calctype": calc["calctype"],
                "method": calc["method"], "basis": calc["basis"],
                "provenance": provenance(task, started, job_dir=job_dir)}

    return once(task, work)


def once(task: Task, work) -> dict:
    """Run `work(book, run, first_try)` at most once per task (ledger.py) and return its result, or the
    result an earlier delivery stored; an earlier run's failure is raised again."""
    earlier = stored_success(task)
    if earlier is not None:
        log.info("task %s was delivered again after it succeeded; its stored result stands", task.request.id)
        return earlier
    book = ledger(task)
    outcome = book.outcome()
    if outcome is not None and outcome != "success":
        name, message = outcome.split(": ", 1) if ": " in outcome else (outcome, outcome)
        raise FAILURES.get(name, CalculationError)(f"{message} (an earlier run of this task; not run again)")
    first_try = book.first_try(time.time())
    run = book.claim()
    if run is None:
        log.info("task %s is running elsewhere, or may be; looking again in %.0f s", task.request.id,
                 SETTINGS.lease_seconds)
        # Sent again for later; nothing is stored for this delivery, so the other run's state stands.
        task.retry(countdown=SETTINGS.lease_seconds, throw=False)
        raise Ignore()
    try:
        if run.lost >= SETTINGS.max_lost_runs:
            raise WorkerLost(f"{run.lost} runs of this task ended with their worker process dying (killed, out "
                             "of memory or crashed); not run again")
        result = work(book, run, first_try)
    except (Retry, Reject, Ignore):
        raise  # a retry: the run gave its lease up before it was sent
    except Exception as error:
        run.end(hold=SETTINGS.lease_seconds, outcome=f"{type(error).__name__}: {error}")
        raise
    run.end(hold=SETTINGS.lease_seconds, outcome="success")
    return result


def run_on_server(task: Task, program_input, book: Ledger, run: Run, first_try: float):
    """The paired server's ProgramOutput (tcpb's) and its job directory; retries while it is unavailable."""
    from tcpb import TCProtobufClient
    from tcpb.exceptions import ServerError

    client = TCProtobufClient(SETTINGS.server_host, SETTINGS.server_port)
    try:
        with client:
            output = client.compute(program_input, raise_exc=True)
    except ServerError as error:
        job_dir = client.curr_job_dir
        message = server.calculation_error(SETTINGS.scratch_dir, job_dir)
        if message:
            raise CalculationError(f"TeraChem on {SETTINGS.server} failed job {job_dir}: {message}") from None
        if job_dir:
            # The server took the job and went away during it: it crashed, maybe on this input.
            crashes = book.count("server_crashes", f"{SETTINGS.server}:{job_dir}")
            if crashes >= SETTINGS.max_server_crashes:
                message = (f"TeraChem died {crashes} times running this input (last on {SETTINGS.server}, job "
                           f"{job_dir}); not tried again")
                # The crashes were the input's: the watchdog must not count them toward this set's crash loop.
                here = sum(1 for event in book.events("server_crashes")
                           if event.startswith(f"{SETTINGS.server}:"))
                input_crashes.mark(SETTINGS.state_dir, task.request.id, SETTINGS.server, here, message)
                raise CalculationError(message) from None
        waited = time.time() - first_try
        if waited >= SETTINGS.unavailable_timeout:
            raise ServerBusy(f"TeraChem on {SETTINGS.server} still unavailable {waited:.0f} s after the first "
                             f"try (celery_worker_unavailable_timeout {SETTINGS.unavailable_timeout:.0f} s): "
                             f"{error}") from None
        countdown = min(SETTINGS.retry_backoff ** (task.request.retries + 1), SETTINGS.retry_backoff_max,
                        max(SETTINGS.unavailable_timeout - waited, 1.0))
        log.warning("server %s: %s; retry %d in %.1f s", SETTINGS.server, error, task.request.retries + 1, countdown)
        standby.mark(SETTINGS.state_dir, f"{SETTINGS.server}: {error}")
        run.end(hold=0)  # the retry must find the lease free
        raise task.retry(countdown=countdown) from None
    except ValueError as error:
        # tcpb raises ValueError for inputs it cannot express (unknown calctype, method).
        raise CalculationError(f"bad input: {error}") from None
    return output, str(output.provenance.scratch_dir or "")


FAILURES = {error.__name__: error for error in (CalculationError, ServerBusy, WorkerLost, ProgramError)}


@app.task(bind=True, name="terafleet.ping")
def ping(self: Task) -> dict:
    """Answer with this worker's identity, its programs and whether its server answers a STATUS round-trip."""
    started = time.monotonic()
    if not SETTINGS.drives_server:
        state = "none (CPU programs only)"
    else:
        try:
            busy = server.status(SETTINGS.server_host, SETTINGS.server_port, SETTINGS.status_timeout)
            state = "busy" if busy else "idle"
        except server.ServerUnavailable as error:
            state = f"unavailable: {error}"
    return {"server_state": state, "programs": list(SETTINGS.programs), "provenance": provenance(self, started)}


__all__ = ["compute", "ping", "CalculationError", "ServerBusy", "WorkerLost"]
