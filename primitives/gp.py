"""The typed DEAP primitive set over the primitive table, and conversion to and from rule trees.

Type tags are module-level classes so that trees pickle into spawned workers. The set is built
once at import from :data:`primitives.table.TABLE`. Trees never pass through DEAP's
``gp.compile`` or ``PrimitiveTree.from_string`` (both call ``eval``): rule text is parsed by
:mod:`primitives.grammar` and converted with :func:`to_deap`.
"""

from __future__ import annotations

import random

from deap import gp

from primitives.grammar import Node, lit
from primitives.random_rules import BETAS, VEC_LITERALS
from primitives.table import BETA, CONST, TABLE, VEC


class Vec:
    """DEAP type tag: a per-parameter tensor."""


class Const:
    """DEAP type tag: a scalar literal (interpolation weight, clip bound)."""


class Beta:
    """DEAP type tag: a decay constant in [0, 1]."""


TYPE_TAGS = {VEC: Vec, CONST: Const, BETA: Beta}


# DEAP draws ephemeral values with the module-level ``random``; the engine seeds it from its
# explicit numpy Generator before each DEAP call, so campaigns stay a function of (config, seed).
def _vec_literal() -> float:
    return random.choice(VEC_LITERALS)


def _const_literal() -> float:
    return round(random.random(), 4)


def _beta_literal() -> float:
    return random.choice(BETAS)


def _build_pset() -> gp.PrimitiveSetTyped:
    pset = gp.PrimitiveSetTyped("RULE", [], Vec)
    for prim in TABLE.values():
        if prim.arity == 0:
            pset.addTerminal(prim.name, Vec, name=prim.name)
        else:
            # the callable is never called (no gp.compile); a placeholder keeps DEAP happy
            pset.addPrimitive(_never_called, [TYPE_TAGS[a] for a in prim.args], Vec, name=prim.name)
    pset.addEphemeralConstant("evolve_optim_vec_literal", _vec_literal, Vec)
    pset.addEphemeralConstant("evolve_optim_const_literal", _const_literal, Const)
    pset.addEphemeralConstant("evolve_optim_beta_literal", _beta_literal, Beta)
    return pset


def _never_called(*args):  # pragma: no cover - guard
    raise RuntimeError("rules are interpreted, never compiled with gp.compile")


PSET = _build_pset()
_LITERAL_TERMINAL = {Vec: "evolve_optim_vec_literal", Const: "evolve_optim_const_literal",
                     Beta: "evolve_optim_beta_literal"}


def _literal_terminal(value: float, tag: type) -> gp.Terminal:
    # An Ephemeral instance of the right class, so DEAP's mutEphemeral can redraw it too.
    cls = PSET.mapping[_LITERAL_TERMINAL[tag]]
    term = cls.__new__(cls)
    term.value = float(value)
    return term


def to_deap(node: Node) -> gp.PrimitiveTree:
    """Rule tree to a typed DEAP PrimitiveTree (prefix list of primitives and terminals)."""
    items: list = []
    stack: list[tuple[Node, type]] = [(node, Vec)]
    while stack:
        cur, tag = stack.pop()
        if cur.is_literal:
            items.append(_literal_terminal(cur.value, tag))
            continue
        prim = TABLE[cur.name]
        if prim.arity == 0:
            items.append(PSET.mapping[cur.name])
            continue
        items.append(PSET.mapping[cur.name])
        stack.extend((a, TYPE_TAGS[t]) for a, t in reversed(list(zip(cur.args, prim.args))))
    return gp.PrimitiveTree(items)


def from_deap(tree: gp.PrimitiveTree) -> Node:
    """DEAP PrimitiveTree back to a rule tree (iterative)."""
    stack: list[list] = []
    result: Node | None = None
    for item in tree:
        if isinstance(item, gp.Primitive):
            stack.append([item.name, item.arity, []])
            continue
        if isinstance(type(item), gp.MetaEphemeral) or not isinstance(item.value, str):
            node = lit(float(item.value))
        else:
            node = Node(item.value)
        while True:
            if not stack:
                result = node
                break
            stack[-1][2].append(node)
            name, arity, children = stack[-1]
            if len(children) < arity:
                break
            stack.pop()
            node = Node(name, tuple(children))
    if result is None:
        raise ValueError("incomplete DEAP tree")
    return result


__all__ = ["PSET", "Beta", "Const", "Vec", "from_deap", "to_deap"]
