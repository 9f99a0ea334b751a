"""The one error type the CLI shows users: one line, exit code 2, no traceback."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """Bad input from the user (a malformed rule, a bad config, a missing dataset...).

    click prints ``Error: <message>`` on one line and exits with code 2, like its usage errors.
    """

    exit_code = 2


class RunError(click.ClickException):
    """The environment stopped a run (disk full, permissions): one line, exit code 1."""

    exit_code = 1


__all__ = ["RunError", "UserError"]
