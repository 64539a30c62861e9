"""Drain and resume workers through the broker, for rolling updates.

`drain QUEUE...` stops a worker taking calculations from those queues (Celery's cancel_consumer); the
calculation it runs finishes. The drain is recorded in the result backend (hold.py), so the worker, and
a container that replaces it, starts without those queues until `resume QUEUE...` takes them up again
(add_consumer) and forgets the drain. `state` prints the queues the worker consumes and its active,
reserved and scheduled (ETA, countdown) calculations, and, for this container's worker, how many
messages wait in each queue it was started with and how many consumers each has (`depths`, from the
broker: a passive declare, which creates nothing). Each command prints one JSON line per worker.

A command addresses this container's worker, or the workers named with `--worker NAME` (the names
they answer to through the broker, `terachem@<node>-<set>`), all in one broadcast per step; it fails
if a worker does not answer through the broker or a drain cannot be recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from . import hold
from .app import SETTINGS, app

REPLY_TIMEOUT = 5.0
# The worker acknowledges add_consumer and cancel_consumer before its consumer has changed (Celery
# schedules the change on its event loop), so the state is read again until it shows the change.
SETTLE_TIMEOUT = 10.0


class NoReply(RuntimeError):
    """A worker did not answer through the broker."""


def _replies(replies: list[dict] | dict | None, workers: list[str]) -> dict:
    """Each worker's answer, from a broadcast's list of {name: answer} or inspect's {name: answer}."""
    if isinstance(replies, list):
        replies = {name: answer for reply in replies for name, answer in reply.items()}
    replies = replies or {}
    silent = [worker for worker in workers if worker not in replies]
    if silent:
        raise NoReply(f"worker {', '.join(silent)} did not answer through the broker")
    return {worker: replies[worker] for worker in workers}


def set_consuming(workers: list[str], queues: list[str], consume: bool) -> None:
    change = app.control.add_consumer if consume else app.control.cancel_consumer
    for queue in queues:
        _replies(change(queue, destination=workers, reply=True, timeout=REPLY_TIMEOUT), workers)


def states(workers: list[str]) -> list[dict]:
    inspector = app.control.inspect(workers, timeout=REPLY_TIMEOUT)
    queues = _replies(inspector.active_queues(), workers)
    active, reserved, scheduled = (_replies(ask(), workers)
                                   for ask in (inspector.active, inspector.reserved, inspector.scheduled))
    return [{"worker": worker, "queues": sorted(q["name"] for q in queues[worker]), "active": len(active[worker]),
             "reserved": len(reserved[worker]), "scheduled": len(scheduled[worker])} for worker in workers]


def queue_depths(queues) -> dict:
    """{queue: {"ready": messages waiting, "consumers": N}}, or None for a queue the broker does not have
    or could not be asked about."""
    depths: dict = {}
    with app.connection_for_read() as connection:
        errors = (OSError, KombuError, *connection.connection_errors, *connection.channel_errors)
        channel = None
        for queue in queues:
            try:
                channel = channel or connection.channel()
                answer = channel.queue_declare(queue=queue, passive=True)
                ready, consumers = answer[1], answer[2]
                depths[queue] = {"ready": ready, "consumers": consumers}
            except errors:
                depths[queue] = None
                channel = None  # a refused declare closes the channel
    return depths


def settled_states(workers: list[str], queues: list[str], consume: bool) -> list[dict]:
    """The workers' states once each consumes (or no longer consumes) every one of `queues`, or after
    SETTLE_TIMEOUT as they then are; the caller judges them."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        current = states(workers)
        if all((queue in state["queues"]) == consume for state in current for queue in queues) \
                or time.monotonic() >= deadline:
            return current
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="terafleet-worker-control", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["drain", "resume", "state"])
    parser.add_argument("queues", nargs="*", help="queues to stop or resume consuming (drain, resume)")
    parser.add_argument("--worker", action="append", dest="workers", metavar="NAME",
                        help="a worker to address, by the name it answers to (repeat for more); this "
                             "container's worker when none is given")
    args = parser.parse_args(argv)
    if args.command != "state" and not args.queues:
        parser.error(f"{args.command} needs at least one queue")
    workers = list(dict.fromkeys(args.workers or [SETTINGS.worker_name]))
    try:
        if args.command == "state":
            result = states(workers)
            if not args.workers:
                result[0]["depths"] = queue_depths(SETTINGS.queues)
        elif args.command == "drain":
            # Recorded first: a worker restarted between the two steps starts drained.
            backend = hold.client(SETTINGS.result_backend, SETTINGS.backend_tls())
            for worker in workers:
                hold.hold(backend, worker, args.queues)
            set_consuming(workers, args.queues, False)
            result = settled_states(workers, args.queues, False)
        else:
            set_consuming(workers, args.queues, True)
            backend = hold.client(SETTINGS.result_backend, SETTINGS.backend_tls())
            for worker in workers:
                hold.release(backend, worker, args.queues)
            result = settled_states(workers, args.queues, True)
    except NoReply as error:
        print(f"terafleet-worker-control: {error}", file=sys.stderr)
        sys.exit(69)
    except (RedisError, OSError) as error:
        print(f"terafleet-worker-control: cannot record the {args.command} in the result backend: {error}",
              file=sys.stderr)
        sys.exit(69)
    for state in result:
        print(json.dumps(state))


if __name__ == "__main__":
    main()
