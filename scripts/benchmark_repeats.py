"""How much of a benchmark's verdict is the seeds': one benchmark repeated on other seed sets.

Run ``evolve benchmark`` two or more times with the same optimizers and tasks and different
``--first-seed`` (0, 3, 6 for three sets of 3 seeds), then pass the ``benchmark.json`` files
(or their folders):

    python scripts/benchmark_repeats.py RUN_A RUN_B [RUN_C ...] [--json]

For each optimizer: its geometric-mean test-loss ratio to tuned Adam in every run (the figure
`evolve benchmark` prints), their geometric mean, and the spread of its log ratio over the
runs. For each task: how far one optimizer's log ratio moves between runs (the seeds' noise,
the mean over optimizers of the standard deviation over runs) against how far the optimizers'
means lie apart (the standard deviation over optimizers of the mean over runs, which still
holds noise / sqrt(runs)). A task whose noise is as large as the spread between optimizers
cannot order them; a difference between two optimizers smaller than about twice the noise of
the summary is not one a single run can show.

One run with many seeds answers the same question without rerunning anything:

    python scripts/benchmark_repeats.py RUN --subsets 3 [--json]

computes every optimizer's figure on each subset of 3 of the run's seeds (84 subsets of 9),
each rate chosen again on the subset's validation loss (evolve.bench.uncertainty.subsets): the
spread of the figure a 3-seed benchmark prints, how often each optimizer comes first, and how
often the leaders are ahead of one another. ``--combine RUN_A RUN_B`` reads two runs of the
same tasks and seeds whose reference (Adam) trained to the same losses as one, so new rules
benchmarked alone can be set beside the baselines of an earlier run.

Whether the benchmark's splits choose rates well, blind to which optimizer wins:

    python scripts/benchmark_repeats.py RUN [RUN ...] --rate-cost [--json]

prints, per task and run, what choosing each rate on the validation split costs on the test
split (evolve.bench.uncertainty.rate_choice_cost): the geometric mean over the optimizers of
the test loss at the chosen rate over the best test loss among the rates tried, and the worst.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.bench.benchmark import task_log_ratios, versus_reference  # noqa: E402
from evolve.bench.uncertainty import rate_choice_cost, ratios_on, run_seeds, subsets  # noqa: E402
from evolve.errors import UserError  # noqa: E402


def load(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "benchmark.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:  # main turns it into a usage error (exit 2)
        raise ValueError(f"cannot read a benchmark's results from {path}: {exc}") from None


def _trained(summary: dict) -> list[tuple]:
    """What one optimizer's cell of a benchmark trained to: each rate's per-seed losses (the
    timings, which differ between runs of the same training, left out)."""
    return [(row["lr"], row.get("seeds"), row.get("val_losses"), row.get("test_losses"))
            for row in summary.get("sweep", [])]


def combine(runs: list[dict], reference: str = "adam") -> tuple[dict, list[dict]]:
    """One benchmark from several of the same tasks and seeds in which ``reference`` trained to
    the same losses (runs on one machine and version are deterministic): the baselines of one
    run beside rules benchmarked in another, each ratio still against the same reference runs.
    Each later run adds the labels the earlier ones lack; a label an earlier run has with other
    results (a ``RUN:best`` whose folder held another rule then) is left out. Returns the
    combined run and, per run, the labels it gave and those left out. ValueError when the runs
    differ in tasks or seeds, or the reference trained differently."""
    out = copy.deepcopy(runs[0])
    sources = [{"run": 1, "labels": [o["label"] for o in out["optimizers"]], "left_out": []}]
    tasks = set(out["tasks"])
    seeds = run_seeds(out)
    for i, run in enumerate(runs[1:], 2):
        if set(run["tasks"]) != tasks or run_seeds(run) != seeds:
            raise ValueError(f"run {i} has other tasks or seeds than the first: runs combine "
                             "only when they trained the same tasks on the same seeds")
        for task in sorted(tasks):
            mine, first = run["tasks"][task]["results"], out["tasks"][task]["results"]
            if reference not in mine or reference not in first or \
                    _trained(mine[reference]) != _trained(first[reference]):
                raise ValueError(f"{reference} did not train to the same losses on {task} in run "
                                 f"{i} and the first (another machine, version or settings?): "
                                 "the runs cannot be combined")
        labels = {o["label"] for o in out["optimizers"]}
        source: dict = {"run": i, "labels": [], "left_out": []}
        for opt in run["optimizers"]:
            label = opt["label"]
            if label in labels:
                if any(_trained(run["tasks"][t]["results"][label])
                       != _trained(out["tasks"][t]["results"][label]) for t in tasks):
                    source["left_out"].append(label)
                continue
            out["optimizers"].append(opt)
            source["labels"].append(label)
            for task in tasks:
                out["tasks"][task]["results"][label] = run["tasks"][task]["results"][label]
        sources.append(source)
    out["summary"] = versus_reference(out, reference)
    return out, sources


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def analyse(runs: list[dict], reference: str = "adam") -> dict:
    """The per-optimizer and per-task spread over ``runs`` (each a benchmark results dict)."""
    if len(runs) < 2:
        raise ValueError("give at least two benchmark runs")
    label_sets = [[o["label"] for o in r["optimizers"]] for r in runs]
    labels = [x for x in label_sets[0] if all(x in s for s in label_sets[1:]) and x != reference]
    tasks = [t for t in runs[0]["tasks"] if all(t in r["tasks"] for r in runs[1:])]
    if not labels or not tasks or any(reference not in s for s in label_sets):
        raise ValueError(f"the runs share no optimizer besides {reference}, no task, or one "
                         f"lacks {reference}")
    logs = {lab: [task_log_ratios({"tasks": {t: r["tasks"][t] for t in tasks}}, lab, reference)
                  for r in runs] for lab in labels}
    optimizers = {}
    for lab in labels:
        per_run = [statistics.fmean(run.values()) for run in logs[lab]]  # log2 of the score
        optimizers[lab] = {"loss_ratios": [2.0 ** -v for v in per_run],
                           "loss_ratio": 2.0 ** -statistics.fmean(per_run),
                           "log_ratio_std": _std(per_run) * math.log(2)}
    per_task = {}
    for t in tasks:
        noise = statistics.fmean(_std([run[t] for run in logs[lab]]) for lab in labels)
        means = [statistics.fmean(run[t] for run in logs[lab]) for lab in labels]
        per_task[t] = {"noise": noise * math.log(2), "between": _std(means) * math.log(2)}
    summary_noise = statistics.fmean(o["log_ratio_std"] for o in optimizers.values())
    return {"runs": len(runs), "reference": reference,
            "seeds": [(r["config"].get("first_seed", 0), r["config"]["seeds"]) for r in runs],
            "optimizers": optimizers, "tasks": per_task, "summary_noise": summary_noise,
            "summary_between": _std([math.log(o["loss_ratio"]) for o in optimizers.values()])}


def markdown(result: dict) -> str:
    sets = [f"{a}..{a + n - 1}" for a, n in result["seeds"]]
    lines = [f"Seed sets: {', '.join(sets)}. Test-loss ratio to tuned {result['reference']} "
             "(geometric mean over tasks; lower is better), each run and their geometric mean; "
             "the spread is the standard deviation of the natural log of the ratio over the "
             "runs.", "",
             "| optimizer | " + " | ".join(f"seeds {x}" for x in sets) + " | all runs | spread |",
             "|---|" + "---:|" * (len(sets) + 2)]
    for lab, o in sorted(result["optimizers"].items(), key=lambda kv: kv[1]["loss_ratio"]):
        cells = " | ".join(f"{v:.3f}" for v in o["loss_ratios"])
        lines.append(f"| {lab} | {cells} | **{o['loss_ratio']:.3f}** | {o['log_ratio_std']:.3f} |")
    lines += ["", f"Spread of one optimizer's summary over the runs (mean): "
              f"{result['summary_noise']:.3f}; spread between the optimizers' means: "
              f"{result['summary_between']:.3f} (natural log).", "",
              "| task | seeds' noise | spread between optimizers |", "|---|---:|---:|"]
    for t, row in result["tasks"].items():
        lines.append(f"| {t} | {row['noise']:.3f} | {row['between']:.3f} |")
    return "\n".join(lines) + "\n"


def analyse_subsets(run: dict, k: int, reference: str = "adam", bar: float | None = None,
                    baselines: list[str] | None = None) -> dict:
    """Every optimizer's figure on all of ``run``'s seeds and the spread over its k-seed
    subsets (see evolve.bench.uncertainty.subsets). With ``bar`` and ``baselines``: for every
    other optimizer, the share of subsets in which its ratio is at most ``bar`` and below every
    baseline's (a target such as "10% below Adam and ahead of every baseline")."""
    result = subsets(run, k, reference)
    everything = ratios_on(run, range(result["seeds"]), reference)
    for label, row in result["optimizers"].items():
        row["all_seeds"] = everything[label]
    if bar is not None:
        ratios = result["ratios"]
        unknown = [b for b in baselines or [] if b not in ratios]
        if not baselines or unknown:
            raise ValueError(f"--bar needs --baselines from the run's optimizers "
                             f"({', '.join(ratios)}); unknown: "
                             f"{', '.join(unknown) or 'none given'}")
        held = {}
        for label, values in ratios.items():
            if label in baselines:
                continue
            hits = [v <= bar and all(v < ratios[b][i] for b in baselines)
                    for i, v in enumerate(values)]
            held[label] = sum(hits) / len(hits)
        result["bar"] = {"ratio": bar, "baselines": baselines, "held": held}
    return result


