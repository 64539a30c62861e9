"""Container entry point: wait until the paired server answers (a worker that drives one), then become
Celery.

`exec` makes Celery the process Docker's init (the container runs with `init: true`) passes SIGTERM on
to: a warm shutdown, the running task finishes, then the worker exits. A SIGTERM that comes earlier,
while this waits for the server, ends it at once. Without that init this process and then Celery would
be PID 1, which the kernel sends no SIGTERM until a handler is set: a stop would wait out the stop timeout.

`terafleet-worker flower` becomes Flower instead, on the same broker and backend (their URLs and CA
from the same files), listening on TERAFLEET_FLOWER_PORT (5555); with TERAFLEET_FLOWER_AUTH_FILE (a
file holding `user:password`), behind HTTP basic authentication. The credentials go to Flower through
its environment (FLOWER_BASIC_AUTH), set here: not in Docker's configuration, not in any process's
arguments.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from . import server, standby
from .settings import load

log = logging.getLogger("terafleet-worker")
HEARTBEAT_SECONDS = 30


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
            # Heartbeat events (Flower's "online", which lasts two intervals) every 30 s instead of 2: at 16
            # workers a node, each one is a message through the broker and CPU at rest.
            "--heartbeat-interval", str(HEARTBEAT_SECONDS),
            "--loglevel", os.environ.get("TERAFLEET_LOG_LEVEL", "INFO"), *extra]


def flower(environment: dict) -> tuple[list[str], dict]:
    """Flower's argv and environment."""
    port = environment.get("TERAFLEET_FLOWER_PORT", "5555")
    argv = ["celery", "--app", "terafleet_worker.app", "flower", "--address=0.0.0.0", f"--port={port}",
            "--persistent=False", "--purge_offline_workers=600"]
    auth_file = environment.get("TERAFLEET_FLOWER_AUTH_FILE")
    extra = {}
    if auth_file:
        with open(auth_file) as stream:
            credentials = stream.read().strip()
        if ":" not in credentials:
            raise SystemExit(f"TERAFLEET_FLOWER_AUTH_FILE: {auth_file} does not hold user:password")
        extra["FLOWER_BASIC_AUTH"] = credentials
    return argv, {**environment, **extra}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if sys.argv[1:2] == ["flower"]:
        load()  # the broker's and backend's settings, checked before Flower starts
        argv, environment = flower(dict(os.environ))
        log.info("exec %s", " ".join(argv))
        sys.stdout.flush()
        os.execvpe(argv[0], argv, environment)
    settings = load()
    # A worker for CPU programs only has no server to wait for.
    if settings.drives_server and not wait_for_server(settings.server_host, settings.server_port,
                                                      time.monotonic() + settings.server_wait,
                                                      settings.status_timeout):
        standby.mark(settings.state_dir, f"{settings.server} did not answer before the worker started")
    argv = celery_argv(settings, sys.argv[1:])
    log.info("exec %s", " ".join(argv))
    sys.stdout.flush()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
