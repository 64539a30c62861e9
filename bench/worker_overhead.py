#!/usr/bin/env python3
"""Per-task overhead of going through Celery (RabbitMQ + Redis) versus a direct tcpb call.

Starts the project's mini cluster (one fake-backend TeraChem stand-in, its worker, broker and backend),
then times N calculations made directly with the tcpb client and N sent as `terafleet.compute` tasks,
one after another, and prints milliseconds per task. Target: at most 50 ms added per task.
Usage: bench/worker_overhead.py [N]   (default 200; needs Docker and bin/build-images)
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

TARGET_MS = 50.0
WATER_BOHR = [list(row) for row in reference.WATER_BOHR]


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    from qcdata import ProgramInput, Structure
    from tcpb import TCProtobufClient

    program = ProgramInput(structure=Structure(symbols=["O", "H", "H"], geometry=WATER_BOHR), calctype="energy",
                           model={"method": "hf", "basis": "sto-3g"}, keywords={})
    doc = {"structure": {"symbols": ["O", "H", "H"], "geometry": WATER_BOHR, "units": "bohr"},
           "method": "hf", "basis": "sto-3g"}
    with tempfile.TemporaryDirectory() as workdir, \
            mini_cluster(docker.from_env(), Path(workdir), [("standin-bench", "fake", "bench", "0")]) as cluster:
        from terafleet_worker.tasks import compute

        pair = cluster["pairs"]["standin-bench"]
        port = pair.port
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

    direct_ms = statistics.mean(direct) * 1000
    celery_ms = statistics.mean(through_celery) * 1000
    added = celery_ms - direct_ms
    print(f"tasks per path:             {count}")
    print(f"direct tcpb call:           {direct_ms:8.2f} ms/task (median {statistics.median(direct) * 1000:.2f})")
    print(f"through Celery:             {celery_ms:8.2f} ms/task "
          f"(median {statistics.median(through_celery) * 1000:.2f})")
    print(f"added by Celery:            {added:8.2f} ms/task (target <= {TARGET_MS:.0f} ms: "
          f"{'met' if added <= TARGET_MS else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
