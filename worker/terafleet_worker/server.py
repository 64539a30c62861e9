"""Talking to the paired TeraChem server: a STATUS round-trip, and reading a failed job's tc.out."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from . import messages

HEADER = struct.Struct(">II")
STATUS = 0


class ServerUnavailable(Exception):
    """The server did not answer a STATUS round-trip."""


def status(host: str, port: int, timeout: float) -> bool:
    """Send an empty STATUS and read the Status answer; return whether the server is busy.

    A TCP connect is not enough: an unlicensed or wedged TeraChem accepts connections and never answers.
    """
    pb = messages.load()
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(HEADER.pack(STATUS, 0))
            header = _read(conn, HEADER.size)
            kind, size = HEADER.unpack(header)
            if kind != STATUS:
                raise ServerUnavailable(f"{host}:{port} answered STATUS with message type {kind}")
            answer = pb.Status()
            answer.ParseFromString(_read(conn, size) if size else b"")
            return answer.busy
    except (OSError, EOFError) as error:
        raise ServerUnavailable(f"{host}:{port} did not answer STATUS: {error}") from None


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def calculation_error(scratch_dir: Path, job_dir: str | None) -> str | None:
    """The error TeraChem wrote to a job's tc.out before it died, if it wrote one."""
    if not job_dir:
        return None
    tc_out = scratch_dir / job_dir / "tc.out"
    try:
        lines = tc_out.read_text(errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.strip() for line in lines if line.strip().upper().startswith(("ERROR", "FATAL"))]
    return errors[-1] if errors else None
