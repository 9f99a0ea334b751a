"""Fidelity: how well each selection stage ranks rules the way real training on unseen tasks does.

For a set of diverse rules (known optimizers, variants of Adam, rules from campaigns' halls of
fame and funnels, random rules that train at all), every stage scores every rule:

* ``search``    the Numba proxy suite evolution optimises;
* ``heldout``   the held-out proxy suite (the old funnel's check);
* ``real``      tier 2: torch training on the real-data tier's tasks, ranked as the campaign's
                selection ranks them (the soft minimum of the tasks' log-ratios,
                :func:`evolve.tiers.selection_score`); ``real (mean)`` is their plain mean;
* ``confirm``   (optional) tier 2 on the campaign's confirmation seeds; with ``real`` it gives
                ``final``, the seed-weighted score by which a campaign's final selection
                chooses ``RUN:best`` among its confirmed rules (:func:`evolve.tiers.final_score`);

and the **reference** is the same treatment on the tasks of ``evolve benchmark`` (8 networks on
data no tier uses; trained as ensembles, which gives the numbers of the benchmark's own loop).
Every score is a geometric-mean loss ratio against tuned Adam on its tasks (1.0 = Adam).

Prints, per stage, the Spearman rank correlation with the reference over all rules, over the
good ones (the reference within 10% of Adam or better) and over the top ones (10% better or
more), and what each stage would pick; with the ``repeat`` stage also, per task of the
reference, how well seeds 3-5 rank the rules as seeds 0-2 do (which tasks can order the top at
all); and, over the good rules, which task of tier 2 predicts which task of the reference (a
tier-2 task that ranks them against a benchmark task shows a negative cell). Results are cached
per rule and stage configuration (``--cache``), so a rerun after a change recomputes only the
stages that changed.

    python scripts/fidelity.py [--workers 2] [--limit N] [--json] [--out docs/results/fidelity]

``--probe FILE`` scores only the rules listed in FILE (one a line as every command takes them:
a known name, rule text or RUN:best; ``#`` comments) on the chosen stages, through the same
cache, and prints each rule's stage scores and per-task log2 ratios to Adam (``probe.md`` and
``probe.json`` with ``--out``): how to ask where a handful of rules sit without adding them to
the set the correlations are measured on.

    python scripts/fidelity.py --probe rules.txt --stages real,reference [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / "build" / "numba-cache"))
os.environ.setdefault("EVOLVE_CACHE_DIR", str(ROOT / "build" / "evolve-cache"))

STAGES = ("search", "heldout", "real", "reference")
# asked for with --stages: the reference on three other seeds (3, 4, 5), whose agreement with
# the reference is the reference's own repeatability, the ceiling of every stage; and tier 2 on
# the campaign's confirmation seeds, which with ``real`` gives ``final``, the score a campaign's
# final selection ranks its confirmed rules by (evolve.tiers.final_score)
OPTIONAL_STAGES = ("repeat", "confirm")
TIER2_STAGES = ("real", "confirm")  # tier 2 on its own seeds and on the confirmation seeds
# the stages trained on the benchmark's tasks, and their seeds
REFERENCE_SEEDS = {"reference": (0, 1, 2), "repeat": (3, 4, 5)}
# the rules the correlations are also taken over, by their reference score against Adam's: the
# good ones (within 10% of Adam or better) and the top ones (10% better or more, the plateau
# where the campaigns' picks and the published rules sit)
GOOD, TOP = 0.9, 1.1
# campaigns whose rules join the set: two of the founding build (proxy-selected funnels) and the
# two default campaigns of the real-data tier (their tier-2 hall of fame)
RESULT_DIRS = ("docs/results/adam-warm", "docs/results/random-10min",
               "docs/results/campaign-adam", "docs/results/campaign-random")


# ----------------------------------------------------------------------------------- rules


def adam_variants() -> list[str]:
    """Adam with other betas and with the bias correction dropped: the family a tuned Adam
    search explores, where small differences must be ranked right."""
    out = []
    for b1, b2 in ((0.5, 0.999), (0.8, 0.9996), (0.8, 0.99), (0.95, 0.999), (0.9, 0.9),
                   (0.9, 0.9999), (0.7, 0.995), (0.99, 0.999)):
        out.append(f"div(ema_bc(g, {b1}), add(sqrt(ema_bc(square(g), {b2})), 1e-08))")
    out.append("div(ema(g, 0.9), add(sqrt(ema(square(g), 0.999)), 1e-08))")
    out.append("div(ema(g, 0.9), add(sqrt(ema_bc(square(g), 0.999)), 1e-08))")
    return out


def campaign_rules(folders: tuple[str, ...] = RESULT_DIRS, per_run: int = 6) -> list[str]:
    """Rules of campaigns, ``per_run`` from each run directory found: the tier-2 hall of fame's
    best where the run has one, else evenly spaced along its held-out funnel's ranking (so the
    set spans what a funnel saw, not ten near-copies of its winner)."""
    rules = []
    for folder in folders:
        hall_path, funnel_path = ROOT / folder / "hall_of_fame.json", ROOT / folder / "heldout.json"
        hall = json.loads(hall_path.read_text()) if hall_path.is_file() else []
        tier2 = [e["rule"] for e in hall if e.get("tier") == "real"]
        if tier2:
            rules += tier2[:per_run]
        elif funnel_path.is_file():
            ranking = [row["rule"] for row in json.loads(funnel_path.read_text())["ranking"]]
            step = max(1, len(ranking) // per_run)
            rules += ranking[::step][:per_run]
    return rules


def random_rules(n: int, seed: int = 7) -> list[str]:
    """Random rules whose search score shows they train at all (cheap to check)."""
    import numpy as np

    from fitness.evaluate import Evaluator
    from primitives.grammar import to_text
    from primitives.random_rules import random_tree

    rng = np.random.default_rng(seed)
    evaluator = Evaluator(suite="hurdle", seed=0, hurdle=False)
    out: list[str] = []
    while len(out) < n:
        text = to_text(random_tree(rng, int(rng.integers(2, 5))))
        if _score(evaluator.evaluate_one(text)) > 0.55 and text not in out:
            out.append(text)
    return out


def collect(limit: int | None, runs: tuple[str, ...] = RESULT_DIRS) -> list[str]:
    from primitives.grammar import parse, to_text
    from primitives.rules import KNOWN_RULES

    # adam first (every summary compares with it), then the families in turn, so that a
    # --limit keeps a mix of known, Adam-like, random and evolved rules
    families = [[r.rule for r in KNOWN_RULES.values()], adam_variants(), random_rules(12),
                campaign_rules(runs, per_run=8)]
    texts = [KNOWN_RULES["adam"].rule]
    while any(families):
        for family in families:
            if family:
                texts.append(family.pop(0))
    seen, out = set(), []
    for text in texts:
        canonical = to_text(parse(text))
        if canonical not in seen:
            seen.add(canonical)
            out.append(canonical)
    return out[:limit] if limit else out


def _score(result) -> float:
    # fitness.score.Result has .score; the older proxy Result has .aggregate
    value = getattr(result, "score", None)
    return float(result.aggregate if value is None else value)


# -------------------------------------------------------------------------------- stages


def stage_config(stage: str) -> dict:
    """What a stage's numbers depend on (its cache key): for the torch stages the tasks' configs
    (data checksums and the digest of the training code included), the seeds, the search and
    torch's version."""
    from fitness import lr_grid
    from fitness.training import real_tier

    if stage in ("search", "heldout"):
        import fitness.tasks as tk

        return {"stage": stage, "tasks": tk.TASKS_VERSION,
                "specs": [spec.config(0) for spec in tk.get_suite(stage)],
                "evaluate": _hash_files(["fitness/evaluate.py"]),
                "kernels": _hash_files(["fitness/kernels.py"])}
    import torch

    # each task's config carries the digest of the code that decides its numbers; another torch
    # trains differently (the CPU is recorded beside each result instead, and reported)
    return {"stage": stage, "tier": real_tier.TIER_VERSION, "search": lr_grid.DEFAULT.to_dict(),
            "seeds": list(_stage_seeds(stage)), "torch": torch.__version__,
            "tasks": [t.config() for t in _stage_tasks(stage)]}


