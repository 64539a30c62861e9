"""Shared fixtures for terafleet's unit tests."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The plugins import as Ansible loads them, from the collection: .collections holds
# ansible_collections/terafleet/cluster, a link back to this checkout. tests/ holds shared helpers.
for path in (".collections", "tests"):
    sys.path.insert(0, str(REPO_ROOT / path))


@pytest.fixture()
def repo_root() -> Path:
    return REPO_ROOT
