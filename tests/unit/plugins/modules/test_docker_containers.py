"""docker_containers: the engine configuration it asks for, and what it decides to do, against an engine
double that keeps containers the way the Docker API reports them."""

import copy
import json

import pytest

from ansible_collections.terafleet.cluster.plugins.module_utils.docker_api import DockerAPIError
from ansible_collections.terafleet.cluster.plugins.modules import docker_containers
from ansible_collections.terafleet.cluster.plugins.modules.docker_containers import (
    CONFIG_LABEL,
    HASH_LABEL,
    SpecError,
    action,
    apply,
    check_prerequisites,
    config_hash,
    create_body,
    diff,
    duration_ns,
    ensure_volumes,
    pause_watchdog,
    plan,
    port_bindings,
    resume_watchdog,
    retirements,
    stops_first,
)

from script_loader import load_script

SERVER = {
    "name": "terachem-gpu0", "hostname": "terachem-gpu0", "image": "mtzgroup/terachem:1.9", "init": True,
    "command": ["terachem", "-s", "11111"], "working_dir": "/scratch", "env": {"OMP_NUM_THREADS": 4},
    "runtime": None, "restart_policy": "unless-stopped", "restart": False,
    "device_requests": [{"driver": "nvidia", "count": 0, "device_ids": ["0", "1"], "capabilities": [["gpu"]]}],
    "mounts": [{"type": "volume", "source": "terafleet-scratch-gpu0", "target": "/scratch", "read_only": False,
                "no_copy": True},
               {"type": "bind", "source": "/etc/terafleet/terachem/license.key",
                "target": "/opt/terachem/license.key", "read_only": True, "no_copy": False}],
    "network": "terafleet", "aliases": ["terachem-gpu0"], "published_ports": ["0.0.0.0:11111:11111"],
    "stop_timeout": 30,
    "healthcheck": {"test": ["CMD", "true"], "interval": "10s", "timeout": "5s", "retries": 3,
                    "start_period": "1m30s"},
    "labels": {"org.terafleet.role": "terachem", "org.terafleet.gpus": "0,1"},
}


def spec(**changes) -> dict:
    return dict(copy.deepcopy(SERVER), **changes)


class Engine:
    """The calls DockerAPI makes, on containers held the way the engine's inspect returns them."""

    def __init__(self, images: dict[str, str] | None = None):
        self.images = images if images is not None else {"mtzgroup/terachem:1.9": "sha256:aaa"}
        self.containers: dict[str, dict] = {}
        self.calls: list[tuple] = []

    def image(self, reference):
        return {"Id": self.images[reference]} if reference in self.images else None

    def container(self, name):
        return copy.deepcopy(self.containers.get(name))

    def create_container(self, name, body):
        self.calls.append(("create", name))
        self.containers[name] = {"Image": self.images[body["Image"]],
                                 "Config": {"Labels": body["Labels"], "Image": body["Image"],
                                            **({"StopTimeout": body["StopTimeout"]} if "StopTimeout" in body else {})},
                                 "HostConfig": copy.deepcopy(body["HostConfig"]),
                                 "State": {"Running": False, "Paused": False}}
        return name

    def start(self, name):
        self.calls.append(("start", name))
        self.containers[name]["State"]["Running"] = True

    def stop(self, name, timeout):
        self.calls.append(("stop", name, timeout))
        self.containers[name]["State"]["Running"] = False

    def restart(self, name, timeout):
        self.calls.append(("restart", name, timeout))

    def remove_container(self, name):
        self.calls.append(("remove", name))
        del self.containers[name]

    def update_container(self, name, body):
        self.calls.append(("update", name, body))
        self.containers[name]["HostConfig"].update(body)

    def containers_with(self, labels):
        """The engine's label filter: every label given, with its value where one is given."""
        return [{"Names": [f"/{name}"], "Labels": c["Config"]["Labels"]} for name, c in self.containers.items()
                if all(key in c["Config"]["Labels"] and value in (None, c["Config"]["Labels"][key])
                       for key, value in labels.items())]


