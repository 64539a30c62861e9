"""One run per task, however often the broker delivers it.

A calculation is acknowledged when it ends (acks_late). A broker restart or a lost connection makes the
broker deliver it again while the first run may still be computing; a worker process that dies makes it
deliver it again after that run was lost. The ledger, kept in the result backend (Redis) beside the
results, tells these apart:

- a task whose result is stored as SUCCESS is not run again: the stored result is returned;
- a run holds a lease on its task that it renews while it computes; another delivery of the task that
  finds the lease held defers itself (Celery retry) instead of computing the same thing a second time;
- a task that failed for good records how; a later delivery fails with that error and computes nothing;
- a run that never ended, whose lease ran out and was not taken back within a further lease period, was
  lost with its worker process:
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
# A free lease with a run that never ended is not proof that run was lost: a Redis outage longer than the
# lease drops the key while the run computes on. The first delivery to see that notes the time
# (free_since) and defers; one lease period later, if no run took its lease back meanwhile, the runs that
# never ended were lost. Every write is idempotent (sets of run tokens, not counters), so a call tried
# again after its answer was lost in an outage changes nothing more.
# KEYS: lease, started, ended, entry; ARGV: owner, lease ms, keep s. Returns the runs lost, or -1: defer.
CLAIM = """
local holder = redis.call('GET', KEYS[1])
local unended = redis.call('SCARD', KEYS[2]) - redis.call('SCARD', KEYS[3])
if holder ~= ARGV[1] then
  if holder then return -1 end
  if unended > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local since = tonumber(redis.call('HGET', KEYS[4], 'free_since') or '0')
    if since == 0 then
      redis.call('HSET', KEYS[4], 'free_since', now)
      redis.call('EXPIRE', KEYS[4], ARGV[3])
      return -1
    end
    if now - since < tonumber(ARGV[2]) then return -1 end
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('HDEL', KEYS[4], 'free_since')
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  return math.max(unended, 0)
end
return math.max(unended - 1, 0)
"""
# Renew the lease while it is this run's (2), or take it back where an outage let it lapse (1); -1: another
# run holds it. With ARGV[2] = 0, give it up.
RENEW = """
local holder = redis.call('GET', KEYS[1])
if tonumber(ARGV[2]) == 0 then
  if holder == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if holder then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HDEL', KEYS[2], 'free_since')
return 1
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

    def events(self, what: str) -> set[str]:
        """The events recorded among this task's `what` (see count)."""
        members = self.call(lambda: self.client.smembers(f"{self.entry_key}:{what}"))
        return {member.decode() if isinstance(member, bytes) else member for member in members}

    def claim(self) -> Run | None:
        """The lease for a run of this task, or None while another run holds it."""
        lost = int(self.call(lambda: self.client.eval(CLAIM, 4, self.lease_key, self.started_key, self.ended_key,
                                                      self.entry_key, self.owner, int(self.lease * 1000),
                                                      self.keep)))
        return None if lost < 0 else Run(self, lost)

    def outcome(self) -> str | None:
        """How an earlier run of this task ended for good ("success", or "ErrorName: message"), if one did."""
        value = self.call(lambda: self.client.hget(self.entry_key, "outcome"))
        return value.decode() if isinstance(value, bytes) else value


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
                answer = ledger.client.eval(RENEW, 2, ledger.lease_key, ledger.entry_key, ledger.owner,
                                            int(ledger.lease * 1000))
            except Exception as error:  # noqa: BLE001 - whatever it was, the next renewal tries again
                log.warning("lease of task %s not renewed: %s", ledger.task_id, error)
                continue
            if int(answer) == 1:
                log.warning("lease of task %s had lapsed (a backend outage); taken back", ledger.task_id)
            elif int(answer) < 0:
                log.error("lease of task %s is held by another run: it may compute this task too", ledger.task_id)

    def end(self, *, hold: float, outcome: str | None = None) -> None:
        """End the run cleanly. The lease is kept `hold` seconds more (the result is stored after the task
        returns: a delivery meanwhile must not compute again), or given up at once with hold 0 (a retry
        that must find it free). `outcome` records how the task ended for good, for later deliveries.
        Only the first call counts."""
        if self.ended:
            return
        self.ended = True
        self._stop.set()
        self._thread.join()
        ledger = self.ledger

        def finish() -> None:
            if outcome is not None:
                ledger.client.hset(ledger.entry_key, "outcome", outcome[:2000])
                ledger.client.expire(ledger.entry_key, ledger.keep)
            ledger.client.sadd(ledger.ended_key, ledger.owner)
            ledger.client.expire(ledger.ended_key, ledger.keep)
            if hold > 0:
                ledger.client.eval(RENEW, 2, ledger.lease_key, ledger.entry_key, ledger.owner, int(hold * 1000))
            else:
                ledger.client.eval(RENEW, 2, ledger.lease_key, ledger.entry_key, ledger.owner, 0)
        try:
            ledger.call(finish)
        except Exception as error:  # noqa: BLE001 - the run's own result or error stands; the lease runs out
            log.error("end of task %s's run not recorded: %s", ledger.task_id, error)


__all__ = ["Ledger", "Run"]
