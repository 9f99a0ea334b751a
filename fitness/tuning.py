"""One rule on one task instance: the learning-rate search and the run it picks.

Every optimizer, rule or baseline, goes through :func:`tune`: the search of
:mod:`fitness.lr_grid` (decades, edge extension, third-of-a-decade refinement), each batch of
learning rates in one compiled call (:meth:`fitness.tasks.TaskInstance.run`), the same
schedule (:mod:`fitness.schedule`), steps and data. The best final loss counts; a task on which
every rate failed names the failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fitness import kernels, lr_grid
from fitness import schedule as lr_schedule
from fitness.score import REASON_ASCENDED, REASON_NAN, REASON_NO_PROGRESS
from fitness.tasks import TaskInstance
from primitives.program import Program


@dataclass
class TunedRun:
    """The outcome of the lr search for one rule on one task (plain data, JSON-ready)."""

    loss0: float
    best_loss: float | None  # None when no lr gave a finite run
    best_lr: float | None
    reason: str | None  # why every lr failed, or why the best made no progress
    losses: list[list[float | None]] = field(default_factory=list)  # [lr, final loss or None]
    runs: int = 0  # runs of ``steps`` steps that the search cost


def tune(instance: TaskInstance, program: Program, search: lr_grid.LrSearch = lr_grid.DEFAULT,
         schedule: str = lr_schedule.DEFAULT, steps: int | None = None) -> TunedRun:
    """Search the learning rate of ``program`` on ``instance``; returns the best run."""
    loss0 = math.nan
    failures = {kernels.STATUS_NAN: 0, kernels.STATUS_ASCENDED: 0}
    runs = 0

    def evaluate(lrs: list[float]) -> list[float | None]:
        nonlocal loss0, runs
        out = instance.run(program, np.asarray(lrs), steps=steps, schedule=schedule)
        loss0 = out.loss0
        runs += len(lrs)
        losses: list[float | None] = []
        for status, final in zip(out.status, out.final):
            if status == kernels.STATUS_OK and math.isfinite(final):
                losses.append(float(final))
            else:
                failures[int(status)] = failures.get(int(status), 0) + 1
                losses.append(None)
        return losses

    best_lr, tried = lr_grid.search(evaluate, search)
    pairs = [[lr, loss] for lr, loss in tried.items()]
    if best_lr is None:
        reason = (REASON_NAN if failures[kernels.STATUS_NAN] >= failures[kernels.STATUS_ASCENDED]
                  else REASON_ASCENDED)
        return TunedRun(loss0, None, None, reason, pairs, runs)
    best = tried[best_lr]
    reason = REASON_NO_PROGRESS if not best < loss0 else None
    return TunedRun(loss0, best, best_lr, reason, pairs, runs)


__all__ = ["TunedRun", "tune"]
