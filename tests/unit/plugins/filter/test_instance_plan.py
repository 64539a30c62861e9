"""instance_plan: stable names for each GPU set's server, scratch directory and volume."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.instance_plan import FilterModule, instance_plan

SETS = [{"name": "gpu0-1", "devices": ["0", "1"], "uuids": ["GPU-a", "GPU-b"]},
        {"name": "gpu2-3", "devices": ["2", "3"], "uuids": ["GPU-c", "GPU-d"]}]


def test_names_each_set():
    plan = instance_plan(SETS, "/lstor/terafleet/", "gpu01")
    assert [(p["instance"], p["worker"], p["scratch_dir"]) for p in plan] == [
        ("terachem-gpu0-1", "worker-gpu0-1", "/lstor/terafleet/scratch/gpu01-gpu0-1"),
        ("terachem-gpu2-3", "worker-gpu2-3", "/lstor/terafleet/scratch/gpu01-gpu2-3"),
    ]
    # The names the workers answer to through the broker, as the worker itself builds them (settings.py).
    assert [p["celery_name"] for p in plan] == ["terachem@gpu01-gpu0-1", "terachem@gpu01-gpu2-3"]
    assert "scratch_volume" not in plan[0]  # the scratch plan names the volumes, per backend
    assert plan[0]["devices"] == ["0", "1"] and plan[0]["uuids"] == ["GPU-a", "GPU-b"]


def test_ports_count_up_from_the_base_ports():
    plan = instance_plan(SETS, "/lstor/terafleet", "gpu01", 12000, 9000)
    assert [(p["port"], p["frontend_port"], p["worker"]) for p in plan] == [
        (12000, 9000, "worker-gpu0-1"), (12001, 9001, "worker-gpu2-3")]


def test_explicit_ports():
    assert [p["port"] for p in instance_plan(SETS, "/lstor", "gpu01", tcpb_ports=[11200, 11100])] == [11200, 11100]


@pytest.mark.parametrize("kwargs, message", [
    ({"tcpb_ports": [11111, 11111]}, "port collision: 11111 is both the TeraChem port of GPU set 1 and the "
                                     "TeraChem port of GPU set 2"),
    ({"tcpb_base_port": 8080, "frontend_base_port": 8081}, "port collision: 8081 is both the frontend port of "
                                                           "GPU set 1 and the TeraChem port of GPU set 2"),
    ({"tcpb_ports": [11111]}, "1 TeraChem ports [11111] for 2 GPU sets"),
    ({"tcpb_base_port": 80}, "TeraChem base port 80 is outside 1024-65535"),
    ({"tcpb_ports": ["http", 1]}, "TeraChem port must be a port number, got 'http'"),
    ({"frontend_base_port": 65535}, "frontend port of GPU set 2 would be 65536, beyond 65535"),
])
def test_port_refusals(kwargs, message):
    with pytest.raises(AnsibleFilterError) as error:
        instance_plan(SETS, "/lstor", "gpu01", **kwargs)
    assert message in str(error.value)


def test_same_input_same_names():
    assert instance_plan(SETS, "/lstor/terafleet", "gpu01") == instance_plan(SETS, "/lstor/terafleet", "gpu01")


@pytest.mark.parametrize("sets, root, host, message", [
    (SETS, "lstor/terafleet", "gpu01", "scratch root must be an absolute path, got 'lstor/terafleet'"),
    (SETS, "/lstor", "gpu 01", "host name 'gpu 01' cannot name a directory"),
    ([{"devices": ["0"]}], "/lstor", "gpu01", "has no usable name"),
    ([{"name": "../etc"}], "/lstor", "gpu01", "has no usable name"),
])
def test_refusals(sets, root, host, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        instance_plan(sets, root, host)


def test_registered_as_a_filter():
    assert FilterModule().filters()["instance_plan"] is instance_plan
