"""Metrics on the converged cluster, read as Prometheus reads them: each node's node-exporter with
terafleet's textfiles (GPUs from nvidia-smi, $LSTOR as df sees it, each container's restarts, each
worker's drain) and RabbitMQ's own metrics (the shared queue's depth)."""

from __future__ import annotations

import json

from metrics import one, scrape, values

import scenario
from conftest import GPU_NODES, SETS, node, server_pid, wait_for, water

testinfra_hosts = ["ansible://tf-cl-head"]
HEAD = "tf-cl-head"
EXPORTER_PORT = 9100
RABBITMQ_METRICS_PORT = 15692


def exporter(name: str) -> list:
    return scrape(f"http://{scenario.address(name, 'cluster')}:{EXPORTER_PORT}/metrics")


def test_every_node_serves_its_metrics_on_its_cluster_address_only():
    for name in (HEAD, *GPU_NODES):
        samples = exporter(name)
        assert values(samples, "node_cpu_seconds_total"), name  # node-exporter's own
        assert one(samples, "terafleet_watchdog_docker_up") == 1, name
        listening = [line.split()[3] for line in node(name).check_output("ss -Hltn 'sport = :9100'").splitlines()]
        assert listening == [f"{scenario.address(name, 'cluster')}:9100"], listening
    head = exporter(HEAD)
    assert one(head, "terafleet_container_running", container="terafleet-rabbitmq", role="broker") == 1
    assert not values(head, "terafleet_gpus")  # the head has no GPU metrics


def test_gpu_metrics_are_the_stand_ins_answers_labelled_with_their_gpu_set():
    gpu_node = GPU_NODES[0]
    host = node(gpu_node)
    gpus = [{"utilization": 37 + index, "memory_used_mib": 1000 * index, "temperature": 50 + index}
            for index in range(4)]
    host.check_output(f"echo '{json.dumps({'gpus': gpus})}' > /etc/fake-nvidia-smi.json")
    try:
        samples = wait_for(lambda: (found := exporter(gpu_node)) and values(
            found, "terafleet_gpu_utilization_percent", gpu="3") == [40] and found, 60, "the GPUs' new utilisation")
        assert one(samples, "terafleet_gpus") == 4
        assert one(samples, "terafleet_gpu_utilization_percent", gpu="0", gpu_set=SETS[0]) == 37
        assert one(samples, "terafleet_gpu_utilization_percent", gpu="2", gpu_set=SETS[1]) == 39
        assert one(samples, "terafleet_gpu_memory_used_bytes", gpu="2") == 2000 * 1024 * 1024
        assert one(samples, "terafleet_gpu_temperature_celsius", gpu="1") == 51
    finally:
        host.check_output("rm -f /etc/fake-nvidia-smi.json")


def test_lstor_figures_are_what_df_says():
    gpu_node = GPU_NODES[1]

    def matches():
        used, avail = (int(v) for v in node(gpu_node).check_output(
            "df -B1 --output=used,avail /lstor | tail -1").split())
        samples = exporter(gpu_node)
        return (one(samples, "terafleet_lstor_used_bytes", path="/lstor") == used
                and one(samples, "terafleet_lstor_free_bytes", path="/lstor") == avail)

    # Sampled every few seconds: a calculation writing meanwhile moves df's figures on.
    wait_for(matches, 60, "$LSTOR's metrics equal to df's")


def test_a_killed_server_is_counted_as_a_restart():
    gpu_node, container = GPU_NODES[1], f"terachem-{SETS[0]}"

    def restarts():
        return one(exporter(gpu_node), "terafleet_container_restarts_total", container=container)

    # The watchdog writes its metrics when cron first starts it, up to a minute after the converge.
    before = wait_for(lambda: values(exporter(gpu_node), "terafleet_container_restarts_total", container=container),
                      90, f"{container}'s metrics from the watchdog")[0]
    # The process dies (docker kill would count as stopped on purpose, and Docker would leave it stopped).
    host = node(gpu_node)
    host.check_output(f"kill -9 {server_pid(host, container)}")
    wait_for(lambda: restarts() == before + 1, 60, f"{container}'s restart in its metrics")
    wait_for(lambda: one(exporter(gpu_node), "terafleet_container_running", container=container) == 1, 60,
             f"{container} running again")


def rabbitmq_queue(name: str) -> dict:
    samples = scrape(f"http://{scenario.address(HEAD, 'cluster')}:{RABBITMQ_METRICS_PORT}/metrics/detailed"
                     "?family=queue_coarse_metrics&family=queue_consumer_count")
    return {"ready": values(samples, "rabbitmq_detailed_queue_messages_ready", queue=name),
            "consumers": values(samples, "rabbitmq_detailed_queue_consumers", queue=name)}


def worker_names() -> list[str]:
    return [f"terachem@{gpu_node}-{gpu_set}" for gpu_node in GPU_NODES for gpu_set in SETS]


def test_the_shared_queue_depth_is_the_tasks_sent_while_every_worker_was_drained(compute):
    workers = " ".join(f"--worker {name}" for name in worker_names())
    control = f"docker exec worker-{SETS[0]} terafleet-worker-control"
    node(GPU_NODES[0]).check_output(f"{control} drain terachem {workers}")
    try:
        wait_for(lambda: rabbitmq_queue("terachem") == {"ready": [0], "consumers": [0]}, 60,
                 "the shared queue empty, with no consumer")
        # Each worker says it is drained, through its node's exporter.
        for gpu_node in GPU_NODES:
            wait_for(lambda gpu_node=gpu_node: values(exporter(gpu_node), "terafleet_worker_drained") == [1, 1], 60,
                     f"{gpu_node}'s workers drained in its metrics")
        sent = [compute.apply_async(args=[water(1.0 + i / 100)], queue="terachem") for i in range(3)]
        wait_for(lambda: rabbitmq_queue("terachem")["ready"] == [3], 60, "three tasks waiting in the shared queue")
    finally:
        node(GPU_NODES[0]).check_output(f"{control} resume terachem {workers}")
    for result in sent:
        assert result.get(timeout=180)["energy"] < 0
    wait_for(lambda: rabbitmq_queue("terachem") == {"ready": [0], "consumers": [4]}, 60, "the queue drained again")
