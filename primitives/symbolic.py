"""Rule trees as sympy expressions: simplification, pretty and LaTeX printing.

State primitives become opaque functions (``ema(x, beta)``, ``ema_bc``, ``mom``) so sympy can
simplify around them without pretending to know their history.
"""

from __future__ import annotations

import sympy

from primitives.grammar import Node
from primitives.table import TABLE

_SYMBOLS = {p.name: sympy.Symbol(p.name) for p in TABLE.values() if p.arity == 0}
_STATE_FUNCS = {p.name: sympy.Function(p.name) for p in TABLE.values() if p.kind == "state"}


def to_sympy(tree: Node) -> sympy.Expr:
    """Convert iteratively (post-order) so deep trees do not recurse."""
    values: dict[int, sympy.Expr] = {}
    stack: list[tuple[Node, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if node.is_literal:
            values[id(node)] = sympy.Float(node.value)
            continue
        if not node.args:
            values[id(node)] = _SYMBOLS[node.name]
            continue
        if not done:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args)
            continue
        args = [values[id(a)] for a in node.args]
        prim = TABLE[node.name]
        if prim.kind == "state":
            values[id(node)] = _STATE_FUNCS[node.name](*args)
        else:
            values[id(node)] = prim.sympy_fn(*args)
    return values[id(tree)]


def simplify(tree: Node) -> sympy.Expr:
    return sympy.simplify(to_sympy(tree))


def to_latex(tree: Node) -> str:
    return sympy.latex(to_sympy(tree))


__all__ = ["simplify", "to_latex", "to_sympy"]
