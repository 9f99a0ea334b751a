"""Batch evaluation of rules on a task suite: hurdle, equivalence cache, lr search, scores.

The evolution engine builds one :class:`Evaluator` per worker (task setup, baselines and the
compiled loops are paid once) and calls :meth:`Evaluator.evaluate_many` with rule texts, trees
or Programs; it gets one :class:`fitness.score.Result` per rule. Each rule goes through:

1. compile (a malformed rule becomes a failed Result, it never raises);
2. the equivalence cache (:mod:`fitness.equivalence`): a rule whose fingerprint was evaluated
   before gets that result, with its own text;
3. the hurdle: the ``hurdle`` suite's short quadratic, with the same lr search; a rule below
   the hurdle threshold (:class:`Thresholds`; at least ``hurdle_threshold``) of tuned Adam's
   progress there (:func:`fitness.score.progress`) gets FLOOR without running the suite;
4. the suite: on each task the lr search (:func:`fitness.tuning.tune`), the best final loss
   against tuned Adam's (:mod:`fitness.baselines`) as a clipped log-ratio (FAIL where no rate
   gave a finite run or any progress), and the suite score ``2 ** mean`` (:mod:`fitness.score`).
   With ``Thresholds.stop_below`` the suite stops as soon as the best score the rule can still
   reach (:func:`fitness.score.score_bound`) is below it; the Result says so
   (``stopped_below``) and its score is that bound, never a full score. With
   ``Thresholds.screen`` the screen's tasks run first (a cheap first stage, as AutoML-Zero's
   hurdles): a rule whose mean log-ratio on them is below it stops there (``screened_below``),
   scored as if the other tasks went as those did (never above the bound). A rule that runs
   the whole suite gets the same score whatever the thresholds and order.

Results are a pure function of (rule, suite, seed, lr search, schedule): the compiled loops are
deterministic and every random draw comes from ``numpy.random.default_rng`` seeded by
hashlib. With ``cache=True`` a rule may receive the result of an equivalent rule evaluated
earlier in the same Evaluator; an engine that needs results independent of evaluation order
deduplicates by :meth:`Evaluator.fingerprint` itself and passes ``cache=False``. A new seed
(new task instances, as a campaign redraws them) is a new Evaluator: building one costs the
tasks' setup (milliseconds) and tuned Adam's search once per seed (cached on disk).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from fitness import lr_grid
from fitness import schedule as lr_schedule
from fitness.baselines import BaselineStore
from fitness.equivalence import fingerprint as program_fingerprint
from fitness.score import (
    FAIL,
    REASON_NO_PROGRESS,
    Result,
    TaskScore,
    failed_result,
    log_ratio,
    progress,
    score_bound,
    suite_score,
)
from fitness.tasks import TaskInstance, build, get_suite
from fitness.tuning import TunedRun, tune
from primitives.grammar import Node, RuleSyntaxError
from primitives.program import Program, compile_rule
from primitives.rules import resolve

HURDLE_THRESHOLD = 0.05

RuleLike = str | Node | Program


@dataclass(frozen=True)
class Thresholds:
    """What a candidate must reach, set by the driver for each batch (a campaign derives them
    from its checkpointed population, so a resumed run passes the same ones)."""

    hurdle: float = HURDLE_THRESHOLD  # fraction of tuned Adam's progress on the hurdle task
    stop_below: float | None = None  # suite score: stop the suite once it cannot reach this
    screen: float | None = None  # mean log-ratio the screen's tasks must reach, or stop there
    screen_tasks: tuple[str, ...] = ()  # the screen: tasks of the suite, run first

    def reuses(self, result: Result) -> bool:
        """Whether a result evaluated under other thresholds may stand for one under these:
        its hurdle verdict would be the same (the hurdle run is deterministic), and a suite
        stopped early against X is reused only when these stop at X or higher."""
        if result.hurdle_score is not None:
            rejected = result.hurdle == "rejected"
            if rejected != (result.hurdle_score < self.hurdle):
                return False
            if rejected:
                return True  # rejected again before any task: nothing else to compare
        if self.screen is not None:
            # a screen verdict, like the hurdle's, is recomputed from the tasks that ran
            mean = screen_mean(result.tasks, self.screen_tasks)
            if mean is None or (mean < self.screen) != (result.screened_below is not None):
                return False
        elif result.screened_below is not None:
            return False  # these thresholds would run the whole suite
        if result.stopped_below is not None:
            return self.stop_below is not None and self.stop_below >= result.stopped_below
        return True


@dataclass
class Counters:
    """What an Evaluator did; ``runs`` count runs of a task's T steps at one lr."""

    candidates: int = 0  # rules passed in
    evaluations: int = 0  # full-suite evaluations run
    cache_hits: int = 0
    hurdle_rejections: int = 0
    invalid: int = 0
    errors: int = 0
    runs: int = 0  # runs on the suite
    hurdle_runs: int = 0  # runs of the hurdle
    runs_saved_by_hurdle: int = 0  # estimated: the suite's runs per evaluation so far
    runs_saved_by_cache: int = 0
    stopped_early: int = 0  # suites stopped once they could not reach the threshold
    runs_saved_by_stopping: int = 0  # estimated, as runs_saved_by_hurdle

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class _Prepared:
    instance: TaskInstance
    adam: TunedRun


