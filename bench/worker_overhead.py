#!/usr/bin/env python3
"""Per-task overhead of going through Celery (RabbitMQ + Redis) versus a direct tcpb call, and of TLS.

Starts the project's mini cluster (one fake-backend TeraChem stand-in, its worker, broker and backend),
then times N calculations made directly with the tcpb client and N sent as `terafleet.compute` tasks,
one after another, and prints milliseconds per task. Target: at most 50 ms added per task. Then does the
same on a mini cluster whose broker and backend speak TLS only (in a child process: the Celery app is
configured once per process), and prints what TLS adds per task. Target: at most 5 ms.
The tcpb client asks whether a job is done right after the server accepts it and then every 250 ms, so
a calculation takes either almost nothing or a whole 250 ms poll, depending on a race with the server's
thread; which way each one falls would swamp the milliseconds measured here. The stand-in's job is
therefore held to JOB_SECONDS, which puts every calculation on every path in the first poll: what
differs between the paths is Celery's and TLS's own cost.
Usage: bench/worker_overhead.py [N] [--tls-only]   (default 200; needs Docker and bin/build-images)
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from terafleet_worker import reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from minicluster import mini_cluster  # noqa: E402

TARGET_MS = 50.0
TLS_TARGET_MS = 5.0
JOB_SECONDS = 0.05  # less than the tcpb client's 250 ms poll, more than the server's own work
WATER_BOHR = [list(row) for row in reference.WATER_BOHR]


def measure(count: int, tls: bool) -> tuple[list[float], list[float]]:
    """Seconds per calculation made straight with tcpb, and through Celery."""
    from qcdata import ProgramInput, Structure
    from tcpb import TCProtobufClient

    program = ProgramInput(structure=Structure(symbols=["O", "H", "H"], geometry=WATER_BOHR), calctype="energy",
                           model={"method": "hf", "basis": "sto-3g"}, keywords={})
    doc = {"structure": {"symbols": ["O", "H", "H"], "geometry": WATER_BOHR, "units": "bohr"},
           "method": "hf", "basis": "sto-3g"}
    with tempfile.TemporaryDirectory() as workdir, \
            mini_cluster(docker.from_env(), Path(workdir), [("standin-bench", "fake", "bench", "0")],
                         tls=tls) as cluster:
        from terafleet_worker.tasks import compute

        pair = cluster["pairs"]["standin-bench"]
        port = pair.port
        pair.control(job_seconds=JOB_SECONDS)
        for _ in range(10):  # warm both paths
            with TCProtobufClient("127.0.0.1", port) as client:
                client.compute(program)
            compute.apply_async(args=[doc], queue="bench").get(timeout=60)

        direct = []
        for _ in range(count):
            started = time.perf_counter()
            with TCProtobufClient("127.0.0.1", port) as client:
                client.compute(program)
            direct.append(time.perf_counter() - started)
        through_celery = []
        for _ in range(count):
            started = time.perf_counter()
            compute.apply_async(args=[doc], queue="bench").get(timeout=60)
            through_celery.append(time.perf_counter() - started)
    return direct, through_celery


def main() -> int:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    count = int(args[0]) if args else 200
    if "--tls-only" in sys.argv:
        _, through_tls = measure(count, tls=True)
        print(f"through Celery over TLS:    {statistics.mean(through_tls) * 1000:8.2f} ms/task "
              f"(median {statistics.median(through_tls) * 1000:.2f})")
        return 0
    direct, through_celery = measure(count, tls=False)
    direct_ms = statistics.mean(direct) * 1000
    celery_ms = statistics.mean(through_celery) * 1000
    added = celery_ms - direct_ms
    print(f"tasks per path:             {count}")
    print(f"direct tcpb call:           {direct_ms:8.2f} ms/task (median {statistics.median(direct) * 1000:.2f})")
    print(f"through Celery:             {celery_ms:8.2f} ms/task "
          f"(median {statistics.median(through_celery) * 1000:.2f})")
    print(f"added by Celery:            {added:8.2f} ms/task (target <= {TARGET_MS:.0f} ms: "
          f"{'met' if added <= TARGET_MS else 'MISSED'})", flush=True)
    child = subprocess.run([sys.executable, __file__, str(count), "--tls-only"], capture_output=True, text=True,
                           check=False)
    over_tls = re.search(r"over TLS:\s+(-?[0-9.]+) ms/task", child.stdout)
    if child.returncode != 0 or not over_tls:
        print(child.stdout + child.stderr[-3000:])
        return 1
    print(child.stdout.strip())
    tls_added = float(over_tls[1]) - celery_ms
    print(f"added by TLS:               {tls_added:8.2f} ms/task (target <= {TLS_TARGET_MS:.0f} ms: "
          f"{'met' if tls_added <= TLS_TARGET_MS else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