def markdown_subsets(result: dict, leaders: int = 5) -> str:
    n, k, ref = result["seeds"], result["k"], result["reference"]
    rows = sorted(result["optimizers"].items(), key=lambda kv: kv[1]["all_seeds"])
    lines = []
    for src in result.get("combined", []):
        lines.append(f"Run {src['run']} ({src['path']}): {', '.join(src['labels']) or 'nothing new'}"
                     + (f"; left out, as another result of a label above: "
                        f"{', '.join(src['left_out'])}" if src["left_out"] else "") + ".")
    if lines:
        lines.append("")
    lines += [f"Test-loss ratio to tuned {ref} (geometric mean over tasks; lower is better) on "
             f"all {n} seeds, and over the {result['draws']} subsets of {k} seeds (each rate "
             f"chosen again on the subset): median, {result['level']:.0%} interval, the "
             "standard deviation of its natural log, and the share of subsets in which it is "
             "first.", "",
             f"| optimizer | {n} seeds | median of {k} | interval | spread (ln) | first in |",
             "|---|---:|---:|:---:|---:|---:|"]
    for label, o in rows:
        lines.append(f"| {label} | **{o['all_seeds']:.3f}** | {o['median']:.3f} | "
                     f"{o['low']:.3f} – {o['high']:.3f} | {o['ln_std']:.3f} | "
                     f"{o['first']:.0%} |")
    top = [label for label, _ in rows[:leaders]]
    lines += ["", f"Share of the {k}-seed subsets in which the row is ahead of the column "
              "(a lower ratio):", "",
              "| | " + " | ".join(top) + " |", "|---|" + "---:|" * len(top)]
    for a in top:
        cells = ["" if a == b else f"{result['optimizers'][a]['ahead'][b]:.0%}" for b in top]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    bar = result.get("bar")
    if bar:
        lines += ["", f"Share of the {k}-seed subsets in which the optimizer's ratio is at most "
                  f"{bar['ratio']:g} and below every baseline's ({', '.join(bar['baselines'])}):",
                  "", "| optimizer | bar held |", "|---|---:|"]
        for label, share in sorted(bar["held"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {label} | {share:.0%} |")
    return "\n".join(lines) + "\n"


def markdown_rate_cost(names: list[str], costs: list[dict]) -> str:
    """One row a task, one column pair a run: the geometric mean over optimizers of the cost of
    choosing the rate on validation, and the worst optimizer's."""
    tasks = [t for t in costs[0]["tasks"] if all(t in c["tasks"] for c in costs[1:])]
    lines = ["Test loss at the rate chosen on validation over the best test loss among the "
             "rates tried (1.000 = validation chose as test would; geometric mean over the "
             f"optimizers, and the worst; clipped at {costs[0]['clip']:g}):", "",
             "| task | " + " | ".join(f"{n}: mean | worst" for n in names) + " |",
             "|---|" + "---:|---:|" * len(names)]
    for t in tasks:
        cells = " | ".join(f"{c['tasks'][t]['geomean']:.3f} | {c['tasks'][t]['max']:.3f}"
                           for c in costs)
        lines.append(f"| {t} | {cells} |")
    lines.append("| **every cell** | " + " | ".join(f"**{c['geomean']:.3f}** | "
                                                    for c in costs) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="benchmark.json files or their folders")
    parser.add_argument("--reference", default="adam")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    parser.add_argument("--subsets", type=int, metavar="K", default=None,
                        help="one run: the figures on every subset of K of its seeds")
    parser.add_argument("--bar", type=float, default=None, metavar="RATIO",
                        help="with --subsets: how often each optimizer is at most RATIO and "
                             "ahead of every --baselines optimizer")
    parser.add_argument("--baselines", default="", help="comma-separated labels, for --bar")
    parser.add_argument("--combine", action="store_true",
                        help="with --subsets: read several runs of the same tasks and seeds, "
                             "whose reference trained to the same losses, as one (baselines "
                             "from one run, new rules from another)")
    parser.add_argument("--rate-cost", action="store_true",
                        help="per task and run, what choosing the rate on validation costs on "
                             "test")
    args = parser.parse_args(argv)
    try:
        if args.subsets is None and (args.bar is not None or args.combine):
            raise ValueError("--bar and --combine go with --subsets")
        if args.rate_cost and args.subsets is not None:
            raise ValueError("--rate-cost and --subsets are separate questions; ask one")
        if args.rate_cost:
            result = {p: rate_choice_cost(load(p)) for p in args.runs}
            text = markdown_rate_cost(list(result), list(result.values()))
        elif args.subsets is not None:
            if len(args.runs) != 1 and not args.combine:
                raise ValueError("--subsets reads one run (with more seeds than K); --combine "
                                 "reads several of the same seeds as one")
            run, sources = (combine([load(p) for p in args.runs], args.reference)
                            if args.combine else (load(args.runs[0]), None))
            baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
            result = analyse_subsets(run, args.subsets, args.reference, args.bar, baselines)
            if sources:
                result["combined"] = [{**src, "path": path}
                                      for src, path in zip(sources, args.runs)]
            text = markdown_subsets(result)
        else:
            result = analyse([load(p) for p in args.runs], args.reference)
            text = markdown(result)
    except (ValueError, UserError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(json.dumps(result, indent=2) if args.json else text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
