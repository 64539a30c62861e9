"""terafleet-submit: send calculations through the broker and print their results as JSON lines.

Without --program: TeraChem's simple calculation documents (or XYZ files), each answered by a line with
its energy, gradient and provenance (the original form, kept for scripts that read it). With --program:
each input (an XYZ file, a qcdata ProgramInput as JSON, or a simple document, which is converted) is
run by that program and answered by its ProgramOutput as one JSON line; --calctype hessian assembles a
Hessian from gradients over the farm where the program has none of its own, frequencies adds
geomeTRIC's harmonic analysis, optimization runs geomeTRIC with each gradient through the farm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import chemistry

CALCTYPES = ("energy", "gradient", "hessian", "frequencies", "optimization")


def read_inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [(path, Path(path).read_text() if path != "-" else sys.stdin.read()) for path in args.inputs]


def build_documents(args: argparse.Namespace) -> list[dict]:
    fields = {"method": args.method, "basis": args.basis, "calctype": args.calctype}
    docs = []
    for path, text in read_inputs(args):
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


def build_program_inputs(args: argparse.Namespace) -> list:
    """ProgramInputs from XYZ files, ProgramInput JSON or simple documents (converted)."""
    from . import client, qc

    calctype = {None: "energy", "energy": "energy"}.get(args.calctype, "gradient")
    inputs = []
    for path, text in read_inputs(args):
        if path.endswith(".xyz"):
            doc = chemistry.read_xyz(text, method=args.method, basis=args.basis, calctype=calctype)
            doc["structure"].update(charge=args.charge, multiplicity=args.multiplicity)
            loaded = doc
        else:
            loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise chemistry.InputError(f"{path}: expected a ProgramInput or a calculation document (a JSON object)")
        if "model" in loaded:
            parsed = qc.parse_input(loaded, chemistry.Limits())
        else:
            parsed = qc.from_document(chemistry.validate(loaded))
        if args.calctype in ("energy", "gradient", "hessian"):
            parsed = client.changed(parsed, calctype=args.calctype)
        inputs.append(parsed)
    return inputs * args.repeat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="terafleet-submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+",
                        help="XYZ files (Angstrom), JSON calculation documents, or (with --program) ProgramInput JSON")
    parser.add_argument("--program", help="terachem, pyscf or xtb: answer with qcdata ProgramOutputs")
    parser.add_argument("--method", default="hf")
    parser.add_argument("--basis", default="sto-3g")
    parser.add_argument("--calctype", default=None, choices=CALCTYPES,
                        help="for XYZ files, and over a ProgramInput's own (default: energy, or the input's)")
    parser.add_argument("--charge", type=int, default=0)
    parser.add_argument("--multiplicity", type=int, default=1)
    parser.add_argument("--queue", action="append", default=None,
                        help="queue to send to; repeat to send every input to each queue (default: the program's)")
    parser.add_argument("--repeat", type=int, default=1, help="send each input this many times")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all results")
    args = parser.parse_args(argv)
    if args.program is None:
        if args.calctype not in (None, "energy", "gradient"):
            parser.error(f"--calctype {args.calctype} needs --program")
        args.calctype = args.calctype or "energy"
        return submit_documents(args)
    return submit_programs(args)


def submit_documents(args: argparse.Namespace) -> int:
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
    return report(len(pending), failed, started)


def submit_programs(args: argparse.Namespace) -> int:
    from . import client, programs

    try:
        inputs = build_program_inputs(args)
        analytic = "hessian" in getattr(programs.PROGRAMS.get(args.program), "calctypes", ())
        for item in inputs:
            # The calctype of each calculation the request sends: a Hessian of a program without its own is
            # assembled from gradients, an optimisation takes gradients.
            single = {"hessian": "hessian" if analytic else "gradient", "optimization": "gradient"}.get(
                "hessian" if args.calctype == "frequencies" else args.calctype, item.calctype.value)
            client.check(args.program, item, single)
    except (OSError, ValueError) as error:
        print(f"terafleet-submit: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    queue = (args.queue or [None])[0]
    options = {"queue": queue, "timeout": args.timeout}
    outputs = []
    if args.calctype in ("hessian", "frequencies", "optimization"):
        run = {"hessian": client.hessian, "frequencies": client.frequencies, "optimization": client.optimize}
        outputs = [run[args.calctype](args.program, item, **options) for item in inputs]
    else:
        sent = [(item, client.submit(args.program, item, queue=queue)) for item in inputs]
        for item, result in sent:
            remaining = max(args.timeout - (time.monotonic() - started), 1.0)
            outputs.append(client.collect(result, args.program, item, remaining))
    for output in outputs:
        print(output.model_dump_json())
    return report(len(outputs), sum(1 for output in outputs if not output.success), started)


def report(total: int, failed: int, started: float) -> int:
    print(f"{total - failed} succeeded, {failed} failed in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
