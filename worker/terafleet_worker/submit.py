"""terafleet-submit: send calculations through the broker and print their results as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import chemistry


def build_documents(args: argparse.Namespace) -> list[dict]:
    fields = {"method": args.method, "basis": args.basis, "calctype": args.calctype}
    docs = []
    for path in args.inputs:
        text = Path(path).read_text() if path != "-" else sys.stdin.read()
        if path.endswith(".xyz"):
            doc = chemistry.read_xyz(text, **fields)
            doc["structure"].update(charge=args.charge, multiplicity=args.multiplicity)
        else:
            loaded = json.loads(text)
            doc = loaded if isinstance(loaded, dict) else None
            if doc is None:
                raise chemistry.InputError(f"{path}: expected one JSON calculation document")
        chemistry.validate(doc)
        docs.append(doc)
    return docs * args.repeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="terafleet-submit", description=__doc__)
    parser.add_argument("inputs", nargs="+", help="XYZ files (Angstrom) or JSON calculation documents")
    parser.add_argument("--method", default="hf")
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--calctype", default="energy", choices=chemistry.CALCTYPES)
    parser.add_argument("--charge", type=int, default=0)
    parser.add_argument("--multiplicity", type=int, default=1)
    parser.add_argument("--queue", action="append", default=None,
                        help="queue to send to; repeat to send every input to each queue (default: terachem)")
    parser.add_argument("--repeat", type=int, default=1, help="send each input this many times")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all results")
    args = parser.parse_args(argv)
    try:
        docs = build_documents(args)
    except (OSError, ValueError) as error:
        print(f"terafleet-submit: {error}", file=sys.stderr)
        return 2

    from .tasks import compute

    started = time.monotonic()
    queues = args.queue or [None]
    pending = [(queue, compute.apply_async(args=[doc], queue=queue)) for queue in queues for doc in docs]
    failed = 0
    for queue, result in pending:
        remaining = max(args.timeout - (time.monotonic() - started), 1.0)
        try:
            value = result.get(timeout=remaining, propagate=True)
            print(json.dumps({"id": result.id, "queue": queue, "status": "SUCCESS", **value}))
        except Exception as error:  # noqa: BLE001 - each failure is reported, the rest still collected
            failed += 1
            print(json.dumps({"id": result.id, "queue": queue, "status": "FAILURE",
                              "error": f"{type(error).__name__}: {error}"}))
    print(f"{len(pending) - failed} succeeded, {failed} failed in {time.monotonic() - started:.1f} s",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
