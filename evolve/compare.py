"""Meta-optimizers side by side: every strategy, the same budget of evaluations and the same seeds.

``evolve compare`` runs one campaign per (strategy, seed) through the one runner
(:func:`evolve.runner.run_campaign`: same evaluator, equivalence cache, executor, run directory,
funnel), then scores each campaign's final pick (``RUN:best``, the runner's own answer) on the
search suite, the held-out suite and the real-data tier, and writes a Markdown table, a JSON
file and a PNG of best-so-far search score against evaluations.

**Budget.** An evaluation is one candidate rule a strategy asked for and was told a score for;
equivalence-cache hits count (a strategy that repeats itself pays for it), and the funnel's
re-scoring of the final rules does not. Every strategy asks ``population`` rules first and
``children`` rules in each later generation, so they are charged identically; the budget is
rounded up to a whole generation: ``population + G * children >= budget``.

Campaigns live in ``OUT/runs/STRATEGY-seedK``; a compare that was stopped continues where it
stopped when run again with the same settings (each campaign resumes from its checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evolve.config import STRATEGIES, CampaignConfig, ConfigError
from evolve.errors import UserError
from evolve.rundir import RunDirectory, check_writable_folder
from primitives.files import atomic_write, atomic_write_json, atomic_write_text

DEFAULT_STRATEGIES = ("evolution", "random", "rl", "optuna-adam")
TABLE = "compare.md"
RESULTS = "compare.json"
PLOT = "best_so_far.png"
REAL_CACHE = "real_tier_scores.json"
BUDGET_DEFINITION = (
    "an evaluation is one candidate rule a strategy asked for and was told a proxy score for "
    "(equivalence-cache hits included); not counted: the funnel's re-scoring at the end, "
    "re-scoring on redrawn proxy instances, and tier-2 training (--real-k per generation, the "
    "same for every strategy); every strategy asks --population rules first and --children in "
    "each later generation, and the budget is rounded up to a whole generation")

Notify = Callable[[str], None]


@dataclass(frozen=True)
class CompareConfig:
    """What a comparison runs: strategies, budget, seeds, and the campaign settings they share."""

    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    budget: int = 5000
    seeds: int = 3
    population: int = 100
    children: int = 50
    suite: str = "default"
    heldout_suite: str = "heldout"
    executor: str = "process"
    workers: int = 0
    real_tier: bool = True
    real_tasks: tuple[str, ...] | None = None  # None: the real-data tier's own task list
    real_k: int | None = None  # tier-2 candidates per generation in each campaign (None: default)

    def check(self) -> None:
        """UserError (one line) for a comparison that cannot run."""
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise UserError(f"unknown strategy {', '.join(map(repr, unknown))}; choose from "
                            f"{', '.join(STRATEGIES)}")
        if not self.strategies:
            raise UserError("--strategies is empty; give e.g. evolution,random,rl,optuna-adam")
        if len(set(self.strategies)) != len(self.strategies):
            raise UserError("--strategies names a strategy twice")
        if self.budget < 1:
            raise UserError(f"--budget must be at least 1 evaluation, got {self.budget}")
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")
        if self.population < 2 or self.children < 1:
            raise UserError("--population must be >= 2 and --children >= 1")
        if self.budget < self.population:
            raise UserError(f"--budget {self.budget} is below the first generation "
                            f"(--population {self.population}); raise it or lower --population")
        try:
            self.campaign(self.strategies[0], 0).validate()
        except ConfigError as err:
            raise UserError(f"bad settings: {err}") from None

    @property
    def generations(self) -> int:
        return math.ceil((self.budget - self.population) / self.children)

    @property
    def evaluations(self) -> int:
        """The budget every strategy gets, rounded up to a whole generation."""
        return self.population + self.generations * self.children

    def campaign(self, strategy: str, seed: int) -> CampaignConfig:
        tier2 = {} if self.real_k is None else {"real_k": self.real_k}
        return CampaignConfig(strategy=strategy, population=self.population,
                              children=self.children, generations=self.generations,
                              suite=self.suite, heldout_suite=self.heldout_suite, seed=seed,
                              executor=self.executor, workers=self.workers,
                              tournament=min(4, self.population), **tier2)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "strategies": list(self.strategies),
                "real_tasks": list(self.real_tasks) if self.real_tasks else None,
                "generations": self.generations, "evaluations": self.evaluations}


def run_dir(out: Path, strategy: str, seed: int) -> Path:
    return out / "runs" / f"{strategy}-seed{seed}"


def run_one(out: Path, config: CompareConfig, strategy: str, seed: int,
            notify: Notify) -> dict[str, Any]:
    """One campaign to its end (resumed when a stopped compare left it), and its row."""
    from evolve.runner import run_campaign
    from evolve.strategies import run_directory

    path = run_dir(out, strategy, seed)
    wanted = config.campaign(strategy, seed)
    rd = RunDirectory(path)
    with run_directory(path):
        if rd.has_config():
            have = rd.read_config()
            # how the work is spread is not part of the result
            if replace(have, executor=wanted.executor, workers=wanted.workers) != wanted:
                raise UserError(f"{path} holds a campaign with other settings than this "
                                "compare; choose another --out")
            run_campaign(path, resume=True, finish=True, notify=notify)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            run_campaign(path, config=wanted, finish=True, notify=notify)
    return _row(rd, strategy, seed)


def _row(rd: RunDirectory, strategy: str, seed: int) -> dict[str, Any]:
    log = rd.read_log()
    rule, how = rd.final_selection()
    heldout = rd.read_heldout() or {"ranking": []}
    entry = next((r for r in heldout["ranking"] if r["rule"] == rule), None)
    if entry is None:  # a pick the funnel did not rank (a tier-2 choice): score it the same way
        from evolve.worker import proxy_suite, score_rules

        cfg = rd.read_config()
        entry = {key: score_rules(proxy_suite(suite, cfg.schedule), cfg.seed, [rule])[0].score
                 for key, suite in (("search_score", cfg.suite),
                                    ("heldout_score", cfg.heldout_suite))}
    curve = [[int(r["evaluations"]), r["best_score"]] for r in log]
    return {
        "strategy": strategy, "seed": seed, "run": str(rd.path), "rule": rule, "how": how,
        "search": entry["search_score"],
        "heldout": entry["heldout_score"],
        "evaluations": curve[-1][0] if curve else 0,
        "distinct_evaluations": sum(int(r.get("evaluated", 0)) for r in log),
        "cache_hits": sum(int(r.get("cache_hits", 0)) for r in log),
        "search_loop_seconds": round(sum(float(r.get("seconds", 0.0)) for r in log), 2),
        "best_search": curve[-1][1] if curve else None,
        "curve": curve,
    }


class RealScores:
    """Real-data tier scores of final picks, kept in ``OUT/real_tier_scores.json`` by rule."""

    def __init__(self, out: Path, tasks: tuple[str, ...] | None = None):
        self.path = out / REAL_CACHE
        self.tasks = tasks
        self.scores: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                # scores of another task list are another tier's
                if isinstance(data, dict) and data.get("tasks") == self._task_names():
                    self.scores = data.get("scores", {})
            except (OSError, ValueError):
                self.scores = {}  # a damaged cache is only recomputed work
        self._tier = None

    def _task_names(self) -> list[str]:
        from fitness.training.real_tier import RealTierConfig

        return list(self.tasks or RealTierConfig().tasks)

    def score(self, rule: str) -> float:
        if rule not in self.scores:
            from fitness.baselines import cache_dir
            from fitness.training.real_tier import RealTier, RealTierConfig
            from fitness.training.torch_tasks import torch_threads

            if self._tier is None:
                tier = RealTierConfig(tasks=tuple(self._task_names()))
                self._tier = RealTier(tier, cache_dir=cache_dir())
            with torch_threads(1):
                result = self._tier.evaluate_one(rule)
            self.scores[rule] = {"score": result.score,
                                 "tasks": {t.task: t.log_ratio for t in result.tasks}}
            atomic_write_json(self.path, {"tasks": self._task_names(), "scores": self.scores})
        return float(self.scores[rule]["score"])


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}


def summarize(rows: list[dict[str, Any]], strategies: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in strategies:
        mine = [r for r in rows if r["strategy"] == name]
        out[name] = {key: _mean_std([r.get(key) for r in mine])
                     for key in ("search", "heldout", "real", "best_search",
                                 "search_loop_seconds", "distinct_evaluations")}
    return out


def compare(out: str | Path, config: CompareConfig, notify: Notify | None = None) -> dict:
    """Run the comparison into ``out`` and write its table, JSON and plot; returns the JSON."""
    config.check()
    out = Path(out)
    check_writable_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    notify = notify or (lambda message: None)
    started = time.perf_counter()
    rows = []
    for seed in range(config.seeds):
        for strategy in config.strategies:
            notify(f"{strategy} seed {seed}: {config.evaluations} evaluations")
            row = run_one(out, config, strategy, seed, notify)
            notify(f"{strategy} seed {seed}: best search {row['best_search']:.3f}, final pick "
                   f"search {_fmt(row['search'])} held-out {_fmt(row['heldout'])}, search "
                   f"loop {row['search_loop_seconds']:.0f} s")
            rows.append(row)
    if config.real_tier:
        real = RealScores(out, config.real_tasks)
        for row in rows:
            notify(f"real-data tier: {row['strategy']} seed {row['seed']}")
            row["real"] = real.score(row["rule"])
    results = {
        "kind": "compare",
        "config": config.to_dict(),
        "budget_definition": BUDGET_DEFINITION,
        "runs": rows,
        "summary": summarize(rows, config.strategies),
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(out / RESULTS, results)
    plot(results, out / PLOT)
    atomic_write_text(out / TABLE, markdown(results))
    return results


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(stat: dict, digits: int = 3) -> str:
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown(results: dict) -> str:
    cfg = results["config"]
    lines = [
        "# Strategies side by side at equal budget",
        "",
        f"- budget: **{cfg['evaluations']} evaluations** per campaign (asked {cfg['budget']}; "
        f"{BUDGET_DEFINITION}); population {cfg['population']}, {cfg['children']} per "
        f"generation, {cfg['generations']} generations",
        f"- seeds 0..{cfg['seeds'] - 1} for every strategy; search suite `{cfg['suite']}`, "
        f"executor {cfg['executor']}; real-data tier tasks: "
        f"{', '.join(cfg['real_tasks']) if cfg.get('real_tasks') else 'the tier defaults'}",
        "- scores: 1.0 = tuned Adam, higher is better; the final pick is each campaign's "
        "`RUN:best`; mean ± std over seeds",
        "",
        "| strategy | final pick: search | held-out | real-data tier | best search so far "
        "| distinct evaluations | search loop (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in results["summary"].items():
        lines.append(f"| {name} | {_pm(s['search'])} | {_pm(s['heldout'])} | {_pm(s['real'])} "
                     f"| {_pm(s['best_search'])} | {_pm(s['distinct_evaluations'], 0)} | "
                     f"{_pm(s['search_loop_seconds'], 0)} |")
    lines += ["", "## Final picks", "",
              "| strategy | seed | search | held-out | real | rule |", "|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['strategy']} | {r['seed']} | {_fmt(r['search'])} | "
                     f"{_fmt(r['heldout'])} | {_fmt(r.get('real'))} | `{r['rule']}` |")
    lines += ["", f"![best so far]({PLOT})", "",
              f"Total wall time of this compare: {results['seconds']:.0f} s (runs resumed "
              "from an earlier call count only their new part).", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Best-so-far search score against evaluations: mean line, min-max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in results["config"]["strategies"]:
        curves = [r["curve"] for r in results["runs"] if r["strategy"] == name and r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        x = np.array([p[0] for p in curves[0][:n]], dtype=float)
        y = np.array([[p[1] for p in c[:n]] for c in curves], dtype=float)
        line, = ax.plot(x, y.mean(axis=0), label=f"{name} (mean of {len(curves)})")
        ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.axhline(1.0, color="grey", ls="--", lw=1, label="tuned Adam")
    ax.set(xlabel="evaluations", ylabel="best search score so far",
           title="strategies at equal budget (band: min-max over seeds)")
    save_png(fig, ax, path)


def save_png(fig: Any, ax: Any, path: Path) -> None:
    """Legend, layout, then the figure as a PNG written atomically, and closed."""
    import matplotlib.pyplot as plt

    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)


__all__ = ["BUDGET_DEFINITION", "CompareConfig", "DEFAULT_STRATEGIES", "RealScores", "compare",
           "markdown", "plot", "run_dir", "run_one", "save_png", "summarize"]
