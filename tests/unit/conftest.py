"""Shared fixtures for terafleet's unit tests."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The plugins import as plain modules, the way Ansible loads them from the collection.
for plugin_dir in ("plugins/modules", "plugins/module_utils", "plugins/filter", "tests"):
    sys.path.insert(0, str(REPO_ROOT / plugin_dir))


@pytest.fixture()
def repo_root() -> Path:
    return REPO_ROOT
