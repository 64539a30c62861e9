"""Calculations through the deployed broker, a server killed mid-calculation, a same-second restart,
the license kept out of output, and bad inputs refused before any container changes."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

import scenario
from conftest import GPU_NODES, SETS, inspect, node, playbook, server_pid, wait_for, water
from scenario import control, expected_energy, tasks_outside_preflight

testinfra_hosts = ["ansible://tf-cl-head"]
SERVERS = {(n, f"terachem-{s}:11111") for n in GPU_NODES for s in SETS}
SMOKE_PENDING = "/var/lib/terafleet/smoke-test-pending"


def containers_state() -> dict:
    state = {}
    for name in ("tf-cl-head", *GPU_NODES):
        host = node(name)
        for line in host.check_output("docker ps -a --format '{{.Names}}'").splitlines():
            info = inspect(host, line)
            state[(name, line)] = (info["Id"], info["State"]["StartedAt"], info["RestartCount"])
    return state


@pytest.mark.parametrize("container, volume, data, config", [
    ("terafleet-rabbitmq", "terafleet-rabbitmq-data", "/var/lib/rabbitmq", "/etc/rabbitmq/conf.d/10-terafleet.conf"),
    ("terafleet-redis", "terafleet-redis-data", "/data", "/usr/local/etc/redis/redis.conf"),
])
def test_broker_and_backend_keep_their_data_on_labelled_volumes(host, container, volume, data, config):
    info = inspect(host, container)
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts[data]["Type"] == "volume" and mounts[data]["Name"] == volume
    assert mounts[config]["Type"] == "bind" and mounts[config]["RW"] is False
    # Labelled, so teardown's purge finds them; RabbitMQ keeps its database under a fixed node name.
    assert json.loads(host.check_output(f"docker volume inspect {volume}"))[0]["Labels"] == {
        "org.terafleet.role": "broker"}
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped" and info["State"]["Running"]
    if container == "terafleet-rabbitmq":
        assert info["Config"]["Hostname"] == "terafleet-rabbitmq"


def test_forty_calculations_all_correct_over_all_four_servers(compute):
    rng = random.Random(11)
    docs = [water(rng.uniform(0.9, 1.15)) for _ in range(40)]
    results = [compute.apply_async(args=[doc], queue="terachem") for doc in docs]
    used = set()
    for doc, result in zip(docs, results, strict=True):
        value = result.get(timeout=300)
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
        used.add((value["provenance"]["node"], value["provenance"]["server"]))
    assert used == SERVERS


def test_server_killed_during_a_calculation_is_restarted_and_the_calculation_delivers(compute):
    gpu_node, gpu_set = GPU_NODES[0], SETS[0]
    host = node(gpu_node)
    before = inspect(host, f"terachem-{gpu_set}")
    control(gpu_node, gpu_set, job_seconds=4)
    doc = water(1.05)
    result = compute.apply_async(args=[doc], queue=f"terachem.{gpu_node}.{gpu_set}")
    wait_for(lambda: result.state == "STARTED", 60, "the calculation to start", interval=0.1)
    host.check_output(f"kill -9 {server_pid(host, f'terachem-{gpu_set}')}")
    value = result.get(timeout=180)
    assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
    assert value["provenance"]["retries"] >= 1
    after = inspect(host, f"terachem-{gpu_set}")
    assert after["RestartCount"] == before["RestartCount"] + 1
    control(gpu_node, gpu_set)


def newest_server_dir(host, gpu_node: str, gpu_set: str) -> str:
    return host.check_output(f"ls -1 /lstor/terafleet/scratch/{gpu_node}-{gpu_set} | grep ^server_ | sort | tail -1")


def test_all_servers_of_a_node_restarted_in_the_same_second_start_cleanly():
    gpu_node = GPU_NODES[1]
    host = node(gpu_node)
    # One `docker restart` per server, all started at once, so that a loaded machine still lands them in
    # one second.
    restart_all = " ".join(f"docker restart -t 1 terachem-{s} >/dev/null &" for s in SETS)
    for _attempt in range(10):
        host.check_output(f"{restart_all} wait")
        wait_for(lambda: all(inspect(host, f"terachem-{s}")["State"]["Health"]["Status"] == "healthy"
                             for s in SETS), 90, "both servers healthy")
        newest = {newest_server_dir(host, gpu_node, s) for s in SETS}
        if len(newest) == 1:
            break
    assert len(newest) == 1, f"the servers never started in the same second: {newest}"
    for gpu_set in SETS:
        info = inspect(host, f"terachem-{gpu_set}")
        assert info["State"]["Running"] and info["RestartCount"] == 0, f"terachem-{gpu_set} crashed on start"


def test_license_never_appears_in_ansible_output():
    secret = node(GPU_NODES[0]).file("/etc/terafleet/terachem/license.key").content_string.strip()
    result = playbook("site.yml", "-vvv", "--limit", GPU_NODES[0], "--tags", "terafleet_license", "--diff")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Copy the license" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert "TERACHEM-TEST-LICENSE" not in result.stdout + result.stderr


def test_a_new_license_is_placed_and_restarts_only_that_nodes_servers(tmp_path):
    gpu_node = GPU_NODES[0]
    host = node(gpu_node)
    path = "/etc/terafleet/terachem/license.key"
    original = host.file(path).content_string
    started = {s: inspect(host, f"terachem-{s}")["State"]["StartedAt"] for s in SETS}
    new_license = tmp_path / "license.key"
    new_license.write_text("TERACHEM-RENEWED-LICENSE\n")
    try:
        result = playbook("site.yml", "--limit", gpu_node, "-e", f"terachem_license_file={new_license}")
        assert result.returncode == 0, result.stdout[-3000:]
        assert host.file(path).content_string == "TERACHEM-RENEWED-LICENSE\n"
        assert host.file(path).mode == 0o400 and host.file(path).user == "root"
        for gpu_set in SETS:
            info = inspect(host, f"terachem-{gpu_set}")
            assert info["State"]["StartedAt"] != started[gpu_set], f"terachem-{gpu_set} kept the old license"
            exec_result = host.run(f"docker exec terachem-{gpu_set} cat /opt/terachem/license.key")
            assert exec_result.stdout == "TERACHEM-RENEWED-LICENSE\n"
        assert "TERACHEM-RENEWED-LICENSE" not in result.stdout + result.stderr
        assert smoke_test_result(result.stdout) == "ok", "restarted servers are smoke-tested"
    finally:
        restored = playbook("site.yml", "--limit", gpu_node)
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert host.file(path).content_string == original
    assert not host.file(SMOKE_PENDING).exists, "a passing smoke test clears the marker its change left"
    # A test that failed or never ran after a change is due on the next run, changed or not.
    host.check_output(f"touch {SMOKE_PENDING}")
    pending = playbook("site.yml", "--limit", gpu_node)
    assert pending.returncode == 0, pending.stdout[-3000:]
    assert smoke_test_result(pending.stdout) == "ok", "a pending smoke test runs though nothing changed"
    assert not host.file(SMOKE_PENDING).exists
    unchanged = playbook("site.yml", "--limit", gpu_node)
    assert unchanged.returncode == 0 and f"{gpu_node}" in unchanged.stdout
    assert "changed=0" in unchanged.stdout.split("PLAY RECAP")[-1], unchanged.stdout[-3000:]
    assert smoke_test_result(unchanged.stdout) == "skipping", "a run that changed nothing sends no calculation"


def test_a_disabled_docker_service_is_enabled_again_and_the_node_smoke_tested():
    gpu_node = GPU_NODES[1]
    host = node(gpu_node)
    host.check_output("systemctl disable docker.service")
    result = playbook("site.yml", "--limit", gpu_node)
    assert result.returncode == 0, result.stdout[-3000:]
    assert host.check_output("systemctl is-enabled docker.service") == "enabled"
    assert task_result(result.stdout, "Keep the docker service started") == "changed"
    assert smoke_test_result(result.stdout) == "ok", "a node whose Docker service changed is smoke-tested"
    again = playbook("site.yml", "--limit", gpu_node)
    assert again.returncode == 0, again.stdout[-3000:]
    assert task_result(again.stdout, "Keep the docker service started") == "skipping"


def task_result(stdout: str, task: str) -> str:
    """How the first task whose banner holds `task` ended: ok, changed, skipping, failed, or absent."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("TASK [") and task in line:
            for after in lines[index + 1:]:
                if after.startswith(("ok:", "skipping:", "fatal:", "changed:")):
                    return after.split(":")[0].replace("fatal", "failed")
    return "absent"


def smoke_test_result(stdout: str) -> str:
    """How the smoke test ended on the node: ok (it submitted), skipping, failed, or absent."""
    for task in ("Submit through the broker", "Send one calculation"):
        result = task_result(stdout, task)
        if result != "absent":
            return result
    return "absent"


@pytest.mark.parametrize("extra_vars, message", [
    ({"terachem_license_file": "/nonexistent/license.key"},
     "TeraChem license file '/nonexistent/license.key' not found on the controller"),
    ({"broker_rabbitmq_password": ""}, "tf-cl-head: broker_rabbitmq_password is empty"),
    ({"broker_redis_password": None}, "tf-cl-gpu1: broker_redis_password is null"),
    ({"terachem_env": {"OMP_NUM_THREADS": "{{ vault_missing_threads }}"}}, "'vault_missing_threads' is undefined"),
    ({"container_images_archives": {"terafleet/frontend:latest": "/nonexistent/frontend.tar"}},
     "archive '/nonexistent/frontend.tar' for image terafleet/frontend:latest not found on the controller"),
    ({"preflight_tcpb_base_port": 8080},
     "port collision: 8080 is both the TeraChem port of GPU set 1 and the frontend port of GPU set 1"),
    ({"preflight_lstor_path": "/nonexistent/lstor"}, "$LSTOR /nonexistent/lstor does not exist"),
], ids=["license-missing", "broker-password-empty", "backend-password-null", "undefined-in-terachem-env",
        "archive-missing", "port-collision", "no-lstor"])
def test_bad_input_fails_before_any_container_changes(extra_vars, message):
    before = containers_state()
    result = playbook("site.yml", "-e", json.dumps(extra_vars))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert tasks_outside_preflight(result.stdout) == []
    assert containers_state() == before


def test_check_mode_on_the_converged_cluster_changes_nothing_and_shows_a_change_unapplied():
    before = containers_state()
    result = playbook("site.yml", "--check", "--diff")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    recap = [line for line in result.stdout.splitlines() if "changed=" in line and "ok=" in line]
    assert recap and all(" changed=0 " in line for line in recap), recap
    # An inventory change shows as a diff of the file it changes, and is not applied.
    cron = "/etc/cron.d/terafleet-checks-disk"
    result = playbook("site.yml", "--check", "--diff", "-e", "node_checks_disk_max_percent=91")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "--max-percent 91" in result.stdout and "--max-percent 85" in result.stdout, result.stdout[-3000:]
    assert "--max-percent 85" in node(GPU_NODES[0]).file(cron).content_string
    assert containers_state() == before
    # A worker setting shows as the one line of each worker's configuration it changes; the broker URLs,
    # which hold the passwords, show only as a hash.
    result = playbook("site.yml", "--check", "--diff", "-vvv", "--limit", GPU_NODES[0],
                      "-e", "celery_worker_concurrency=2")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for gpu_set in SETS:
        assert f"worker-{gpu_set}: recreated (configuration changed)" in result.stdout, result.stdout[-3000:]
    assert '-env.TERAFLEET_CONCURRENCY: "1"' in result.stdout and '+env.TERAFLEET_CONCURRENCY: "2"' in result.stdout
    assert 'secrets.broker_url: "(secret ' in result.stdout
    for secret in scenario.secrets("cluster").values():
        assert secret not in result.stdout + result.stderr
    assert containers_state() == before


def test_the_frontend_deletes_jobs_and_takes_uploads_only_while_switched_on():
    from test_cluster import http

    gpu_node = node(GPU_NODES[0])
    address = gpu_node.interface("eth0").addresses[0]
    run = "server_2026-01-01-00.00.00"
    scratch = f"/lstor/terafleet/scratch/{GPU_NODES[0]}-gpu2-3"
    gpu_node.check_output(f"mkdir -p {scratch}/{run}/job_7/scr && echo 'Job finished' > {scratch}/{run}/job_7/tc.out")
    try:
        result = playbook("site.yml", "--limit", GPU_NODES[0], "--tags", "frontend",
                          "-e", "frontend_delete_jobs=true", "-e", "frontend_uploads=true",
                          "-e", "frontend_max_upload=4k")
        assert result.returncode == 0, result.stdout[-3000:]
        assert inspect(gpu_node, "terafleet-frontend")["Config"]["User"] == ""
        assert http(f"http://{address}:8081/uploads/a/b.txt", "PUT", b"input\n") == 201
        assert gpu_node.file(f"{scratch}/uploads/a/b.txt").content == b"input\n"
        assert http(f"http://{address}:8081/uploads/a/", "DELETE") == 204
        assert http(f"http://{address}:8081/uploads/big.bin", "PUT", b"x" * 5000) == 413
        # A job directory goes; a run's directory and the server's root stay, whatever is asked.
        assert http(f"http://{address}:8081/{run}/job_7/", "DELETE") == 204
        assert not gpu_node.file(f"{scratch}/{run}/job_7").exists
        assert http(f"http://{address}:8081/{run}/", "DELETE") == 403
        assert http(f"http://{address}:8081/", "DELETE") == 403
        assert gpu_node.file(f"{scratch}/{run}").is_directory
    finally:
        result = playbook("site.yml", "--limit", GPU_NODES[0], "--tags", "frontend")
        gpu_node.check_output(f"rm -rf {scratch}/{run} {scratch}/uploads")
    assert result.returncode == 0, result.stdout[-3000:]
    assert inspect(gpu_node, "terafleet-frontend")["Config"]["User"] == "65534:0"
    assert http(f"http://{address}:8081/uploads/a/b.txt", "PUT", b"input\n") == 403


def test_cpu_only_worker_drives_a_remote_server_through_its_published_port(compute):
    gpu2 = node(GPU_NODES[1])
    address = gpu2.interface("eth0").addresses[0]
    doc = water(0.97)
    value = compute.apply_async(args=[doc], queue="remote").get(timeout=180)
    assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
    assert value["provenance"]["node"] == "tf-cl-head"
    assert value["provenance"]["server"] == f"{address}:11112"


def printed_table(stdout: str, host: str) -> list[str]:
    """The lines status.yml printed for host: the YAML callback's literal block under its `msg: |-`."""
    task = stdout.split("TASK [terafleet.cluster.status : Print one table per node]")[1].split("\nTASK [")[0]
    block = task.split(f"ok: [{host}] =>")[1].split("msg: |-\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("        "):
            break
        lines.append(line[8:])
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return [line[indent:] for line in lines]


def test_status_prints_a_table_per_node_and_writes_json(tmp_path):
    report = tmp_path / "status.json"
    result = playbook("status.yml", "-vvv", "-e", f"status_json_file={report}", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    for secret in [*scenario.secrets("cluster").values(), "TERACHEM-TEST-LICENSE"]:
        assert secret not in result.stdout + result.stderr
    changed_tasks = [block.split("]")[0] for block in result.stdout.split("TASK [")[1:] if "\nchanged:" in block]
    assert changed_tasks == ["terafleet.cluster.status : Write the JSON report on the controller"], changed_tasks
    for gpu_node in GPU_NODES:
        lines = printed_table(result.stdout, gpu_node)
        assert lines[0].startswith(f"node {gpu_node}: $LSTOR ")
        assert "; queue terachem: 0 waiting, 4 consumers;" in lines[0], lines[0]
        header = lines[1]
        assert header.split() == ["GPU", "set", "GPUs", "GPU", "%", "server", "health", "worker", "state", "tasks",
                                  "queued", "restarts", "watchdog"]
        # A real table: each row's cells start where the header's columns do.
        starts = [header.index(title) for title in ("GPUs", "GPU %", "server", "health", "worker", "state",
                                                    "tasks", "queued", "restarts", "watchdog")]
        for line in lines[2:]:
            assert all(line[start - 1] == " " and line[start] != " " for start in starts), (header, line)
        assert [line.split()[:3] for line in lines[2:]] == [["gpu0-1", "0,1", "0,0"], ["gpu2-3", "2,3", "0,0"]]
    assert printed_table(result.stdout, "tf-cl-head")[0].startswith("node tf-cl-head: no $LSTOR (not a GPU node)")
    nodes = {entry["node"]: entry for entry in json.loads(report.read_text())}
    assert set(nodes) == {"tf-cl-head", *GPU_NODES}
    for gpu_node in GPU_NODES:
        rows = nodes[gpu_node]["servers"]
        assert [row["gpu_set"] for row in rows] == list(SETS)
        assert {row["gpus"] for row in rows} == {"0,1", "2,3"}
        assert all(row["server_state"] == "healthy" and row["worker_state"] == "idle" for row in rows), rows
        assert nodes[gpu_node]["lstor_used"].endswith("%")
        assert nodes[gpu_node]["shared_queue"] == {"name": "terachem", "ready": 0, "consumers": 4}
        assert {row["gpu_use"] for row in rows} == {"0,0"} and {row["queued"] for row in rows} == {0}
    assert "terafleet-rabbitmq" in nodes["tf-cl-head"]["others"]


def test_a_gpu_node_converges_under_limit_while_the_head_is_down_when_the_inventory_gives_the_broker(compute):
    head = json.loads(subprocess.run(["docker", "inspect", "tf-cl-head"], check=True, capture_output=True,
                                     text=True).stdout)[0]
    address = next(iter(head["NetworkSettings"]["Networks"].values()))["IPAddress"]
    # Frozen, the head answers neither Ansible nor the workers, and keeps its address for afterwards.
    subprocess.run(["docker", "pause", "tf-cl-head"], check=True, capture_output=True)
    try:
        # Without the address the run would ask the head for its facts, and fail on it.
        result = playbook("site.yml", "--limit", GPU_NODES[0], "-e", f"broker_bind_address={address}")
        assert result.returncode == 0, result.stdout[-3000:]
        assert task_result(result.stdout, "Gather the head node's network facts") in ("skipping", "absent")
        assert "changed=0" in result.stdout.split("PLAY RECAP")[-1], result.stdout[-3000:]
    finally:
        subprocess.run(["docker", "unpause", "tf-cl-head"], check=True, capture_output=True)
    value = wait_for(lambda: compute.apply_async(args=[water()], queue="terachem").get(timeout=60), 300,
                     "a calculation through the head once it answers again")
    assert value["energy"] == pytest.approx(expected_energy(water()), abs=1e-9)
