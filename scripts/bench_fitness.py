"""Benchmark of proxy-task fitness: Numba against torch eager, caches, hurdles, process scaling.

Prints side by side, in one run:

* candidate evaluations / s / core on a proxy suite (``--suite``, default the search suite:
  every task, the lr search) for the
  Numba path and for the same runs in torch eager with autograd gradients
  (:mod:`scripts.torch_proxy`, the rule as ``EvolvedOptimizer``), and their ratio;
* runs / s / core of a quadratic at P=1000, T=200 (one run = one rule at one lr; five lrs a
  call, as the search runs them);
* on a population of random rules: the equivalence-cache hit rate, the share of suite runs the
  hurdle avoided and the wall-clock saved by it, and any crashes (there must be none);
* throughput with 2 spawned worker processes over 1 (numba cache warmed first).

Goals: >= 20x torch eager, >= 5,000 quadratic runs / s / core, 2 processes >= 1.8x one.
Usage: ``python scripts/bench_fitness.py [--quick] [--json] [--population N] [--suite S]``. Timings depend on
the machine and its load; ratios are measured in the same run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "build" / "numba-cache"))

import click  # noqa: E402
import numpy as np  # noqa: E402

from fitness.evaluate import Evaluator  # noqa: E402
from fitness.tasks import TaskSpec, build  # noqa: E402
from primitives.program import compile_rule  # noqa: E402
from primitives.random_rules import random_population  # noqa: E402
from primitives.rules import KNOWN_RULES  # noqa: E402

KNOWN = ["adam", "sgd", "momentum", "lion", "signsgd", "rmsprop"]


def _random_rules(n: int, seed: int) -> list[str]:
    return [str(t) for t in random_population(np.random.default_rng(seed), n, 1, 5)]


def numba_suite_rate(ev: Evaluator, rules: list[str]) -> float:
    ev.evaluate_many(rules[:2])  # warm
    start = time.perf_counter()
    ev.evaluate_many(rules)
    return len(rules) / (time.perf_counter() - start)


def torch_suite_rate(ev: Evaluator, rules: list[str]) -> float:
    """The same runs in torch eager: each task at the learning rates the Numba search tried."""
    import torch

    from fitness.tuning import tune
    from scripts.torch_proxy import run_torch

    torch.set_num_threads(1)
    plans = []
    for rule in rules:
        text = KNOWN_RULES[rule].rule if rule in KNOWN_RULES else rule
        program = compile_rule(text)
        for prepared in ev.tasks:
            run = tune(prepared.instance, program, ev.lr_search, ev.schedule)
            plans.append((prepared.instance, text, np.array([lr for lr, _ in run.losses])))
    start = time.perf_counter()
    for inst, text, lrs in plans:
        run_torch(inst, text, lrs, ev.schedule)
    return len(rules) / (time.perf_counter() - start)


def quadratic_rate(rules: list[str], repeats: int) -> dict[str, float]:
    """Runs (one rule, one lr, T steps) per second, five lrs per call as the search runs them."""
    spec = TaskSpec("quad_bench", "quadratic", 200, {"dim": 1000, "cond": (1e2, 1e4)})
    inst = build(spec, 0)
    lrs = np.logspace(-4, 0, 5)
    rates = {}
    for rule in rules:
        program = compile_rule(KNOWN_RULES[rule].rule if rule in KNOWN_RULES else rule)
        inst.run(program, lrs)
        start = time.perf_counter()
        for _ in range(repeats):
            inst.run(program, lrs)
        rates[rule] = repeats * len(lrs) / (time.perf_counter() - start)
    return rates


def population_figures(rules: list[str], suite: str) -> dict[str, float]:
    with_hurdle = Evaluator(suite=suite, hurdle=True, cache=True)
    start = time.perf_counter()
    results = with_hurdle.evaluate_many(rules)
    t_hurdle = time.perf_counter() - start
    c = with_hurdle.counters
    without = Evaluator(suite=suite, hurdle=False, cache=True)
    start = time.perf_counter()
    without.evaluate_many(rules)
    t_plain = time.perf_counter() - start
    finite = all(np.isfinite(r.score) for r in results)
    return {
        "population": len(rules),
        "cache_hit_rate": c.cache_hits / max(c.candidates, 1),
        "hurdle_rejection_rate": c.hurdle_rejections / max(c.candidates - c.cache_hits, 1),
        "hurdle_saving": c.runs_saved_by_hurdle / max(c.runs + c.runs_saved_by_hurdle
                                                      + c.hurdle_runs, 1),
        "hurdle_time_saving": 1.0 - t_hurdle / t_plain,
        "population_seconds": t_hurdle,
        "crashes": c.errors + (0 if finite else 1),
    }


_WORKER: Evaluator | None = None


def _init_worker(suite: str) -> None:
    global _WORKER
    _WORKER = Evaluator(suite=suite, hurdle=False, cache=False)
    _WORKER.evaluate_many(["adam"])  # load every compiled loop before timing


def _work(rules: list[str]) -> int:
    assert _WORKER is not None
    return len(_WORKER.evaluate_many(rules))


def process_rate(n_procs: int, rules: list[str], suite: str) -> float:
    chunks = [rules[i::n_procs * 4] for i in range(n_procs * 4)]
    with mp.get_context("spawn").Pool(n_procs, initializer=_init_worker,
                                      initargs=(suite,)) as pool:
        pool.map(_work, [["sgd"]] * n_procs)  # wait until every worker is up
        start = time.perf_counter()
        done = sum(pool.map(_work, chunks, chunksize=1))
        return done / (time.perf_counter() - start)


@click.command()
@click.option("--quick", is_flag=True, help="small smoke run (seconds, not minutes)")
@click.option("--json", "as_json", is_flag=True, help="print the figures as one JSON line")
@click.option("--population", default=1000, show_default=True, help="random rules for caches")
@click.option("--suite", default="search", show_default=True,
              help="proxy suite timed (search1: one draw of each search task)")
def main(quick: bool, as_json: bool, population: int, suite: str) -> None:
    from fitness.interpreter import warm_up

    warm_up()
    if quick:
        population = min(population, 100)
    ev = Evaluator(suite=suite, hurdle=False, cache=False)
    suite_rules = KNOWN + _random_rules(6 if quick else 34, 1)
    numba = numba_suite_rate(ev, suite_rules)
    torch_rules = ["adam", "sgd"] if quick else ["adam", "sgd", "lion", "signsgd"]
    torch_rate = torch_suite_rate(ev, torch_rules)
    quad_rules = ["sgd", "signsgd", "lion", "adam"]
    quad = quadratic_rate(quad_rules, 3 if quick else 30)
    # a typical candidate: random rules that pass the hurdle are small trees like these
    pop = population_figures(_random_rules(population, 2), suite)
    # enough chunks that one slow rule does not leave a worker idle at the end
    scale_rules = suite_rules * (1 if quick else 4)
    one = process_rate(1, scale_rules, suite)
    two = process_rate(2, scale_rules, suite)

    figures = {
        "numba_suite_evals_per_s_core": numba,
        "torch_suite_evals_per_s_core": torch_rate,
        "speedup_vs_torch": numba / torch_rate,
        "quadratic_evals_per_s_core": float(np.mean(list(quad.values()))),
        "quadratic_evals_per_s_core_by_rule": quad,
        **pop,
        "one_process_evals_per_s": one,
        "two_process_evals_per_s": two,
        "two_process_scaling": two / one,
        "suite": suite,
        "suite_tasks": len(ev.tasks),
        "lr_search": ev.lr_search.to_dict(),
        "schedule": ev.schedule,
        "cpus": os.cpu_count(),
        "quick": quick,
    }
    if as_json:
        click.echo(json.dumps(figures))
        return
    click.echo(f"{suite} suite: {len(ev.tasks)} tasks, lr search from "
               f"{len(ev.lr_search.coarse())} rates a task, {ev.schedule} schedule")
    click.echo(f"{'':34}{'numba':>12}{'torch eager':>14}{'ratio':>9}")
    click.echo(f"{'suite evaluations / s / core':34}{numba:12.1f}{torch_rate:14.2f}"
               f"{numba / torch_rate:8.0f}x   (goal >= 20x)")
    click.echo("quadratic P=1000 T=200, runs / s / core (goal >= 5,000):")
    for rule, rate in quad.items():
        click.echo(f"  {rule:<10}{rate:10.0f}")
    click.echo(f"random population of {pop['population']}: cache hit rate "
               f"{pop['cache_hit_rate']:.1%}, hurdle rejects {pop['hurdle_rejection_rate']:.1%} "
               f"of the rest, saving {pop['hurdle_saving']:.1%} of suite runs "
               f"({pop['hurdle_time_saving']:.1%} of wall time), crashes {pop['crashes']}")
    click.echo(f"processes: 1 -> {one:.1f} evals/s, 2 -> {two:.1f} evals/s, scaling "
               f"{two / one:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
