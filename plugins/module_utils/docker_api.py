"""A small client for the Docker Engine API over its unix socket, for terafleet's node modules.

Only the standard library: the modules run on nodes whose Python has nothing else. One HTTP connection
per call, JSON in and out; an error status raises DockerAPIError with the engine's own message.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.parse

DEFAULT_SOCKET = "/var/run/docker.sock"
# The modules' option for it, documented in the terafleet.cluster.docker_api doc fragment.
DOCKER_SOCKET_OPTION = {"docker_socket": {"type": "path", "default": DEFAULT_SOCKET}}


def string_map(mapping: dict | None) -> dict:
    """Keys and values as strings, the way the engine keeps labels, environment and driver options."""
    return {str(key): str(value) for key, value in (mapping or {}).items()}


# Docker 20.10 speaks 1.41, and every call and field used here exists in it. Newer engines are spoken to
# in their own version (Docker 29 refuses clients below 1.44); the fields used are unchanged there.
MIN_API_VERSION = (1, 41)


def label_filter(labels: dict | None) -> dict:
    """The query parameters of a listing filtered to what carries all of `labels` (each a value, or None for
    any value); none for no labels."""
    wanted = [key if value is None else f"{key}={value}" for key, value in (labels or {}).items()]
    return {"filters": json.dumps({"label": wanted})} if wanted else {}


class DockerAPIError(Exception):
    """The engine answered with an error status, or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerAPI:
    """Calls to one engine; `timeout` bounds each call, a stop's own wait is added to it."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 60.0):
        self.socket_path = socket_path
        self.timeout = timeout
        self._version: str | None = None
        self._reported: str | None = None

    def reported_version(self) -> str:
        """The API version the engine says it speaks, old or new, asked once (the unversioned /version
        answers every client); '' when it names none."""
        if self._reported is None:
            answer = self.call("GET", "/version", versioned=False)
            self._reported = str(answer.get("ApiVersion") or "") if isinstance(answer, dict) else ""
        return self._reported

    @property
    def version(self) -> str:
        """The engine's own API version, refused below the oldest terafleet speaks."""
        if self._version is None:
            version = self.reported_version()
            try:
                parts = tuple(int(p) for p in version.split("."))
            except ValueError:
                parts = ()
            if parts < MIN_API_VERSION:
                raise DockerAPIError(f"the Docker engine at {self.socket_path} speaks API {version or '?'}; "
                                     "terafleet needs 1.41 (Docker 20.10) or newer")
            self._version = version
        return self._version

    def call(self, method: str, path: str, params: dict | None = None, body: object = None,
             timeout: float | None = None, missing_ok: bool = False, versioned: bool = True) -> object:
        """One API call; the decoded JSON answer (None for an empty one, or a 404 when missing_ok)."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        prefix = f"/v{self.version}" if versioned else ""
        connection = _UnixConnection(self.socket_path, timeout or self.timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            connection.request(method, f"{prefix}{path}{query}", body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise DockerAPIError(f"cannot reach the Docker engine at {self.socket_path}: {error}") from error
        finally:
            connection.close()
        if response.status == 404 and missing_ok:
            return None
        if response.status >= 400:
            try:
                answer = json.loads(data)
                message = answer.get("message", "") if isinstance(answer, dict) else str(answer)
            except ValueError:
                message = data.decode(errors="replace").strip()
            raise DockerAPIError(f"{method} {path}: {message or response.reason} (HTTP {response.status})",
                                 response.status)
        try:
            return json.loads(data) if data.strip() else None
        except ValueError as error:
            raise DockerAPIError(f"{method} {path}: the engine's answer is not JSON: {data[:200]!r}") from error

    # The calls the modules make, named for what they do.
    def container(self, name: str) -> dict | None:
        return self.call("GET", f"/containers/{urllib.parse.quote(name)}/json", missing_ok=True)

    def containers(self, labels: dict | None = None) -> list[dict]:
        """Every container, running or not, that carries all of `labels` (each a value, or None for any)."""
        return self.call("GET", "/containers/json", params={"all": "true", **label_filter(labels)}) or []

    def image(self, reference: str) -> dict | None:
        return self.call("GET", f"/images/{urllib.parse.quote(reference, safe='')}/json", missing_ok=True)

    def create_container(self, name: str, body: dict) -> str:
        return self.call("POST", "/containers/create", params={"name": name}, body=body)["Id"]

    def start(self, name: str) -> None:
        self.call("POST", f"/containers/{urllib.parse.quote(name)}/start")

    def stop(self, name: str, timeout: int) -> None:
        self.call("POST", f"/containers/{urllib.parse.quote(name)}/stop", params={"t": timeout},
                  timeout=self.timeout + timeout)

    def restart(self, name: str, timeout: int) -> None:
        self.call("POST", f"/containers/{urllib.parse.quote(name)}/restart", params={"t": timeout},
                  timeout=self.timeout + timeout)

    def run_check(self, name: str, test: list[str], timeout: float) -> bool:
        """Run a container's health check command now, as Docker would (docker exec, detached); True when it
        exits 0 within `timeout` seconds."""
        if not test or test[0] == "NONE":
            return True
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:] if test[0] == "CMD" else test
        exec_id = self.call("POST", f"/containers/{urllib.parse.quote(name)}/exec",
                            body={"Cmd": argv, "AttachStdout": False, "AttachStderr": False})["Id"]
        self.call("POST", f"/exec/{exec_id}/start", body={"Detach": True})
        deadline = time.monotonic() + timeout
        while True:
            answer = self.call("GET", f"/exec/{exec_id}/json") or {}
            if not answer.get("Running"):
                return answer.get("ExitCode") == 0
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def remove_container(self, name: str) -> None:
        self.call("DELETE", f"/containers/{urllib.parse.quote(name)}", params={"force": "true"})

    def update_container(self, name: str, body: dict) -> None:
        self.call("POST", f"/containers/{urllib.parse.quote(name)}/update", body=body)

    def network(self, name: str) -> dict | None:
        return self.call("GET", f"/networks/{urllib.parse.quote(name)}", missing_ok=True)

    def networks(self, labels: dict | None = None) -> list[dict]:
        """Every network that carries all of `labels` (each a value, or None for any)."""
        return self.call("GET", "/networks", params=label_filter(labels)) or []

    def create_network(self, body: dict) -> dict:
        return self.call("POST", "/networks/create", body=body)

    def info(self) -> dict:
        return self.call("GET", "/info")

    def volume(self, name: str) -> dict | None:
        return self.call("GET", f"/volumes/{urllib.parse.quote(name)}", missing_ok=True)

    def volumes(self, labels: dict | None = None) -> list[dict]:
        """Every volume that carries all of `labels` (each a value, or None for any)."""
        return (self.call("GET", "/volumes", params=label_filter(labels)) or {}).get("Volumes") or []

    def create_volume(self, body: dict) -> dict:
        return self.call("POST", "/volumes/create", body=body)


def memory_bytes(value: object) -> int | None:
    """Docker's memory notation (512m, 8g, bytes) in bytes; None for what is not a size above 0."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)\s*", str(value).lower())
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")
