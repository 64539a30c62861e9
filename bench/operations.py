#!/usr/bin/env python3
"""Operations figures on a real cluster: rolling update time per node against its drain, crash-to-serving
and hang-to-serving of a TeraChem server.

Brings up the Molecule `rolling` scenario (head + 2 GPU nodes, systemd containers running their own
Docker; health checks and watchdog at their defaults), then:
  - runs rolling_update.yml to new images while calculations of 2 s keep arriving, one of them 20 s
    long on the first node, and prints each node's update time next to the time its drain waited;
  - SIGKILLs a TeraChem server and times until it answers STATUS again on its published port
    (Docker's restart; target <= 10 s);
  - SIGSTOPs a server and times until a new one answers (health check -> unhealthy -> cron watchdog;
    target <= 60 s);
  - measures, on a GPU node at rest, the CPU the metrics take in a minute: node-exporter's process,
    scraped every 15 s as Prometheus would, and one whole cron run of terafleet-node-metrics (its
    samples and the nvidia-smi calls they make), as a share of one core (target <= 2 %). This machine's
    kernel exposes no per-service cgroup CPU figures, so both come from the processes' own counters
    (/proc/PID/stat, getrusage of the run's children). The watchdog, which writes the containers'
    metrics as it checks them, is measured beside them: it runs with or without metrics.
Usage: bench/operations.py [--keep] [--json FILE]   (needs Docker, bin/build-images, the venv)
BENCH_PLAYBOOK_LOG=FILE keeps the rolling update's playbook output (with
ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks, its time per task).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = "rolling"
HEAD, GPU_NODES = "tf-ro-head", ("tf-ro-gpu1", "tf-ro-gpu2")
sys.path.insert(0, str(REPO / "tests"))
CRASH_TARGET_S, HANG_TARGET_S, ROLLING_REST_TARGET_S = 10.0, 60.0, 15.0
METRICS_CPU_TARGET_PERCENT = 2.0
# Run a node's cron command and print the CPU seconds it and its children used.
RUSAGE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1], shell=True, check=True); "
          "u = resource.getrusage(resource.RUSAGE_CHILDREN); print(u.ru_utime + u.ru_stime)")


def sh(*argv: str, **kwargs) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def molecule(*steps: str) -> None:
    for step in steps:
        started = time.monotonic()
        subprocess.run([str(REPO / ".venv" / "bin" / "molecule"), step, "-s", SCENARIO], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL if step == "destroy" else None)
        print(f"[bench] molecule {step}: {time.monotonic() - started:.0f} s", flush=True)


def scenario_tls_dir() -> str:
    """Where the converge of the scenario made its CA: beside Molecule's inventory (broker_tls_dir's default),
    in the scenario's ephemeral directory. The playbooks here must use that CA, not make another."""
    found = sorted((Path.home() / ".ansible" / "tmp").glob(f"molecule.*.{SCENARIO}/inventory/.terafleet-tls"),
                   key=lambda path: path.stat().st_mtime)
    if not found:
        raise SystemExit(f"no CA of the {SCENARIO} scenario under ~/.ansible/tmp: is it converged?")
    return str(found[-1])


def write_inventory(directory: Path) -> Path:
    """The scenario's hosts as Ansible reaches them (docker connection), with its group_vars and its CA."""
    hosts = {"all": {"vars": {"ansible_connection": "community.docker.docker", "broker_tls_dir": scenario_tls_dir()},
                     "children": {"head": {"hosts": {HEAD: {}}}, "gpu_nodes": {"hosts": {n: {} for n in GPU_NODES}}}}}
    (directory / "hosts.yml").write_text(json.dumps(hosts))
    (directory / "group_vars").symlink_to(REPO / "molecule" / SCENARIO / "group_vars")
    return directory / "hosts.yml"


def in_node(gpu_node: str, *argv: str) -> str:
    return sh("docker", "exec", gpu_node, *argv)


def server_pid(gpu_node: str, server: str) -> int:
    """The TeraChem process: the child of the server container's init."""
    init = in_node(gpu_node, "docker", "inspect", "--format", "{{.State.Pid}}", server).strip()
    return int(in_node(gpu_node, "pgrep", "--parent", init).split()[0])


def answers(host: str, port: int) -> bool:
    from terafleet_worker import server

    try:
        server.status(host, port, 1.0)
        return True
    except server.ServerUnavailable:
        return False


