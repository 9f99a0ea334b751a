"""After a campaign: the final selection, simplify the hall of fame, the funnel, report, plots.

Selection (:mod:`evolve.tiers`): the real-data tier's best rules are re-scored on fresh seeds and
the smallest of the confirmed ones that score within ``select_tolerance`` of the best is the
campaign's answer (``selection.json``, ``RUN:best``). The hall of
fame is simplified (pruned on probe inputs, sympy) and deduplicated by simplified form; the
Pareto front of tier-2 score against rule size is listed as PySR does.

Funnel (Lion search): the hall of fame and every best-so-far champion are also re-scored on the
held-out proxy suite, whose task families were never used in search; the report flags
meta-overfitting: generations where the champion's search score went up while its held-out
score went down. (How well each stage predicts real training is measured by
``scripts/fidelity.py``.)

A run stopped by a budget goes through all of it too; one stopped by a signal gets
:func:`stop_report`: plots and a report of what it has, without scoring anything again. The
plots themselves are :mod:`evolve.plots`'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from evolve.executors import Executor
from evolve.plots import front, write_plots
from evolve.rundir import VALIDATION, RunDirectory
from evolve.simplify import prune, smaller_form, sympy_form
from evolve.strategy import Strategy
from evolve.tiers import (
    RealEntry,
    confirmation_seeds,
    real_suite,
    select,
    warmup_variant,
)
from evolve.worker import fingerprint, proxy_suite, score_rules, warm_real_tier
from fitness.score import Result, json_safe
from primitives.grammar import parse
from primitives.program import needs_total_steps
from primitives.rules import KNOWN_RULES


def funnel(strategy: Strategy) -> dict[str, Any]:
    """Hall of fame and champions re-scored on the held-out suite, best held-out first."""
    cfg = strategy.config
    rules: list[str] = []
    for rule in [i.rule for i in strategy.hall_of_fame] + [c["rule"] for c in strategy.champions]:
        if rule not in rules:
            rules.append(rule)
    baselines = {name: KNOWN_RULES[name].rule for name in ("adam", "sgd")}
    results = score_rules(proxy_suite(cfg.heldout_suite, cfg.schedule), cfg.seed,
                          rules + list(baselines.values()))
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
             counters: dict[str, int] | None = None, executor: Executor | None = None,
             stopped: str | None = None,
             stages: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The final selection, the simplified hall of fame, the funnel (and torch validation),
    plots and report. ``executor`` scores the confirmations (default: in this process).

    ``counters`` are the run's totals (lost and retried evaluations, which the log cannot
    hold when a generation was cut short by lost workers). ``stopped`` says why a run ends
    before its last generation (a budget); ``stages`` hears each stage as it begins."""
    stage = stages or (lambda _: None)
    cfg = strategy.config
    if strategy.real.entries:
        stage(f"final selection: re-scoring tier 2's top {min(cfg.confirm, len(strategy.real.entries))} "
              "rules on fresh seeds" + (", with their warmup variants" if cfg.warmup_betas else ""))
    selection = confirm_and_select(rd, strategy, executor)
    stage("simplifying the hall of fame")
    hall = simplified_hall(rd.read_hall_of_fame())
    rd.write_hall_of_fame(hall)
    stage(f"funnel: the hall of fame and champions on the held-out suite '{cfg.heldout_suite}'")
    heldout = {**funnel(strategy), "generation": strategy.generation}
    rd.write_heldout(heldout)
    if validate:
        stage("torch validation of the top held-out rules")
    validation = _validate_top(rd, heldout) if validate else None
    stage("plots and report")
    rule = selection["rule"] if selection else (heldout["ranking"][0]["rule"]
                                                if heldout["ranking"] else hall[0]["rule"])
    plots = write_plots(rd, rd.read_log(), hall, heldout=heldout, suite=cfg.suite,
                        seed=strategy.instance_seed, rule=rule)
    report = rd.write_report(_report(rd, strategy, hall, heldout, plots, validation,
                                     counters or {}, selection, stopped))
    return {"heldout": heldout, "selection": selection, "report": str(report), "plots": plots}


def stop_report(rd: RunDirectory, strategy: Strategy, counters: dict[str, int],
                reason: str) -> list[str]:
    """The report and plots of a run stopped by a signal, from what it has (nothing is scored
    again, nothing simplified: it must be quick); returns the plots' names."""
    hall = rd.read_hall_of_fame()
    plots = write_plots(rd, rd.read_log(), hall)
    rd.write_report(_report(rd, strategy, hall, None, plots, None, counters, None, reason))
    return plots


