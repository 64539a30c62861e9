"""Handles on the rolling scenario: its nodes, its broker, and a producer of calculations."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "standin"))
import scenario  # noqa: E402

GPU_NODES = ("tf-ro-gpu1", "tf-ro-gpu2")
SETS = ("gpu0", "gpu1")

celery_app, compute = scenario.broker_fixtures("rolling", "tf-ro-head")


@dataclass
class Producer:
    """Submits a calculation every `period` seconds to the shared queue, each with its own geometry."""

    compute: object
    period: float
    first_scale: float
    submitted: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            doc = scenario.water(self.first_scale + number * 1e-4)
            self.submitted.append((doc, self.compute.apply_async(args=[doc], queue="terachem")))
            self.stop.wait(self.period)


@dataclass
class ServingMonitor:
    """Samples, about every second, which nodes have a worker consuming the shared queue."""

    app: object
    samples: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            replies = self.app.control.inspect(timeout=2.0).active_queues() or {}
            serving = {name.split("@", 1)[1].rsplit("-", 1)[0] for name, queues in replies.items()
                       if any(q["name"] == "terachem" for q in queues)}
            self.samples.append((time.monotonic(), len(replies), serving))
            self.stop.wait(1.0)


SHARED = "terachem"


def own_queue(gpu_node: str, gpu_set: str) -> str:
    return f"terachem.{gpu_node}.{gpu_set}"


@dataclass
class ConsumerMonitor:
    """Samples, about twice a second, how many consumers the broker counts on the shared queue and on each
    worker's own queue (a passive queue.declare answers with the count)."""

    app: object
    samples: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def queues(self) -> list[str]:
        return [SHARED] + [own_queue(gpu_node, gpu_set) for gpu_node in GPU_NODES for gpu_set in SETS]

    def run(self) -> None:
        with self.app.connection_for_read() as connection:
            channel = connection.channel()
            while not self.stop.is_set():
                counts = {queue: channel.queue_declare(queue=queue, passive=True).consumer_count
                          for queue in self.queues}
                self.samples.append((time.monotonic(), counts))
                self.stop.wait(0.5)

    def shared_consumers(self) -> int:
        return self.samples[-1][1][SHARED]


def in_background(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread
