"""Tell the node what this worker does: the queues it consumes and the calculations it runs.

The node's metrics (terafleet-watchdog's textfile for node-exporter) need each worker's state without
asking it through the broker. Every few seconds the worker compares the queues its consumer takes from and
its active requests with what it last wrote, and when they changed replaces `status.json` in its state
directory (`{"queues": [...], "drained": [...], "active": N, "time": T}`; `drained`: the queues it was
started with and does not consume now). The watchdog reads it from the worker's own filesystem on the
node, as it reads the input-crash marks. In-process, a timer on the worker's own event loop: no process
starts, nothing polls the broker.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from celery import bootsteps

log = logging.getLogger(__name__)

FILE = "status.json"
INTERVAL = 5.0


def status(consuming: list[str], configured: list[str], active: int) -> dict:
    return {"queues": sorted(consuming), "drained": sorted(set(configured) - set(consuming)), "active": active}


def write(state_dir: Path, current: dict, now: float | None = None) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**current, "time": time.time() if now is None else now}))
    os.replace(temporary, path)


class StatusFileStep(bootsteps.StartStopStep):
    """Write status.json when the consumed queues or the active calculations change."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer = None
        self.last: dict | None = None

    def start(self, c):
        self.update(c)
        self.timer = c.timer.call_repeatedly(INTERVAL, self.update, (c,), priority=10)

    def stop(self, c):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def update(self, c) -> None:
        from celery.worker import state

        from .app import SETTINGS

        current = status([queue.name for queue in c.task_consumer.queues], SETTINGS.queues,
                         len(state.active_requests))
        if current == self.last:
            return
        try:
            write(SETTINGS.state_dir, current)
        except OSError as error:
            log.warning("status file not written in %s: %s", SETTINGS.state_dir, error)
            return
        self.last = current
