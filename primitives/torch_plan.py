"""A rule lowered for torch: the plan of ``torch._foreach_*`` calls, and the numbers it reads.

A :class:`Plan` is a short list of :class:`Call` s over lists of tensors (one tensor per
parameter of a group that shares a step). Its numbers are per-step scalars that know both their
value (:meth:`evaluate`, used by :mod:`primitives.torch_backend`, which executes a plan) and
their source text (:meth:`source`, used by :mod:`primitives.export_torch`, which prints the same
plan as the exported class's step), so both run the same ops in the same order.
:mod:`primitives.lowering` builds plans from Programs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from primitives import table
from primitives.table import BIAS_CORRECTION, schedule_frac


@dataclass(frozen=True)
class StepArgs:
    """The numbers a step knows: 1-based step t, schedule length, learning rate, decay."""

    t: int
    total_steps: int | None = None
    lr: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Scalar:
    """A value that is the same for every element of every parameter in a step.

    ``op`` is ``lit`` (``value``), ``sched`` (schedule row ``index``), ``prim`` (elementwise
    row ``index`` applied to scalar ``args`` and const ``c``, in float64 with the row's torch form)
    or ``times`` (``args[0]`` times ``divisor``: a scalar added to a list that is still to be
    divided, x/d + c = (x + c*d)/d).
    """

    op: str
    value: float = 0.0
    index: int = -1
    args: tuple[Scalar, ...] = ()
    c: float = 0.0
    divisor: Divisor | None = None

    def evaluate(self, step: StepArgs) -> float:
        if self.op == "lit":
            return self.value
        if self.op == "times":
            return self.args[0].evaluate(step) * self.divisor.evaluate(step)
        if self.op == "sched":
            return float(table.SCHEDULES[self.index].kernel.py_func(schedule_frac(step.t, step.total_steps)))
        import torch

        xs = [torch.tensor(a.evaluate(step), dtype=torch.float64) for a in self.args]
        xs += [xs[0]] * (3 - len(xs))
        return float(table.ELEMENTWISE[self.index].torch_fn(*xs, self.c))

    def source(self) -> str:
        if self.op == "lit":
            return repr(float(self.value))
        if self.op == "times":
            return f"{self.args[0].source()} * ({self.divisor.source()})"
        if self.op == "sched":
            return "(" + table.SCHEDULES[self.index].src.format(frac="frac") + ")"
        xs = [f"torch.tensor({a.source()}, dtype=torch.float64)" for a in self.args]
        xs += [xs[0]] * (3 - len(xs))
        expr = table.ELEMENTWISE[self.index].torch_src.format(
            x=xs[0], y=xs[1], z=xs[2], c=repr(self.c), absc=repr(abs(self.c)))
        return f"float({expr})"


def lit(value: float) -> Scalar:
    return Scalar("lit", value=float(value))


@dataclass(frozen=True)
class Divisor:
    """prod over (b, e) of BIAS_CORRECTION(b, t) ** e: what a list still has to be divided by."""

    factors: tuple[tuple[float, float], ...] = ()

    def times(self, other: Divisor, sign: float = 1.0) -> Divisor:
        exps: dict[float, float] = dict(self.factors)
        for b, e in other.factors:
            exps[b] = exps.get(b, 0.0) + sign * e
        return Divisor(tuple(sorted((b, e) for b, e in exps.items() if e != 0.0)))

    def power(self, k: float) -> Divisor:
        return Divisor(tuple((b, e * k) for b, e in self.factors))

    @property
    def weight(self) -> float:
        return sum(abs(e) for _, e in self.factors)

    def evaluate(self, step: StepArgs) -> float:
        value = 1.0
        for b, e in self.factors:
            value *= BIAS_CORRECTION.kernel.py_func(b, float(step.t)) ** e
        return value

    def source(self) -> str:
        parts = []
        for b, e in self.factors:
            base = BIAS_CORRECTION.src.format(b=repr(b))
            parts.append(base if e == 1.0 else f"{base} ** {e!r}")
        return " * ".join(parts) if parts else "1.0"


@dataclass(frozen=True)
class StepScale:
    """-lr * multiplier / divisor: the scalar of the fused parameter update."""

    divisor: Divisor = field(default_factory=Divisor)
    multiplier: Scalar | None = None

    def evaluate(self, step: StepArgs) -> float:
        value = -step.lr / self.divisor.evaluate(step)
        if self.multiplier is not None:
            value *= self.multiplier.evaluate(step)
        return value

    def source(self) -> str:
        text = "-lr"
        factors = self.divisor.factors
        if len(factors) == 1 and factors[0][1] == 1.0:
            text += f" / {self.divisor.source()}"  # one factor, already in parentheses
        elif self.divisor.factors:
            text += f" / ({self.divisor.source()})"
        if self.multiplier is not None:
            text += f" * {self.multiplier.source()}"
        return text


@dataclass(frozen=True)
class DecayFactor:
    """1 - lr * weight_decay: decoupled weight decay as one in-place multiply (AdamW's form)."""

    def evaluate(self, step: StepArgs) -> float:
        return 1.0 - step.lr * step.weight_decay

    def source(self) -> str:
        return "1.0 - lr * weight_decay"


@dataclass(frozen=True)
class Call:
    """One op of a plan over lists of tensors.

    kind ``foreach``: ``out = torch._foreach_<method>(*args, **kwargs)`` (``out`` None: in place);
    ``map``: ``out = [row.torch_fn(*tensors, const) ...]`` for the elementwise row ``method``,
    a Scalar argument passed as a 0-dim tensor like the list's;
    ``fill``: ``out = [torch.full_like(x, value) for x in args[0]]`` with ``args[1]`` a Scalar.
    ``args`` are list names (str) or numbers (float, Scalar, Divisor, StepScale, DecayFactor).
    ``only_with_decay``: skipped when weight_decay is 0.
    """

    kind: str
    method: str
    out: str | None
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    const: float = 0.0
    only_with_decay: bool = False


@dataclass(frozen=True)
class Plan:
    """A lowered rule. ``step``: the calls end with the parameter update; else ``output`` is
    the name of the direction list (or a Scalar direction)."""

    text: str
    step: bool
    states: tuple[tuple[str, str], ...]  # (list name, state key), bound before the calls
    calls: tuple[Call, ...]
    output: str | Scalar | None
    uses_schedule: bool


GRADS, PARAMS = "grads", "params"  # the list names of a plan


__all__ = ["Call", "DecayFactor", "Divisor", "GRADS", "PARAMS", "Plan", "Scalar", "StepArgs",
           "StepScale", "lit"]
