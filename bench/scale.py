#!/usr/bin/env python3
"""Scale: a farm of 16-GPU nodes in simulation, and what each GPU set costs at rest.

Brings up a head and NODES GPU nodes with 16 stand-in GPUs each (default 4: 64 TeraChem stand-ins on the
fake backend and 64 workers), as bench/deployment.py does (systemd node containers running their own
Docker, made by the Molecule create playbook, the demo inventory's settings, sets of one GPU), and
measures, in this order:
  converge  site.yml on the fresh nodes, then the no-op re-run (changed=0);
  rolling   rolling_update.yml limited to the first GPU node, to new image references for its servers
            and workers (16 of each drained, recreated, health-gated and resumed);
  burst     1,000 calculations (ProgramInputs for terachem, the fake backend, no job time) sent at once
            to the shared queue: wall time, throughput, how many each server ran; every result must
            arrive;
  idle      IDLE_SECONDS without work: the CPU of every worker and stand-in container (their cgroups'
            cpuacct, health checks included) and of the rest of each GPU node (the node container's own
            cgroup: dockerd, containerd, the shims, the watchdog, the cron checks, systemd), per GPU set,
            as a share of one core, and each worker's and stand-in's memory (the cgroup's rss, the whole
            container);
  floor     bench/floor.sh on fresh nodes of the same shape: converge / floor.
Figures go to bench/results.md (with bench/deployment.py's table). Targets: converge / floor <= 1.5,
no-op <= 15 % of the converge, 1,000 delivered with every server used, idle CPU per set <= 0.2 % of a
core, worker memory <= 100 MB.
Usage: bench/scale.py [--nodes N] [--idle-seconds S] [--only converge,rolling,burst,idle,floor]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deployment  # noqa: E402  (the bench's cluster, inventory, playbook and results helpers)
from deployment import REPO, cluster, inventory, passwords, playbook, row, save  # noqa: E402

GPUS = 16
BURST = 1000
IDLE_TARGET_PERCENT = 0.2
MEMORY_TARGET_MB = 100.0
SHAPE = "head + {nodes} GPU nodes of 16 stand-in GPUs ({sets} servers, {sets} workers)"


def platforms(nodes: int) -> list[dict]:
    return [{"name": "tf-sc-head"}] + [
        {"name": f"tf-sc-gpu{i}", "env": {"FAKE_NVIDIA_GPUS": str(GPUS)},
         "mounts": [{"type": "tmpfs", "target": "/lstor", "tmpfs_size": "4G"}]} for i in range(1, nodes + 1)]


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def node_address(node: str) -> str:
    networks = json.loads(sh("docker", "inspect", node))[0]["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def client(work: Path) -> None:
    """Point terafleet_worker's client at the head's broker and backend, over TLS with the run's CA."""
    import os

    head = node_address("tf-sc-head")
    keys = deployment.KEYS
    os.environ.update({
        "TERAFLEET_BROKER_URL": f"amqps://terafleet:{keys['broker_rabbitmq_password']}@{head}:5671/terafleet",
        "TERAFLEET_RESULT_BACKEND": f"rediss://terafleet:{keys['broker_redis_password']}@{head}:6379/0",
        "TERAFLEET_TLS_CA_FILE": str(work / "inventory" / ".terafleet-tls" / "ca.crt")})


def burst(count: int) -> dict:
    from celery import group
    from qcdata import ProgramInput

    from terafleet_worker import reference
    from terafleet_worker.tasks import compute

    water = ProgramInput(structure={"symbols": list(reference.WATER_SYMBOLS),
                                    "geometry": [list(row) for row in reference.WATER_BOHR]},
                         calctype="energy", model={"method": "hf", "basis": "sto-3g"}).model_dump(mode="json")
    compute.apply_async(args=["terachem", water]).get(timeout=300)  # the client's connections, warmed
    started = time.monotonic()
    answers = group(compute.s("terachem", water) for _ in range(count)).apply_async().get(timeout=1800)
    elapsed = time.monotonic() - started
    ran = collections.Counter()
    failed = 0
    for answer in answers:
        if not answer.get("success"):
            failed += 1
            continue
        details = answer["provenance"]["extras"]["terafleet"]
        ran[f"{details['node']}/{details['server']}"] += 1
    return {"seconds": elapsed, "delivered": len(answers) - failed, "failed": failed, "per_server": ran}


