"""Effective campaign throughput against raw evaluation, side by side in one run.

Campaign: a campaign through the serial executor with the hurdle and the driver's equivalence
cache, as `evolve run` does, including the engine's own work (variation, fingerprints,
bookkeeping). Raw: an even sample (up to 300) of the rules that campaign evaluated, scored on the
full search suite with no hurdle and no cache. Both on one core; the lift is their ratio.

    python scripts/bench_campaign.py [--generations N] [--population N] [--warm-start adam] [--json]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import click

from evolve.config import CampaignConfig
from evolve.executors import SerialExecutor
from evolve.runner import run_campaign
from evolve.worker import score_rules, warm_numba
from fitness.score import Result


class RecordingExecutor(SerialExecutor):
    """The serial executor, keeping the rules it was asked to score."""

    def __init__(self, suite: str, seed: int):
        super().__init__(suite, seed)
        self.seen: list[str] = []

    def map(self, rules: list[str], suite: str | None = None,
            seed: int | None = None) -> list[Result]:
        self.seen.extend(rules)
        return super().map(rules, suite, seed)


@click.command()
@click.option("--generations", default=60, show_default=True)
@click.option("--population", default=64, show_default=True)
@click.option("--warm-start", default="random", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(generations: int, population: int, warm_start: str, seed: int, as_json: bool) -> None:
    warm_numba()
    cfg = CampaignConfig(population=population, generations=generations, warm_start=warm_start,
                         seed=seed, executor="serial", checkpoint_every=5, real_k=0)
    executor = RecordingExecutor(cfg.suite, cfg.seed)
    executor.map(["g"])  # build the worker's evaluator before timing
    executor.seen.clear()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_campaign(f"{tmp}/run", config=cfg, executor=executor)
        campaign_s = time.perf_counter() - start
        log = [json.loads(line) for line in open(f"{tmp}/run/log.jsonl")]
        cache = [json.loads(line) for line in open(f"{tmp}/run/cache.jsonl")]
    candidates = sum(r["candidates"] for r in log)
    hits = sum(r["cache_hits"] for r in log)
    rejected = sum(1 for r in cache if r["result"].get("hurdle") == "rejected")

    # raw: an even sample of the campaign's own evaluated candidates, full suite, no hurdle
    seen = executor.seen
    sample = [seen[int(i * len(seen) / min(300, len(seen)))] for i in range(min(300, len(seen)))]
    score_rules(cfg.suite, cfg.seed, ["g", "sign(g)"], hurdle=False)  # build the evaluator
    start = time.perf_counter()
    score_rules(cfg.suite, cfg.seed, sample, hurdle=False)
    raw_rate = len(sample) / (time.perf_counter() - start)
    figures = {
        "candidates": candidates,
        "campaign_seconds": round(campaign_s, 2),
        "campaign_candidates_per_s_core": round(candidates / campaign_s, 1),
        "raw_evaluations_per_s_core": round(raw_rate, 1),
        "lift": round(candidates / campaign_s / raw_rate, 2),
        "cache_hit_rate": round(hits / candidates, 3),
        "hurdle_rejection_rate": round(rejected / max(len(cache), 1), 3),
    }
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    print(f"campaign ({warm_start} start, {generations} generations x {cfg.children_per_generation} "
          f"children, serial): {figures['campaign_candidates_per_s_core']} candidates/s/core")
    print(f"raw full-suite evaluation (no hurdle, no cache): {figures['raw_evaluations_per_s_core']} "
          "evaluations/s/core")
    print(f"lift {figures['lift']}x   cache hits {figures['cache_hit_rate']:.1%}   "
          f"hurdle rejections {figures['hurdle_rejection_rate']:.1%} of evaluated")


if __name__ == "__main__":
    sys.exit(main())
