"""The ``evolve score`` and ``evolve tasks`` commands: score one rule, list a suite's tasks.

Registered on the ``evolve`` group in :mod:`evolve.cli` with ``main.add_command(score)`` and
``main.add_command(tasks)``. Bad input (a malformed rule, an unknown suite) is a
:class:`~evolve.errors.UserError` (one line, exit 2); a rule that fails on the tasks is a
result, printed with its floor scores and reasons, exit 0.
"""

from __future__ import annotations

import json

import click

from evolve.errors import UserError


def _evaluator(suite: str, seed: int):
    from fitness.evaluate import Evaluator

    try:
        # the hurdle is for populations; one rule on the command line gets the full suite
        return Evaluator(suite=suite, seed=seed, hurdle=False, cache=False)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None


@click.command("score")
@click.argument("rule")
@click.option("--suite", default="search", show_default=True, help="task suite to score on")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the task instances")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def score(rule: str, suite: str, seed: int, as_json: bool) -> None:
    """Score RULE (a known name such as adam, or rule text) against tuned Adam (= 1.0)."""
    from fitness.evaluate import to_program
    from primitives.grammar import RuleSyntaxError

    try:
        program = to_program(rule)
    except RuleSyntaxError as err:
        raise UserError(str(err)) from None
    result = _evaluator(suite, seed).evaluate_one(program)
    if as_json:
        payload = {
            "rule": result.rule,
            "aggregate": result.aggregate,
            "tasks": [{"task": t.task, "score": t.score, "best_lr": t.best_lr,
                       "reason": t.reason} for t in result.tasks],
        }
        click.echo(json.dumps(payload))
        return
    click.echo(f"rule: {result.rule}")
    click.echo(f"suite: {suite} (seed {seed})  aggregate score: {result.aggregate:.3f}"
               "  (tuned Adam = 1.0)")
    for t in result.tasks:
        lr = f"{t.best_lr:g}" if t.best_lr is not None else "-"
        click.echo(f"  {t.task:<24} {t.score:7.3f}  lr {lr:<8} {t.reason or ''}".rstrip())


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
