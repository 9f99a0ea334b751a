"""Batch evaluation of rules on a task suite: hurdle, equivalence cache, lr grid, scores.

The evolution engine builds one :class:`Evaluator` per worker (task setup, baselines and the
compiled loops are paid once) and calls :meth:`Evaluator.evaluate_many` with rule texts, trees
or Programs. Each rule goes through:

1. compile (a malformed rule becomes a failed :class:`Result`, it never raises);
2. the equivalence cache (:mod:`fitness.equivalence`): a rule whose fingerprint was evaluated
   before gets that result, with its own text;
3. the hurdle: the ``hurdle`` suite's short quadratic at every lr; a rule below
   ``hurdle_threshold`` there scores FLOOR on every task without running the suite;
4. the suite: each task at each lr of the grid, the best final loss scored against tuned Adam
   (:mod:`fitness.baselines`), then the robust aggregate.

Results are plain dataclasses (``to_dict()`` gives JSON-ready dicts) and a pure function of
(rule, suite, seed, lrs): the compiled loops are deterministic and every random draw comes from
``numpy.random.default_rng`` seeded by hashlib. With ``cache=True`` a rule may receive the
result of an equivalent rule evaluated earlier in the same Evaluator; an engine that needs
results independent of evaluation order deduplicates by :meth:`Evaluator.fingerprint` itself
and passes ``cache=False``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fitness import baselines as bl
from fitness.equivalence import fingerprint as program_fingerprint
from fitness.tasks import TaskInstance, build, get_suite
from primitives.grammar import Node, RuleSyntaxError
from primitives.program import Program, compile_rule
from primitives.rules import resolve

DEFAULT_LRS = tuple(float(v) for v in np.logspace(-4.0, 0.0, 5))
HURDLE_THRESHOLD = 0.05

RuleLike = str | Node | Program


@dataclass
class TaskScore:
    task: str
    score: float
    best_lr: float | None
    loss: float | None  # best final loss over the grid (None: every lr failed)
    loss0: float
    adam_loss: float
    reason: str | None = None


@dataclass
class Result:
    """One rule's evaluation. ``hurdle`` is "passed", "rejected" or "off"."""

    rule: str
    aggregate: float
    tasks: list[TaskScore]
    reason: str | None = None
    hurdle: str = "off"
    hurdle_score: float | None = None
    fingerprint: str | None = None
    cached: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counters:
    """What an Evaluator did; ``runs`` count (task, lr) runs of T steps."""

    candidates: int = 0  # rules passed in
    evaluations: int = 0  # full-suite evaluations run
    cache_hits: int = 0
    hurdle_rejections: int = 0
    invalid: int = 0
    errors: int = 0
    runs: int = 0  # (task, lr) runs on the suite
    hurdle_runs: int = 0  # (task, lr) runs of the hurdle
    runs_saved_by_hurdle: int = 0
    runs_saved_by_cache: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Prepared:
    instance: TaskInstance
    adam: bl.BestRun


