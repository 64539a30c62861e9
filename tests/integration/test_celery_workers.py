"""Calculations through RabbitMQ, Celery workers and Redis to paired TeraChem stand-ins: none lost."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from terachem_standin.backends import BOHR_PER_ANGSTROM, Job, fake
from terafleet_worker.reference import WATER_BOHR, WATER_SYMBOLS, water_flat
from terafleet_worker.reference import WATER_HF_STO3G_ENERGY as CRAWFORD_STO3G_ENERGY

from minicluster import host_kill, started_on, wait_for


def water(scale: float = 1.0, calctype: str = "energy", **overrides) -> dict:
    """Water in Angstrom (the worker converts to Bohr), optionally stretched."""
    geometry = [x / BOHR_PER_ANGSTROM for x in water_flat(scale)]
    doc = {"structure": {"symbols": ["O", "H", "H"], "geometry": [geometry[i:i + 3] for i in range(0, 9, 3)],
                         "units": "angstrom"}, "method": "hf", "basis": "sto-3g", "calctype": calctype}
    doc.update(overrides)
    return doc


def expected_fake_energy(doc: dict) -> float:
    flat = [x * BOHR_PER_ANGSTROM for row in doc["structure"]["geometry"] for x in row]
    return fake(Job(doc["structure"]["symbols"], flat, 0, 1, True, "HF", "sto-3g", False)).energy


@pytest.fixture()
def send(cluster):
    from terafleet_worker.tasks import compute

    def submit(doc: dict, queue: str = "terachem"):
        return compute.apply_async(args=[doc], queue=queue)

    return submit


def test_fifty_calculations_over_two_workers_all_correct(send, pairs):
    rng = random.Random(7)
    docs = [water(scale=rng.uniform(0.9, 1.2)) for _ in range(50)]
    results = [send(doc) for doc in docs]
    servers = {}
    for doc, result in zip(docs, results, strict=True):
        value = result.get(timeout=180)
        assert value["energy"] == pytest.approx(expected_fake_energy(doc), abs=1e-9)
        provenance = value["provenance"]
        assert provenance["server"] in ("standin-a:11111", "standin-b:11111")
        assert provenance["worker"] == f"terachem@it-node-{provenance['server'].split(':')[0]}"
        servers.setdefault(provenance["server"], []).append(provenance["job_dir"])
    assert set(servers) == {"standin-a:11111", "standin-b:11111"}, "both servers should have computed"
    for name, job_dirs in servers.items():
        standin = pairs[name.split(":")[0]].standin
        for job_dir in job_dirs[:5]:
            assert standin.exec_run(["test", "-f", f"/scratch/{job_dir}/tc.out"]).exit_code == 0, job_dir


def test_real_chemistry_through_celery_in_angstrom(send, pairs):
    value = send(water(), queue="chemistry").get(timeout=120)
    assert math.isclose(value["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6), value["energy"]
    assert value["provenance"]["server"] == "standin-chem:11111"
    gradient = send(water(calctype="gradient"), queue="chemistry").get(timeout=120)["gradient"]
    assert len(gradient) == 3 and abs(sum(sum(row) for row in gradient)) < 1e-6


def test_server_killed_mid_task_is_restarted_and_the_task_retries(send, pairs):
    pair = pairs["standin-chem"]
    pair.control(job_seconds=3)
    result = send(water(), queue="chemistry")
    started_on(result)
    time.sleep(1.0)
    host_kill(pair.standin, signal.SIGKILL)
    value = result.get(timeout=120)
    assert math.isclose(value["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6)
    assert value["provenance"]["retries"] >= 1


def long_task_started(send, pairs):
    """Send a 4-second calculation to the shared queue; return it, and the pair whose worker took it."""
    for pair in (pairs["standin-a"], pairs["standin-b"]):
        pair.control(job_seconds=4)
    result = send(water())
    worker = started_on(result)
    return result, next(p for p in pairs.values() if p.worker_name == worker)


def test_worker_killed_mid_task_the_other_worker_delivers(send, pairs):
    result, victim_pair = long_task_started(send, pairs)
    victim = victim_pair.worker_name
    host_kill(victim_pair.worker, signal.SIGKILL)
    value = result.get(timeout=120)
    assert value["provenance"]["worker"] != victim
    assert value["energy"] == pytest.approx(expected_fake_energy(water()), abs=1e-9)


def jobs_run(pair) -> int:
    """How many jobs the pair's stand-in has started, from the job directories in its scratch."""
    listing = pair.standin.exec_run(["sh", "-c", "ls -d /scratch/server_*/job_* 2>/dev/null | wc -l"])
    return int(listing.output.decode().strip())


