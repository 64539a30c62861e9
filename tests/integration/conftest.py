"""Fixtures: one mini cluster (see minicluster.py) shared by the integration tests of a session."""

from __future__ import annotations

import os

import docker
import pytest

from minicluster import CPU_WORKER, PAIRS, mini_cluster, wait_for

IMAGES = ("terafleet/broker:latest", "terafleet/backend:latest", "terafleet/standin:latest", "terafleet/worker:latest")


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env()
    try:
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"integration tests need a Docker engine: {error}")
    for image in IMAGES:
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"{image} is missing; run bin/build-images first")
    return client


@pytest.fixture(scope="session")
def cluster(docker_client, tmp_path_factory):
    # TERAFLEET_IT_TLS=1: the broker and backend speak TLS only, as on a converged cluster.
    tls = os.environ.get("TERAFLEET_IT_TLS") == "1"
    with mini_cluster(docker_client, tmp_path_factory.mktemp("broker"), PAIRS, tls=tls,
                      cpu_worker=CPU_WORKER) as running:
        yield running


@pytest.fixture()
def pairs(cluster):
    """The cluster's stand-in/worker pairs; after the test, their fault switches cleared and every worker
    running and answering again."""
    pairs = cluster["pairs"]
    yield pairs
    for pair in pairs.values():
        pair.control()
        pair.worker.reload()
        if pair.worker.status != "running":
            pair.worker.start()
    names = [p.worker_name for p in pairs.values()]
    wait_for(lambda: len(cluster["app"].control.ping(destination=names, timeout=1.0)) == len(names), 60,
             "the workers after the test", interval=1.0)
