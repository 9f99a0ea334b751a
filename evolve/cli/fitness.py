"""The ``evolve score`` and ``evolve tasks`` commands: score one rule, list a suite's tasks.

Loaded by name from :data:`evolve.cli.COMMANDS`. Bad input (a malformed rule, an unknown suite) is a
:class:`~evolve.errors.UserError` (one line, exit 2); a rule that fails on the tasks is a
result, printed with its floor scores and reasons, exit 0.
"""

from __future__ import annotations

import json

import click

from evolve.errors import UserError


@click.command("score")
@click.argument("rule")
@click.option("--suite", default="search", show_default=True, help="task suite to score on")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the task instances")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--quiet", is_flag=True, help="no progress lines on stderr")
def score(rule: str, suite: str, seed: int, as_json: bool, quiet: bool) -> None:
    """Score RULE against tuned Adam (= 1.0).

    RULE is a known name such as adam, rule text, or a campaign's rule: RUN:best (its final
    selection), RUN:search, RUN:heldout or RUN:N (hall-of-fame rank). Per task, the ratio of
    tuned Adam's loss gap to the rule's (clipped to [0.25, 2]); the suite's score is their
    geometric mean.
    """
    from evolve.progress import StageProgress
    from evolve.rundir.refs import resolve_rule
    from evolve.worker import evaluator, score_rules, suite_names, warm_numba

    ref = resolve_rule(rule)
    if suite not in suite_names():
        raise UserError(f"unknown suite {suite!r}; known suites: {', '.join(suite_names())}")
    from fitness.tasks import get_suite

    tasks_in_suite = len(get_suite(suite))
    stages = StageProgress("score", quiet=quiet)
    try:
        # the first call in a fresh build compiles Numba's kernels and tunes Adam (both
        # cached on disk): say so, or the command looks stuck for seconds
        stages("loading the compiled interpreter (compiled once, then cached)")
        warm_numba()
        stages(f"tuning Adam on the {tasks_in_suite} tasks of '{suite}' (cached after the "
               "first time)")
        evaluator(suite, seed, hurdle=False)
        stages(f"scoring the rule on {tasks_in_suite} tasks x the learning-rate grid")
        # the hurdle is for populations; one rule on the command line gets the full suite
        (result,) = score_rules(suite, seed, [ref.text], hurdle=False)
    finally:
        stages.close()
    tasks = [{"task": t.task, "score": 2.0 ** t.log_ratio, "best_lr": t.best_lr,
              "reason": t.reason} for t in result.tasks]
    if as_json:
        click.echo(json.dumps({"rule": result.rule, "source": ref.source,
                               "aggregate": result.score, "tasks": tasks}))
        return
    click.echo(f"rule: {result.rule}" + (f"  ({ref.source})" if ref.source != "rule text" else ""))
    click.echo(f"suite: {suite} (seed {seed})  aggregate score: {result.score:.3f}"
               "  (tuned Adam = 1.0)")
    for t in tasks:
        lr = f"{t['best_lr']:g}" if t["best_lr"] is not None else "-"
        click.echo(f"  {t['task']:<24} {t['score']:7.3f}  lr {lr:<8} {t['reason'] or ''}".rstrip())


@click.command("tasks")
@click.option("--suite", default="search", show_default=True, help="task suite to list")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def tasks(suite: str, as_json: bool) -> None:
    """List the tasks of a suite with their sizes (P parameters) and steps."""
    from fitness.tasks import build, get_suite

    try:
        specs = get_suite(suite)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    rows = [build(spec, 0).describe() for spec in specs]
    if as_json:
        click.echo(json.dumps({"suite": suite, "tasks": rows}))
        return
    click.echo(f"suite {suite}: {len(rows)} tasks")
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ("task", "family", "params", "steps")}
        opts = " ".join(f"{k}={v}" for k, v in extra.items())
        click.echo(f"  {row['task']:<24} {row['family']:<11} P={row['params']:<6} "
                   f"T={row['steps']:<4} {opts}")


__all__ = ["score", "tasks"]
