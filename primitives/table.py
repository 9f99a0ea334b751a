"""The primitive table: every primitive of the search space, defined once for every backend.

Each entry names a primitive and gives its argument types, its scalar Numba kernel (the
interpreter applies it in one vectorised loop), its torch form (a callable for the torch backend
and a source template for the code generator), its sympy form and how it prints in LaTeX.
Backends never special-case a primitive by name: they read this table. The tests in
``tests/test_table.py`` run over every entry, so a new primitive is one entry here.

Types (the DEAP type tags live in :mod:`primitives.gp`):

* ``vec``   a per-parameter tensor (the gradient, an EMA buffer, an intermediate value);
* ``const`` a scalar numeric literal (an interpolation weight, a clip bound);
* ``beta``  a decay constant in [0, 1] for a state buffer (EMA, momentum).

A numeric literal in a ``vec`` position is a constant tensor filled with that value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from numba import njit

VEC = "vec"
CONST = "const"
BETA = "beta"

# exp() clips its argument here so that one large intermediate does not make every rule inf.
EXP_CLIP = 50.0


@dataclass(frozen=True)
class Primitive:
    """One primitive of the search space.

    kind:
      ``elementwise``  out = kernel(x, y, z, c) per element; ``args`` are vec inputs followed by
                       at most one ``const`` literal (passed as ``c``).
      ``state``        a per-parameter buffer updated once per step from its vec input before the
                       rule reads it (torch.optim's convention); ``read`` says what is returned.
      ``operand``      a leaf: the gradient ``g`` or the weights ``w``.
      ``schedule``     a leaf that depends on the step only: ``kernel(frac)`` with
                       frac = (t - 1) / total_steps clipped to [0, 1].
    """

    name: str
    kind: str
    args: tuple[str, ...]
    doc: str
    kernel: Any = None
    torch_fn: Callable | None = None
    torch_src: str = ""
    sympy_fn: Callable | None = None
    latex: str = ""
    # state primitives: how the buffer is updated ("ema" or "accumulate") and read ("raw" or
    # "bias_corrected").
    update: str = ""
    read: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def arity(self) -> int:
        return len(self.args)

    @property
    def vec_arity(self) -> int:
        return sum(1 for a in self.args if a == VEC)


# --------------------------------------------------------------------------------------------
# Scalar Numba kernels. Uniform signature (x, y, z, c) so the interpreter can dispatch over a
# tuple of them; unused arguments are ignored. NaN handling is chosen to match torch on CPU.


@njit(inline="always")
def _k_add(x, y, z, c):
    return x + y


@njit(inline="always")
def _k_sub(x, y, z, c):
    return x - y


@njit(inline="always")
def _k_mul(x, y, z, c):
    return x * y


@njit(inline="always")
def _k_div(x, y, z, c):
    # protected: x / 0 is 0 rather than inf, as in classic GP
    if y != 0.0:
        return x / y
    return 0.0


@njit(inline="always")
def _k_neg(x, y, z, c):
    return -x


@njit(inline="always")
def _k_abs(x, y, z, c):
    return abs(x)


@njit(inline="always")
def _k_sign(x, y, z, c):
    # torch.sign(nan) is 0; so is ours
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


@njit(inline="always")
def _k_sqrt(x, y, z, c):
    return math.sqrt(abs(x))


@njit(inline="always")
def _k_square(x, y, z, c):
    return x * x


@njit(inline="always")
def _k_exp(x, y, z, c):
    if x > EXP_CLIP:
        return math.exp(EXP_CLIP)
    return math.exp(x)


@njit(inline="always")
def _k_log(x, y, z, c):
    if x != 0.0:
        return math.log(abs(x))
    return 0.0


@njit(inline="always")
def _k_max(x, y, z, c):
    # NaN in either argument gives NaN, as torch.maximum
    if x != x or y != y:
        return x + y
    return x if x >= y else y


@njit(inline="always")
def _k_min(x, y, z, c):
    if x != x or y != y:
        return x + y
    return x if x <= y else y


@njit(inline="always")
def _k_clip(x, y, z, c):
    b = abs(c)
    if x > b:
        return b
    if x < -b:
        return -b
    return x


@njit(inline="always")
def _k_interp(x, y, z, c):
    return (1.0 - c) * x + c * y


@njit(inline="always")
def _s_lin(frac):
    return 1.0 - frac


@njit(inline="always")
def _s_cos(frac):
    return 0.5 * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------------------------
# torch forms (imported lazily so that the search path never needs torch)


def _t(name: str) -> Callable:
    """torch callable for an elementwise primitive; kept apart from the kernels for clarity."""

    def where0(cond, value, like):
        return value.where(cond, like.new_zeros(()))

    forms: dict[str, Callable] = {
        "add": lambda x, y, z, c: x + y,
        "sub": lambda x, y, z, c: x - y,
        "mul": lambda x, y, z, c: x * y,
        "div": lambda x, y, z, c: where0(y != 0, x / y, x),
        "neg": lambda x, y, z, c: -x,
        "abs": lambda x, y, z, c: x.abs(),
        "sign": lambda x, y, z, c: x.sign(),
        "sqrt": lambda x, y, z, c: x.abs().sqrt(),
        "square": lambda x, y, z, c: x * x,
        "exp": lambda x, y, z, c: x.clamp(max=EXP_CLIP).exp(),
        "log": lambda x, y, z, c: where0(x != 0, x.abs().log(), x),
        "max": lambda x, y, z, c: _torch().maximum(x, y),
        "min": lambda x, y, z, c: _torch().minimum(x, y),
        "clip": lambda x, y, z, c: x.clamp(-abs(c), abs(c)),
        "interp": lambda x, y, z, c: (1.0 - c) * x + c * y,
    }
    return forms[name]


def _torch():
    import torch

    return torch


# Source templates for the code generator: {x} {y} are tensor expressions, {c} a float literal.
_TORCH_SRC = {
    "add": "{x} + {y}",
    "sub": "{x} - {y}",
    "mul": "{x} * {y}",
    "div": "({x} / {y}).where({y} != 0, {y}.new_zeros(()))",
    "neg": "-{x}",
    "abs": "{x}.abs()",
    "sign": "{x}.sign()",
    "sqrt": "{x}.abs().sqrt()",
    "square": "{x} * {x}",
    "exp": "{x}.clamp(max=" + repr(EXP_CLIP) + ").exp()",
    "log": "{x}.abs().log().where({x} != 0, {x}.new_zeros(()))",
    "max": "torch.maximum({x}, {y})",
    "min": "torch.minimum({x}, {y})",
    "clip": "{x}.clamp(-{absc}, {absc})",
    "interp": "{omc} * {x} + {c} * {y}",
}


# In-place variants for the code generator, used when {x} is a temporary whose only use is
# this opcode (so overwriting it is invisible). Missing: no in-place form.
_TORCH_INPLACE = {
    "add": "{x}.add_({y})",
    "sub": "{x}.sub_({y})",
    "mul": "{x}.mul_({y})",
    "neg": "{x}.neg_()",
    "abs": "{x}.abs_()",
    "sign": "{x}.sign_()",
    "sqrt": "{x}.abs_().sqrt_()",
    "square": "{x}.mul_({x})",
    "exp": "{x}.clamp_(max=" + repr(EXP_CLIP) + ").exp_()",
    "clip": "{x}.clamp_(-{absc}, {absc})",
}
# Where the denominator is never exactly zero, protected division is plain division
# (NaN and inf propagate the same way in both), so the generator can drop the mask.
_TORCH_DIV_NONZERO = ("{x} / {y}", "{x}.div_({y})")

# Sign facts for the code generator: (nonneg, positive) of the result from those of the vec
# inputs ("positive" = never exactly zero; NaN is allowed, it propagates identically).
_SIGN_RULES = {
    "add": lambda nn, pos, c: (nn[0] and nn[1], (nn[0] and pos[1]) or (pos[0] and nn[1])),
    "mul": lambda nn, pos, c: (nn[0] and nn[1], False),
    "div": lambda nn, pos, c: (nn[0] and nn[1], False),
    "abs": lambda nn, pos, c: (True, pos[0]),
    "sqrt": lambda nn, pos, c: (True, pos[0]),
    "square": lambda nn, pos, c: (True, False),
    "exp": lambda nn, pos, c: (True, False),
    "sign": lambda nn, pos, c: (nn[0], pos[0] and nn[0]),
    "max": lambda nn, pos, c: (nn[0] or nn[1], (pos[0] and nn[0]) or (pos[1] and nn[1])),
    "min": lambda nn, pos, c: (nn[0] and nn[1], pos[0] and pos[1] and nn[0] and nn[1]),
    "clip": lambda nn, pos, c: (nn[0], False),
    "interp": lambda nn, pos, c: (nn[0] and nn[1] and 0.0 <= c <= 1.0, False),
}


def _sympy():
    import sympy

    return sympy


def _sympy_form(name: str) -> Callable:
    def f(*a):
        sp = _sympy()
        x = a[0] if a else None
        y = a[1] if len(a) > 1 else None
        forms = {
            "add": lambda: x + y,
            "sub": lambda: x - y,
            "mul": lambda: x * y,
            "div": lambda: x / y,
            "neg": lambda: -x,
            "abs": lambda: sp.Abs(x),
            "sign": lambda: sp.sign(x),
            "sqrt": lambda: sp.sqrt(sp.Abs(x)),
            "square": lambda: x**2,
            "exp": lambda: sp.exp(x),
            "log": lambda: sp.log(sp.Abs(x)),
            "max": lambda: sp.Max(x, y),
            "min": lambda: sp.Min(x, y),
            "clip": lambda: sp.Max(sp.Min(x, abs(y)), -abs(y)),
            "interp": lambda: (1 - a[2]) * x + a[2] * y,
        }
        return forms[name]()

    return f


def _elementwise(name: str, args: tuple[str, ...], kernel, doc: str, latex: str) -> Primitive:
    return Primitive(
        name=name,
        kind="elementwise",
        args=args,
        doc=doc,
        kernel=kernel,
        torch_fn=_t(name),
        torch_src=_TORCH_SRC[name],
        sympy_fn=_sympy_form(name),
        latex=latex,
        extra={
            "inplace_src": _TORCH_INPLACE.get(name),
            "sign_rule": _SIGN_RULES.get(name, lambda nn, pos, c: (False, False)),
            "nonzero_src": _TORCH_DIV_NONZERO if name == "div" else None,
        },
    )


V, C, B = VEC, CONST, BETA

ELEMENTWISE: tuple[Primitive, ...] = (
    _elementwise("add", (V, V), _k_add, "x + y", "{x} + {y}"),
    _elementwise("sub", (V, V), _k_sub, "x - y", "{x} - {y}"),
    _elementwise("mul", (V, V), _k_mul, "x * y", "{x} {y}"),
    _elementwise("div", (V, V), _k_div, "x / y, and 0 where y == 0", "\\frac{{{x}}}{{{y}}}"),
    _elementwise("neg", (V,), _k_neg, "-x", "-{x}"),
    _elementwise("abs", (V,), _k_abs, "|x|", "|{x}|"),
    _elementwise("sign", (V,), _k_sign, "sign(x) in {-1, 0, 1} (0 for NaN, as torch)", ""),
    _elementwise("sqrt", (V,), _k_sqrt, "sqrt(|x|)", "\\sqrt{{|{x}|}}"),
    _elementwise("square", (V,), _k_square, "x * x", "{x}^2"),
    _elementwise("exp", (V,), _k_exp, f"exp(min(x, {EXP_CLIP:g}))", "e^{{{x}}}"),
    _elementwise("log", (V,), _k_log, "log|x|, and 0 where x == 0", "\\log|{x}|"),
    _elementwise("max", (V, V), _k_max, "elementwise maximum (NaN propagates)", ""),
    _elementwise("min", (V, V), _k_min, "elementwise minimum (NaN propagates)", ""),
    _elementwise("clip", (V, C), _k_clip, "clamp x to [-|c|, |c|]", ""),
    _elementwise("interp", (V, V, C), _k_interp, "(1 - a) * x + a * y", ""),
)

STATE: tuple[Primitive, ...] = (
    Primitive(
        name="ema",
        kind="state",
        args=(V, B),
        doc="exponential moving average m = b*m + (1-b)*x, updated before the rule reads it",
        update="ema",
        read="raw",
    ),
    Primitive(
        name="ema_bc",
        kind="state",
        args=(V, B),
        doc="the same EMA, bias-corrected as Adam: m / (1 - b**t)",
        update="ema",
        read="bias_corrected",
    ),
    Primitive(
        name="mom",
        kind="state",
        args=(V, B),
        doc="heavy-ball accumulator m = b*m + x (torch.optim.SGD momentum, dampening 0)",
        update="accumulate",
        read="raw",
    ),
)

OPERANDS: tuple[Primitive, ...] = (
    Primitive(name="g", kind="operand", args=(), doc="the gradient"),
    Primitive(name="w", kind="operand", args=(), doc="the parameter (weights) before the step"),
)

SCHEDULES: tuple[Primitive, ...] = (
    Primitive(
        name="lin_decay",
        kind="schedule",
        args=(),
        doc="linear decay 1 - (t-1)/T over total_steps T (Neural Optimizer Search)",
        kernel=_s_lin,
        extra={"py": lambda frac: 1.0 - frac, "src": "1.0 - {frac}"},
    ),
    Primitive(
        name="cos_decay",
        kind="schedule",
        args=(),
        doc="cosine decay 0.5 * (1 + cos(pi * (t-1)/T)) over total_steps T",
        kernel=_s_cos,
        extra={
            "py": lambda frac: 0.5 * (1.0 + math.cos(math.pi * frac)),
            "src": "0.5 * (1.0 + math.cos(math.pi * {frac}))",
        },
    ),
)

TABLE: dict[str, Primitive] = {p.name: p for p in ELEMENTWISE + STATE + OPERANDS + SCHEDULES}

# Opcode layout shared by the interpreter and the torch backend.
N_ELEMENTWISE = len(ELEMENTWISE)
ELEMENTWISE_INDEX = {p.name: i for i, p in enumerate(ELEMENTWISE)}
OP_EMA = 100  # state update: s = b*s + (1-b)*x
OP_ACC = 101  # state update: s = b*s + x
OP_BIAS = 102  # dst = s / (1 - b**t)
OP_SCHEDULE = 110  # + index into SCHEDULES: dst = schedule(frac), filled each step
SCHEDULE_INDEX = {p.name: i for i, p in enumerate(SCHEDULES)}

ELEMENTWISE_KERNELS = tuple(p.kernel for p in ELEMENTWISE)
SCHEDULE_KERNELS = tuple(p.kernel for p in SCHEDULES)


def names() -> list[str]:
    """Every name the rule grammar admits."""
    return sorted(TABLE)


def schedule_frac(t: int, total_steps: int) -> float:
    """Position in the schedule for 1-based step t: (t-1)/T clipped to [0, 1]."""
    if total_steps <= 0:
        return 0.0
    return min(max((t - 1) / total_steps, 0.0), 1.0)


def scalar_reference(name: str, x: float, y: float = 0.0, c: float = 0.0) -> float:
    """Apply one elementwise primitive to Python floats (for tests and docs)."""
    return float(TABLE[name].kernel.py_func(x, y, 0.0, c))


__all__ = [
    "BETA",
    "CONST",
    "ELEMENTWISE",
    "ELEMENTWISE_INDEX",
    "ELEMENTWISE_KERNELS",
    "EXP_CLIP",
    "N_ELEMENTWISE",
    "OPERANDS",
    "OP_ACC",
    "OP_BIAS",
    "OP_EMA",
    "OP_SCHEDULE",
    "Primitive",
    "SCHEDULES",
    "SCHEDULE_INDEX",
    "SCHEDULE_KERNELS",
    "STATE",
    "TABLE",
    "VEC",
    "schedule_frac",
]
