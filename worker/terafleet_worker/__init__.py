"""terafleet's Celery worker: runs quantum chemistry on the TeraChem server it is paired with."""

__version__ = "0.1.0"
