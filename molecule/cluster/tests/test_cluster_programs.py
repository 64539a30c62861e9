"""The head, a cpu_nodes host, runs the CPU programs' worker: PySCF and xTB through the broker while every
GPU worker is busy with TeraChem, and converges that change its cores and retire it."""

from __future__ import annotations

import time

import pytest

import scenario
from conftest import GPU_NODES, SETS, inspect, playbook, wait_for

testinfra_hosts = ["ansible://tf-cl-head"]
HEAD = "tf-cl-head"
WORKER = "cpu@tf-cl-head-programs"


def program_input(method: str = "hf", basis: str | None = "sto-3g", calctype: str = "energy") -> dict:
    from terafleet_worker.reference import WATER_BOHR, WATER_SYMBOLS

    return {"structure": {"symbols": list(WATER_SYMBOLS), "geometry": [list(row) for row in WATER_BOHR]},
            "calctype": calctype, "model": {"method": method, "basis": basis}}


def environment(config: dict) -> dict:
    return dict(item.split("=", 1) for item in config["Config"]["Env"])


def healthy(host, container: str) -> bool:
    """Running and passing its health check now (Docker's own runs every five minutes)."""
    return inspect(host, container)["State"]["Running"] and scenario.passes_check(host, container)


def test_the_head_runs_the_cpu_programs_on_every_core(host):
    cores = int(host.check_output("nproc"))
    config = inspect(host, "worker-cpu")
    env = environment(config)
    assert env["TERAFLEET_PROGRAMS"] == "pyscf,xtb" and env["TERAFLEET_QUEUES"] == "cpu"
    assert env["TERAFLEET_CONCURRENCY"] == str(cores) and env["OMP_NUM_THREADS"] == "1"
    assert "TCPB_HOST" not in env
    assert config["HostConfig"]["NanoCpus"] == cores * 10**9
    assert config["HostConfig"]["Memory"] == cores * 4 * 2**30
    assert config["Config"]["Labels"]["org.terafleet.programs"] == "pyscf,xtb"
    wait_for(lambda: healthy(host, "worker-cpu"), 120, "worker-cpu to be healthy", interval=2.0)


def test_cpu_programs_answer_while_every_gpu_worker_is_busy(compute):
    from qcdata import ProgramOutput

    from terafleet_worker.reference import WATER_HF_STO3G_ENERGY

    for gpu_node in GPU_NODES:
        for gpu_set in SETS:
            scenario.control(gpu_node, gpu_set, job_seconds=30)
    try:
        busy = [compute.apply_async(args=["terachem", program_input()], queue=f"terachem.{gpu_node}.{gpu_set}")
                for gpu_node in GPU_NODES for gpu_set in SETS]
        wait_for(lambda: all(result.state == "STARTED" for result in busy), 120, "every GPU worker to be busy",
                 interval=0.5)
        started = time.monotonic()
        energy = ProgramOutput.model_validate(compute.apply_async(args=["pyscf", program_input()]).get(timeout=60))
        xtb = ProgramOutput.model_validate(
            compute.apply_async(args=["xtb", program_input("gfn2-xtb", None, "gradient")]).get(timeout=60))
        took = time.monotonic() - started
        assert energy.success and energy.data.energy == pytest.approx(WATER_HF_STO3G_ENERGY, abs=1e-6)
        assert xtb.success and len(xtb.data.gradient) == 3
        assert {o.provenance.extras["terafleet"]["worker"] for o in (energy, xtb)} == {WORKER}
        assert took < 20, f"the CPU calculations took {took:.1f} s"
        assert all(result.state == "STARTED" for result in busy), "the GPU workers were still busy throughout"
    finally:
        for gpu_node in GPU_NODES:
            for gpu_set in SETS:
                scenario.control(gpu_node, gpu_set)
    outputs = [ProgramOutput.model_validate(result.get(timeout=120)) for result in busy]
    assert all(output.success for output in outputs)
    assert {o.provenance.extras["terafleet"]["server"] for o in outputs} == {
        f"terachem-{gpu_set}:11111" for gpu_set in SETS}


def test_converges_change_the_cpu_programs_cores_then_retire_their_worker(host, compute):
    from qcdata import ProgramOutput

    try:
        one = playbook("site.yml", "--limit", HEAD, "-e", "celery_worker_cpu_program_cores=1")
        assert one.returncode == 0, one.stdout[-3000:]
        config = inspect(host, "worker-cpu")
        assert config["HostConfig"]["NanoCpus"] == 10**9 and environment(config)["TERAFLEET_CONCURRENCY"] == "1"
        wait_for(lambda: healthy(host, "worker-cpu"), 120, "the recreated worker-cpu", interval=2.0)
        output = ProgramOutput.model_validate(compute.apply_async(args=["pyscf", program_input()]).get(timeout=120))
        assert output.success
        none = playbook("site.yml", "--limit", HEAD, "-e", "celery_worker_cpu_program_cores=0")
        assert none.returncode == 0, none.stdout[-3000:]
        assert host.check_output("docker ps -a --filter name=^worker-cpu$ --format '{{.Names}}'") == ""
        # The remote-TeraChem worker on the same host stays.
        assert host.check_output("docker ps --filter name=^worker-remote-gpu2$ --format '{{.Names}}'")
    finally:
        restored = playbook("site.yml", "--limit", HEAD)
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert environment(inspect(host, "worker-cpu"))["TERAFLEET_CONCURRENCY"] == host.check_output("nproc")
    output = ProgramOutput.model_validate(compute.apply_async(args=["pyscf", program_input()]).get(timeout=180))
    assert output.success
