"""ansible-doc renders every plugin's documentation from the collection."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

ANSIBLE_DOC = Path(sys.executable).with_name("ansible-doc")


@pytest.mark.parametrize("plugin_type, name, expected", [
    ("module", "terafleet.cluster.gpu_facts", "A node whose driver sees no GPU returns an empty list"),
    ("module", "terafleet.cluster.docker_containers", "Containers made by an earlier release, without the label"),
    ("module", "terafleet.cluster.scratch_volumes", "An existing volume bound to another directory fails the task"),
    ("filter", "terafleet.cluster.gpu_sets", "returns the GPU sets that TeraChem servers will own"),
    ("filter", "terafleet.cluster.instance_plan", "Names depend only on the host and the set's GPU indices"),
    ("role", "terafleet.cluster.preflight", "preflight_gpu_set_size"),
])
def test_ansible_doc_renders(plugin_type, name, expected):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run([str(ANSIBLE_DOC), "-t", plugin_type, name], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert expected in " ".join(result.stdout.split())
    assert "ERROR" not in result.stderr