def simplified_hall(hall: list[dict]) -> list[dict]:
    """Each entry with its pruned and sympy forms; one entry per simplified form (the first,
    which is the better: the hall is best first)."""
    out, seen = [], set()
    for entry in hall:
        entry["simplified"] = prune(entry["rule"], fingerprint)
        if entry["simplified"] in seen:
            continue
        seen.add(entry["simplified"])
        entry["sympy"] = sympy_form(entry["simplified"])
        entry["needs_total_steps"] = needs_total_steps(entry["rule"])
        out.append(entry)
    return out


def confirm_and_select(rd: RunDirectory, strategy: Strategy,
                       executor: Executor | None = None) -> dict[str, Any] | None:
    """Re-score tier 2's top ``confirm`` rules on fresh seeds, and each of them times a warmup
    (``warmup_betas``) on tier 2's seeds and the fresh ones, and write ``selection.json``: the
    ranking of :func:`evolve.tiers.select`, its first rule the answer."""
    cfg = strategy.config
    board = strategy.real.leaderboard()
    if not board:
        return None
    top = board[: cfg.confirm]
    seeds = confirmation_seeds(cfg)

    def score(rules: list[str], suite: str) -> list:
        warm_real_tier(suite)
        return executor.map(rules, suite) if executor is not None \
            else score_rules(suite, cfg.seed, rules)

    variants = warmup_entries(top, cfg.warmup_betas, board, strategy.generation,
                              lambda rules: score(rules, real_suite(cfg)), cfg.real_softmin)
    confirmations = {}
    if top:
        confirmed = top + [v for v, _ in variants]
        results = score([e.rule for e in confirmed], real_suite(cfg, seeds))
        confirmations = {e.fingerprint: r for e, r in zip(confirmed, results)}
    ranking = select(board[: max(cfg.confirm, cfg.hall_of_fame)] + [v for v, _ in variants],
                     confirmations, cfg.real_softmin, (cfg.real_seeds, cfg.confirm_seeds),
                     cfg.select_tolerance)
    base = {v.rule: rule for v, rule in variants}
    for row in ranking:
        row["warmup_of"] = base.get(row["rule"])
    pareto = [{**p, "simplified": prune(p["rule"], fingerprint)}
              for p in front([{"rule": e.rule, "size": e.size, "score": e.score} for e in board])]
    plural = "s" if len(seeds) != 1 else ""
    betas = ", ".join(f"{b:g}" for b in cfg.warmup_betas)
    how = (f"the real-data tier's top {len(top)} of {len(board)} rules"
           + (f", and each times the warmup ema(1.0, b) for b = {betas}," if variants else "")
           + f" confirmed on {len(seeds)} fresh seed{plural}; of those within "
           f"{cfg.select_tolerance:.0%} of the best final score, the smallest"
           if top else "the real-data tier's best rule")
    selection = {"rule": ranking[0]["rule"], "simplified": prune(ranking[0]["rule"], fingerprint),
                 "how": how, "generation": strategy.generation,
                 "confirm_seeds": seeds, "select_tolerance": cfg.select_tolerance,
                 "warmup_betas": list(cfg.warmup_betas),
                 "tier_seeds": list(range(cfg.real_seeds)), "tasks": list(cfg.real_tasks),
                 "schedule": cfg.schedule, "ranking": ranking, "pareto": pareto}
    selection = json_safe(selection)
    rd.write_selection(selection)
    return selection


def warmup_entries(top: list[RealEntry], betas: list[float], board: list[RealEntry],
                   generation: int, score: Callable[[list[str]], list[Result]],
                   softmin: float) -> list[tuple[RealEntry, str]]:
    """Each rule of ``top`` times the warmup ``ema(1.0, b)`` for each of ``betas``, scored on
    tier 2's seeds by ``score``, as (entry, the rule it was made from); a variant that behaves
    as a rule of ``board`` (or an earlier variant) is left out, since it was scored already.

    Why: an adaptive rule with a short second-moment memory takes steps of nearly full size
    from the first iteration, where a warmup helps (RAdam's argument), and the search rarely
    builds one (docs/scoring.md, "The final selection")."""
    seen = {e.fingerprint for e in board}
    made: list[tuple[str, str, str]] = []
    for entry in top:
        for beta in betas:
            rule = warmup_variant(entry.rule, beta)
            fp = fingerprint(rule)
            if fp not in seen:
                seen.add(fp)
                made.append((rule, fp, entry.rule))
    if not made:
        return []
    results = score([rule for rule, _, _ in made])
    return [(RealEntry.from_result(rule, fp, generation, parse(rule).size(), math.nan, result,
                                   softmin), base)
            for (rule, fp, base), result in zip(made, results)]


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


