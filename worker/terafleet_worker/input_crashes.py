"""Tell the node's watchdog which restarts of the paired server an input caused.

An input that crashed TeraChem `max_server_crashes` times fails for good (tasks.py). Those crashes were
the input's, not the GPU set's: Docker restarted the server each time, and the node's watchdog would count
the restarts toward the set's crash loop and take the set out of service. The worker leaves one mark per
such input in its state directory (`input-crashes/<task id>.json`, with how many of the crashes were on
this worker's server); the watchdog reads the marks of the workers paired with a server, from their own
filesystem on the node (no broker, no shared volume), and does not count that many restarts.

Restarts no mark explains (a crash at start, the first crash of an input whose retry then succeeded on
another server) count as before; the watchdog reports every mark it takes off, and each input failed this
way names the server it crashed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

DIRECTORY = "input-crashes"
KEEP_SECONDS = 86400.0


def directory(state_dir: Path) -> Path:
    return state_dir / DIRECTORY


def mark(state_dir: Path, task_id: str, server: str, crashes: int, message: str, now: float | None = None) -> None:
    """Record that task `task_id`'s input crashed `server` `crashes` times; marks older than a day go."""
    now = time.time() if now is None else now
    folder = directory(state_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            if now - old.stat().st_mtime > KEEP_SECONDS:
                old.unlink(missing_ok=True)
        path = folder / f"{task_id}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"task": task_id, "server": server, "crashes": crashes, "time": now,
                                         "message": message[:500]}))
        os.replace(temporary, path)
    except OSError as error:  # then the restarts count toward a crash loop, as any unexplained restart does
        log.warning("cannot leave the input-crash mark of task %s in %s: %s", task_id, folder, error)


__all__ = ["mark", "directory", "DIRECTORY"]
