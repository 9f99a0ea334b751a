"""The campaign lift: what the cache, the hurdles and early stopping save, by ablation in one run.

One campaign (serial, real-data tier off, the default hurdle and early stop) runs end to end as
`evolve run` does, engine work included (variation, fingerprints, bookkeeping); every batch it
scores on the proxy suite is recorded with the thresholds the campaign passed. Then each batch is
scored again under each ablation, the ablations interleaved batch by batch (so that a change of
load on the machine falls on all of them alike), each with its own equivalence cache:

* raw: every candidate on the full suite, no cache, no hurdle, no early stop;
* cache, fixed hurdle, adaptive hurdle, early stop: each alone;
* cache + fixed hurdle (the engine before issue 13), cache + adaptive hurdle, and cache +
  adaptive hurdle + early stop (the engine's default).

Each row gives candidates per second on one core and its lift over raw; the campaign row is the
end-to-end rate. Rules are compiled once in the driver for their fingerprints before any
replay, so compile cost falls on no row of the replay (the campaign row pays it).

    python scripts/bench_campaign.py [--generations N] [--population N] [--warm-start adam] [--json]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evolve.runner as runner  # noqa: E402
from evolve.config import CampaignConfig  # noqa: E402
from evolve.executors import SerialExecutor  # noqa: E402
from evolve.runner import CachedScorer, run_campaign  # noqa: E402
from evolve.worker import evaluate_chunk, score_rules, warm_numba  # noqa: E402
from fitness.evaluate import Thresholds  # noqa: E402
from fitness.score import Result  # noqa: E402


@dataclass
class Batch:
    """One proxy batch the campaign scored: its rules, instance seed, cache namespace and
    the thresholds it passed."""

    rules: list[str]
    seed: int | None
    namespace: str
    thresholds: Thresholds | None


RECORDED: list[Batch] = []


class RecordingScorer(CachedScorer):
    """The campaign's scorer, keeping every proxy batch it was asked to score."""

    def score(self, rules, suite=None, seed=None, namespace="", thresholds=None):
        if suite is None:
            RECORDED.append(Batch(list(rules), seed, namespace, thresholds))
        return super().score(rules, suite, seed, namespace, thresholds)


def _no_hurdle(suite: str, seed: int, rules: list[str],
               thresholds: Thresholds | None = None) -> list[Result]:
    return score_rules(suite, seed, rules, hurdle=False, thresholds=thresholds)


@dataclass
class Ablation:
    """One way of scoring the recorded batches: which parts are on, and what it cost."""

    name: str
    cache: bool
    hurdle: str  # "off", "fixed" or "adaptive"
    stop: bool
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        chunk = _no_hurdle if self.hurdle == "off" else evaluate_chunk
        self.executor = SerialExecutor("default", 0, chunk_fn=chunk)
        self.scorer = CachedScorer(self.executor)

    def thresholds(self, batch: Batch) -> Thresholds | None:
        given = batch.thresholds or Thresholds()
        hurdle = given.hurdle if self.hurdle == "adaptive" else Thresholds().hurdle
        return Thresholds(hurdle=hurdle, stop_below=given.stop_below if self.stop else None)

    def run(self, batch: Batch, suite: str) -> None:
        limits = self.thresholds(batch)
        start = time.perf_counter()
        if self.cache:
            results = self.scorer.score(batch.rules, suite, batch.seed, batch.namespace, limits)
        else:
            results = self.executor.map(batch.rules, suite, batch.seed, limits)
        self.seconds += time.perf_counter() - start
        for key in ("candidates", "cached", "rejected", "stopped"):
            self.counts.setdefault(key, 0)
        self.counts["candidates"] += len(results)
        self.counts["cached"] += sum(r.cached for r in results)
        self.counts["rejected"] += sum(r.hurdle == "rejected" and not r.cached for r in results)
        self.counts["stopped"] += sum(r.stopped and not r.cached for r in results)


ABLATIONS = (("raw", False, "off", False), ("cache", True, "off", False),
             ("fixed hurdle", False, "fixed", False), ("adaptive hurdle", False, "adaptive", False),
             ("early stop", False, "off", True), ("cache + fixed hurdle", True, "fixed", False),
             ("cache + adaptive hurdle", True, "adaptive", False),
             ("cache + adaptive hurdle + early stop", True, "adaptive", True))


@click.command()
@click.option("--generations", default=60, show_default=True)
@click.option("--population", default=32, show_default=True)
@click.option("--warm-start", default="random", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(generations: int, population: int, warm_start: str, seed: int, as_json: bool) -> None:
    warm_numba()
    cfg = CampaignConfig(population=population, generations=generations, warm_start=warm_start,
                         seed=seed, executor="serial", checkpoint_every=5, real_k=0)
    suite = cfg.suite
    executor = SerialExecutor(suite, cfg.seed)
    executor.map(["g"])  # build the worker's evaluator before timing
    runner.CachedScorer = RecordingScorer  # a benchmark's hook: record what the loop scores
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_campaign(f"{tmp}/run", config=cfg, executor=executor)
            campaign_s = time.perf_counter() - start
            log = [json.loads(line) for line in open(f"{tmp}/run/log.jsonl")]
    finally:
        runner.CachedScorer = CachedScorer
    candidates = sum(r["candidates"] for r in log)
    ablations = [Ablation(*spec) for spec in ABLATIONS]
    for a in ablations:  # every instance seed's evaluators built before timing
        for s in sorted({b.seed for b in RECORDED}, key=str):
            a.executor.map(["g"], suite, s)
    for i, batch in enumerate(RECORDED):
        turn = i % len(ablations)  # rotate who goes first, against drift in the machine's load
        for a in ablations[turn:] + ablations[:turn]:
            a.run(batch, suite)
    raw = ablations[0].counts["candidates"] / ablations[0].seconds
    rows = [{"scoring": a.name, "seconds": round(a.seconds, 2),
             "candidates_per_s": round(a.counts["candidates"] / a.seconds, 1),
             "lift": round(a.counts["candidates"] / a.seconds / raw, 2), **a.counts}
            for a in ablations]
    rows.append({"scoring": "campaign end to end (default)", "seconds": round(campaign_s, 2),
                 "candidates_per_s": round(candidates / campaign_s, 1),
                 "lift": round(candidates / campaign_s / raw, 2), "candidates": candidates,
                 "cached": sum(r["cache_hits"] for r in log),
                 "rejected": sum(r["hurdle_rejections"] for r in log),
                 "stopped": sum(r.get("stopped_early", 0) for r in log)})
    figures = {"generations": generations, "population": population, "warm_start": warm_start,
               "children": cfg.children_per_generation, "batches": len(RECORDED),
               "best_score": log[-1]["best_score"], "rows": rows}
    if as_json:
        print(json.dumps(figures, indent=1))
        return
    print(f"{warm_start} start, {generations} generations x {cfg.children_per_generation} "
          f"children, serial, one core; {len(RECORDED)} proxy batches replayed per row")
    print(f"{'scoring':<38} {'cand/s':>8} {'lift':>6} {'cached':>7} {'rejected':>9} "
          f"{'stopped':>8}")
    for r in rows:
        print(f"{r['scoring']:<38} {r['candidates_per_s']:>8} {r['lift']:>5}x {r['cached']:>7} "
              f"{r['rejected']:>9} {r['stopped']:>8}")


if __name__ == "__main__":
    sys.exit(main())
