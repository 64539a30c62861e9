"""Handles on the converged cluster: its nodes, its broker through the head's address, its secrets."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
import scenario  # noqa: E402
from polling import wait_for  # noqa: E402,F401  (re-exported to the tests)
from scenario import VAULT_PASSWORD, inspect, node, playbook, server_pid, water  # noqa: E402,F401  (re-exported)

GPU_NODES = ("tf-cl-gpu1", "tf-cl-gpu2")
SETS = ("gpu0-1", "gpu2-3")

celery_app, compute = scenario.broker_fixtures("cluster", "tf-cl-head")
