"""gpu_sets: disjoint GPU sets from a size or explicit lists, and refusals naming the offending value."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.gpu_sets import FilterModule, gpu_sets


def gpus(count, unhealthy=()):
    return [{"index": i, "uuid": f"GPU-{i:08x}-aaaa-bbbb-cccc-dddddddddddd", "name": "NVIDIA A100-SXM4-40GB",
             "healthy": i not in unhealthy} for i in range(count)]


def uuid(i):
    return f"GPU-{i:08x}-aaaa-bbbb-cccc-dddddddddddd"


@pytest.mark.parametrize("count, kwargs, names", [
    (4, {"size": 1}, ["gpu0", "gpu1", "gpu2", "gpu3"]),
    (4, {"size": 2}, ["gpu0-1", "gpu2-3"]),
    (4, {"size": 4}, ["gpu0-1-2-3"]),
    (8, {"size": "2"}, ["gpu0-1", "gpu2-3", "gpu4-5", "gpu6-7"]),
    (16, {"size": 4}, ["gpu0-1-2-3", "gpu4-5-6-7", "gpu8-9-10-11", "gpu12-13-14-15"]),
    (4, {"size": 3, "allow_remainder": True}, ["gpu0-1-2"]),
    (4, {"size": 2, "exclude": [0, 1]}, ["gpu2-3"]),
    (4, {"size": 1, "exclude": [uuid(3)]}, ["gpu0", "gpu1", "gpu2"]),
    (4, {"sets": [[0, 1], [2, 3]]}, ["gpu0-1", "gpu2-3"]),
    (4, {"sets": [[3], ["1", 2]], "size": 3}, ["gpu3", "gpu1-2"]),
    (4, {"sets": [[uuid(2), uuid(3)], [0]]}, ["gpu2-3", "gpu0"]),
    (4, {"sets": [[0, 1]], "exclude": [3]}, ["gpu0-1"]),
])
def test_valid_sets(count, kwargs, names):
    result = gpu_sets(gpus(count), **kwargs)
    assert [s["name"] for s in result] == names
    used = [d for s in result for d in s["devices"]]
    assert len(used) == len(set(used)), "sets overlap"
    for entry in result:
        assert entry["uuids"] == [uuid(int(d)) for d in entry["devices"]]


@pytest.mark.parametrize("count, kwargs, message", [
    (4, {"sets": [[0, 1], [1, 2]]}, "gpu01: GPU sets overlap: GPU 1 is in [0, 1] and [1, 2]"),
    (4, {"sets": [[0, 7]]}, "gpu01: GPU set [0, 7] names GPU 7, which this node does not have (its GPUs: 0, 1, 2, 3)"),
    (4, {"size": 3}, "gpu01: GPU set size 3 does not divide the 4 usable GPUs"),
    (4, {"size": 0}, "gpu01: GPU set size must be at least 1, got 0"),
    (4, {"size": -2}, "gpu01: GPU set size must be at least 1, got -2"),
    (4, {"size": "two"}, "gpu01: GPU set size must be a whole number, got 'two'"),
    (4, {"size": True}, "gpu01: GPU set size must be a whole number, got True"),
    (4, {"size": 8, "allow_remainder": True}, "gpu01: GPU set size 8 is larger than the 4 usable GPUs"),
    (4, {"sets": [[0, 1], []]}, "gpu01: GPU set number 2 is empty"),
    (4, {"sets": [["GPU-deadbeef-0000-0000-0000-000000000000"]]},
     "gpu01: GPU set ['GPU-deadbeef-0000-0000-0000-000000000000'] names GPU GPU-deadbeef-0000-0000-0000-000000000000, "
     "a UUID this node does not have"),
    (4, {"sets": [[0, 0]]}, "gpu01: GPU set [0, 0] lists GPU 0 twice"),
    (4, {"sets": [[0, uuid(0)]]}, "lists GPU 0 twice"),
    (4, {"sets": [[2, 3]], "exclude": [3]}, "gpu01: GPU set [2, 3] uses GPU 3, which is excluded"),
    (4, {"exclude": [9]}, "gpu01: exclude names GPU 9, which this node does not have"),
    (4, {"sets": [0, 1]}, "gpu01: GPU sets must be a list of lists, got [0, 1]"),
    (4, {"sets": [["x"]]}, "GPU 'x' in GPU set ['x'] must be a whole number"),
    (2, {"size": 1, "exclude": [0, 1]}, "gpu01: no usable GPU (found 2, excluded 2)"),
    (0, {"size": 1}, "gpu01: no usable GPU (found 0, excluded 0)"),
])
def test_refusals_name_host_and_value(count, kwargs, message):
    with pytest.raises(AnsibleFilterError) as error:
        gpu_sets(gpus(count), host="gpu01", **kwargs)
    assert message in str(error.value)


def test_gpu_in_error_state_must_be_excluded():
    with pytest.raises(AnsibleFilterError, match="GPU 2 is in error state"):
        gpu_sets(gpus(4, unhealthy={2}), size=1)
    assert [s["name"] for s in gpu_sets(gpus(4, unhealthy={2}), size=1, exclude=[2])] == ["gpu0", "gpu1", "gpu3"]
    with pytest.raises(AnsibleFilterError, match=r"GPU set \[2\] uses GPU 2, which nvidia-smi reports in error"):
        gpu_sets(gpus(4, unhealthy={2}), sets=[[2]])


def test_input_must_be_a_list():
    with pytest.raises(AnsibleFilterError, match="expects the list of GPUs"):
        gpu_sets("0,1,2,3")


def test_registered_as_a_filter():
    assert FilterModule().filters()["gpu_sets"] is gpu_sets
