"""Rolling updates under a steady stream of calculations: nothing lost or run twice, a node always
serving, every container on the new images, none left drained; --limit; a node lost mid-update."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter

import pytest

from terachem_standin.backends import BOHR_PER_ANGSTROM

import scenario
from conftest import GPU_NODES, SETS, SHARED, ConsumerMonitor, Producer, ServingMonitor, in_background, own_queue
from polling import wait_for
from scenario import control, expected_energy, inspect, node, passes_check, playbook, start_playbook, water

testinfra_hosts = ["ansible://tf-ro-head"]
REGISTRY = "registry:5000/terafleet"
RELEASE = {tag: ["-e", f"terachem_image={REGISTRY}/standin:{tag}", "-e", f"celery_worker_image={REGISTRY}/worker:{tag}"]
           for tag in ("latest", "v2")}
# How long a node's servers stay down in the outage test: past the two minutes that counted retries gave
# a task; TERAFLEET_OUTAGE_SECONDS=600 runs the ten-minute outage.
OUTAGE_SECONDS = int(os.environ.get("TERAFLEET_OUTAGE_SECONDS", "150"))
FINISHED_JOBS = ("for d in /lstor/terafleet/scratch/*/server_*/job_*; do "
                 "grep -qx 'Job finished' \"$d/tc.out\" 2>/dev/null && sed -n 3p \"$d/geom.xyz\"; done; true")


def oxygen_line(doc: dict) -> str:
    """The oxygen line of the geom.xyz the stand-in writes for this calculation (Angstrom, 10 decimals)."""
    x, y, z = (c / BOHR_PER_ANGSTROM for c in doc["structure"]["geometry"][:3])
    return f"{'O':<2} {x:16.10f} {y:16.10f} {z:16.10f}"


def finished_jobs() -> Counter:
    """How many times each geometry was computed to the end, over every server's scratch on both nodes."""
    return Counter(line for name in GPU_NODES for line in node(name).check_output(FINISHED_JOBS).splitlines())


def worker_state(gpu_node: str, gpu_set: str) -> dict:
    return json.loads(node(gpu_node).check_output(f"docker exec worker-{gpu_set} terafleet-worker-control state"))


def containers(gpu_node: str) -> dict[str, dict]:
    host = node(gpu_node)
    return {name: inspect(host, name) for gpu_set in SETS for name in (f"terachem-{gpu_set}", f"worker-{gpu_set}")}


def test_rolling_update_under_load_loses_nothing_and_keeps_a_node_serving(celery_app, compute):
    monitor = ServingMonitor(celery_app)
    consumers = ConsumerMonitor(celery_app)
    producer = Producer(compute, period=1.0, first_scale=1.0)
    threads = [in_background(monitor.run), in_background(consumers.run), in_background(producer.run)]
    time.sleep(5)
    started = time.monotonic()
    result = playbook("rolling_update.yml", *RELEASE["v2"], timeout=1500)
    finished = time.monotonic()
    time.sleep(5)
    producer.stop.set()
    monitor.stop.set()
    consumers.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert result.returncode == 0, result.stdout[-5000:]
    report = " ".join(result.stdout.split())  # the YAML callback wraps long messages
    for gpu_node in GPU_NODES:
        assert re.search(rf"{gpu_node} updated in [0-9.]+ s, of which [0-9.]+ s waiting for running calculations; "
                         r"its images came in [0-9.]+ s before the drain", report), result.stdout[-3000:]

    values = [(doc, outcome.get(timeout=300)) for doc, outcome in producer.submitted]
    assert len(values) >= 20, f"only {len(values)} calculations were submitted during the update"
    for doc, value in values:
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
    computed = finished_jobs()
    twice = [oxygen_line(doc) for doc, _ in values if computed[oxygen_line(doc)] != 1]
    assert not twice, f"computed other than exactly once: {[(line, computed[line]) for line in twice]}"

    during = [(at, replies, serving) for at, replies, serving in monitor.samples if started <= at <= finished]
    # Dense enough that a node drained while the other was not serving could not slip between samples.
    times = [started] + [at for at, _, _ in during] + [finished]
    assert len(during) >= 10 and max(b - a for a, b in zip(times, times[1:], strict=False)) < 10, monitor.samples
    assert all(serving for _, _, serving in during), [s for s in during if not s[2]]
    for gpu_node in GPU_NODES:
        assert any(gpu_node not in serving for _, _, serving in during), f"{gpu_node} was never drained"
    for gpu_node in GPU_NODES:
        for name, info in containers(gpu_node).items():
            image = f"{REGISTRY}/{'standin' if name.startswith('terachem') else 'worker'}:v2"
            assert info["Config"]["Image"] == image, (gpu_node, name, info["Config"]["Image"])
            assert info["Config"]["Labels"]["org.terafleet.release"] == "v2"
        for gpu_set in SETS:
            assert "terachem" in worker_state(gpu_node, gpu_set)["queues"], f"{gpu_node} {gpu_set} left drained"
    assert_new_workers_took_only_their_own_queue_until_resumed(consumers.samples)


