"""The primitive table: every primitive of the search space, one row each, read by every backend.

A row holds everything a backend needs (its fields are named below): the scalar Numba kernel the
interpreter runs, the torch callable and source template for elementwise code, the ``_foreach``
pipeline of the exported optimizer, the sign facts and bias-correction algebra its code generator
uses, the sympy form and the LaTeX template. The math of the state buffers (the EMA, the
accumulator, Adam's bias correction) is a row of its own (:class:`StateUpdate`,
:data:`BIAS_CORRECTION`), so the interpreter, the torch backend and the exported class share it.
Backends never special-case a primitive by name, and the tests of ``tests/test_table.py`` run over
every row, so a new primitive is one row here (or one :func:`register` call before ``fitness`` is
imported, which is how the tests add one).

Types (the DEAP type tags live in :mod:`primitives.gp`):

* ``vec``   a per-parameter tensor (the gradient, an EMA buffer, an intermediate value);
* ``const`` a scalar numeric literal (an interpolation weight, a clip bound);
* ``beta``  a decay constant in [0, 1] for a state buffer (EMA, momentum).

A numeric literal in a ``vec`` position is a constant tensor filled with that value.

The module is over 400 lines because it is the table: one row per primitive with its kernel and
forms side by side, which is the point of the module.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from numba import njit

VEC = "vec"
CONST = "const"
BETA = "beta"

# exp() clips its argument here so that one large intermediate does not make every rule inf.
EXP_CLIP = 50.0

# A pipeline is a tuple of steps ``(method, *args)``: ``torch._foreach_<method>`` applied to the
# value flowing through it (the first vec input, or a state buffer), the lowering choosing the
# in-place variant where the value is a temporary of its own. Argument tokens: "x", "y" (the vec
# inputs; "x1", "x2" the two factors of a product), "c", "|c|", "-|c|" (the const), "b", "1-b"
# (a decay constant), or a float; a dict as the last element holds keyword arguments.
Pipeline = tuple[tuple[Any, ...], ...]


def _no_sign_facts(nonneg: tuple, positive: tuple, c: float) -> tuple[bool, bool]:
    return False, False


@dataclass(frozen=True)
class Primitive:
    """What every row has: a name the grammar admits, argument types, a doc line, LaTeX.

    ``kind`` is ``elementwise``, ``state``, ``operand`` (g, w) or ``schedule``. ``latex`` is a
    template over the arguments (vec inputs ``x y z``, const ``c``, decay ``b``);
    ``latex_prec`` is its precedence (0: delimits its arguments, 1: additive, 2: multiplicative,
    3: a power), so the printer knows where parentheses are needed.
    """

    name: str
    kind: str
    args: tuple[str, ...]
    doc: str
    latex: str = ""
    latex_prec: int = 0

    @property
    def arity(self) -> int:
        return len(self.args)

    @property
    def vec_arity(self) -> int:
        return sum(1 for a in self.args if a == VEC)


@dataclass(frozen=True)
class Elementwise(Primitive):
    """out = f(x, y, z, c) per element: vec inputs, then at most one const literal (``c``).

    kernel:      scalar Numba kernel ``(x, y, z, c) -> float`` (``inline='always'``); the
                 interpreter applies it in one loop. NaN handling matches torch on CPU.
    torch_fn:    the same on tensors, ``(x, y, z, c) -> Tensor`` (broadcasting, out of place).
    torch_src:   source template of ``torch_fn`` for generated code (``{x} {y} {z} {c}
                 {absc}`` = |c|).
    foreach:     the pipeline of ``torch._foreach_*`` ops that computes it over lists of
                 tensors; None: the lowering maps ``torch_fn`` over the tensors.
    guard:       index of the vec input whose zeros the primitive protects (div's y, log's x):
                 ``foreach`` holds only where that input is never zero; elsewhere ``torch_fn``
                 (masked) is used.
    sign_rule:   ``(nonneg, positive, c) -> (nonneg, positive)`` of the result from those of
                 the vec inputs ("positive" = never exactly zero, even for NaN inputs).
    divisor:     how a positive per-step divisor d on the inputs passes through, so Adam's bias
                 corrections stay scalars: ``keep`` f(x/d) = f(x)/d, ``drop`` f(x/d) = f(x),
                 ``sqrt``, ``square``, ``product`` (x/d1 * y/d2), ``quotient``, ``shift``
                 (x/d + c = (x + c*d)/d for a scalar c, or two lists with the same d); ""
                 divides first.
    fused:       ``(method, a, b)``: f is ``a * b`` (``addcmul_``) or ``a / b`` (``addcdiv_``) of
                 the tokens a, b, so a consumer adds ``value * f`` to a tensor in one pass
                 without materialising f (a state buffer's update, the parameter step).
    sympy_fn:    the sympy form ``(x, y, c...) -> Expr`` with the kernel's protections.
    """

    kernel: Any = None
    torch_fn: Callable | None = None
    torch_src: str = ""
    foreach: Pipeline | None = None
    guard: int | None = None
    sign_rule: Callable = _no_sign_facts
    divisor: str = ""
    fused: tuple[str, str, str] | tuple[()] = ()
    sympy_fn: Callable | None = None


@dataclass(frozen=True)
class StateUpdate:
    """How a state buffer m is updated from its input x once per step, with decay b.

    kernel:  scalar Numba kernel ``(m, x, b) -> new m`` (the interpreter's loop body);
    foreach: the in-place pipeline on the list of buffers (tokens "x", "b", "1-b");
    foreach_product: the same where x is a product x1*x2 (a ``fused`` addcmul_ row), which is
             then never materialised (Adam's second moment: ``mul_`` and ``addcmul_``).
    """

    name: str
    formula: str
    kernel: Any
    foreach: Pipeline
    foreach_product: Pipeline


@dataclass(frozen=True)
class BiasCorrection:
    """Adam's bias correction: a buffer is read as m / denominator(b, t), and as 0 when b == 1.

    kernel: scalar Numba kernel ``(b, t) -> 1 - b**t`` (``t`` the 1-based step, as a float);
    src:    its source template for generated code (``{b}`` a float literal, ``t`` the step).
    """

    formula: str
    kernel: Any
    src: str


@dataclass(frozen=True)
class State(Primitive):
    """A per-parameter buffer updated once per step from its vec input, before the rule reads
    it (torch.optim's convention); ``bias_corrected`` reads it through :data:`BIAS_CORRECTION`."""

    update: StateUpdate | None = None
    bias_corrected: bool = False


@dataclass(frozen=True)
class Schedule(Primitive):
    """A leaf that depends on the step only: ``kernel(frac)`` with frac from :func:`schedule_frac`.

    ``kernel`` is a scalar Numba kernel (its ``py_func`` is the Python form); ``src`` its source
    template for generated code (``{frac}``; ``math`` is imported there).
    """

    kernel: Any = None
    src: str = ""


# --------------------------------------------------------------------------------------------
# Scalar Numba kernels. Uniform signature (x, y, z, c) so the interpreter can dispatch over a
# tuple of them; unused arguments are ignored.


@njit(inline="always")
def lerp(start, end, weight):
    """torch.lerp's formula (the branch with the smaller rounding error for each weight)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


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
    return lerp(x, y, c)


@njit(inline="always")
def _u_ema(m, x, b):
    return b * m + (1.0 - b) * x


@njit(inline="always")
def _u_accumulate(m, x, b):
    return b * m + x


@njit(inline="always")
def _bias_denominator(b, t):
    # a float power (libm pow), as torch.optim.Adam's bias correction computes it
    return 1.0 - b ** t


@njit(inline="always")
def _s_lin(frac):
    return 1.0 - frac


@njit(inline="always")
def _s_cos(frac):
    return 0.5 * (1.0 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------------------------
# torch and sympy helpers (imported lazily, so that the search path never needs either)


def _torch():
    import torch

    return torch


def _sympy():
    import sympy

    return sympy


def _where0(cond, value, like):
    return value.where(cond, like.new_zeros(()))


@cache
def protected_sympy() -> tuple[type, type]:
    """sympy functions ``pdiv(x, y)`` and ``plog(x)`` with the kernels' protections.

    They become ``x/y`` and ``log|x|`` (or 0) as soon as sympy can tell whether the guarded
    value is zero (a number, or ``sqrt(v) + 1e-08``), and stay opaque otherwise: a Piecewise at
    zero would say the same but makes ``simplify`` of evolved rules several times slower.
    """
    sp = _sympy()

    class pdiv(sp.Function):  # noqa: N801 - sympy prints the class name
        """x / y, and 0 where y == 0."""

        @classmethod
        def eval(cls, x, y):
            if y.is_zero:
                return sp.S.Zero
            if y.is_zero is False:
                return x / y
            return None

        def _eval_rewrite_as_Piecewise(self, x, y, **kwargs):
            return sp.Piecewise((0, sp.Eq(y, 0)), (x / y, True))

    class plog(sp.Function):  # noqa: N801
        """log|x|, and 0 where x == 0."""

        @classmethod
        def eval(cls, x):
            if x.is_zero:
                return sp.S.Zero
            if x.is_zero is False:
                return sp.log(sp.Abs(x))
            return None

        def _eval_rewrite_as_Piecewise(self, x, **kwargs):
            return sp.Piecewise((0, sp.Eq(x, 0)), (sp.log(sp.Abs(x)), True))

    return pdiv, plog


def _sympy_div(x, y):
    return protected_sympy()[0](x, y)


def _sympy_log(x):
    return protected_sympy()[1](x)


def _sympy_clip(x, c):
    sp = _sympy()
    return sp.Max(sp.Min(x, abs(c)), -abs(c))


V, C, B = VEC, CONST, BETA

ELEMENTWISE: tuple[Elementwise, ...] = (
    Elementwise(
        "add", "elementwise", (V, V), "x + y", "{x} + {y}", 1,
        kernel=_k_add, torch_fn=lambda x, y, z, c: x + y, torch_src="{x} + {y}",
        foreach=(("add", "y"),), divisor="shift",
        sign_rule=lambda nn, pos, c: (nn[0] and nn[1], (nn[0] and pos[1]) or (pos[0] and nn[1])),
        sympy_fn=lambda x, y: x + y,
    ),
    Elementwise(
        "sub", "elementwise", (V, V), "x - y", "{x} - {y}", 1,
        kernel=_k_sub, torch_fn=lambda x, y, z, c: x - y, torch_src="{x} - {y}",
        foreach=(("sub", "y"),), divisor="shift", sympy_fn=lambda x, y: x - y,
    ),
    Elementwise(
        "mul", "elementwise", (V, V), "x * y", "{x} \\cdot {y}", 2,
        kernel=_k_mul, torch_fn=lambda x, y, z, c: x * y, torch_src="{x} * {y}",
        foreach=(("mul", "y"),), sign_rule=lambda nn, pos, c: (nn[0] and nn[1], False),
        divisor="product", fused=("addcmul_", "x", "y"), sympy_fn=lambda x, y: x * y,
    ),
    Elementwise(
        "div", "elementwise", (V, V), "x / y, and 0 where y == 0", "\\frac{{{x}}}{{{y}}}", 0,
        kernel=_k_div, torch_fn=lambda x, y, z, c: _where0(y != 0, x / y, x),
        torch_src="({x} / {y}).where({y} != 0, {y}.new_zeros(()))",
        foreach=(("div", "y"),), guard=1,
        sign_rule=lambda nn, pos, c: (nn[0] and nn[1], False),
        divisor="quotient", fused=("addcdiv_", "x", "y"), sympy_fn=_sympy_div,
    ),
    Elementwise(
        "neg", "elementwise", (V,), "-x", "-{x}", 2,
        kernel=_k_neg, torch_fn=lambda x, y, z, c: -x, torch_src="-{x}",
        foreach=(("neg",),), sign_rule=lambda nn, pos, c: (False, pos[0]),
        divisor="keep", sympy_fn=lambda x: -x,
    ),
    Elementwise(
        "abs", "elementwise", (V,), "|x|", "\\left|{x}\\right|", 0,
        kernel=_k_abs, torch_fn=lambda x, y, z, c: x.abs(), torch_src="{x}.abs()",
        foreach=(("abs",),), sign_rule=lambda nn, pos, c: (True, pos[0]),
        divisor="keep", sympy_fn=lambda x: _sympy().Abs(x),
    ),
    Elementwise(
        # never "positive": sign(nan) is 0
        "sign", "elementwise", (V,), "sign(x) in {-1, 0, 1} (0 for NaN, as torch)",
        "\\operatorname{{sign}}\\left({x}\\right)", 0,
        kernel=_k_sign, torch_fn=lambda x, y, z, c: x.sign(), torch_src="{x}.sign()",
        foreach=(("sign",),), sign_rule=lambda nn, pos, c: (nn[0], False),
        divisor="drop", sympy_fn=lambda x: _sympy().sign(x),
    ),
    Elementwise(
        "sqrt", "elementwise", (V,), "sqrt(|x|)", "\\sqrt{{\\left|{x}\\right|}}", 0,
        kernel=_k_sqrt, torch_fn=lambda x, y, z, c: x.abs().sqrt(), torch_src="{x}.abs().sqrt()",
        foreach=(("abs",), ("sqrt",)), sign_rule=lambda nn, pos, c: (True, pos[0]),
        divisor="sqrt", sympy_fn=lambda x: _sympy().sqrt(_sympy().Abs(x)),
    ),
    Elementwise(
        "square", "elementwise", (V,), "x * x", "{x}^{{2}}", 3,
        kernel=_k_square, torch_fn=lambda x, y, z, c: x * x, torch_src="{x} * {x}",
        foreach=(("mul", "x"),), sign_rule=lambda nn, pos, c: (True, False),
        divisor="square", fused=("addcmul_", "x", "x"), sympy_fn=lambda x: x**2,
    ),
    Elementwise(
        "exp", "elementwise", (V,), f"exp(min(x, {EXP_CLIP:g}))", "e^{{{x}}}", 3,
        kernel=_k_exp, torch_fn=lambda x, y, z, c: x.clamp(max=EXP_CLIP).exp(),
        torch_src="{x}.clamp(max=" + repr(EXP_CLIP) + ").exp()",
        foreach=(("clamp_max", EXP_CLIP), ("exp",)), sign_rule=lambda nn, pos, c: (True, False),
        sympy_fn=lambda x: _sympy().exp(_sympy().Min(x, EXP_CLIP)),
    ),
    Elementwise(
        "log", "elementwise", (V,), "log|x|, and 0 where x == 0", "\\log\\left|{x}\\right|", 0,
        kernel=_k_log, torch_fn=lambda x, y, z, c: _where0(x != 0, x.abs().log(), x),
        torch_src="{x}.abs().log().where({x} != 0, {x}.new_zeros(()))",
        foreach=(("abs",), ("log",)), guard=0, sympy_fn=_sympy_log,
    ),
    Elementwise(
        "max", "elementwise", (V, V), "elementwise maximum (NaN propagates)",
        "\\max\\left({x}, {y}\\right)", 0,
        kernel=_k_max, torch_fn=lambda x, y, z, c: _torch().maximum(x, y),
        torch_src="torch.maximum({x}, {y})", foreach=(("maximum", "y"),),
        sign_rule=lambda nn, pos, c: (nn[0] or nn[1], (pos[0] and nn[0]) or (pos[1] and nn[1])),
        sympy_fn=lambda x, y: _sympy().Max(x, y),
    ),
    Elementwise(
        "min", "elementwise", (V, V), "elementwise minimum (NaN propagates)",
        "\\min\\left({x}, {y}\\right)", 0,
        kernel=_k_min, torch_fn=lambda x, y, z, c: _torch().minimum(x, y),
        torch_src="torch.minimum({x}, {y})", foreach=(("minimum", "y"),),
        sign_rule=lambda nn, pos, c: (nn[0] and nn[1], pos[0] and pos[1] and nn[0] and nn[1]),
        sympy_fn=lambda x, y: _sympy().Min(x, y),
    ),
    Elementwise(
        "clip", "elementwise", (V, C), "clamp x to [-|c|, |c|]",
        "\\operatorname{{clip}}_{{{c}}}\\left({x}\\right)", 0,
        kernel=_k_clip, torch_fn=lambda x, y, z, c: x.clamp(-abs(c), abs(c)),
        torch_src="{x}.clamp(-{absc}, {absc})",
        foreach=(("clamp_min", "-|c|"), ("clamp_max", "|c|")),
        sign_rule=lambda nn, pos, c: (nn[0], False), sympy_fn=_sympy_clip,
    ),
    Elementwise(
        "interp", "elementwise", (V, V, C), "(1 - c) * x + c * y, computed as torch.lerp",
        "\\operatorname{{interp}}_{{{c}}}\\left({x}, {y}\\right)", 0,
        kernel=_k_interp, torch_fn=lambda x, y, z, c: x.lerp(y, c), torch_src="{x}.lerp({y}, {c})",
        foreach=(("lerp", "y", "c"),),
        sign_rule=lambda nn, pos, c: (nn[0] and nn[1] and 0.0 <= c <= 1.0, False),
        sympy_fn=lambda x, y, c: (1 - c) * x + c * y,
    ),
)

# The EMA is b*m + (1-b)*x (torch.optim.Adam's second moment), not torch.lerp (Adam's first
# moment): the same value but other inf/NaN cases, and only this form takes a product without
# materialising it, which saves a temporary list per step (page faults: ~3 passes on CPU).
EMA_UPDATE = StateUpdate(
    "ema", "m = b*m + (1-b)*x", _u_ema,
    (("mul", "b"), ("add", "x", {"alpha": "1-b"})),
    (("mul", "b"), ("addcmul", "x1", "x2", "1-b")),
)
ACCUMULATE_UPDATE = StateUpdate(
    "accumulate", "m = b*m + x (torch.optim.SGD's momentum buffer, dampening 0)", _u_accumulate,
    (("mul", "b"), ("add", "x")),
    (("mul", "b"), ("addcmul", "x1", "x2", 1.0)),
)
BIAS_CORRECTION = BiasCorrection("m / (1 - b**t); 0 where b == 1", _bias_denominator,
                                 "(1.0 - {b} ** t)")

STATE: tuple[State, ...] = (
    State("ema", "state", (V, B), "exponential moving average m = b*m + (1-b)*x, updated "
          "before the rule reads it", "\\operatorname{{EMA}}_{{{b}}}\\left({x}\\right)",
          update=EMA_UPDATE),
    State("ema_bc", "state", (V, B), "the same EMA, bias-corrected as Adam: m / (1 - b**t)",
          "\\widehat{{\\operatorname{{EMA}}}}_{{{b}}}\\left({x}\\right)",
          update=EMA_UPDATE, bias_corrected=True),
    State("mom", "state", (V, B), "heavy-ball accumulator m = b*m + x (torch.optim.SGD "
          "momentum, dampening 0)", "\\operatorname{{mom}}_{{{b}}}\\left({x}\\right)",
          update=ACCUMULATE_UPDATE),
)

OPERANDS: tuple[Primitive, ...] = (
    Primitive("g", "operand", (), "the gradient", "g"),
    Primitive("w", "operand", (), "the parameter (weights) before the step", "w"),
)

SCHEDULES: tuple[Schedule, ...] = (
    Schedule("lin_decay", "schedule", (),
             "linear decay 1 - (t-1)/T over total_steps T (Neural Optimizer Search); 0 after T",
             "\\operatorname{{lin}}(t)", kernel=_s_lin, src="1.0 - {frac}"),
    Schedule("cos_decay", "schedule", (),
             "cosine decay 0.5 * (1 + cos(pi * (t-1)/T)) over total_steps T; 0 after T",
             "\\operatorname{{cos}}(t)", kernel=_s_cos,
             src="0.5 * (1.0 + math.cos(math.pi * {frac}))"),
)

TABLE: dict[str, Primitive] = {}
ELEMENTWISE_INDEX: dict[str, int] = {}
SCHEDULE_INDEX: dict[str, int] = {}

# Opcode layout shared by the interpreter and the torch backend. Elementwise opcodes are the
# row's index in ELEMENTWISE, so they must stay below OP_EMA.
OP_EMA = 100  # state update: EMA_UPDATE
OP_ACC = 101  # state update: ACCUMULATE_UPDATE
OP_BIAS = 102  # dst = s / BIAS_CORRECTION(b, t)
OP_SCHEDULE = 110  # + index into SCHEDULES: dst = schedule(frac), filled each step
UPDATE_OPCODES = {EMA_UPDATE.name: OP_EMA, ACCUMULATE_UPDATE.name: OP_ACC}
UPDATES = {OP_EMA: EMA_UPDATE, OP_ACC: ACCUMULATE_UPDATE}

N_ELEMENTWISE = 0
ELEMENTWISE_KERNELS: tuple = ()
SCHEDULE_KERNELS: tuple = ()
_locked = False


def _index() -> None:
    """Rebuild the name and opcode indexes after the rows changed."""
    global N_ELEMENTWISE, ELEMENTWISE_KERNELS, SCHEDULE_KERNELS
    TABLE.clear()
    TABLE.update({p.name: p for p in ELEMENTWISE + STATE + OPERANDS + SCHEDULES})
    ELEMENTWISE_INDEX.clear()
    ELEMENTWISE_INDEX.update({p.name: i for i, p in enumerate(ELEMENTWISE)})
    SCHEDULE_INDEX.clear()
    SCHEDULE_INDEX.update({p.name: i for i, p in enumerate(SCHEDULES)})
    N_ELEMENTWISE = len(ELEMENTWISE)
    ELEMENTWISE_KERNELS = tuple(p.kernel for p in ELEMENTWISE)
    SCHEDULE_KERNELS = tuple(p.kernel for p in SCHEDULES)


_index()


def register(prim: Elementwise | Schedule) -> None:
    """Add an elementwise or schedule row at run time (a plug-in, or a test's new primitive).

    Call it before importing :mod:`fitness` or any backend: those read the table when they are
    imported, and importing :mod:`fitness` locks it (the interpreter's cache key covers the rows
    present then, see :func:`kernel_signature`).
    """
    global ELEMENTWISE, SCHEDULES
    if _locked:
        raise RuntimeError(
            f"cannot add {prim.name!r}: the primitive table is locked (fitness was imported and "
            "keyed its compiled interpreter to the rows it saw); register primitives first"
        )
    if prim.name in TABLE or not prim.name.isidentifier():
        raise ValueError(f"primitive name {prim.name!r} is taken or not an identifier")
    if isinstance(prim, Elementwise) and prim.kind == "elementwise":
        if len(ELEMENTWISE) + 1 >= OP_EMA:
            raise ValueError(f"at most {OP_EMA - 1} elementwise primitives fit the opcodes")
        if not prim.args or prim.args[0] != VEC or prim.args.count(CONST) > 1 or BETA in prim.args:
            raise ValueError("elementwise args are vec inputs then at most one const")
        ELEMENTWISE = ELEMENTWISE + (prim,)
    elif isinstance(prim, Schedule) and prim.kind == "schedule" and not prim.args:
        SCHEDULES = SCHEDULES + (prim,)
    else:
        raise ValueError(f"{prim.name!r}: only elementwise and schedule rows can be registered")
    _index()


def lock() -> None:
    """Refuse further :func:`register` calls (fitness calls this when it takes its cache key)."""
    global _locked
    _locked = True


def kernel_signature() -> str:
    """sha256 of what the interpreter's compiled dispatch depends on: row order, names, argument
    types and the source of every kernel (so a row added at run time changes it)."""
    digest = hashlib.sha256()
    kernels = [(p.name, p.args, p.kernel) for p in ELEMENTWISE + SCHEDULES]
    kernels += [(u.name, (), u.kernel) for u in UPDATES.values()]
    kernels.append(("bias", (), BIAS_CORRECTION.kernel))
    for name, args, kernel in kernels:
        digest.update(f"{name}{args}".encode())
        try:
            digest.update(inspect.getsource(kernel.py_func).encode())
        except (OSError, TypeError):  # defined without a source file: its bytecode stands in
            code = kernel.py_func.__code__
            digest.update(code.co_code + repr(code.co_consts).encode())
    return digest.hexdigest()[:16]


def schedule_frac(t: int, total_steps: int | None) -> float:
    """Position in the schedule for 1-based step t: (t-1)/T clipped to [0, 1] (0 without T).

    After T steps the position stays at 1, so ``lin_decay`` and ``cos_decay`` stay at their end
    value 0 (the torch classes warn once when that happens).
    """
    if not total_steps or total_steps <= 0:
        return 0.0
    return min(max((t - 1) / total_steps, 0.0), 1.0)


SCHEDULE_FRAC_SRC = "min(max((t - 1) / total_steps, 0.0), 1.0) if total_steps else 0.0"


__all__ = [
    "ACCUMULATE_UPDATE",
    "BETA",
    "BIAS_CORRECTION",
    "BiasCorrection",
    "CONST",
    "ELEMENTWISE",
    "ELEMENTWISE_INDEX",
    "ELEMENTWISE_KERNELS",
    "EMA_UPDATE",
    "EXP_CLIP",
    "Elementwise",
    "N_ELEMENTWISE",
    "OPERANDS",
    "OP_ACC",
    "OP_BIAS",
    "OP_EMA",
    "OP_SCHEDULE",
    "Pipeline",
    "Primitive",
    "SCHEDULES",
    "SCHEDULE_FRAC_SRC",
    "SCHEDULE_INDEX",
    "SCHEDULE_KERNELS",
    "STATE",
    "Schedule",
    "State",
    "StateUpdate",
    "TABLE",
    "UPDATES",
    "UPDATE_OPCODES",
    "VEC",
    "kernel_signature",
    "lerp",
    "lock",
    "protected_sympy",
    "register",
    "schedule_frac",
]
