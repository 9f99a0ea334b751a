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


def _chosen(rows: list[dict], key: str) -> float | None:
    """The rate whose mean ``key`` loss over seeds is lowest, none of them diverged."""
    ok = [r for r in rows if all(v is not None for v in r[key])]
    return min(ok, key=lambda r: sum(r[key]) / len(r[key]))["lr"] if ok else None


def _rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None if a is None and b is None else float("inf")  # diverged on one path only
    return abs(a - b) / max(abs(b), 1e-30)


def replay(results: dict, label: str | None, tasks: list[str] | None) -> dict:
    """Per task: per rate the two paths' per-seed losses and their largest relative
    differences, and the rate each path's validation loss chooses with its mean test loss."""
    import torch

    from fitness.training.real_tasks import as_real_task
    from fitness.training.real_tier import train_ensemble
    from fitness.training.torch_tasks import make_tasks
    from primitives.program import compile_rule

    label, rule = rule_of(results, label)
    names = list(results["tasks"]) if tasks is None else tasks
    unknown = [t for t in names if t not in results["tasks"]]
    if unknown:
        raise ValueError(f"task(s) {', '.join(unknown)} not in the run; its tasks: "
                         + ", ".join(results["tasks"]))
    config = results.get("config", {})
    torch_tasks = make_tasks(quick=bool(config.get("quick")))
    program = compile_rule(rule)
    out = {"optimizer": label, "rule": rule, "tasks": {}}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark trains
    try:
        for name in names:
            sweep = [s for s in results["tasks"][name]["results"][label]["sweep"]
                     if s.get("val_losses")]
            seeds = sweep[0]["seeds"]
            runs = train_ensemble(as_real_task(torch_tasks[name]), program,
                                  [s["lr"] for s in sweep], seeds,
                                  config.get("schedule", "cosine"))
            rows = []
            for s in sweep:
                mine = {r.seed: r for r in runs if r.lr == float(s["lr"])}
                row = {"lr": s["lr"], "seeds": seeds,
                       "module_val": s["val_losses"], "module_test": s["test_losses"],
                       "ensemble_val": [mine[k].val_loss for k in seeds],
                       "ensemble_test": [mine[k].test_loss for k in seeds]}
                for part in ("val", "test"):
                    diffs = [_rel(e, m) for e, m in zip(row[f"ensemble_{part}"],
                                                        row[f"module_{part}"])]
                    known = [d for d in diffs if d is not None]
                    row[f"max_rel_{part}"] = max(known) if known else None
                rows.append(row)
            chosen = {path: _chosen(rows, f"{path}_val") for path in ("module", "ensemble")}
            test = {}
            for path, lr in chosen.items():
                row = next((r for r in rows if r["lr"] == lr), None)
                test[path] = sum(row[f"{path}_test"]) / len(seeds) if row else None
            out["tasks"][name] = {"rates": rows, "chosen": chosen, "test_at_chosen": test}
    finally:
        torch.set_num_threads(before)
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
    except ValueError as err:
        parser.error(str(err))
    print(json.dumps(out, indent=1) if args.json else report(out).rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
