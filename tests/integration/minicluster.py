"""A small real cluster on this machine's Docker: RabbitMQ, Redis, TeraChem stand-ins and paired workers.

Everything runs from the project's images on a Docker network of its own; the tests reach the broker,
the result backend and the stand-ins only through ports published on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "standin"))
sys.path.insert(0, str(REPO / "tests"))
from polling import wait_for  # noqa: E402  (re-exported to the tests)

RUN_ID = uuid.uuid4().hex[:8]
LABEL = {"org.terafleet.test": f"integration-{RUN_ID}"}
BROKER_CONF = "default_user = terafleet\ndefault_pass = secret\n"
# With TLS (as the broker role configures it): AMQP over TLS only, Redis over TLS only.
BROKER_TLS_CONF = ("listeners.tcp = none\nlisteners.ssl.default = 5671\nssl_options.cacertfile = /tls/ca.crt\n"
                   "ssl_options.certfile = /tls/server.crt\nssl_options.keyfile = /tls/server.key\n"
                   "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n")
BACKEND_TLS_COMMAND = ["redis-server", "--protected-mode", "no", "--port", "0", "--tls-port", "6379",
                       "--tls-cert-file", "/tls/server.crt", "--tls-key-file", "/tls/server.key",
                       "--tls-ca-cert-file", "/tls/ca.crt", "--tls-auth-clients", "no"]
# Short leases: a run lost with its worker is taken up again within seconds (the default is 30 s).
LEASE_SECONDS = "4"
# The workers prove they reach the broker every second, and fail their health check after 5 s without.
ALIVE = {"TERAFLEET_ALIVE_INTERVAL": "1", "TERAFLEET_ALIVE_MAX_AGE": "5"}
# (name, backend, queues, GPUs): the PySCF-backed pair also serves chem-farm with a second one, so work sent
# there (a farm Hessian) spreads over two servers.
PAIRS = (("standin-a", "fake", "terachem", "0"), ("standin-b", "fake", "terachem", "1"),
         ("standin-chem", "pyscf", "chemistry,chem-farm", "2,3"), ("standin-chem2", "pyscf", "chem-farm", "4"))
# The worker running the CPU programs (PySCF, xTB) in its own processes, from the cpu queue, two at a time.
CPU_WORKER = {"name": "worker-cpu", "programs": "pyscf,xtb", "queues": "cpu", "concurrency": "2"}
CPU_WORKER_NAME = "cpu@it-node-programs"


@dataclass
class Pair:
    """One TeraChem stand-in and the Celery worker paired with it."""

    name: str
    standin: docker.models.containers.Container
    worker: docker.models.containers.Container | None
    volume: str
    queue: str

    @property
    def port(self) -> int:
        """The stand-in's TCPB port on 127.0.0.1; Docker picks a new one at every restart."""
        return published_port(self.standin, "11111/tcp")

    @property
    def server(self) -> str:
        return f"{self.name}:11111"

    @property
    def worker_name(self) -> str:
        return f"terachem@it-node-{self.name}"

    def control(self, **switches) -> None:
        """Write the stand-in's fault switches file in its scratch directory (empty: clear them)."""
        body = json.dumps(switches)
        self.standin.exec_run(["sh", "-c", f"printf '%s' '{body}' > /scratch/standin-control.json"])


