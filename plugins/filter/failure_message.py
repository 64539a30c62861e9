"""The message of a failed task's result, in one line, for a report that names the original error."""

from __future__ import annotations

DOCUMENTATION = r"""
name: failure_message
short_description: Say in one line why a task failed, from its registered result
version_added: 0.1.0
author: terafleet developers
description:
  - Turns a failed task's result (C(ansible_failed_result) in a C(rescue), or a registered variable) into
    one line, its C(msg), else its C(stderr), else its C(stdout).
  - For a loop, the message of each failed item, prefixed with the item and a colon, instead of
    Ansible's "One or more items failed".
  - A task that ran out of retries says after how many attempts.
options:
  _input:
    description: The task's result.
    type: dict
    required: true
  limit:
    description: At most this many characters of each message.
    type: int
    default: 500
"""

EXAMPLES = r"""
- name: Fail with the original error after cleaning up
  ansible.builtin.fail:
    msg: >-
      update failed at {{ ansible_failed_task.name }}:
      {{ ansible_failed_result | terafleet.cluster.failure_message }}
"""

RETURN = r"""
_value:
  description: The message; C(failed without a message) when the result holds none.
  type: str
  sample: "worker-gpu1: terafleet-worker-control: worker terachem@gpu01-gpu1 did not answer through the broker"
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def _one(result: Mapping, limit: int) -> str:
    for key in ("msg", "stderr", "stdout"):
        text = result.get(key)
        if isinstance(text, str) and text.strip() and text != "One or more items failed":
            message = " ".join(text.split())
            break
    else:
        message = "failed without a message"
    if len(message) > limit:
        message = message[:limit] + "..."
    attempts = result.get("attempts")
    if isinstance(attempts, int) and attempts > 1:
        message += f" (after {attempts} attempts)"
    return message


def failure_message(result: object, limit: int = 500) -> str:
    """Return why the task whose result is `result` failed, in one line; see DOCUMENTATION."""
    if not isinstance(result, Mapping):
        raise AnsibleFilterError(f"failure_message needs a task result (a dict), not {type(result).__name__}: "
                                 f"{result!r:.200}")
    items = result.get("results")
    if isinstance(items, list):
        failed = [item for item in items if isinstance(item, Mapping) and item.get("failed")]
        if failed:
            return "; ".join(f"{item.get('item', '?')}: {_one(item, limit)}" for item in failed)
    return _one(result, limit)


class FilterModule:
    """terafleet's report of a failed task."""

    def filters(self) -> dict:
        return {"failure_message": failure_message}
