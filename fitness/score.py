"""Scores: how a rule's losses compare with tuned Adam's, per task and per suite, and the typed
result that carries them from a worker to the campaign.

Every tier (the Numba proxy suites, the torch real-data tier) scores the same way:

* per task, the **log-ratio** ``log2(gap(L_ref) / gap(L))`` of tuned Adam's loss ``L_ref`` to
  the rule's loss ``L`` (each at its own best learning rate, same grid, schedule, steps and
  seeds), clipped to ``[-CLIP, CLIP]``: a task counts at most twice better or twice worse than
  Adam, so a loss driven to 1e-33 on one quadratic cannot outweigh the rest. ``gap(L) =
  max(L - L_min, 0) + eps`` with ``eps = REL_EPS * (L0 - L_min)``, so a loss at the lower bound
  still has a finite log. A task on which every learning rate failed gets ``FAIL``, below any
  finite result;
* per suite, the **score** ``2 ** mean(log-ratios)``: the geometric-mean loss ratio against
  tuned Adam. 1.0 is as good as tuned Adam, 1.10 is 10% lower loss in geometric mean, higher is
  better; the range is [2 ** FAIL, 2 ** CLIP] = [0.25, 2].

The hurdle asks a different question (does the rule optimise at all?) and uses
:func:`progress`, the fraction of Adam's progress in log-loss (1.0 = as far as Adam got).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

CLIP = 1.0  # log2 units: a task counts at most 2x better or 2x worse than tuned Adam
FAIL = -2.0  # log2 units: every learning rate failed on the task
FLOOR = 2.0**FAIL  # the suite score of a rule that failed every task
REL_EPS = 1e-9
PROGRESS_FLOOR = -1.0
PROGRESS_CAP = 3.0

REASON_NAN = "diverged (nan/inf)"
REASON_ASCENDED = "ascended (loss rose above 20x its start)"
REASON_NO_PROGRESS = "no progress (final loss not below the start)"


def _gap(value: float, loss0: float, loss_min: float) -> float:
    eps = REL_EPS * max(loss0 - loss_min, 1e-300)
    return max(value - loss_min, 0.0) + eps


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def log_ratio(loss: float | None, ref_loss: float | None, loss0: float,
              loss_min: float = 0.0) -> float:
    """Clipped ``log2(gap(ref_loss) / gap(loss))``; FAIL when ``loss`` is missing or not finite.

    A reference that failed too (``ref_loss`` None) counts the rule as Adam's equal when the
    rule finished: neither can be compared with the other on that task.
    """
    if not _finite(loss) or not math.isfinite(loss0):
        return FAIL
    if not _finite(ref_loss):
        return 0.0
    value = math.log2(_gap(ref_loss, loss0, loss_min) / _gap(loss, loss0, loss_min))
    return float(min(max(value, -CLIP), CLIP))


def suite_score(log_ratios: Iterable[float]) -> float:
    """``2 ** mean(log_ratios)``: the geometric-mean loss ratio against tuned Adam."""
    values = [v if math.isfinite(v) else FAIL for v in log_ratios]
    if not values:
        return FLOOR
    return float(2.0 ** (sum(values) / len(values)))


def score_bound(log_ratios: Iterable[float], n_tasks: int) -> float:
    """The highest suite score a rule can still reach after ``log_ratios`` of ``n_tasks`` tasks:
    every task not yet run counts at most CLIP, so the bound is exact, never optimistic."""
    done = [v if math.isfinite(v) else FAIL for v in log_ratios]
    return float(2.0 ** ((sum(done) + (n_tasks - len(done)) * CLIP) / n_tasks))


def progress(loss: float | None, loss0: float, ref_loss: float, loss_min: float = 0.0) -> float:
    """Fraction of tuned Adam's progress in log-loss, clipped to [-1, 3] (the hurdle's measure).

    ``log(gap(L0) / gap(L)) / log(gap(L0) / gap(L_ref))``: 1.0 went as far as Adam, 0 made no
    progress; PROGRESS_FLOOR when the run failed.
    """
    if not _finite(loss) or not math.isfinite(loss0):
        return PROGRESS_FLOOR
    g0 = _gap(loss0, loss0, loss_min)
    # Adam makes progress on every task here; the max guards a task where it does not
    denom = max(math.log(g0 / _gap(ref_loss, loss0, loss_min)), 1e-3)
    value = math.log(g0 / _gap(loss, loss0, loss_min)) / denom
    return float(min(max(value, PROGRESS_FLOOR), PROGRESS_CAP))


@dataclass
class TaskScore:
    """One rule on one task: its loss at its best learning rate against tuned Adam's."""

    task: str
    log_ratio: float  # clipped log2(ref_loss / loss); FAIL when every lr failed
    loss: float | None = None  # the scored loss (held-out where the task has a test split)
    ref_loss: float | None = None  # tuned Adam's loss, same grid, schedule, steps and seeds
    loss0: float | None = None  # the loss at the start
    best_lr: float | None = None
    reason: str | None = None  # why it failed or made no progress

    @property
    def failed(self) -> bool:
        return self.loss is None


