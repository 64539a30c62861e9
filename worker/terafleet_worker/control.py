"""Drain and resume this worker from inside its container, for rolling updates.

`drain QUEUE...` stops the worker taking calculations from those queues (Celery's cancel_consumer); the
calculation it runs finishes. `resume QUEUE...` takes them up again (add_consumer). `state` prints, as
JSON, the queues the worker consumes and its active and reserved calculations. Every command addresses
only this worker, by its own name, and fails if the worker does not answer through the broker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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
            "active": len(_reply(inspector.active())), "reserved": len(_reply(inspector.reserved()))}


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
        else:
            set_consuming(args.queues, args.command == "resume")
            print(json.dumps(settled_state(args.queues, args.command == "resume")))
    except NoReply as error:
        print(f"terafleet-worker-control: {error}", file=sys.stderr)
        sys.exit(69)


if __name__ == "__main__":
    main()
