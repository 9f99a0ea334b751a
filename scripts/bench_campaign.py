"""The campaign lift: what the cache, the hurdles, early stopping and the screen save, by ablation.

One campaign (serial, real-data tier off, the engine's defaults) runs end to end as `evolve run`
does, engine work included (variation, fingerprints, bookkeeping); every batch it scores on the
proxy suite is recorded with the population its thresholds came from. Then each batch is scored
again under each ablation, the ablations interleaved batch by batch (so that a change of load
on the machine falls on all of them alike), each with its own equivalence cache and its own
thresholds, computed from that population under the row's quantiles
(:func:`evolve.strategy.thresholds_for`):

* raw: every candidate on the full suite, no cache, no hurdle, no early stop, no screen;
* cache, fixed hurdle, adaptive hurdle (the default quantile and ``--strong-hurdle``), early
  stop, screen (``--screen``, ``--screen-tasks``): each alone;
* cache + fixed hurdle (the engine before issue 13), cache + adaptive hurdle, + early stop,
  + screen, and the same with the stronger hurdle.

Each row gives candidates per second on one core and its lift over raw; the campaign row is the
end-to-end rate (not paired: it ran first). The replay is static: every row scores the batches
the default campaign proposed, whereas a campaign under other thresholds would propose others;
``scripts/campaign_quality.py`` runs the campaigns themselves to check what a setting finds.
Rule texts are compiled and fingerprinted once in this process before any replay, so neither
cost falls on a row of the replay (the campaign row pays them). At the end (``--prints-workers``)
each batch's fingerprints of new rule texts are timed in this process against a process pool's
workers, the first phase of the cache's two-phase scoring.

    python scripts/bench_campaign.py [--generations N] [--population N] [--warm-start adam]
        [--screen Q] [--screen-tasks K] [--strong-hurdle Q] [--prints-workers N] [--json]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evolve.runner as runner  # noqa: E402
import evolve.strategy as strategy_module  # noqa: E402
from evolve.config import CampaignConfig  # noqa: E402
from evolve.executors import SerialExecutor  # noqa: E402
from evolve.runner import CachedScorer, run_campaign  # noqa: E402
from evolve.strategy import Individual, thresholds_for  # noqa: E402
from evolve.worker import evaluate_chunk, score_rules, warm_numba  # noqa: E402
from fitness.evaluate import Thresholds  # noqa: E402
from fitness.score import Result  # noqa: E402


@dataclass
class Batch:
    """One proxy batch the campaign scored: its rules, instance seed, cache namespace, the
    thresholds it passed and the population they came from (None: it passed none)."""

    rules: list[str]
    seed: int | None
    namespace: str
    thresholds: Thresholds | None
    survivors: list[Individual] | None


RECORDED: list[Batch] = []
POPULATIONS: list[list[Individual]] = []


def recording_thresholds(survivors, config: CampaignConfig) -> Thresholds:
    """The campaign's thresholds, keeping a copy of the population they came from."""
    POPULATIONS.append([Individual.from_dict(i.to_dict()) for i in survivors])
    return thresholds_for(survivors, config)


class RecordingScorer(CachedScorer):
    """The campaign's scorer, keeping every proxy batch it was asked to score."""

    def score(self, rules, suite=None, seed=None, namespace="", thresholds=None):
        if suite is None:
            survivors = POPULATIONS[-1] if thresholds is not None else None
            RECORDED.append(Batch(list(rules), seed, namespace, thresholds, survivors))
        return super().score(rules, suite, seed, namespace, thresholds)


def _no_hurdle(suite: str, seed: int, rules: list[str],
               thresholds: Thresholds | None = None) -> list[Result]:
    return score_rules(suite, seed, rules, hurdle=False, thresholds=thresholds)


