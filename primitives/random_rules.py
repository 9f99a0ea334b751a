"""Random, well-typed rule trees drawn with an explicit numpy Generator.

Used for property tests (backends agree on random rules), fuzzing, and as the "random" warm
start of a campaign. Every tree it returns type-checks and compiles.
"""

from __future__ import annotations

import numpy as np

from primitives.grammar import Node, lit
from primitives.table import BETA, CONST, ELEMENTWISE, OPERANDS, SCHEDULES, STATE, VEC

# Literal pools: the values that show up in real optimizers, so random search starts near them.
VEC_LITERALS = (1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 10.0)
BETAS = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999)
_INNER = [p for p in ELEMENTWISE + STATE]
_LEAVES = [p.name for p in OPERANDS + SCHEDULES]


def random_literal(rng: np.random.Generator, arg_type: str) -> Node:
    if arg_type == BETA:
        if rng.random() < 0.7:
            return lit(BETAS[rng.integers(len(BETAS))])
        return lit(float(np.round(rng.random(), 4)))
    if arg_type == CONST:
        return lit(float(np.round(rng.uniform(0.0, 1.0), 4)))
    if rng.random() < 0.7:
        return lit(VEC_LITERALS[rng.integers(len(VEC_LITERALS))])
    return lit(float(np.round(rng.normal(0.0, 1.0), 4)))


def random_leaf(rng: np.random.Generator, *, leaf_weights: tuple[float, float, float] = (0.6, 0.15, 0.25)) -> Node:
    """g / w / a schedule / a vec literal. Weights: (gradient, weights or schedule, literal)."""
    u = rng.random()
    if u < leaf_weights[0]:
        return Node("g")
    if u < leaf_weights[0] + leaf_weights[1]:
        return Node(_LEAVES[1 + rng.integers(len(_LEAVES) - 1)])
    return random_literal(rng, VEC)


def random_tree(rng: np.random.Generator, max_depth: int = 4, *, full: bool = False) -> Node:
    """A random vec-typed tree of height <= max_depth (grow method, or full when ``full``).

    Built iteratively (no recursion limit issues for large depths).
    """

    def build(depth: int) -> Node:
        # explicit stack: frames (primitive, children so far, depth)
        if depth >= max_depth or (not full and depth > 0 and rng.random() < 0.3):
            return random_leaf(rng)
        return None  # type: ignore[return-value]

    root_leaf = build(0)
    if root_leaf is not None:
        return root_leaf
    stack: list[list] = [[_INNER[rng.integers(len(_INNER))], [], 0]]
    while True:
        prim, children, depth = stack[-1]
        if len(children) == len(prim.args):
            stack.pop()
            node = Node(prim.name, tuple(children))
            if not stack:
                return node
            stack[-1][1].append(node)
            continue
        arg_type = prim.args[len(children)]
        if arg_type != VEC:
            children.append(random_literal(rng, arg_type))
            continue
        leaf = build(depth + 1)
        if leaf is not None:
            children.append(leaf)
        else:
            stack.append([_INNER[rng.integers(len(_INNER))], [], depth + 1])


def random_population(rng: np.random.Generator, n: int, min_depth: int = 1, max_depth: int = 5) -> list[Node]:
    """Ramped half-and-half over depths [min_depth, max_depth]."""
    trees = []
    for i in range(n):
        depth = min_depth + i % (max_depth - min_depth + 1)
        trees.append(random_tree(rng, depth, full=bool(i % 2)))
    return trees


__all__ = ["BETAS", "VEC_LITERALS", "random_leaf", "random_literal", "random_population", "random_tree"]