def containers(node: str) -> dict[str, str]:
    """The node's worker and stand-in containers: name -> full id."""
    lines = sh("docker", "exec", node, "docker", "ps", "--no-trunc", "--format", "{{.Names}} {{.ID}}").split("\n")
    return {name: ident for name, ident in (line.split() for line in lines if line.strip())
            if name.startswith(("worker-gpu", "terachem-gpu"))}


def cgroup_dir(controller: str, ident: str) -> Path:
    """A container's cgroup on this machine (cgroup v1, Docker's cgroupfs or systemd driver). The nodes'
    own containers are this machine's too: their Docker shares its cgroup tree."""
    root = Path("/sys/fs/cgroup") / controller
    for candidate in (root / "docker" / ident, root / "system.slice" / f"docker-{ident}.scope"):
        if candidate.is_dir():
            return candidate
    raise SystemExit(f"bench/scale.py: no {controller} cgroup for container {ident[:12]} (cgroup v1 expected)")


def cpu_ns(ident: str) -> int:
    return int((cgroup_dir("cpuacct", ident) / "cpuacct.usage").read_text())


def rss_bytes(ident: str) -> int:
    for line in (cgroup_dir("memory", ident) / "memory.stat").read_text().splitlines():
        key, value = line.split()
        if key == "total_rss":
            return int(value)
    return 0


DOCKER = "for p in $(pgrep -x 'dockerd|containerd|containerd-shim'); do cat /proc/$p/stat; done"


def docker_cpu_seconds(node: str) -> float:
    """dockerd, containerd and the shims in the node (a process name is cut to 15 characters:
    containerd-shim-runc-v2 shows as containerd-shim): their own CPU and their waited-for children's, the
    runc runs a shim starts for each health check."""
    ticks = int(sh("docker", "exec", node, "getconf", "CLK_TCK"))
    total = 0
    for line in sh("docker", "exec", node, "sh", "-c", DOCKER).splitlines():
        fields = line.rsplit(")", 1)[1].split()
        total += sum(int(value) for value in fields[11:15])
    return total / ticks


