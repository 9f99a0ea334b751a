"""Tuned Adam and SGD baselines per task instance, cached on disk, and the score normalisation.

Score of a rule on one task (docs/scoring.md has the reasoning)::

    gap(L)  = max(L - L_min, 0) + eps          eps = 1e-9 * (L0 - L_min)
    score   = log(gap(L0) / gap(L)) / log(gap(L0) / gap(L_adam))
    clipped to [FLOOR, CAP]; a task where no learning rate gave a finite run scores FLOOR.

L0 is the loss at the start, L the rule's best final loss over the lr grid, L_adam tuned Adam's
(same interpreter, grid and step budget), L_min a lower bound of the loss (0 for every task
here). So 1.0 is as good as tuned Adam, 0 is no progress, and it is the fraction of Adam's
progress in log-loss, the scale on which optimizers differ. ``eps`` keeps logs defined when a
loss reaches L_min exactly and stops 1e-300 vs 1e-30 differences from counting.

Baselines are computed once per task instance and kept as JSON under ``$EVOLVE_CACHE_DIR``
(default ``~/.cache/evolve-optim``)/baselines, named by a sha256 of the task config, the lr grid
and the baseline rules; files are written atomically (temp file, then ``os.replace``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fitness import kernels
from fitness.tasks import RunOutcome, TaskInstance, config_hash
from primitives.files import atomic_write_text
from primitives.program import Program, compile_rule
from primitives.rules import KNOWN_RULES

FLOOR = -1.0
CAP = 3.0
REL_EPS = 1e-9
BASELINES = ("adam", "sgd")
# Bump when the score formula or the run loop changes what a baseline file holds.
BASELINE_VERSION = 2

REASON_NAN = "diverged (nan/inf)"
REASON_ASCENDED = "ascended (loss rose above 20x its start)"
REASON_NO_PROGRESS = "no progress (final loss not below the start)"


def cache_dir() -> Path:
    """``$EVOLVE_CACHE_DIR`` or ``~/.cache/evolve-optim``."""
    root = os.environ.get("EVOLVE_CACHE_DIR") or os.path.join("~", ".cache", "evolve-optim")
    return Path(root).expanduser()


@dataclass
class BestRun:
    """The best learning rate of one rule on one task, and why it failed if it did."""

    loss0: float
    best_loss: float | None  # None when no lr gave a finite run
    best_lr: float | None
    reason: str | None
    losses: list[float | None]  # final loss at each lr (None: failed)


def best_run(outcome: RunOutcome, lrs: np.ndarray) -> BestRun:
    """Pick the lr with the lowest final loss; name the failure when none finished."""
    ok = (outcome.status == kernels.STATUS_OK) & np.isfinite(outcome.final)
    losses = [float(v) if good else None for v, good in zip(outcome.final, ok)]
    if not ok.any():
        n_nan = int(np.sum(outcome.status == kernels.STATUS_NAN))
        n_up = int(np.sum(outcome.status == kernels.STATUS_ASCENDED))
        reason = REASON_NAN if n_nan >= n_up else REASON_ASCENDED
        return BestRun(outcome.loss0, None, None, reason, losses)
    k = int(np.argmin(np.where(ok, outcome.final, np.inf)))
    best = float(outcome.final[k])
    reason = REASON_NO_PROGRESS if not best < outcome.loss0 else None
    return BestRun(outcome.loss0, best, float(lrs[k]), reason, losses)


def task_score(loss: float | None, loss0: float, loss_adam: float, loss_min: float = 0.0) -> float:
    """The normalised score of module docstring; FLOOR for a failed run (``loss`` None)."""
    if loss is None or not math.isfinite(loss) or not math.isfinite(loss0):
        return FLOOR
    eps = REL_EPS * max(loss0 - loss_min, 1e-300)

    def gap(value: float) -> float:
        return max(value - loss_min, 0.0) + eps

    # Adam makes progress on every task of the suites (tests pin this); the max only guards
    # against division by ~0 on a task someone adds where it does not.
    denom = max(math.log(gap(loss0) / gap(loss_adam)), 1e-3)
    score = math.log(gap(loss0) / gap(loss)) / denom
    return float(min(max(score, FLOOR), CAP))


def aggregate(scores: list[float]) -> float:
    """Suite score: mean after dropping the single best and worst task (with >= 5 tasks).

    Robust to one task going wrong or one lucky task, yet unlike the median it still moves
    when any task improves, which selection needs.
    """
    if not scores:
        return FLOOR
    ordered = sorted(scores)
    if len(ordered) >= 5:
        ordered = ordered[1:-1]
    return float(sum(ordered) / len(ordered))


def _atomic_write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True))


class BaselineStore:
    """Tuned baselines (``BASELINES``) per (task instance, lr grid, steps), memoised and on disk."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory is not None else cache_dir() / "baselines"
        self._memo: dict[str, dict[str, BestRun]] = {}
        self._programs: dict[str, Program] = {
            name: compile_rule(KNOWN_RULES[name].rule) for name in BASELINES
        }
        self.computed = 0  # baselines computed here rather than read from disk

    def key(self, instance: TaskInstance, lrs: np.ndarray, steps: int) -> dict:
        return {
            "task": instance.config(),
            "lrs": [float(v) for v in lrs],
            "steps": int(steps),
            "rules": {n: KNOWN_RULES[n].rule for n in BASELINES},
            "version": BASELINE_VERSION,
        }

    def get(self, instance: TaskInstance, lrs: np.ndarray, steps: int | None = None
            ) -> dict[str, BestRun]:
        steps = instance.steps if steps is None else int(steps)
        key = self.key(instance, lrs, steps)
        digest = config_hash(key)
        if digest in self._memo:
            return self._memo[digest]
        path = self.directory / f"{instance.name}-{digest}.json"
        runs = self._read(path, key)
        if runs is None:
            runs = {name: best_run(instance.run(prog, lrs, steps), lrs)
                    for name, prog in self._programs.items()}
            self.computed += 1
            _atomic_write_json(path, {"key": key,
                                      "baselines": {n: asdict(r) for n, r in runs.items()}})
        self._memo[digest] = runs
        return runs

    @staticmethod
    def _read(path: Path, key: dict) -> dict[str, BestRun] | None:
        """A cached file if it is readable and for exactly this key; otherwise recompute."""
        try:
            payload = json.loads(path.read_text())
            if payload.get("key") != json.loads(json.dumps(key)):
                return None
            return {n: BestRun(**payload["baselines"][n]) for n in BASELINES}
        except (OSError, ValueError, KeyError, TypeError):
            return None


__all__ = [
    "BASELINES",
    "BaselineStore",
    "BestRun",
    "CAP",
    "FLOOR",
    "aggregate",
    "best_run",
    "cache_dir",
    "task_score",
]