def test_broker_restart_mid_calculation_runs_each_task_once(cluster, send, pairs):
    shared = (pairs["standin-a"], pairs["standin-b"])
    for pair in shared:
        pair.control(job_seconds=8)
    before = sum(jobs_run(pair) for pair in shared)
    docs = [water(1.0 + i / 50) for i in range(2)]
    results = [send(doc) for doc in docs]
    assert {started_on(result) for result in results} == {pair.worker_name for pair in shared}
    cluster["broker"].restart(timeout=10)
    values = [result.get(timeout=180) for result in results]
    for doc, value in zip(docs, values, strict=True):
        assert value["energy"] == pytest.approx(expected_fake_energy(doc), abs=1e-9)
    assert all(result.state == "SUCCESS" for result in results)
    # The broker delivers both again after its restart: the redelivered copies must not compute.
    time.sleep(12)
    assert all(result.state == "SUCCESS" for result in results)
    assert sum(jobs_run(pair) for pair in shared) - before == 2, "each task must run exactly once"
    assert send(water()).get(timeout=60)["energy"] == pytest.approx(expected_fake_energy(water()), abs=1e-9)


def kill_pool_process(pair) -> None:
    """Kill the Celery pool process running the worker's task (the child of PID 1), as an out-of-memory
    kill or a crash in a library does; Celery's main process lives on and starts a new one."""
    result = pair.worker.exec_run(["sh", "-c", "kill -9 $(cat /proc/1/task/*/children)"])
    assert result.exit_code == 0, result.output


