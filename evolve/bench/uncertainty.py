"""How much of a benchmark's verdict is its seeds': its figures again on other draws of seeds.

`evolve benchmark` measures every optimizer on a few seeds (3 by default). On another set of
seeds the same optimizers get other figures: where a task's validation loss is flat over a
decade of rates, which rate the search picks is the seeds', and one seed's test loss at a fixed
rate varies too. This module re-derives the summary from the runs a benchmark already trained,
without training again. Every benchmark result keeps each seed's validation and test loss at
every rate tried (:func:`evolve.bench.report.summarize`), so the same figures can be computed on
any list of those seeds:

* :func:`ratios_on` gives every optimizer's ratio to the reference on a list of the run's seeds,
  each rate re-chosen on those seeds' mean validation loss among the rates the search tried (the
  run's own rule: on all its seeds, in order, it gives the run's own figures);
* :func:`resample` draws as many seeds as were run, with replacement (every draw when there are
  few, as with 3 seeds: 27 draws), the same seeds for every optimizer and task, so comparisons
  stay paired; it reports each optimizer's interval, how often it comes first and how often it
  is ahead of each other optimizer. With 3 seeds a bootstrap understates the spread (its draws
  repeat seeds): the measured spread is :func:`subsets`' business;
* :func:`subsets` takes a run with many seeds and computes the figures of every subset of k of
  them: the spread a k-seed benchmark has, measured;
* :func:`rate_choice_cost` measures the instrument itself, blind to which optimizer wins: what
  choosing each rate on the validation split costs on the test split.

A draw re-chooses rates only among those the run's own search tried (the search followed the
mean of all its seeds), so a draw cannot reach a rate the run never trained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np

from evolve.errors import UserError
from fitness.score import suite_score

EXACT_LIMIT = 5000  # enumerate every draw with replacement when there are at most this many


def run_seeds(results: dict) -> list[int]:
    """The seeds every cell of ``results`` ran, in order; a usage error for results written
    before per-seed losses were kept, or cells that ran different seeds."""
    seeds = None
    for name, task in results.get("tasks", {}).items():
        for label, summary in task["results"].items():
            for row in summary.get("sweep", []):
                if "val_losses" not in row:
                    raise UserError(
                        "these results keep no per-seed losses (written by an older evolve "
                        "benchmark); run the benchmark again to resample its seeds")
                if seeds is None:
                    seeds = list(row["seeds"])
                elif list(row["seeds"]) != seeds:
                    raise UserError(f"{name}/{label} ran seeds {row['seeds']}, other cells "
                                    f"{seeds}; resampling needs one set of seeds for all")
    if not seeds:
        raise UserError("these results hold no runs to resample")
    return seeds


def chosen_row(sweep: Sequence[dict], picks: Sequence[int]) -> dict | None:
    """The row of ``sweep`` (one a rate, with per-seed ``val_losses``) whose mean validation
    loss over the seeds at positions ``picks`` is lowest, the first of equals; a row where one
    of them diverged does not count. None when every row has one."""
    best_row, best_val = None, math.inf
    for row in sweep:
        vals = [row["val_losses"][i] for i in picks]
        if any(v is None for v in vals):
            continue
        val = sum(vals) / len(vals)
        if val < best_val:
            best_row, best_val = row, val
    return best_row


def _cell_test_loss(summary: dict, picks: Sequence[int]) -> float | None:
    """Mean test loss over the seeds at positions ``picks`` at the rate with the lowest mean
    validation loss over them (:func:`chosen_row`); None when every rate diverged on one of
    them."""
    best_row = chosen_row(summary["sweep"], picks)
    if best_row is None:
        return None
    tests = [best_row["test_losses"][i] for i in picks]
    tests = [t for t in tests if t is not None]
    return sum(tests) / len(tests) if tests else None


def ratios_on(results: dict, picks: Sequence[int], reference: str = "adam"
              ) -> dict[str, float]:
    """Each optimizer's geometric-mean test-loss ratio to ``reference`` (each task's ratio
    clipped to [0.5, 2], a diverged task counted as 4x worse, as in ``versus_reference``) on the
    seeds at positions ``picks`` (repeats allowed)."""
    # the benchmark's own per-task rule; imported here as evolve.bench.benchmark imports this
    from evolve.bench.benchmark import task_log_ratios

    labels = [o["label"] for o in results["optimizers"]]
    drawn = {"tasks": {name: {"results": {label: {"test_loss_mean": _cell_test_loss(
        task["results"][label], picks)} for label in labels}}
        for name, task in results["tasks"].items()}}
    return {label: 1.0 / suite_score(task_log_ratios(drawn, label, reference).values())
            for label in labels}


def _check_reference(results: dict, reference: str) -> list[str]:
    labels = [o["label"] for o in results.get("optimizers", [])]
    if reference not in labels:
        raise UserError(f"the reference {reference!r} is not among the optimizers "
                        f"({', '.join(labels)})")
    return labels


def distribution(results: dict, draws: Iterable[Sequence[int]], reference: str = "adam"
                 ) -> dict[str, np.ndarray]:
    """Each optimizer's ratio to ``reference`` on every draw (a list of seed positions)."""
    labels = _check_reference(results, reference)
    rows = [ratios_on(results, picks, reference) for picks in draws]
    return {label: np.array([row[label] for row in rows]) for label in labels}


