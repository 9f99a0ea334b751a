"""Summaries, Markdown tables, JSON and PNG plots shared by `evolve benchmark` and `evolve validate`.

A results dict (what both commands return, and ``results.json`` holds)::

    {"kind": "benchmark" | "validate", "title": str, "config": {...},
     "optimizers": [{"label", "kind", "rule", "source"}, ...],
     "tasks": {name: {"description": str, "lrs": [...], "winner": label | None,
                      "results": {label: summary}}},
     "proxy": {...} | None,
     "summary": {...}, "uncertainty": {...} | None}   # benchmark only

``config`` records the CPU (:func:`cpu_name`). A summary (see :func:`summarize`) gives the best
learning rate (chosen on validation loss), the test loss and accuracy at that rate as mean and
std over seeds, time per run, the mean training curve and the whole sweep, each rate with every
seed's validation and test loss. A learning rate where any seed diverged does not count; an
optimizer with no such rate left is ``diverged`` and shows so in the table. The benchmark's
``summary`` compares every optimizer with tuned Adam, and ``uncertainty``
(:mod:`evolve.bench.uncertainty`) says how much of that the seeds decide.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from fitness.training.torch_tasks import RunResult
from primitives.files import atomic_write, atomic_write_text

METHOD_ALL_SEEDS = ("Each optimizer gets the same learning-rate search (or grid), schedule and "
                    "seeds, every seed at every rate tried; the best rate is chosen on mean "
                    "validation loss and its test loss and accuracy are reported as mean ± std "
                    "over seeds.")
METHOD_SWEEP_THEN_SEEDS = ("Each optimizer runs every learning rate of the same log grid with "
                           "seed 0; the best rate (lowest validation loss) is then run with "
                           "every seed and its test numbers are reported as mean ± std.")


def cpu_name() -> str:
    """The processor's name, recorded with every result: the same seeds on another CPU can
    train differently (last-bit differences between its math kernels grow in chaotic
    training), so figures from two machines differ by more than their seeds say."""
    name = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            name = next((line.split(":", 1)[1].strip() for line in info
                         if line.lower().startswith("model name")), name)
    except OSError:
        pass
    # and the vector instructions torch's kernels use here (AVX2, AVX512, ...)
    return f"{name}, torch kernels {torch.backends.cpu.get_cpu_capability()}"


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def mean_curve(runs: Iterable[RunResult]) -> list[list[float]]:
    """Mean training curve over runs, cut to the shortest one."""
    curves = [r.curve for r in runs if r.curve]
    if not curves:
        return []
    n = min(len(c) for c in curves)
    steps = [c[0] for c in curves[0][:n]]
    losses = np.mean([[p[1] for p in c[:n]] for c in curves], axis=0)
    return [[float(s), float(v)] for s, v in zip(steps, losses)]


def run_to_json(run: RunResult) -> dict:
    return {"lr": run.lr, "seed": run.seed, "diverged": run.diverged, "reason": run.reason,
            "val_loss": _finite(run.val_loss), "test_loss": _finite(run.test_loss),
            "test_acc": run.test_acc, "seconds": run.seconds, "step_seconds": run.step_seconds}


def summarize(sweep: dict[float, list[RunResult]],
              final: list[RunResult] | None = None) -> dict:
    """Summary of one optimizer on one task.

    ``sweep`` maps each learning rate to its runs (one or more seeds). The best rate is the
    lowest mean validation loss among rates where no seed diverged. ``final`` are the runs at
    that rate to report (validate reruns the best rate with more seeds); by default the sweep's.
    """
    rows = []
    best_lr, best_val = None, math.inf
    for lr in sorted(sweep):
        runs = sweep[lr]
        n_div = sum(r.diverged for r in runs)
        val = float(np.mean([r.val_loss for r in runs])) if n_div == 0 else math.inf
        accs = [r.test_acc for r in runs if r.test_acc is not None]
        rows.append({"lr": lr, "val_loss": _finite(val), "n_diverged": n_div,
                     "test_acc": float(np.mean(accs)) if accs and n_div == 0 else None,
                     "reason": next((r.reason for r in runs if r.diverged), ""),
                     # per seed, in seed order (None: that seed diverged): what
                     # evolve.bench.uncertainty resamples to re-choose the rate
                     "seeds": [r.seed for r in runs],
                     "val_losses": [None if r.diverged else _finite(r.val_loss) for r in runs],
                     "test_losses": [None if r.diverged else _finite(r.test_loss)
                                     for r in runs]})
        if val < best_val:
            best_lr, best_val = lr, val
    summary: dict = {"sweep": rows, "best_lr": best_lr, "diverged": best_lr is None}
    if best_lr is None:
        summary.update(test_loss_mean=None, test_loss_std=None, test_acc_mean=None,
                       test_acc_std=None, seconds_mean=None, step_share=None, curve=[],
                       runs=[], reason=rows[0]["reason"] if rows else "")
        return summary
    runs = final if final is not None else sweep[best_lr]
    ok = [r for r in runs if not r.diverged]
    loss_m, loss_s = _mean_std([r.test_loss for r in ok])
    acc_m, acc_s = _mean_std([r.test_acc for r in ok if r.test_acc is not None])
    seconds = [r.seconds for r in runs]
    summary.update(
        test_loss_mean=loss_m, test_loss_std=loss_s, test_acc_mean=acc_m, test_acc_std=acc_s,
        seconds_mean=float(np.mean(seconds)),
        step_share=float(sum(r.step_seconds for r in runs) / max(sum(seconds), 1e-12)),
        n_seeds=len(runs), n_final_diverged=len(runs) - len(ok),
        curve=mean_curve(ok), runs=[run_to_json(r) for r in runs],
    )
    if not ok:  # the best rate on the sweep seed diverged on the other seeds
        summary["diverged"] = True
    return summary


def pick_winner(results: dict[str, dict]) -> str | None:
    """Highest mean test accuracy, ties to the lower test loss; the lowest test loss on tasks
    without an accuracy (regression, reconstruction)."""
    ok = [(label, s) for label, s in results.items() if not s["diverged"]]
    if not ok:
        return None

    def key(kv):
        acc = kv[1].get("test_acc_mean")
        return (round(acc, 6) if acc is not None else 0.0, -kv[1]["test_loss_mean"])

    return max(ok, key=key)[0]


# ----------------------------------------------------------------------------------------------
# Markdown


def _pm(mean: float | None, std: float | None, digits: int, missing: str = "diverged") -> str:
    if mean is None:
        return missing
    return f"{mean:.{digits}f} ± {std or 0.0:.{digits}f}"


def summary_table(summary: dict, uncertainty: dict | None = None) -> list[str]:
    """The benchmark's headline: each optimizer against tuned Adam over all tasks, with the
    figures' spread over resampled seeds when ``uncertainty`` (evolve.bench.uncertainty) has
    it."""
    if not summary:
        return []
    ref = summary["reference"]
    spread = (uncertainty or {}).get("optimizers", {})
    level = f"{(uncertainty or {}).get('level', 0.9):.0%}"
    head = f"| optimizer | test-loss ratio vs {ref} |"
    rule = "| --- | ---: |"
    if spread:
        head += f" {level} interval, seeds resampled | first in |"
        rule += " :---: | ---: |"
    lines = [f"## Against tuned {ref}", "",
             f"Geometric mean over tasks of the test-loss ratio to tuned {ref} (each task's ratio "
             "clipped to [0.5, 2], a diverged task counted as 4x worse): below 1 is better than "
             f"{ref}.", "",
             head + f" tasks better than {ref} | diverged tasks |", rule + " ---: | ---: |"]
    rows = sorted(summary["optimizers"].items(), key=lambda kv: kv[1]["loss_ratio"])
    for label, row in rows:
        cells = f"| {label} | {row['loss_ratio']:.3f} |"
        if spread:
            s = spread.get(label)
            if s is None:
                cells += " — | — |"
            else:  # the reference's own ratio is 1 on every draw: no interval
                interval = "—" if label == ref else f"{s['low']:.3f} – {s['high']:.3f}"
                cells += f" {interval} | {s['first']:.0%} |"
        lines.append(cells + f" {row['tasks_better']}/{row['tasks']} | "
                     f"{row['diverged_tasks']} |")
    if spread:
        lines += ["", resampling_note(uncertainty)]
    return lines + [""]


def resampling_note(uncertainty: dict) -> str:
    """What the interval and "first in" columns mean, and who leads whom how often."""
    n, draws = uncertainty["seeds"], uncertainty["draws"]
    how = (f"every possible draw, {draws} in all" if uncertainty.get("exact")
           else f"{draws} random draws")
    spread = uncertainty["optimizers"]
    top = sorted(spread, key=lambda label: spread[label]["median"])[:2]
    lead = ""
    if len(top) == 2:
        share = spread[top[0]]["ahead"][top[1]]
        lead = (f" The two lowest medians: {top[0]} is ahead of {top[1]} in {share:.0%} of the "
                "draws.")
    return (f"Seeds resampled: {n} of the {n} seeds drawn with replacement, the same draw for "
            f"every optimizer and task, each rate chosen again on the drawn seeds ({how}); "
            f"\"first in\": the share of draws in which the optimizer has the "
            f"lowest ratio. With few seeds this understates how much another set of seeds "
            f"would move the figures (`scripts/benchmark_repeats.py --subsets` measures it on "
            f"a run with more seeds).{lead}")


def markdown(results: dict) -> str:
    """The report as Markdown: one table per task, a tally of wins, the optimizers' sources."""
    lines = [f"# {results.get('title', 'Results')}", ""]
    config = results.get("config", {})
    if config:
        lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in config.items()) + ".")
        lines.append("")
    if results.get("note"):
        lines += [f"Note: {results['note']}.", ""]
    lines += summary_table(results.get("summary") or {}, results.get("uncertainty"))
    lines.append(results.get("method", METHOD_ALL_SEEDS)
                 + " ★ marks the task's winner (highest accuracy; lowest loss where there is "
                 "no accuracy); bold loss is the lowest.")
    lines.append("")
    wins: dict[str, int] = {o["label"]: 0 for o in results.get("optimizers", [])}
    for name, task in results["tasks"].items():
        lines += [f"## {name}", "", task.get("description", ""), ""]
        lines.append("| optimizer | best lr | test accuracy | test loss | s / run | step share |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        losses = [s["test_loss_mean"] for s in task["results"].values() if not s["diverged"]]
        best_loss = min(losses) if losses else None
        for label, s in task["results"].items():
            if s["diverged"]:
                reason = s.get("reason") or "NaN/inf at every learning rate"
                lines.append(f"| {label} | — | diverged | diverged ({reason[:60]}) | | |")
                continue
            acc = _pm(s["test_acc_mean"], s["test_acc_std"], 4, missing="—")
            loss = _pm(s["test_loss_mean"], s["test_loss_std"], 4)
            if label == task.get("winner"):
                acc = f"**{acc}** ★"
                wins[label] = wins.get(label, 0) + 1
            if s["test_loss_mean"] == best_loss:
                loss = f"**{loss}**"
            lrs = task.get("lrs") or []
            edge = " (grid edge)" if len(lrs) > 1 and s["best_lr"] in (min(lrs), max(lrs)) else ""
            lines.append(f"| {label} | {s['best_lr']:.3g}{edge} | {acc} | {loss} | "
                         f"{s['seconds_mean']:.2f} | {s['step_share']:.0%} |")
        lines.append("")
    lines += ["## Wins", "", "| optimizer | tasks won |", "| --- | ---: |"]
    lines += [f"| {label} | {n} |" for label, n in sorted(wins.items(), key=lambda kv: -kv[1])]
    lines.append("")
    proxy = results.get("proxy")
    if proxy:
        lines += ["## Numba proxy suites (score 1.0 = tuned Adam, higher is better)", ""]
        if proxy.get("note"):
            lines += [proxy["note"], ""]
        scores = proxy.get("scores") or {}
        if scores:
            lines += ["| optimizer | search suite | held-out suite | rule |",
                      "| --- | ---: | ---: | --- |"]
            for label, entry in scores.items():
                shown = ["failed" if entry.get(k) is None else f"{entry[k]:.3f}"
                         for k in ("score", "heldout")]
                lines.append(f"| {label} | {shown[0]} | {shown[1]} | `{entry.get('rule', '')}` |")
            lines.append("")
    lines += ["## Optimizers", "", "| label | runs as | rule / source |", "| --- | --- | --- |"]
    for o in results.get("optimizers", []):
        what = f"`{o['rule']}`" if o.get("rule") else o.get("source", "")
        runs_as = "exported class" if o["kind"] == "rule" else "torch baseline"
        lines.append(f"| {o['label']} | {runs_as} | {what} |")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# files


def _clean(obj):
    """JSON cannot hold NaN/inf: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def to_json(results: dict) -> str:
    return json.dumps(_clean(results), indent=2, allow_nan=False)


def _axes_grid(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _styles(results: dict) -> dict[str, str]:
    """Exported rules dashed, torch baselines solid: a rule that matches its baseline exactly
    (lion and rule:lion) then still shows as two lines."""
    return {o["label"]: "--" if o["kind"] == "rule" else "-" for o in results.get("optimizers", [])}


def plot_curves(results: dict, path: Path) -> None:
    """Training loss against step at each optimizer's best learning rate, one panel per task."""
    tasks = results["tasks"]
    styles = _styles(results)
    plt, fig, axes = _axes_grid(len(tasks))
    for ax, (name, task) in zip(axes, tasks.items()):
        for label, s in task["results"].items():
            if s["diverged"] or not s["curve"]:
                ax.plot([], [], linestyle="none", label=f"{label}: diverged")
                continue
            steps, losses = zip(*s["curve"])
            ax.plot(steps, losses, label=f"{label} (lr {s['best_lr']:.3g})", linewidth=1.6,
                    linestyle=styles.get(label, "-"))
        ax.set_yscale("log")
        ax.set_title(f"{name}: training loss at best lr")
        ax.set_xlabel(task.get("curve_unit", "step"))
        ax.set_ylabel("training loss (mean over seeds)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_sensitivity(results: dict, path: Path) -> None:
    """Validation loss against learning rate, one panel per task; x marks a diverged rate."""
    tasks = results["tasks"]
    styles = _styles(results)
    plt, fig, axes = _axes_grid(len(tasks))
    for ax, (name, task) in zip(axes, tasks.items()):
        finite = [r["val_loss"] for s in task["results"].values() for r in s["sweep"]
                  if r["val_loss"] is not None]
        top = max(finite) * 1.5 if finite else 1.0
        for label, s in task["results"].items():
            lrs = [r["lr"] for r in s["sweep"]]
            vals = [r["val_loss"] if r["val_loss"] is not None else np.nan for r in s["sweep"]]
            (line,) = ax.plot(lrs, vals, marker="o", markersize=4, label=label, linewidth=1.4,
                              linestyle=styles.get(label, "-"))
            bad = [r["lr"] for r in s["sweep"] if r["val_loss"] is None]
            if bad:
                ax.plot(bad, [top] * len(bad), linestyle="none", marker="x", markersize=8,
                        color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name}: lr sensitivity (x = diverged)")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)


def _save(plt, fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    finally:
        plt.close(fig)


def write_report(results: dict, out: Path, stem: str) -> dict[str, str]:
    """Write ``stem.md``, ``stem.json``, ``stem_curves.png`` and ``stem_lr.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json",
             "curves": out / f"{stem}_curves.png", "lr_sensitivity": out / f"{stem}_lr.png"}
    atomic_write_text(paths["markdown"], markdown(results))
    atomic_write_text(paths["json"], to_json(results))
    plot_curves(results, paths["curves"])
    plot_sensitivity(results, paths["lr_sensitivity"])
    return {k: str(v) for k, v in paths.items()}


__all__ = ["METHOD_ALL_SEEDS", "METHOD_SWEEP_THEN_SEEDS", "markdown", "mean_curve", "pick_winner", "plot_curves", "plot_sensitivity",
           "run_to_json", "summarize", "to_json", "write_report"]
