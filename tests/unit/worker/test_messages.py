"""tcpb's messages load alone, so a STATUS round-trip (worker entry point, health check, stand-in start)
does not pay for tcpb's clients, qcdata and pydantic; a later `import tcpb` reuses the same module."""

import subprocess
import sys

import pytest

from terafleet_worker import messages

REPO_PATHS = ["worker", "standin"]


def run_fresh(code: str, repo_root) -> subprocess.CompletedProcess:
    """Run CODE in a new interpreter, so what it imports is not hidden by this test session's imports."""
    env_path = ":".join(str(repo_root / path) for path in REPO_PATHS)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": env_path})


@pytest.mark.parametrize("module", ["terafleet_worker.messages", "terachem_standin.messages"])
def test_load_imports_only_the_messages(module, repo_root):
    result = run_fresh(f"""
import sys
from {module} import load
pb = load()
assert pb.Status(busy=True).busy and pb.STATUS == 0 and pb.JOBINPUT > 0, pb
print(sorted(name for name in ("tcpb", "tcpb.clients", "qcdata", "pydantic") if name in sys.modules))
assert load() is pb
from tcpb import TCProtobufClient
from tcpb import terachem_server_pb2
print(terachem_server_pb2 is pb, "qcdata" in sys.modules)
""", repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "True True"]


def test_standin_server_starts_without_tcpb_clients(repo_root):
    result = run_fresh("import sys, terachem_standin.server; print('tcpb' in sys.modules, 'qcdata' in sys.modules)",
                       repo_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_load_names_a_missing_tcpb(monkeypatch):
    monkeypatch.delitem(sys.modules, messages.NAME, raising=False)
    monkeypatch.setattr(messages.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="the tcpb package is not installed"):
        messages.load()
