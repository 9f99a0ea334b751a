"""The engine's view of fitness/: build an evaluator, fingerprint a rule, a failed result.

Workers build their evaluator with ``cache=False``: the equivalence cache lives in the driver
(:class:`evolve.runner.CachedScorer`) so that which rules share a result never depends on how
candidates were split across workers.
"""

from __future__ import annotations

from functools import lru_cache

from evolve.campaign import FLOOR
from primitives.grammar import RuleSyntaxError


def make_evaluator(suite: str, seed: int):
    from fitness.evaluate import Evaluator

    return Evaluator(suite=suite, seed=seed, cache=False)


@lru_cache(maxsize=200_000)
def fingerprint(rule: str) -> str:
    """Equivalence fingerprint of rule text (malformed text gets a fingerprint of its own)."""
    from fitness.equivalence import fingerprint as program_fingerprint
    from primitives.program import compile_rule

    try:
        return program_fingerprint(compile_rule(rule))
    except RuleSyntaxError:
        return "invalid:" + rule


def failed_result(rule: str, reason: str) -> dict:
    return {"rule": rule, "aggregate": FLOOR, "tasks": [], "reason": reason, "hurdle": "off"}


def suite_names() -> list[str]:
    from fitness.tasks import suite_names as names

    return names()


def warm_numba() -> None:
    """Compile or load every cached kernel in this process, before workers start."""
    from fitness.interpreter import warm_up

    warm_up()
    make_evaluator("hurdle", 0).evaluate(["g"])


__all__ = ["failed_result", "fingerprint", "make_evaluator", "suite_names", "warm_numba"]
