"""Container entry point: wait until the paired server answers, then become Celery (PID 1).

`exec` keeps Celery as PID 1, so Docker's SIGTERM reaches it and starts a warm shutdown: the running
task finishes, then the worker exits.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from . import server, standby
from .settings import load

log = logging.getLogger("terafleet-worker")


def wait_for_server(host: str, port: int, deadline: float, timeout: float) -> bool:
    while True:
        try:
            busy = server.status(host, port, timeout)
            log.info("TeraChem server %s:%d answers (%s)", host, port, "busy" if busy else "idle")
            return True
        except server.ServerUnavailable as error:
            if time.monotonic() >= deadline:
                log.warning("%s; starting the worker, standing by until the server answers", error)
                return False
            time.sleep(2)


def celery_argv(settings, extra: list[str]) -> list[str]:
    return ["celery", "--app", "terafleet_worker.app", "worker", "--hostname", settings.worker_name,
            "--queues", ",".join(settings.queues), "--concurrency", str(settings.concurrency),
            "--prefetch-multiplier", "1", "--optimization", "fair", "--without-gossip", "--without-mingle",
            "--loglevel", os.environ.get("TERAFLEET_LOG_LEVEL", "INFO"), *extra]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load()
    if not wait_for_server(settings.server_host, settings.server_port, time.monotonic() + settings.server_wait,
                           settings.status_timeout):
        standby.mark(settings.state_dir, f"{settings.server} did not answer before the worker started")
    argv = celery_argv(settings, sys.argv[1:])
    log.info("exec %s", " ".join(argv))
    sys.stdout.flush()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