def time_to_serving(gpu_node: str, server: str, port: int, signal_name: str, limit: float) -> float:
    address = json.loads(sh("docker", "inspect", gpu_node))[0]["NetworkSettings"]["Networks"][
        f"terafleet-{SCENARIO}"]["IPAddress"]
    deadline = time.monotonic() + 120
    while not answers(address, port):
        if time.monotonic() > deadline:
            raise SystemExit(f"{server} on {gpu_node} does not answer before the test")
        time.sleep(1)
    pid = server_pid(gpu_node, server)
    started = time.monotonic()
    in_node(gpu_node, "kill", f"-{signal_name}", str(pid))
    time.sleep(0.2)
    while time.monotonic() - started < limit:
        if answers(address, port):
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{server} on {gpu_node} did not serve again within {limit:.0f} s after SIG{signal_name}")


def process_cpu_seconds(gpu_node: str, pid: str) -> float:
    fields = in_node(gpu_node, "cat", f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    ticks = int(in_node(gpu_node, "getconf", "CLK_TCK"))
    return sum(int(value) for value in fields[11:15]) / ticks  # utime stime cutime cstime


def cron_command(gpu_node: str, cron_file: str) -> str:
    line = next(entry for entry in in_node(gpu_node, "cat", cron_file).splitlines()
                if entry and not entry.startswith("#"))
    return " ".join(line.split()[6:]).split(" 2>&1 | logger")[0]


def metrics_cpu(gpu_node: str) -> dict[str, float]:
    """CPU seconds per minute at rest: node-exporter scraped every 15 s, one minute's terafleet-node-metrics
    run, and the watchdog's one-minute run (beside them)."""
    address = json.loads(sh("docker", "inspect", gpu_node))[0]["NetworkSettings"]["Networks"][
        f"terafleet-{SCENARIO}"]["IPAddress"]
    exporter = in_node(gpu_node, "pgrep", "-x", "prometheus-node").split()[0]
    before = process_cpu_seconds(gpu_node, exporter)
    started = time.monotonic()
    for _ in range(4):
        with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=10) as response:
            response.read()
        time.sleep(15)
    exporter_s = (process_cpu_seconds(gpu_node, exporter) - before) * 60 / (time.monotonic() - started)
    runs = {}
    for name, cron_file in (("node_metrics", "/etc/cron.d/terafleet-checks-metrics"),
                            ("watchdog", "/etc/cron.d/terafleet-checks-watchdog")):
        # Its own state and lock: the cron entry's run may be going on beside it.
        command = cron_command(gpu_node, cron_file).replace("flock --nonblock", "flock --wait 60")
        runs[name] = float(in_node(gpu_node, "python3", "-c", RUSAGE, command).split()[-1])
    return {"exporter_s": exporter_s, "node_metrics_s": runs["node_metrics"], "watchdog_s": runs["watchdog"]}


