"""Stand by while the paired server is unavailable: take no calculations until it answers again.

A task that finds its server down (refused, restarting, gone mid-job) marks it unavailable (`mark`). The
worker's consumer then stops taking from every queue it consumes, so calculations on the shared queues
go to workers whose servers answer, and those on this server's own queue wait in the broker instead
of being taken, retried and taken again. While standing by, the worker asks its server for a STATUS
every few seconds, in a thread of its own, and takes its queues up again once it answers. A queue
drained (cancel_consumer) meanwhile stays drained; one resumed meanwhile stays consumed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from celery import bootsteps

from . import server

log = logging.getLogger(__name__)


def flag(state_dir: Path) -> Path:
    return state_dir / "server-unavailable"


def mark(state_dir: Path, reason: str) -> None:
    """Say, for this container's worker process, that the server did not serve a calculation."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        flag(state_dir).write_text(reason[:500] + "\n")
    except OSError as error:  # standing by is an optimisation; the task's own retry still holds
        log.warning("cannot mark the server unavailable in %s: %s", state_dir, error)


class Standby:
    """The decisions, apart from Celery: `tick()` is called on the consumer's event loop."""

    def __init__(self, settings, consumed, cancel, add):
        self.settings, self.consumed, self.cancel, self.add = settings, consumed, cancel, add
        self.paused: list[str] | None = None
        self.answered = threading.Event()
        self.probe: threading.Thread | None = None

    def tick(self) -> None:
        try:
            self._tick()
        except Exception:  # noqa: BLE001 - the consumer's timer must keep running; the next tick tries again
            log.exception("standby check failed")

    def _tick(self) -> None:
        marked = flag(self.settings.state_dir)
        if self.paused is None:
            consumed = self.consumed()
            if consumed is None or not marked.exists():
                return  # nothing to do, or the consumer is reconnecting: the next tick decides
            self.paused = list(consumed)
            for queue in self.paused:
                self.cancel(queue)
            log.warning("server %s unavailable: standing by, not taking from %s until it answers",
                        self.settings.server, ", ".join(self.paused) or "any queue")
        if self.answered.is_set():
            queues, self.paused = self.paused, None
            self.answered.clear()
            marked.unlink(missing_ok=True)
            for queue in queues:
                self.add(queue)
            log.info("server %s answers again: taking from %s", self.settings.server, ", ".join(queues))
        elif self.probe is None or not self.probe.is_alive():
            self.probe = threading.Thread(target=self._ask, name="server-probe", daemon=True)
            self.probe.start()

    def _ask(self) -> None:
        try:
            # Briefly: a wedged server accepts the connection, and the watchdog counts a held one as a client.
            server.status(self.settings.server_host, self.settings.server_port,
                          min(self.settings.status_timeout, 2.0))
        except server.ServerUnavailable as error:
            log.info("standing by: %s", error)
        else:
            self.answered.set()

    def forget(self, queue: str) -> None:
        """A queue drained or resumed by hand while standing by is the admin's: not taken up by us."""
        if self.paused and queue in self.paused:
            self.paused.remove(queue)


class StandbyStep(bootsteps.StartStopStep):
    """The consumer bootstep that runs Standby.tick every TERAFLEET_STANDBY_INTERVAL seconds."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.standby: Standby | None = None
        self.timer_entry = None

    def start(self, c):
        from .app import SETTINGS

        if self.standby is None:
            cancel, add = c.cancel_task_queue, c.add_task_queue
            self.standby = Standby(SETTINGS, lambda: [q.name for q in c.task_consumer.queues] if c.task_consumer
                                   else None, cancel, add)

            def cancel_by_hand(queue, *args, **kwargs):
                self.standby.forget(queue)
                return cancel(queue, *args, **kwargs)

            def add_by_hand(queue, *args, **kwargs):
                self.standby.forget(queue)
                return add(queue, *args, **kwargs)

            # Celery's control commands (terafleet-worker-control drain and resume) look these up on the
            # consumer when they run.
            c.cancel_task_queue, c.add_task_queue = cancel_by_hand, add_by_hand
        self.timer_entry = c.timer.call_repeatedly(SETTINGS.standby_interval, self.standby.tick, priority=10)

    def stop(self, c):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None


__all__ = ["Standby", "StandbyStep", "mark"]
