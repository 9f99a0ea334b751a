"""CLI commands ``evolve compare`` (strategies at equal budget) and ``evolve refine`` (fit a rule's
constants by meta-gradient); the work is :mod:`evolve.compare`'s and :mod:`evolve.refine`'s."""

from __future__ import annotations

import json
import time

import click

from evolve.compare import BUDGET_DEFINITION, DEFAULT_STRATEGIES
from evolve.config import EXECUTORS, STRATEGIES
from evolve.errors import UserError
from fitness.schedule import SCHEDULES


def _echo(message: str) -> None:
    click.echo(message, err=True)


@click.command("compare", help=f"""Run every strategy with the same budget and seeds, side by side.

\b
Writes OUT/compare.md (final pick's search, held-out and real-data tier
scores, mean ± std over seeds, time), OUT/compare.json and
OUT/best_so_far.png; the campaigns are in OUT/runs/STRATEGY-seedK, and a
stopped compare continues when run again with the same settings.

Budget: {BUDGET_DEFINITION}.

\b
Example:
    evolve compare --strategies evolution,random,rl,optuna-adam --budget 5000 --seeds 3 --out cmp/
""")
@click.option("--strategies", default=",".join(DEFAULT_STRATEGIES), show_default=True,
              help=f"comma-separated strategies: {', '.join(STRATEGIES)}")
@click.option("--budget", type=int, required=True,
              help="evaluations per campaign, the same for every strategy (see above)")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="campaigns per strategy, seeds 0..K-1 (the same seeds for every strategy)")
@click.option("--population", type=int, default=100, show_default=True,
              help="rules in the first generation")
@click.option("--children", type=int, default=50, show_default=True,
              help="rules in each later generation")
@click.option("--suite", default="default", show_default=True, help="proxy suite to search on")
@click.option("--executor", type=click.Choice(EXECUTORS), default="process", show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="0 = one per core")
@click.option("--real/--no-real", "real_tier", default=True, show_default=True,
              help="score each final pick on the real-data tier (minutes a rule on a busy 2-core machine)")
@click.option("--real-tasks", default=None,
              help="comma-separated real-data tier tasks for the final picks [the tier's own]")
@click.option("--real-k", type=int, default=None,
              help="tier-2 candidates per generation inside each campaign, the same for every "
                   "strategy (0: none; the final pick is then the held-out funnel's) "
                   "[the campaign default]")
@click.option("--json", "as_json", is_flag=True, help="also print the results JSON on stdout")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="folder for compare.md, compare.json, best_so_far.png and runs/")
def compare_cmd(strategies: str, budget: int, seeds: int, population: int, children: int,
                suite: str, executor: str, workers: int, real_tier: bool, real_tasks: str | None,
                real_k: int | None, as_json: bool, out: str) -> None:
    from evolve.cli.campaign import _check_suite
    from evolve.compare import PLOT, TABLE, CompareConfig, compare

    names = tuple(s.strip() for s in strategies.split(",") if s.strip())
    config = CompareConfig(strategies=names, budget=budget, seeds=seeds, population=population,
                           children=children, suite=suite, executor=executor, workers=workers,
                           real_tier=real_tier, real_tasks=_real_tasks(real_tasks),
                           real_k=real_k)
    config.check()
    _check_suite(suite)
    started = time.perf_counter()
    results = compare(out, config, notify=_echo)
    if as_json:
        click.echo(json.dumps(results, indent=1))
    _echo(f"wrote {out}/{TABLE}, {out}/compare.json, {out}/{PLOT} in "
          f"{time.perf_counter() - started:.0f} s")
    for name, s in results["summary"].items():
        mean = s["search"]["mean"]
        _echo(f"{name:12s} final pick search {mean if mean is None else round(mean, 3)}")


def _real_tasks(text: str | None) -> tuple[str, ...] | None:
    """--real-tasks -> built-in task names (UserError naming the known ones)."""
    if text is None:
        return None
    from fitness.training.real_tasks import BUILTIN_NAMES

    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in BUILTIN_NAMES]
    if unknown or not names:
        raise UserError(f"--real-tasks: unknown or no task ({', '.join(unknown)}); choose from "
                        f"{', '.join(BUILTIN_NAMES)}")
    return names


@click.command("refine")
@click.argument("rule")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="folder for refine.md, refine.json and refine.png")
@click.option("--suite", default="default", show_default=True,
              help="proxy suite whose tasks the constants are fitted on")
@click.option("--schedule", default="cosine", show_default=True,
              help=f"learning-rate schedule of the proxy runs and scores, as a campaign's: "
                   f"{', '.join(SCHEDULES)}")
@click.option("--steps", type=int, default=40, show_default=True,
              help="meta-gradient steps (Adam on the constants)")
@click.option("--cmaes-generations", type=int, default=12, show_default=True,
              help="CMA-ES generations for constants whose meta-gradient is zero")
@click.option("--seed", type=int, default=0, show_default=True,
              help="task instances and CMA-ES draws")
@click.option("--real/--no-real", "real_tier", default=True, show_default=True,
              help="also score before and after on the real-data tier")
@click.option("--real-tasks", default=None,
              help="comma-separated real-data tier tasks [the tier's own]")
@click.option("--json", "as_json", is_flag=True, help="also print the results JSON on stdout")
def refine_cmd(rule: str, out: str, suite: str, schedule: str, steps: int,
               cmaes_generations: int, seed: int, real_tier: bool, real_tasks: str | None,
               as_json: bool) -> None:
    """Fit RULE's numeric constants by differentiating the loss after unrolled training.

    \b
    RULE is a known name, rule text or RUN:best / RUN:N. Betas stay in [0, 1] (fitted as
    logits), other constants keep their sign (fitted on a log scale); constants whose
    meta-gradient is zero (inside sign, clip, comparisons) are fitted by CMA-ES. Reports
    constants and scores before and after on the search suite, the held-out suite and the
    real-data tier. A rule without constants is refused.
    """
    from evolve.cli.campaign import _check_suite
    from evolve.refine import RefineConfig, refine_to
    from evolve.rundir import check_writable_folder
    from evolve.rundir.refs import resolve_rule

    if steps < 0 or cmaes_generations < 0:
        raise UserError("--steps and --cmaes-generations must be >= 0")
    if schedule not in SCHEDULES:
        raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _check_suite(suite)
    ref = resolve_rule(rule)
    check_writable_folder(out, "--out")
    config = RefineConfig(suite=suite, schedule=schedule, steps=steps,
                          cmaes_generations=cmaes_generations, seed=seed, real_tier=real_tier,
                          real_tasks=_real_tasks(real_tasks))
    results = refine_to(ref.text, out, config, notify=_echo)
    if as_json:
        click.echo(json.dumps(results, indent=1))


__all__ = ["compare_cmd", "refine_cmd"]