def rolling_update(inventory: Path, app, compute) -> dict[str, tuple[float, float]]:
    from scenario import water

    stop, submitted = threading.Event(), []

    def produce() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            submitted.append(compute.apply_async(args=[water(1.0 + number * 1e-4)], queue="terachem"))
            stop.wait(1.0)

    scratch = f"/lstor/terafleet/scratch/{GPU_NODES[0]}-gpu0"
    in_node(GPU_NODES[0], "sh", "-c", f"printf '%s' '{{\"job_seconds\": 20}}' > {scratch}/standin-control.json")

    def jobs() -> int:
        return int(in_node(GPU_NODES[0], "sh", "-c", f"ls -d {scratch}/server_*/job_* 2>/dev/null | wc -l"))

    before = jobs()
    long = compute.apply_async(args=[water(0.95)], queue=f"terachem.{GPU_NODES[0]}.gpu0")
    deadline = time.monotonic() + 60
    while jobs() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    # The stand-in reads its switches when a job starts: the long calculation keeps its 20 s, and the
    # health gate's calculation on that server after the update is an ordinary one.
    in_node(GPU_NODES[0], "rm", "-f", f"{scratch}/standin-control.json")
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), MOLECULE_PROJECT_DIRECTORY=str(REPO),
               ANSIBLE_VAULT_PASSWORD_FILE=str(REPO / "molecule" / "shared" / "files" / "vault-password"))
    started = time.monotonic()
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), "rolling_update.yml",
                             "-e", "terachem_image=registry:5000/terafleet/standin:v2",
                             "-e", "celery_worker_image=registry:5000/terafleet/worker:v2"],
                            cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if os.environ.get("BENCH_PLAYBOOK_LOG"):
        Path(os.environ["BENCH_PLAYBOOK_LOG"]).write_text(result.stdout)
    stop.set()
    producer.join()
    if result.returncode != 0:
        raise SystemExit(f"rolling update failed:\n{result.stdout[-4000:]}")
    failed = sum(1 for r in [long, *submitted] if r.get(timeout=300) is None)
    print(f"[bench] rolling update: {wall:.1f} s for {len(GPU_NODES)} nodes; {len(submitted) + 1} calculations "
          f"submitted during it, {failed} lost", flush=True)
    per_node = {m[0]: (float(m[1]), float(m[2]), float(m[3])) for m in re.findall(
        r"(tf-ro-gpu\d) updated in ([0-9.]+) s, of which ([0-9.]+) s waiting for running calculations; its images "
        r"came in ([0-9.]+) s before the drain", " ".join(result.stdout.split()))}  # YAML output wraps lines
    if sorted(per_node) != sorted(GPU_NODES):
        raise SystemExit(f"the rolling update reported {sorted(per_node)}, not every node:\n{result.stdout[-6000:]}")
    return per_node


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the scenario's containers up")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ["MOLECULE_PROJECT_DIRECTORY"] = str(REPO)
    figures: dict = {}
    molecule("destroy", "create", "prepare", "converge")
    try:
        with tempfile.TemporaryDirectory() as workdir:
            inventory = write_inventory(Path(workdir))
            import scenario

            app = scenario.celery_app(SCENARIO, HEAD)
            from terafleet_worker.tasks import compute

            per_node = rolling_update(inventory, app, compute)
        crash = [time_to_serving(GPU_NODES[1], "terachem-gpu0", 11111, "KILL", 60) for _ in range(3)]
        hang = [time_to_serving(GPU_NODES[1], "terachem-gpu1", 11112, "STOP", 240)]
        cpu = metrics_cpu(GPU_NODES[0])
    finally:
        if not args.keep:
            molecule("destroy")
    print("\nRolling update (new images, 2 s calculations arriving every second, one 20 s on the first node)")
    print("(update: from the drain to the resume, the node off the shared queues; images: pulled before it)")
    print(f"{'node':<14}{'update s':>10}{'drain wait s':>14}{'rest s':>9}{'images s':>10}")
    for name, (total, drain, images) in per_node.items():
        print(f"{name:<14}{total:>10.1f}{drain:>14.1f}{total - drain:>9.1f}{images:>10.1f}")
    print(f"(target: rest <= {ROLLING_REST_TARGET_S:.0f} s per node)")
    print(f"\ncrash-to-serving (SIGKILL, Docker restart): {', '.join(f'{t:.1f}' for t in crash)} s; "
          f"max {max(crash):.1f} s (target <= {CRASH_TARGET_S:.0f} s)")
    print(f"hang-to-serving (SIGSTOP, health check + watchdog): {hang[0]:.1f} s (target <= {HANG_TARGET_S:.0f} s)")
    metrics_percent = 100 * (cpu["exporter_s"] + cpu["node_metrics_s"]) / 60
    print(f"metrics CPU at rest on {GPU_NODES[0]}: node-exporter {cpu['exporter_s']:.2f} CPU-s/min (scraped every "
          f"15 s), terafleet-node-metrics {cpu['node_metrics_s']:.2f} CPU-s/min = {metrics_percent:.2f} % of one "
          f"core (target <= {METRICS_CPU_TARGET_PERCENT:.0f} %); the watchdog beside them "
          f"{cpu['watchdog_s']:.2f} CPU-s/min")
    figures = {"rolling_update": {k: {"update_s": v[0], "drain_wait_s": v[1], "images_before_drain_s": v[2]}
                                  for k, v in per_node.items()},
               "crash_to_serving_s": crash, "crash_to_serving_median_s": statistics.median(crash),
               "hang_to_serving_s": hang[0], "metrics_cpu": {**cpu, "percent_of_a_core": metrics_percent}}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    rolling_ok = all(total - drain <= ROLLING_REST_TARGET_S for total, drain, _ in per_node.values())
    metrics_ok = metrics_percent <= METRICS_CPU_TARGET_PERCENT
    return 0 if max(crash) <= CRASH_TARGET_S and hang[0] <= HANG_TARGET_S and rolling_ok and metrics_ok else 1


if __name__ == "__main__":
    sys.exit(main())