def published_port(container, port: str) -> int:
    container.reload()
    return int(container.attrs["NetworkSettings"]["Ports"][port][0]["HostPort"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tls_files(workdir: Path) -> Path:
    """A CA, and a certificate it signs for the broker and backend under every name the cluster reaches
    them by, in workdir/tls (ca.crt, server.crt, server.key)."""
    from certificates import CA

    directory = workdir / "tls"
    directory.mkdir()
    ca = CA("mini cluster CA")
    cert, key = ca.server("127.0.0.1", "broker", "backend")
    for name, text in (("ca.crt", ca.pem), ("server.crt", cert), ("server.key", key)):
        (directory / name).write_text(text)
        (directory / name).chmod(0o644)
    directory.chmod(0o755)
    return directory


@contextlib.contextmanager
def mini_cluster(client, workdir: Path, pair_specs, tls: bool = False, cpu_worker: dict | None = None):
    """Start broker, backend and (name, backend, queue, gpus) stand-in/worker pairs, and with `cpu_worker` a
    worker for the CPU programs; remove all at exit. With `tls`, the broker and backend speak TLS only, and
    the workers and this process verify them."""
    network = client.networks.create(f"terafleet-it-{RUN_ID}", labels=LABEL)
    conf = workdir / "10-test.conf"
    conf.write_text(BROKER_CONF + (BROKER_TLS_CONF if tls else "listeners.tcp.default = 5672\n"))
    conf.chmod(0o644)
    certificates = {str(tls_files(workdir)): {"bind": "/tls", "mode": "ro"}} if tls else {}
    amqp, redis, amqp_port = ("amqps", "rediss", 5671) if tls else ("amqp", "redis", 5672)
    started = []

    def run(image, name, **kwargs):
        container = client.containers.run(image, name=f"it-{RUN_ID}-{name}", detach=True, labels=LABEL,
                                          network=network.name, **kwargs)
        network.disconnect(container)
        network.connect(container, aliases=[name])
        started.append(container)
        return container

    try:
        # A fixed host port: the tests restart the broker, and Docker would pick a new free one.
        broker = run("terafleet/broker:latest", "broker", ports={f"{amqp_port}/tcp": ("127.0.0.1", free_port())},
                     volumes={str(conf): {"bind": "/etc/rabbitmq/conf.d/10-test.conf", "mode": "ro"}, **certificates})
        backend = run("terafleet/backend:latest", "backend", command=BACKEND_TLS_COMMAND if tls else None,
                      ports={"6379/tcp": ("127.0.0.1", None)}, volumes=certificates)
        broker_port = published_port(broker, f"{amqp_port}/tcp")
        backend_port = published_port(backend, "6379/tcp")
        wait_for(lambda: broker.exec_run(["rabbitmq-diagnostics", "-q", "check_port_connectivity"]).exit_code == 0,
                 90, "RabbitMQ", interval=1.0)
        wait_for(lambda: socket.create_connection(("127.0.0.1", backend_port), timeout=1), 30, "Redis")

        pairs = {}
        for name, backend_kind, queue, gpus in pair_specs:
            volume = client.volumes.create(f"it-{RUN_ID}-{name}", labels=LABEL).name
            standin = run("terafleet/standin:latest", name, restart_policy={"Name": "unless-stopped"},
                          environment={"STANDIN_BACKEND": backend_kind, "NVIDIA_VISIBLE_DEVICES": gpus},
                          volumes={volume: {"bind": "/scratch", "mode": "rw"}},
                          ports={"11111/tcp": ("127.0.0.1", None)})
            pairs[name] = Pair(name, standin, None, volume, queue)
        connection = {"TERAFLEET_BROKER_URL": f"{amqp}://terafleet:secret@broker:{amqp_port}//",
                      "TERAFLEET_RESULT_BACKEND": f"{redis}://backend:6379/0", **ALIVE,
                      **({"TERAFLEET_TLS_CA_FILE": "/tls/ca.crt"} if tls else {})}
        names = []
        if cpu_worker:
            run("terafleet/worker:latest", cpu_worker["name"], stop_signal="SIGTERM", volumes=certificates,
                environment={**connection, "TERAFLEET_PROGRAMS": cpu_worker["programs"],
                             "TERAFLEET_QUEUES": cpu_worker["queues"],
                             "TERAFLEET_CONCURRENCY": cpu_worker["concurrency"], "TERAFLEET_NODE": "it-node",
                             "TERAFLEET_GPU_SET": "programs", "OMP_NUM_THREADS": "1",
                             "TERAFLEET_LEASE_SECONDS": LEASE_SECONDS})
            names.append(CPU_WORKER_NAME)
        for pair in pairs.values():
            pair.worker = run("terafleet/worker:latest", f"worker-{pair.name}", stop_signal="SIGTERM",
                              environment={**connection,
                                           "TERAFLEET_QUEUES": pair.queue, "TCPB_HOST": pair.name,
                                           "TCPB_PORT": "11111", "TERAFLEET_NODE": "it-node",
                                           "TERAFLEET_GPU_SET": pair.name, "TERAFLEET_RETRY_BACKOFF": "1.5",
                                           "TERAFLEET_LEASE_SECONDS": LEASE_SECONDS},
                              volumes={pair.volume: {"bind": "/scratch", "mode": "ro"}, **certificates})

        os.environ["TERAFLEET_BROKER_URL"] = f"{amqp}://terafleet:secret@127.0.0.1:{broker_port}//"
        os.environ["TERAFLEET_RESULT_BACKEND"] = f"{redis}://127.0.0.1:{backend_port}/0"
        if tls:
            os.environ["TERAFLEET_TLS_CA_FILE"] = str(workdir / "tls" / "ca.crt")
        from terafleet_worker.app import app

        names += [p.worker_name for p in pairs.values()]
        wait_for(lambda: len(app.control.ping(destination=names, timeout=1.0)) == len(names), 90,
                 "the workers", interval=1.0)
        yield {"app": app, "pairs": pairs, "client": client, "network": network, "broker": broker}
    finally:
        for container in started:
            container.remove(force=True, v=True)
        for volume in client.volumes.list(filters={"label": f"org.terafleet.test={LABEL['org.terafleet.test']}"}):
            volume.remove(force=True)
        network.remove()


def host_kill(container, signal_number: int) -> None:
    """Kill a container's main process from the host, as a crash would: Docker's restart policy applies."""
    container.reload()
    os.kill(container.attrs["State"]["Pid"], signal_number)


def started_on(result, timeout: float = 30.0) -> str:
    """Wait until a task is STARTED and return the worker it started on."""
    return wait_for(lambda: result.state == "STARTED" and result.info.get("hostname"), timeout,
                    f"task {result.id} to start", interval=0.1)
