"""The Celery application: JSON only, late acknowledgement, one task at a time per TeraChem server."""

from __future__ import annotations

from celery import Celery

from . import settings as _settings
from .alive import AliveStep
from .hold import HeldQueuesStep
from .routing import route
from .standby import StandbyStep
from .status_file import StatusFileStep

SETTINGS = _settings.load()

app = Celery("terafleet", broker=SETTINGS.broker_url, backend=SETTINGS.result_backend,
             include=["terafleet_worker.tasks"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    # A task is acknowledged when it finishes; if its worker dies, the broker hands it to another.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_concurrency=SETTINGS.concurrency,
    result_expires=SETTINGS.result_expires,
    result_extended=True,
    task_track_started=True,
    task_default_queue=SETTINGS.queues[0],
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=False,
    # A result is written however long the backend is away: Celery tries again, waits growing to 10 s.
    result_backend_always_retry=True,
    result_backend_max_retries=float("inf"),
    # Task events (received, started, succeeded, failed) and heartbeats for Flower and other monitors.
    worker_send_task_events=True,
    task_send_sent_event=True,
    # compute(program, input) goes to its program's queue (routing.py) unless the sender names one.
    task_routes=(route,),
)
# amqps:// and rediss://: each server's certificate is verified against the CA (TERAFLEET_TLS_CA_FILE).
broker_tls, backend_tls = SETTINGS.broker_tls(), SETTINGS.backend_tls()
if broker_tls:
    app.conf.broker_use_ssl = broker_tls
if backend_tls:
    app.conf.redis_backend_use_ssl = backend_tls
app.steps["consumer"].add(HeldQueuesStep)
app.steps["consumer"].add(StandbyStep)
app.steps["consumer"].add(StatusFileStep)
app.steps["consumer"].add(AliveStep)
