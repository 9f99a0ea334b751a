"""`evolve benchmark`: every optimizer on the torch tasks over one learning-rate grid and seeds.

Every optimizer (torch baselines and exported rules alike) runs every learning rate of the same
log grid with the same seeds on each task of :mod:`fitness.training.torch_tasks`; the best rate is chosen
on validation loss and its test numbers are reported (:mod:`evolve.bench.report`). Rules also get their
score on the Numba proxy suite when that suite is importable (:func:`proxy_suite_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from evolve.bench.optimizers import BASELINE_RULES, OptimizerSpec, log_grid
from evolve.bench.report import pick_winner, summarize
from evolve.errors import UserError
from fitness.training.torch_tasks import (
    TASK_NAMES,
    RunResult,
    make_tasks,
    torch_threads,
    train_task,
)
from primitives.rules import KNOWN_RULES

# 1e-4 ... 1 in half decades: wide enough for SGD (large rates) and Lion (small ones).
DEFAULT_LRS = log_grid(1e-4, 1.0, per_decade=2)
QUICK_LRS = log_grid(1e-4, 1.0, per_decade=1)

Progress = Callable[[str], None]


@dataclass
class BenchmarkConfig:
    """What a benchmark runs. ``quick`` shrinks step budgets and the grid for smoke tests."""

    tasks: Sequence[str] = TASK_NAMES
    seeds: int = 3
    lrs: Sequence[float] = field(default_factory=lambda: list(DEFAULT_LRS))
    quick: bool = False
    weight_decay: float | None = None
    proxy: bool = True
    threads: int | None = 1  # torch intra-op threads while training (None: leave as is)


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
    with torch_threads(config.threads):
        return _run_benchmark(specs, config, progress)


def _run_benchmark(specs: Sequence[OptimizerSpec], config: BenchmarkConfig,
                   progress: Progress | None) -> dict:
    tasks = make_tasks(quick=config.quick)
    names = check_tasks(config.tasks)
    results: dict = {
        "kind": "benchmark",
        "title": "Benchmark: evolved rules against torch optimizers",
        "config": {"tasks": ",".join(names), "seeds": config.seeds,
                   "lrs": ",".join(f"{lr:g}" for lr in config.lrs), "quick": config.quick,
                   "weight_decay": "default" if config.weight_decay is None
                   else config.weight_decay, "torch": torch.__version__},
        "optimizers": [s.to_json() for s in specs],
        "tasks": {},
        "proxy": None,
    }
    for name in names:
        task = tasks[name]
        per_opt: dict[str, dict] = {}
        for spec in specs:
            def make(params, lr, total_steps, spec=spec):
                return spec.make(params, lr, config.weight_decay, total_steps)

            sweep: dict[float, list[RunResult]] = {}
            for lr in config.lrs:
                sweep[lr] = [train_task(task, make, lr, seed) for seed in range(config.seeds)]
            per_opt[spec.label] = summarize(sweep)
            if progress:
                s = per_opt[spec.label]
                shown = "diverged" if s["diverged"] else (
                    f"acc {s['test_acc_mean']:.4f} loss {s['test_loss_mean']:.4f} "
                    f"at lr {s['best_lr']:.3g}")
                progress(f"{name:14s} {spec.label:20s} {shown}")
        results["tasks"][name] = {"description": task.description, "steps": task.steps,
                                  "lrs": list(config.lrs), "results": per_opt,
                                  "winner": pick_winner(per_opt)}
    if config.proxy:
        results["proxy"] = proxy_suite_scores(specs, quick=config.quick)
    return results


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
    lrs = "3 learning rates" if quick else "5 learning rates"
    return {"note": f"fitness.evaluate.score_rule, {lrs}; torch baselines scored as their "
                    "known rule (adamw as adam).", "scores": scores}


__all__ = ["BenchmarkConfig", "DEFAULT_LRS", "QUICK_LRS", "check_tasks", "proxy_suite_scores",
           "run_benchmark", "spec_rule_text"]
