"""The cron checks and the workers against real faults: a filling $LSTOR, a frozen TeraChem server, a
crash loop a converge clears, a server stopped on purpose, a broker that stops or restarts while a
server computes, a calculation that kills its worker process, and inputs that crash their server."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from metrics import alertmanager_alerts, chat_receiver, one, scrape  # noqa: E402

from polling import wait_for  # noqa: E402
from scenario import (  # noqa: E402
    address,
    broker_fixtures,
    expected_energy,
    inspect,
    node,
    passes_check,
    playbook,
    server_pid,
    water,
)

testinfra_hosts = ["ansible://tf-fa-gpu1"]
SCRATCH = "/lstor/terafleet/scratch/tf-fa-gpu1-gpu0"
DISK_CRON = "/etc/cron.d/terafleet-checks-disk"
WATCHDOG_CRON = "/etc/cron.d/terafleet-checks-watchdog"
celery_app, compute = broker_fixtures("faults", "tf-fa-head")


def cron_command(host, cron_file: str) -> str:
    """The command a cron entry runs, without its schedule and user fields and its logger pipe."""
    line = next(entry for entry in host.file(cron_file).content_string.splitlines()
                if entry and not entry.startswith("#"))
    return " ".join(line.split()[6:]).split(" 2>&1 | logger")[0]


def control(host, server: str, **switches) -> None:
    host.check_output(f"printf '%s' {shlex.quote(json.dumps(switches))} > /lstor/terafleet/scratch/tf-fa-gpu1-{server}"
                      "/standin-control.json")


def test_cron_entries_present(host):
    disk = host.file(DISK_CRON).content_string
    assert "*/15 * * * * root /usr/local/sbin/terafleet-disk-check --path /lstor" in disk
    assert "--max-percent 50" in disk and "--prune-age-hours 24" in disk
    watchdog = host.file(WATCHDOG_CRON).content_string
    assert "*/5 * * * * root flock --wait 60 /var/lib/terafleet/watchdog.lock /usr/local/sbin/terafleet-watchdog" \
        in watchdog and "--max-restarts 3" in watchdog and "--watch" not in watchdog
    assert host.service("cron").is_running


def test_full_lstor_alerts_and_prunes_old_jobs_but_keeps_current_ones(host):
    runs = sorted(host.check_output(f"ls -1 {SCRATCH} | grep ^server_").split())
    current_run = f"{SCRATCH}/{runs[-1]}"
    old_run = f"{SCRATCH}/server_2026-01-01-00.00.00"
    for job in (1, 2):
        host.check_output(f"mkdir -p {old_run}/job_{job}/scr && head -c 130M /dev/zero > {old_run}/job_{job}/scr/c0"
                          f" && touch -d '3 days ago' {old_run}/job_{job}/scr/c0 {old_run}/job_{job}/scr"
                          f" {old_run}/job_{job}")
    current_jobs = host.check_output(f"ls -1 {current_run}").split()
    newest = max(current_jobs, key=lambda name: int(name.split("_")[1]))
    host.check_output(f"touch -d '3 days ago' {current_run}/{newest} {current_run}/{newest}/*")
    assert float(host.check_output("df --output=pcent /lstor | tail -1").strip(" %")) > 50
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    result = host.run(cron_command(host, DISK_CRON) + " --json")
    assert result.rc == 1, result.stderr  # alert
    report = json.loads(result.stdout.splitlines()[-1])
    assert sorted(report["pruned"]) == [f"{old_run}/job_1", f"{old_run}/job_2"]
    assert report["freed_bytes"] >= 2 * 130 * 2**20
    assert not host.file(old_run).exists
    assert host.file(f"{current_run}/{newest}").is_directory, "the server's current job must stay"
    journal = host.check_output(f"journalctl --no-pager -t terafleet-disk-check --since {shlex.quote(since)}")
    assert "$LSTOR /lstor is" in journal and "pruned 2 job directories" in journal
    assert float(host.check_output("df --output=pcent /lstor | tail -1").strip(" %")) < 50


def test_frozen_server_turns_unhealthy_and_the_watchdog_restarts_it(host):
    server = inspect(host, "terachem-gpu0")
    host.check_output(f"kill -STOP {server_pid(host, 'terachem-gpu0')}")
    wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "unhealthy", 60, "unhealthy")
    result = host.run(cron_command(host, WATCHDOG_CRON) + " --stop-timeout 3 --json")
    assert result.rc == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["terachem-gpu0"] == "restarted (unhealthy)"
    after = inspect(host, "terachem-gpu0")
    assert after["State"]["StartedAt"] != server["State"]["StartedAt"]
    wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "healthy", 60, "healthy again")


def test_crash_loop_is_reported_and_left_stopped(host):
    # A chat webhook this test listens on, given to the node checks by a converge; Alertmanager on the head.
    with chat_receiver("faults") as (webhook, received):
        result = playbook("site.yml", "--tags", "node_checks", "-e", f"node_checks_webhook_url={webhook}")
        assert result.returncode == 0, result.stdout[-3000:]
        try:
            crash_loop_is_reported_and_left_stopped(host)
            # The chat receiver got the watchdog's message as `text`, its default body.
            texts = [body["text"] for body in received if "crash loop" in body.get("text", "")]
            assert texts and texts[0].startswith("terachem-gpu1: crash loop"), received
        finally:
            restored = playbook("site.yml", "--tags", "node_checks")
            assert restored.returncode == 0, restored.stdout[-3000:]
    # Alertmanager holds the crash loop: pushed by the watchdog, and fired by Prometheus's rule on the
    # node's metrics.
    alertmanager = f"http://{address('tf-fa-head', 'faults')}:9093"
    alerts = wait_for(lambda: [alert for alert in alertmanager_alerts(alertmanager, "TerafleetCrashLoop")
                               if alert["labels"].get("container") == "terachem-gpu1"], 60, "the crash loop alert")
    assert {alert["labels"].get("severity") for alert in alerts} == {"critical"}
    assert any(alert["labels"].get("source") == "terafleet-watchdog" for alert in alerts), alerts
    wait_for(lambda: any(alert["labels"].get("job") == "node" for alert in alertmanager_alerts(
        alertmanager, "TerafleetCrashLoop")), 90, "Prometheus's crash loop alert")


def crash_loop_is_reported_and_left_stopped(host):
    watchdog = cron_command(host, WATCHDOG_CRON)
    host.check_output(watchdog + " --json")  # the watchdog's view before the loop
    control(host, "gpu1", crash_on_start=True)
    host.check_output("docker restart --time 3 terachem-gpu1")
    wait_for(lambda: inspect(host, "terachem-gpu1")["RestartCount"] >= 3, 90, "three crashes")
    result = json.loads(host.check_output(watchdog + " --json").splitlines()[-1])
    # The cron entry may run the watchdog first; then this run finds the loop already stopped.
    assert result["terachem-gpu1"] in ("stopped: crash loop", "left stopped (crash loop)")
    stopped = inspect(host, "terachem-gpu1")
    assert stopped["State"]["Running"] is False
    assert stopped["HostConfig"]["RestartPolicy"]["Name"] == "no"
    time.sleep(3)
    assert inspect(host, "terachem-gpu1")["State"]["Running"] is False, "left stopped, not restarted"
    assert json.loads(host.check_output(watchdog + " --json").splitlines()[-1])["terachem-gpu1"] == \
        "left stopped (crash loop)"
    assert "crash loop" in host.check_output("journalctl --no-pager -t terafleet-watchdog")
    # And flagged in the node's metrics, as Prometheus reads them from node-exporter.
    samples = scrape(f"http://{address('tf-fa-gpu1', 'faults')}:9100/metrics")
    assert one(samples, "terafleet_container_crash_loop", container="terachem-gpu1") == 1
    assert one(samples, "terafleet_container_running", container="terachem-gpu1") == 0
    assert one(samples, "terafleet_container_crash_loop", container="terachem-gpu0") == 0


def jobs_run(host) -> int:
    return int(host.check_output(f"ls -d {SCRATCH}/server_*/job_* 2>/dev/null | wc -l"))


def jobs_finished(host) -> int:
    return int(host.check_output(f"cat {SCRATCH}/server_*/job_*/tc.out 2>/dev/null | grep -c '^Job finished' || true"))


def test_broker_stopped_mid_calculation_nothing_is_restarted_and_the_result_arrives_after(host, compute):
    head = node("tf-fa-head")
    control(host, "gpu0", job_seconds=60)
    before = {name: inspect(host, name)["State"]["StartedAt"] for name in ("terachem-gpu0", "worker-gpu0")}
    jobs, finished = jobs_run(host), jobs_finished(host)
    doc = water(1.03)
    result = compute.apply_async(args=[doc], queue="terachem.tf-fa-gpu1.gpu0")
    wait_for(lambda: result.state == "STARTED", 60, "the calculation to start")
    head.check_output("docker stop terafleet-rabbitmq")
    try:
        # Busy with its one client, the server cannot answer its health check; the broker check that
        # once guarded it cannot answer either. The watchdog decides on the node alone.
        wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "unhealthy", 60,
                 "the busy server to turn unhealthy")
        verdicts = json.loads(host.check_output(cron_command(host, WATCHDOG_CRON) + " --json").splitlines()[-1])
        assert verdicts["terachem-gpu0"] == "unhealthy but serving 1 client(s), a calculation; left alone"
        assert not verdicts["worker-gpu0"].startswith("restart"), verdicts
        # The calculation ends while the broker is away: the worker cannot acknowledge it.
        wait_for(lambda: jobs_finished(host) == finished + 1, 120, "the calculation to end")
    finally:
        head.check_output("docker start terafleet-rabbitmq")
    value = result.get(timeout=300)
    assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
    assert value["provenance"]["server"] == "terachem-gpu0:11111"
    assert {name: inspect(host, name)["State"]["StartedAt"] for name in before} == before, "nothing restarted"
    # The broker delivers the unacknowledged calculation again once it is back; the stored result stands.
    control(host, "gpu0")
    time.sleep(20)
    assert result.state == "SUCCESS"
    assert jobs_run(host) == jobs + 1, "the calculation ran exactly once"


def test_broker_restarted_mid_calculation_every_task_is_stored_once_as_success(host, compute):
    head = node("tf-fa-head")
    control(host, "gpu0", job_seconds=15)
    jobs = jobs_run(host)
    docs = [water(1.04 + i / 100) for i in range(2)]
    # One server: the second waits in the broker while the first computes; both are unacknowledged when
    # RabbitMQ restarts, and the first is delivered again while it still runs.
    results = [compute.apply_async(args=[doc], queue="terachem.tf-fa-gpu1.gpu0") for doc in docs]
    wait_for(lambda: results[0].state == "STARTED", 60, "the first calculation to start")
    head.check_output("docker restart --time 10 terafleet-rabbitmq")
    try:
        values = [result.get(timeout=300) for result in results]
    finally:
        control(host, "gpu0")
    for doc, value in zip(docs, values, strict=True):
        assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)
    time.sleep(20)  # a redelivered copy that computed would show as a third job
    assert [result.state for result in results] == ["SUCCESS", "SUCCESS"]
    assert jobs_run(host) == jobs + 2, "each task must run exactly once"


def test_a_calculation_that_kills_its_worker_process_fails_after_two_deliveries(host, compute):
    control(host, "gpu0", job_seconds=30)
    server_started = inspect(host, "terachem-gpu0")["State"]["StartedAt"]
    jobs = jobs_run(host)
    result = compute.apply_async(args=[water(1.06)], queue="terachem.tf-fa-gpu1.gpu0")
    try:
        for run in (1, 2):
            wait_for(lambda run=run: jobs_run(host) == jobs + run, 120, f"run {run} of the task", interval=0.5)
            # As an out-of-memory kill does: the pool process dies, Celery's main process (the child of
            # Docker's init, PID 1) lives on.
            host.check_output("docker exec worker-gpu0 sh -c "
                              "'set -- $(cat /proc/1/task/*/children); kill -9 $(cat /proc/$1/task/*/children)'")
        with pytest.raises(Exception) as error:
            result.get(timeout=180)
    finally:
        control(host, "gpu0")
    assert type(error.value).__name__ == "WorkerLost"
    assert "2 runs of this task ended with their worker process dying" in str(error.value)
    time.sleep(10)
    assert jobs_run(host) == jobs + 2, "no third delivery ran"
    # The set stays in service: its server was not restarted, and it computes the next calculation.
    wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "healthy", 90, "healthy")
    assert inspect(host, "terachem-gpu0")["State"]["StartedAt"] == server_started
    doc = water(1.07)
    value = compute.apply_async(args=[doc], queue="terachem.tf-fa-gpu1.gpu0").get(timeout=180)
    assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)


def test_inputs_that_crash_their_server_fail_and_do_not_count_toward_its_crash_loop(host, compute):
    watchdog = cron_command(host, WATCHDOG_CRON)
    host.check_output(watchdog + " --json")  # the watchdog's count before the crashes
    restarts = inspect(host, "terachem-gpu0")["RestartCount"]
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    control(host, "gpu0", crash_mid_job=True, job_seconds=1)
    try:
        results = []
        for scale in (1.08, 1.09):
            result = compute.apply_async(args=[water(scale)], queue="terachem.tf-fa-gpu1.gpu0")
            with pytest.raises(Exception) as error:
                result.get(timeout=180)
            assert type(error.value).__name__ == "CalculationError"
            assert "TeraChem died 2 times running this input" in str(error.value)
            results.append(result.id)
    finally:
        control(host, "gpu0")
    # Four restarts, over the cron entry's --max-restarts 3, all caused by the two inputs.
    assert inspect(host, "terachem-gpu0")["RestartCount"] == restarts + 4
    wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "healthy", 90, "healthy")
    verdicts = json.loads(host.check_output(watchdog + " --json").splitlines()[-1])
    assert verdicts["terachem-gpu0"] == "ok", verdicts
    state = json.loads(host.file("/var/lib/terafleet/watchdog.json").content_string)["terachem-gpu0"]
    assert sorted(state["forgiven"]) == sorted(results) and not state["stopped_for_crash_loop"]
    server = inspect(host, "terachem-gpu0")
    assert server["State"]["Running"] and server["HostConfig"]["RestartPolicy"]["Name"] != "no"
    journal = host.check_output(f"journalctl --no-pager -t terafleet-watchdog --since {shlex.quote(since)}")
    for task in results:
        assert f"2 restart(s) caused by the input of task {task}" in journal
    assert "crash loop" not in journal.replace("not counted toward a crash loop", "")
    doc = water(1.10)
    value = compute.apply_async(args=[doc], queue="terachem.tf-fa-gpu1.gpu0").get(timeout=180)
    assert value["energy"] == pytest.approx(expected_energy(doc), abs=1e-9)


def test_a_server_stopped_on_purpose_is_left_stopped(host):
    host.check_output("docker stop --time 10 terachem-gpu0")
    try:
        verdicts = json.loads(host.check_output(cron_command(host, WATCHDOG_CRON) + " --json").splitlines()[-1])
        assert verdicts["terachem-gpu0"] in ("left stopped (docker stop: Docker restarts a crash itself)",
                                             "left stopped (exited 0: stopped on purpose)"), verdicts
        time.sleep(8)
        assert inspect(host, "terachem-gpu0")["State"]["Running"] is False, "the watchdog undid the stop"
    finally:
        host.check_output("docker start terachem-gpu0")
    wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "healthy", 90, "healthy")


def test_a_worker_waiting_for_its_server_stops_at_once(host):
    """A worker whose server does not answer waits for it (TERAFLEET_SERVER_WAIT) before Celery starts. A
    stop then must end it at once, not after its stop timeout, as a converge or a teardown stops it."""
    host.check_output("docker stop --time 10 terachem-gpu0")
    try:
        host.check_output("docker restart --time 60 worker-gpu0")
        time.sleep(3)
        processes = host.check_output("docker top worker-gpu0 -eo pid,args")
        assert "terafleet-worker" in processes and "celery" not in processes, "not waiting for the server"
        started = time.monotonic()
        host.check_output("docker stop --time 60 worker-gpu0")
        took = time.monotonic() - started
        assert took < 10, f"the waiting worker took {took:.0f} s to stop"
    finally:
        host.check_output("docker start terachem-gpu0")
        wait_for(lambda: inspect(host, "terachem-gpu0")["State"]["Health"]["Status"] == "healthy", 90, "healthy")
        host.check_output("docker start worker-gpu0")
    wait_for(lambda: passes_check(host, "worker-gpu0"), 120, "worker-gpu0 back on the broker", interval=2.0)


def test_a_converge_clears_the_crash_loop_and_the_server_is_watched_again(host):
    watchdog = cron_command(host, WATCHDOG_CRON)
    assert json.loads(host.check_output(watchdog + " --json").splitlines()[-1])["terachem-gpu1"] == \
        "left stopped (crash loop)", "test_crash_loop_is_reported_and_left_stopped runs first"
    control(host, "gpu1")  # the cause fixed
    result = playbook("site.yml", timeout=900)
    assert result.returncode == 0, result.stdout[-5000:]
    server = inspect(host, "terachem-gpu1")
    assert server["State"]["Running"] and server["HostConfig"]["RestartPolicy"]["Name"] != "no"
    wait_for(lambda: inspect(host, "terachem-gpu1")["State"]["Health"]["Status"] == "healthy", 90, "healthy")
    verdicts = json.loads(host.check_output(watchdog + " --json").splitlines()[-1])
    assert verdicts["terachem-gpu1"] == "ok", verdicts
    # Watched again: a hang is restarted, not left as part of the old loop.
    started = inspect(host, "terachem-gpu1")["State"]["StartedAt"]
    host.check_output(f"kill -STOP {server_pid(host, 'terachem-gpu1')}")
    wait_for(lambda: inspect(host, "terachem-gpu1")["State"]["Health"]["Status"] == "unhealthy", 60, "unhealthy")
    verdicts = json.loads(host.check_output(watchdog + " --stop-timeout 3 --json").splitlines()[-1])
    assert verdicts["terachem-gpu1"] == "restarted (unhealthy)", verdicts
    assert inspect(host, "terachem-gpu1")["State"]["StartedAt"] != started
    wait_for(lambda: inspect(host, "terachem-gpu1")["State"]["Health"]["Status"] == "healthy", 60, "healthy again")


@pytest.fixture(autouse=True, scope="module")
def restore(host):
    yield
    control(host, "gpu1")
    host.run("/usr/local/sbin/terafleet-watchdog --reset terachem-gpu1 && docker start terachem-gpu1")
