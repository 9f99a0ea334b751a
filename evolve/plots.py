"""The campaign's plots: scores over generations, the Pareto front, the best rule's loss curves.

Each ``*_figure`` function takes what a run directory holds (log rows, hall-of-fame entries,
the funnel, the selection) and returns a matplotlib figure, so the end-of-run report and the
live view (:mod:`evolve.live`) draw the same pictures. Scores live in [0.25, 2] with almost
everything between 0.8 and 1.3, so score axes are zoomed to the band the curves populate:
failures (the floor, 0.25) and points below the band are marked on its lower edge instead
of stretching the axis. Loss axes are logarithmic with ticks a reader can read (1, 2, 5 per
decade over short ranges), and noisy minibatch losses are drawn faint under a smoothed line.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fitness.score import FLOOR

ADAM_COLOR = "#444444"
COLORS = {"search": "#1f77b4", "median": "#7f7f7f", "population": "#9ecae1", "real": "#d62728",
          "heldout": "#2ca02c", "rule": "#d62728", "fail": "#d62728"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def looked_up(row: dict) -> int:
    """Rules the equivalence cache was asked about in a generation: its candidates and the
    survivors re-scored on redrawn instances (the log's ``cache_hits`` counts both)."""
    return (row.get("candidates") or 0) + (row.get("rescored") or 0)


def _is_floor(value: float | None) -> bool:
    return value is not None and value <= FLOOR + 1e-9


def score_band(values: Sequence[float | None], anchor: float = 1.0) -> tuple[float, float]:
    """(low, high) of a score axis: the non-failure values with a margin, ``anchor`` (tuned
    Adam) included; at least 0.1 wide."""
    finite = [v for v in values if v is not None and math.isfinite(v) and not _is_floor(v)]
    lo, hi = min(finite + [anchor]), max(finite + [anchor])
    margin = max(0.08 * (hi - lo), 0.02)
    lo, hi = lo - margin, hi + margin
    if hi - lo < 0.1:
        mid = (hi + lo) / 2
        lo, hi = mid - 0.05, mid + 0.05
    return max(lo, FLOOR), hi


def _band_low(log: list[dict]) -> list[float | None]:
    """The values that set a score plot's band: every champion curve, and the population's
    median and best from the second fifth of the run on (the random start is far below
    everything that follows and would squash the band)."""
    skip = len(log) // 5
    values: list[float | None] = []
    for i, row in enumerate(log):
        values += [row.get("best_score"), row.get("real_best")]
        if i >= skip:
            values += [row.get("median_score"), row.get("population_best")]
    return values


def _edge_marks(ax: Any, xs: Sequence[float], ys: Sequence[float | None], low: float,
                color: str, label: str) -> None:
    """Points below the axis on its lower edge: x for failures (the floor), v for the rest."""
    fails = [x for x, y in zip(xs, ys) if _is_floor(y)]
    below = [x for x, y in zip(xs, ys) if y is not None and not _is_floor(y) and y < low]
    trans = ax.get_xaxis_transform()
    if fails:
        ax.scatter(fails, [0.015] * len(fails), marker="x", s=14, color=COLORS["fail"],
                   transform=trans, clip_on=False, zorder=5,
                   label=f"{label} at the floor {FLOOR:g} (failed)")
    if below:
        ax.scatter(below, [0.015] * len(below), marker="v", s=14, color=color,
                   transform=trans, clip_on=False, zorder=5, alpha=0.6,
                   label=f"{label} below the axis")


def _masked(ys: Sequence[float | None], low: float) -> np.ndarray:
    return np.array([np.nan if y is None or _is_floor(y) or y < low else y for y in ys],
                    dtype=float)


def score_figure(log: list[dict], heldout: dict | None = None, title: str = "") -> Any:
    """Scores over generations: the search champion, the population's median and best, the
    real-data tier's best, the held-out champion (once the funnel has run), tuned Adam at 1;
    below, the share of candidates answered by the equivalence cache and stopped by the hurdle.
    """
    plt = _pyplot()
    gens = [r["generation"] for r in log]
    fig, (ax, rates) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    champions = (heldout or {}).get("champions") or []
    band_values = _band_low(log) + [c.get("heldout_score") for c in champions]
    low, high = score_band(band_values)
    series = [("best_score", "search champion (best proxy score so far)", COLORS["search"], 2.0),
              ("population_best", "population best", COLORS["population"], 1.0),
              ("median_score", "population median", COLORS["median"], 1.2)]
    for key, label, color, width in series:
        ys = [r.get(key) for r in log]
        ax.plot(gens, _masked(ys, low), color=color, lw=width, label=label,
                drawstyle="steps-post" if key == "best_score" else "default")
        if key != "best_score":
            _edge_marks(ax, gens, ys, low, color, label.replace("population ", ""))
    real = [r.get("real_best") for r in log]
    if any(v is not None for v in real):
        ax.plot(gens, _masked(real, low), color=COLORS["real"], lw=2.0, drawstyle="steps-post",
                marker="o", ms=2.5, label="real-data tier's best (tier 2)")
    if champions:
        cg = [c["generation"] for c in champions] + [gens[-1]]
        cs = [c["heldout_score"] for c in champions]
        ax.plot(cg, _masked(cs + cs[-1:], low), color=COLORS["heldout"], lw=1.6, ls="--",
                drawstyle="steps-post", label="search champion on the held-out suite")
    ax.axhline(1.0, color=ADAM_COLOR, ls="--", lw=1, label="tuned Adam (1.0)")
    ax.set_ylim(low, high)
    ax.set_ylabel("score (loss ratio vs tuned Adam)")
    ax.set_title(title or "Scores over generations (higher is better)")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="best", ncol=2)
    candidates = np.array([max(looked_up(r), 1) for r in log], dtype=float)
    evaluated = np.array([max(r.get("evaluated") or 0, 1) for r in log], dtype=float)
    rates.plot(gens, np.array([r.get("cache_hits") or 0 for r in log]) / candidates,
               color="#9467bd", label="answered by the equivalence cache")
    rates.plot(gens, np.array([r.get("hurdle_rejections") or 0 for r in log]) / evaluated,
               color="#8c564b", label="evaluated ones stopped at the hurdle")
    rates.set_ylim(0, 1)
    return _finish(fig, rates, "generation", "share", legend="upper right")


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str | None = None,
            legend: str = "best") -> Any:
    """Labels, grid and legend of the figure's last axes, then a tight layout."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc=legend)
    fig.tight_layout()
    return fig


def pareto_points(hall: list[dict]) -> dict[str, list[dict]]:
    """Hall-of-fame entries as (size, score) points: ``real`` by tier-2 score, ``proxy`` by
    proxy score; ``rank`` is the entry's hall-of-fame number."""
    points: dict[str, list[dict]] = {"real": [], "proxy": []}
    for rank, entry in enumerate(hall, 1):
        proxy = entry.get("proxy_score", entry.get("score"))
        if proxy is not None:
            points["proxy"].append({"size": entry["size"], "score": proxy, "rank": rank})
        if entry.get("tier") == "real" and entry.get("real_score", entry.get("score")) is not None:
            points["real"].append({"size": entry["size"],
                                   "score": entry.get("real_score", entry["score"]), "rank": rank})
    return points