def converge(engine: Engine, specs: list[dict], retire: list[dict] | None = None, **options) -> list[str]:
    steps = plan(engine, specs)
    retired = retirements(Listing(engine), retire or [], {s["name"] for s in specs})
    first = stops_first(engine, steps)
    everything = steps + [step for group in retired for step in group] + first
    if any(action(step) not in ("unchanged", "absent") for step in everything):
        apply(engine, steps, retired, options.get("healthy_wait_timeout", 0), options.get("start_delay", 0), first)
    return [action(step) for step in everything]


class Listing:
    """DockerAPI's `containers(labels)` and `container(name)` on an Engine double (whose own `containers`
    attribute holds its state)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def containers(self, labels):
        return self.engine.containers_with(labels)

    def container(self, name):
        return self.engine.container(name)


@pytest.mark.parametrize("memory, limit", [("2g", 2 * 2**30), ("512M", 512 * 2**20), ("1048576", 2**20),
                                           ("64k", 65536)])
def test_a_memory_limit_in_dockers_notation(memory, limit):
    assert create_body({**SERVER, "memory": memory})["HostConfig"]["Memory"] == limit
    assert "Memory" not in create_body(SERVER)["HostConfig"]


def test_a_cpu_limit_in_dockers_terms():
    assert create_body({**SERVER, "cpus": 6.0})["HostConfig"]["NanoCpus"] == 6 * 10**9
    assert create_body({**SERVER, "cpus": 1.5})["HostConfig"]["NanoCpus"] == 1_500_000_000
    assert "NanoCpus" not in create_body(SERVER)["HostConfig"]
    # Set, it is part of the configuration (a change recreates the container); unset, no hash changes.
    assert docker_containers.config_hash({**SERVER, "cpus": 6.0}) != docker_containers.config_hash(SERVER)
    assert docker_containers.config_hash({**SERVER, "cpus": None}) == docker_containers.config_hash(SERVER)
    with pytest.raises(docker_containers.SpecError, match="terachem-gpu0: cpus must be above 0, got -2"):
        create_body({**SERVER, "cpus": -2.0})


@pytest.mark.parametrize("memory", ["2 GB", "0", "-1g", "lots"])
def test_a_memory_limit_docker_cannot_read_is_refused(memory):
    with pytest.raises(docker_containers.SpecError, match=rf"terachem-gpu0: memory '{memory}' is not a size"):
        create_body({**SERVER, "memory": memory})


def test_a_user_is_dockers_user_and_changes_the_hash_only_when_set():
    assert create_body({**SERVER, "user": "65534:65534"})["User"] == "65534:65534"
    assert "User" not in create_body(SERVER)
    assert docker_containers.config_hash({**SERVER, "user": None}) == docker_containers.config_hash(SERVER)
    assert docker_containers.config_hash({**SERVER, "user": "65534"}) != docker_containers.config_hash(SERVER)


def test_create_body_is_what_docker_run_would_ask_for():
    body = create_body(SERVER)
    host = body["HostConfig"]
    assert body["Image"] == "mtzgroup/terachem:1.9"
    assert body["Cmd"] == ["terachem", "-s", "11111"] and body["WorkingDir"] == "/scratch"
    assert body["Env"] == ["OMP_NUM_THREADS=4"]
    assert body["StopTimeout"] == 30
    assert host["Init"] is True and host["RestartPolicy"] == {"Name": "unless-stopped"}
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["0", "1"],
                                       "Capabilities": [["gpu"]]}]
    assert host["Mounts"][0] == {"Type": "volume", "Source": "terafleet-scratch-gpu0", "Target": "/scratch",
                                 "ReadOnly": False, "VolumeOptions": {"NoCopy": True}}
    assert host["Mounts"][1]["ReadOnly"] is True and "VolumeOptions" not in host["Mounts"][1]
    assert host["PortBindings"] == {"11111/tcp": [{"HostIp": "0.0.0.0", "HostPort": "11111"}]}
    assert body["ExposedPorts"] == {"11111/tcp": {}}
    assert host["NetworkMode"] == "terafleet"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"terafleet": {"Aliases": ["terachem-gpu0"]}}}
    assert body["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 10 * 10**9, "Timeout": 5 * 10**9,
                                   "Retries": 3, "StartPeriod": 90 * 10**9}
    assert "Runtime" not in host
    assert body["Labels"]["org.terafleet.gpus"] == "0,1" and len(body["Labels"][HASH_LABEL]) == 64


def test_nvidia_runtime_and_no_network():
    body = create_body(spec(runtime="nvidia", device_requests=[], network=None, published_ports=[]))
    assert body["HostConfig"]["Runtime"] == "nvidia"
    assert "NetworkingConfig" not in body and "NetworkMode" not in body["HostConfig"]


@pytest.mark.parametrize("value, ns", [("10s", 10 * 10**9), ("500ms", 5 * 10**8), ("1m30s", 90 * 10**9),
                                       ("2h", 7200 * 10**9), (15, 15 * 10**9), ("0s", 0)])
def test_durations(value, ns):
    assert duration_ns(value, "interval") == ns


@pytest.mark.parametrize("value", ["ten seconds", "10 s", "1d", "-5s", "s"])
def test_bad_durations_name_the_value(value):
    with pytest.raises(SpecError, match=repr(value).replace("(", r"\(")):
        duration_ns(value, "terachem-gpu0 healthcheck interval")


@pytest.mark.parametrize("ports, expected", [
    (["11111:11111"], {"11111/tcp": [{"HostIp": "", "HostPort": "11111"}]}),
    (["10.0.0.5:11112:11111"], {"11111/tcp": [{"HostIp": "10.0.0.5", "HostPort": "11112"}]}),
    (["[::1]:8080:80/tcp", "0.0.0.0:53:53/udp"], {"80/tcp": [{"HostIp": "::1", "HostPort": "8080"}],
                                                  "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "53"}]}),
])
def test_port_bindings(ports, expected):
    assert port_bindings(ports, "c") == expected


@pytest.mark.parametrize("bad", ["11111", "0.0.0.0:port:11111", "1:2:3/icmp"])
def test_bad_port_is_refused_with_the_entry(bad):
    with pytest.raises(SpecError, match="published port"):
        port_bindings([bad], "terachem-gpu0")


def test_no_copy_on_a_bind_is_refused():
    mounts = [{"type": "bind", "source": "/etc/x", "target": "/x", "read_only": True, "no_copy": True}]
    with pytest.raises(SpecError, match="no_copy applies to volume mounts"):
        create_body(spec(mounts=mounts))


def test_hash_ignores_how_values_are_typed_but_not_what_they_are():
    assert create_body(spec(env={"OMP_NUM_THREADS": "4"}))["Labels"][HASH_LABEL] == \
        create_body(SERVER)["Labels"][HASH_LABEL]
    assert create_body(spec(env={"OMP_NUM_THREADS": "8"}))["Labels"][HASH_LABEL] != \
        create_body(SERVER)["Labels"][HASH_LABEL]
    # The restart policy is changed in place, so it is not part of the hash.
    assert create_body(spec(restart_policy="always"))["Labels"][HASH_LABEL] == \
        create_body(SERVER)["Labels"][HASH_LABEL]


def test_first_run_creates_and_starts_then_second_run_changes_nothing():
    engine = Engine()
    specs = [SERVER, spec(name="terachem-gpu2")]
    assert converge(engine, specs) == ["created", "created"]
    # Side by side: each container created, then started.
    assert sorted(engine.calls) == [("create", "terachem-gpu0"), ("create", "terachem-gpu2"),
                                    ("start", "terachem-gpu0"), ("start", "terachem-gpu2")]
    for name in ("terachem-gpu0", "terachem-gpu2"):
        assert engine.calls.index(("create", name)) < engine.calls.index(("start", name))
    engine.calls.clear()
    assert converge(engine, specs) == ["unchanged", "unchanged"]
    assert engine.calls == []


def test_changed_configuration_recreates_only_that_container_with_its_stop_timeout():
    engine = Engine()
    other = spec(name="terachem-gpu2")
    converge(engine, [SERVER, other])
    engine.calls.clear()
    assert converge(engine, [spec(env={"OMP_NUM_THREADS": 8}), other]) == ["recreated", "unchanged"]
    assert engine.calls == [("stop", "terachem-gpu0", 30), ("remove", "terachem-gpu0"),
                            ("create", "terachem-gpu0"), ("start", "terachem-gpu0")]


def test_a_tag_that_now_names_another_image_recreates():
    engine = Engine()
    converge(engine, [SERVER])
    engine.images["mtzgroup/terachem:1.9"] = "sha256:bbb"
    steps = plan(engine, [SERVER])
    assert action(steps[0]) == "recreated" and "another image" in steps[0]["reason"]


def test_policy_set_to_no_by_the_watchdog_is_restored_in_place_and_the_container_started():
    engine = Engine()
    converge(engine, [SERVER])
    engine.containers["terachem-gpu0"]["HostConfig"]["RestartPolicy"] = {"Name": "no"}
    engine.containers["terachem-gpu0"]["State"]["Running"] = False
    engine.calls.clear()
    assert converge(engine, [SERVER]) == ["updated, started"]
    assert engine.calls == [("update", "terachem-gpu0", {"RestartPolicy": {"Name": "unless-stopped"}}),
                            ("start", "terachem-gpu0")]


def test_restart_is_asked_only_of_running_unchanged_containers():
    engine = Engine()
    converge(engine, [SERVER])
    engine.calls.clear()
    assert converge(engine, [spec(restart=True)]) == ["restarted"]
    assert engine.calls == [("restart", "terachem-gpu0", 30)]


def test_a_missing_image_fails_before_any_container_changes():
    engine = Engine()
    converge(engine, [SERVER])
    engine.calls.clear()
    with pytest.raises(DockerAPIError, match=r"\['mtzgroup/terachem:2.0'\] are not on this node"):
        converge(engine, [spec(image="mtzgroup/terachem:2.0")])
    assert engine.calls == []


def test_check_mode_plan_touches_nothing():
    engine = Engine()
    steps = plan(engine, [SERVER])
    assert action(steps[0]) == "created" and engine.calls == [] and engine.containers == {}


def test_staggered_start_waits_for_each_to_turn_healthy_in_order(monkeypatch):
    engine = Engine()
    waited = []
    monkeypatch.setattr(docker_containers, "wait_healthy", lambda api, name, timeout: waited.append((name, timeout)))
    names = [f"terachem-gpu{i}" for i in range(6)]
    converge(engine, [spec(name=name) for name in names], healthy_wait_timeout=120)
    assert waited == [(name, 120) for name in names]
    assert [c[1] for c in engine.calls if c[0] == "start"] == names


class CheckedEngine:
    """A container whose Docker health stays `starting` (its interval is long): wait_healthy runs the check
    itself; `answers` are the check's results in turn."""

    def __init__(self, answers, running=True):
        self.answers, self.running, self.checks = list(answers), running, []

    def container(self, name):
        return {"State": {"Running": self.running, "ExitCode": 0 if self.running else 1,
                          "Health": {"Status": "starting"}},
                "Config": {"Healthcheck": {"Test": ["CMD", "bash", "-c", "probe"], "Timeout": 5 * 10**9}}}

    def run_check(self, name, test, timeout):
        self.checks.append((name, test, timeout))
        return self.answers.pop(0)