@dataclass
class Evaluator:
    """Scores rules on a suite; build once per worker, then call :meth:`evaluate_many`."""

    suite: str = "search"
    seed: int = 0
    lr_search: lr_grid.LrSearch = lr_grid.DEFAULT
    schedule: str = lr_schedule.DEFAULT
    hurdle: bool = True
    hurdle_threshold: float = HURDLE_THRESHOLD
    cache: bool = True
    cache_dir: str | Path | None = None
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        _single_threaded_blas()
        specs = get_suite(self.suite)  # KeyError for an unknown suite, before any work
        lr_schedule.check(self.schedule)  # ValueError for an unknown schedule
        directory = Path(self.cache_dir) / "baselines" if self.cache_dir else None
        self.baselines = BaselineStore(directory)
        self.tasks = [self._prepare(build(spec, self.seed)) for spec in specs]
        self._hurdle = self._prepare(build(get_suite("hurdle")[0], self.seed))
        # results list the tasks in the suite's order whatever order they ran in
        self._order = cost_order([p.instance for p in self.tasks])
        self._cache: dict[str, Result] = {}

    def _prepare(self, instance: TaskInstance) -> _Prepared:
        return _Prepared(instance, self.baselines.get(instance, self.lr_search, self.schedule))

    # -- public API ---------------------------------------------------------------------------

    def fingerprint(self, rule: RuleLike) -> str:
        """Equivalence fingerprint of a rule (RuleSyntaxError for malformed text)."""
        return program_fingerprint(to_program(rule))

    def evaluate_many(self, rules: Iterable[RuleLike],
                      thresholds: Thresholds | None = None) -> list[Result]:
        """Evaluate every rule, in order; never raises for a bad rule."""
        return [self.evaluate_one(rule, thresholds) for rule in rules]

    def evaluate_one(self, rule: RuleLike, thresholds: Thresholds | None = None) -> Result:
        start = time.perf_counter()
        self.counters.candidates += 1
        text = rule.text if isinstance(rule, Program) else str(rule)
        try:
            program = to_program(rule)
        except (RuleSyntaxError, TypeError, ValueError) as err:
            self.counters.invalid += 1
            return self._failed(text, f"invalid rule: {err}", start)
        try:
            return self._evaluate_program(program, start, thresholds)
        except Exception as err:  # noqa: BLE001 - invariant 4: a failure is a fitness, not a crash
            self.counters.errors += 1
            return self._failed(program.text, f"error: {type(err).__name__}: {err}", start)

    def score(self, rule: RuleLike) -> float:
        """The suite score of one rule (1.0 = tuned Adam)."""
        return self.evaluate_one(rule).score

    def describe(self) -> list[dict[str, Any]]:
        """The suite's tasks with their sizes, steps and options."""
        return [p.instance.describe() for p in self.tasks]

    # -- internals ----------------------------------------------------------------------------

    def _evaluate_program(self, program: Program, start: float,
                          thresholds: Thresholds | None) -> Result:
        limits = thresholds or Thresholds()
        hurdle_threshold = max(self.hurdle_threshold, limits.hurdle)
        key = None
        if self.cache:
            key = program_fingerprint(program)
            hit = self._cache.get(key)
            if hit is not None and limits.reuses(hit):
                self.counters.cache_hits += 1
                self.counters.runs_saved_by_cache += self._runs_per_evaluation()
                return replace(hit, rule=program.text, cached=True,
                               seconds=time.perf_counter() - start)
        hurdle_state, hurdle_score = "off", None
        if self.hurdle:
            run = self._tune(self._hurdle, program)
            self.counters.hurdle_runs += run.runs
            adam = self._hurdle.adam
            hurdle_score = progress(run.best_loss, run.loss0, adam.best_loss,
                                    self._hurdle.instance.loss_min)
            if hurdle_score < hurdle_threshold:
                self.counters.hurdle_rejections += 1
                self.counters.runs_saved_by_hurdle += self._runs_per_evaluation()
                why = run.reason or f"{hurdle_score:.3g} of tuned Adam's progress"
                result = self._failed(program.text, f"rejected at the hurdle: {why}", start)
                result.hurdle, result.hurdle_score, result.fingerprint = (
                    "rejected", hurdle_score, key)
                return self._store(key, result, start)
            hurdle_state = "passed"
        done: dict[int, TaskScore] = {}
        screen = [i for i in self._order if self.tasks[i].instance.name in limits.screen_tasks]
        if len(screen) != len(limits.screen_tasks):
            screen = []  # a screen of tasks this suite lacks: the driver meant another suite
        for i in screen + [i for i in self._order if i not in screen]:
            done[i] = self._task_score(self.tasks[i], program)
            if len(done) == len(self.tasks):
                break
            ratios = [t.log_ratio for t in done.values()]
            stop = limits.stop_below
            bound = score_bound(ratios, len(self.tasks))
            if len(done) == len(screen) and limits.screen is not None:
                mean = screen_mean(done.values(), limits.screen_tasks)
                if mean is not None and mean < limits.screen:
                    why = (f"stopped by the screen after {len(done)} of {len(self.tasks)} "
                           f"tasks: mean log-ratio {mean:.4g} < {limits.screen:.4g}")
                    # the estimate (the other tasks going as these did) is never above the bound
                    estimate = min(2.0 ** mean, bound)
                    return self._stopped(program, done, estimate, why, start, hurdle_state,
                                         hurdle_score, key, screened_below=limits.screen)
            if stop is not None and bound < stop:
                why = (f"stopped early after {len(done)} of {len(self.tasks)} tasks: it "
                       f"can reach at most {bound:.4g} < {stop:.4g}")
                return self._stopped(program, done, bound, why, start, hurdle_state,
                                     hurdle_score, key, stopped_below=stop)
        self.counters.evaluations += 1
        tasks = [done[j] for j in sorted(done)]
        result = Result(rule=program.text, score=suite_score([t.log_ratio for t in tasks]),
                        tasks=tasks, suite=self.suite, seed=self.seed, hurdle=hurdle_state,
                        hurdle_score=hurdle_score, fingerprint=key)
        return self._store(key, result, start)

    def _stopped(self, program: Program, done: dict[int, TaskScore], score: float, why: str,
                 start: float, hurdle_state: str, hurdle_score: float | None, key: str | None,
                 **below: float) -> Result:
        """The Result of a suite that stopped before its last task (``below``: the threshold
        that stopped it, ``stopped_below`` or ``screened_below``)."""
        self.counters.stopped_early += 1
        self.counters.runs_saved_by_stopping += (
            self._runs_per_evaluation() * (len(self.tasks) - len(done)) // len(self.tasks))
        result = Result(rule=program.text, score=score, tasks=[done[j] for j in sorted(done)],
                        suite=self.suite, seed=self.seed, reason=why, hurdle=hurdle_state,
                        hurdle_score=hurdle_score, fingerprint=key, **below)
        return self._store(key, result, start)

    def _tune(self, prepared: _Prepared, program: Program) -> TunedRun:
        return tune(prepared.instance, program, self.lr_search, self.schedule)

    def _task_score(self, prepared: _Prepared, program: Program) -> TaskScore:
        inst, adam = prepared.instance, prepared.adam
        run = self._tune(prepared, program)
        self.counters.runs += run.runs
        # a rule that makes no progress at any rate has failed the task, whatever Adam reached
        made_progress = run.reason != REASON_NO_PROGRESS
        ratio = (log_ratio(run.best_loss, adam.best_loss, run.loss0, inst.loss_min)
                 if made_progress else FAIL)
        return TaskScore(inst.name, ratio, run.best_loss, adam.best_loss, run.loss0, run.best_lr,
                         run.reason)

    def _runs_per_evaluation(self) -> int:
        """What a full-suite evaluation has cost so far, in runs (for the saving counters)."""
        if self.counters.evaluations:
            return round(self.counters.runs / self.counters.evaluations)
        return len(self.tasks) * len(self.lr_search.coarse())

    def _failed(self, text: str, reason: str, start: float) -> Result:
        result = failed_result(text, reason, [p.instance.name for p in self.tasks],
                               suite=self.suite, seed=self.seed)
        for task, p in zip(result.tasks, self.tasks):
            task.ref_loss, task.loss0 = p.adam.best_loss, p.adam.loss0
        result.seconds = time.perf_counter() - start
        return result

    def _store(self, key: str | None, result: Result, start: float) -> Result:
        result.seconds = time.perf_counter() - start
        if key is not None:
            self._cache[key] = result
        return result


def screen_mean(scores: Iterable[TaskScore], tasks: tuple[str, ...]) -> float | None:
    """The mean log-ratio of a result's task ``scores`` on the screen's ``tasks`` (None when
    one of them did not run: a fresh evaluation is needed to say whether the screen stops it)."""
    ran = {t.task: t.log_ratio for t in scores}  # a stopped suite lists the tasks that ran
    if not tasks or any(name not in ran for name in tasks):
        return None
    # summed in the screen's order, in the worker and in the driver alike: equal to the bit
    return sum(ran[name] for name in tasks) / len(tasks)


def cost_order(instances: list[TaskInstance]) -> list[int]:
    """Indices of ``instances``, cheapest first (parameters x steps; ties in suite order):
    the order a suite runs in, so that a suite stopped early has skipped the dearest."""
    return sorted(range(len(instances)),
                  key=lambda i: (instances[i].n_params * instances[i].steps, i))


@lru_cache(maxsize=32)
def screen_tasks(suite: str, n: int) -> tuple[str, ...]:
    """The names of the ``n`` cheapest tasks of a suite: the screen a campaign runs first
    (sizes do not depend on the seed, so any instance tells); none when they would be the whole
    suite (a screen must leave a task to skip)."""
    instances = [build(spec, 0) for spec in get_suite(suite)]
    if n >= len(instances):
        return ()
    return tuple(instances[i].name for i in cost_order(instances)[:n])


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
    """Suite score of one rule (1.0 = tuned Adam); evaluators are reused per suite/seed.

    ``quick`` uses :data:`fitness.lr_grid.QUICK` (three decades, no refinement) instead of the
    full search, for smoke runs.
    """
    key = (suite, int(seed), bool(quick))
    if key not in _EVALUATORS:
        search = lr_grid.QUICK if quick else lr_grid.DEFAULT
        _EVALUATORS[key] = Evaluator(suite=suite, seed=seed, lr_search=search, hurdle=False)
    return _EVALUATORS[key].score(rule)


__all__ = [
    "Counters",
    "Evaluator",
    "HURDLE_THRESHOLD",
    "Thresholds",
    "cost_order",
    "score_rule",
    "screen_mean",
    "screen_tasks",
    "to_program",
]