@dataclass
class Result:
    """One rule's evaluation on one suite: what crosses the executor seam, and what is cached.

    ``score`` is :func:`suite_score` of the tasks' log-ratios (1.0 = tuned Adam). ``hurdle`` is
    "passed", "rejected" or "off"; ``tier`` says which stage produced it ("proxy" or "real").
    """

    rule: str
    score: float
    tasks: list[TaskScore] = field(default_factory=list)
    tier: str = "proxy"
    suite: str = ""
    seed: int = 0
    reason: str | None = None
    hurdle: str = "off"
    hurdle_score: float | None = None
    fingerprint: str | None = None
    cached: bool = False
    seconds: float = 0.0
    # set when the suite stopped early against this threshold: ``score`` is then an upper
    # bound of the full score (below the threshold) and ``tasks`` holds the tasks that ran
    stopped_below: float | None = None
    # set when the screen (the suite's first tasks) stopped it against this mean log-ratio:
    # ``score`` is then an estimate from the tasks that ran, never above the upper bound
    screened_below: float | None = None

    @property
    def stopped(self) -> bool:
        """The suite stopped before its end: ``score`` is not a full score."""
        return self.stopped_below is not None or self.screened_below is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats become None)."""
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """The inverse of :meth:`to_dict`; unknown keys are ignored, a missing score is FLOOR."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and k != "tasks"}
        values.setdefault("rule", "")
        score = values.get("score")
        values["score"] = float(score) if _finite(score) else FLOOR
        task_keys = {f.name for f in fields(TaskScore)}
        tasks = []
        for t in data.get("tasks") or []:
            row = {k: v for k, v in t.items() if k in task_keys}
            row.setdefault("task", "")
            row["log_ratio"] = float(row["log_ratio"]) if _finite(row.get("log_ratio")) else FAIL
            tasks.append(TaskScore(**row))
        return cls(tasks=tasks, **values)


def failed_result(rule: str, reason: str, tasks: Iterable[str] = (), **extra: Any) -> Result:
    """A rule that could not be evaluated (malformed, raised): FLOOR, with the reason."""
    return Result(rule=rule, score=FLOOR,
                  tasks=[TaskScore(t, FAIL, reason=reason) for t in tasks], reason=reason,
                  **extra)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON has no NaN or inf)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


__all__ = [
    "CLIP",
    "FAIL",
    "FLOOR",
    "PROGRESS_CAP",
    "PROGRESS_FLOOR",
    "REASON_ASCENDED",
    "REASON_NAN",
    "REASON_NO_PROGRESS",
    "Result",
    "TaskScore",
    "failed_result",
    "json_safe",
    "log_ratio",
    "progress",
    "score_bound",
    "suite_score",
]