def front(points: list[dict]) -> list[dict]:
    """The points no other point beats on both score (higher) and size (smaller), by size."""
    out: list[dict] = []
    for p in sorted(points, key=lambda p: (p["size"], -p["score"])):
        if not out or p["score"] > out[-1]["score"]:
            out.append(p)
    return out


def pareto_figure(hall: list[dict]) -> Any | None:
    """Score against rule size for the hall of fame, each tier's Pareto front drawn as a step
    line and labelled with hall-of-fame numbers (#N is ``RUN:N``)."""
    points = pareto_points(hall)
    if not points["proxy"] and not points["real"]:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    everything = [p["score"] for ps in points.values() for p in ps]
    low, high = score_band(everything)
    for tier, label, color, marker in (("proxy", "proxy score", COLORS["search"], "o"),
                                       ("real", "real-data tier score", COLORS["real"], "s")):
        ps = points[tier]
        if not ps:
            continue
        shown = [p for p in ps if not _is_floor(p["score"]) and p["score"] >= low]
        ax.scatter([p["size"] for p in shown], [p["score"] for p in shown], color=color,
                   marker=marker, alpha=0.45, label=f"hall of fame, {label}")
        _edge_marks(ax, [p["size"] for p in ps], [p["score"] for p in ps], low, color, label)
        best = [p for p in front(ps) if p in shown]
        if best:
            ax.plot([p["size"] for p in best], [p["score"] for p in best], color=color,
                    drawstyle="steps-post", lw=1.5, label=f"Pareto front, {label}")
            for p in best:
                ax.annotate(f"#{p['rank']}", (p["size"], p["score"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points", color=color)
    from matplotlib.ticker import MaxNLocator

    ax.axhline(1.0, color=ADAM_COLOR, ls="--", lw=1, label="tuned Adam (1.0)")
    ax.set_ylim(low, high)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, ax, "rule size (nodes)", "score (vs tuned Adam)",
                   "Pareto front: score against rule size (#N = hall-of-fame number)")


def smooth_log(losses: np.ndarray) -> tuple[np.ndarray, bool]:
    """(a centred moving average of the losses in log space, whether the raw ones are noisy
    enough to draw faintly beside it). Centred, so a smooth curve is not shifted."""
    finite = losses[np.isfinite(losses) & (losses > 0)]
    if len(finite) < 9 or len(finite) != len(losses):
        return losses, False
    logs = np.log10(losses)
    width = max(5, (len(logs) // 12) | 1)
    pad = width // 2
    padded = np.concatenate([np.full(pad, logs[0]), logs, np.full(pad, logs[-1])])
    smooth = np.convolve(padded, np.ones(width) / width, mode="valid")
    noisy = float(np.max(np.abs(smooth - logs))) > 0.05  # visibly off the smooth line
    return (10.0 ** smooth if noisy else losses), noisy


def readable_log_axis(ax: Any) -> None:
    """Log-scale y ticks a reader can read: 1-2-5 per decade when the range is short, every
    decade (or every few) otherwise, plain numbers where they fit."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    if not (lo > 0 and hi > lo):
        return
    decades = math.log10(hi / lo)

    def fmt(value: float, _pos: int) -> str:
        if value <= 0:
            return ""
        if 1e-3 <= value < 1e4:
            return f"{value:g}"
        exponent = math.floor(math.log10(value) + 1e-9)
        mantissa = value / 10**exponent
        return (f"$10^{{{exponent}}}$" if abs(mantissa - 1) < 1e-6
                else f"${mantissa:g}\\cdot10^{{{exponent}}}$")

    if decades < 0.7:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)))
    elif decades < 1.3:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    elif decades <= 6:
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=8))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.yaxis.set_major_formatter(FuncFormatter(fmt))
    ax.yaxis.set_minor_formatter(NullFormatter())


def task_losses(rule: str, task: Any, lr: float, schedule: str = "cosine") -> np.ndarray:
    """Training losses of ``rule`` at ``lr`` on a proxy task instance, step by step (the same
    minibatches, gradient noise and lr schedule the scored run sees); stops at the first
    non-finite loss."""
    from fitness.interpreter import StepRunner
    from fitness.schedule import factors
    from primitives.program import compile_rule

    noise = task.arrays[3] if task.spec.family == "quadratic" else None
    runner = StepRunner(compile_rule(rule), task.w0, total_steps=task.steps)
    scale = factors(schedule, task.steps)
    losses = []
    for step in range(task.steps):
        loss, grad = task.loss_and_grad(runner.weights, step)
        losses.append(loss)
        if not np.isfinite(loss):
            break
        if noise is not None and noise.shape[0] > step:
            grad = grad + noise[step]
        runner.step(grad, lr * scale[step])
    return np.array(losses)


def loss_curves_figure(suite: str, seed: int, rule: str, label: str = "best rule") -> Any | None:
    """Every task of a proxy suite: ``rule`` against tuned Adam, each at its best learning rate
    on that task (the rates the score chose)."""
    from evolve.worker import score_rules
    from fitness.tasks import build, get_suite
    from primitives.rules import KNOWN_RULES

    adam = KNOWN_RULES["adam"].rule
    scored = score_rules(suite, seed, [rule, adam], hurdle=False)
    lrs = [{t.task: t.best_lr for t in r.tasks} for r in scored]
    specs = get_suite(suite)
    if not specs:
        return None
    plt = _pyplot()
    cols = min(3, len(specs))
    rows = math.ceil(len(specs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows + 0.5), squeeze=False)
    for ax, spec in zip(axes.flat, specs):
        task = build(spec, seed)
        for (name, text, color), best in zip(((label, rule, COLORS["rule"]),
                                              ("tuned Adam", adam, ADAM_COLOR)), lrs):
            lr = best.get(spec.name)
            if not lr:
                ax.plot([], [], color=color, label=f"{name}: failed at every lr")
                continue
            losses = task_losses(text, task, lr)
            shown, noisy = smooth_log(losses)
            steps = np.arange(len(losses))
            if noisy:
                ax.plot(steps, losses, color=color, alpha=0.18, lw=0.7)
            ax.plot(steps, shown, color=color, lw=1.5, label=f"{name} (lr {lr:.3g})")
        ax.set_yscale("log")
        readable_log_axis(ax)
        ax.set_title(spec.name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, which="major")
        ax.legend(fontsize=6, loc="upper right")
    for ax in list(axes.flat)[len(specs):]:
        ax.axis("off")
    import textwrap

    title = (f"Training loss on every task of the '{suite}' suite: {label} against tuned Adam, "
             "each at its best learning rate (noisy minibatch losses faint, smoothed on top)")
    fig.suptitle("\n".join(textwrap.wrap(title, 60 * cols)), fontsize=9)
    fig.tight_layout()
    return fig


def write_plots(rd: Any, log: list[dict], hall: list[dict], *, heldout: dict | None = None,
                suite: str | None = None, seed: int = 0, rule: str | None = None) -> list[str]:
    """The run's plots in its directory (``rd``, an :class:`evolve.rundir.RunDirectory`),
    atomically: score and Pareto front from its files, and the loss curves of ``rule`` on
    ``suite`` when both are given; returns the file names written."""
    from evolve.rundir import LOSS_PLOT, PARETO_PLOT, SCORE_PLOT

    plt = _pyplot()
    figures = [(SCORE_PLOT, lambda: score_figure(log, heldout) if log else None),
               (PARETO_PLOT, lambda: pareto_figure(hall))]
    if rule and suite:
        figures.append((LOSS_PLOT, lambda: loss_curves_figure(suite, seed, rule,
                                                               "the final selection")))
    names = []
    for name, draw in figures:
        fig = draw()
        if fig is None:
            continue
        try:
            rd.save_figure(fig, name)
        finally:
            plt.close(fig)
        names.append(name)
    return names


__all__ = ["figure_png", "front", "loss_curves_figure", "pareto_figure", "pareto_points",
           "looked_up", "readable_log_axis", "score_band", "score_figure", "smooth_log", "task_losses",
           "write_plots"]