def test_a_task_that_kills_its_worker_process_fails_after_two_runs(send, pairs):
    pair = pairs["standin-chem"]
    pair.control(job_seconds=30)
    before = jobs_run(pair)
    result = send(water(1.03), queue="chemistry")
    for run in (1, 2):
        wait_for(lambda run=run: jobs_run(pair) - before == run, 60, f"run {run} of the task", interval=0.2)
        kill_pool_process(pair)
    with pytest.raises(Exception) as error:
        result.get(timeout=120)
    assert type(error.value).__name__ == "WorkerLost"
    assert "2 runs of this task ended with their worker process dying" in str(error.value)
    assert jobs_run(pair) - before == 2, "no third run"
    pair.control()
    value = send(water(), queue="chemistry").get(timeout=120)
    assert math.isclose(value["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6), "the set stays in service"


def test_worker_sigterm_finishes_its_task_then_exits(send, pairs):
    result, pair = long_task_started(send, pairs)
    worker = pair.worker_name
    pair.worker.stop(timeout=60)  # SIGTERM, then SIGKILL only after 60 s
    pair.worker.reload()
    assert pair.worker.attrs["State"]["ExitCode"] == 0
    value = result.get(timeout=30)
    assert value["provenance"]["worker"] == worker


@pytest.mark.parametrize("doc, message", [
    (water(method="not-a-method"), "method 'not-a-method' is not a TeraChem method"),
    ({"structure": {"symbols": ["O", "H"], "geometry": water_flat()}, "method": "hf", "basis": "sto-3g"},
     "structure.geometry has 9 coordinates for 2 atoms"),
    (water(calctype="hessian"), "calctype 'hessian' is not supported"),
])
def test_bad_input_fails_cleanly_and_the_worker_keeps_serving(send, pairs, doc, message):
    result = send(doc)
    with pytest.raises(Exception) as error:
        result.get(timeout=60)
    assert type(error.value).__name__ == "CalculationError"
    assert message in str(error.value)
    assert send(water()).get(timeout=60)["energy"] == pytest.approx(expected_fake_energy(water()), abs=1e-9)


def test_calculation_error_on_the_server_comes_back_with_its_message(send, pairs):
    result = send(water(basis="no-such-basis"), queue="chemistry")
    with pytest.raises(Exception) as error:
        result.get(timeout=120)
    assert type(error.value).__name__ == "CalculationError"
    assert "cannot build the molecule in basis 'no-such-basis'" in str(error.value)
    value = send(water(), queue="chemistry").get(timeout=120)
    assert math.isclose(value["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6)


def test_an_input_that_crashes_its_server_twice_fails_and_leaves_a_mark_for_the_watchdog(send, pairs):
    pair = pairs["standin-chem"]
    pair.control(crash_mid_job=True, job_seconds=1)
    pair.standin.reload()
    restarts = pair.standin.attrs["RestartCount"]
    result = send(water(1.02), queue="chemistry")
    with pytest.raises(Exception) as error:
        result.get(timeout=120)

    def running() -> bool:
        pair.standin.reload()
        return pair.standin.status == "running"
    wait_for(running, 30, "the stand-in's restart")
    pair.control()
    assert type(error.value).__name__ == "CalculationError"
    assert "TeraChem died 2 times running this input" in str(error.value)
    pair.standin.reload()
    assert pair.standin.attrs["RestartCount"] == restarts + 2
    mark = pair.worker.exec_run(["cat", f"/tmp/terafleet/input-crashes/{result.id}.json"])
    assert mark.exit_code == 0, mark.output
    assert json.loads(mark.output) | {"time": 0} == {"task": result.id, "server": pair.server, "crashes": 2,
                                                     "time": 0, "message": str(error.value)}
    value = send(water(), queue="chemistry").get(timeout=120)
    assert math.isclose(value["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6)


def control(pair, *argv: str) -> dict:
    result = pair.worker.exec_run(["terafleet-worker-control", *argv])
    assert result.exit_code == 0, result.output
    return json.loads(result.output.decode().strip().splitlines()[-1])


def test_drained_worker_finishes_its_calculation_takes_no_more_then_resumes(send, pairs):
    drained, other = pairs["standin-a"], pairs["standin-b"]
    assert control(drained, "resume", "only-a")["queues"] == ["only-a", "terachem"]
    drained.control(job_seconds=3)
    running = send(water(1.01), queue="only-a")
    wait_for(lambda: control(drained, "state")["active"] == 1, 60, "the calculation on the drained worker",
             interval=0.2)
    state = control(drained, "drain", "terachem", "only-a")
    assert state == {"worker": drained.worker_name, "queues": [], "active": 1, "reserved": 0, "scheduled": 0}
    results = [send(water(1.0 + i / 100)) for i in range(6)]
    assert {r.get(timeout=120)["provenance"]["server"] for r in results} == {other.server}
    assert running.get(timeout=120)["provenance"]["server"] == drained.server
    state = control(drained, "state")
    # The shared queue, as the broker counts it: empty, and only the other worker takes from it.
    assert state.pop("depths") == {"terachem": {"ready": 0, "consumers": 1}}
    assert state == {"worker": drained.worker_name, "queues": [], "active": 0, "reserved": 0, "scheduled": 0}
    assert control(drained, "resume", "terachem")["queues"] == ["terachem"]
    drained.control()
    control(other, "drain", "terachem")
    try:
        assert send(water(0.99)).get(timeout=120)["provenance"]["server"] == drained.server
    finally:
        control(other, "resume", "terachem")


def test_one_control_call_drains_and_resumes_several_workers_by_name(send, pairs):
    first, second = pairs["standin-a"], pairs["standin-b"]
    names = [f"--worker={first.worker_name}", f"--worker={second.worker_name}"]
    result = first.worker.exec_run(["terafleet-worker-control", "drain", "terachem", *names])
    assert result.exit_code == 0, result.output
    states = [json.loads(line) for line in result.output.decode().strip().splitlines()]
    assert [(s["worker"], s["queues"]) for s in states] == [(first.worker_name, []), (second.worker_name, [])]
    try:
        waiting = send(water(1.03))
        time.sleep(3)
        assert waiting.state == "PENDING", "a drained worker took a calculation"
    finally:
        result = second.worker.exec_run(["terafleet-worker-control", "resume", "terachem", *names])
    assert result.exit_code == 0, result.output
    states = [json.loads(line) for line in result.output.decode().strip().splitlines()]
    assert [(s["worker"], s["queues"]) for s in states] == [(first.worker_name, ["terachem"]),
                                                            (second.worker_name, ["terachem"])]
    assert waiting.get(timeout=60)["energy"] == pytest.approx(expected_fake_energy(water(1.03)), abs=1e-9)
    silent = first.worker.exec_run(["terafleet-worker-control", "state", "--worker=terachem@nowhere-gpu9",
                                    f"--worker={first.worker_name}"])
    assert silent.exit_code == 69
    assert b"worker terachem@nowhere-gpu9 did not answer through the broker" in silent.output


def test_a_drained_worker_restarts_drained_until_resumed(cluster, send, pairs):
    drained, other = pairs["standin-a"], pairs["standin-b"]

    def restart() -> None:
        drained.worker.restart(timeout=30)
        wait_for(lambda: len(cluster["app"].control.ping(destination=[drained.worker_name], timeout=1.0)) == 1,
                 120, "the restarted worker", interval=1.0)

    control(drained, "drain", "terachem")
    try:
        restart()
        # Its one queue is drained: the new Celery process consumes nothing until it is resumed.
        assert control(drained, "state")["queues"] == [], "the restarted worker took the drained queue"
        results = [send(water(1.0 + i / 50)) for i in range(4)]
        assert {r.get(timeout=120)["provenance"]["server"] for r in results} == {other.server}
    finally:
        assert control(drained, "resume", "terachem")["queues"] == ["terachem"]
    restart()
    assert control(drained, "state")["queues"] == ["terachem"], "the resume was not kept"


def test_worker_control_refuses_a_command_without_queues(pairs):
    result = pairs["standin-a"].worker.exec_run(["terafleet-worker-control", "drain"])
    assert result.exit_code == 2 and b"drain needs at least one queue" in result.output


def health(pair):
    return pair.worker.exec_run(["terafleet-healthcheck"])


def test_worker_health_check_reads_its_broker_probe_and_leaves_the_server_to_its_own(cluster, pairs):
    pair = pairs["standin-b"]
    healthy = health(pair)
    assert healthy.exit_code == 0 and healthy.output.strip() == b"worker idle", healthy.output
    pair.control(hang=True)
    hung = health(pair)
    assert hung.exit_code == 0, "a hung server is the server's health check's to report"
    cluster["broker"].pause()
    try:
        # The worker's probe gets no answer: its proof of reaching the broker ages past the maximum.
        lost = wait_for(lambda: (lambda r: r if r.exit_code == 1 else None)(health(pair)), 30,
                        "the worker's health check to fail", interval=0.5)
    finally:
        cluster["broker"].unpause()
    assert b"unhealthy: the worker last reached the broker" in lost.output
    wait_for(lambda: health(pair).exit_code == 0, 30, "the worker's health check to pass again", interval=0.5)
    # For a person: the same question through the broker, as Celery's inspect asks it.
    through = pair.worker.exec_run(["terafleet-healthcheck", "--through-broker"])
    assert through.exit_code == 0 and through.output.strip() == b"worker idle", through.output
    # The check starts no Python: a shell script reads the file the worker's own probe keeps.
    assert pair.worker.exec_run(["head", "-c", "9", "/usr/local/bin/terafleet-healthcheck"]).output == b"#!/bin/sh"


def test_a_worker_whose_server_is_down_stands_by_and_its_own_queue_waits(send, pairs):
    down, other = pairs["standin-a"], pairs["standin-b"]
    assert control(down, "resume", "only-a")["queues"] == ["only-a", "terachem"]
    down.standin.stop(timeout=5)
    try:
        # The first task worker-a takes finds its server down: worker-a stands by.
        wait_for(lambda: (send(water(1.05)).get(timeout=60), control(down, "state")["queues"] == [])[1], 120,
                 "worker-a to stand by", interval=0.5)
        standing_by = wait_for(lambda: (lambda r: r if b"standing by" in r.output else None)(health(down)), 30,
                               "the health check to say the worker stands by", interval=0.5)
        assert standing_by.exit_code == 0
        assert b"standing by: server standin-a:11111 unavailable" in standing_by.output
        started = time.monotonic()
        shared = [send(water(1.0 + i / 100)) for i in range(6)]
        assert {r.get(timeout=60)["provenance"]["server"] for r in shared} == {other.server}
        assert all(r.info["provenance"]["retries"] == 0 for r in shared), "no task bounced off worker-a"
        assert time.monotonic() - started < 30
        waiting = send(water(0.98), queue="only-a")
        time.sleep(8)
        assert waiting.state == "PENDING", "a task on the down server's own queue waits in the broker"
    finally:
        down.standin.start()
    value = waiting.get(timeout=120)
    assert value["provenance"]["server"] == down.server and value["provenance"]["retries"] == 0
    assert control(down, "state")["queues"] == ["only-a", "terachem"]
    assert control(down, "drain", "only-a")["queues"] == ["terachem"]


def test_terafleet_submit_sends_an_xyz_file_and_prints_the_result(cluster, pairs, tmp_path):
    xyz = tmp_path / "water.xyz"
    atoms = zip(WATER_SYMBOLS, WATER_BOHR, strict=True)
    xyz.write_text("3\nwater, Crawford geometry\n" + "".join(
        f"{symbol} {' '.join(f'{c / BOHR_PER_ANGSTROM:.12f}' for c in coords)}\n" for symbol, coords in atoms))
    submit = Path(sys.executable).with_name("terafleet-submit")
    result = subprocess.run([str(submit), str(xyz), "--queue", "chemistry", "--repeat", "2"], env=dict(os.environ),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2 and all(line["status"] == "SUCCESS" for line in lines)
    assert all(math.isclose(line["energy"], CRAWFORD_STO3G_ENERGY, abs_tol=1e-6) for line in lines)
    assert "2 succeeded, 0 failed" in result.stderr


def test_terafleet_submit_refuses_a_bad_file_before_sending(tmp_path):
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\nonly one atom\nO 0 0 0\n")
    submit = Path(sys.executable).with_name("terafleet-submit")
    result = subprocess.run([str(submit), str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "announces 3 atoms but lists 1" in result.stderr
