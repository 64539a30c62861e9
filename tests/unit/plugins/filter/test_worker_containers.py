"""worker_containers: one worker per server and the CPU-only ones, with URLs whose passwords must be set."""

import re

import pytest
from ansible.errors import AnsibleFilterError
from plan_inputs import BROKER, CELERY_WORKER, NFS, SCRATCH, preflight_node, scratch, settings

from ansible_collections.terafleet.cluster.plugins.filter.worker_containers import FilterModule, worker_containers

CPU_WORKER = {"name": "remote-gpu2", "queues": ["remote"], "server_host": "10.1.0.21", "server_port": 11112}


def plan(node=None, host="gpu01.cluster", backend=SCRATCH, **changes):
    node = node or preflight_node(size=2)
    return worker_containers(node, scratch(node, backend), settings(CELERY_WORKER, **changes), host, "gpu01")


def test_one_worker_per_server_on_its_queue_with_the_built_urls():
    workers = plan()
    assert [w["name"] for w in workers] == ["worker-gpu0-1", "worker-gpu2-3"]
    first = workers[0]
    assert first["secrets"] == {
        "broker_url": "amqp://terafleet:s3cret%2F%2Bpw@10.1.0.10:5672/terafleet",
        "result_backend": "redis://terafleet:r3dis@10.1.0.10:6379/0",
    }
    assert first["env"] == {
        "TERAFLEET_RESULT_EXPIRES": "604800", "TERAFLEET_UNAVAILABLE_TIMEOUT": "21600",
        "TERAFLEET_RETRY_BACKOFF": "2",
        "TERAFLEET_NODE": "gpu01", "TERAFLEET_QUEUES": "terachem,terachem.gpu01.gpu0-1",
        "TERAFLEET_CONCURRENCY": "1", "TERAFLEET_GPU_SET": "gpu0-1", "TERAFLEET_SCRATCH_DIR": "/scratch",
        "TCPB_HOST": "terachem-gpu0-1", "TCPB_PORT": "11111",
        "TERAFLEET_BROKER_URL_FILE": "/run/terafleet/broker_url",
        "TERAFLEET_RESULT_BACKEND_FILE": "/run/terafleet/result_backend",
    }
    assert "s3cret" not in str(first["env"])
    assert first["mounts"] == [{"type": "volume", "source": "terafleet-scratch-gpu0-1", "target": "/scratch",
                                "read_only": True},
                               {"type": "bind", "source": "/etc/terafleet/worker", "target": "/run/terafleet",
                                "read_only": True}]
    assert first["labels"] == {"org.terafleet.role": "worker", "org.terafleet.node": "gpu01.cluster",
                               "org.terafleet.gpu_set": "gpu0-1", "org.terafleet.server": "terachem-gpu0-1"}
    assert first["network"] == "terafleet" and first["stop_timeout"] == 86400 and first["memory"] == "2g"
    assert first["init"] is True  # Docker's init passes on a SIGTERM that comes before Celery's handler


def test_on_nfs_each_worker_reads_its_servers_nfs_volume():
    assert [w["mounts"][:1] for w in plan(backend=NFS)] == [
        [{"type": "volume", "source": f"terafleet-scratch-nfs-{name}", "target": "/scratch", "read_only": True}]
        for name in ("gpu0-1", "gpu2-3")]


def test_explicit_urls_need_no_broker_settings():
    workers = plan(broker_url="amqps://u:p@mq.example:5671/v", result_backend="rediss://:q@r.example:6380/1",
                   broker="not read")
    assert workers[0]["secrets"] == {"broker_url": "amqps://u:p@mq.example:5671/v",
                                     "result_backend": "rediss://:q@r.example:6380/1"}


