#!/usr/bin/env python3
"""The farm Hessian of water on 4 TeraChem servers against the same on 1 server.

Starts the project's mini cluster with 4 fake-backend TeraChem stand-ins and their workers; every worker
consumes the queue `hessian`, and each also its own `hessian.<name>`. Each stand-in's job is held to
JOB_SECONDS (its job_seconds switch, as STANDIN_JOB_SECONDS sets it), so the time is the gradients' and
not the stand-in's own arithmetic. terafleet_worker.client.hessian sends the 6N + 1 = 19 gradients as one
Celery group, to `hessian` (4 servers) and to one server's own queue (1 server), a number of times each,
and prints the median wall times and their ratio. Target: a speed-up of at least 3.
Usage: bench/hessian.py [REPEATS]   (default 3; needs Docker and bin/build-images)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from terafleet_worker import reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from minicluster import mini_cluster  # noqa: E402

TARGET = 3.0
JOB_SECONDS = 1.0
SERVERS = [(f"standin-h{i}", "fake", f"hessian,hessian.standin-h{i}", str(i)) for i in range(4)]


def main() -> int:
    from qcdata import ProgramInput

    from terafleet_worker import client

    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    water = ProgramInput(structure={"symbols": list(reference.WATER_SYMBOLS),
                                    "geometry": [list(row) for row in reference.WATER_BOHR]},
                         calctype="hessian", model={"method": "hf", "basis": "sto-3g"})
    times: dict[str, list[float]] = {"4 servers": [], "1 server": []}
    with tempfile.TemporaryDirectory() as workdir, \
            mini_cluster(docker.from_env(), Path(workdir), SERVERS) as cluster:
        for pair in cluster["pairs"].values():
            pair.control(job_seconds=JOB_SECONDS)
        client.hessian("terachem", water, queue="hessian", timeout=600)  # warm every path
        for _ in range(repeats):
            for label, queue in (("4 servers", "hessian"), ("1 server", "hessian.standin-h0")):
                started = time.monotonic()
                output = client.hessian("terachem", water, queue=queue, timeout=600)
                times[label].append(time.monotonic() - started)
                if not output.success:
                    print(f"the Hessian on {label} failed: {output.extras.get('error')}")
                    return 1
                servers = output.provenance.extras["terafleet"]["servers"]
                expected = 4 if label == "4 servers" else 1
                if len(servers) != expected:
                    print(f"the Hessian on {label} used {servers}")
                    return 1
    four, one = statistics.median(times["4 servers"]), statistics.median(times["1 server"])
    print(f"gradients per Hessian:      19, each held to {JOB_SECONDS:.1f} s on the stand-in; {repeats} runs each")
    print(f"Hessian on 1 server:        {one:6.1f} s (median of {', '.join(f'{t:.1f}' for t in times['1 server'])})")
    print(f"Hessian on 4 servers:       {four:6.1f} s (median of {', '.join(f'{t:.1f}' for t in times['4 servers'])})")
    print(f"speed-up:                   {one / four:6.2f} (target >= {TARGET:.0f}: "
          f"{'met' if one / four >= TARGET else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
