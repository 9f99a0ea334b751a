"""The search space: primitive table, rule grammar, Program encoding, known rules, torch backend.

Importing this package first points Numba's on-disk cache at a folder keyed by a hash of the
sources whose compiled code is cached. Numba only checks the timestamp of the file that defines
a cached function, not of the functions it inlines from other files (the table's kernels inside
the interpreter and the task loops), so an edit to the table could otherwise run stale code.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_COMPILED_SOURCES = ("primitives/table.py", "fitness/interpreter.py", "fitness/kernels.py")


def _source_key() -> str:
    digest = hashlib.sha256()
    for rel in _COMPILED_SOURCES:
        path = _ROOT / rel
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _configure_numba_cache() -> None:
    key = _source_key()
    base = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "evolve-optim" / "numba")
    path = base if Path(base).name == key else str(Path(base) / key)
    os.environ["NUMBA_CACHE_DIR"] = path  # inherited by spawned workers (idempotent there)
    if "numba" in sys.modules:  # imported before us: set the live config too
        from numba.core import config

        config.CACHE_DIR = path


_configure_numba_cache()
