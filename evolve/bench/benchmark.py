"""`evolve benchmark`: every optimizer on the torch tasks with the same lr search, schedule and seeds.

Every optimizer (torch baselines and exported rules alike) gets the same treatment on each task
of :mod:`fitness.training.torch_tasks` (DESIGN invariant 9): the learning-rate search of
:mod:`fitness.lr_grid` (or one explicit ``--lrs`` grid for all), the same schedule (cosine decay
by default), the same seeds and minibatches. The rate is chosen on validation loss (mean over
seeds; a rate where any seed diverged does not count) and its test numbers are reported
(:mod:`evolve.bench.report`), with a summary against tuned Adam: the geometric mean over tasks
of each optimizer's test-loss ratio to Adam's (each task's ratio clipped to [0.5, 2] so that no
task decides alone; :func:`fitness.score.suite_score`). Rules also get their scores on the Numba
proxy suites (:func:`proxy_suite_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from evolve.bench.optimizers import BASELINE_RULES, OptimizerSpec
from evolve.bench.report import cpu_name, pick_winner, summarize
from evolve.bench.uncertainty import resample
from evolve.errors import UserError
from fitness import lr_grid
from fitness.score import log_ratio, suite_score
from fitness.training.torch_tasks import (
    SCHEDULES,
    TASK_NAMES,
    RunResult,
    make_tasks,
    torch_threads,
    train_task,
)
from primitives.rules import KNOWN_RULES

Progress = Callable[[str], None]


@dataclass
class BenchmarkConfig:
    """What a benchmark runs. ``lrs`` None means the lr search; ``quick`` shrinks step budgets
    and the search for smoke tests."""

    tasks: Sequence[str] = TASK_NAMES
    seeds: int = 3
    first_seed: int = 0  # seeds first_seed .. first_seed + seeds - 1 (another set: a repeat)
    lrs: Sequence[float] | None = None
    quick: bool = False
    weight_decay: float | None = None
    proxy: bool = True
    threads: int | None = 1  # torch intra-op threads while training (None: leave as is)
    schedule: str = "cosine"
    search: lr_grid.LrSearch = field(default_factory=lambda: lr_grid.DEFAULT)
    workers: int = 1  # processes, each training one (task, optimizer) pair at a time

    @property
    def lr_search(self) -> lr_grid.LrSearch:
        return lr_grid.QUICK if self.quick else self.search


def check_tasks(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in TASK_NAMES]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; choose from "
                        + ", ".join(TASK_NAMES))
    return list(names)


def run_benchmark(specs: Sequence[OptimizerSpec], config: BenchmarkConfig,
                  progress: Progress | None = None) -> dict:
    """Run the benchmark and return its results dict (see :mod:`evolve.bench.report`)."""
    if config.seeds < 1:
        raise UserError("--seeds must be at least 1")
    if config.first_seed < 0:
        raise UserError("--first-seed must be 0 or more")
    if config.schedule not in SCHEDULES:
        raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}")
    if config.workers < 1:
        raise UserError("--workers must be at least 1")
    with torch_threads(config.threads):
        return _run_benchmark(specs, config, progress)


def sweep_optimizer(task, make, config: BenchmarkConfig, schedule: str
                    ) -> dict[float, list[RunResult]]:
    """Every seed at each rate the search (or the explicit grid) asks for."""
    sweep: dict[float, list[RunResult]] = {}

    def evaluate(lrs: list[float]) -> list[float | None]:
        out = []
        for lr in lrs:
            runs = [train_task(task, make, lr, seed, schedule=schedule)
                    for seed in range(config.first_seed, config.first_seed + config.seeds)]
            sweep[lr] = runs
            ok = all(not r.diverged for r in runs)
            out.append(sum(r.val_loss for r in runs) / len(runs) if ok else None)
        return out

    if config.lrs:
        evaluate(list(config.lrs))
    else:
        lr_grid.search(evaluate, config.lr_search)
    return dict(sorted(sweep.items()))


def _run_benchmark(specs: Sequence[OptimizerSpec], config: BenchmarkConfig,
                   progress: Progress | None) -> dict:
    tasks = make_tasks(quick=config.quick)
    names = check_tasks(config.tasks)
    search = "explicit grid " + ",".join(f"{lr:g}" for lr in config.lrs) if config.lrs else (
        "lr search " + ", ".join(f"{k}={v}" for k, v in config.lr_search.to_dict().items()))
    results: dict = {
        "kind": "benchmark",
        "title": "Benchmark: evolved rules against torch optimizers",
        "config": {"tasks": ",".join(names), "seeds": config.seeds,
                   "first_seed": config.first_seed, "lrs": search,
                   "schedule": config.schedule, "quick": config.quick,
                   "weight_decay": "default" if config.weight_decay is None
                   else config.weight_decay, "torch": torch.__version__,
                   "cpu": cpu_name()},
        "optimizers": [s.to_json() for s in specs],
        "tasks": {},
        "proxy": None,
    }
    cells = {}
    for name, label, summary in _cells([(n, spec, config) for n in names for spec in specs],
                                       config.workers):
        cells[name, label] = summary
        if progress:
            acc = (f"acc {summary['test_acc_mean']:.4f} "
                   if summary.get("test_acc_mean") is not None else "")
            shown = "diverged" if summary["diverged"] else (
                f"{acc}loss {summary['test_loss_mean']:.4f} at lr {summary['best_lr']:.3g}")
            progress(f"{name:18s} {label:20s} {shown}")
    for name in names:
        task = tasks[name]
        per_opt = {spec.label: cells[name, spec.label] for spec in specs}
        lrs = sorted({r["lr"] for s in per_opt.values() for r in s["sweep"]})
        results["tasks"][name] = {"description": task.description, "steps": task.steps,
                                  "lrs": lrs, "results": per_opt,
                                  "winner": pick_winner(per_opt)}
    results["summary"] = versus_reference(results)
    if results["summary"]:  # how much of it the seeds decide (None with one seed)
        results["uncertainty"] = resample(results)
    if config.proxy:
        results["proxy"] = proxy_suite_scores(specs, quick=config.quick)
    return results


def _cell(job: tuple[str, OptimizerSpec, BenchmarkConfig]) -> tuple[str, str, dict]:
    """One optimizer's lr search on one task, summarised (a worker's unit of work)."""
    name, spec, config = job
    task = make_tasks(quick=config.quick)[name]

    def make(params, lr, total_steps):
        return spec.make(params, lr, config.weight_decay, total_steps)

    with torch_threads(config.threads):
        sweep = sweep_optimizer(task, make, config, spec_schedule(spec, config.schedule))
    return name, spec.label, summarize(sweep)


def _cells(jobs: list, workers: int):
    """The cells in the order given (one process), or as they finish (a spawned pool: every
    cell is seeded by its own task and seeds, so the numbers do not depend on the workers)."""
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_cell, jobs)
        return
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(_cell, jobs)


def spec_schedule(spec: OptimizerSpec, schedule: str) -> str:
    """The schedule an optimizer runs under: the benchmark's, except for schedule-free ones,
    which run at a constant rate as their authors prescribe (their own warm-up included)."""
    return "constant" if getattr(spec, "schedule_free", False) else schedule


def task_log_ratios(results: dict, label: str, reference: str = "adam") -> dict[str, float]:
    """Per task: log2 of ``reference``'s test loss over ``label``'s, clipped to [-1, 1] (ratio
    [0.5, 2]); a diverged task counts as 4x worse. Positive: ``label`` is better."""
    out = {}
    for name, task in results["tasks"].items():
        mine = task["results"][label].get("test_loss_mean")
        ref = task["results"][reference].get("test_loss_mean")
        # test losses here are far from 0, so the gap's epsilon (relative to the third
        # argument) only keeps the logarithm defined
        out[name] = log_ratio(mine, ref, ref if ref is not None else 1.0)
    return out


def versus_reference(results: dict, reference: str = "adam") -> dict:
    """Per optimizer: geometric-mean test-loss ratio against ``reference`` over the tasks (each
    task's ratio clipped to [0.5, 2], a diverged task counted as 4x worse), and the tasks where
    it is better. Empty when the reference is not among the optimizers."""
    labels = [o["label"] for o in results.get("optimizers", [])]
    if reference not in labels:
        return {}
    out = {"reference": reference, "optimizers": {}}
    for label in labels:
        ratios = list(task_log_ratios(results, label, reference).values())
        better = sum(value > 0 for value in ratios)
        score = suite_score(ratios)
        out["optimizers"][label] = {"loss_ratio": 1.0 / score, "score": score,
                                    "tasks_better": better, "tasks": len(ratios),
                                    "diverged_tasks": sum(
                                        t["results"][label]["diverged"]
                                        for t in results["tasks"].values())}
    return out


def spec_rule_text(spec: OptimizerSpec) -> str | None:
    """The rule a spec corresponds to on the proxy suite (baselines via their known rule)."""
    if spec.rule is not None:
        return spec.rule
    known = BASELINE_RULES.get(spec.label)
    return KNOWN_RULES[known].rule if known else None


def proxy_suite_scores(specs: Sequence[OptimizerSpec], quick: bool = False) -> dict:
    """Scores on the Numba proxy suites ``search`` and ``heldout`` (1.0 = tuned Adam).

    Torch baselines are scored through the known rule they correspond to (adamw as adam: the
    proxy tasks have no weight decay). If :mod:`fitness.evaluate` is missing the report says so.
    """
    try:
        from fitness.evaluate import score_rule
    except ImportError as err:
        return {"note": f"Numba proxy suite not available ({err}); torch tasks only.",
                "scores": {}}
    scores = {}
    for spec in specs:
        rule = spec_rule_text(spec)
        if rule is None:
            continue
        scores[spec.label] = {"rule": rule,
                              "score": score_rule(rule, suite="search", quick=quick),
                              "heldout": score_rule(rule, suite="heldout", quick=quick)}
    lrs = "the quick lr search" if quick else "the lr search"
    return {"note": f"fitness.evaluate.score_rule, {lrs}; torch baselines scored as their "
                    "known rule (adamw as adam).", "scores": scores}


__all__ = ["BenchmarkConfig", "check_tasks", "proxy_suite_scores", "run_benchmark",
           "spec_rule_text", "spec_schedule", "sweep_optimizer", "versus_reference"]
