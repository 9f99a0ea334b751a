"""How the cost of an evaluation grows: time against P, T and rule size, and per proxy task.

Printed side by side in one run, one thread, median thread CPU time:

* one run (one rule, one lr, T steps) on a quadratic, against P (T = 200, adam) and against T
  (P = 1,000, adam), as microseconds per run and nanoseconds per parameter-step;
* against rule size: rules of 0 to 64 opcodes (a chain of EMAs and elementwise operations with
  distinct constants, so no subexpression is shared), P = 1,000, T = 200;
* every task of the ``search`` and ``heldout`` suites: the lr search for adam (runs, ms), and
  the suite total: what one rule's suite evaluation costs;
* time per generation of a campaign (default suite, random start, proxy tier only: ``real_k``
  0) against the population (children = population / 2) and the executor: serial, and a
  process pool of 1 and 2 workers; the median over generations after the first (which pays
  for the pool's start and the random initial population), then over rounds run in rotated
  order. These are a random start's first generations; later ones, whose children pass the
  hurdle more often, cost more. Tier 2 adds its torch training on
  top (``real_k`` candidates a generation, seconds each).

Usage: ``python scripts/bench_cost.py [--json] [--quick]``. Timings on a shared machine are
noisy; compare rows of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fitness.evaluate import Evaluator  # noqa: E402
from fitness.interpreter import run_quadratic, warm_up  # noqa: E402
from fitness.tuning import tune  # noqa: E402
from primitives.program import compile_rule  # noqa: E402
from primitives.rules import KNOWN_RULES  # noqa: E402


def chain_rule(levels: int) -> str:
    """A rule of about 4 * levels opcodes with nothing shared: x <- ema(add(mul(x, c), g), b)."""
    rule = "g"
    for k in range(levels):
        c = 0.5 + 0.01 * k
        b = 0.9 - 0.001 * k
        rule = f"ema(add(mul(sign({rule}), {c}), g), {b})"
    return rule


def _median_us(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        samples.append(time.thread_time() - start)
    return statistics.median(samples) * 1e6


def run_cost(rule: str, p: int, steps: int, repeats: int) -> dict:
    program = compile_rule(rule)
    curvature = np.logspace(0, 2, p)
    w0 = np.random.default_rng(0).normal(size=p)
    lrs = np.array([1e-3])
    us = _median_us(lambda: run_quadratic(*program.arrays(), curvature, w0, lrs, steps), repeats)
    return {"P": p, "T": steps, "opcodes": program.n_instructions, "us_per_run": us,
            "ns_per_param_step": us * 1e3 / (p * steps)}


def suite_cost(suite: str, repeats: int) -> dict:
    ev = Evaluator(suite=suite, hurdle=False, cache=False)
    program = compile_rule(KNOWN_RULES["adam"].rule)
    rows = []
    for prepared in ev.tasks:
        inst = prepared.instance
        runs = tune(inst, program).runs
        ms = _median_us(lambda inst=inst: tune(inst, program), repeats) / 1e3
        rows.append({"task": inst.name, "family": inst.spec.family, "P": inst.n_params,
                     "T": inst.steps, "runs": runs, "ms": ms})
    return {"tasks": rows, "total_ms": sum(r["ms"] for r in rows)}


def generation_cost(population: int, executor: str, workers: int, generations: int) -> dict:
    """Seconds per generation of a proxy-only campaign (median after the first generation)."""
    from evolve.config import CampaignConfig
    from evolve.runner import run_campaign

    cfg = CampaignConfig(population=population, generations=generations, executor=executor,
                         workers=workers, real_k=0, checkpoint_every=5)
    with tempfile.TemporaryDirectory() as tmp:
        run_campaign(f"{tmp}/run", config=cfg)
        log = [json.loads(line) for line in open(f"{tmp}/run/log.jsonl")]
    later = [row["seconds"] for row in log[1:]]
    return {"population": population, "children": cfg.children_per_generation,
            "executor": executor, "workers": workers if executor != "serial" else 1,
            "s_per_generation": statistics.median(later),
            "candidates_per_s": cfg.children_per_generation / statistics.median(later)}


def generation_costs(populations: tuple[int, ...], generations: int, rounds: int) -> list[dict]:
    """:func:`generation_cost` for each population and executor, ``rounds`` times in rotated
    order (a campaign is a function of its config and seed, so every executor does the same
    work); each row is the median of its rounds."""
    setups = [(pop, executor, workers) for pop in populations
              for executor, workers in (("serial", 0), ("process", 1), ("process", 2))]
    seconds: dict[tuple, list[float]] = {s: [] for s in setups}
    rows: dict[tuple, dict] = {}
    for r in range(rounds):
        for setup in setups[r % len(setups):] + setups[:r % len(setups)]:
            rows[setup] = generation_cost(*setup, generations)
            seconds[setup].append(rows[setup]["s_per_generation"])
    out = []
    for setup in setups:
        median = statistics.median(seconds[setup])
        out.append({**rows[setup], "s_per_generation": median, "rounds": seconds[setup],
                    "candidates_per_s": rows[setup]["children"] / median})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args(argv)
    warm_up()
    repeats = 3 if args.quick else 9
    adam = KNOWN_RULES["adam"].rule
    sizes = (100, 10_000) if args.quick else (100, 1_000, 10_000, 100_000)
    horizons = (50, 400) if args.quick else (50, 100, 200, 400, 800)
    levels = (0, 2) if args.quick else (0, 1, 2, 4, 8, 16)
    figures = {
        "vs_P": [run_cost(adam, p, 200, repeats) for p in sizes],
        "vs_T": [run_cost(adam, 1_000, t, repeats) for t in horizons],
        "vs_rule_size": [run_cost(chain_rule(k), 1_000, 200, repeats) for k in levels],
        "suites": {s: suite_cost(s, 1 if args.quick else 3) for s in ("search", "heldout")},
        "vs_population_and_workers": generation_costs(
            (16, 64) if args.quick else (16, 32, 64, 128), 3 if args.quick else 6,
            1 if args.quick else 3),
    }
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    for key, title in (("vs_P", "against P (adam, T=200)"), ("vs_T", "against T (adam, P=1000)"),
                       ("vs_rule_size", "against rule size (P=1000, T=200)")):
        print(f"one run {title}:  P  T  opcodes  us/run  ns/(param*step)")
        for r in figures[key]:
            print(f"  {r['P']:>7} {r['T']:>4} {r['opcodes']:>4} {r['us_per_run']:>10.0f} "
                  f"{r['ns_per_param_step']:>8.2f}")
    for suite, s in figures["suites"].items():
        print(f"suite {suite}: adam with the lr search, {s['total_ms']:.0f} ms per rule")
        for r in s["tasks"]:
            print(f"  {r['task']:<18} {r['family']:<11} P={r['P']:<5} T={r['T']:<4} "
                  f"runs={r['runs']:<2} {r['ms']:7.1f} ms")
    print("one generation (default suite, proxy tier only) against population and workers:")
    print("  population children executor workers  s/generation  candidates/s")
    for r in figures["vs_population_and_workers"]:
        print(f"  {r['population']:>10} {r['children']:>8} {r['executor']:>8} {r['workers']:>7} "
              f"{r['s_per_generation']:>13.2f} {r['candidates_per_s']:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
