"""After a campaign: simplify the hall of fame, run the funnel, write the report and plots.

Funnel (Lion search): the hall of fame and every best-so-far champion are re-scored on the
held-out suite, whose task families were never used in search. The report ranks by held-out
score and flags meta-overfitting: generations where the champion's search score went up while
its held-out score went down.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from evolve.campaign import Campaign
from evolve.evaluation import fingerprint, make_evaluator
from evolve.simplify import prune, sympy_form
from primitives.files import atomic_write_json, atomic_write_text
from primitives.rules import KNOWN_RULES


def funnel(campaign: Campaign) -> dict[str, Any]:
    cfg = campaign.config
    evaluator = make_evaluator(cfg.heldout_suite, cfg.seed)
    rules: list[str] = []
    for rule in [i.rule for i in campaign.hall_of_fame] + [c["rule"] for c in campaign.champions]:
        if rule not in rules:
            rules.append(rule)
    baselines = {name: KNOWN_RULES[name].rule for name in ("adam", "sgd")}
    results = evaluator.evaluate(rules + list(baselines.values()))
    by_rule = dict(zip(rules, results[: len(rules)]))
    search = {i.rule: i.score for i in campaign.hall_of_fame}
    search.update({c["rule"]: c["score"] for c in campaign.champions})
    ranking = sorted(
        ({"rule": r, "search_score": search[r], "heldout_score": by_rule[r]["aggregate"],
          "tasks": by_rule[r].get("tasks", [])} for r in rules),
        key=lambda row: (-row["heldout_score"], -row["search_score"], row["rule"]),
    )
    champions = []
    flags = []
    for c in campaign.champions:
        row = {**c, "heldout_score": by_rule[c["rule"]]["aggregate"]}
        if champions:
            prev = champions[-1]
            if row["score"] > prev["score"] and row["heldout_score"] < prev["heldout_score"]:
                row["meta_overfitting"] = True
                flags.append(row["generation"])
        champions.append(row)
    return {
        "suite": cfg.heldout_suite,
        "ranking": ranking,
        "champions": champions,
        "meta_overfitting_generations": flags,
        "baselines": {name: res["aggregate"] for name, res in zip(baselines, results[len(rules):])},
    }


def finalize(run_dir: str | Path, campaign: Campaign, *, validate: bool = False) -> dict[str, Any]:
    run_dir = Path(run_dir)
    hall = json.loads((run_dir / "hall_of_fame.json").read_text())
    for entry in hall:
        entry["simplified"] = prune(entry["rule"], fingerprint)
        entry["sympy"] = sympy_form(entry["simplified"])
    atomic_write_json(run_dir / "hall_of_fame.json", hall)
    heldout = funnel(campaign)
    atomic_write_json(run_dir / "heldout.json", heldout)
    summary: dict[str, Any] = {
        "heldout_best": next((r["heldout_score"] for r in heldout["ranking"]
                              if r["rule"] == campaign.hall_of_fame[0].rule), None),
    }
    validation = None
    if validate:
        validation = _validate_top(run_dir, heldout)
    plots = _plots(run_dir, campaign)
    report = run_dir / "report.md"
    atomic_write_text(report, _report(run_dir, campaign, hall, heldout, plots, validation))
    summary["report"] = str(report)
    return summary


def _validate_top(run_dir: Path, heldout: dict, k: int = 2) -> dict:
    """The last funnel stage: the top-k held-out rules against adam and sgd in torch training.

    On CIFAR-10 when ``CIFAR10_DIR`` points at the data (CPU-feasible subset), else on the
    bundled digits; one seed per learning rate to keep a campaign's epilogue short.
    """
    import os

    from evolve.bench.report import write_report
    from evolve.bench.validate import validate_rules

    rules = [row["rule"] for row in heldout["ranking"][:k]]
    data_dir = os.environ.get("CIFAR10_DIR")
    if data_dir:
        results = validate_rules(rules, dataset="cifar10", data_dir=data_dir,
                                 baselines=("adam", "sgd"), subset=5000, epochs=4, seeds=1)
    else:
        results = validate_rules(rules, dataset="digits", baselines=("adam", "sgd"), seeds=1)
    (run_dir / "validation").mkdir(exist_ok=True)
    write_report(results, run_dir / "validation", "validate")
    return results


def _plots(run_dir: Path, campaign: Campaign) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evolve.runner import RunDirectory

    log = RunDirectory(run_dir).read_log()
    names = []
    if log:
        gens = [r["generation"] for r in log]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(gens, [r["best_score"] for r in log], label="best so far")
        ax.plot(gens, [r["population_best"] for r in log], label="population best", alpha=0.7)
        ax.plot(gens, [r["median_score"] for r in log], label="population median", alpha=0.7)
        ax.axhline(1.0, color="grey", ls="--", lw=1, label="tuned Adam")
        ax.set_xlabel("generation")
        ax.set_ylabel("search score (1 = tuned Adam)")
        ax.legend(fontsize=8)
        ax.set_title("score over generations")
        fig.tight_layout()
        fig.savefig(run_dir / "score.png", dpi=110)
        plt.close(fig)
        names.append("score.png")
    curves = _loss_curves(campaign)
    if curves:
        task, series = curves
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, (lr, losses) in series.items():
            ax.semilogy(np.arange(len(losses)), losses, label=f"{label} (lr {lr:g})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{task}: best rule against tuned Adam and SGD")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(run_dir / "loss_curves.png", dpi=110)
        plt.close(fig)
        names.append("loss_curves.png")
    return names


def _loss_curves(campaign: Campaign):
    """Loss curves at each optimizer's best lr on the first task of the search suite."""
    from fitness.interpreter import StepRunner
    from fitness.tasks import build, get_suite
    from primitives.program import compile_rule

    best = campaign.hall_of_fame[0]
    spec = get_suite(campaign.config.suite)[0]
    task = build(spec, campaign.config.seed)
    entries = {"best rule": best, "adam": None, "sgd": None}
    evaluator = make_evaluator(campaign.config.suite, campaign.config.seed)
    series = {}
    for label, ind in entries.items():
        rule = ind.rule if ind is not None else KNOWN_RULES[label].rule
        result = ind.__dict__ if ind is not None else evaluator.evaluate([rule])[0]
        lr = next((t.get("best_lr") for t in result["tasks"] if t.get("task") == spec.name), None)
        if not lr:
            continue
        runner = StepRunner(compile_rule(rule), task.w0, total_steps=task.steps)
        losses = []
        for step in range(task.steps):
            loss, grad = task.loss_and_grad(runner.weights, step)
            losses.append(loss)
            if not np.isfinite(loss):
                break
            runner.step(grad, lr)
        series[label] = (lr, np.array(losses))
    return (spec.name, series) if series else None