def assert_new_workers_took_only_their_own_queue_until_resumed(samples: list) -> None:
    """From the broker's consumer counts: while a node's workers are replaced, the shared queue keeps the
    drained count until the node is resumed after its gate, and each new worker consumed its own queue
    before that."""
    everyone = len(GPU_NODES) * len(SETS)
    assert len(samples) >= 20 and samples[0][1][SHARED] == everyone, samples[:3]
    for gpu_node in GPU_NODES:
        own = [own_queue(gpu_node, gpu_set) for gpu_set in SETS]
        replaced = next((i for i, (_, counts) in enumerate(samples) if any(counts[q] == 0 for q in own)), None)
        assert replaced is not None, f"{gpu_node}'s workers were never seen replaced"
        resumed = next((i for i in range(replaced, len(samples)) if samples[i][1][SHARED] > everyone - len(SETS)),
                       len(samples))
        window = samples[replaced:resumed]
        assert all(counts[SHARED] <= everyone - len(SETS) for _, counts in window)
        assert resumed < len(samples), f"{gpu_node} was never resumed"
        held = [at for at, counts in window if all(counts[q] == 1 for q in own)]
        # Each new worker consumed its own queue (the gate's calculation went through it) before any of
        # the node's workers took the shared queue again.
        assert held and samples[resumed][0] - held[0] >= 0.5, (gpu_node, window[-5:], samples[resumed])


def test_status_reports_a_drained_worker(tmp_path):
    gpu_node, gpu_set = GPU_NODES[0], SETS[0]
    node(gpu_node).check_output(f"docker exec worker-{gpu_set} terafleet-worker-control drain terachem")
    try:
        report = tmp_path / "status.json"
        result = playbook("status.yml", "-e", f"status_json_file={report}", timeout=600)
        assert result.returncode == 0, result.stdout[-3000:]
    finally:
        node(gpu_node).check_output(f"docker exec worker-{gpu_set} terafleet-worker-control resume terachem")
    states = {(entry["node"], row["gpu_set"]): row["worker_state"]
              for entry in json.loads(report.read_text()) for row in entry.get("servers", [])}
    assert states.pop((gpu_node, gpu_set)) == "drained"
    assert set(states.values()) <= {"idle", "busy"}, states


