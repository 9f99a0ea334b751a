"""The one rule resolver: every command and API that takes a rule reads it through :func:`resolve_rule`.

A reference is one of::

    adam                      a known rule (``evolve rules`` lists them)
    sign(ema(g, 0.9))         rule text (``evolve primitives`` lists what it may contain)
    RUN:best                  the run's final selection (RunDirectory.final_selection)
    RUN:search                the search champion (hall of fame number 1)
    RUN:heldout               the held-out funnel's first rule
    RUN:N                     number N of the hall of fame (1 = best search score)

Rule text never contains ``:``, so a reference with a colon outside parentheses names a run.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolve.errors import UserError
from evolve.rundir.directory import RunDirectory
from primitives.grammar import RuleSyntaxError, parse, to_text
from primitives.rules import KNOWN_RULES


@dataclass(frozen=True)
class RuleRef:
    """A resolved reference: canonical rule text, the label tables use, and where it came from."""

    text: str
    label: str
    source: str


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def split_run_ref(ref: str) -> tuple[str, str] | None:
    """(run directory, selector) when ``ref`` names a run, else None."""
    head, sep, selector = ref.rpartition(":")
    if not sep or "(" in ref or not head:
        return None
    return head, selector


def canonical(text: str, where: str | None = None) -> str:
    """Canonical rule text; a malformed one is a one-line UserError."""
    try:
        return to_text(parse(text))
    except RuleSyntaxError as err:
        what = f"{where}: " if where else ""
        if text.strip().replace("_", "").isalnum():  # meant as a name
            raise UserError(f"{what}{text.strip()!r} is neither a known name nor a rule ({err}); "
                            f"known rules: {', '.join(KNOWN_RULES)}; a campaign's rule is "
                            "RUN:best") from None
        raise UserError(f"{what}{err} (rule text: {_short(text)!r})") from None


def resolve_rule(ref: str) -> RuleRef:
    """A known name, rule text, or RUN:best | RUN:search | RUN:heldout | RUN:N as a RuleRef."""
    key = ref.strip()
    if not key:
        raise UserError("empty rule; give a known name such as adam, rule text, or RUN:best")
    run = split_run_ref(key)
    if run is not None:
        folder, selector = run
        rule, how = RunDirectory(folder).select(selector)
        return RuleRef(canonical(rule, key), key, f"{key}: {how}")
    if key in KNOWN_RULES:
        return RuleRef(canonical(KNOWN_RULES[key].rule, key), key, f"known rule {key}")
    text = canonical(key)
    return RuleRef(text, _short(text, 32), "rule text")


__all__ = ["RuleRef", "canonical", "resolve_rule", "split_run_ref"]