def _report(run_dir: Path, campaign: Campaign, hall: list[dict], heldout: dict, plots: list[str],
            validation: dict | None) -> str:
    cfg = campaign.config
    from evolve.runner import RunDirectory

    log = RunDirectory(run_dir).read_log()
    evaluated = sum(r.get("evaluated", 0) for r in log)
    hits = sum(r.get("cache_hits", 0) for r in log)
    hurdles = sum(r.get("hurdle_rejections", 0) for r in log)
    seconds = sum(r.get("seconds", 0) for r in log)
    lines = [
        f"# Campaign report: {run_dir.name}",
        "",
        f"- algorithm **{cfg.algorithm}**, population {cfg.population}, {campaign.generation} "
        f"generations, warm start `{cfg.warm_start}`, seed {cfg.seed}, executor {cfg.executor}",
        f"- search suite `{cfg.suite}`, held-out suite `{cfg.heldout_suite}`; scores: 1.0 = tuned "
        "Adam, higher is better",
        f"- candidates {campaign.evaluations}: {evaluated} evaluated, {hits} equivalence-cache "
        f"hits, {hurdles} stopped at the hurdle; {seconds:.1f} s in scoring "
        f"({campaign.evaluations / seconds if seconds else 0:.0f} candidates/s)",
        "",
        "## Hall of fame (search suite)",
        "",
        "| # | score | rule | pruned | sympy |",
        "|---|---|---|---|---|",
    ]
    for i, e in enumerate(hall, 1):
        lines.append(f"| {i} | {e['score']:.3f} | `{e['rule']}` | `{e['simplified']}` | "
                     f"`{e['sympy']}` |")
    lines += [
        "",
        f"## Funnel: held-out suite `{heldout['suite']}`",
        "",
        "Baselines: " + ", ".join(f"{k} {v:.3f}" for k, v in heldout["baselines"].items()),
        "",
        "| rank | held-out | search | rule |",
        "|---|---|---|---|",
    ]
    for i, row in enumerate(heldout["ranking"], 1):
        lines.append(f"| {i} | {row['heldout_score']:.3f} | {row['search_score']:.3f} | "
                     f"`{row['rule']}` |")
    lines += ["", "### Champions (best so far) over generations", "",
              "| generation | search | held-out | meta-overfitting |", "|---|---|---|---|"]
    for c in heldout["champions"]:
        flag = "**yes**: search up, held-out down" if c.get("meta_overfitting") else ""
        lines.append(f"| {c['generation']} | {c['score']:.3f} | {c['heldout_score']:.3f} | {flag} |")
    if validation:
        lines += ["", "## Torch validation (the funnel's last stage)", "",
                  "Top held-out rules against adam and sgd: `validation/validate.md` "
                  "(table) and `validation/*.png` (curves)."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


__all__ = ["finalize", "funnel"]
