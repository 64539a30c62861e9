"""What the plan filters share: reading a role's settings strictly, and the labels terafleet puts on things.

Each plan filter takes one dict of settings, the role's variables by their short names. A setting that is
missing, null or of the wrong type raises AnsibleFilterError naming the inventory variable
(C(<role>_<setting>)) and the host; an undefined variable inside a setting is raised by Ansible itself, with
its name, as soon as the filter reads it. Nothing here falls back to a default: the defaults live in each
role's defaults/main.yml.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

ROLE_LABEL = "org.terafleet.role"
NODE_LABEL = "org.terafleet.node"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DURATION = re.compile(r"^(\d+(\.\d+)?(ms|s|m|h))+$|^\d+$")


class Settings:
    """A role's settings, read one at a time with the type each must have."""

    def __init__(self, settings: Any, prefix: str, host: str, known: tuple[str, ...] = ()):
        if not isinstance(settings, Mapping):
            raise AnsibleFilterError(f"{host}: the {prefix.rstrip('_')} settings must be a dict, got {settings!r}")
        self._settings = settings
        self.prefix = prefix
        self.host = host
        unknown = sorted(set(settings) - set(known)) if known else []
        if unknown:
            raise AnsibleFilterError(f"{host}: unknown {prefix.rstrip('_')} settings {unknown}")

    def fail(self, name: str, problem: str) -> AnsibleFilterError:
        return AnsibleFilterError(f"{self.host}: {self.prefix}{name} {problem}")

    def raw(self, name: str) -> Any:
        if name not in self._settings:
            raise self.fail(name, "is not set (the plan needs it)")
        value = self._settings[name]
        if value is None:
            raise self.fail(name, "is null; give it a value")
        return value

    def optional(self, name: str) -> Any:
        """A setting that may be null (its meaning then documented where it is read), but must be set."""
        if name not in self._settings:
            raise self.fail(name, "is not set (the plan needs it)")
        return self._settings[name]

    def str(self, name: str, empty: bool = False) -> str:
        value = self.raw(name)
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {value!r}")
        if not empty and not value.strip():
            raise self.fail(name, "is empty")
        return str(value)

    def name(self, name: str) -> str:
        value = self.str(name)
        if not SAFE_NAME.match(value):
            raise self.fail(name, f"must be a name of letters, digits, _ . - (got {value!r})")
        return value

    def path(self, name: str) -> str:
        value = self.str(name)
        if not value.startswith("/"):
            raise self.fail(name, f"must be an absolute path, got {value!r}")
        return posixpath.normpath(value)

    def int(self, name: str, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        number = as_int(value)
        if number is None:
            raise self.fail(name, f"must be a whole number, got {value!r}")
        if maximum is not None and not minimum <= number <= maximum:
            raise self.fail(name, f"must lie in {minimum}-{maximum}, got {number}")
        if minimum is not None and number < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {number}")
        return number

    def number(self, name: str) -> str:
        """A number (int or float) as the string a process reads from its environment."""
        value = self.raw(name)
        if isinstance(value, bool):
            raise self.fail(name, f"must be a number, got {value!r}")
        try:
            float(str(value))
        except ValueError:
            raise self.fail(name, f"must be a number, got {value!r}") from None
        return str(value)

    def bool(self, name: str) -> bool:
        value = self.raw(name)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise self.fail(name, f"must be true or false, got {value!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.str(name)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def duration(self, name: str) -> str:
        value = str(self.raw(name)).strip()
        if not DURATION.match(value):
            raise self.fail(name, f"must be a duration such as 10s, 1m30s or 500ms, got {value!r}")
        return value

    def strings(self, name: str, empty: bool = True) -> list[str]:
        value = self.raw(name)
        if not isinstance(value, list) or not all(isinstance(item, (str, int)) and not isinstance(item, bool)
                                                  for item in value):
            raise self.fail(name, f"must be a list of strings, got {value!r}")
        if not empty and not value:
            raise self.fail(name, "is empty")
        return [str(item) for item in value]

    def env(self, name: str) -> dict[str, str]:
        """Environment variables: a dict of names to strings, numbers or booleans."""
        value = self.raw(name)
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be a dict of environment variables, got {value!r}")
        env = {}
        for key in value:
            item = value[key]
            if item is None or isinstance(item, (Mapping, list)):
                raise self.fail(f"{name}.{key}", f"must be a string or number, got {item!r}")
            env[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
        return env

    def password(self, name: str) -> str:
        """A password: a string that is not empty; missing, null and other types are refused by name."""
        problem = password_problem(self._settings.get(name), f"{self.prefix}{name}")
        if problem:
            raise AnsibleFilterError(f"{self.host}: {problem}")
        return str(self._settings[name])

    def networks(self, name: str) -> list[str]:
        """Source networks: a list of CIDRs or single addresses, each as ip_network writes it; empty refused."""
        networks = []
        for item in self.strings(name, empty=False):
            network = as_network(item)
            if network is None:
                raise self.fail(name, f"holds {item!r}, which is not a network (CIDR such as 10.1.0.0/16)")
            networks.append(network)
        return networks

    def address(self, name: str) -> str:
        """An IP address to publish ports on (0.0.0.0 included)."""
        value = self.str(name).strip()
        address = as_address(value)
        if address is None:
            raise self.fail(name, f"must be an IP address, got {value!r}")
        return address

    def list(self, name: str) -> list:
        value = self.raw(name)
        if not isinstance(value, list):
            raise self.fail(name, f"must be a list, got {value!r}")
        return list(value)


def as_int(value: Any) -> int | None:
    """A whole number from an int or its decimal string; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def as_network(value: Any) -> str | None:
    """A network (CIDR, or a single address) as ip_network writes it; None for anything else."""
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        return None


def as_address(value: Any) -> str | None:
    """An IP address as ip_address writes it; None for anything else."""
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


def password_problem(value: Any, variable: str) -> str:
    """What is wrong with a password, or '' when nothing is."""
    if value is None:
        return f"{variable} is null; set it (Ansible Vault) in the inventory"
    if not isinstance(value, str):
        return f"{variable} must be a string, not {type(value).__name__}; quote it in the inventory"
    if not value:
        return f"{variable} is empty; set it (Ansible Vault) in the inventory"
    return ""


def instances(node: Any, host: str) -> list[dict]:
    """The GPU sets preflight planned (preflight_node.instances), checked for the keys the plan reads."""
    if not isinstance(node, Mapping) or not isinstance(node.get("instances"), list):
        raise AnsibleFilterError(f"{host}: preflight_node.instances is missing; run the preflight role first")
    wanted = ("name", "devices", "uuids", "instance", "worker", "scratch_dir", "port", "frontend_port")
    for item in node["instances"]:
        missing = [key for key in wanted if not isinstance(item, Mapping) or key not in item]
        if missing:
            raise AnsibleFilterError(f"{host}: GPU set {item!r} lacks {missing}; run the preflight role first")
    return list(node["instances"])


def scratch_volumes(scratch: Any, servers: list[dict], host: str) -> dict[str, str]:
    """The scratch volume of each GPU set in servers, from the scratch plan (scratch_plan.volume_of)."""
    volume_of = scratch.get("volume_of") if isinstance(scratch, Mapping) else None
    if not isinstance(volume_of, Mapping):
        raise AnsibleFilterError(f"{host}: scratch_plan.volume_of is missing; run the scratch role's plan first")
    missing = [item["name"] for item in servers if not isinstance(volume_of.get(item["name"]), str)]
    if missing:
        raise AnsibleFilterError(f"{host}: the scratch plan names no volume for the GPU sets {missing}; "
                                 "run the scratch role's plan on the same GPU sets")
    return {item["name"]: str(volume_of[item["name"]]) for item in servers}


def cpu_workers_problems(entries: Any) -> list[str]:
    """What is wrong with celery_worker_cpu_workers (entries of {name, queues, server_host, server_port},
    names unique), one sentence per problem; empty when nothing is."""
    if not isinstance(entries, list):
        return [f"celery_worker_cpu_workers must be a list, got {entries!r}"]
    problems = []
    for entry in entries:
        if isinstance(entry, Mapping):
            port = as_int(entry.get("server_port"))
            queues = entry.get("queues")
            if (isinstance(entry.get("name"), str) and SAFE_NAME.match(entry["name"])
                    and isinstance(queues, list) and queues and all(isinstance(q, str) and q for q in queues)
                    and isinstance(entry.get("server_host"), str) and entry["server_host"]
                    and port is not None and 1024 <= port <= 65535):
                continue
        shown = dict(entry) if isinstance(entry, Mapping) else entry
        problems.append(f"CPU-only worker {shown!r} needs a name (letters, digits, _ . -), queues, server_host and "
                        "a server_port in 1024-65535 (celery_worker_cpu_workers)")
    names = [entry.get("name", "") if isinstance(entry, Mapping) else "" for entry in entries]
    if len(set(names)) != len(names):
        problems.append(f"CPU-only worker names repeat: {names} (celery_worker_cpu_workers)")
    return problems
