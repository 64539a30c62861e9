"""Every role documents exactly the public variables its defaults define, with the same defaults."""

import re
from pathlib import Path

import pytest
import yaml

ROLES = sorted(p.parent.parent
               for p in (Path(__file__).resolve().parents[2] / "roles").glob("*/meta/argument_specs.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_an_argument_spec(repo_root):
    roles = sorted(p for p in (repo_root / "roles").iterdir() if p.is_dir())
    assert roles, "no roles found"
    missing = [r.name for r in roles if not (r / "meta" / "argument_specs.yml").is_file()]
    assert not missing


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_spec(role):
    defaults = _load(role / "defaults" / "main.yml")
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), "defaults/main.yml and meta/argument_specs.yml disagree"
    for name, value in defaults.items():
        assert options[name].get("default") == value, f"{name}: default differs from argument spec"
        assert options[name].get("description"), f"{name} has no description"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_are_role_prefixed(role):
    for path in [role / "defaults" / "main.yml", *sorted((role / "vars").glob("*.yml"))]:
        if not path.is_file():
            continue
        for name in _load(path):
            assert name.startswith((f"{role.name}_", f"_{role.name}_")), f"{path.name}: {name} lacks the role prefix"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_sample_inventory_shows_every_option(role, repo_root):
    sample = "\n".join(p.read_text() for p in sorted((repo_root / "inventories" / "sample").rglob("*.yml")))
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    missing = [name for name in options if not re.search(rf"^#? ?{re.escape(name)}:", sample, re.MULTILINE)]
    assert not missing, f"inventories/sample lacks {missing}"


def test_inventory_reference_is_generated_from_the_current_specs(repo_root):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(repo_root / "bin" / "inventory-reference"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
