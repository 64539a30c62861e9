"""container_images' wait for a node's images (tasks/wait.yml), run by Ansible against this machine's Docker
engine: an image the engine has is left alone, a missing one is pulled from a registry, and a pull that
fails or hangs stops the step naming the image."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import docker
import pytest

from minicluster import free_port

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PRESENT = "terafleet/base:bookworm"


def wait_for(images: list[str], timeout: int = 60) -> dict:
    """tasks/wait.yml on localhost for `images`, as site.yml's services play runs it after the background
    pulls; the step's result."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Wait for the node's images",
        "ansible.builtin.include_role": {"name": "terafleet.cluster.container_images", "tasks_from": "wait"},
        "vars": {"_container_images_started": images, "container_images_pull_timeout": timeout}}]}]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "wait.yml"
        path.write_text(json.dumps(play))
        result = subprocess.run([str(PLAYBOOK), "-i", "localhost,", "-c", "local", str(path),
                                 "-e", f"ansible_python_interpreter={sys.executable}"],
                                cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300)
    output = json.loads(result.stdout[result.stdout.index("{"):])
    tasks = [task for task in output["plays"][0]["tasks"] if task["task"]["name"].endswith(" : Wait for the pulls")]
    assert tasks, result.stdout[-2000:]
    return tasks[0]["hosts"]["localhost"]


@pytest.fixture()
def registry(docker_client):
    """A registry on a loopback port (Docker trusts plain HTTP there) holding a small image that this engine
    does not have under that name; yields its reference."""
    port = free_port()
    name = f"tf-it-registry-{secrets.token_hex(3)}"
    container = docker_client.containers.run("terafleet/registry:latest", name=name, detach=True,
                                             ports={"5000/tcp": ("127.0.0.1", port)})
    reference = f"127.0.0.1:{port}/terafleet/wait-test:{secrets.token_hex(3)}"
    try:
        docker_client.images.get(PRESENT).tag(reference)
        for _ in range(60):
            if not any("error" in line for line in docker_client.images.push(reference, stream=True, decode=True)):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"could not push {reference}")
        docker_client.images.remove(reference)
        yield reference
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference)
        container.remove(force=True)


def test_present_images_are_left_alone_and_missing_ones_pulled(docker_client, registry):
    # The registry image is gone from this engine: the step pulls it, and says so; the present one is not
    # pulled again (it has no registry to come from).
    result = wait_for([PRESENT, registry])
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert result["stdout_lines"] == [registry]
    assert docker_client.images.get(registry).id == docker_client.images.get(PRESENT).id

    # Everything there: nothing pulled, nothing changed.
    again = wait_for([PRESENT, registry])
    assert not again.get("failed") and again["changed"] is False and again["stdout"] == ""


def test_a_pull_that_fails_stops_the_step_naming_the_image():
    # Nothing listens on this port: Docker refuses, and the step fails with its message and the image.
    missing = f"127.0.0.1:{free_port()}/terafleet/nowhere:latest"
    result = wait_for([PRESENT, missing])
    assert result.get("failed")
    assert result["stdout"] == ""
    assert f"could not pull {missing}" in result["stderr"]
    assert "connection refused" in result["stderr"].lower()


def test_a_pull_that_hangs_stops_after_the_timeout():
    # A registry that accepts connections and never answers: the pull is cut off after the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            silent.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    held.append(silent.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        hanging = f"127.0.0.1:{silent.getsockname()[1]}/terafleet/silent:latest"
        try:
            started = time.monotonic()
            result = wait_for([hanging], timeout=3)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            thread.join()
            for connection in held:
                connection.close()
    assert result.get("failed")
    assert f"could not pull {hanging} (Docker's message above; a pull may take 3 s)" in result["stderr"]
    assert elapsed < 30
