"""Read a Prometheus endpoint as Prometheus does, receive alerts as a chat webhook does, and ask
Alertmanager what it holds: for the scenarios' metrics and alert tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout: float = 10) -> list[tuple[str, dict, float]]:
    """Every sample at url: (name, labels, value)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    return [(sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text) for sample in family.samples]


def values(samples: list[tuple[str, dict, float]], name: str, **labels) -> list[float]:
    """The values of the samples named `name` whose labels include `labels`."""
    return [value for found, have, value in samples
            if found == name and all(have.get(key) == wanted for key, wanted in labels.items())]


def one(samples: list[tuple[str, dict, float]], name: str, **labels) -> float:
    """The one sample named `name` with `labels`; fails naming what it found otherwise."""
    found = values(samples, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@contextlib.contextmanager
def chat_receiver(scenario: str):
    """A chat-style webhook receiver (an HTTP listener) on this machine's address on the scenario's network,
    which the nodes reach: yields (url, received), each received POST's JSON body appended."""
    network = json.loads(subprocess.run(["docker", "network", "inspect", f"terafleet-{scenario}"],
                                        capture_output=True, text=True, check=True).stdout)[0]
    gateway = network["IPAM"]["Config"][0]["Gateway"]
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer((gateway, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{gateway}:{server.server_port}/hooks/terafleet", received
    finally:
        server.shutdown()
        server.server_close()


def alertmanager_alerts(url: str, name: str) -> list[dict]:
    """The alerts named `name` Alertmanager holds, through its API."""
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=10) as response:
        return [alert for alert in json.load(response) if alert["labels"].get("alertname") == name]
