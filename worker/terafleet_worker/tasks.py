"""The tasks: `terafleet.compute` runs one calculation on the paired server, `terafleet.ping` answers."""

from __future__ import annotations

import logging
import time

from celery import Task

from . import chemistry, server
from .app import SETTINGS, app

log = logging.getLogger(__name__)


class CalculationError(Exception):
    """TeraChem refused or failed the calculation; retrying will not help."""


class ServerBusy(Exception):
    """The server was restarting or busy for longer than the retries allow."""


def provenance(task: Task, started: float, **extra) -> dict:
    return {"node": SETTINGS.node, "gpu_set": SETTINGS.gpu_set, "server": SETTINGS.server,
            "worker": task.request.hostname, "wall_time": round(time.monotonic() - started, 3),
            "retries": task.request.retries, **extra}


@app.task(bind=True, name="terafleet.compute", acks_late=True, reject_on_worker_lost=True)
def compute(self: Task, doc: dict) -> dict:
    """Run one calculation document (see chemistry.validate) and return energy, gradient and provenance."""
    from tcpb import TCProtobufClient
    from tcpb.exceptions import ServerError

    started = time.monotonic()
    try:
        calc = chemistry.validate(doc)
        program_input = chemistry.program_input(calc)
    except (chemistry.InputError, ValueError) as error:
        raise CalculationError(f"bad input: {error}") from None

    client = TCProtobufClient(SETTINGS.server_host, SETTINGS.server_port)
    try:
        with client:
            output = client.compute(program_input, raise_exc=True)
    except ServerError as error:
        message = server.calculation_error(SETTINGS.scratch_dir, client.curr_job_dir)
        if message:
            raise CalculationError(f"TeraChem on {SETTINGS.server} failed job {client.curr_job_dir}: "
                                   f"{message}") from None
        if self.request.retries >= SETTINGS.max_retries:
            raise ServerBusy(f"TeraChem on {SETTINGS.server} still unavailable after "
                             f"{self.request.retries} retries: {error}") from None
        countdown = min(SETTINGS.retry_backoff ** (self.request.retries + 1), SETTINGS.retry_backoff_max)
        log.warning("server %s: %s; retry %d in %.1f s", SETTINGS.server, error, self.request.retries + 1, countdown)
        raise self.retry(countdown=countdown, max_retries=SETTINGS.max_retries) from None
    except ValueError as error:
        # tcpb raises ValueError for inputs it cannot express (unknown calctype, method).
        raise CalculationError(f"bad input: {error}") from None

    data = output.data
    gradient = data.gradient.tolist() if data.gradient is not None and len(data.gradient) else None
    return {"energy": float(data.energy), "gradient": gradient, "calctype": calc["calctype"],
            "method": calc["method"], "basis": calc["basis"],
            "provenance": provenance(self, started, job_dir=str(output.provenance.scratch_dir or ""))}


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


__all__ = ["compute", "ping", "CalculationError", "ServerBusy"]