def stage_key(stage: str) -> str:
    """The cache key of a stage's results: a digest of :func:`stage_config`."""
    return hashlib.sha256(json.dumps(stage_config(stage), sort_keys=True).encode()).hexdigest()[:16]


def _stage_tasks(stage: str) -> list:
    from fitness.training.real_tasks import as_real_task, builtin_tasks
    from fitness.training.real_tier import RealTierConfig
    from fitness.training.torch_tasks import make_tasks

    if stage in REFERENCE_SEEDS:
        return [as_real_task(t) for t in make_tasks().values()]
    tasks = builtin_tasks()
    return [tasks[name] for name in RealTierConfig().tasks]


def _stage_seeds(stage: str) -> tuple[int, ...]:
    from evolve.config import CampaignConfig
    from evolve.tiers import confirmation_seeds
    from fitness.training.real_tier import RealTierConfig

    if stage == "confirm":
        return tuple(confirmation_seeds(CampaignConfig()))
    return REFERENCE_SEEDS.get(stage, RealTierConfig().seeds)


def _hash_files(paths: list[str]) -> str:
    return hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in paths)).hexdigest()[:12]


_WORKER: dict = {}


def _stage_scorer(stage: str):
    if stage in _WORKER:
        return _WORKER[stage]
    import torch

    torch.set_num_threads(1)
    cache = os.environ["EVOLVE_CACHE_DIR"]
    if stage in ("search", "heldout"):
        from fitness.evaluate import Evaluator

        ev = Evaluator(suite=stage, seed=0, hurdle=False, cache=False)
        scorer = lambda rule: _pack(ev.evaluate_one(rule))  # noqa: E731
    else:
        from fitness.training.real_tier import RealTier, RealTierConfig

        tier = RealTier(RealTierConfig(seeds=_stage_seeds(stage)), cache_dir=cache,
                        tasks=_stage_tasks(stage))
        scorer = lambda rule: _pack(tier.evaluate_one(rule))  # noqa: E731
    _WORKER[stage] = scorer
    return scorer


