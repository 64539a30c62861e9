"""The tasks: `terafleet.compute` runs one calculation on the paired server, `terafleet.ping` answers."""

from __future__ import annotations

import logging
import os
import time

from celery import Task, states
from celery.exceptions import Ignore, Reject, Retry

from . import chemistry, input_crashes, server, standby
from .app import SETTINGS, app
from .ledger import Ledger, Run

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
def compute(self: Task, doc: dict) -> dict:
    """Run one calculation document (see chemistry.validate) and return energy, gradient and provenance."""
    started = time.monotonic()
    try:
        calc = chemistry.validate(doc, SETTINGS.limits)
        program_input = chemistry.program_input(calc)
    except (chemistry.InputError, ValueError) as error:
        raise CalculationError(f"bad input: {error}") from None

    earlier = stored_success(self)
    if earlier is not None:
        log.info("task %s was delivered again after it succeeded; its stored result stands", self.request.id)
        return earlier
    book = ledger(self)
    outcome = book.outcome()
    if outcome is not None and outcome != "success":
        name, message = outcome.split(": ", 1) if ": " in outcome else (outcome, outcome)
        raise FAILURES.get(name, CalculationError)(f"{message} (an earlier run of this task; not run again)")
    first_try = book.first_try(time.time())
    run = book.claim()
    if run is None:
        log.info("task %s is running elsewhere, or may be; looking again in %.0f s", self.request.id,
                 SETTINGS.lease_seconds)
        # Sent again for later; nothing is stored for this delivery, so the other run's state stands.
        self.retry(countdown=SETTINGS.lease_seconds, throw=False)
        raise Ignore()
    try:
        if run.lost >= SETTINGS.max_lost_runs:
            raise WorkerLost(f"{run.lost} runs of this task ended with their worker process dying (killed, out "
                             "of memory or crashed); not run again")
        result = run_on_server(self, calc, program_input, book, run, first_try, started)
    except (Retry, Reject, Ignore):
        raise  # a retry: the run gave its lease up before it was sent
    except Exception as error:
        run.end(hold=SETTINGS.lease_seconds, outcome=f"{type(error).__name__}: {error}")
        raise
    run.end(hold=SETTINGS.lease_seconds, outcome="success")
    return result


def run_on_server(task: Task, calc: dict, program_input, book: Ledger, run: Run, first_try: float,
                  started: float) -> dict:
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

    data = output.data
    gradient = data.gradient.tolist() if data.gradient is not None and len(data.gradient) else None
    return {"energy": float(data.energy), "gradient": gradient, "calctype": calc["calctype"],
            "method": calc["method"], "basis": calc["basis"],
            "provenance": provenance(task, started, job_dir=str(output.provenance.scratch_dir or ""))}


FAILURES = {error.__name__: error for error in (CalculationError, ServerBusy, WorkerLost)}


@app.task(bind=True, name="terafleet.ping")
def ping(self: Task) -> dict:
    """Answer with this worker's identity and whether its server answers a STATUS round-trip."""
    started = time.monotonic()
    try:
        busy = server.status(SETTINGS.server_host, SETTINGS.server_port, SETTINGS.status_timeout)
        state = "busy" if busy else "idle"
    except server.ServerUnavailable as error:
        state = f"unavailable: {error}"
    return {"server_state": state, "provenance": provenance(self, started)}


__all__ = ["compute", "ping", "CalculationError", "ServerBusy", "WorkerLost"]
