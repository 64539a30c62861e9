"""Queues a worker was drained from stay drained when the worker restarts or is recreated.

`terafleet-worker-control drain` records the queues it drains in the result backend, under the worker's
name (`terachem@<node>-<set>`, the same for the container that replaces it), and `resume` forgets them.
A worker that starts takes none of its recorded queues (HeldQueuesStep) until they are resumed. A
rolling update drains the shared queues of the old workers, so the workers it creates take only their
own queue until its health gate has passed and it resumes them.

When the result backend does not answer within START_TIMEOUT, a starting worker takes every queue it
was given, and says so: it could not store a result meanwhile anyway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from celery import bootsteps

log = logging.getLogger(__name__)

PREFIX = "terafleet:held:"
START_TIMEOUT = 30.0
TIMEOUT = 5.0


def key(worker: str) -> str:
    return PREFIX + worker


def client(url: str, tls: dict | None = None):
    """A Redis client for the result backend at `url` (with redis-py's TLS options for rediss://) that gives
    up on a call after TIMEOUT seconds."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, **(tls or {}))


def held(redis_client, worker: str) -> set[str]:
    return {name.decode() if isinstance(name, bytes) else name for name in redis_client.smembers(key(worker))}


def hold(redis_client, worker: str, queues: Iterable[str]) -> None:
    redis_client.sadd(key(worker), *queues)


def release(redis_client, worker: str, queues: Iterable[str]) -> None:
    redis_client.srem(key(worker), *queues)


def read_at_start(read: Callable[[], set[str]], deadline: float, errors: tuple[type[BaseException], ...],
                  sleep: Callable[[float], None] = time.sleep) -> set[str] | None:
    """The held queues, asked until `deadline` (time.monotonic) while the backend fails; None: unknown."""
    while True:
        try:
            return read()
        except errors as error:
            if time.monotonic() >= deadline:
                log.warning("cannot read the drained queues from the result backend (%s); taking every queue", error)
                return None
            sleep(1.0)


class HeldQueuesStep(bootsteps.StartStopStep):
    """Before the consumer's event loop first consumes, drop the queues recorded as drained."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.applied = False

    def start(self, c):
        # Once: a queue cancelled here is deselected from the app's queues, so it stays dropped when the
        # consumer restarts after a broker outage, and one resumed since then stays consumed.
        if self.applied:
            return
        self.applied = True
        import redis

        from .app import SETTINGS

        backend = client(SETTINGS.result_backend, SETTINGS.backend_tls())
        names = read_at_start(lambda: held(backend, SETTINGS.worker_name), time.monotonic() + START_TIMEOUT,
                              (redis.RedisError, OSError)) or set()
        dropped = [queue.name for queue in c.task_consumer.queues if queue.name in names]
        for name in dropped:
            c.app.amqp.queues.deselect(name)
            c.task_consumer.cancel_by_queue(name)
        if dropped:
            log.warning("drained before this start, not taking from %s until resumed (terafleet-worker-control "
                        "resume)", ", ".join(dropped))


__all__ = ["HeldQueuesStep", "held", "hold", "release"]
