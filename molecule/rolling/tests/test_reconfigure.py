"""Reconfiguring a GPU node, one converge per change, while calculations keep arriving: the GPU sets
resized, a GPU excluded, explicit sets, back to the inventory's size, CPU-only workers added and their list
shortened. After each change exactly the planned containers exist and a re-run changes nothing; the
check run before it named what it would retire and create; no GPU was ever held by two running
containers; every calculation came back right, none retried because its worker was retired.
Runs before test_rolling.py (pytest takes the files in name order) and leaves the node as it found it."""

from __future__ import annotations

import json
import math
import re
import time

import pytest

from conftest import GPU_NODES, Producer, in_background
from scenario import expected_energy, node, playbook

testinfra_hosts = ["ansible://tf-ro-head"]
NODE = GPU_NODES[0]
HOOK_RECORD = "/var/log/nvidia-container-toolkit/hook.jsonl"
# They drive the node's first server by its name on the node's network; no calculation is sent to them.
CPU_WORKERS = [{"name": f"cpu-{x}", "queues": [f"cpu-{x}"], "server_host": "terachem-gpu0", "server_port": 11111}
               for x in ("a", "b")]
# (what changes, extra vars, the GPU sets planned, the CPU-only workers planned)
STEPS = [
    ("set size 1 -> 2", {"preflight_gpu_set_size": 2}, ["gpu0-1"], []),
    ("GPU 1 excluded", {"preflight_gpu_exclude": [1]}, ["gpu0"], []),
    ("explicit sets", {"preflight_gpu_sets": [[1]]}, ["gpu1"], []),
    ("back to size 1", {}, ["gpu0", "gpu1"], []),
    ("two CPU-only workers", {"celery_worker_cpu_workers": CPU_WORKERS}, ["gpu0", "gpu1"], ["cpu-a", "cpu-b"]),
    ("CPU-only workers shortened", {"celery_worker_cpu_workers": CPU_WORKERS[:1]}, ["gpu0", "gpu1"], ["cpu-a"]),
    ("back to the inventory", {}, ["gpu0", "gpu1"], []),
]


def terafleet_containers() -> dict[str, tuple[str, str]]:
    """Name -> (id, state) of every container on the node that carries terafleet's role label."""
    out = node(NODE).check_output(
        "docker ps --all --filter label=org.terafleet.role --format '{{.Names}} {{.ID}} {{.State}}'")
    return {name: (cid, state) for name, cid, state in (line.split() for line in out.splitlines())}


def planned(sets: list[str], cpu_workers: list[str]) -> set[str]:
    return ({f"terachem-{s}" for s in sets} | {f"worker-{s}" for s in sets} | {f"worker-{w}" for w in cpu_workers}
            | {"terafleet-frontend"})


def converge(tmp_path, settings: dict, *args: str):
    extra = tmp_path / "step.json"
    extra.write_text(json.dumps(settings))
    result = playbook("site.yml", "--limit", NODE, "-e", f"@{extra}", *args, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    recap = re.search(rf"^{NODE}\s+: ok=\d+\s+changed=(\d+)", result.stdout, re.M)
    assert recap, result.stdout[-3000:]
    return result.stdout, int(recap[1])


def held_intervals() -> list[tuple[float, float, set[str], str]]:
    """(start, stop, GPU indices, container id) of every run of a GPU container the toolkit's hook saw on
    the node, from its start and stop records; a container still running stops at infinity."""
    events = sorted((json.loads(line) for line in node(NODE).file(HOOK_RECORD).content_string.splitlines()),
                    key=lambda e: e["time"])
    running: dict[str, tuple[float, set[str]]] = {}
    intervals = []
    for event in events:
        if event["event"] == "start":
            assert event["id"] not in running, f"container {event['id']} started twice without a stop"
            running[event["id"]] = (event["time"], set(event["indices"]))
        elif event["id"] in running:
            start, gpus = running.pop(event["id"])
            intervals.append((start, event["time"], gpus, event["id"]))
    return intervals + [(start, math.inf, gpus, cid) for cid, (start, gpus) in running.items()]


def test_each_change_is_one_converge_that_retires_what_the_plan_no_longer_names(tmp_path, compute):
    producer = Producer(compute, period=1.0, first_scale=1.5)
    thread = in_background(producer.run)
    server_starts = sum(name.startswith("terachem-") for name in terafleet_containers())
    try:
        for what, settings, sets, cpu_workers in STEPS:
            before = terafleet_containers()
            wanted = planned(sets, cpu_workers)
            check, changed = converge(tmp_path, settings, "--check", "--diff")
            assert terafleet_containers() == before, f"{what}: the check run changed a container"
            for name in sorted(set(before) - wanted):
                assert f"{name}: retired" in check, f"{what}: the check run did not name {name} as retired"
            for name in sorted(wanted - set(before)):
                assert f"{name}: created" in check, f"{what}: the check run did not name {name} as created"

            _, changed = converge(tmp_path, settings)
            after = terafleet_containers()
            assert set(after) == wanted, f"{what}: {sorted(after)} on the node, {sorted(wanted)} planned"
            assert all(state == "running" for _, state in after.values()), f"{what}: {after}"
            # What the check run did not name as recreated (a server whose port moved is) was left running.
            for name in set(before) & wanted:
                if f"{name}: recreated" not in check:
                    assert after[name][0] == before[name][0], f"{what}: {name} was recreated unannounced"
            server_starts += sum(name.startswith("terachem-") and after[name][0] != before.get(name, ("",))[0]
                                 for name in after)
            _, changed = converge(tmp_path, settings)
            assert changed == 0, f"{what}: the re-run changed {changed}"
    finally:
        time.sleep(5)
        producer.stop.set()
        thread.join(timeout=30)

    intervals = held_intervals()
    for number, (start, stop, gpus, cid) in enumerate(intervals):
        for other_start, other_stop, other_gpus, other in intervals[number + 1:]:
            if gpus & other_gpus:
                assert stop <= other_start or other_stop <= start, (
                    f"GPU {sorted(gpus & other_gpus)} held by {cid[:12]} and {other[:12]} at once")
    # The record saw every server this test started (and those the node ran before).
    assert len(intervals) >= server_starts, (server_starts, intervals)

    assert len(producer.submitted) >= 30, f"only {len(producer.submitted)} calculations were sent"
    for doc, outcome in producer.submitted:
        value = outcome.get(timeout=300)
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
        assert value["provenance"]["retries"] == 0, f"retried on {value['provenance']}"
