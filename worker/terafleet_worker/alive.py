"""The worker's liveness, for its container health check without starting a process that imports Celery.

Every TERAFLEET_ALIVE_INTERVAL seconds a timer on the worker's own event loop starts a short probe in a
thread: one AMQP round trip to the broker (a passive declare of `amq.direct`, over a connection the
probe keeps, with the worker's TLS settings). When the broker answers, the probe writes `alive` in the
state directory: the time and what the worker does (idle, busy, standing by). The health check
(`terafleet-healthcheck`, a shell script in the image) only reads that file's age: a broker that
stopped answering, or an event loop that stopped turning, leaves it older than TERAFLEET_ALIVE_MAX_AGE
and the container turns unhealthy, as it did when each check asked the worker through the broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from celery import bootsteps

from . import standby

log = logging.getLogger(__name__)

FILE = "alive"


def write(state_dir: Path, state: str, now: float | None = None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f"{int(time.time() if now is None else now)} {state}\n")
    os.replace(temporary, path)


def age(state_dir: Path, now: float | None = None) -> tuple[float, str] | None:
    """Seconds since the worker last reached the broker, and what it was doing; None before the first time."""
    try:
        stamp, state = [*(state_dir / FILE).read_text().strip().split(" ", 1), ""][:2]
        return (time.time() if now is None else now) - int(stamp), state
    except (OSError, ValueError):
        return None


class Probe:
    """One broker round trip at a time, in a thread, on a connection kept between probes."""

    def __init__(self, connect, state_dir: Path, timeout: float):
        self.connect, self.state_dir, self.timeout = connect, state_dir, timeout
        self.connection = None
        self.thread: threading.Thread | None = None

    def start(self, state: str) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # the last probe still waits for the broker: its file stays as old as it is
        self.thread = threading.Thread(target=self.run, args=(state,), name="broker-probe", daemon=True)
        self.thread.start()

    def run(self, state: str) -> None:
        try:
            if self.connection is None:
                self.connection = self.connect()
            self.connection.ensure_connection(max_retries=1, timeout=self.timeout)
            self.connection.default_channel.exchange_declare(exchange="amq.direct", type="direct", passive=True)
        except Exception as error:  # noqa: BLE001 - any failure is "the broker did not answer"
            log.warning("the broker did not answer the liveness probe: %s", error)
            self.close()
            return
        try:
            write(self.state_dir, state)
        except OSError as error:
            log.warning("liveness file not written in %s: %s", self.state_dir, error)

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            # A connection already broken has nothing to release.
            with contextlib.suppress(Exception):
                connection.release()


class AliveStep(bootsteps.StartStopStep):
    """The consumer bootstep that starts a Probe every TERAFLEET_ALIVE_INTERVAL seconds."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.probe: Probe | None = None
        self.timer_entry = None

    def start(self, c):
        from .app import SETTINGS, app

        if self.probe is None:
            timeout = SETTINGS.status_timeout
            # Timeouts on every read and write: a broker that stops answering mid-probe (paused, a network
            # partition) ends the probe instead of holding it, and the next one connects again.
            self.probe = Probe(lambda: app.connection_for_write(
                connect_timeout=timeout, transport_options={"read_timeout": timeout, "write_timeout": timeout}),
                SETTINGS.state_dir, timeout)
        self.tick()
        self.timer_entry = c.timer.call_repeatedly(SETTINGS.alive_interval, self.tick, priority=10)

    def tick(self) -> None:
        from celery.worker import state as worker_state

        from .app import SETTINGS

        active = len(worker_state.active_requests)
        state = f"worker busy with {active} task(s)" if active else "worker idle"
        if standby.flag(SETTINGS.state_dir).exists():
            state += f"; standing by: server {SETTINGS.server} unavailable"
        self.probe.start(state)

    def stop(self, c):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, c):
        if self.probe is not None:
            self.probe.close()


__all__ = ["AliveStep", "Probe", "age", "write"]