def _pack(result) -> dict:
    tasks = {}
    for t in result.tasks:
        value = getattr(t, "log_ratio", None)
        tasks[t.task] = value if value is not None else t.score
    return {"score": _score(result), "tasks": tasks}


def _job(args: tuple[str, str]) -> tuple[str, str, dict, float]:
    rule, stage = args
    started = time.perf_counter()
    out = _stage_scorer(stage)(rule)
    return rule, stage, out, time.perf_counter() - started


# --------------------------------------------------------------------------------- report


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:  # too few, or a constant: no ranking
        return float("nan")
    return float(spearmanr(a, b).statistic)


def analyse(rules: list[str], table: dict[str, dict[str, dict]],
            before: dict[str, dict[str, dict]] | None = None) -> dict:
    ref = [table[r]["reference"]["score"] for r in rules]
    adam_ref = next(table[r]["reference"]["score"] for r in rules
                    if r == _adam())
    good = [i for i, v in enumerate(ref) if v >= GOOD * adam_ref]
    top = [i for i, v in enumerate(ref) if v >= TOP * adam_ref]
    out = {"rules": len(rules), "good_rules": len(good), "top_rules": len(top), "stages": {}}
    best_ref = max(range(len(rules)), key=lambda i: ref[i])
    stages = ["search", "heldout", "real (mean)", "real"]
    stages += [s for s in OPTIONAL_STAGES if all(s in table[r] for r in rules)]
    if "confirm" in stages:
        stages.append("final")
    for stage in stages:
        values = [_stage_score(table[r], stage) for r in rules]
        out["stages"][stage] = _rank_stats(rules, values, ref, good, top, best_ref)
    for stage, rows in (before or {}).items():
        # the proxy stages as they were before issue 12, on the rules they were measured on
        have = [i for i, r in enumerate(rules) if r in rows]
        if len(have) >= 3:
            sub_good = [k for k, i in enumerate(have) if i in good]
            sub_top = [k for k, i in enumerate(have) if i in top]
            sub_best = max(range(len(have)), key=lambda k: ref[have[k]])
            out["stages"][f"{stage} (before)"] = dict(
                _rank_stats([rules[i] for i in have], [rows[rules[i]]["score"] for i in have],
                            [ref[i] for i in have], sub_good, sub_top, sub_best),
                rules=len(have))
    out["reference_best"] = {"rule": rules[best_ref], "score": ref[best_ref]}
    out["reference_adam"] = adam_ref
    if "repeat" in stages:
        out["tasks"] = task_repeatability(rules, table, good, top)
    out["transfer"] = task_transfer(rules, table, good)
    if "tasks" in out:  # the transfer table's ceiling row: each task's repeat over the good rules
        out["transfer"]["repeat"] = {task: t["spearman_good"] for task, t in out["tasks"].items()}
    return out


