"""After a campaign: simplify the hall of fame, run the funnel, write the report and plots.

Funnel (Lion search): the hall of fame and every best-so-far champion are re-scored on the
held-out suite, whose task families were never used in search. The report ranks by held-out
score and flags meta-overfitting: generations where the champion's search score went up while
its held-out score went down.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evolve.rundir import LOSS_PLOT, SCORE_PLOT, VALIDATION, RunDirectory
from evolve.simplify import prune, sympy_form
from evolve.strategy import Strategy
from evolve.worker import fingerprint, score_rules
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES


def needs_total_steps(rule: str) -> bool:
    """Whether the rule reads a schedule (cos_decay, lin_decay), so its optimizer needs
    ``total_steps``."""
    return compile_rule(rule).uses_schedule


def funnel(strategy: Strategy) -> dict[str, Any]:
    """Hall of fame and champions re-scored on the held-out suite, best held-out first."""
    cfg = strategy.config
    rules: list[str] = []
    for rule in [i.rule for i in strategy.hall_of_fame] + [c["rule"] for c in strategy.champions]:
        if rule not in rules:
            rules.append(rule)
    baselines = {name: KNOWN_RULES[name].rule for name in ("adam", "sgd")}
    results = score_rules(cfg.heldout_suite, cfg.seed, rules + list(baselines.values()))
    by_rule = dict(zip(rules, results[: len(rules)]))
    search = {i.rule: i.score for i in strategy.hall_of_fame}
    search.update({c["rule"]: c["score"] for c in strategy.champions})
    ranking = sorted(
        ({"rule": r, "search_score": search[r], "heldout_score": by_rule[r].score,
          "tasks": by_rule[r].to_dict()["tasks"]} for r in rules),
        key=lambda row: (-row["heldout_score"], -row["search_score"], row["rule"]),
    )
    champions = []
    flags = []
    for c in strategy.champions:
        row = {**c, "heldout_score": by_rule[c["rule"]].score}
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
        "baselines": {name: res.score for name, res in zip(baselines, results[len(rules):])},
    }


def finalize(rd: RunDirectory, strategy: Strategy, *, validate: bool = False,
             counters: dict[str, int] | None = None) -> dict[str, Any]:
    """Simplify the hall of fame, run the funnel (and torch validation), write plots and report.

    ``counters`` are the run's totals (lost and retried evaluations, which the log cannot
    hold when a generation was cut short by lost workers)."""
    hall = rd.read_hall_of_fame()
    for entry in hall:
        entry["simplified"] = prune(entry["rule"], fingerprint)
        entry["sympy"] = sympy_form(entry["simplified"])
        entry["needs_total_steps"] = needs_total_steps(entry["rule"])
    rd.write_hall_of_fame(hall)
    heldout = funnel(strategy)
    rd.write_heldout(heldout)
    validation = _validate_top(rd, heldout) if validate else None
    plots = _plots(rd, strategy)
    report = rd.write_report(_report(rd, strategy, hall, heldout, plots, validation,
                                     counters or {}))
    return {"heldout": heldout, "report": str(report)}


def _validate_top(rd: RunDirectory, heldout: dict, k: int = 2) -> dict:
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
    write_report(results, rd.file(VALIDATION), "validate")
    return results


def _plots(rd: RunDirectory, strategy: Strategy) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = rd.read_log()
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
        rd.save_figure(fig, SCORE_PLOT)
        plt.close(fig)
        names.append(SCORE_PLOT)
    curves = _loss_curves(strategy)
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
        rd.save_figure(fig, LOSS_PLOT)
        plt.close(fig)
        names.append(LOSS_PLOT)
    return names


def _loss_curves(strategy: Strategy):
    """Loss curves at each optimizer's best lr on the first task of the search suite."""
    from fitness.interpreter import StepRunner
    from fitness.tasks import build, get_suite

    cfg = strategy.config
    best = strategy.hall_of_fame[0]
    spec = get_suite(cfg.suite)[0]
    task = build(spec, cfg.seed)
    series = {}
    for label in ("best rule", "adam", "sgd"):
        rule = best.rule if label == "best rule" else KNOWN_RULES[label].rule
        tasks = best.tasks if label == "best rule" else score_rules(cfg.suite, cfg.seed, [rule])[0].tasks
        lr = next((t.best_lr for t in tasks if t.task == spec.name), None)
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


def _report(rd: RunDirectory, strategy: Strategy, hall: list[dict], heldout: dict,
            plots: list[str], validation: dict | None, counters: dict[str, int]) -> str:
    cfg = strategy.config
    log = rd.read_log()
    evaluated = sum(r.get("evaluated", 0) for r in log)
    hits = sum(r.get("cache_hits", 0) for r in log)
    hurdles = sum(r.get("hurdle_rejections", 0) for r in log)
    lost = counters.get("lost", sum(r.get("lost_evaluations") or 0 for r in log))
    retried = counters.get("retried", sum(r.get("retried_evaluations") or 0 for r in log))
    seconds = sum(r.get("seconds", 0) for r in log)
    lines = [
        f"# Campaign report: {rd.path.name}",
        "",
        f"- strategy **{cfg.strategy}** ({cfg.algorithm}), population {cfg.population}, "
        f"{strategy.generation} generations, warm start `{cfg.warm_start}`, seed {cfg.seed}, "
        f"executor {cfg.executor}",
        f"- search suite `{cfg.suite}`, held-out suite `{cfg.heldout_suite}`; scores: 1.0 = tuned "
        "Adam, higher is better",
        f"- candidates {strategy.evaluations}: {evaluated} evaluated, {hits} equivalence-cache "
        f"hits, {hurdles} stopped at the hurdle; {seconds:.1f} s in scoring "
        f"({strategy.evaluations / seconds if seconds else 0:.0f} candidates/s)",
        f"- workers: {lost} evaluations lost with a worker, {retried} retried (a lost "
        "evaluation is never a score)",
        "",
        "## Hall of fame (search suite)",
        "",
        "| # | score | rule | pruned | sympy |",
        "|---|---|---|---|---|",
    ]
    for i, e in enumerate(hall, 1):
        lines.append(f"| {i} | {e['score']:.3f} | `{e['rule']}` | `{e['simplified']}` | "
                     f"`{e['sympy']}` |")
    if any(e.get("needs_total_steps") for e in hall):
        lines += ["", "Rules that read `cos_decay` or `lin_decay` need `total_steps` when "
                  "exported (`MyOpt(params, lr=..., total_steps=N)`)."]
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
                  f"Top held-out rules against adam and sgd: `{VALIDATION}/validate.md` "
                  f"(table) and `{VALIDATION}/*.png` (curves)."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


__all__ = ["finalize", "funnel", "needs_total_steps"]
