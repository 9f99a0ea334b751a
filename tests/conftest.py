"""Checks on the test run itself."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """`make test` runs `--dist loadgroup` so that the tests marked ``xdist_group("processes")``
    (each starts worker processes of its own) share one xdist worker instead of crowding the
    two cores together. pytest-xdist marks a grouped test by appending ``@group`` to its node
    id; pytest 9 ignores that edit, and the groups were silently lost (pyproject pins pytest
    below 9 for this). Fail the run, saying so, rather than lose them quietly again."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"pytest-xdist's --dist loadgroup did not take effect with pytest "
                f"{pytest.__version__} ({item.nodeid} has no @group suffix); install the "
                "versions pyproject.toml's dev extra names: pip install -e '.[dev]'")
