"""Every setting the worker reads, from the environment, in one place."""

from __future__ import annotations

import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from .chemistry import Limits
from .programs import PROGRAMS


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None


def _secret(name: str, default: str) -> str:
    """A setting that holds a password: read from the file NAME_FILE names (a read-only file the node
    keeps out of the container's environment), else from NAME itself."""
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return os.environ.get(name, default)
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise SystemExit(f"{name}_FILE: cannot read {path}: {error.strerror}") from None
    if not value:
        raise SystemExit(f"{name}_FILE: {path} is empty")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    # Both URLs hold passwords: on a node they come from files (TERAFLEET_BROKER_URL_FILE, ..._FILE).
    broker_url: str = field(default_factory=lambda: _secret("TERAFLEET_BROKER_URL", "amqp://guest@localhost//"))
    result_backend: str = field(default_factory=lambda: _secret("TERAFLEET_RESULT_BACKEND",
                                                                "redis://localhost:6379/0"))
    # The CA that signed the broker's and backend's certificates (amqps://, rediss://); empty: the system's.
    tls_ca_file: str = field(default_factory=lambda: os.environ.get("TERAFLEET_TLS_CA_FILE", ""))
    queues: tuple[str, ...] = field(default_factory=lambda: tuple(
        q.strip() for q in os.environ.get("TERAFLEET_QUEUES", "terachem").split(",") if q.strip()))
    concurrency: int = field(default_factory=lambda: _int("TERAFLEET_CONCURRENCY", 1))
    # The programs this worker runs (programs.py): terachem through its paired server, or CPU programs
    # (pyscf, xtb) in its own processes, which need no server.
    programs: tuple[str, ...] = field(default_factory=lambda: tuple(
        p.strip() for p in os.environ.get("TERAFLEET_PROGRAMS", "terachem").split(",") if p.strip()))
    result_expires: int = field(default_factory=lambda: _int("TERAFLEET_RESULT_EXPIRES", 7 * 24 * 3600))
    # The paired TeraChem server, under the names the tcpb client itself reads.
    server_host: str = field(default_factory=lambda: os.environ.get("TCPB_HOST", "127.0.0.1"))
    server_port: int = field(default_factory=lambda: _int("TCPB_PORT", 11111))
    # Where the server's scratch is mounted in this container (read-only), to read a failed job's tc.out.
    scratch_dir: Path = field(default_factory=lambda: Path(os.environ.get("TERAFLEET_SCRATCH_DIR", "/scratch")))
    node: str = field(default_factory=lambda: os.environ.get("TERAFLEET_NODE", socket.gethostname()))
    gpu_set: str = field(default_factory=lambda: os.environ.get("TERAFLEET_GPU_SET", "cpu"))
    # Waiting for the server while it restarts, is busy or down: retries with an exponential backoff (base
    # and cap in seconds) until this long after the task's first try.
    unavailable_timeout: float = field(default_factory=lambda: _float("TERAFLEET_UNAVAILABLE_TIMEOUT", 6 * 3600.0))
    retry_backoff: float = field(default_factory=lambda: _float("TERAFLEET_RETRY_BACKOFF", 2.0))
    retry_backoff_max: float = field(default_factory=lambda: _float("TERAFLEET_RETRY_BACKOFF_MAX", 60.0))
    # One run per task (ledger.py): the lease a run renews, runs lost with their worker process and server
    # crashes during the task's job before it fails for good.
    lease_seconds: float = field(default_factory=lambda: _float("TERAFLEET_LEASE_SECONDS", 30.0))
    max_lost_runs: int = field(default_factory=lambda: _int("TERAFLEET_MAX_LOST_RUNS", 2))
    max_server_crashes: int = field(default_factory=lambda: _int("TERAFLEET_MAX_SERVER_CRASHES", 2))
    # What one calculation may hold (chemistry.Limits).
    limits: Limits = field(default_factory=lambda: Limits(max_atoms=_int("TERAFLEET_MAX_ATOMS", 10000),
                                                          max_bytes=_int("TERAFLEET_MAX_INPUT_BYTES", 4 * 2**20)))
    # Where the worker's processes leave marks for each other (standby.py), and how often a worker whose
    # server is unavailable asks it again.
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("TERAFLEET_STATE_DIR", "/tmp/terafleet")))
    standby_interval: float = field(default_factory=lambda: _float("TERAFLEET_STANDBY_INTERVAL", 5.0))
    # How long the entry point waits for the server before starting Celery anyway.
    server_wait: float = field(default_factory=lambda: _float("TERAFLEET_SERVER_WAIT", 300.0))
    status_timeout: float = field(default_factory=lambda: _float("TERAFLEET_STATUS_TIMEOUT", 5.0))
    # How often the worker proves it reaches the broker for its health check (alive.py), and how old that
    # proof may be before the check (terafleet-healthcheck, which reads TERAFLEET_ALIVE_MAX_AGE) fails.
    alive_interval: float = field(default_factory=lambda: _float("TERAFLEET_ALIVE_INTERVAL", 20.0))
    alive_max_age: float = field(default_factory=lambda: _float("TERAFLEET_ALIVE_MAX_AGE", 60.0))

    @property
    def worker_name(self) -> str:
        """The name the worker answers to: terachem@<node>-<set> where it drives a TeraChem server,
        cpu@<node>-<name> where it runs CPU programs only."""
        return f"{'terachem' if self.drives_server else 'cpu'}@{self.node}-{self.gpu_set}"

    @property
    def drives_server(self) -> bool:
        return "terachem" in self.programs

    @property
    def server(self) -> str:
        return f"{self.server_host}:{self.server_port}"

    def broker_tls(self) -> dict | None:
        """Celery's broker_use_ssl for an amqps:// broker: the certificate verified against the CA and the
        broker URL's host name; None for plaintext."""
        if not self.broker_url.startswith("amqps://"):
            return None
        return {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None,
                **({"ca_certs": self.tls_ca_file} if self.tls_ca_file else {})}

    def backend_tls(self) -> dict | None:
        """redis-py's (and Celery's redis_backend_use_ssl) options for a rediss:// backend; None for plaintext."""
        if not self.result_backend.startswith("rediss://"):
            return None
        return {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True,
                **({"ssl_ca_certs": self.tls_ca_file} if self.tls_ca_file else {})}


