"""Where Numba keeps the compiled interpreter and task loops: a folder keyed by their sources.

Numba's on-disk cache checks only the timestamp of the file that defines a cached function, not
of the functions it inlines from other files (the primitive table's kernels inside the
interpreter, the interpreter inside the task loops). So the cache folder is keyed by a hash of
every source whose code ends up in a cached function, and of the primitive table's rows as they
are now (:func:`primitives.table.kernel_signature`: a row added at run time changes the kernel
tuple the interpreter dispatches over): a change to any of them gets a fresh folder instead of
stale machine code. :func:`configure` runs when :mod:`fitness` is first imported, before any
cached function is defined, locks the table, and the variable it sets is inherited by workers.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
COMPILED_SOURCES = ("primitives/table.py", "fitness/interpreter.py", "fitness/kernels.py")


def source_key() -> str:
    """sha256 (12 hex digits) of the sources compiled into cached functions and of the rows of
    the primitive table, which is locked from here on (its rows are what gets compiled)."""
    from primitives import table

    digest = hashlib.sha256()
    for rel in COMPILED_SOURCES:
        path = _ROOT / rel
        if path.exists():
            digest.update(path.read_bytes())
    table.lock()
    digest.update(table.kernel_signature().encode())
    return digest.hexdigest()[:12]


def configure() -> str:
    """Point ``NUMBA_CACHE_DIR`` at ``<base>/<source key>`` and return that folder.

    ``<base>`` is ``$NUMBA_CACHE_DIR`` (the Makefile sets ``build/numba-cache``) or
    ``~/.cache/evolve-optim/numba``. Idempotent: a worker that inherits the keyed folder keeps it.
    """
    key = source_key()
    base = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "evolve-optim" / "numba")
    path = base if Path(base).name == key else str(Path(base) / key)
    os.environ["NUMBA_CACHE_DIR"] = path
    if "numba" in sys.modules:  # numba read the variable when it was imported: set it live too
        from numba.core import config

        config.CACHE_DIR = path
    return path


__all__ = ["COMPILED_SOURCES", "configure", "source_key"]
