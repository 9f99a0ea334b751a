"""Whether the campaign lift costs quality: the best score campaigns reach under each setting.

The thresholds that make scoring cheaper (the adaptive hurdle, the early stop, the screen) cut
candidates on partial evidence, so a change of their defaults must not lower what a campaign
finds. For each setting, campaigns with seeds 0..N-1 (serial, real-data tier off, the same
generations and population) run to the end, side by side in worker processes; the table gives
each seed's best proxy score (the hall of fame's first, on the instances the run ended on), their
mean, the candidates each scored and the wall time (the settings share the machine alike).

    python scripts/campaign_quality.py [--seeds 4] [--generations 60] [--jobs 2]
        [--setting NAME=field:value,field:value ...] [--json]

Without ``--setting`` it compares the defaults before the screen (``before``) with the
engine's defaults (``default``).
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.config import CampaignConfig  # noqa: E402

SETTINGS = {"before": {"hurdle_quantile": 0.25, "stop_quantile": 0.5, "screen_quantile": 0.0},
            "default": {}}


def parse_setting(text: str) -> tuple[str, dict[str, float]]:
    """``NAME=field:value,field:value`` -> (NAME, overrides of CampaignConfig fields)."""
    name, _, spec = text.partition("=")
    fields = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        fields[key.strip()] = float(value) if "." in value else int(value)
    return name.strip(), fields


def one_campaign(overrides: dict, seed: int, generations: int, population: int) -> dict:
    """Run one campaign in this (worker) process; its best score, candidates and seconds."""
    from evolve.runner import run_campaign
    from evolve.worker import warm_numba

    warm_numba()
    cfg = CampaignConfig.from_dict({**CampaignConfig(
        population=population, generations=generations, seed=seed, executor="serial",
        checkpoint_every=10, real_k=0).to_dict(), **overrides})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        strategy = run_campaign(f"{tmp}/run", config=cfg, notify=lambda _: None)
        seconds = time.perf_counter() - start
    best = strategy.hall_of_fame[0].score if strategy.hall_of_fame else None
    return {"seed": seed, "best": best, "candidates": strategy.evaluations,
            "seconds": round(seconds, 1)}


@click.command()
@click.option("--seeds", default=4, show_default=True, help="campaigns per setting: seeds 0..N-1")
@click.option("--generations", default=60, show_default=True)
@click.option("--population", default=32, show_default=True)
@click.option("--jobs", default=2, show_default=True, help="campaigns run at once")
@click.option("--setting", "settings", multiple=True,
              help="NAME=field:value,... (CampaignConfig fields); repeatable")
@click.option("--json", "as_json", is_flag=True)
def main(seeds: int, generations: int, population: int, jobs: int, settings: tuple[str, ...],
         as_json: bool) -> None:
    chosen = dict(parse_setting(s) for s in settings) if settings else dict(SETTINGS)
    for overrides in chosen.values():  # a bad field fails here, before any campaign
        CampaignConfig.from_dict(overrides)
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    spawn = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        # seed-major order: the settings of one seed run close in time, under the same load
        futures = {pool.submit(one_campaign, chosen[name], seed, generations, population): name
                   for seed in range(seeds) for name in chosen}
        for fut in cf.as_completed(futures):
            runs[futures[fut]].append(fut.result())
    table = []
    for name, rows in runs.items():
        rows.sort(key=lambda r: r["seed"])
        bests = [r["best"] for r in rows if r["best"] is not None]
        table.append({"setting": name, "overrides": chosen[name], "runs": rows,
                      "mean_best": round(sum(bests) / len(bests), 4) if bests else None,
                      "candidates": sum(r["candidates"] for r in rows),
                      "seconds": round(sum(r["seconds"] for r in rows), 1)})
    if as_json:
        print(json.dumps(table, indent=1))
        return
    print(f"{seeds} seeds x {generations} generations, population {population}, serial, "
          f"real_k 0, {jobs} at once")
    for t in table:
        bests = " ".join(f"{r['best']:.3f}" for r in t["runs"])
        print(f"{t['setting']:<12} mean best {t['mean_best']:.4f}  ({bests})  "
              f"{t['candidates']} candidates in {t['seconds']} s  {t['overrides']}")


if __name__ == "__main__":
    sys.exit(main())
