"""Variation operators on rule trees: DEAP's typed GP mutations and crossover, plus ours.

Every operator takes an explicit ``numpy.random.Generator``. DEAP's operators draw from the
module-level ``random``; we reseed it from the Generator right before each DEAP call, so a
campaign stays a function of (config, seed) in any process.

Operators (the Lion search and AutoML-Zero use the same families):

* node replacement (DEAP ``mutNodeReplacement``): swap one primitive for another of the same
  type signature, or one leaf for another;
* subtree insert (DEAP ``mutInsert``) and shrink (DEAP ``mutShrink``);
* subtree replacement: a fresh random subtree at a random vec position;
* constant perturbation: one literal times 2**N(0, 1) (decays move 1 - beta in log space), or a
  fresh draw;
* normalise: a subtree x that reads the gradient becomes ``div(x, sqrt(ema_bc(square(y), b)))``
  with y the gradient or x itself: x divided by the root of a running mean of a square, per
  coordinate (RMSprop's idea, which Adam and its descendants keep). The three nested
  primitives score nothing until all are in place, and random-start campaigns never assembled
  them from parts (0 of 4,870 rules, docs/results/README.md); this operator adds them in one
  step, and selection decides whether they stay;
* one-point typed crossover (as DEAP ``cxOnePoint``, with the type drawn from our Generator).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from deap import gp

from primitives.gp import PSET, from_deap, to_deap
from primitives.grammar import Node, check_types, lit
from primitives.random_rules import random_literal, random_tree
from primitives.table import BETA, CONST, TABLE, VEC


@dataclass(frozen=True)
class Limits:
    """Static bloat limits: children beyond them are discarded and the draw repeated."""

    max_height: int = 8
    max_size: int = 32


def _seed_python_random(rng: np.random.Generator) -> None:
    random.seed(int(rng.integers(0, 2**63 - 1)))


def _round(value: float) -> float:
    """Four significant digits keep evolved constants readable in rule text."""
    if value == 0.0:
        return 0.0
    return float(f"{value:.4g}")


def typed_literals(tree: Node) -> list[tuple[int, str]]:
    """(prefix index, type) of every literal in the tree."""
    out: list[tuple[int, str]] = []
    stack: list[tuple[Node, str]] = [(tree, VEC)]
    index = 0
    while stack:
        node, typ = stack.pop()
        if node.is_literal:
            out.append((index, typ))
        index += 1
        if node.args:
            prim = TABLE[node.name]
            stack.extend(reversed(list(zip(node.args, prim.args))))
    return out


def replace_at(tree: Node, index: int, new: Node) -> Node:
    """A copy of ``tree`` with the node at prefix position ``index`` replaced (iterative)."""
    # frames: [node, rebuilt children]; prefix positions are counted as nodes are entered
    position = 0
    root: Node | None = None
    frames: list[list] = []
    stack: list[Node | None] = [tree]  # None marks "close the current frame"
    while stack:
        node = stack.pop()
        if node is None:
            done, children = frames.pop()
            built = Node(done.name, tuple(children), done.value)
        elif position == index:
            position += node.size()
            built = new
        else:
            position += 1
            if node.args:
                frames.append([node, []])
                stack.append(None)
                stack.extend(reversed(node.args))
                continue
            built = node
        if frames:
            frames[-1][1].append(built)
        else:
            root = built
    assert root is not None
    return root


def perturb_constant(tree: Node, rng: np.random.Generator, fresh_prob: float = 0.2) -> Node:
    literals = typed_literals(tree)
    if not literals:
        return tree
    index, typ = literals[int(rng.integers(len(literals)))]
    old = list(tree.walk())[index].value
    if rng.random() < fresh_prob:
        return replace_at(tree, index, random_literal(rng, typ))
    factor = 2.0 ** rng.normal()
    if typ == BETA:
        new = 1.0 - (1.0 - old) * factor
        new = min(max(new, 0.0), 1.0)
    elif typ == CONST:
        new = old * factor
    else:
        new = old * factor
    return replace_at(tree, index, lit(_round(new)))


def replace_subtree(tree: Node, rng: np.random.Generator, max_depth: int = 3) -> Node:
    vec_nodes = [i for i, (n, t) in enumerate(_typed_prefix(tree)) if t == VEC]
    index = vec_nodes[int(rng.integers(len(vec_nodes)))]
    return replace_at(tree, index, random_tree(rng, int(rng.integers(0, max_depth + 1))))


def _typed_prefix(tree: Node):
    stack: list[tuple[Node, str]] = [(tree, VEC)]
    while stack:
        node, typ = stack.pop()
        yield node, typ
        if node.args:
            stack.extend(reversed(list(zip(node.args, TABLE[node.name].args))))


def _deap_mutation(tree: Node, rng: np.random.Generator, kind: str) -> Node:
    individual = to_deap(tree)
    _seed_python_random(rng)
    if kind == "node":
        (individual,) = gp.mutNodeReplacement(individual, PSET)
    elif kind == "insert":
        (individual,) = gp.mutInsert(individual, PSET)
    else:
        (individual,) = gp.mutShrink(individual)
    return from_deap(individual)


# decays of the normaliser's running mean of squares (second-moment decays are long)
NORMALISE_BETAS = (0.9, 0.95, 0.99, 0.999)


def normalise(tree: Node, rng: np.random.Generator) -> Node:
    """Divide one gradient-reading vec subtree x by ``sqrt(ema_bc(square(y), b))``, y = g or x.

    Returns ``tree`` unchanged when no subtree reads ``g`` (the caller draws again)."""
    spots = [(i, node) for i, (node, typ) in enumerate(_typed_prefix(tree))
             if typ == VEC and any(n.name == "g" for n in node.walk())]
    if not spots:
        return tree
    index, x = spots[int(rng.integers(len(spots)))]
    y = Node("g") if rng.random() < 0.5 else x
    beta = lit(NORMALISE_BETAS[int(rng.integers(len(NORMALISE_BETAS)))])
    scale = Node("sqrt", (Node("ema_bc", (Node("square", (y,)), beta)),))
    return replace_at(tree, index, Node("div", (x, scale)))


# the mutation operators and how often each is drawn (constants most: the Lion search found
# most of its gains by tuning the constants of a good structure)
MUTATION_WEIGHTS = {"node": 0.25, "insert": 0.15, "shrink": 0.1, "subtree": 0.2, "constant": 0.3,
                    "normalise": 0.08}


def mutate(tree: Node, rng: np.random.Generator, weights: dict[str, float] | None = None) -> tuple[Node, str]:
    """One mutation drawn by ``weights`` (keys of MUTATION_WEIGHTS); returns the child and the
    operator's name."""
    weights = weights or MUTATION_WEIGHTS
    unknown = set(weights) - set(MUTATION_WEIGHTS)
    if unknown:
        raise ValueError(f"unknown mutation(s) {sorted(unknown)}; known: {list(MUTATION_WEIGHTS)}")
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    if kind == "constant":
        return perturb_constant(tree, rng), kind
    if kind == "subtree":
        return replace_subtree(tree, rng), kind
    if kind == "normalise":
        return normalise(tree, rng), kind
    return _deap_mutation(tree, rng, kind), kind