def describe(dist: dict[str, np.ndarray], level: float = 0.9) -> dict:
    """Interval, median, share of draws in first place and pairwise shares ahead (lower ratio;
    a tie counts half) of a :func:`distribution`."""
    labels = list(dist)
    table = np.vstack([dist[label] for label in labels])  # optimizers x draws
    lowest = table.min(axis=0)
    first = (table == lowest).astype(float)
    first /= first.sum(axis=0)  # a shared first place is shared
    tail = (1.0 - level) / 2 * 100
    out: dict = {"draws": int(table.shape[1]), "level": level, "optimizers": {}}
    for i, label in enumerate(labels):
        values = table[i]
        ahead = {other: float(np.mean((values < table[j]) + 0.5 * (values == table[j])))
                 for j, other in enumerate(labels) if j != i}
        out["optimizers"][label] = {
            "median": float(np.median(values)),
            "low": float(np.percentile(values, tail)),
            "high": float(np.percentile(values, 100 - tail)),
            "ln_std": float(np.std(np.log(values))),
            "first": float(first[i].mean()),
            "ahead": ahead,
        }
    return out


def resample(results: dict, reference: str = "adam", draws: int = 2000, seed: int = 0,
             level: float = 0.9) -> dict | None:
    """The bootstrap over the run's seeds (None with a single seed: nothing to resample). Every
    draw is enumerated when there are at most EXACT_LIMIT of them, else ``draws`` are drawn
    with ``seed``."""
    n = len(run_seeds(results))
    if n < 2:
        return None
    if n ** n <= EXACT_LIMIT:
        picks = list(itertools.product(range(n), repeat=n))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        picks = [tuple(int(i) for i in rng.integers(0, n, size=n)) for _ in range(draws)]
        exact = False
    out = describe(distribution(results, picks, reference), level)
    out.update(kind="bootstrap", seeds=n, exact=exact, reference=reference)
    return out


def subsets(results: dict, k: int, reference: str = "adam", level: float = 0.9) -> dict:
    """The figures on every subset of ``k`` of the run's seeds (in order): what a k-seed
    benchmark on other seeds would have said; ``ratios`` holds every optimizer's figure on
    each subset of ``subsets``."""
    n = len(run_seeds(results))
    if not 1 <= k < n:
        raise UserError(f"subsets of k seeds need 1 <= k < {n} (the seeds this run has)")
    picks = list(itertools.combinations(range(n), k))
    dist = distribution(results, picks, reference)
    out = describe(dist, level)
    out.update(kind="subsets", seeds=n, k=k, reference=reference,
               subsets=[list(p) for p in picks],
               ratios={label: [float(v) for v in values] for label, values in dist.items()})
    return out


def rate_choice_cost(results: dict, clip: float = 2.0) -> dict:
    """What choosing the rate on validation costs on test, for every task and optimizer: the
    mean test loss (over all the run's seeds) at the rate with the lowest mean validation loss,
    over the lowest mean test loss among the rates tried. 1.0 means validation chose the rate
    test would have; each cost is clipped to ``clip``, as the benchmark clips a task's ratio (a
    task whose losses reach zero would otherwise divide by it).

    A property of the tasks, their splits and the search, measured alike for every optimizer:
    a split too small to rank rates shows as costs well above 1 for the baselines as much as
    for the rules. Returns per task each optimizer's cost and their geometric mean and maximum,
    and the geometric mean over every cell."""
    picks = range(len(run_seeds(results)))
    tasks, every = {}, []
    for name, task in results["tasks"].items():
        costs = {}
        for label, summary in task["results"].items():
            chosen = _cell_test_loss(summary, picks)
            complete = [sum(row["test_losses"]) / len(row["test_losses"])
                        for row in summary["sweep"]
                        if row["test_losses"] and None not in row["test_losses"]]
            if chosen is None or not complete:
                continue
            best = min(complete)
            costs[label] = 1.0 if chosen <= best else min(clip, chosen / best if best > 0
                                                            else clip)
        if costs:
            logs = [math.log(c) for c in costs.values()]
            every += logs
            tasks[name] = {"optimizers": costs, "geomean": math.exp(sum(logs) / len(logs)),
                           "max": max(costs.values())}
    return {"clip": clip, "tasks": tasks,
            "geomean": math.exp(sum(every) / len(every)) if every else None}


__all__ = ["chosen_row", "describe", "distribution", "rate_choice_cost", "ratios_on", "resample",
           "run_seeds", "subsets"]
