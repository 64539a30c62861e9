"""ansible-doc renders the documentation of every plugin and role of the collection, found here, not listed.

Every plugin directory under plugins/ (but module_utils, plugin_utils and doc_fragments) is a plugin type:
each .py in it is a plugin, and a filter or test file adds every name its FilterModule or TestModule returns.
Every directory under roles/ is a role. Each renders with `ansible-doc -t TYPE terafleet.cluster.NAME` from
.collections (a link back to this checkout) without an error or a warning, and `ansible-doc --json` gives
the short_description (per entry point for a role) that its source holds: ansible-core 2.19's text output
leaves a plugin's short_description out.
"""

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

ANSIBLE_DOC = Path(sys.executable).with_name("ansible-doc")
COLLECTION = "terafleet.cluster"
NOT_PLUGINS = {"module_utils", "plugin_utils", "doc_fragments"}
PLUGIN_TYPE = {"modules": "module"}  # otherwise the directory's name is the type's
LISTS = {"filter": ("FilterModule", "filters"), "test": ("TestModule", "tests")}

# Phrases of the rendered text that show more than the header made it through.
PHRASES = {
    ("module", "gpu_facts"): "A node whose driver sees no GPU returns an empty list",
    ("module", "docker_containers"): "every container that carries a selector's labels and that",
    ("module", "scratch_volumes"): "An existing volume with other options (bound to another directory",
    ("module", "node_facts"): "a JSON file that is not JSON",
    ("module", "node_files"): "A file is written to a temporary file in its directory",
    ("module", "broker_check"): "RabbitMQ",
    ("filter", "gpu_sets"): "returns the GPU sets that TeraChem servers will own",
    ("filter", "instance_plan"): "Names depend only on the host and the set's GPU indices",
    ("role", "preflight"): "preflight_gpu_set_size",
}
# What the collection shipped in its first release: the discovery below must find at least these.
KNOWN = {
    ("module", name) for name in
    ("broker_check", "docker_containers", "gpu_facts", "node_facts", "node_files", "scratch_volumes")
} | {("filter", "gpu_sets"), ("filter", "instance_plan"), ("role", "preflight"), ("role", "docker_engine")}


def _documentation(path: Path) -> dict | None:
    """The DOCUMENTATION a plugin's .py (a Python string) or .yml (a YAML key) holds, None without one."""
    if path.suffix == ".yml":
        return (yaml.safe_load(path.read_text()) or {}).get("DOCUMENTATION") if path.is_file() else None
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets)
                and isinstance(node.value, ast.Constant)):
            return yaml.safe_load(node.value.value)
    return None


def _plugins() -> list[tuple[str, str]]:
    found = set()
    for directory in sorted(p for p in (REPO_ROOT / "plugins").iterdir() if p.is_dir()):
        if directory.name in NOT_PLUGINS or directory.name == "__pycache__":
            continue
        plugin_type = PLUGIN_TYPE.get(directory.name, directory.name)
        for source in sorted(directory.glob("*.py")):
            if source.name == "__init__.py":
                continue
            found.add((plugin_type, source.stem))
            if plugin_type in LISTS:
                class_name, method = LISTS[plugin_type]
                module = importlib.import_module(f"ansible_collections.terafleet.cluster.plugins.{directory.name}."
                                                 f"{source.stem}")
                found.update((plugin_type, name) for name in getattr(getattr(module, class_name)(), method)())
    found.update(("role", role.name) for role in (REPO_ROOT / "roles").iterdir() if role.is_dir())
    return sorted(found)


PLUGINS = _plugins()


def _short_descriptions(plugin_type: str, name: str) -> dict[str, str]:
    """Per entry point for a role, else under "doc": the short_description the source holds."""
    if plugin_type == "role":
        spec_file = REPO_ROOT / "roles" / name / "meta" / "argument_specs.yml"
        assert spec_file.is_file(), f"role {name} has no meta/argument_specs.yml"
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        return {entry: spec.get("short_description") for entry, spec in specs.items()}
    directory = REPO_ROOT / "plugins" / {t: d for d, t in PLUGIN_TYPE.items()}.get(plugin_type, plugin_type)
    doc = _documentation(directory / f"{name}.yml") or _documentation(directory / f"{name}.py")
    assert doc, f"{plugin_type} {name}: no DOCUMENTATION in {directory.name}/{name}.yml or {name}.py"
    return {"doc": doc.get("short_description")}


def _ansible_doc(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO_ROOT / ".collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(ANSIBLE_DOC), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=120)


@pytest.fixture(scope="module")
def as_json():
    """ansible-doc --json of one plugin: one run for all plugins of its type, or, where that run fails (it
    prints nothing when one plugin fails), a run for this plugin alone, so that a failure names its plugin."""
    by_type: dict[str, dict | None] = {}

    def get(plugin_type: str, name: str) -> dict:
        if plugin_type not in by_type:
            names = [f"{COLLECTION}.{other}" for kind, other in PLUGINS if kind == plugin_type]
            result = _ansible_doc("--json", "-t", plugin_type, *names)
            by_type[plugin_type] = json.loads(result.stdout) if result.returncode == 0 else None
        if by_type[plugin_type] is not None:
            return by_type[plugin_type].get(f"{COLLECTION}.{name}")
        result = _ansible_doc("--json", "-t", plugin_type, f"{COLLECTION}.{name}")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout).get(f"{COLLECTION}.{name}")

    return get


def test_the_plugins_are_found():
    assert set(PLUGINS) >= KNOWN


@pytest.mark.parametrize("plugin_type, name", PLUGINS, ids=[f"{t}-{n}" for t, n in PLUGINS])
def test_ansible_doc_renders(plugin_type, name, as_json):
    expected = _short_descriptions(plugin_type, name)
    assert all(expected.values()), f"{plugin_type} {name}: a short_description is missing: {expected}"

    result = _ansible_doc("-t", plugin_type, f"{COLLECTION}.{name}")
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr
    assert "WARNING" not in result.stderr
    text = " ".join(result.stdout.split())
    assert f"{COLLECTION}.{name}" in text
    if (plugin_type, name) in PHRASES:
        assert PHRASES[plugin_type, name] in text

    rendered = as_json(plugin_type, name)
    assert rendered, f"ansible-doc --json has no {COLLECTION}.{name}"
    if plugin_type == "role":
        found = {entry: spec.get("short_description") for entry, spec in rendered["entry_points"].items()}
        for entry, short in expected.items():
            assert " ".join(short.split()) in text, f"entry point {entry}'s short_description is not in the text"
    else:
        found = {"doc": rendered["doc"].get("short_description")}
    assert found == expected