def test_waiting_for_health_runs_the_check_itself_instead_of_waiting_for_dockers_interval(monkeypatch):
    monkeypatch.setattr(docker_containers.time, "sleep", lambda seconds: None)
    engine = CheckedEngine([False, False, True])
    docker_containers.wait_healthy(engine, "terachem-gpu0", 120)
    assert engine.checks == [("terachem-gpu0", ["CMD", "bash", "-c", "probe"], 5.0)] * 3
    with pytest.raises(DockerAPIError, match="exited .code 1. before it turned healthy"):
        docker_containers.wait_healthy(CheckedEngine([], running=False), "terachem-gpu0", 120)
    with pytest.raises(DockerAPIError, match="not healthy after 0 s"):
        docker_containers.wait_healthy(CheckedEngine([False] * 5), "terachem-gpu0", 0)


class FussyEngine(Engine):
    """An engine that refuses to start one container, and knows one network and the default runtimes."""

    def __init__(self, refuse: str):
        super().__init__()
        self.refuse = refuse

    def start(self, name):
        if name == self.refuse:
            raise DockerAPIError("driver failed programming external connectivity: port is already allocated")
        super().start(name)

    def network(self, name):
        return {"Name": name} if name == "terafleet" else None

    def info(self):
        return {"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}


def test_one_refused_container_does_not_keep_the_others_down():
    engine = FussyEngine(refuse="terachem-gpu0")
    steps = plan(engine, [SERVER, spec(name="terachem-gpu2")])
    with pytest.raises(DockerAPIError, match="terachem-gpu0: .*port is already allocated"):
        apply(engine, steps, [], 0, 0)
    assert engine.containers["terachem-gpu2"]["State"]["Running"] is True


@pytest.mark.parametrize("changes, message", [
    ({"mounts": [{"type": "bind", "source": "/nonexistent/license.key", "target": "/l", "read_only": True}]},
     "bind source /nonexistent/license.key does not exist on this node"),
    ({"network": "elsewhere", "mounts": []}, "network elsewhere does not exist on this node"),
    ({"runtime": "nvidia", "mounts": []}, "the engine has no runtime 'nvidia'"),
])
def test_what_the_engine_would_refuse_late_is_found_first(changes, message):
    with pytest.raises(SpecError, match=message):
        check_prerequisites(FussyEngine(refuse=""), [spec(**changes)])


def test_an_option_added_later_with_an_empty_default_changes_no_hash():
    assert create_body(spec(some_future_option=None, other_future_list=[]))["Labels"][HASH_LABEL] == \
        create_body(SERVER)["Labels"][HASH_LABEL]


def test_paused_container_is_left_paused():
    engine = Engine()
    converge(engine, [SERVER])
    engine.containers["terachem-gpu0"]["State"]["Paused"] = True
    assert action(plan(engine, [SERVER])[0]) == "unchanged"


def test_a_zero_stop_timeout_is_kept():
    engine = Engine()
    converge(engine, [spec(stop_timeout=0)])
    engine.calls.clear()
    converge(engine, [spec(stop_timeout=0, env={"OMP_NUM_THREADS": 2})])
    assert ("stop", "terachem-gpu0", 0) in engine.calls


class VolumeEngine:
    def __init__(self):
        self.created = []

    def create_volume(self, body):
        self.created.append(body)
        return body


def test_missing_volumes_are_created_local_with_string_labels_and_not_in_check_mode():
    engine = VolumeEngine()
    wanted = [{"name": "terafleet-rabbitmq-data", "labels": {"org.terafleet.role": "broker", "org.terafleet.n": 1}}]
    assert ensure_volumes(engine, wanted, check_mode=True) == ["terafleet-rabbitmq-data"] and engine.created == []
    assert ensure_volumes(engine, wanted, check_mode=False) == ["terafleet-rabbitmq-data"]
    assert engine.created == [{"Name": "terafleet-rabbitmq-data", "Driver": "local",
                               "Labels": {"org.terafleet.role": "broker", "org.terafleet.n": "1"}}]


def test_the_hash_of_an_existing_container_is_what_earlier_releases_computed():
    # A changed hash recreates every running server and worker on the next converge.
    assert config_hash(SERVER) == "4550059cbe330381502331d9fff335f500ff293351480362d40a6e38615a66c9"
    moved = spec(env={}, secret_env={"OMP_NUM_THREADS": 4})
    assert config_hash(moved) == config_hash(SERVER)


def test_secret_env_reaches_the_container_but_its_label_records_only_a_short_hash():
    body = create_body(spec(secret_env={"TERAFLEET_BROKER_URL": "amqp://terafleet:s3cret@head:5672/terafleet"}))
    assert "TERAFLEET_BROKER_URL=amqp://terafleet:s3cret@head:5672/terafleet" in body["Env"]
    recorded = json.loads(body["Labels"][CONFIG_LABEL])
    assert recorded["env"]["TERAFLEET_BROKER_URL"].startswith("(secret ")
    assert "s3cret" not in body["Labels"][CONFIG_LABEL]
    assert recorded["image"] == "mtzgroup/terachem:1.9" and recorded["env"]["OMP_NUM_THREADS"] == "4"
    other = create_body(spec(secret_env={"TERAFLEET_BROKER_URL": "amqp://terafleet:other@head:5672/terafleet"}))
    assert json.loads(other["Labels"][CONFIG_LABEL])["env"] != recorded["env"]


def test_secrets_never_reach_docker_and_a_changed_one_recreates_the_container():
    engine = Engine()
    first = spec(secrets={"broker_url": "amqp://terafleet:s3cret@head:5672/terafleet"})
    body = create_body(first)
    assert not any("s3cret" in item for item in body["Env"]) and "s3cret" not in json.dumps(body)
    assert json.loads(body["Labels"][CONFIG_LABEL])["secrets"]["broker_url"].startswith("(secret ")
    assert config_hash(first) != config_hash(SERVER)
    converge(engine, [first])
    assert converge(engine, [first]) == ["unchanged"]
    changed = spec(secrets={"broker_url": "amqp://terafleet:other@head:5672/terafleet"})
    entry = diff(plan(engine, [changed])[0])
    assert entry["after_header"] == "terachem-gpu0: recreated (configuration changed)"
    assert "s3cret" not in entry["before"] and "other" not in entry["after"]
    assert converge(engine, [changed]) == ["recreated"]


def test_a_key_in_both_env_and_secret_env_is_refused():
    with pytest.raises(SpecError, match=r"\['OMP_NUM_THREADS'\] in both env and secret_env"):
        create_body(spec(secret_env={"OMP_NUM_THREADS": 2}))


def test_state_absent_stops_with_the_containers_own_timeout_and_removes_it():
    engine = Engine()
    converge(engine, [SERVER, spec(name="terachem-gpu2", stop_timeout=45)])
    engine.calls.clear()
    assert converge(engine, [SERVER, {"name": "terachem-gpu2", "state": "absent"}]) == ["unchanged", "removed"]
    assert engine.calls == [("stop", "terachem-gpu2", 45), ("remove", "terachem-gpu2")]
    engine.calls.clear()
    assert converge(engine, [SERVER, {"name": "terachem-gpu2", "state": "absent"}]) == ["unchanged", "absent"]
    assert engine.calls == []


def test_a_present_container_needs_an_image():
    with pytest.raises(SpecError, match="terachem-gpu0: image is required"):
        plan(Engine(), [spec(image=None)])


WORKER = {"name": "worker-gpu0", "image": "mtzgroup/terachem:1.9", "stop_timeout": 86400,
          "labels": {"org.terafleet.role": "worker"}}
RETIRE = [{"labels": {"org.terafleet.role": "worker"}}, {"labels": {"org.terafleet.role": "terachem"}}]


def test_retirement_drains_workers_then_removes_servers_before_the_new_set_starts():
    engine = Engine()
    old = [spec(name=f"terachem-gpu{i}", labels={"org.terafleet.role": "terachem", "org.terafleet.gpus": str(i)})
           for i in (0, 1)] + [dict(WORKER, name=f"worker-gpu{i}") for i in (0, 1)]
    converge(engine, old)
    engine.calls.clear()
    new = [spec(name="terachem-gpu0-1"), dict(WORKER, name="worker-gpu0-1")]
    assert converge(engine, new, retire=RETIRE) == ["created", "created", "retired", "retired", "retired",
                                                     "retired"]
    order = [call[:2] for call in engine.calls]
    # Each worker with its own (long) stop timeout, the warm shutdown that finishes its calculation.
    assert ("stop", "worker-gpu0", 86400) in engine.calls and ("stop", "terachem-gpu1", 30) in engine.calls
    last_worker_gone = max(order.index(("remove", f"worker-gpu{i}")) for i in (0, 1))
    first_server_stop = min(order.index(("stop", f"terachem-gpu{i}")) for i in (0, 1))
    last_server_gone = max(order.index(("remove", f"terachem-gpu{i}")) for i in (0, 1))
    assert last_worker_gone < first_server_stop
    assert last_server_gone < order.index(("create", "terachem-gpu0-1"))
    assert set(engine.containers) == {"terachem-gpu0-1", "worker-gpu0-1"}
    engine.calls.clear()
    assert converge(engine, new, retire=RETIRE) == ["unchanged", "unchanged"] and engine.calls == []


def test_retirement_leaves_unlabelled_and_named_containers_and_refuses_an_empty_selector():
    engine = Engine()
    converge(engine, [SERVER, spec(name="someone-elses", labels={})])
    assert retirements(Listing(engine), RETIRE, {"terachem-gpu0"}) == [[], []]
    with pytest.raises(SpecError, match="retire every container"):
        retirements(Listing(engine), [{"labels": {}}], set())


def test_a_failed_retirement_starts_nothing():
    class StuckEngine(Engine):
        def stop(self, name, timeout):
            raise DockerAPIError(f"{name} did not stop")

    engine = StuckEngine()
    Engine.create_container(engine, "terachem-gpu0", create_body(SERVER))
    steps = plan(engine, [spec(name="terachem-gpu0-1")])
    retired = retirements(Listing(engine), RETIRE, {"terachem-gpu0-1"})
    with pytest.raises(DockerAPIError, match="terachem-gpu0 did not stop"):
        apply(engine, steps, retired, 0, 0)
    assert "terachem-gpu0-1" not in engine.containers


def test_diff_shows_what_changes_setting_by_setting_and_masks_secrets():
    engine = Engine()
    converge(engine, [spec(secret_env={"URL": "amqp://u:s3cret@h/v"})])
    changed = spec(env={"OMP_NUM_THREADS": 8}, secret_env={"URL": "amqp://u:other@h/v"})
    entry = diff(plan(engine, [changed])[0])
    before, after = entry["before"].splitlines(), entry["after"].splitlines()
    assert 'env.OMP_NUM_THREADS: "4"' in before and 'env.OMP_NUM_THREADS: "8"' in after
    assert [line for line in before if line.startswith("env.URL")] != [
        line for line in after if line.startswith("env.URL")]
    assert "s3cret" not in entry["before"] + entry["after"] and "other" not in entry["after"]
    assert 'labels.org.terafleet.gpus: "0,1"' in after and 'restart_policy: "unless-stopped"' in after
    assert entry["after_header"] == "terachem-gpu0: recreated (configuration changed)"
    assert diff(plan(engine, [spec(secret_env={"URL": "amqp://u:s3cret@h/v"})])[0]) is None


def test_diff_of_a_new_a_retired_and_an_unrecorded_container():
    engine = Engine()
    assert diff(plan(engine, [SERVER])[0])["before"] == ""
    converge(engine, [SERVER])
    retired = retirements(Listing(engine), RETIRE, set())[1][0]
    entry = diff(retired)
    assert entry["after"] == "" and 'image: "mtzgroup/terachem:1.9"' in entry["before"].splitlines()
    assert entry["after_header"].startswith("terachem-gpu0: retired (carries org.terafleet.role=terachem")
    del engine.containers["terachem-gpu0"]["Config"]["Labels"][CONFIG_LABEL]
    assert "configuration not recorded" in diff(retirements(Listing(engine), RETIRE, set())[1][0])["before"]


def test_a_server_is_stopped_only_after_its_worker_which_is_left_stopped():
    engine = Engine()
    server = spec(stop_first=["worker-gpu0"])
    converge(engine, [server, spec(name="terachem-gpu2", stop_first=["worker-gpu2"])])
    converge(engine, [dict(WORKER, name="worker-gpu0"), dict(WORKER, name="worker-gpu2")])
    engine.calls.clear()
    # Unchanged: the worker is not touched; stop_first is no part of the configuration.
    assert converge(engine, [spec(stop_first=[]), spec(name="terachem-gpu2", stop_first=["worker-gpu2"])]) == [
        "unchanged", "unchanged"]
    changed = [spec(env={"OMP_NUM_THREADS": 8}, stop_first=["worker-gpu0"]),
               spec(name="terachem-gpu2", stop_first=["worker-gpu2"])]
    assert converge(engine, changed) == ["recreated", "unchanged", "stopped"]
    assert engine.calls.index(("stop", "worker-gpu0", 86400)) < engine.calls.index(("stop", "terachem-gpu0", 30))
    assert not any(call[1] == "worker-gpu2" for call in engine.calls)
    assert engine.containers["worker-gpu0"]["State"]["Running"] is False
    # The worker's own call starts it again.
    assert converge(engine, [dict(WORKER, name="worker-gpu0")]) == ["started"]
    engine.calls.clear()
    assert converge(engine, [dict(changed[0], restart=True)]) == ["restarted", "stopped"]
    assert engine.calls == [("stop", "worker-gpu0", 86400), ("restart", "terachem-gpu0", 30)]


def test_the_watchdog_acts_on_nothing_while_containers_change_and_its_own_pauses_stay(tmp_path):
    watchdog = load_script("terafleet-watchdog")
    mark = tmp_path / "state" / "watchdog.pause"
    dog = watchdog.Watchdog(tmp_path / "state" / "watchdog.json", 3, 600, None)
    paused = pause_watchdog(str(mark), 3600)
    assert paused[0] and oct(mark.stat().st_mode & 0o777) == "0o600"
    assert dog.paused_until() == pytest.approx(dog.now + 3600, abs=5)  # the watchdog reads the module's mark
    resume_watchdog(str(mark), paused)
    assert not mark.exists() and dog.paused_until() == 0.0
    # An admin's longer pause is neither shortened nor ended by a converge.
    dog.pause(7200)
    admin = mark.read_text()
    paused = pause_watchdog(str(mark), 3600)
    assert paused == ("", "")
    resume_watchdog(str(mark), paused)
    assert mark.read_text() == admin
    # A shorter one is extended while the containers change, then holds again until its own end.
    dog.pause(600)
    admin = mark.read_text()
    paused = pause_watchdog(str(mark), 3600)
    assert paused == (mark.read_text(), admin)
    resume_watchdog(str(mark), paused)
    assert mark.read_text() == admin
    # One that ended meanwhile is gone; a mark the module cannot read stays as it is.
    mark.write_text(f"{dog.now - 1:.0f}\n")
    paused = pause_watchdog(str(mark), 3600)
    resume_watchdog(str(mark), paused)
    assert not mark.exists()
    mark.write_text("held by hand\n")
    assert pause_watchdog(str(mark), 3600) == ("", "")
    assert mark.read_text() == "held by hand\n"
