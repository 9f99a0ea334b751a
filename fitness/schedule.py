"""Learning-rate schedules: the multiplier every optimizer's lr gets at each step (DESIGN inv. 9).

One definition for every tier, rules and baselines alike: at 1-based step ``t`` of ``T`` the
learning rate is ``lr * factor(t)``, with

* ``cosine``   ``0.5 * (1 + cos(pi * (t - 1) / T))``: 1 at the first step, decaying to near 0
  at the last (the default);
* ``constant`` ``1``.

The proxy loops take the factors as one array (:func:`factors`); a torch loop multiplies the
group's lr by :func:`factor` before each ``step()``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SCHEDULES = ("cosine", "constant")
DEFAULT = "cosine"


def check(name: str) -> str:
    """``name`` if it is a schedule; ValueError naming the known ones otherwise."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; known: {', '.join(SCHEDULES)}")
    return name


def factor(name: str, t: int, total_steps: int) -> float:
    """The multiplier of the learning rate at 1-based step ``t`` of ``total_steps``."""
    if check(name) == "constant" or total_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (t - 1) / total_steps))


@lru_cache(maxsize=256)
def factors(name: str, steps: int) -> np.ndarray:
    """:func:`factor` for t = 1 .. steps, as float64 (index t - 1; read-only, shared)."""
    out = np.array([factor(name, t, steps) for t in range(1, steps + 1)], dtype=np.float64)
    out.setflags(write=False)
    return out


__all__ = ["DEFAULT", "SCHEDULES", "check", "factor", "factors"]