@dataclass
class Evaluator:
    """Scores rules on a suite; build once per worker, then call :meth:`evaluate_many`."""

    suite: str = "search"
    seed: int = 0
    lrs: Sequence[float] = DEFAULT_LRS
    hurdle: bool = True
    hurdle_threshold: float = HURDLE_THRESHOLD
    cache: bool = True
    cache_dir: str | Path | None = None
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        _single_threaded_blas()
        specs = get_suite(self.suite)  # KeyError for an unknown suite, before any work
        self._lrs = np.asarray(self.lrs, dtype=np.float64)
        directory = Path(self.cache_dir) / "baselines" if self.cache_dir else None
        self.baselines = bl.BaselineStore(directory)
        self.tasks = [self._prepare(build(spec, self.seed)) for spec in specs]
        self._hurdle = self._prepare(build(get_suite("hurdle")[0], self.seed))
        self._cache: dict[str, Result] = {}

    def _prepare(self, instance: TaskInstance) -> _Prepared:
        return _Prepared(instance, self.baselines.get(instance, self._lrs)["adam"])

    # -- public API ---------------------------------------------------------------------------

    def fingerprint(self, rule: RuleLike) -> str:
        """Equivalence fingerprint of a rule (RuleSyntaxError for malformed text)."""
        return program_fingerprint(to_program(rule))

    def evaluate_many(self, rules: Iterable[RuleLike]) -> list[Result]:
        """Evaluate every rule, in order; never raises for a bad rule."""
        return [self.evaluate_one(rule) for rule in rules]

    def evaluate(self, rules: Iterable[RuleLike]) -> list[dict[str, Any]]:
        """:meth:`evaluate_many` as JSON-ready dicts (the engine's ``Evaluator`` protocol)."""
        return [r.to_dict() for r in self.evaluate_many(rules)]

    def evaluate_one(self, rule: RuleLike) -> Result:
        start = time.perf_counter()
        self.counters.candidates += 1
        text = rule.text if isinstance(rule, Program) else str(rule)
        try:
            program = to_program(rule)
        except (RuleSyntaxError, TypeError, ValueError) as err:
            self.counters.invalid += 1
            return self._failed(text, f"invalid rule: {err}", start)
        try:
            return self._evaluate_program(program, start)
        except Exception as err:  # noqa: BLE001 - invariant 4: a failure is a fitness, not a crash
            self.counters.errors += 1
            return self._failed(program.text, f"error: {type(err).__name__}: {err}", start)

    def score(self, rule: RuleLike) -> float:
        """The aggregate score of one rule."""
        return self.evaluate_one(rule).aggregate

    def describe(self) -> list[dict[str, Any]]:
        """The suite's tasks with their sizes, steps and options."""
        return [p.instance.describe() for p in self.tasks]

    # -- internals ----------------------------------------------------------------------------

    def _evaluate_program(self, program: Program, start: float) -> Result:
        n_runs = len(self.tasks) * len(self._lrs)
        key = None
        if self.cache:
            key = program_fingerprint(program)
            hit = self._cache.get(key)
            if hit is not None:
                self.counters.cache_hits += 1
                self.counters.runs_saved_by_cache += n_runs
                return replace(hit, rule=program.text, cached=True,
                               seconds=time.perf_counter() - start)
        hurdle_state, hurdle_score = "off", None
        if self.hurdle:
            hurdle_score, hurdle_reason = self._score_task(self._hurdle, program)
            self.counters.hurdle_runs += len(self._lrs)
            if hurdle_score < self.hurdle_threshold:
                self.counters.hurdle_rejections += 1
                self.counters.runs_saved_by_hurdle += n_runs
                why = hurdle_reason or f"hurdle score {hurdle_score:.3g}"
                result = self._floor(program.text, f"rejected at the hurdle: {why}")
                result.hurdle, result.hurdle_score, result.fingerprint = (
                    "rejected", hurdle_score, key)
                return self._store(key, result, start)
            hurdle_state = "passed"
        tasks = [self._task_score(p, program) for p in self.tasks]
        self.counters.evaluations += 1
        self.counters.runs += n_runs
        result = Result(
            rule=program.text,
            aggregate=bl.aggregate([t.score for t in tasks]),
            tasks=tasks,
            hurdle=hurdle_state,
            hurdle_score=hurdle_score,
            fingerprint=key,
        )
        return self._store(key, result, start)

    def _task_score(self, prepared: _Prepared, program: Program) -> TaskScore:
        inst = prepared.instance
        run = bl.best_run(inst.run(program, self._lrs), self._lrs)
        score = bl.task_score(run.best_loss, run.loss0, prepared.adam.best_loss, inst.loss_min)
        return TaskScore(inst.name, score, run.best_lr, run.best_loss, run.loss0,
                         prepared.adam.best_loss, run.reason)

    def _score_task(self, prepared: _Prepared, program: Program) -> tuple[float, str | None]:
        ts = self._task_score(prepared, program)
        return ts.score, ts.reason

    def _floor(self, text: str, reason: str) -> Result:
        tasks = [TaskScore(p.instance.name, bl.FLOOR, None, None, p.adam.loss0,
                           p.adam.best_loss, reason) for p in self.tasks]
        return Result(rule=text, aggregate=bl.FLOOR, tasks=tasks, reason=reason)

    def _failed(self, text: str, reason: str, start: float) -> Result:
        result = self._floor(text, reason)
        result.seconds = time.perf_counter() - start
        return result

    def _store(self, key: str | None, result: Result, start: float) -> Result:
        result.seconds = time.perf_counter() - start
        if key is not None:
            self._cache[key] = result
        return result


def to_program(rule: RuleLike) -> Program:
    """A Program from a known name, rule text, tree or Program (RuleSyntaxError if malformed)."""
    if isinstance(rule, Program):
        return rule
    if isinstance(rule, str):
        return compile_rule(resolve(rule))
    return compile_rule(rule)


def _single_threaded_blas() -> None:
    """One BLAS thread: the MLP's matrices are tiny, and workers are the unit of parallelism."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, BLAS decides
        pass


_EVALUATORS: dict[tuple[str, int, bool], Evaluator] = {}


def score_rule(rule: RuleLike, suite: str = "search", seed: int = 0, quick: bool = False) -> float:
    """Aggregate score of one rule (1.0 = tuned Adam); evaluators are reused per suite/seed.

    ``quick`` uses three learning rates (1e-3, 1e-2, 1e-1) instead of five.
    """
    key = (suite, int(seed), bool(quick))
    if key not in _EVALUATORS:
        lrs = (1e-3, 1e-2, 1e-1) if quick else DEFAULT_LRS
        _EVALUATORS[key] = Evaluator(suite=suite, seed=seed, lrs=lrs, hurdle=False)
    return _EVALUATORS[key].score(rule)


__all__ = [
    "Counters",
    "DEFAULT_LRS",
    "Evaluator",
    "Result",
    "TaskScore",
    "score_rule",
    "to_program",
]
