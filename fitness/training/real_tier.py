"""Tier 2: rules trained with torch on small real-data tasks, scored against tuned Adam.

For each task (:mod:`fitness.training.real_tasks`) a rule gets the same treatment as Adam
(DESIGN invariant 9): the learning-rate search of :mod:`fitness.lr_grid`, the same schedule
(cosine decay by default), the same seeds, the same steps and minibatches. Every (rate, seed)
pair of one search round trains at once as an ensemble (:mod:`fitness.training.ensemble`).
The rate is chosen on the validation split (mean over seeds; a rate where any seed diverged
does not count) and the test loss at that rate is scored against tuned Adam's with
:func:`fitness.score.log_ratio`; the tier's score is :func:`fitness.score.suite_score`
(1.0 = tuned Adam, higher is better). Tuned Adam's results are cached on disk per task config.

The rule runs through :func:`primitives.torch_backend.run_program`, the same code as
``EvolvedOptimizer``; the step is ``w <- w - lr_t * d`` (no weight decay in the tier).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fitness import lr_grid
from fitness import schedule as lr_schedule
from fitness.score import REASON_ASCENDED, REASON_NAN, Result, TaskScore, log_ratio, suite_score
from fitness.training.data import BatchOrder
from fitness.training.real_tasks import BUILTIN_NAMES, RealTask, builtin_tasks, load_user_task
from fitness.training.torch_tasks import ASCEND, SCHEDULES
from primitives.files import keyed_path, read_keyed, write_keyed
from primitives.grammar import RuleSyntaxError
from primitives.program import Program, compile_rule
from primitives.rules import KNOWN_RULES, resolve
from primitives.torch_backend import run_program

TIER_VERSION = 1


@dataclass
class EnsembleRun:
    """One (rate, seed) model of an ensemble: its final losses, or why it failed."""

    lr: float
    seed: int
    val_loss: float | None
    test_loss: float | None
    reason: str | None = None


def train_ensemble(task: RealTask, program: Program, lrs: Sequence[float],
                   seeds: Sequence[int], schedule: str = "cosine",
                   steps: int | None = None) -> list[EnsembleRun]:
    """Train one model per (rate, seed) pair at once; models of a seed share init and batches."""
    steps = int(steps or task.steps)
    data = task.data()
    pairs = [(float(lr), int(s)) for lr in lrs for s in seeds]
    m = len(pairs)
    seed_rows = {s: task.init(s) for s in seeds}
    theta0 = torch.stack([seed_rows[s] for _, s in pairs])
    theta = theta0.clone().requires_grad_(True)
    states = [{buf.key: torch.zeros_like(theta) for buf in program.states}]
    rates = torch.tensor([lr for lr, _ in pairs], dtype=theta.dtype).unsqueeze(1)
    alive = torch.ones(m, dtype=torch.bool)
    reasons: list[str | None] = [None] * m
    orders = {s: BatchOrder(len(data.x_train), task.batch_size, s) for s in seeds}
    seed_index = torch.tensor([list(seeds).index(s) for _, s in pairs])
    first: torch.Tensor | None = None
    for t in range(1, steps + 1):
        rows = torch.stack([orders[s].next() for s in seeds])[seed_index]
        losses = task.losses(task.forward(task.layout.views(theta), data.x_train[rows]),
                             data.y_train[rows])
        with torch.no_grad():
            first = losses.detach().clone() if first is None else first
            bad = alive & ~torch.isfinite(losses)
            up = alive & torch.isfinite(losses) & (losses > ASCEND * first.abs().clamp_min(1e-12))
            newly = bad | up
            for i in newly.nonzero().flatten().tolist():
                reasons[i] = REASON_NAN if bool(bad[i]) else REASON_ASCENDED
            alive &= ~newly
        if not bool(alive.any()):
            break
        theta.grad = None
        torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
        with torch.no_grad():
            grad = torch.nan_to_num(theta.grad, nan=0.0, posinf=0.0, neginf=0.0)
            direction = run_program(program, [grad], [theta], states, t, steps)[0]
            factor = lr_schedule.factor(schedule, t, steps)
            theta.sub_(direction * (rates * factor * alive.unsqueeze(1)))
            if bool(newly.any()):
                # a dead model restarts from its (finite) start with rate 0: its NaNs must not
                # slow the ensemble, and it no longer counts
                theta[newly] = theta0[newly]
                for buf in states[0].values():
                    buf[newly] = 0.0
    with torch.no_grad():
        val = _eval(task, theta, data.x_val, data.y_val)
        test = _eval(task, theta, data.x_test, data.y_test)
    runs = []
    for i, (lr, s) in enumerate(pairs):
        ok = bool(alive[i]) and math.isfinite(val[i]) and math.isfinite(test[i])
        reason = reasons[i] or (None if ok else REASON_NAN)
        runs.append(EnsembleRun(lr, s, val[i] if ok else None, test[i] if ok else None, reason))
    return runs


def _eval(task: RealTask, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    m = theta.shape[0]
    out = task.forward(task.layout.views(theta), x.unsqueeze(0).expand(m, *x.shape))
    return [float(v) for v in task.losses(out, y.unsqueeze(0).expand(m, *y.shape))]


@dataclass
class TaskResult:
    """One optimizer on one task after the learning-rate search."""

    task: str
    best_lr: float | None
    test_loss: float | None  # mean over seeds at the best rate
    loss0: float  # test loss at the start (mean over seeds)
    val_by_lr: dict[str, float | None] = field(default_factory=dict)
    reason: str | None = None
    seconds: float = 0.0


def search_task(task: RealTask, program: Program, seeds: Sequence[int], schedule: str,
                search: lr_grid.LrSearch) -> TaskResult:
    """The learning-rate search for one optimizer on one task (see the module docstring)."""
    started = time.perf_counter()
    runs: dict[float, list[EnsembleRun]] = {}
    reasons: list[str] = []

    def evaluate(lrs: list[float]) -> list[float | None]:
        out = []
        batch = train_ensemble(task, program, lrs, seeds, schedule)
        for lr in lrs:
            group = [r for r in batch if r.lr == lr]
            runs[lr] = group
            failed = [r.reason for r in group if r.val_loss is None]
            reasons.extend(r for r in failed if r)
            out.append(None if failed else sum(r.val_loss for r in group) / len(group))
        return out

    best, tried = lr_grid.search(evaluate, search)
    with torch.no_grad():
        rows = torch.stack([task.init(s) for s in seeds])
        data = task.data()
        loss0 = sum(_eval(task, rows, data.x_test, data.y_test)) / len(seeds)
    result = TaskResult(task.name, best, None, loss0,
                        {f"{lr:g}": v for lr, v in tried.items()},
                        seconds=time.perf_counter() - started)
    if best is None:
        result.reason = max(set(reasons), key=reasons.count) if reasons else REASON_NAN
    else:
        result.test_loss = sum(r.test_loss for r in runs[best]) / len(runs[best])
    return result


@dataclass(frozen=True)
class RealTierConfig:
    """What the tier runs: task names (built-in) and user task specs, seeds, schedule, search."""

    tasks: tuple[str, ...] = BUILTIN_NAMES
    seeds: tuple[int, ...] = (0, 1)
    schedule: str = "cosine"
    search: lr_grid.LrSearch = lr_grid.DEFAULT

    def to_dict(self) -> dict:
        return {"tasks": list(self.tasks), "seeds": list(self.seeds), "schedule": self.schedule,
                "search": self.search.to_dict()}


def resolve_tasks(names: Sequence[str]) -> list[RealTask]:
    """Built-in names and ``FILE.py:function`` user specs -> tasks (TaskError / KeyError)."""
    builtin = builtin_tasks()
    out = []
    for name in names:
        if name in builtin:
            out.append(builtin[name])
        elif ":" in name:
            out.append(load_user_task(name))
        else:
            raise KeyError(f"unknown real-tier task {name!r}; built-in: "
                           f"{', '.join(BUILTIN_NAMES)}, or FILE.py:FUNCTION for your own")
    return out


class RealTier:
    """Scores rules on the real-data tier; build once per worker (tasks, cached Adam runs)."""

    def __init__(self, config: RealTierConfig = RealTierConfig(),
                 cache_dir: str | Path | None = None, tasks: Sequence[RealTask] | None = None):
        """``tasks`` replaces the configured ones (measurements on other tasks, such as the
        benchmark's in ``scripts/fidelity.py``)."""
        if config.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")
        self.config = config
        self.tasks = list(tasks) if tasks is not None else resolve_tasks(config.tasks)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._adam = compile_rule(KNOWN_RULES["adam"].rule)
        self._baselines: dict[str, TaskResult] = {}

    def baseline(self, task: RealTask) -> TaskResult:
        """Tuned Adam on ``task``, from the disk cache when it was computed before."""
        if task.name in self._baselines:
            return self._baselines[task.name]
        key = {"task": task.config(), "tier": self.config.to_dict(), "rule":
               KNOWN_RULES["adam"].rule, "version": TIER_VERSION, "torch": torch.__version__}
        path = keyed_path(self.cache_dir / "real-baselines", task.name, key) \
            if self.cache_dir else None
        cached = read_keyed(path, key, "result", TaskResult) if path else None
        if cached is None:
            cached = self._search(task, self._adam)
            if path is not None:
                write_keyed(path, key, "result", asdict(cached))
        self._baselines[task.name] = cached
        return cached

    def _search(self, task: RealTask, program: Program) -> TaskResult:
        return search_task(task, program, self.config.seeds, self.config.schedule,
                           self.config.search)

    def evaluate_one(self, rule: str | Program) -> Result:
        """One rule's tier score (never raises for a bad rule: a failure is a result)."""
        started = time.perf_counter()
        try:
            program = rule if isinstance(rule, Program) else compile_rule(resolve(rule))
        except RuleSyntaxError as err:
            return Result(rule=str(rule), score=suite_score([]), tier="real",
                          reason=f"invalid rule: {err}")
        scores = []
        for task in self.tasks:
            ref = self.baseline(task)
            try:
                mine = self._search(task, program)
            except (RuntimeError, ValueError, ArithmeticError) as err:
                mine = TaskResult(task.name, None, None, ref.loss0,
                                  reason=f"error: {type(err).__name__}: {err}".splitlines()[0])
            scores.append(TaskScore(task.name, log_ratio(mine.test_loss, ref.test_loss,
                                                         mine.loss0),
                                    mine.test_loss, ref.test_loss, mine.loss0, mine.best_lr,
                                    mine.reason))
        return Result(rule=program.text, score=suite_score(t.log_ratio for t in scores),
                      tasks=scores, tier="real", suite="real",
                      seconds=time.perf_counter() - started)

    def evaluate_many(self, rules: Sequence[str | Program]) -> list[Result]:
        return [self.evaluate_one(r) for r in rules]


__all__ = ["EnsembleRun", "RealTier", "RealTierConfig", "TaskResult", "resolve_tasks",
           "search_task", "train_ensemble"]
