#!/usr/bin/env python3
"""Figures for the whole deployment, printed as one table and written to bench/results.md.

  converge   site.yml on a fresh head + 2 GPU nodes (2 stand-in GPUs each, the demo's settings), next to
             the floor: bench/floor.sh doing the same on fresh nodes with apt and docker run (ratio; target
             <= 1.5); then the no-op re-run (changed count must be 0; time target <= 15 % of the converge).
  GPU sets   site.yml on one GPU node with 16 stand-in GPUs, serving 4, 8 and 16 single-GPU sets, each run
             after teardown.yml: seconds per added GPU set (target <= 1 s).
  gpu_floor  bench/floor.sh on fresh nodes with 4 and 16 GPUs: the cost per added set without Ansible.
  hosts      the cheap tasks (facts, the node_checks scripts and cron entries) on 2 to 10 fresh hosts:
             seconds per added host.
  others     bench/worker_overhead.py and bench/operations.py.
  hessian    bench/hessian.py: the farm Hessian of water on 4 servers against 1 (speed-up; target >= 3).
  scale      bench/scale.py: 4 nodes of 16 GPU sets, converge, rolling update, a burst, the idle cost.
Usage: bench/deployment.py [--only converge,gpu_sets,gpu_floor,hosts,others,hessian,scale]
       (needs Docker, the images, the venv)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
RESULTS = REPO / "bench" / "results.md"
STORE = REPO / "bench" / "results.json"
LOGS = REPO / "bench" / "logs"
PUSH = ["terafleet/standin:latest", "terafleet/worker:latest", "terafleet/frontend:latest",
        "terafleet/broker:latest", "terafleet/backend:latest"]
ROWS: list[tuple[str, str, str, str]] = []  # name, value, target, when it was measured


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def commit() -> str:
    """The commit measured, with +changes when the working tree differs from it (the figures this script
    writes aside, so that repeated runs of one commit say so)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!bench/results.json", ":!bench/results.md", ":!bench/README.md"],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    return head.strip() + ("+changes" if dirty else "")


def row(name: str, value: str, target: str = "") -> None:
    ROWS.append((name, value, target, f"{time.strftime('%Y-%m-%d %H:%M')} at {commit()}"))
    log(f"{name}: {value} {target}")


