"""The baseline store: tuned Adam on each task instance, computed once and kept on disk.

The reference every proxy score is measured against (:mod:`fitness.score`) is Adam after the
same learning-rate search, schedule, steps and data as the rule (:func:`fitness.tuning.tune`).
A result is keyed by everything that determines it (the task config with its seed, the search
settings, the schedule, Adam's rule text, :data:`BASELINE_VERSION` and a hash of the code that
computes it, :func:`code_key`) and kept as JSON under
``$EVOLVE_CACHE_DIR`` (default ``~/.cache/evolve-optim``)``/baselines``, written atomically, and
in a process-wide memo: a campaign that redraws its instances with a new seed pays Adam's
search once per seed and process, and a worker that starts later reads the file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from functools import cache
from pathlib import Path

from fitness import lr_grid, numba_cache
from fitness import schedule as lr_schedule
from fitness.tasks import TaskInstance
from fitness.tuning import TunedRun, tune
from primitives.files import keyed_path, read_keyed, write_keyed
from primitives.program import Program, compile_rule
from primitives.rules import KNOWN_RULES

REFERENCE = "adam"
# Bump when what a baseline file holds changes shape.
BASELINE_VERSION = 3
# Besides the compiled sources (fitness.numba_cache), the files whose code decides the numbers.
_CODE = ("fitness/tasks.py", "fitness/datasets.py", "fitness/tuning.py", "fitness/lr_grid.py",
         "fitness/schedule.py")

_MEMO: dict[str, TunedRun] = {}


@cache
def code_key() -> str:
    """sha256 (12 hex digits) of the code that computes a baseline: an edit to a kernel, a
    task's data or the search gets fresh baselines instead of stale numbers (measured: a
    changed kernel under an unchanged version made tuned Adam score 0.91 against itself)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(numba_cache.source_key().encode())
    for rel in _CODE:
        digest.update((root / rel).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir() -> Path:
    """``$EVOLVE_CACHE_DIR`` or ``~/.cache/evolve-optim``."""
    root = os.environ.get("EVOLVE_CACHE_DIR") or os.path.join("~", ".cache", "evolve-optim")
    return Path(root).expanduser()


class BaselineStore:
    """Tuned Adam per (task instance, lr search, schedule), memoised and on disk."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir() / "baselines"
        self._program: Program | None = None
        self.computed = 0  # baselines computed here rather than read from disk or memo

    @property
    def program(self) -> Program:
        if self._program is None:
            self._program = compile_rule(KNOWN_RULES[REFERENCE].rule)
        return self._program

    @staticmethod
    def key(instance: TaskInstance, search: lr_grid.LrSearch, schedule: str) -> dict:
        return {
            "task": instance.config(),
            "search": search.to_dict(),
            "schedule": schedule,
            "rule": KNOWN_RULES[REFERENCE].rule,
            "version": BASELINE_VERSION,
            "code": code_key(),
        }

    def get(self, instance: TaskInstance, search: lr_grid.LrSearch = lr_grid.DEFAULT,
            schedule: str = lr_schedule.DEFAULT) -> TunedRun:
        key = self.key(instance, search, schedule)
        path = keyed_path(self.directory, instance.name, key)
        memo_key = str(path.resolve())
        run = _MEMO.get(memo_key)
        if run is None:
            run = read_keyed(path, key, "adam", TunedRun)
        if run is None:
            run = tune(instance, self.program, search, schedule)
            self.computed += 1
            write_keyed(path, key, "adam", asdict(run))
        _MEMO[memo_key] = run
        return run


def clear_memo() -> None:
    """Forget the process-wide memo (tests that time or count computations)."""
    _MEMO.clear()


__all__ = ["BASELINE_VERSION", "REFERENCE", "BaselineStore", "cache_dir", "clear_memo",
           "code_key"]