def _pruned_note(entry: dict) -> str:
    """The report's note on the smaller form of the answer or a Pareto point, if it has one."""
    pruned = smaller_form(entry)
    return f" (pruned: `{pruned}`)" if pruned else ""


def _selection_lines(selection: dict | None) -> list[str]:
    if not selection:
        return ["## Real-data tier", "", "Tier 2 scored no rule (it is off, or no candidate "
                "reached `real_min_score`); `RUN:best` is the held-out funnel's first rule.", ""]
    lines = ["## The campaign's answer: the real-data tier (tier 2)", "",
             f"`RUN:best` = `{selection['rule']}`{_pruned_note(selection)} — "
             f"{selection['how']}. Tier-2 tasks: "
             + ", ".join(selection["tasks"]) + f"; {selection['schedule']} schedule. Scores are "
             "test-loss ratios against tuned Adam (1.0 = Adam, higher is better), the soft "
             "minimum over the tasks (`real_softmin`, docs/scoring.md); final = geometric mean "
             "of the tier-2 and confirmation scores, each weighted by its seeds; rank 1 is the "
             "smallest confirmed rule within `select_tolerance` of the best final score.", "",
             "| rank | final | tier 2 | confirmation | proxy | size | rule |",
             "|---|---|---|---|---|---|---|"]
    for i, row in enumerate(selection["ranking"], 1):
        def fmt(v):
            return f"{v:.3f}" if v is not None else "—"
        made = " (a warmup variant)" if row.get("warmup_of") else ""
        lines.append(f"| {i} | {fmt(row['final_score'])} | {fmt(row['real_score'])} | "
                     f"{fmt(row['confirm_score'])} | {fmt(row['proxy_score'])} | {row['size']} | "
                     f"`{row['rule']}`{made} |")
    lines += ["", "### Pareto front: tier-2 score against rule size", "",
              "| size | tier 2 | rule |", "|---|---|---|"]
    lines += [f"| {p['size']} | {p['score']:.3f} | `{p['rule']}`{_pruned_note(p)} |"
              for p in selection["pareto"]]
    return lines + [""]


def _report(rd: RunDirectory, strategy: Strategy, hall: list[dict], heldout: dict | None,
            plots: list[str], validation: dict | None, counters: dict[str, int],
            selection: dict | None = None, stopped: str | None = None) -> str:
    cfg = strategy.config
    log = rd.read_log()
    evaluated = sum(r.get("evaluated", 0) for r in log)
    hits = sum(r.get("cache_hits", 0) for r in log)
    hurdles = sum(r.get("hurdle_rejections", 0) for r in log)
    lost = counters.get("lost", sum(r.get("lost_evaluations") or 0 for r in log))
    retried = counters.get("retried", sum(r.get("retried_evaluations") or 0 for r in log))
    seconds = sum(r.get("seconds", 0) for r in log)
    lines = [f"# Campaign report: {rd.path.name}", ""]
    if stopped:
        lines += [f"**Stopped at generation {strategy.generation} of {cfg.generations}** "
                  f"({stopped}); `evolve resume {rd.path}` continues it exactly"
                  + ("" if heldout else "; the final selection and the held-out funnel run "
                     "when it ends") + ".", ""]
    lines += [
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
        f"- real-data tier: {len(strategy.real.entries)} rules trained (the best "
        f"{cfg.real_k} new ones of each generation with a proxy score of at least "
        f"{cfg.real_min_score:g}); proxy instances redrawn every {cfg.redraw_every or 'never'} "
        "generations",
        "",
        *_selection_lines(selection),
        "## Hall of fame (tier-2 rules first by tier-2 score, then the proxy's best)",
        "",
        "| # | tier | score | proxy | rule | pruned | sympy |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, e in enumerate(hall, 1):
        proxy = e.get("proxy_score", e["score"])
        lines.append(f"| {i} | {e.get('tier', 'proxy')} | {e['score']:.3f} | {proxy:.3f} | "
                     f"`{e['rule']}` | `{e.get('simplified', '—')}` | `{e.get('sympy', '—')}` |")
    if any(e.get("needs_total_steps") for e in hall):
        lines += ["", "Rules that read `cos_decay` or `lin_decay` need `total_steps` when "
                  "exported (`MyOpt(params, lr=..., total_steps=N)`)."]
    lines += _funnel_lines(heldout) if heldout else []
    if validation:
        lines += ["", "## Torch validation (the funnel's last stage)", "",
                  f"Top held-out rules against adam and sgd: `{VALIDATION}/validate.md` "
                  f"(table) and `{VALIDATION}/*.png` (curves)."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _funnel_lines(heldout: dict) -> list[str]:
    lines = [
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
    return lines


__all__ = ["finalize", "funnel", "stop_report"]
