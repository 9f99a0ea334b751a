"""Replay one rule of an ``evolve benchmark`` run the way the fidelity stages train it.

``evolve benchmark`` trains one ``nn.Module`` at a time with the exported optimizer class;
``scripts/fidelity.py`` trains the same tasks as vmapped ensembles
(:func:`fitness.training.real_tier.train_ensemble`). Both draw the same initial weights and
minibatches and run the same schedule at the same rates, so the two differ only in the order
of floating-point sums. This retrains one rule of a benchmark run as an ensemble at the run's
own rates and seeds and prints, per task and rate, the largest relative difference between the
two paths' per-seed validation and test losses, and the rate each path's validation loss
chooses. Where the difference is at rounding level the two paths agree; where it is large,
training amplified last-bit differences, and one run's figure on that task is no surer than
that difference (the same holds between two CPUs).

    python scripts/ensemble_replay.py BENCH_DIR [--optimizer LABEL] [--tasks a,b] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evolve.errors import UserError  # noqa: E402
from scripts.benchmark_repeats import load  # noqa: E402


def rule_of(results: dict, label: str | None) -> tuple[str, str]:
    """(label, rule text) of the run's optimizer ``label``, or of its first rule."""
    rules = [o for o in results.get("optimizers", []) if o.get("kind") == "rule"]
    if not rules:
        raise ValueError("the run holds no evolved rule to replay (only torch optimizers)")
    if label is None:
        return rules[0]["label"], rules[0]["rule"]
    for o in rules:
        if o["label"] == label:
            return o["label"], o["rule"]
    raise ValueError(f"no rule labelled {label!r} in the run; its rules: "
                     + ", ".join(repr(o["label"]) for o in rules))


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None if a is None and b is None else float("inf")  # diverged on one path only
    return abs(a - b) / max(abs(b), 1e-30)


def replay(results: dict, label: str | None, tasks: list[str] | None) -> dict:
    """Per task: per rate the two paths' per-seed losses and their largest relative
    differences, and the rate each path's validation loss chooses with its mean test loss."""
    from evolve.bench.uncertainty import chosen_row, run_seeds
    from fitness.training.real_tasks import as_real_task
    from fitness.training.real_tier import train_ensemble
    from fitness.training.torch_tasks import make_tasks, torch_threads
    from primitives.program import compile_rule

    label, rule = rule_of(results, label)
    names = list(results["tasks"]) if tasks is None else tasks
    unknown = [t for t in names if t not in results["tasks"]]
    if unknown:
        raise ValueError(f"task(s) {', '.join(unknown)} not in the run; its tasks: "
                         + ", ".join(results["tasks"]))
    seeds = run_seeds(results)  # a usage error for results that keep no per-seed losses
    config = results.get("config", {})
    torch_tasks = make_tasks(quick=bool(config.get("quick")))
    program = compile_rule(rule)
    out = {"optimizer": label, "rule": rule, "tasks": {}}
    with torch_threads(1):  # as the benchmark trains
        for name in names:
            module = results["tasks"][name]["results"][label]["sweep"]
            runs = train_ensemble(as_real_task(torch_tasks[name]), program,
                                  [s["lr"] for s in module], seeds,
                                  config.get("schedule", "cosine"))
            ensemble = []
            for s in module:
                mine = {r.seed: r for r in runs if r.lr == float(s["lr"])}
                ensemble.append({"lr": s["lr"], "val_losses": [mine[k].val_loss for k in seeds],
                                 "test_losses": [mine[k].test_loss for k in seeds]})
            rows = []
            for m, e in zip(module, ensemble):
                row = {"lr": m["lr"], "seeds": seeds,
                       "module_val": m["val_losses"], "module_test": m["test_losses"],
                       "ensemble_val": e["val_losses"], "ensemble_test": e["test_losses"]}
                for part in ("val", "test"):
                    diffs = [_rel(a, b) for a, b in zip(row[f"ensemble_{part}"],
                                                        row[f"module_{part}"])]
                    known = [d for d in diffs if d is not None]
                    row[f"max_rel_{part}"] = max(known) if known else None
                rows.append(row)
            chosen, test = {}, {}
            for path, sweep in (("module", module), ("ensemble", ensemble)):
                best = chosen_row(sweep, range(len(seeds)))
                chosen[path] = best["lr"] if best else None
                test[path] = sum(best["test_losses"]) / len(seeds) if best else None
            out["tasks"][name] = {"rates": rows, "chosen": chosen, "test_at_chosen": test}
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return "diverged on one path" if value == float("inf") else f"{value:.2e}"


def report(out: dict) -> str:
    lines = [f"Replay of {out['optimizer']!r} ({out['rule']}): the benchmark's one module at a "
             "time against the fidelity stages' ensemble, same seeds, batches and rates.", "",
             "| task | lr | largest relative difference, validation | test |",
             "|---|---:|---:|---:|"]
    for name, t in out["tasks"].items():
        for row in t["rates"]:
            lines.append(f"| {name} | {row['lr']:.3g} | {_fmt(row['max_rel_val'])} | "
                         f"{_fmt(row['max_rel_test'])} |")
    lines += ["", "| task | rate chosen, module | ensemble | mean test loss there, module | "
              "ensemble |", "|---|---:|---:|---:|---:|"]
    for name, t in out["tasks"].items():
        c, test = t["chosen"], t["test_at_chosen"]
        cells = [f"{c[p]:.3g}" if c[p] is not None else "—" for p in ("module", "ensemble")]
        cells += [f"{test[p]:.4f}" if test.get(p) is not None else "—"
                  for p in ("module", "ensemble")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="an evolve benchmark folder or its benchmark.json")
    parser.add_argument("--optimizer", default=None,
                        help="the label of the rule to replay [the run's first rule]")
    parser.add_argument("--tasks", default=None, help="comma list [every task of the run]")
    parser.add_argument("--json", action="store_true", help="print the replay as JSON")
    args = parser.parse_args(argv)
    try:
        results = load(args.run)
        out = replay(results, args.optimizer,
                     [t for t in args.tasks.split(",") if t] if args.tasks else None)
    except (ValueError, UserError) as err:
        parser.error(str(err))
    print(json.dumps(out, indent=1) if args.json else report(out).rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