def test_limit_updates_only_the_named_node(compute):
    first, second = GPU_NODES
    before = {name: containers(name) for name in GPU_NODES}
    result = playbook("rolling_update.yml", "-vvv", "--limit", second, *RELEASE["v2"],
                      "-e", "celery_worker_result_expires=86400", timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    assert f"[{first}]" not in result.stdout
    # Everything it registers and prints, at -vvv, holds no password and no license.
    for secret in [*scenario.secrets("rolling").values(), "TERACHEM-TEST-LICENSE"]:
        assert secret not in result.stdout + result.stderr
    after = {name: containers(name) for name in GPU_NODES}
    assert {k: v["Id"] for k, v in after[first].items()} == {k: v["Id"] for k, v in before[first].items()}
    for gpu_set in SETS:
        worker = after[second][f"worker-{gpu_set}"]
        assert worker["Id"] != before[second][f"worker-{gpu_set}"]["Id"]
        assert "TERAFLEET_RESULT_EXPIRES=86400" in worker["Config"]["Env"]
        assert after[second][f"terachem-{gpu_set}"]["Id"] == before[second][f"terachem-{gpu_set}"]["Id"]
        assert "terachem" in worker_state(second, gpu_set)["queues"]
    docs = [water(1.1 + i * 1e-4) for i in range(4)]
    for doc, outcome in [(doc, compute.apply_async(args=[doc], queue="terachem")) for doc in docs]:
        assert outcome.get(timeout=120)["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)


def test_a_node_whose_servers_are_down_keeps_its_own_queue_while_the_other_serves_the_shared(compute):
    down, other = GPU_NODES
    host = node(down)
    workers_started = {gpu_set: inspect(host, f"worker-{gpu_set}")["State"]["StartedAt"] for gpu_set in SETS}
    servers = " ".join(f"terachem-{gpu_set}" for gpu_set in SETS)
    host.check_output(f"docker stop --time 10 {servers}")
    stopped_at = time.monotonic()
    try:
        own = [(gpu_set, doc, compute.apply_async(args=[doc], queue=own_queue(down, gpu_set)))
               for gpu_set, doc in zip(SETS, (water(1.41), water(1.42)), strict=True)]
        shared = [(doc, compute.apply_async(args=[doc], queue=SHARED)) for doc in (water(1.43 + i / 100)
                                                                                  for i in range(6))]
        for doc, outcome in shared:
            value = outcome.get(timeout=max(OUTAGE_SECONDS - 20, 30))
            assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
            assert value["provenance"]["node"] == other
        assert time.monotonic() - stopped_at < OUTAGE_SECONDS, "the shared queue was not served during the outage"
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - stopped_at), 0))
        # Waiting, not failed: the wait is budgeted in time (celery_worker_unavailable_timeout, 6 h).
        assert not any(outcome.ready() for _, _, outcome in own), [outcome.state for _, _, outcome in own]
    finally:
        host.check_output(f"docker start {servers}")
    for gpu_set, doc, outcome in own:
        value = outcome.get(timeout=300)
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
        assert (value["provenance"]["node"], value["provenance"]["gpu_set"]) == (down, gpu_set)
    # The workers stood by: healthy, not restarted, taking the shared queue again.
    for gpu_set in SETS:
        assert inspect(host, f"worker-{gpu_set}")["State"]["StartedAt"] == workers_started[gpu_set]
        wait_for(lambda gpu_set=gpu_set: SHARED in worker_state(down, gpu_set)["queues"], 60,
                 f"worker-{gpu_set} to take the shared queue again")


