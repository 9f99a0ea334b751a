"""The errors users see as one line, no traceback: bad input (exit 2), a stopped run (exit 1)."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """Bad input from the user (a malformed rule, a bad config, a missing dataset...).

    click prints ``Error: <message>`` on one line and exits with code 2, like its usage errors.
    """

    exit_code = 2


class RunError(click.ClickException):
    """The environment stopped a run (disk full, workers that keep dying): one line, exit code 1;
    the message says what failed and that the last checkpoint is there to resume from."""

    exit_code = 1


__all__ = ["RunError", "UserError"]
