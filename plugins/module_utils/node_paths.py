"""Directories and small files on a node, made as asked in one module run: the path work shared by
terafleet's modules (scratch_volumes, node_files). Standard library only."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import time

OCTAL_MODE = re.compile(r"^0?[0-7]{3,4}$")


class FilesError(Exception):
    """A path cannot be made as asked."""


def resolve_ids(owner: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError as error:
        raise FilesError(f"no user {owner!r} on this node") from error
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as error:
        raise FilesError(f"no group {group!r} on this node") from error
    return uid, gid


def parse_mode(path: str, mode: str) -> int:
    if not OCTAL_MODE.match(str(mode)):
        raise FilesError(f"{path}: mode {mode!r} is not an octal mode such as '0750'")
    if not os.path.isabs(path):
        raise FilesError(f"{path}: not an absolute path")
    return int(str(mode), 8)


def _fix_owner_and_mode(path: str, info: os.stat_result, wanted: int, uid: int, gid: int, check_mode: bool) -> bool:
    changed = False
    if (info.st_uid, info.st_gid) != (uid, gid):
        changed = True
        if not check_mode:
            os.chown(path, uid, gid)
    if stat.S_IMODE(info.st_mode) != wanted:
        changed = True
        if not check_mode:
            os.chmod(path, wanted)
    return changed


def ensure_directory(path: str, mode: str, uid: int, gid: int, check_mode: bool) -> bool:
    """Make `path` a directory (with missing parents) with this owner and mode; True when something changed."""
    wanted = parse_mode(path, mode)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if not check_mode:
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, wanted)
        return True
    if not stat.S_ISDIR(info.st_mode):
        raise FilesError(f"{path} exists and is not a directory")
    return _fix_owner_and_mode(path, info, wanted, uid, gid, check_mode)


def merge(current: object, keys: dict) -> dict:
    """`current` with `keys` merged in: dictionaries key by key, at any depth; any other value replaced."""
    merged = dict(current) if isinstance(current, dict) else {}
    for key, value in keys.items():
        merged[key] = merge(merged.get(key), value) if isinstance(value, dict) else value
    return merged


def load_json(path: str) -> tuple[bytes | None, object]:
    """The bytes of the file at `path` and its JSON document: (None, None) when there is no such file, an
    empty file reads as {}; ValueError when it is not JSON."""
    try:
        with open(path, "rb") as current:
            raw = current.read()
    except FileNotFoundError:
        return None, None
    return raw, json.loads(raw) if raw.strip() else {}


def merged_json(path: str, keys: dict) -> tuple[bytes | None, dict | None, dict]:
    """The JSON document at `path` with `keys` merged in: (the file's bytes, its document, the merged one).

    A missing file is an empty document; one that is not a JSON object is refused, never overwritten.
    """
    try:
        raw, document = load_json(path)
    except ValueError:
        raw, document = b"", None
    if raw is None:
        return None, None, merge({}, keys)
    if not isinstance(document, dict):
        raise FilesError(f"{path} is not a JSON object; fix or remove it by hand, terafleet will not overwrite "
                         "what it cannot read")
    return raw, document, merge(document, keys)


def json_bytes(document: dict) -> bytes:
    """A document the way Ansible's to_nice_json(indent=4) writes it, so both agree on every byte."""
    return (json.dumps(document, indent=4, sort_keys=True, separators=(",", ": ")) + "\n").encode()


def backup(path: str) -> str:
    """Copy `path` beside itself the way Ansible's backup option names copies; the copy's path."""
    copy = f"{path}.{os.getpid()}.{time.strftime('%Y-%m-%d@%H:%M:%S~')}"
    shutil.copy2(path, copy)
    return copy


def ensure_file(path: str, content: bytes, mode: str, uid: int, gid: int,
                check_mode: bool) -> tuple[bool, bytes | None]:
    """Make `path` a regular file holding exactly `content`, with this owner and mode.

    Returns (changed, the previous content or None). New content is written to a temporary file in the
    same directory and renamed over the old one, so a reader never sees half a file.
    """
    wanted = parse_mode(path, mode)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise FilesError(f"{path} exists and is not a regular file")
    before = None
    if info is not None:
        with open(path, "rb") as current:
            before = current.read()
    if before == content:
        return _fix_owner_and_mode(path, info, wanted, uid, gid, check_mode), before
    if check_mode:
        return True, before
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FilesError(f"{path}: its directory {directory} does not exist; list the directory before the file")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chown(temporary, uid, gid)
        os.chmod(temporary, wanted)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return True, before


def ensure_absent(path: str, check_mode: bool) -> bool:
    """Remove a file, link or directory tree at `path`; True when there was one."""
    if not os.path.isabs(path):
        raise FilesError(f"{path}: not an absolute path")
    if not os.path.lexists(path):
        return False
    if not check_mode:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True
