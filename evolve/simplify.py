"""Simplification of discovered rules: pruning on probe inputs, then sympy.

The Lion paper prunes statements that do not change the program's output. Here a subtree is
replaced by one of its own vec-typed children (or a node by a literal) whenever the rule's
fingerprint — its directions on fixed probe gradients — stays the same; repeated until nothing
changes. The sympy form is shown beside it for reading.
"""

from __future__ import annotations

from collections.abc import Callable

from evolve.operators import replace_at
from primitives.grammar import Node, lit, parse, to_text
from primitives.table import TABLE, VEC


def _candidates(node: Node) -> list[Node]:
    if node.is_literal or not node.args:
        return []
    prim = TABLE[node.name]
    options = [a for a, t in zip(node.args, prim.args) if t == VEC]
    options.append(lit(0.0))
    return options


def prune(rule: str, fingerprint: Callable[[str], str], max_passes: int = 20) -> str:
    """The smallest rule found by greedy replacements that keep the fingerprint."""
    tree = parse(rule)
    target = fingerprint(to_text(tree))
    for _ in range(max_passes):
        changed = False
        nodes = list(tree.walk())
        for index, node in enumerate(nodes):
            for option in _candidates(node):
                candidate = replace_at(tree, index, option)
                if candidate.size() >= tree.size():
                    continue
                if fingerprint(to_text(candidate)) == target:
                    tree = candidate
                    changed = True
                    break
            if changed:
                break
        if not changed:
            break
    return to_text(tree)


def smaller_form(entry: dict) -> str | None:
    """An entry's pruned form (its ``simplified`` key, written by :func:`prune`) when that is
    not the rule itself; None otherwise. The rule stays what was scored: the probes cannot see
    every difference (an epsilon term)."""
    pruned = entry.get("simplified")
    return pruned if pruned and pruned != entry["rule"] else None


def sympy_form(rule: str) -> str:
    from primitives.symbolic import simplify

    try:
        return str(simplify(parse(rule)))
    except Exception as err:  # sympy can fail on exotic expressions; the raw rule still stands
        return f"(sympy could not simplify: {type(err).__name__})"


__all__ = ["prune", "smaller_form", "sympy_form"]