def cpu_times() -> tuple[int, int]:
    """The machine's stolen and total CPU time so far (/proc/stat, in clock ticks): time the hypervisor
    gave other guests while this one wanted to run."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def stolen_percent(before: tuple[int, int], after: tuple[int, int]) -> int:
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total) if total > 0 else 0


# Every converge part's figures, kept run after run in bench/results.json (the target is about repeats).
RUNS: list[dict] = []


def run(argv: list[str], log: Path | None = None, **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.monotonic() - started
    if log:
        log.parent.mkdir(exist_ok=True)
        log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                         f"{result.stderr[-2000:]}")
    return elapsed, result


def ansible_env() -> dict:
    import os

    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                ANSIBLE_COLLECTIONS_PATH=str(REPO / ".collections"), MOLECULE_PROJECT_DIRECTORY=str(REPO),
                ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.profile_tasks,terafleet.cluster.template_plugins",
                PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
                PATH=f"{BIN}:{os.environ['PATH']}")


@contextlib.contextmanager
def cluster(name: str, platforms: list[dict], services: bool = True):
    """Node containers (systemd, own Docker) made by the Molecule create playbook, removed afterwards."""
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        containers = [{"name": f"tf-{name}-aptrepo", "image": "terafleet/aptrepo:latest", "aliases": ["aptrepo"]},
                      {"name": f"tf-{name}-registry", "image": "terafleet/registry:latest", "aliases": ["registry"],
                       "registry_port": 5000, "push": PUSH}] if services else []
        (work / "services.yml").write_text(json.dumps({"containers": containers}))
        spec = {"molecule_yml": {"scenario": {"name": f"bench-{name}"}, "platforms": platforms},
                "molecule_scenario_directory": str(work), "molecule_instance_config": str(work / "instances.yml")}
        (work / "spec.json").write_text(json.dumps(spec))
        playbook = [str(BIN / "ansible-playbook"), "-i", "localhost,",
                    "-e", f"ansible_python_interpreter={BIN / 'python'}", "-e", f"@{work / 'spec.json'}"]
        run([*playbook, str(REPO / "molecule/shared/destroy.yml")], env=ansible_env())
        try:
            elapsed, _ = run([*playbook, str(REPO / "molecule/shared/create.yml")], env=ansible_env())
            log(f"created {len(platforms)} node containers for '{name}' in {elapsed:.0f} s")
            yield work
        finally:
            run([*playbook, str(REPO / "molecule/shared/destroy.yml")], env=ansible_env())


def inventory(work: Path, groups: dict[str, list[str]], group_vars: Path | None) -> Path:
    hosts = {"all": {"vars": {"ansible_connection": "community.docker.docker"},
                     "children": {group: {"hosts": {h: {} for h in members}} for group, members in groups.items()}}}
    directory = work / "inventory"
    directory.mkdir(exist_ok=True)
    (directory / "hosts.yml").write_text(json.dumps(hosts))
    if group_vars and not (directory / "group_vars").exists():
        (directory / "group_vars").symlink_to(group_vars)
    return directory / "hosts.yml"


KEYS = {"broker_rabbitmq_password": secrets.token_urlsafe(18), "broker_redis_password": secrets.token_urlsafe(18)}


def passwords(work: Path) -> Path:
    """The extra variables of every site.yml here: passwords, the license, and the demo's optional Prometheus,
    Alertmanager and Flower turned off (bench/floor.sh builds the farm without them)."""
    path = work / "secrets.json"
    path.write_text(json.dumps({**KEYS, "terachem_license_file": str(REPO / "playbooks/demo/terachem-license.key"),
                                "monitoring_enabled": False, "flower_enabled": False}))
    return path


# Per playbook label: the controller's CPU seconds (ansible-playbook, its workers and their docker exec
# clients; the modules themselves run in the nodes) and the host-tasks the recap counts.
CONTROLLER: dict[str, dict] = {}


def playbook(hosts: Path, name: str, *args: str, label: str) -> tuple[float, int]:
    """Run a playbook; return its wall time and the total of `changed` over the recap. Its output, with the
    profile_tasks timings, goes to bench/logs/LABEL.log."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed, result = run([str(BIN / "ansible-playbook"), "-i", str(hosts), str(REPO / name), *args],
                          log=LOGS / f"{label}.log", cwd=REPO, env=ansible_env())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    recap = result.stdout.split("PLAY RECAP")[-1]
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", recap))
    CONTROLLER[label] = {"cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                         "host_tasks": sum(int(n) for n in re.findall(r"ok=(\d+)", recap))}
    log(f"{label}: {elapsed:.1f} s wall, controller {CONTROLLER[label]['cpu_s']:.1f} CPU-s, "
        f"{CONTROLLER[label]['host_tasks']} host-tasks")
    return elapsed, changed


def floor_line(line: str, epoch: float) -> str:
    """floor.sh's `floor EPOCH STEP` lines as seconds since the floor started."""
    if not line.startswith("floor "):
        return line
    _, stamp, step = line.split(maxsplit=2)
    return f"{float(stamp) - epoch:6.1f} s  {step}"


def floor_tls(head_ip: str) -> dict[str, str]:
    """A CA and the head's certificate and key (PEM) for the floor's TLS, made here as site.yml makes its own."""
    sys.path.insert(0, str(REPO / "tests"))
    from certificates import CA

    ca = CA("floor CA")
    cert, key = ca.server(head_ip)
    return {"FLOOR_TLS_CA": ca.pem, "FLOOR_TLS_CERT": cert, "FLOOR_TLS_KEY": key}


def floor(nodes: dict[str, str], work: Path, head: str, gpus: int = 2) -> float:
    """bench/floor.sh on every node at once; the floor is when the last one is done."""
    keys = KEYS
    address = json.loads(subprocess.run(["docker", "inspect", head], capture_output=True, text=True, check=True)
                         .stdout)[0]["NetworkSettings"]["Networks"]
    head_ip = next(iter(address.values()))["IPAddress"]
    license_text = (REPO / "playbooks/demo/terachem-license.key").read_text().strip()
    tls = floor_tls(head_ip)
    started, epoch = time.monotonic(), time.time()
    running = []
    for node, role in nodes.items():
        env = ["-e", f"FLOOR_RABBITMQ_PASSWORD={keys['broker_rabbitmq_password']}",
               "-e", f"FLOOR_REDIS_PASSWORD={keys['broker_redis_password']}", "-e", f"FLOOR_HEAD={head_ip}",
               "-e", f"FLOOR_GPUS={gpus}", "-e", f"FLOOR_LICENSE={license_text}",
               *(item for name, pem in tls.items() for item in ("-e", f"{name}={pem}"))]
        with open(REPO / "bench" / "floor.sh", "rb") as script:  # the docker client keeps its own descriptor
            running.append((node, subprocess.Popen(["docker", "exec", "-i", *env, node, "bash", "-s", role],
                                                   stdin=script, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
    for node, process in running:
        output, _ = process.communicate(timeout=1200)
        LOGS.mkdir(exist_ok=True)
        (LOGS / f"floor-{node}.log").write_text("".join(floor_line(line, epoch) for line in
                                                        output.decode().splitlines(keepends=True)))
        if process.returncode != 0:
            raise SystemExit(f"floor.sh failed on {node}:\n{output.decode()[-3000:]}")
    return time.monotonic() - started


def bench_converge() -> None:
    platforms = [{"name": "tf-bd-head"}] + [
        {"name": f"tf-bd-gpu{i}", "env": {"FAKE_NVIDIA_GPUS": "2"},
         "mounts": [{"type": "tmpfs", "target": "/lstor", "tmpfs_size": "2G"}]} for i in (1, 2)]
    with cluster("bd", platforms) as work:
        hosts = inventory(work, {"head": ["tf-bd-head"], "gpu_nodes": ["tf-bd-gpu1", "tf-bd-gpu2"]},
                          REPO / "inventories" / "demo" / "group_vars")
        secrets_file = passwords(work)
        before = cpu_times()
        converge, changed = playbook(hosts, "site.yml", "-e", f"@{secrets_file}", label="converge")
        stolen_converge = stolen_percent(before, cpu_times())
        log(f"fresh converge {converge:.1f} s, changed={changed}")
        noop, noop_changed = playbook(hosts, "site.yml", "-e", f"@{secrets_file}", label="noop")
        log(f"no-op re-run {noop:.1f} s, changed={noop_changed}")
    with cluster("bd", platforms) as work:
        before = cpu_times()
        floor_s = floor({"tf-bd-head": "head", "tf-bd-gpu1": "gpu", "tf-bd-gpu2": "gpu"}, work, "tf-bd-head")
        stolen_floor = stolen_percent(before, cpu_times())
    log(f"CPU time stolen by the hypervisor: {stolen_converge} % during the converge, {stolen_floor} % during "
        "the floor")
    row("fresh converge, head + 2 GPU nodes (4 servers, 4 workers)", f"{converge:.1f} s ({changed} changed)")
    row("floor: bench/floor.sh, same end state with apt + docker run", f"{floor_s:.1f} s")
    row("converge / floor", f"{converge / floor_s:.2f}", "target <= 1.5")
    row("no-op re-run", f"{noop:.1f} s = {100 * noop / converge:.0f} % of the converge, changed={noop_changed}",
        "target <= 15 %, changed=0")
    RUNS.append({"measured": time.strftime("%Y-%m-%d %H:%M"), "commit": commit(), "converge_s": round(converge, 1),
                 "floor_s": round(floor_s, 1), "ratio": round(converge / floor_s, 2),
                 "noop_percent": round(100 * noop / converge), "noop_changed": noop_changed,
                 "stolen_percent": [stolen_converge, stolen_floor]})
    row("controller CPU, fresh converge / no-op (host-tasks)",
        f"{CONTROLLER['converge']['cpu_s']:.1f} CPU-s ({CONTROLLER['converge']['host_tasks']}) / "
        f"{CONTROLLER['noop']['cpu_s']:.1f} CPU-s ({CONTROLLER['noop']['host_tasks']})")


def bench_gpu_sets() -> None:
    platforms = [{"name": "tf-bg-head"},
                 {"name": "tf-bg-gpu", "env": {"FAKE_NVIDIA_GPUS": "16"},
                  "mounts": [{"type": "tmpfs", "target": "/lstor", "tmpfs_size": "4G"}]}]
    with cluster("bg", platforms) as work:
        hosts = inventory(work, {"head": ["tf-bg-head"], "gpu_nodes": ["tf-bg-gpu"]},
                          REPO / "inventories" / "demo" / "group_vars")
        secrets_file = passwords(work)
        times = {}
        for count in (4, 4, 8, 16):  # the first 4 also installs the node layer
            sets = json.dumps({"preflight_gpu_sets": [[str(i)] for i in range(count)]})
            if times:
                playbook(hosts, "teardown.yml", "-e", f"@{secrets_file}", "-e", "teardown_purge=true",
                         "--limit", "tf-bg-gpu", label=f"teardown-before-{count}")
            times[count] = playbook(hosts, "site.yml", "-e", f"@{secrets_file}", "-e", sets,
                                    label=f"gpu-sets-{count}")[0]
            log(f"site.yml with {count} GPU sets: {times[count]:.1f} s")
        # The 16 sets of one GPU recut into 8 of two: 16 servers and workers retired, 8 of each started.
        resize = json.dumps({"preflight_gpu_sets": [[str(i), str(i + 1)] for i in range(0, 16, 2)]})
        resized = playbook(hosts, "site.yml", "-e", f"@{secrets_file}", "-e", resize, label="gpu-sets-resize")[0]
        log(f"site.yml from 16 sets of 1 GPU to 8 of 2: {resized:.1f} s")
    per_set = (times[16] - times[4]) / 12
    row("site.yml on a node with 4 / 8 / 16 GPU sets (after teardown)",
        f"{times[4]:.1f} / {times[8]:.1f} / {times[16]:.1f} s")
    row("cost per added GPU set", f"{per_set:.2f} s", "target <= 1 s")
    row("set-size change on the 16-GPU node: 16 sets of 1 -> 8 of 2, against its fresh converge with 16 sets",
        f"{resized:.1f} s / {times[16]:.1f} s")


def bench_gpu_floor() -> None:
    """The floor's own cost per added GPU set: bench/floor.sh on fresh nodes with 4 and 16 GPUs."""
    times = {}
    for count in (4, 16):
        platforms = [{"name": "tf-bf-head"},
                     {"name": "tf-bf-gpu", "env": {"FAKE_NVIDIA_GPUS": str(count)},
                      "mounts": [{"type": "tmpfs", "target": "/lstor", "tmpfs_size": "4G"}]}]
        with cluster("bf", platforms) as work:
            times[count] = floor({"tf-bf-head": "head", "tf-bf-gpu": "gpu"}, work, "tf-bf-head", gpus=count)
            log(f"floor with {count} GPU sets: {times[count]:.1f} s")
    row("floor: bench/floor.sh on a fresh node with 4 / 16 GPU sets", f"{times[4]:.1f} / {times[16]:.1f} s")
    row("floor's cost per added GPU set (the same containers started by docker run)",
        f"{(times[16] - times[4]) / 12:.2f} s")


def bench_hosts() -> None:
    platforms = [{"name": f"tf-bh-{i:02d}"} for i in range(1, 11)]
    cheap = REPO / "bench" / "cheap_tasks.yml"
    with cluster("bh", platforms, services=False) as work:
        hosts = inventory(work, {"cpu_nodes": [p["name"] for p in platforms]}, None)
        times = {}
        for count in (2, 4, 6, 8, 10):
            for platform in platforms:
                subprocess.run(["docker", "exec", platform["name"], "sh", "-c",
                                "rm -rf /usr/local/sbin/terafleet-* /etc/cron.d/terafleet-* /var/lib/terafleet"],
                               check=True)
            limit = ",".join(p["name"] for p in platforms[:count])
            times[count] = playbook(hosts, str(cheap), "--limit", limit, label=f"hosts-{count}")[0]
            log(f"cheap tasks on {count} fresh hosts: {times[count]:.1f} s")
    per_host = (times[10] - times[2]) / 8
    row("cheap tasks on 2 / 4 / 6 / 8 / 10 fresh hosts", " / ".join(f"{times[c]:.1f}" for c in sorted(times)) + " s")
    row("cost per added host", f"{per_host:.2f} s")


def bench_others() -> None:
    _, result = run([str(BIN / "python"), str(REPO / "bench" / "worker_overhead.py")], cwd=REPO)
    added = re.search(r"added by Celery:\s+(-?[0-9.]+) ms/task", result.stdout)
    row("Celery overhead per task (bench/worker_overhead.py; stand-in job held to 50 ms)",
        f"{added[1]} ms" if added else result.stdout[-300:],
        "target <= 50 ms")
    tls = re.search(r"added by TLS:\s+(-?[0-9.]+) ms/task", result.stdout)
    row("TLS overhead per task, over the same through plaintext (bench/worker_overhead.py)",
        f"{tls[1]} ms" if tls else result.stdout[-300:], "target <= 5 ms")
    with tempfile.TemporaryDirectory() as workdir:
        figures_file = Path(workdir) / "operations.json"
        run([str(BIN / "python"), str(REPO / "bench" / "operations.py"), "--json", str(figures_file)], cwd=REPO)
        figures = json.loads(figures_file.read_text())
    for node, values in figures["rolling_update"].items():
        row(f"rolling update of {node}", f"{values['update_s']:.1f} s, of which drain {values['drain_wait_s']:.1f} s"
            f"; images {values['images_before_drain_s']:.1f} s before the drain", "target <= drain + 15 s")
    row("crash-to-serving (SIGKILL)", " / ".join(f"{t:.1f}" for t in figures["crash_to_serving_s"]) + " s",
        "target <= 10 s")
    row("hang-to-serving (SIGSTOP)", f"{figures['hang_to_serving_s']:.1f} s", "target <= 60 s")
    cpu = figures["metrics_cpu"]
    row("metrics CPU per GPU node at rest (node-exporter scraped every 15 s + terafleet-node-metrics)",
        f"{cpu['percent_of_a_core']:.2f} % of one core ({cpu['exporter_s']:.2f} + {cpu['node_metrics_s']:.2f} "
        f"CPU-s/min; the watchdog beside them {cpu['watchdog_s']:.2f})", "target <= 2 %")


def bench_hessian() -> None:
    _, result = run([str(BIN / "python"), str(REPO / "bench" / "hessian.py")], cwd=REPO)
    one = re.search(r"on 1 server:\s+([0-9.]+) s", result.stdout)
    four = re.search(r"on 4 servers:\s+([0-9.]+) s", result.stdout)
    speedup = re.search(r"speed-up:\s+([0-9.]+)", result.stdout)
    if not (one and four and speedup):
        raise SystemExit(f"bench/hessian.py printed no figures:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    row("farm Hessian of water, 19 gradients of 1 s each (bench/hessian.py): 1 server / 4 servers",
        f"{one[1]} s / {four[1]} s = speed-up {speedup[1]}", "target >= 3")


def bench_scale() -> None:
    """bench/scale.py writes its own rows into the same store; this run reads them back when it saves."""
    save()
    run([str(BIN / "python"), str(REPO / "bench" / "scale.py")], log=LOGS / "scale.log", cwd=REPO)


# Row names (their beginnings) whose stored rows a figure of this run replaces though its name differs: a
# figure whose definition, and so its name, changed.
REPLACED: list[str] = []


def save() -> None:
    """Store the figures so far in bench/results.json and rewrite bench/results.md. Figures from earlier
    runs with --only stay in the table, each with the time it was measured, unless REPLACED."""
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    current = {n for n, *_ in ROWS}
    store = {n: f for n, f in store.items() if n in current or not n.startswith(tuple(REPLACED))}
    store.update({n: {"value": v, "target": t, "measured": m} for n, v, t, m in ROWS})
    stored = store.pop("converge runs", [])
    runs = stored + [run for run in RUNS if run not in stored]
    STORE.write_text(json.dumps({**store, "converge runs": runs}, indent=1) + "\n")
    lines = ["| figure | value | target | measured |", "| --- | --- | --- | --- |"] + [
        f"| {n} | {f['value']} | {f['target']} | {f['measured']} |" for n, f in store.items()]
    history = ["| measured | commit | converge | floor | converge / floor | no-op | no-op changed "
               "| CPU stolen, converge / floor |", "| --- | --- | --- | --- | --- | --- | --- | --- |"] + [
        f"| {r['measured']} | {r['commit']} | {r['converge_s']} s | {r['floor_s']} s | {r['ratio']} | "
        f"{r['noop_percent']} % | {r['noop_changed']} | "
        + (" / ".join(f"{p} %" for p in r["stolen_percent"]) if "stolen_percent" in r else "not measured") + " |"
        for r in runs]
    RESULTS.write_text("# Benchmark figures\n\nWritten by `bench/deployment.py` (`make bench`); what they mean and "
                       "why: `bench/README.md`.\n\n" + "\n".join(lines) + "\n\n## Every converge run\n\n"
                       "Targets: converge / floor <= 1.5, no-op <= 15 % with changed=0, on every run.\n\n"
                       + "\n".join(history) + "\n")
    readme_table(store)


def readme_table(store: dict) -> None:
    """The table under bench/README.md's "Latest figures": the figures, their values and targets."""
    readme = RESULTS.with_name("README.md")
    text = readme.read_text()
    head = "| figure | value | target |\n| --- | --- | --- |\n"
    start = text.find(head, text.find("## Latest figures"))
    if start < 0:
        return
    end = text.find("\n\n", start)
    rows = "".join(f"| {n} | {f['value']} | {f['target'].removeprefix('target ')} |\n" for n, f in store.items())
    readme.write_text(text[:start] + head + rows.rstrip("\n") + text[end if end >= 0 else len(text):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="converge,gpu_sets,gpu_floor,hosts,others,hessian,scale")
    args = parser.parse_args()
    benches = {"converge": bench_converge, "gpu_sets": bench_gpu_sets, "gpu_floor": bench_gpu_floor,
               "hosts": bench_hosts, "others": bench_others, "hessian": bench_hessian, "scale": bench_scale}
    for name in args.only.split(","):
        benches[name]()
        save()  # a later part that fails keeps what this one measured
    width = max(len(r[0]) for r in ROWS)
    print("\n" + "\n".join(f"{n:<{width}}  {v}  {t}" for n, v, t, _ in ROWS))
    log(f"written to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
