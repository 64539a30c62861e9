"""Container health check: the worker answers through the broker, and so does its TeraChem server.

While the worker runs a task, that task holds the server's only client connection, so the server is
not asked: the task's own STATUS polls prove it answers.
"""

from __future__ import annotations

import sys

from . import server
from .app import SETTINGS, app


def check() -> str:
    replies = app.control.inspect([SETTINGS.worker_name], timeout=3.0).active()
    if not replies or SETTINGS.worker_name not in replies:
        raise RuntimeError(f"worker {SETTINGS.worker_name} did not answer through the broker")
    active = replies[SETTINGS.worker_name]
    if active:
        return f"worker busy with {len(active)} task(s)"
    busy = server.status(SETTINGS.server_host, SETTINGS.server_port, SETTINGS.status_timeout)
    return f"worker idle, server {SETTINGS.server} {'busy' if busy else 'idle'}"


def main() -> None:
    try:
        print(check())
    except (RuntimeError, server.ServerUnavailable, OSError) as error:
        print(f"unhealthy: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
