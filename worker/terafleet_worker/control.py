"""Drain and resume this worker from inside its container, for rolling updates.

`drain QUEUE...` stops the worker taking calculations from those queues (Celery's cancel_consumer); the
calculation it runs finishes. The drain is recorded in the result backend (hold.py), so the worker, and
a container that replaces it, starts without those queues until `resume QUEUE...` takes them up again
(add_consumer) and forgets the drain. `state` prints, as JSON, the queues the worker consumes and its
active, reserved and scheduled (ETA, countdown) calculations. Every command addresses only this worker,
by its own name, and fails if the worker does not answer through the broker or the drain cannot be
recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from redis.exceptions import RedisError

from . import hold
from .app import SETTINGS, app

REPLY_TIMEOUT = 5.0
# The worker acknowledges add_consumer and cancel_consumer before its consumer has changed (Celery
# schedules the change on its event loop), so the state is read again until it shows the change.
SETTLE_TIMEOUT = 10.0


class NoReply(RuntimeError):
    """The worker did not answer through the broker."""


def _reply(replies: list[dict] | dict | None) -> dict:
    """The one answer of this worker, from a broadcast's list of {name: answer} or inspect's {name: answer}."""
    if isinstance(replies, list):
        replies = {name: answer for reply in replies for name, answer in reply.items()}
    if not replies or SETTINGS.worker_name not in replies:
        raise NoReply(f"worker {SETTINGS.worker_name} did not answer through the broker")
    return replies[SETTINGS.worker_name]


def set_consuming(queues: list[str], consume: bool) -> list[str]:
    messages = []
    for queue in queues:
        if consume:
            replies = app.control.add_consumer(queue, destination=[SETTINGS.worker_name], reply=True,
                                               timeout=REPLY_TIMEOUT)
        else:
            replies = app.control.cancel_consumer(queue, destination=[SETTINGS.worker_name], reply=True,
                                                  timeout=REPLY_TIMEOUT)
        answer = _reply(replies)
        messages.append(answer.get("ok") or answer.get("error") or str(answer))
    return messages


def state() -> dict:
    inspector = app.control.inspect([SETTINGS.worker_name], timeout=REPLY_TIMEOUT)
    queues = [q["name"] for q in _reply(inspector.active_queues())]
    return {"worker": SETTINGS.worker_name, "queues": sorted(queues),
            "active": len(_reply(inspector.active())), "reserved": len(_reply(inspector.reserved())),
            "scheduled": len(_reply(inspector.scheduled()))}


def settled_state(queues: list[str], consume: bool) -> dict:
    """The worker's state once it consumes (or no longer consumes) every one of `queues`, or after
    SETTLE_TIMEOUT as it then is; the caller judges it."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        current = state()
        if all((queue in current["queues"]) == consume for queue in queues) or time.monotonic() >= deadline:
            return current
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="terafleet-worker-control", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["drain", "resume", "state"])
    parser.add_argument("queues", nargs="*", help="queues to stop or resume consuming (drain, resume)")
    args = parser.parse_args(argv)
    if args.command != "state" and not args.queues:
        parser.error(f"{args.command} needs at least one queue")
    try:
        if args.command == "state":
            print(json.dumps(state()))
        elif args.command == "drain":
            # Recorded first: a worker restarted between the two steps starts drained.
            hold.hold(hold.client(SETTINGS.result_backend), SETTINGS.worker_name, args.queues)
            set_consuming(args.queues, False)
            print(json.dumps(settled_state(args.queues, False)))
        else:
            set_consuming(args.queues, True)
            hold.release(hold.client(SETTINGS.result_backend), SETTINGS.worker_name, args.queues)
            print(json.dumps(settled_state(args.queues, True)))
    except NoReply as error:
        print(f"terafleet-worker-control: {error}", file=sys.stderr)
        sys.exit(69)
    except (RedisError, OSError) as error:
        print(f"terafleet-worker-control: cannot record the {args.command} in the result backend: {error}",
              file=sys.stderr)
        sys.exit(69)


if __name__ == "__main__":
    main()