def test_with_tls_the_urls_are_amqps_and_rediss_and_each_worker_gets_the_ca():
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    workers = plan(tls_ca=ca, broker={**BROKER, "tls": True, "rabbitmq_port": 5671})
    for worker in workers:
        assert worker["secrets"] == {"broker_url": "amqps://terafleet:s3cret%2F%2Bpw@10.1.0.10:5671/terafleet",
                                     "result_backend": "rediss://terafleet:r3dis@10.1.0.10:6379/0", "ca.crt": ca}
        assert worker["env"]["TERAFLEET_TLS_CA_FILE"] == "/run/terafleet/ca.crt"
    # Without a CA of its own the workers trust the system's; given URLs keep their scheme.
    explicit = plan(broker_url="amqps://u:p@mq.example:5671/v", result_backend="rediss://:q@r.example:6380/1")[0]
    assert "ca.crt" not in explicit["secrets"] and "TERAFLEET_TLS_CA_FILE" not in explicit["env"]


def test_extra_environment_and_a_fractional_backoff():
    workers = plan(env={"CELERY_LOG": "info"}, retry_backoff=1.5)
    assert workers[1]["env"]["CELERY_LOG"] == "info" and workers[1]["env"]["TERAFLEET_RETRY_BACKOFF"] == "1.5"


def test_extra_environment_cannot_put_a_url_back_or_move_the_files():
    env = {"TERAFLEET_BROKER_URL": "amqp://x:leak@h//", "TERAFLEET_RESULT_BACKEND_FILE": "/tmp/other"}
    worker = plan(env=env)[0]
    assert "TERAFLEET_BROKER_URL" not in worker["env"]
    assert worker["env"]["TERAFLEET_RESULT_BACKEND_FILE"] == "/run/terafleet/result_backend"


def test_the_secrets_directory_must_be_an_absolute_path():
    with pytest.raises(AnsibleFilterError, match="celery_worker_secrets_dir must be an absolute path"):
        plan(secrets_dir="etc/terafleet")


def test_cpu_only_workers_drive_a_server_elsewhere():
    workers = plan(node=preflight_node(gpu_node=False), host="cpu01", cpu_workers=[CPU_WORKER])
    assert [w["name"] for w in workers] == ["worker-remote-gpu2"]
    assert workers[0]["env"]["TCPB_HOST"] == "10.1.0.21" and workers[0]["env"]["TCPB_PORT"] == "11112"
    assert workers[0]["env"]["TERAFLEET_QUEUES"] == "remote"
    assert [m["target"] for m in workers[0]["mounts"]] == ["/run/terafleet"]
    assert workers[0]["labels"]["org.terafleet.server"] == "10.1.0.21:11112"
    assert workers[0]["init"] is True


def test_a_host_with_no_worker_needs_no_password():
    assert plan(node=preflight_node(gpu_node=False), host="cpu01",
                broker=settings(BROKER, rabbitmq_password="")) == []


@pytest.mark.parametrize("password, message", [
    ("", "broker_rabbitmq_password is empty; set it (Ansible Vault) in the inventory"),
    (None, "broker_rabbitmq_password is null; set it (Ansible Vault) in the inventory"),
    (12345, "broker_rabbitmq_password must be a string, not int; quote it in the inventory"),
])
def test_a_bad_broker_password_is_refused_by_name(password, message):
    with pytest.raises(AnsibleFilterError, match=f"^gpu01.cluster: {re.escape(message)}$"):
        plan(broker={**BROKER, "rabbitmq_password": password})


def test_a_missing_redis_password_is_refused_by_name():
    with pytest.raises(AnsibleFilterError, match="broker_redis_password is null"):
        plan(broker=settings(BROKER, redis_password=None))


def test_an_explicit_url_without_a_password_is_refused_without_showing_it():
    with pytest.raises(AnsibleFilterError, match="celery_worker_broker_url has no password in 'amqp://u@mq:5672/v'"):
        plan(broker_url="amqp://u@mq:5672/v", result_backend="redis://:x@r:6379/0")


def test_no_broker_address_is_named():
    with pytest.raises(AnsibleFilterError, match="no broker address"):
        plan(broker={**BROKER, "host": ""})