def crossover(a: Node, b: Node, rng: np.random.Generator) -> tuple[Node, Node]:
    """Typed one-point crossover: swap a random subtree of ``a`` with one of the same type in ``b``.

    The same operator as DEAP's ``cxOnePoint``, written here because that one draws the type
    from a ``set`` of type classes, whose order follows their memory addresses and so differs
    between processes — a resumed campaign would not repeat the uninterrupted one.
    """
    nodes_a = list(_typed_prefix(a))
    nodes_b = list(_typed_prefix(b))
    by_type_a: dict[str, list[int]] = {}
    by_type_b: dict[str, list[int]] = {}
    for i, (_, t) in enumerate(nodes_a[1:], 1):  # the roots are not swapped, as in DEAP
        by_type_a.setdefault(t, []).append(i)
    for i, (_, t) in enumerate(nodes_b[1:], 1):
        by_type_b.setdefault(t, []).append(i)
    common = sorted(set(by_type_a) & set(by_type_b))
    if not common:
        return a, b
    typ = common[int(rng.integers(len(common)))]
    ia = by_type_a[typ][int(rng.integers(len(by_type_a[typ])))]
    ib = by_type_b[typ][int(rng.integers(len(by_type_b[typ])))]
    sub_a, sub_b = nodes_a[ia][0], nodes_b[ib][0]
    return replace_at(a, ia, sub_b), replace_at(b, ib, sub_a)


def within(tree: Node, limits: Limits) -> bool:
    return tree.height() <= limits.max_height and tree.size() <= limits.max_size


def vary(parent: Node, rng: np.random.Generator, limits: Limits, *, other: Node | None = None,
         crossover_prob: float = 0.0, weights: dict[str, float] | None = None,
         attempts: int = 8) -> tuple[Node, str]:
    """A valid child of ``parent`` within the limits (the parent itself if every try fails)."""
    for _ in range(attempts):
        if other is not None and rng.random() < crossover_prob:
            child, _ = crossover(parent, other, rng)
            kind = "crossover"
        else:
            child, kind = mutate(parent, rng, weights)
        if child != parent and within(child, limits):
            check_types(child)
            return child, kind
    return parent, "none"


__all__ = ["Limits", "MUTATION_WEIGHTS", "NORMALISE_BETAS", "crossover", "mutate", "normalise",
           "perturb_constant", "replace_at", "replace_subtree", "vary", "within"]
