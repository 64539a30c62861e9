"""One line that says why a task failed, from the results rolling updates meet."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.terafleet.cluster.plugins.filter.failure_message import failure_message

NO_REPLY = "terafleet-worker-control: worker terachem@tf-ro-gpu1-gpu1 did not answer through the broker\n"


@pytest.mark.parametrize("result, expected", [
    ({"failed": True, "msg": "An exception occurred during task execution.\n  details"},
     "An exception occurred during task execution. details"),
    ({"failed": True, "msg": "", "rc": 69, "stderr": NO_REPLY, "stdout": ""}, NO_REPLY.strip()),
    ({"failed": True, "rc": 1, "stderr": "", "stdout": "unhealthy: broker down"}, "unhealthy: broker down"),
    ({"failed": True}, "failed without a message"),
    ({"failed": True, "msg": "x" * 600}, "x" * 500 + "..."),
    # A health gate that ran out of retries.
    ({"failed": True, "attempts": 150, "msg": "", "stdout": "", "stderr": "", "rc": 0},
     "failed without a message (after 150 attempts)"),
    # A loop: each failed item with its item, not Ansible's summary.
    ({"failed": True, "msg": "One or more items failed", "results": [
        {"item": "worker-gpu0", "failed": False, "rc": 0, "stdout": "{}"},
        {"item": "worker-gpu1", "failed": True, "rc": 69, "stderr": NO_REPLY, "attempts": 3},
        {"item": "terachem-gpu1", "failed": True, "msg": "unhealthy"}]},
     f"worker-gpu1: {NO_REPLY.strip()} (after 3 attempts); terachem-gpu1: unhealthy"),
    # A loop whose failure is the loop's own (no item failed).
    ({"failed": True, "msg": "Invalid data passed to 'loop', it requires a list", "results": []},
     "Invalid data passed to 'loop', it requires a list"),
])
def test_failure_message(result, expected):
    assert failure_message(result) == expected


@pytest.mark.parametrize("bad", [None, "failed", ["msg"]])
def test_not_a_result_is_refused_with_the_value(bad):
    with pytest.raises(AnsibleFilterError, match="needs a task result"):
        failure_message(bad)