@pytest.mark.parametrize("entry, message", [
    ({**CPU_WORKER, "server_port": 80}, "server_port in 1024-65535"),
    ({**CPU_WORKER, "queues": []}, "needs a name"),
    ({**CPU_WORKER, "name": "a b"}, "needs a name (letters, digits, _ . -)"),
    ("remote-gpu2", "CPU-only worker 'remote-gpu2' needs"),
])
def test_bad_cpu_only_workers_are_refused(entry, message):
    with pytest.raises(AnsibleFilterError) as error:
        plan(node=preflight_node(gpu_node=False), host="cpu01", cpu_workers=[entry])
    assert message in str(error.value) and "celery_worker_cpu_workers" in str(error.value)


def test_repeated_cpu_worker_names_are_refused():
    with pytest.raises(AnsibleFilterError, match=re.escape(
            "cpu01: CPU-only worker names repeat: ['remote-gpu2', 'remote-gpu2'] (celery_worker_cpu_workers)")):
        plan(node=preflight_node(gpu_node=False), host="cpu01", cpu_workers=[CPU_WORKER, CPU_WORKER])


@pytest.mark.parametrize("changes, message", [
    ({"queues": []}, "celery_worker_queues is empty"),
    ({"concurrency": 0}, "celery_worker_concurrency must be at least 1, got 0"),
    ({"retry_backoff": "fast"}, "celery_worker_retry_backoff must be a number, got 'fast'"),
    ({"env": {"A": {"nested": 1}}}, "celery_worker_env.A must be a string or number"),
    ({"image": None}, "celery_worker_image is not set"),
])
def test_bad_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError) as error:
        plan(**changes)
    assert message in str(error.value)


def test_registered_as_a_filter():
    assert FilterModule().filters()["worker_containers"] is worker_containers


def test_each_worker_answers_to_the_celery_name_its_instance_plan_gives_and_reads_its_urls(monkeypatch, tmp_path):
    from terafleet_worker.settings import Settings

    node = preflight_node(size=2)
    for instance, worker in zip(node["instances"], plan(node), strict=True):
        # The secrets directory as the role writes it, where the worker's mount puts it.
        mount = next(m for m in worker["mounts"] if m["source"] == "/etc/terafleet/worker")
        for name, value in worker["secrets"].items():
            (tmp_path / name).write_text(value + "\n")
        for key, value in worker["env"].items():
            monkeypatch.setenv(key, value.replace(mount["target"], str(tmp_path)))
        settings = Settings()
        assert settings.worker_name == instance["celery_name"]
        assert (settings.broker_url, settings.result_backend) == (worker["secrets"]["broker_url"],
                                                                  worker["secrets"]["result_backend"])


def cpu_node(**changes):
    node = preflight_node(gpu_node=False)
    return worker_containers(node, scratch(node), settings(CELERY_WORKER, cpu_node=True, **changes), "cpu01.cluster",
                             "cpu01")


def test_a_cpu_node_runs_the_cpu_programs_on_every_core_by_default():
    [worker] = cpu_node()
    assert worker["name"] == "worker-cpu" and worker["image"] == "terafleet/worker:latest"
    assert {key: worker["env"][key] for key in ("TERAFLEET_QUEUES", "TERAFLEET_CONCURRENCY", "TERAFLEET_PROGRAMS",
                                                "TERAFLEET_GPU_SET", "OMP_NUM_THREADS", "TERAFLEET_NODE")} == {
        "TERAFLEET_QUEUES": "cpu", "TERAFLEET_CONCURRENCY": "16", "TERAFLEET_PROGRAMS": "pyscf,xtb",
        "TERAFLEET_GPU_SET": "programs", "OMP_NUM_THREADS": "1", "TERAFLEET_NODE": "cpu01"}
    assert "TCPB_HOST" not in worker["env"] and "s3cret" not in str(worker["env"])
    assert worker["cpus"] == 16.0 and worker["memory"] == str(16 * 4 * 2**30) and worker["init"] is True
    assert worker["mounts"] == [{"type": "bind", "source": "/etc/terafleet/worker", "target": "/run/terafleet",
                                 "read_only": True}]
    assert worker["labels"] == {"org.terafleet.role": "worker", "org.terafleet.node": "cpu01.cluster",
                                "org.terafleet.programs": "pyscf,xtb"}
    assert worker["secrets"]["broker_url"].startswith("amqp://terafleet:")


