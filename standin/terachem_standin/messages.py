"""tcpb's protobuf messages, loaded without tcpb's client stack.

The stand-in speaks the protocol with tcpb's generated messages and needs nothing else of tcpb;
`from tcpb import terachem_server_pb2` would run tcpb's package `__init__`, which imports its clients,
qcdata and pydantic: ~0.2 CPU-s more at every server start (and every restart after a crash). The
worker image loads the module the same way (terafleet_worker.messages).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "tcpb.terachem_server_pb2"


def load() -> ModuleType:
    """The module `tcpb.terachem_server_pb2`, imported at most once per process.

    A `tcpb` imported afterwards finds it with `from tcpb import terachem_server_pb2` (as tcpb's clients
    do), not as an attribute of the package.
    """
    if NAME in sys.modules:
        return sys.modules[NAME]
    package = importlib.util.find_spec("tcpb")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the tcpb package is not installed")
    location = Path(package.submodule_search_locations[0]) / "terachem_server_pb2.py"
    spec = importlib.util.spec_from_file_location(NAME, location)
    if spec is None or spec.loader is None:
        raise ImportError(f"tcpb has no terachem_server_pb2 module in {package.submodule_search_locations[0]}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module
