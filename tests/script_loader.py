"""Import the scripts that cron runs on nodes, which have no .py suffix, for their tests."""

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

ROLES = Path(__file__).resolve().parents[1] / "roles"


def load_script(name: str, role: str = "node_checks"):
    """The module for roles/<role>/files/<name>."""
    module_name = name.replace("-", "_")
    files = str(ROLES / role / "files")
    if files not in sys.path:  # the scripts import the module installed beside them
        sys.path.insert(0, files)
    loader = SourceFileLoader(module_name, str(ROLES / role / "files" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(module_name, loader))
    sys.modules[module_name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module