def task_repeatability(rules: list[str], table: dict[str, dict[str, dict]],
                       good: list[int], top: list[int]) -> dict[str, dict]:
    """Per task of the reference: how well its log2 ratios on seeds 3-5 (the repeat) rank the
    rules as seeds 0-2 do, over all rules, the good ones and the top ones, and how far apart the
    good and the top rules lie there (the standard deviation of their log2 ratios). A task
    whose repeat agrees poorly over the top rules cannot order them: its share of their
    benchmark figures is the seeds' draw."""
    out = {}
    for task in table[rules[0]]["reference"]["tasks"]:
        ref = [table[r]["reference"]["tasks"][task] for r in rules]
        rep = [table[r]["repeat"]["tasks"][task] for r in rules]
        out[task] = {"spearman_all": spearman(rep, ref),
                     "spearman_good": spearman([rep[i] for i in good], [ref[i] for i in good]),
                     "spearman_top": spearman([rep[i] for i in top], [ref[i] for i in top]),
                     "spread_good": _spread([ref[i] for i in good]),
                     "spread_top": _spread([ref[i] for i in top])}
    return out


def _tier2_task_value(row: dict[str, dict], task: str) -> float:
    """A rule's log2 ratio on one tier-2 task as its final selection sees it: the leaderboard's
    and the confirmation's, weighted by their seeds as :func:`evolve.tiers.final_score` weighs
    the two scores (the leaderboard's alone without the confirm stage)."""
    from evolve.config import CampaignConfig

    if "confirm" not in row:
        return row["real"]["tasks"][task]
    seeds = (CampaignConfig.real_seeds, CampaignConfig.confirm_seeds)
    return ((seeds[0] * row["real"]["tasks"][task] + seeds[1] * row["confirm"]["tasks"][task])
            / sum(seeds))


def task_transfer(rules: list[str], table: dict[str, dict[str, dict]],
                  good: list[int]) -> dict[str, dict[str, float]]:
    """Which tier-2 task predicts which task of the reference: over the good rules, the
    Spearman correlation of each tier-2 task's log2 ratios (the final selection's seeds) with
    each reference task's; a row ``tier 2`` for the stage's whole score (``final`` with the
    confirm stage, else ``real``); :func:`analyse` adds, with the repeat stage, a row ``repeat``
    for the reference task on seeds 3-5, the most any row can reach. A negative cell is a tier-2
    task that ranks the good rules against that task of the benchmark."""
    rows = [table[rules[i]] for i in good]
    ref_tasks = list(rows[0]["reference"]["tasks"]) if rows else []
    out: dict[str, dict[str, float]] = {}

    def correlate(values: list[float]) -> dict[str, float]:
        return {t: spearman(values, [r["reference"]["tasks"][t] for r in rows])
                for t in ref_tasks}

    for task in (rows[0]["real"]["tasks"] if rows else {}):
        out[task] = correlate([_tier2_task_value(r, task) for r in rows])
    whole = "final" if all("confirm" in r for r in rows) else "real"
    out["tier 2"] = correlate([_stage_score(r, whole) for r in rows])
    return out


def _spread(values: list[float]) -> float:
    """The (population) standard deviation of ``values``; nan for fewer than two."""
    return statistics.pstdev(values) if len(values) >= 2 else float("nan")


def _cell(value: float, digits: int = 3) -> str:
    """A table figure; a dash where it is undefined (too few rules to rank)."""
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def _stage_score(row: dict[str, dict], stage: str) -> float:
    """A rule's score on a stage; ``real`` and ``confirm`` as the campaign's selection ranks
    them, ``final`` as its final selection ranks a confirmed rule (both weighted by seeds)."""
    from evolve.config import CampaignConfig
    from evolve.tiers import final_score, selection_value

    if stage == "real (mean)":
        return row["real"]["score"]
    if stage == "final":
        return final_score(_stage_score(row, "real"), _stage_score(row, "confirm"),
                           (CampaignConfig.real_seeds, CampaignConfig.confirm_seeds))
    if stage not in TIER2_STAGES:
        return row[stage]["score"]
    return selection_value(row[stage]["score"], list(row[stage]["tasks"].values()),
                           CampaignConfig.real_softmin)