def test_a_release_that_fails_the_gate_takes_no_shared_work_and_reports_its_own_error(celery_app):
    gpu_node = GPU_NODES[0]
    consumers = ConsumerMonitor(celery_app)
    thread = in_background(consumers.run)
    wait_for(lambda: consumers.samples, 30, "the first consumer count")
    everyone = consumers.shared_consumers()
    assert everyone == len(GPU_NODES) * len(SETS)
    control(gpu_node, SETS[0], crash_on_start=True)
    try:
        result = playbook("rolling_update.yml", "--limit", gpu_node, *RELEASE["latest"],
                          "-e", "rolling_update_gate_timeout=30", timeout=900)
        assert result.returncode != 0, result.stdout[-5000:]
        failure = re.search(rf"{gpu_node}: rolling update failed at (.*)", result.stdout)
        assert failure, result.stdout[-5000:]
        assert failure[1].startswith("'Check that every server answered': not answering its health check 30 s "
                                     "after the update"), failure[1]
        assert f"terachem-{SETS[0]} " in failure[1] and f"terachem-{SETS[1]} " not in failure[1], failure[1]
        assert "Could not resume" not in failure[1], failure[1]
        workers = ", ".join(f"worker-{gpu_set}" for gpu_set in SETS)
        assert f"take only their own queues until rolling_update.yml passes or terafleet-worker-control " \
               f"resume: {workers}." in " ".join(failure[1].split()), failure[1]
        # The new worker whose server is healthy answers, on its own queue only; the shared queue keeps
        # the other node's consumers alone.
        assert worker_state(gpu_node, SETS[1])["queues"] == [own_queue(gpu_node, SETS[1])]
        time.sleep(3)
        assert all(counts[SHARED] == everyone - len(SETS) for _, counts in consumers.samples[-5:]), \
            consumers.samples[-5:]
    finally:
        consumers.stop.set()
        thread.join(timeout=30)
        control(gpu_node, SETS[0])
        host = node(gpu_node)
        host.run(f"/usr/local/sbin/terafleet-watchdog --reset terachem-{SETS[0]}; docker start terachem-{SETS[0]}")
    wait_for(lambda: passes_check(node(gpu_node), f"terachem-{SETS[0]}"), 180, "the server back")
    wait_for(lambda: node(gpu_node).run(f"docker exec worker-{SETS[0]} terafleet-worker-control state").rc == 0,
             360, "its worker back")
    for gpu_set in SETS:
        resumed = node(gpu_node).check_output(f"docker exec worker-{gpu_set} terafleet-worker-control resume terachem")
        assert "terachem" in json.loads(resumed.splitlines()[-1])["queues"]


def test_node_lost_mid_update_stops_the_play_and_the_other_node_keeps_serving(celery_app, compute):
    lost, other = GPU_NODES
    other_before = {k: v["Id"] for k, v in containers(other).items()}
    control(lost, SETS[0], job_seconds=90)
    held = compute.apply_async(args=[water(1.3)], queue=f"terachem.{lost}.{SETS[0]}")
    wait_for(lambda: held.state == "STARTED", 60, "the long calculation on the first node", interval=0.2)
    run = start_playbook("rolling_update.yml", *RELEASE["latest"])
    held_by = f"terachem@{lost}-{SETS[0]}"

    def drained() -> bool:
        queues = (celery_app.control.inspect([held_by], timeout=2.0).active_queues() or {}).get(held_by)
        return queues is not None and "terachem" not in {q["name"] for q in queues}

    try:
        wait_for(drained, 300, f"the update to drain {lost}", interval=0.5)
    finally:
        subprocess.run(["docker", "stop", "--time", "3", lost], check=True, capture_output=True)
    output, _ = run.communicate(timeout=600)
    assert run.returncode != 0, output[-5000:]
    rolling = output.split("PLAY [Roll the compute layer over the GPU nodes]", 1)[1]
    recap = re.search(rf"^{lost}\s+: ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", rolling, re.M)
    assert recap and int(recap[1]) + int(recap[2]) >= 1, rolling[-5000:]
    assert f"[{other}]" not in rolling, "the play went on to the second node"
    assert {k: v["Id"] for k, v in containers(other).items()} == other_before
    for gpu_set in SETS:
        assert "terachem" in worker_state(other, gpu_set)["queues"], f"{other} {gpu_set} left drained"
    docs = [water(1.2 + i * 1e-4) for i in range(4)]
    for doc, outcome in [(doc, compute.apply_async(args=[doc], queue="terachem")) for doc in docs]:
        value = outcome.get(timeout=180)
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
        assert value["provenance"]["node"] == other
