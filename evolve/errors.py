"""The one error type the CLI shows users: one line, exit code 2, no traceback."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """Bad input from the user (a malformed rule, a bad config, a missing dataset...).

    click prints ``Error: <message>`` on one line and exits with code 2, like its usage errors.
    """

    exit_code = 2


__all__ = ["UserError"]