@dataclass
class Ablation:
    """One way of scoring the recorded batches: which parts are on, and what it cost.

    ``hurdle`` is "off" (no hurdle run), "fixed" (the floor only) or the adaptive hurdle's
    quantile; ``stop`` and ``screen`` are the early stop's and the screen's quantiles (0: off).
    Each batch's thresholds come from the population the campaign had then, under these."""

    name: str
    cache: bool
    hurdle: str | float
    stop: float = 0.0
    screen: float = 0.0
    screen_tasks: int = 1
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        chunk = _no_hurdle if self.hurdle == "off" else evaluate_chunk
        self.executor = SerialExecutor("default", 0, chunk_fn=chunk)
        self.scorer = CachedScorer(self.executor)

    def thresholds(self, batch: Batch, config: CampaignConfig) -> Thresholds | None:
        if batch.survivors is None:
            return None  # the campaign passed none (its first batch, a redraw's rescoring)
        adaptive = not isinstance(self.hurdle, str)
        return thresholds_for(batch.survivors, replace(
            config, hurdle_quantile=float(self.hurdle) if adaptive else 0.0,
            stop_quantile=self.stop, screen_quantile=self.screen,
            screen_tasks=self.screen_tasks))

    def run(self, batch: Batch, suite: str, config: CampaignConfig) -> None:
        limits = self.thresholds(batch, config)
        start = time.perf_counter()
        if self.cache:
            results = self.scorer.score(batch.rules, suite, batch.seed, batch.namespace, limits)
        else:
            results = self.executor.map(batch.rules, suite, batch.seed, limits)
        self.seconds += time.perf_counter() - start
        for key in ("candidates", "cached", "rejected", "stopped", "screened"):
            self.counts.setdefault(key, 0)
        fresh = [r for r in results if not r.cached]
        self.counts["candidates"] += len(results)
        self.counts["cached"] += len(results) - len(fresh)
        self.counts["rejected"] += sum(r.hurdle == "rejected" for r in fresh)
        self.counts["stopped"] += sum(r.stopped_below is not None for r in fresh)
        self.counts["screened"] += sum(r.screened_below is not None for r in fresh)


def ablations(screen: float, screen_tasks: int, strong_hurdle: float) -> list[Ablation]:
    """The rows of the table: each part alone, then the engine's combinations."""
    adaptive = CampaignConfig.hurdle_quantile
    stop = CampaignConfig.stop_quantile
    return [
        Ablation("raw", False, "off"),
        Ablation("cache", True, "off"),
        Ablation("fixed hurdle", False, "fixed"),
        Ablation(f"adaptive hurdle {adaptive}", False, adaptive),
        Ablation(f"adaptive hurdle {strong_hurdle}", False, strong_hurdle),
        Ablation(f"early stop {stop}", False, "off", stop),
        Ablation(f"screen {screen} x{screen_tasks}", False, "off", 0.0, screen, screen_tasks),
        Ablation("cache + fixed hurdle", True, "fixed"),
        Ablation("cache + adaptive hurdle", True, adaptive),
        Ablation("cache + adaptive + early stop", True, adaptive, stop),
        Ablation("cache + adaptive + stop + screen", True, adaptive, stop, screen, screen_tasks),
        Ablation(f"cache + hurdle {strong_hurdle} + stop + screen", True, strong_hurdle, stop,
                 screen, screen_tasks),
    ]


@click.command()
@click.option("--generations", default=60, show_default=True)
@click.option("--population", default=32, show_default=True)
@click.option("--warm-start", default="random", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--screen", "screen", default=CampaignConfig.screen_quantile, show_default=True,
              help="the screen rows' quantile")
@click.option("--screen-tasks", default=1, show_default=True,
              help="the screen rows' number of tasks")
@click.option("--strong-hurdle", default=0.5, show_default=True,
              help="the stronger adaptive hurdle rows' quantile")
@click.option("--prints-workers", default=2, show_default=True,
              help="also time the batches' fingerprints in the driver against this many "
                   "process workers (0: skip)")
