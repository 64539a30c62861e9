"""Ask the worker through the broker whether it answers (`terafleet-healthcheck --through-broker`).

The container's health check itself reads the liveness file the worker keeps (alive.py, the shell script
`terafleet-healthcheck`): this module starts Celery's client and asks the worker by name, for a person
checking a worker by hand. The paired server's health is the server's own health check (a STATUS
round-trip): a worker whose server is down is healthy while it stands by (standby.py), and restarting it
would not bring the server back.
"""

from __future__ import annotations

import sys

from kombu.exceptions import OperationalError

from . import standby
from .app import SETTINGS, app


def check() -> str:
    try:
        replies = app.control.inspect([SETTINGS.worker_name], timeout=3.0).active()
    except OperationalError as error:
        raise RuntimeError(f"worker {SETTINGS.worker_name} did not answer through the broker: {error}") from None
    if not replies or SETTINGS.worker_name not in replies:
        raise RuntimeError(f"worker {SETTINGS.worker_name} did not answer through the broker")
    active = replies[SETTINGS.worker_name]
    state = f"worker busy with {len(active)} task(s)" if active else "worker idle"
    if standby.flag(SETTINGS.state_dir).exists():
        state += f"; standing by: server {SETTINGS.server} unavailable"
    return state


def main() -> None:
    try:
        print(check())
    except (RuntimeError, OSError) as error:
        print(f"unhealthy: {error}")
        sys.exit(1)


if __name__ == "__main__":
    main()
