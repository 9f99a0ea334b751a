"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then renamed.

A reader (or a resumed campaign) sees either the old file or the new one, never half of one;
when the disk is full the old file survives, no temp file is left, and the error reaches the
caller. Every file the project writes (JSON, JSONL, Markdown, generated code, PNG) goes through
:func:`atomic_write`, so each gets the permissions the user's umask asks for, as ``open()``
would give it (``mkstemp`` alone would leave it readable by its owner only).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # elsewhere the only portable way is to set it and put it back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` atomically: ``write`` fills a binary temp file that then replaces it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def json_digest(obj: Any, length: int = 24) -> str:
    """sha256 hex digits of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def keyed_path(folder: str | os.PathLike, name: str, key: dict) -> Path:
    """Where a result computed for ``key`` is cached: ``folder/name-<digest of key>.json``."""
    return Path(folder) / f"{name}-{json_digest(key)}.json"


def write_keyed(path: str | os.PathLike, key: dict, field: str, value: Any) -> None:
    """Cache ``value`` under ``field`` together with the ``key`` it was computed for."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, field: value}, indent=1, sort_keys=True))


def read_keyed(path: str | os.PathLike, key: dict, field: str, build: Callable[..., T]) -> T | None:
    """``build(**value)`` of a cache file written for exactly ``key``; None when the file is
    missing, unreadable, for another key or of another shape (then the caller recomputes)."""
    try:
        payload = json.loads(Path(path).read_text())
        if payload.get("key") != json.loads(json.dumps(key)):
            return None
        return build(**payload[field])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "json_digest", "keyed_path", "read_keyed", "write_keyed"]