@click.option("--json", "as_json", is_flag=True)
def main(generations: int, population: int, warm_start: str, seed: int, screen: float,
         screen_tasks: int, strong_hurdle: float, prints_workers: int, as_json: bool) -> None:
    warm_numba()
    cfg = CampaignConfig(population=population, generations=generations, warm_start=warm_start,
                         seed=seed, executor="serial", checkpoint_every=5, real_k=0)
    suite = cfg.suite
    executor = SerialExecutor(suite, cfg.seed)
    executor.map(["g"])  # build the worker's evaluator before timing
    # a benchmark's hooks: record what the loop scores, and the populations thresholds come from
    runner.CachedScorer = RecordingScorer
    strategy_module.thresholds_for = recording_thresholds
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            run_campaign(f"{tmp}/run", config=cfg, executor=executor)
            campaign_s = time.perf_counter() - start
            log = [json.loads(line) for line in open(f"{tmp}/run/log.jsonl")]
    finally:
        runner.CachedScorer = CachedScorer
        strategy_module.thresholds_for = thresholds_for
    candidates = sum(r["candidates"] for r in log)
    rows_of = ablations(screen, screen_tasks, strong_hurdle)
    for a in rows_of:  # every instance seed's evaluators built before timing
        for s in sorted({b.seed for b in RECORDED}, key=str):
            a.executor.map(["g"], suite, s)
    for i, batch in enumerate(RECORDED):
        turn = i % len(rows_of)  # rotate who goes first, against drift in the machine's load
        for a in rows_of[turn:] + rows_of[:turn]:
            a.run(batch, suite, cfg)
    raw = rows_of[0].counts["candidates"] / rows_of[0].seconds
    rows = [{"scoring": a.name, "seconds": round(a.seconds, 2),
             "candidates_per_s": round(a.counts["candidates"] / a.seconds, 1),
             "lift": round(a.counts["candidates"] / a.seconds / raw, 2), **a.counts}
            for a in rows_of]
    rows.append({"scoring": "campaign end to end (default)", "seconds": round(campaign_s, 2),
                 "candidates_per_s": round(candidates / campaign_s, 1),
                 "lift": round(candidates / campaign_s / raw, 2), "candidates": candidates,
                 "cached": sum(r["cache_hits"] for r in log),
                 "rejected": sum(r["hurdle_rejections"] for r in log),
                 "stopped": sum(r.get("stopped_early", 0) for r in log), "screened": None})
    figures = {"generations": generations, "population": population, "warm_start": warm_start,
               "children": cfg.children_per_generation, "batches": len(RECORDED),
               "best_score": log[-1]["best_score"], "rows": rows}
    if prints_workers:
        figures["prints_ms_per_batch"] = time_prints(prints_workers)
    if as_json:
        print(json.dumps(figures, indent=1))
        return
    print(f"{warm_start} start, {generations} generations x {cfg.children_per_generation} "
          f"children, serial, one core; {len(RECORDED)} proxy batches replayed per row")
    print(f"{'scoring':<42} {'cand/s':>7} {'lift':>6} {'cached':>7} {'rejected':>9} "
          f"{'stopped':>8} {'screened':>9}")
    for r in rows:
        print(f"{r['scoring']:<42} {r['candidates_per_s']:>7} {r['lift']:>5}x {r['cached']:>7} "
              f"{r['rejected']:>9} {r['stopped']:>8} {'' if r['screened'] is None else r['screened']:>9}")
    if prints_workers:
        p = figures["prints_ms_per_batch"]
        print(f"fingerprints of each batch's new rule texts ({p['texts']} in {p['batches']} "
              f"batches), ms a batch: in the driver {p['driver']}, by {prints_workers} process "
              f"workers {p['workers']}")


def time_prints(workers: int) -> dict[str, float | int]:
    """Each recorded batch's prints of rule texts not seen before, computed in this process and
    by a process pool (the two-phase cache's first phase), alternating which goes first."""
    from evolve import worker
    from evolve.executors import ProcessExecutor

    pool = ProcessExecutor("default", 0, workers=workers)
    try:
        pool.prints(["g", "sign(g)"])  # start the workers before timing
        seen: set[str] = set()
        driver = pooled = 0.0
        batches = texts = 0
        for i, batch in enumerate(RECORDED):
            new = [r for r in dict.fromkeys(batch.rules) if r not in seen]
            if not new:
                continue
            seen.update(new)
            batches, texts = batches + 1, texts + len(new)
            for turn in ((0, 1) if i % 2 else (1, 0)):
                for r in new:  # forget them here, as a driver that never saw them
                    worker._PRINTS.pop(r, None)
                worker.compiled.cache_clear()
                start = time.perf_counter()
                if turn:
                    pool.prints(new)
                    pooled += time.perf_counter() - start
                else:
                    [worker.rule_prints(r) for r in new]
                    driver += time.perf_counter() - start
    finally:
        pool.close()
    return {"batches": batches, "texts": texts, "driver": round(driver / batches * 1e3, 2),
            "workers": round(pooled / batches * 1e3, 2)}


if __name__ == "__main__":
    sys.exit(main())