def test_a_gpu_node_lends_spare_cores_only_when_asked():
    assert [w["name"] for w in plan()] == ["worker-gpu0-1", "worker-gpu2-3"]
    workers = plan(cpu_program_cores=6, cpu_program_threads=2, cpu_program_memory="512m",
                   cpu_program_queues=["cpu", "cpu-small"])
    assert [w["name"] for w in workers] == ["worker-gpu0-1", "worker-gpu2-3", "worker-cpu"]
    spare = workers[-1]
    assert spare["env"]["TERAFLEET_CONCURRENCY"] == "3" and spare["env"]["OMP_NUM_THREADS"] == "2"
    assert spare["env"]["TERAFLEET_QUEUES"] == "cpu,cpu-small"
    assert spare["cpus"] == 6.0 and spare["memory"] == str(3 * 512 * 2**20)


def test_no_cores_means_no_cpu_program_worker():
    assert cpu_node(cpu_program_cores=0) == []
    assert [w["name"] for w in cpu_node(cpu_program_cores=0, cpu_workers=[CPU_WORKER])] == ["worker-remote-gpu2"]


@pytest.mark.parametrize("changes, message", [
    ({"cpu_program_cores": 17}, "celery_worker_cpu_program_cores asks for 17 cores; the node has 16"),
    ({"cpu_program_cores": -1}, "celery_worker_cpu_program_cores must be at least 0"),
    ({"cpu_program_cores": "many"}, "celery_worker_cpu_program_cores must be a whole number"),
    ({"cpu_program_threads": 32}, "celery_worker_cpu_program_threads is 32, more than the 16 cores"),
    ({"cpu_programs": ["pyscf", "orca"]}, "celery_worker_cpu_programs names ['orca']; the CPU programs are pyscf, xtb"),
    ({"cpu_programs": []}, "celery_worker_cpu_programs is empty"),
    ({"cpu_program_queues": []}, "celery_worker_cpu_program_queues is empty"),
    ({"cpu_program_memory": "lots"}, "celery_worker_cpu_program_memory must be a size such as 512m or 4g"),
    # Docker refuses a limit of 0 when the container is created; preflight refuses it first.
    ({"cpu_program_memory": "0"}, "celery_worker_cpu_program_memory must be a size such as 512m or 4g"),
    ({"cpu_program_cores": None}, "celery_worker_cpu_program_cores is not set"),
])
def test_bad_cpu_program_settings_are_refused_by_name(changes, message):
    with pytest.raises(AnsibleFilterError, match=re.escape(message)):
        cpu_node(**changes)


def test_a_cpu_node_of_unknown_size_must_say_how_many_cores():
    node = {key: value for key, value in preflight_node(gpu_node=False).items() if key != "cpus"}
    with pytest.raises(AnsibleFilterError, match="is null .every core. but the node's CPU count is unknown"):
        worker_containers(node, scratch(node), settings(CELERY_WORKER, cpu_node=True), "cpu01.cluster", "cpu01")


def test_a_host_in_both_groups_lends_no_cores_unless_asked():
    node = preflight_node(size=2)
    both = settings(CELERY_WORKER, cpu_node=True)
    assert [w["name"] for w in worker_containers(node, scratch(node), both, "gpu01.cluster", "gpu01")] == [
        "worker-gpu0-1", "worker-gpu2-3"]
