"""Rolling updates under a steady stream of calculations: nothing lost or run twice, a node always
serving, every container on the new images, none left drained; --limit; a node lost mid-update."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter

import pytest

from terachem_standin.backends import BOHR_PER_ANGSTROM

from conftest import GPU_NODES, SETS, Producer, ServingMonitor, in_background
from polling import wait_for
from scenario import control, expected_energy, inspect, node, playbook, start_playbook, water

testinfra_hosts = ["ansible://tf-ro-head"]
REGISTRY = "registry:5000/terafleet"
RELEASE = {tag: ["-e", f"terachem_image={REGISTRY}/standin:{tag}", "-e", f"celery_worker_image={REGISTRY}/worker:{tag}"]
           for tag in ("latest", "v2")}
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
    producer = Producer(compute, period=1.0, first_scale=1.0)
    threads = [in_background(monitor.run), in_background(producer.run)]
    time.sleep(5)
    started = time.monotonic()
    result = playbook("rolling_update.yml", *RELEASE["v2"], timeout=1500)
    finished = time.monotonic()
    time.sleep(5)
    producer.stop.set()
    monitor.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert result.returncode == 0, result.stdout[-5000:]
    for gpu_node in GPU_NODES:
        assert re.search(rf"{gpu_node} updated in [0-9.]+ s, of which [0-9.]+ s waiting", result.stdout)

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
    result = playbook("rolling_update.yml", "--limit", second, *RELEASE["v2"],
                      "-e", "celery_worker_result_expires=86400", timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    assert f"[{first}]" not in result.stdout
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
