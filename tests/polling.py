"""Waiting for a condition in tests that drive real containers."""

from __future__ import annotations

import time


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    """Call check() until it returns something true, and return that; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - kept for the message
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s (last error: {last})")
