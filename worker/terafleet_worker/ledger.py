"""One run per task, however often the broker delivers it.

A calculation is acknowledged when it ends (acks_late). A broker restart or a lost connection makes the
broker deliver it again while the first run may still be computing; a worker process that dies makes it
deliver it again after that run was lost. The ledger, kept in the result backend (Redis) beside the
results, tells these apart:

- a task whose result is stored as SUCCESS is not run again: the stored result is returned;
- a run holds a lease on its task that it renews while it computes; another delivery of the task that
  finds the lease held defers itself (Celery retry) instead of computing the same thing a second time;
- a run that ended neither cleanly nor by returning (its lease ran out) was lost with its worker process:
  after `max_lost` such runs the task fails with an error saying so, instead of killing the next worker;
- the time of a task's first try, so that waiting for an unavailable server is budgeted in time.

Every Redis call retries through a backend outage: the ledger never decides on a guess.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "terafleet:task:"
# Claim the lease and record the run, in one step: two deliveries that claim at once cannot both win.
# Every write is idempotent (sets of run tokens, not counters), so a call tried again after its answer
# was lost in an outage changes nothing more.
CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return math.max(redis.call('SCARD', KEYS[2]) - redis.call('SCARD', KEYS[3]) - 1, 0)
"""
# Renew the lease, or give it up (ARGV[2] = 0), only while it is still this run's.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Ledger:
    """The ledger entries of one task id; `client` is a redis.Redis (the result backend's)."""

    def __init__(self, client: Any, task_id: str, owner: str, *, lease: float = 30.0, keep: float = 8 * 86400,
                 retry_errors: tuple[type[BaseException], ...] = (), sleep: Callable[[float], None] = time.sleep):
        # The owner names this run alone: the worker, its process, and a token of its own.
        self.client, self.task_id, self.owner = client, task_id, f"{owner}:{uuid.uuid4().hex[:12]}"
        self.lease, self.keep = lease, int(keep)
        self.retry_errors, self.sleep = retry_errors, sleep
        self.entry_key = f"{PREFIX}{task_id}"
        self.lease_key, self.started_key, self.ended_key = (f"{self.entry_key}:{what}"
                                                            for what in ("lease", "started", "ended"))

    def call(self, what: Callable[[], Any]) -> Any:
        """`what()`, tried again through a backend outage (waits of 1 s growing to 10 s)."""
        wait = 1.0
        while True:
            try:
                return what()
            except self.retry_errors as error:
                log.warning("result backend unavailable (%s); trying again in %.0f s", error, wait)
                self.sleep(wait)
                wait = min(wait * 2, 10.0)

    def first_try(self, now: float) -> float:
        """When this task was first tried (wall clock), recorded now if this is its first try."""
        def record() -> float:
            self.client.hsetnx(self.entry_key, "first_try", repr(now))
            self.client.expire(self.entry_key, self.keep)
            return float(self.client.hget(self.entry_key, "first_try"))
        return self.call(record)

    def count(self, what: str, event: str) -> int:
        """Record `event` (a name unique to it) among this task's `what` (crashes of its server, say) and
        return how many there are; recording one event twice counts it once."""
        key = f"{self.entry_key}:{what}"

        def add() -> int:
            self.client.sadd(key, event)
            self.client.expire(key, self.keep)
            return int(self.client.scard(key))
        return self.call(add)

    def claim(self) -> Run | None:
        """The lease for a run of this task, or None while another run holds it."""
        lost = int(self.call(lambda: self.client.eval(CLAIM, 3, self.lease_key, self.started_key, self.ended_key,
                                                      self.owner, int(self.lease * 1000), self.keep)))
        return None if lost < 0 else Run(self, lost)


class Run:
    """A claimed run: renews its lease in a thread until it ends. `lost` counts the runs before it that
    were lost with their worker process."""

    def __init__(self, ledger: Ledger, lost: int):
        self.ledger, self.lost, self.ended = ledger, lost, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{ledger.task_id}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        ledger = self.ledger
        while not self._stop.wait(ledger.lease / 3):
            try:
                ledger.client.eval(RENEW, 1, ledger.lease_key, ledger.owner, int(ledger.lease * 1000))
            except ledger.retry_errors as error:  # the next renewal tries again
                log.warning("lease of task %s not renewed: %s", ledger.task_id, error)

    def end(self, *, hold: float) -> None:
        """End the run cleanly. The lease is kept `hold` seconds more (the result is stored after the task
        returns: a delivery meanwhile must not compute again), or given up at once with hold 0 (a retry
        that must find it free). Only the first call counts."""
        if self.ended:
            return
        self.ended = True
        self._stop.set()
        self._thread.join()
        ledger = self.ledger

        def finish() -> None:
            ledger.client.sadd(ledger.ended_key, ledger.owner)
            ledger.client.expire(ledger.ended_key, ledger.keep)
            ledger.client.eval(RENEW, 1, ledger.lease_key, ledger.owner, int(hold * 1000))
        ledger.call(finish)


__all__ = ["Ledger", "Run"]