def idle(nodes: list[str], seconds: float) -> dict:
    """Everything the GPU nodes spend at rest, per GPU set: the worker and stand-in containers, and the node
    itself (its Docker, shims and health-check processes, the watchdog and the other cron checks, systemd)."""
    ids = {node: containers(node) for node in nodes}
    node_ids = {node: sh("docker", "inspect", "--format", "{{.Id}}", node).strip() for node in nodes}

    def sample() -> tuple[dict, dict, dict]:
        return ({n: {name: cpu_ns(i) for name, i in ids[n].items()} for n in nodes},
                {n: cpu_ns(node_ids[n]) for n in nodes}, {n: docker_cpu_seconds(n) for n in nodes})

    before, node_before, docker_before = sample()
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    after, node_after, docker_after = sample()
    cpu = {"worker": [], "terachem": []}
    memory = {"worker": [], "terachem": []}
    for node in nodes:
        for name, ident in ids[node].items():
            kind = "worker" if name.startswith("worker") else "terachem"
            cpu[kind].append((after[node][name] - before[node][name]) / 1e9 / elapsed * 100)
            memory[kind].append(rss_bytes(ident) / 2**20)
    sets = len(cpu["terachem"])
    node_percent = sum(node_after[n] - node_before[n] for n in nodes) / 1e9 / elapsed * 100 / sets
    docker_percent = sum(docker_after[n] - docker_before[n] for n in nodes) / elapsed * 100 / sets
    return {"seconds": elapsed, "sets": sets, "worker_percent": statistics.mean(cpu["worker"]),
            "server_percent": statistics.mean(cpu["terachem"]), "node_percent": node_percent,
            "docker_percent": docker_percent,
            "per_set_percent": statistics.mean(cpu["worker"]) + statistics.mean(cpu["terachem"]) + node_percent,
            "worker_mb": max(memory["worker"]), "worker_mb_mean": statistics.mean(memory["worker"]),
            "server_mb": statistics.mean(memory["terachem"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--idle-seconds", type=float, default=300.0)
    parser.add_argument("--only", default="converge,rolling,burst,idle,floor")
    args = parser.parse_args()
    parts = args.only.split(",")
    sets = args.nodes * GPUS
    shape = SHAPE.format(nodes=args.nodes, sets=sets)
    gpu_nodes = [p["name"] for p in platforms(args.nodes)[1:]]
    sets_var = json.dumps({"preflight_gpu_sets": [[str(i)] for i in range(GPUS)]})
    deployment.PUSH = [*deployment.PUSH, "terafleet/standin:v2", "terafleet/worker:v2"]
    for name in ("standin", "worker"):
        sh("docker", "tag", f"terafleet/{name}:latest", f"terafleet/{name}:v2")
    converge = None
    if {"converge", "rolling", "burst", "idle"} & set(parts):
        with cluster("sc", platforms(args.nodes)) as work:
            hosts = inventory(work, {"head": ["tf-sc-head"], "gpu_nodes": gpu_nodes},
                              REPO / "inventories" / "demo" / "group_vars")
            secrets = passwords(work)
            converge, changed = playbook(hosts, "site.yml", "-e", f"@{secrets}", "-e", sets_var,
                                         label="scale-converge")
            noop, noop_changed = playbook(hosts, "site.yml", "-e", f"@{secrets}", "-e", sets_var,
                                          label="scale-noop")
            row(f"scale: fresh converge, {shape}", f"{converge:.1f} s ({changed} changed)")
            row("scale: no-op re-run", f"{noop:.1f} s = {100 * noop / converge:.1f} % of the converge, "
                f"changed={noop_changed}", "target <= 15 %, changed=0")
            save()
            if "rolling" in parts:
                rolled, _ = playbook(hosts, "rolling_update.yml", "-e", f"@{secrets}", "-e", sets_var,
                                     "-e", "terachem_image=registry:5000/terafleet/standin:v2",
                                     "-e", "celery_worker_image=registry:5000/terafleet/worker:v2",
                                     "--limit", f"tf-sc-head,{gpu_nodes[0]}", label="scale-rolling")
                row(f"scale: rolling update of one node ({GPUS} servers and workers to new images)",
                    f"{rolled:.1f} s")
                save()
            client(work)
            if "burst" in parts:
                result = burst(BURST)
                counts = result["per_server"]
                row(f"scale: {BURST} calculations at once to the shared queue ({sets} servers)",
                    f"{result['seconds']:.1f} s = {result['delivered'] / result['seconds']:.1f} per s; "
                    f"{result['delivered']} delivered, {result['failed']} failed; {len(counts)} servers used, "
                    f"{min(counts.values(), default=0)} to {max(counts.values(), default=0)} each",
                    f"target: 0 lost, all {sets} servers used")
                save()
            if "idle" in parts:
                time.sleep(30)  # the burst's tails (results written, events sent) settle first
                figures = idle(gpu_nodes, args.idle_seconds)
                deployment.REPLACED.append("scale: idle CPU per GPU set")
                row(f"scale: idle CPU per GPU set over {figures['seconds']:.0f} s ({figures['sets']} sets): worker "
                    "+ stand-in containers + the rest of the node (Docker and the checks' processes, watchdog, "
                    "cron checks, systemd), the node's share per set",
                    f"{figures['per_set_percent']:.3f} % of a core ({figures['worker_percent']:.3f} + "
                    f"{figures['server_percent']:.3f} + {figures['node_percent']:.3f}, of which Docker's daemons "
                    f"and shims {figures['docker_percent']:.3f})", f"target <= {IDLE_TARGET_PERCENT} %")
                row("scale: memory of one worker / one stand-in container at rest (cgroup rss)",
                    f"{figures['worker_mb']:.0f} MB at most, {figures['worker_mb_mean']:.0f} MB mean / "
                    f"{figures['server_mb']:.0f} MB mean", f"target: worker <= {MEMORY_TARGET_MB:.0f} MB")
                save()
    if "floor" in parts:
        with cluster("sc", platforms(args.nodes)) as work:
            roles = {"tf-sc-head": "head", **{node: "gpu" for node in gpu_nodes}}
            floor_s = deployment.floor(roles, work, "tf-sc-head", gpus=GPUS)
        row(f"scale: floor (bench/floor.sh), {shape}", f"{floor_s:.1f} s")
        if converge is not None:
            row("scale: converge / floor", f"{converge / floor_s:.2f}", "target <= 1.5")
        save()
    width = max(len(r[0]) for r in deployment.ROWS)
    print("\n" + "\n".join(f"{n:<{width}}  {v}  {t}" for n, v, t, _ in deployment.ROWS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
