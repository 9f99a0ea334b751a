"""Rule trees as sympy expressions (simplification) and as LaTeX (the table's templates).

:func:`to_sympy` uses each row's ``sympy_fn``, which keeps the kernels' protections (``div`` and
``log`` are ``pdiv``/``plog``, which turn into the plain forms where sympy can prove the guarded
value nonzero, such as Adam's ``sqrt(v) + 1e-08``; ``exp`` clips its argument), so the sympy form
computes what the interpreter computes. A state read (``ema(x, beta)``, ``ema_bc``, ``mom``)
becomes a symbol of its own, named by its text, so sympy can simplify around it without
pretending to know its history: as a function of ``x`` sympy would rewrite
``sign(g)*ema(g, 0.9)`` into cases with ``ema(0, 0.9)`` where g is 0, which a buffer of past
gradients is not. :func:`to_latex` prints the tree itself with the table's
``latex`` templates, so EMAs, momentum and clipping read as in a paper.
"""

from __future__ import annotations

import sympy

from primitives.grammar import Node, format_number, postorder
from primitives.table import BETA, CONST, TABLE, VEC


def _symbols() -> dict[str, sympy.Symbol]:
    # schedules lie in [0, 1], which lets sympy see that e.g. 0.35*cos_decay + 6.5 is never 0
    return {p.name: sympy.Symbol(p.name, nonnegative=p.kind == "schedule" or None)
            for p in TABLE.values() if p.arity == 0}


def to_sympy(tree: Node) -> sympy.Expr:
    """The rule as a sympy expression with the kernels' protections."""
    symbols = _symbols()
    values: dict[int, sympy.Expr] = {}
    for node in postorder(tree):
        if node.is_literal:
            values[id(node)] = sympy.Float(node.value)
        elif not node.args:
            values[id(node)] = symbols[node.name]
        else:
            args = [values[id(a)] for a in node.args]
            prim = TABLE[node.name]
            if prim.kind == "state":
                inner = sympy.sstr(args[0], full_prec=False)
                beta = format_number(node.args[1].value)
                values[id(node)] = sympy.Symbol(f"{node.name}({inner}, {beta})")
            else:
                values[id(node)] = prim.sympy_fn(*args)
    return values[id(tree)]


def simplify(tree: Node) -> sympy.Expr:
    return sympy.simplify(to_sympy(tree))


def _latex_number(value: float) -> str:
    text = format_number(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        power = f"10^{{{int(exponent)}}}"
        if mantissa in ("1", "1.0", "-1", "-1.0"):
            return mantissa[:-2] + power if mantissa.endswith(".0") else mantissa[:-1] + power
        return f"{mantissa} \\cdot {power}"
    return text


def to_latex(tree: Node) -> str:
    """LaTeX of the rule from the table's templates, with parentheses where precedence needs them."""
    printed: dict[int, tuple[str, int]] = {}  # node -> (latex, precedence)
    for node in postorder(tree):
        if node.is_literal:
            text = _latex_number(node.value)
            printed[id(node)] = (text, 2 if text.startswith("-") else 0)
            continue
        prim = TABLE[node.name]
        slots: dict[str, str] = {}
        vec_names = iter("xyz")
        for arg, kind in zip(node.args, prim.args):
            if kind == VEC:
                text, prec = printed[id(arg)]
                if prim.latex_prec and prec and prec <= prim.latex_prec:
                    text = f"\\left({text}\\right)"
                slots[next(vec_names)] = text
            elif kind == CONST:
                slots["c"] = _latex_number(arg.value)
            elif kind == BETA:
                slots["b"] = _latex_number(arg.value)
        template = prim.latex or f"\\operatorname{{{node.name}}}"
        printed[id(node)] = (template.format(**slots), prim.latex_prec)
    return printed[id(tree)][0]


__all__ = ["simplify", "to_latex", "to_sympy"]
