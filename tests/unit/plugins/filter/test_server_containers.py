"""server_containers: what a TeraChem server container looks like, and the settings it refuses."""

import socket
import subprocess
import threading
import time

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plan_inputs import GPUS, NFS, SCRATCH, TERACHEM, preflight_node, scratch, settings

from ansible_collections.terafleet.cluster.plugins.filter.gpu_sets import gpu_sets
from ansible_collections.terafleet.cluster.plugins.filter.instance_plan import instance_plan
from ansible_collections.terafleet.cluster.plugins.filter.server_containers import (
    HEALTHCHECK,
    FilterModule,
    server_containers,
)


def servers_of(node: dict, terachem: dict, host: str, backend: dict = SCRATCH) -> list[dict]:
    """The node's servers, mounting the scratch its scratch plan names."""
    return server_containers(node, scratch(node, backend), terachem, host)


HEALTHCHECK_YAML = r"""
- CMD
- bash
- -c
- >-
  exec 3<>/dev/tcp/127.0.0.1/11111 && printf '\0\0\0\0\0\0\0\0' >&3
  && for byte in 1 2 3 4; do IFS= read -r -t 4 -d '' answer <&3 && [ -z "$answer" ] || exit 1; done
"""


def uuid(index: int) -> str:
    return GPUS[index]["uuid"]


def test_one_server_per_gpu_set_with_its_gpus_scratch_and_port():
    servers = servers_of(preflight_node(size=2), TERACHEM, "gpu01.cluster")
    assert [s["name"] for s in servers] == ["terachem-gpu0-1", "terachem-gpu2-3"]
    first = servers[0]
    assert first == {
        "name": "terachem-gpu0-1", "hostname": "terachem-gpu0-1", "image": "mtzgroup/terachem:latest",
        "init": True, "command": ["terachem", "-s", "11111"], "working_dir": "/scratch", "env": {},
        "device_requests": [{"driver": "nvidia", "device_ids": [uuid(0), uuid(1)], "capabilities": [["gpu"]]}],
        "mounts": [{"type": "volume", "source": "terafleet-scratch-gpu0-1", "target": "/scratch", "no_copy": True},
                   {"type": "bind", "source": "/etc/terafleet/terachem/license.key",
                    "target": "/opt/terachem/license.key", "read_only": True}],
        "network": "terafleet", "aliases": ["terachem-gpu0-1"], "published_ports": ["10.1.0.21:11111:11111"],
        "stop_timeout": 30, "stop_first": ["worker-gpu0-1"],
        "healthcheck": {"test": yaml.safe_load(HEALTHCHECK_YAML), "interval": "10s", "timeout": "5s",
                        "retries": 3, "start_period": "60s"},
        "labels": {"org.terafleet.role": "terachem", "org.terafleet.node": "gpu01.cluster",
                   "org.terafleet.gpu_set": "gpu0-1", "org.terafleet.gpus": "0,1",
                   "org.terafleet.gpu_uuids": f"{uuid(0)},{uuid(1)}"},
    }
    assert servers[1]["published_ports"] == ["10.1.0.21:11112:11111"]
    assert servers[1]["device_requests"][0]["device_ids"] == [uuid(2), uuid(3)]


def test_no_gpu_is_in_two_servers():
    servers = servers_of(preflight_node(size=1), TERACHEM, "gpu01")
    ids = [d for s in servers for d in s["device_requests"][0]["device_ids"]]
    assert sorted(ids) == sorted(uuid(i) for i in range(4))


def test_nvidia_runtime_mode_sets_visible_devices_instead_of_a_device_request():
    servers = servers_of(preflight_node(size=2), settings(TERACHEM, gpu_mode="nvidia_runtime",
                                                          env={"OMP_NUM_THREADS": 4}), "gpu01")
    assert servers[1]["runtime"] == "nvidia" and "device_requests" not in servers[1]
    assert servers[1]["env"] == {"OMP_NUM_THREADS": "4", "NVIDIA_VISIBLE_DEVICES": f"{uuid(2)},{uuid(3)}"}


def test_unpublished_ports_and_string_settings_as_the_inventory_gives_them():
    # Unpublished, the address and the allow-list are not read.
    servers = servers_of(preflight_node(), settings(TERACHEM, publish_ports="false", stop_timeout="45",
                                                    healthcheck_retries="5", env={"DEBUG": True},
                                                    publish_address="", allowed_sources=[]), "gpu01")
    assert servers[0]["published_ports"] == []
    assert servers[0]["stop_timeout"] == 45 and servers[0]["healthcheck"]["retries"] == 5
    assert servers[0]["env"] == {"DEBUG": "true"}


def test_a_cpu_node_plans_no_server():
    assert servers_of(preflight_node(gpu_node=False), TERACHEM, "cpu01") == []
    # It has no cluster address to publish on (preflight_node gives none off GPU nodes): nothing is read.
    assert servers_of(preflight_node(gpu_node=False), settings(TERACHEM, publish_address="", allowed_sources=[]),
                      "head01") == []


