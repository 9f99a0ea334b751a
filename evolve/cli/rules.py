"""``evolve rules``, ``evolve primitives`` and ``evolve export``: the search space and its rules."""

from __future__ import annotations

import json

import click

from evolve.cli import load_rule
from evolve.errors import UserError

FORMATS = ("torch", "json", "text", "latex", "sympy")


@click.command("rules")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {name, rule, source}.")
def rules_cmd(as_json: bool) -> None:
    """List the known optimizers written as rules (usable by name anywhere a rule is asked)."""
    from primitives.rules import KNOWN_RULES

    if as_json:
        click.echo(json.dumps([
            {"name": r.name, "rule": r.rule, "source": r.source, "note": r.note}
            for r in KNOWN_RULES.values()
        ], indent=2))
        return
    width = max(len(n) for n in KNOWN_RULES)
    for r in KNOWN_RULES.values():
        click.echo(f"{r.name:<{width}}  {r.rule}")
        click.echo(f"{'':<{width}}  source: {r.source}")


@click.command("primitives")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def primitives_cmd(as_json: bool) -> None:
    """List the primitive table: every name the rule grammar admits."""
    from primitives.table import TABLE

    rows = [
        {"name": p.name, "kind": p.kind, "args": list(p.args), "doc": p.doc}
        for p in TABLE.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        sig = f"{row['name']}({', '.join(row['args'])})" if row["args"] else row["name"]
        click.echo(f"{sig:<26} {row['kind']:<12} {row['doc']}")


@click.command("export")
@click.argument("rule")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="torch", show_default=True,
              help="torch: a standalone .py with one torch.optim.Optimizer class; text: the "
                   "canonical rule text; json, latex, sympy: descriptions of the rule.")
@click.option("--name", default="EvolvedOptimizer", show_default=True,
              help="Class name for --format torch (a Python identifier).")
@click.option("--lr", type=float, default=1e-3, show_default=True,
              help="Default learning rate written into the exported class.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write here (atomically) instead of standard output.")
def export_cmd(rule: str, fmt: str, name: str, lr: float, output: str | None) -> None:
    """Export RULE (a known name, rule text, RUN:best, RUN:search, RUN:heldout or RUN:N).

    \b
    Example:
        evolve export "sign(interp(ema(g, 0.99), g, 0.0909))" --name MyLion -o my_lion.py
        # then in your script:  from my_lion import MyLion; opt = MyLion(model.parameters(), lr=1e-4)
    """
    from evolve.rundir import check_writable_file
    from primitives.export_torch import check_class_name, export_torch, write_module

    if output is not None:
        check_writable_file(output, "-o path")
    program = load_rule(rule)
    if fmt == "torch":
        try:
            check_class_name(name)
            text = export_torch(program, name, lr)
        except ValueError as err:
            raise UserError(str(err)) from None
    elif fmt == "text":
        text = program.text + "\n"
    elif fmt == "latex":
        from primitives.symbolic import to_latex

        text = to_latex(program.tree) + "\n"
    elif fmt == "sympy":
        from primitives.symbolic import to_sympy

        text = str(to_sympy(program.tree)) + "\n"
    else:
        from primitives.symbolic import to_latex, to_sympy

        text = json.dumps({
            "rule": program.text,
            "hash": program.hash,
            "sympy": str(to_sympy(program.tree)),
            "latex": to_latex(program.tree),
            "size": program.tree.size(),
            "height": program.tree.height(),
            "state_buffers": [
                {"update": s.update, "beta": s.beta, "of": s.source} for s in program.states
            ],
            "uses_schedule": program.uses_schedule,
        }, indent=2) + "\n"
    if fmt == "torch" and program.uses_schedule:
        click.echo(f"note: the rule reads a schedule (cos_decay/lin_decay): construct {name} "
                   "with total_steps=N, the number of steps it will take", err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_module(output, text)
    except OSError as err:
        raise UserError(f"cannot write {output} ({err.strerror or err}); choose another -o "
                        "path") from None
    click.echo(f"wrote {output}", err=True)


__all__ = ["export_cmd", "primitives_cmd", "rules_cmd"]
