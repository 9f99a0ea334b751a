"""Search strategies other than evolution, behind the one ask/tell seam (issue 14).

Each module implements one strategy as a :class:`evolve.strategy.Strategy` subclass, registered
by name in :data:`evolve.config.STRATEGIES`:

* ``random``       :mod:`evolve.strategies.random_search`: uniform random rules from the grammar;
* ``rl``           :mod:`evolve.strategies.rl`: an RNN controller trained with REINFORCE
  (Neural Optimizer Search, Bello et al. 2017);
* ``optuna-adam``  :mod:`evolve.strategies.optuna_adam`: TPE over Adam/AdamW's constants, the
  "tune Adam instead" baseline.

Every strategy draws its first batch with ``config.population`` rules and each later batch with
``config.children_per_generation``, as evolution does, so that at any generation every strategy
has asked for the same number of candidates (what ``evolve compare`` counts as its budget).

A strategy that keeps files of its own (the Optuna journal) needs the run directory, which the
seam does not pass to strategies; the CLI binds it around the runner with
:func:`run_directory` until the runner offers such a hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_RUN_DIRECTORY: ContextVar[Path | None] = ContextVar("evolve_run_directory", default=None)


@contextmanager
def run_directory(path: str | Path) -> Iterator[None]:
    """Strategies created inside the block keep their own files in ``path``."""
    token = _RUN_DIRECTORY.set(Path(path))
    try:
        yield
    finally:
        _RUN_DIRECTORY.reset(token)


def bound_run_directory() -> Path | None:
    """The run directory bound by :func:`run_directory`, or None (no files of its own)."""
    return _RUN_DIRECTORY.get()


def batch_size(config, started: bool) -> int:
    """How many rules a strategy asks for: the population first, then children per generation."""
    return config.children_per_generation if started else config.population


__all__ = ["batch_size", "bound_run_directory", "run_directory"]