@pytest.mark.parametrize("changes, message", [
    ({"image": None}, "terachem_image is not set"),
    ({"image": ""}, "terachem_image is empty"),
    ({"command": "terachem -s 11111"}, "terachem_command must be a list of strings"),
    ({"gpu_mode": "mig"}, "terachem_gpu_mode must be one of device_request, nvidia_runtime, got 'mig'"),
    ({"env": {"OMP_NUM_THREADS": None}}, "terachem_env.OMP_NUM_THREADS must be a string or number, got None"),
    ({"env": ["A=1"]}, "terachem_env must be a dict of environment variables"),
    ({"network": "my net"}, "terachem_network must be a name of letters"),
    ({"publish_ports": "maybe"}, "terachem_publish_ports must be true or false, got 'maybe'"),
    ({"publish_address": "gpu01"}, "terachem_publish_address must be an IP address, got 'gpu01'"),
    ({"allowed_sources": []}, "terachem_allowed_sources is empty"),
    ({"allowed_sources": ["10.1.0.0/16", "campus"]},
     "terachem_allowed_sources holds 'campus', which is not a network (CIDR such as 10.1.0.0/16)"),
    ({"stop_timeout": "30s"}, "terachem_stop_timeout must be a whole number, got '30s'"),
    ({"healthcheck_interval": "ten"}, "terachem_healthcheck_interval must be a duration"),
    ({"scratch_path": "scratch"}, "terachem_scratch_path must be an absolute path, got 'scratch'"),
    ({"license_path": 7}, "terachem_license_path must be a string, got 7"),
    ({"extra": 1}, "unknown terachem settings ['extra']"),
])
def test_bad_settings_are_refused_naming_the_variable(changes, message):
    with pytest.raises(AnsibleFilterError, match="^gpu01: ") as error:
        servers_of(preflight_node(), settings(TERACHEM, **changes), "gpu01")
    assert message in str(error.value)


def test_a_null_setting_is_named():
    with pytest.raises(AnsibleFilterError, match="gpu01: terachem_image is null; give it a value"):
        servers_of(preflight_node(), {**TERACHEM, "image": None}, "gpu01")


def test_without_preflight_there_is_nothing_to_plan_from():
    with pytest.raises(AnsibleFilterError, match="preflight_node.instances is missing; run the preflight role"):
        server_containers({}, {}, TERACHEM, "gpu01")


def test_on_nfs_each_server_mounts_its_own_nfs_volume():
    servers = servers_of(preflight_node(size=2), TERACHEM, "gpu01", backend=NFS)
    assert [s["mounts"][0] for s in servers] == [
        {"type": "volume", "source": "terafleet-scratch-nfs-gpu0-1", "target": "/scratch", "no_copy": True},
        {"type": "volume", "source": "terafleet-scratch-nfs-gpu2-3", "target": "/scratch", "no_copy": True}]


def test_a_scratch_plan_of_other_gpu_sets_is_refused():
    node = preflight_node(size=2)
    with pytest.raises(AnsibleFilterError, match=r"gpu01: the scratch plan names no volume for the GPU sets "
                                                  r"\['gpu0-1', 'gpu2-3'\]"):
        server_containers(node, scratch(preflight_node(size=1)), TERACHEM, "gpu01")
    with pytest.raises(AnsibleFilterError, match="scratch_plan.volume_of is missing"):
        server_containers(node, {}, TERACHEM, "gpu01")


def test_registered_as_a_filter():
    assert FilterModule().filters()["server_containers"] is server_containers


def test_a_renumbered_gpu_keeps_its_server():
    # GPU 1 fell off the bus: the driver numbers the rest 0, 1, 2; each server still asks for its own GPUs.
    node = preflight_node(size=1)
    before = {s["labels"]["org.terafleet.gpu_uuids"] for s in servers_of(node, TERACHEM, "gpu01")}
    survivors = [dict(gpu, index=number) for number, gpu in enumerate(g for g in GPUS if g["index"] != 1)]
    node["instances"] = instance_plan(gpu_sets(survivors, size=1), "/lstor/terafleet", "gpu01")
    after = {s["labels"]["org.terafleet.gpu_uuids"]: s for s in servers_of(node, TERACHEM, "gpu01")}
    assert set(after) == before - {uuid(1)}
    assert after[uuid(2)]["device_requests"][0]["device_ids"] == [uuid(2)]
    assert after[uuid(2)]["labels"]["org.terafleet.gpus"] == "1"


def serve_once(reply: bytes | None) -> int:
    """A one-connection TCP server on loopback that reads the 8-byte STATUS header and answers `reply`
    (None: never answers, as a hung TeraChem); returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            received = b""
            while len(received) < 8:
                received += conn.recv(8 - len(received))
            assert received == bytes(8)
            if reply is None:
                time.sleep(6)
            else:
                conn.sendall(reply)
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize("reply, healthy", [
    (bytes(8), True),  # STATUS, empty: an idle server
    (bytes(4) + b"\x00\x00\x00\x02\x08\x01", True),  # STATUS with busy: true
    (b"\x00\x00\x00\x03" + bytes(4), False),  # another message type
    (b"", False),  # the connection closed at once
    (None, False),  # a hung server: no answer within the check's wait
])
def test_the_health_check_is_a_status_round_trip_in_one_bash(reply, healthy):
    port = serve_once(reply)
    command = HEALTHCHECK[3].replace("/11111", f"/{port}")
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", command], capture_output=True, timeout=20, check=False)
    assert (result.returncode == 0) is healthy, result
    assert time.monotonic() - started < 6
    assert all(word not in command for word in ("timeout", "head", "od ", "tr ")), "builtins only"