def _rank_stats(rules: list[str], values: list[float], ref: list[float], good: list[int],
                top: list[int], best_ref: int) -> dict:
    """How a stage's scores rank the rules against the reference, and what it would pick."""
    pick = max(range(len(rules)), key=lambda i: values[i])
    order = sorted(range(len(rules)), key=lambda i: -values[i])
    return {
        "rules": len(rules),
        "spearman_all": spearman(values, ref),
        "spearman_good": spearman([values[i] for i in good], [ref[i] for i in good]),
        "spearman_top": spearman([values[i] for i in top], [ref[i] for i in top]),
        "pick": rules[pick],
        "pick_reference": ref[pick],
        "reference_best_ranked": order.index(best_ref) + 1,
        "top5_reference_mean": sum(ref[i] for i in order[:5]) / 5,
    }


def _adam() -> str:
    from primitives.grammar import parse, to_text
    from primitives.rules import KNOWN_RULES

    return to_text(parse(KNOWN_RULES["adam"].rule))


def markdown(summary: dict, rules: list[str], table: dict) -> str:
    lines = ["# Fidelity of the selection stages", "",
             f"{summary['rules']} rules; reference = the 8 tasks of `evolve benchmark` (3 seeds, "
             "same lr search and cosine schedule for every rule; 1.0 = tuned Adam). "
             f"\"good\" = the {summary['good_rules']} rules the reference scores within 10% of "
             f"Adam or better; \"top\" = the {summary['top_rules']} it scores 10% above Adam or "
             "more.", "",
             *([("Evaluations by CPU (the same rule scores a little differently on another): "
                 + ", ".join(f"{cpu} {n}" for cpu, n in summary["cpus"].items()) + "."), ""]
               if summary.get("cpus") else []),
             "| stage | rules | Spearman, all rules | Spearman, good rules | Spearman, top "
             "rules | its pick scores (reference) | rank it gives the reference's best | mean "
             "reference of its top 5 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for stage, s in summary["stages"].items():
        lines.append(f"| {stage} | {s['rules']} | {_cell(s['spearman_all'])} | "
                     f"{_cell(s['spearman_good'])} | {_cell(s['spearman_top'])} | "
                     f"{s['pick_reference']:.3f} | {s['reference_best_ranked']} | "
                     f"{s['top5_reference_mean']:.3f} |")
    lines += ["", f"Reference best: `{summary['reference_best']['rule']}` "
              f"({summary['reference_best']['score']:.3f}).", "",
              "| rule | search | heldout | real (mean) | real | reference |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rules, key=lambda r: -table[r]["reference"]["score"]):
        cells = [_stage_score(table[r], s) for s in ("search", "heldout", "real (mean)", "real",
                                                      "reference")]
        lines.append(f"| `{r}` | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    if summary.get("tasks"):
        lines += ["", "Which of the reference's tasks can order the rules: per task, the Spearman "
                  "correlation of its log2 ratios on seeds 3-5 (the repeat) with those on seeds "
                  "0-2, and how far apart the rules lie there (the standard deviation of their "
                  "log2 ratios on seeds 0-2).", "",
                  "| task | repeat agrees, all rules | good rules | top rules | spread, good "
                  "rules | spread, top rules |",
                  "|---|---:|---:|---:|---:|---:|"]
        for task, t in summary["tasks"].items():
            lines.append(f"| {task} | " + " | ".join(_cell(t[k], 2) for k in (
                "spearman_all", "spearman_good", "spearman_top", "spread_good", "spread_top"))
                + " |")
    transfer = summary.get("transfer") or {}
    if transfer:
        ref_tasks = list(next(iter(transfer.values())))
        lines += ["", f"Which tier-2 task predicts which task of the reference: over the "
                  f"{summary['good_rules']} good rules, the Spearman correlation of a tier-2 "
                  "task's log2 ratios (seeds weighted as the final selection weighs them) with "
                  "a reference task's; `tier 2` is the whole score the campaign selects by, "
                  "`repeat` the reference task on seeds 3-5 (the most a row can reach). A "
                  "negative cell: that tier-2 task ranks the good rules against that benchmark "
                  "task.", "",
                  "| tier 2 / reference | " + " | ".join(ref_tasks) + " |",
                  "|---|" + "---:|" * len(ref_tasks)]
        for task, cells in transfer.items():
            name = f"**{task}**" if task in ("tier 2", "repeat") else task
            lines.append(f"| {name} | " + " | ".join(f"{cells[t]:+.2f}" if not math.isnan(
                cells[t]) else "—" for t in ref_tasks) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- main


def evaluate(rules: list[str], stages: list[str], cache_path: Path,
             workers: int) -> tuple[dict[str, dict[str, dict]], dict[tuple[str, str], str]]:
    """Every rule's result on every stage: from the cache where its stage key matches, else
    computed in ``workers`` processes and appended to the cache. Also returns where (which CPU)
    each result was computed."""
    from evolve.bench.report import cpu_name

    keys = {s: stage_key(s) for s in STAGES + OPTIONAL_STAGES}
    table: dict[str, dict[str, dict]] = {r: {} for r in rules}
    cpus: dict[tuple[str, str], str] = {}  # where each evaluation ran (a CPU moves scores a bit)
    if cache_path.is_file():
        for line in cache_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row["rule"] in table and row["key"] == keys.get(row["stage"]):
                table[row["rule"]][row["stage"]] = row["result"]
                cpus[row["rule"], row["stage"]] = row.get("cpu", "not recorded")
    todo = [(r, s) for s in stages for r in rules if s not in table[r]]
    print(f"{len(rules)} rules, {len(todo)} stage evaluations to run", file=sys.stderr)
    if not todo:
        return table, cpus
    # warm the caches (Numba, Adam baselines) once before the workers start
    for stage in {s for _, s in todo}:
        _stage_scorer(stage)(_adam())
    started = time.perf_counter()
    here = cpu_name()
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with cache_path.open("a") as cache, mp.get_context("spawn").Pool(workers) as pool:
        for i, (rule, stage, result, seconds) in enumerate(pool.imap_unordered(_job, todo), 1):
            table[rule][stage] = result
            cpus[rule, stage] = here
            cache.write(json.dumps({"rule": rule, "stage": stage, "key": keys[stage],
                                    "result": result, "seconds": seconds, "cpu": here}) + "\n")
            cache.flush()
            elapsed = time.perf_counter() - started
            print(f"[{i}/{len(todo)}] {stage:9s} {result['score']:.3f} {seconds:5.1f}s "
                  f"eta {elapsed / i * (len(todo) - i):.0f}s  {rule[:70]}", file=sys.stderr)
    return table, cpus


def read_probe(path: Path) -> list[str]:
    """The rules of a probe file in canonical text, one reference a line as every command takes
    them (a known name, rule text, RUN:best, ...; blank lines and ``#`` comments skipped,
    duplicates dropped); ValueError naming the file and line for anything else."""
    from evolve.errors import UserError
    from evolve.rundir.refs import resolve_rule

    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ValueError(f"cannot read the probe file {path}: {err.strerror or err}") from None
    rules: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            rule = resolve_rule(text).text
        except UserError as err:
            raise ValueError(f"{path}:{number}: {err}") from None
        if rule not in rules:
            rules.append(rule)
    if not rules:
        raise ValueError(f"{path} holds no rules; write one rule a line: a known name, rule "
                         "text or RUN:best")
    return rules


def probe_rows(rules: list[str], stages: list[str], table: dict) -> list[dict]:
    """Per rule: each stage's score (tier 2's stages also as the selection ranks them) and its
    tasks' log2 ratios to tuned Adam; with ``real`` and ``confirm``, the ``final`` score."""
    rows = []
    for rule in rules:
        row: dict = {"rule": rule, "stages": {}}
        for stage in stages:
            result = table[rule][stage]
            entry = {"score": result["score"], "tasks": result["tasks"]}
            if stage in TIER2_STAGES:
                entry["selection"] = _stage_score(table[rule], stage)
            row["stages"][stage] = entry
        if all(s in stages for s in TIER2_STAGES):
            row["final"] = _stage_score(table[rule], "final")
        rows.append(row)
    return rows


def probe_markdown(rows: list[dict], stages: list[str]) -> str:
    lines = ["# Fidelity probe", "",
             "Each rule's score on each stage (1.0 = tuned Adam, higher is better; `real` and "
             "`confirm` are tier 2's plain mean on its seeds and on the confirmation seeds, "
             "`(selection)` as the campaign's selection ranks them, `final` as its final "
             "selection ranks a confirmed rule), then per stage its tasks' log2 test-loss "
             "ratios to tuned Adam (positive = better than Adam; clipped as each stage clips "
             "them).", ""]
    # (heading, stage, field): tier 2's stages twice, their plain mean and selection value
    columns = [c for st in stages for c in (
        [(st, st, "score")]
        + ([(f"{st} (selection)", st, "selection")] if st in TIER2_STAGES else []))]
    final = "final" in rows[0]
    lines += ["| rule | " + " | ".join(c[0] for c in columns) + (" | final" if final else "")
              + " |", "|---|" + "---:|" * (len(columns) + final)]
    for row in rows:
        lines.append(f"| `{row['rule']}` | " + " | ".join(
            f"{row['stages'][st][field]:.3f}" for _, st, field in columns)
            + (f" | {row['final']:.3f}" if final else "") + " |")
    for st in stages:
        tasks = list(rows[0]["stages"][st]["tasks"])
        lines += ["", f"## {st}: per task", "",
                  "| rule | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for row in rows:
            values = row["stages"][st]["tasks"]
            lines.append(f"| `{row['rule']}` | "
                         + " | ".join(f"{values[t]:+.2f}" for t in tasks) + " |")
    return "\n".join(lines) + "\n"


def report_probe(rules: list[str], stages: list[str], table: dict, out: str | None,
                 as_json: bool) -> int:
    rows = probe_rows(rules, stages, table)
    text = probe_markdown(rows, stages)
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "probe.md").write_text(text)
        (folder / "probe.json").write_text(json.dumps({"stages": stages, "rules": rows},
                                                      indent=1))
    print(json.dumps(rows, indent=1) if as_json else text.rstrip("\n"))
    return 0


def _read_before(path: Path) -> dict[str, dict[str, dict]]:
    rows: dict[str, dict[str, dict]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows.setdefault(row["stage"], {})[row["rule"]] = row["result"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N rules")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma list; add 'repeat' for the reference on seeds 3-5 (its "
                             "repeatability, the ceiling of every stage) and 'confirm' for tier "
                             "2 on the campaign's confirmation seeds (with 'real' it gives "
                             "'final', the score of the campaign's final selection)")
    parser.add_argument("--cache", default=str(ROOT / "build" / "fidelity-cache.jsonl"))
    parser.add_argument("--out", default=None, help="folder for fidelity.md and fidelity.json")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--runs", default=",".join(RESULT_DIRS),
                        help="run directories whose rules join the set (comma list)")
    parser.add_argument("--before", default=str(ROOT / "docs/results/fidelity/before.jsonl"),
                        help="earlier proxy-stage scores (JSON lines rule/stage/result) to rank "
                             "beside today's, as '<stage> (before)'")
    parser.add_argument("--probe", default=None, metavar="FILE",
                        help="score only the rules in FILE (one a line) on --stages and print "
                             "their per-task figures; no correlations")
    args = parser.parse_args(argv)
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in STAGES + OPTIONAL_STAGES]
    if unknown:  # before collecting the rules, which scores random ones
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(STAGES + OPTIONAL_STAGES)}")
    if args.probe:
        try:
            rules = read_probe(Path(args.probe))
        except ValueError as err:
            parser.error(str(err))
    else:
        rules = collect(args.limit, tuple(r for r in args.runs.split(",") if r))
    table, cpus = evaluate(rules, stages, Path(args.cache), args.workers)
    if args.probe:
        return report_probe(rules, stages, table, args.out, args.json)
    complete = [r for r in rules if all(s in table[r] for s in STAGES)]
    summary = analyse(complete, table, _read_before(Path(args.before)))
    used = [cpus[r, st] for r in complete for st in table[r] if (r, st) in cpus]
    summary["cpus"] = {cpu: used.count(cpu) for cpu in sorted(set(used))}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fidelity.md").write_text(markdown(summary, complete, table))
        order = STAGES + OPTIONAL_STAGES  # a rule's stages in one order, whatever the cache's
        (out / "fidelity.json").write_text(json.dumps({"summary": summary, "rules": {
            r: {st: table[r][st] for st in order if st in table[r]} for r in complete}},
            indent=1))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for stage, s in summary["stages"].items():
            print(f"{stage:8s} spearman all {s['spearman_all']:.3f}  good {s['spearman_good']:.3f}"
                  f"  top {s['spearman_top']:.3f}  pick -> reference {s['pick_reference']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