def load() -> Settings:
    settings = Settings()
    if settings.concurrency < 1:
        raise SystemExit(f"TERAFLEET_CONCURRENCY must be at least 1, got {settings.concurrency}")
    for name, value in (("TERAFLEET_UNAVAILABLE_TIMEOUT", settings.unavailable_timeout),
                        ("TERAFLEET_LEASE_SECONDS", settings.lease_seconds),
                        ("TERAFLEET_MAX_LOST_RUNS", settings.max_lost_runs),
                        ("TERAFLEET_MAX_SERVER_CRASHES", settings.max_server_crashes),
                        ("TERAFLEET_MAX_ATOMS", settings.limits.max_atoms),
                        ("TERAFLEET_MAX_INPUT_BYTES", settings.limits.max_bytes),
                        ("TERAFLEET_STANDBY_INTERVAL", settings.standby_interval),
                        ("TERAFLEET_ALIVE_INTERVAL", settings.alive_interval)):
        if not value > 0:
            raise SystemExit(f"{name} must be above 0, got {value}")
    if not settings.queues:
        raise SystemExit("TERAFLEET_QUEUES names no queue")
    if not settings.alive_max_age > 2 * settings.alive_interval:
        raise SystemExit(f"TERAFLEET_ALIVE_MAX_AGE ({settings.alive_max_age:g}) must be more than twice "
                         f"TERAFLEET_ALIVE_INTERVAL ({settings.alive_interval:g}), or a healthy worker fails its check")
    unknown = sorted(set(settings.programs) - set(PROGRAMS))
    if unknown or not settings.programs:
        raise SystemExit(f"TERAFLEET_PROGRAMS must name programs among {', '.join(sorted(PROGRAMS))}, got "
                         f"{','.join(settings.programs)!r}")
    if settings.tls_ca_file and not os.path.isfile(settings.tls_ca_file):
        raise SystemExit(f"TERAFLEET_TLS_CA_FILE: {settings.tls_ca_file} is not a file")
    return settings
