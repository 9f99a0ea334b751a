"""Checks on the test run itself."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    """`make test` runs `--dist loadgroup` so that the tests marked ``xdist_group("processes")``
    (each starts worker processes of its own) share one xdist worker instead of crowding the
    two cores together. pytest-xdist (3.8) marks a grouped test by appending ``@group`` to its
    node id, an edit pytest 9 ignores: the groups were silently lost and the suite ran slower
    (pyproject pins pytest below 9). Refuse that pairing, saying so, rather than lose them
    quietly again."""
    major = int(pytest.__version__.split(".")[0])
    if config.getoption("dist", "no") == "loadgroup" and major >= 9:
        raise pytest.UsageError(
            f"--dist loadgroup has no effect with pytest {pytest.__version__} (pytest-xdist "
            "cannot tag the groups); install the dev extra's versions: pip install -e '.[dev]'")
