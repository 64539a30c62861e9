"""Flower on the head, as a person sees it: behind basic authentication, listing every worker (they send
task events), over the broker's TLS; read in a real browser (Debian's chromium, headless), whose
screenshot is kept in test-artifacts/."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

import scenario
from conftest import GPU_NODES, REPO, SETS, inspect, node, wait_for

testinfra_hosts = ["ansible://tf-cl-head"]
HEAD = "tf-cl-head"
ARTIFACTS = REPO / "test-artifacts"
WORKERS = [f"terachem@{gpu_node}-{gpu_set}" for gpu_node in GPU_NODES for gpu_set in SETS]


def flower_url() -> str:
    return f"http://{scenario.address(HEAD, 'cluster')}:5555"


def get(path: str, password: str | None) -> tuple[int, str]:
    request = urllib.request.Request(flower_url() + path)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"terafleet:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed: bin/prerequisites installs it")
    return found


def browse(password: str, *options: str) -> str:
    address = scenario.address(HEAD, "cluster")
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                           "--virtual-time-budget=5000", *options, f"http://terafleet:{password}@{address}:5555/"],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def test_flower_asks_for_its_password_and_lists_every_worker_in_a_browser():
    password = scenario.secrets("cluster")["flower_basic_auth_password"]
    assert get("/", None)[0] == 401
    assert get("/", "not-the-password")[0] == 401
    wait_for(lambda: all(name in get("/", password)[1] for name in WORKERS), 120, "every worker in Flower")
    page = browse(password, "--dump-dom")
    for name in WORKERS:
        assert name in page, f"{name} not in the page Flower served"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "flower-workers.png"
    screenshot.unlink(missing_ok=True)
    browse(password, f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flower_keeps_its_password_out_of_docker_and_listens_on_the_cluster_address():
    password = scenario.secrets("cluster")["flower_basic_auth_password"]
    flower = inspect(node(HEAD), "terafleet-flower")
    assert password not in repr(flower["Config"]) and password not in repr(flower["HostConfig"])
    bindings = {b["HostIp"] for entries in flower["HostConfig"]["PortBindings"].values() for b in entries}
    assert bindings == {scenario.address(HEAD, "cluster")}
    # Root only on the head, read-only in the container.
    assert node(HEAD).check_output("stat -c '%a %U' /etc/terafleet/flower /etc/terafleet/flower/auth").split() == \
        ["700", "root", "400", "root"]
