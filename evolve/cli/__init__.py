"""The ``evolve`` command line: discover, score, export and benchmark optimizer update rules.

Subcommands live in their own modules and are imported only when used (:class:`LazyGroup`), so
``evolve --version`` is instant and no command pays for torch unless it trains with it. This
module itself imports click only: a Ctrl-C during start-up lands inside :meth:`LazyGroup.main`,
which prints one line, instead of in an import that would print a traceback.
"""

from __future__ import annotations

import importlib
import sys
import time

import click

from evolve import interrupt
from evolve.errors import UserError

STARTED = time.monotonic()  # when the command started (LazyGroup.main): --time-limit counts from here

# name -> "module:attribute" of the click command
COMMANDS = {
    "rules": "evolve.cli.rules:rules_cmd",
    "primitives": "evolve.cli.rules:primitives_cmd",
    "export": "evolve.cli.rules:export_cmd",
    "tasks": "evolve.cli.fitness:tasks",
    "score": "evolve.cli.fitness:score",
    "run": "evolve.cli.campaign:run_cmd",
    "resume": "evolve.cli.campaign:resume_cmd",
    "show": "evolve.cli.campaign:show_cmd",
    "demo": "evolve.cli.campaign:demo_cmd",
    "benchmark": "evolve.cli.bench:benchmark",
    "validate": "evolve.cli.bench:validate",
    "compare": "evolve.cli.compare:compare_cmd",
    "refine": "evolve.cli.compare:refine_cmd",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use; Ctrl-C is one line, exit 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global STARTED
        STARTED = time.monotonic()  # per invocation: one process may run several (tests)
        interrupt.install()
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def load_rule(rule: str):
    """A rule reference (known name, rule text, RUN:best, RUN:N, ...) -> compiled Program.

    Resolved by :func:`evolve.rundir.resolve_rule`, the one resolver; bad input is a UserError.
    """
    from evolve.rundir.refs import resolve_rule
    from primitives.grammar import RuleSyntaxError
    from primitives.program import compile_rule

    text = resolve_rule(rule).text
    try:
        return compile_rule(text)
    except RuleSyntaxError as err:  # parsed but not compilable (e.g. too large)
        raise UserError(f"{err} (rule {rule!r})") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="evolve-optim")
def main() -> None:
    """Discover optimizer update rules by evolution, and use them in torch.

    \b
    A rule is an update direction d built from the gradient g, the weights w,
    EMAs of any expression (ema, ema_bc, mom) and elementwise primitives, e.g.
        sign(interp(ema(g, 0.99), g, 0.0909))        (Lion)
    Each step is  w <- w - lr * (d + weight_decay * w).

    \b
    Start with:  evolve rules          known optimizers written as rules
                 evolve primitives     what rules are made of
                 evolve export adam --format torch --name MyAdam -o my_adam.py
    """


def run() -> None:  # pragma: no cover - console entry point wrapper
    main(prog_name="evolve")


__all__ = ["COMMANDS", "LazyGroup", "load_rule", "main", "run"]
