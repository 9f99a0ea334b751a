"""Lowering a Program to a torch Plan: one plan, run by the torch backend or printed as source.

:func:`lower` turns the register code of a :class:`~primitives.program.Program` into a short list
of :class:`Call` s, each a ``torch._foreach_*`` op (or a map of a table row's torch form) over
the tensors of all parameters that share a step. The torch backend executes the plan
(:mod:`primitives.torch_backend`), the code generator prints the same plan as the body of the
exported class (:mod:`primitives.export_torch`), so both run the same ops in the same order.

What the lowering does to cut passes over memory and fresh temporaries (on CPU a fresh list of
tensors costs about three passes in page faults; ``Adam(foreach=True)`` is the target), all read
from the primitive table's rows:

* state buffers are updated in place with the update row's pipeline; a product (``square``,
  ``mul``) read only by the update is never materialised (``mul_`` then ``addcmul_``, as Adam's
  second moment);
* Adam's bias corrections stay per-step scalars (:class:`Divisor`) through the rows that let
  them pass (``divisor`` field, e.g. x/d + c = (x + c*d)/d) and are folded into the step's scalar;
* temporaries used once are overwritten in place, ``abs`` of a value known to be nonnegative
  is skipped, protected ops drop their mask where the guarded input is never zero (``sign_rule``
  facts), and literal-only subexpressions are folded with the row's kernel;
* with ``step=True`` the parameter update is fused into the rule's last op (the row's ``fused``:
  ``addcdiv_`` for a division, ``addcmul_`` for a product) or one ``_foreach_add_(alpha=...)``,
  after the decoupled weight decay ``p *= 1 - lr*wd``.

These rewrites change results by rounding only (a few ulps), and NaN and inf stay where they
were, except at the edge of the float range (a fused ``value*x*y`` can stay finite where the
interpreter's ``x*y`` overflows first).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from primitives import table
from primitives.program import REG_GRAD, REG_WEIGHT, Program
from primitives.table import BIAS_CORRECTION, OP_BIAS, OP_SCHEDULE, UPDATES, Elementwise
from primitives.torch_plan import (
    GRADS,
    PARAMS,
    Call,
    DecayFactor,
    Divisor,
    Plan,
    Scalar,
    StepScale,
    lit,
)

_SCALAR_OK = frozenset({"add", "sub", "mul", "div", "maximum", "minimum", "clamp_min",
                        "clamp_max"})
# a divisor with more than this total exponent is divided out (keeps its value within 1e±64)
_MAX_DIVISOR_WEIGHT = 4.0


@dataclass
class _Value:
    name: str | None = None  # a list of tensors
    scalar: Scalar | None = None  # or the same number everywhere
    divisor: Divisor = field(default_factory=Divisor)
    nonneg: bool = False
    nonzero: bool = False
    owned: bool = False  # a temporary of this plan, which may be overwritten once dead
    # a deferred a*b or a/b of two lists: (torch method, a, b), computed by its one reader
    fused: tuple[str, str, str] | None = None


_OUTPUT = -1  # the reader index of the rule's output


def lower(program: Program, step: bool) -> Plan:
    """The plan of ``program``; with ``step`` it ends by updating ``params`` in place."""
    return _Lowering(program, step).run()


class _Lowering:
    def __init__(self, program: Program, step: bool) -> None:
        self.program = program
        self.step = step
        self.index = 0  # the opcode being lowered
        self.calls: list[Call] = []
        self.n_temps = 0
        self.code = program.code.tolist()
        # who reads each register (op indices; _OUTPUT for the rule's output)
        self.readers: dict[int, list[int]] = {program.output: [_OUTPUT]}
        for i, (op, _, a, b, c, _) in enumerate(self.code):
            if op < table.N_ELEMENTWISE:
                regs = [a, b, c][: table.ELEMENTWISE[op].vec_arity]
            else:
                regs = [a] if op in UPDATES or op == OP_BIAS else []
            for r in regs:
                self.readers.setdefault(r, []).append(i)
        self.uses: Counter[int] = Counter({r: len(ops) for r, ops in self.readers.items()})
        self.values: dict[int, _Value] = {
            REG_GRAD: _Value(name=GRADS),
            REG_WEIGHT: _Value(name=PARAMS),
        }
        for s in program.states:
            self.values[s.register] = _Value(name=f"s{s.register}")
        for r, v in zip(program.literal_registers.tolist(), program.literal_values.tolist()):
            self.values[r] = _scalar_value(lit(v))

    def temp(self) -> str:
        self.n_temps += 1
        return f"r{self.n_temps}"

    def emit(self, kind: str, method: str, out: str | None, *args: Any, **kwargs: Any) -> None:
        const = kwargs.pop("const", 0.0)
        decay = kwargs.pop("only_with_decay", False)
        self.calls.append(Call(kind, method, out, tuple(args), tuple(kwargs.items()), const, decay))

    # -- values ------------------------------------------------------------------------------

    def as_list(self, value: _Value) -> _Value:
        """A list for a scalar (a filled temporary); lists pass through."""
        if value.name is not None:
            return value
        out = self.temp()
        self.emit("fill", "full_like", out, GRADS, value.scalar)
        return _Value(name=out, nonneg=value.nonneg, nonzero=value.nonzero, owned=True)

    def divided(self, reg: int) -> _Value:
        """The register's value with its divisor divided out (in place when it is a temp)."""
        value = self.values[reg]
        if not value.divisor.factors:
            return value
        if value.owned:
            self.emit("foreach", "div_", None, value.name, value.divisor)
            new = _Value(name=value.name, nonneg=value.nonneg, nonzero=value.nonzero, owned=True)
        else:
            out = self.temp()
            self.emit("foreach", "div", out, value.name, value.divisor)
            new = _Value(name=out, nonneg=value.nonneg, nonzero=value.nonzero, owned=True)
        self.values[reg] = new
        return new

    def operand(self, value: _Value, method: str, keywords: bool) -> Any:
        """A pipeline argument: a list name, or a Scalar where the op takes a number (the
        number overloads take no keywords such as alpha)."""
        if value.name is not None:
            return value.name
        if method in _SCALAR_OK and not keywords:
            return value.scalar
        return self.as_list(value).name

    def arguments(self, toks: list, inputs: dict[str, Any], numbers: dict[str, float],
                  method: str) -> tuple[list, dict]:
        """Pipeline tokens to call arguments (inputs are _Values or list names)."""
        kwargs = toks.pop() if toks and isinstance(toks[-1], dict) else {}
        args = []
        for tok in toks:
            if not isinstance(tok, str):
                args.append(float(tok))
            elif tok in numbers:
                args.append(numbers[tok])
            elif tok in inputs:
                entry = inputs[tok]
                args.append(entry if isinstance(entry, str) else
                            self.operand(entry, method, bool(kwargs)))
            else:
                raise ValueError(f"pipeline token {tok!r} has no value here")
        return args, {k: numbers[v] if isinstance(v, str) else float(v) for k, v in kwargs.items()}

    # -- opcodes -----------------------------------------------------------------------------

    def run(self) -> Plan:
        consts = self.program.consts.tolist()
        for index, (op, dst, a, b, c, k) in enumerate(self.code):
            self.index = index
            kc = float(consts[k]) if k >= 0 else 0.0
            if op < table.N_ELEMENTWISE:
                self.elementwise(table.ELEMENTWISE[op], dst, [a, b, c], kc)
            elif op in UPDATES:
                self.update(op, dst, a, kc)
            elif op == OP_BIAS:
                self.bias(dst, a, kc)
            else:
                self.values[dst] = _Value(scalar=Scalar("sched", index=op - OP_SCHEDULE), nonneg=True)
        output: str | Scalar | None = None
        if self.step:
            self.final_update(self.values[self.program.output])
        else:
            value = self.divided(self.program.output)
            output = value.name if value.name is not None else value.scalar
        uses_schedule = self.program.uses_schedule
        states = tuple((f"s{s.register}", s.key) for s in self.program.states)
        return Plan(self.program.text, self.step, states, tuple(self.calls), output, uses_schedule)

    def elementwise(self, row: Elementwise, dst: int, regs: list[int], c: float) -> None:
        regs = regs[: row.vec_arity]
        values = [self.values[r] for r in regs]
        for r in regs:
            self.uses[r] -= 1
        nonneg, nonzero = row.sign_rule(
            tuple(v.nonneg for v in values) + (False, False),
            tuple(v.nonzero for v in values) + (False, False), c)
        if all(v.scalar is not None for v in values):
            self.values[dst] = _scalar_value(_fold(row, [v.scalar for v in values], c),
                                             nonneg, nonzero)
            return
        values, divisor = self.carry(row.divisor, regs, values)
        guarded = row.guard is not None and not values[row.guard].nonzero
        fused = self.fusable(row, dst, regs, values, divisor, guarded)
        if fused is not None:
            self.values[dst] = _Value(divisor=divisor, nonneg=nonneg, nonzero=nonzero, fused=fused)
        elif row.foreach is None or guarded:
            # scalars go in as 0-dim tensors that broadcast (a list holds at least one input)
            args = [v.name if v.name is not None else v.scalar for v in values]
            out = self.temp()
            self.emit("map", row.name, out, *args, const=c)
            self.values[dst] = _Value(name=out, divisor=divisor, nonneg=nonneg, nonzero=nonzero,
                                      owned=True)
        else:
            self.values[dst] = self.pipeline(row, regs, values, c, divisor, nonneg, nonzero)

    def carry(self, rule: str, regs: list[int], values: list[_Value]) -> tuple[list[_Value], Divisor]:
        """The inputs as the row will read them, and the divisor its result carries."""
        divisors = [v.divisor for v in values]
        if not any(d.factors for d in divisors):
            return values, Divisor()
        result: Divisor | None = None
        if rule == "keep":
            result = divisors[0]
        elif rule == "drop":
            result = Divisor()
        elif rule == "sqrt":
            result = divisors[0].power(0.5)
        elif rule == "square":
            result = divisors[0].power(2.0)
        elif rule == "product":
            result = divisors[0].times(divisors[1])
        elif rule == "quotient":
            result = divisors[0].times(divisors[1], -1.0)
        elif rule == "shift" and len(values) == 2:
            lists = [v for v in values if v.name is not None]
            if len(lists) == 2 and divisors[0] == divisors[1]:
                result = divisors[0]
            elif len(lists) == 1:  # x/d + c = (x + c*d)/d: the scalar moves, the list does not
                result = lists[0].divisor
                values = [v if v.name is not None else
                          _Value(scalar=Scalar("times", args=(v.scalar,), divisor=result))
                          for v in values]
        if result is None or result.weight > _MAX_DIVISOR_WEIGHT:
            return [self.divided(r) for r in regs], Divisor()
        return values, result

    def fusable(self, row: Elementwise, dst: int, regs: list[int], values: list[_Value],
                divisor: Divisor, guarded: bool) -> tuple[str, str, str] | None:
        """(method, a, b) when the one reader of this a*b or a/b takes it without a temporary:
        the state update right after it (undivided products), or in a step plan the parameter
        update when it is the rule's last op. Nothing runs in between, so the factor lists are
        still what they were."""
        if not row.fused or guarded or any(v.name is None for v in values):
            return None
        readers = self.readers.get(dst, [])
        if len(readers) != 1:
            return None
        method, a, b = row.fused
        names = {"x": values[0].name, "y": values[-1].name}
        reader = readers[0]
        if reader == _OUTPUT:
            # the decay w *= 1 - lr*wd comes first and must not change a factor
            if not self.step or REG_WEIGHT in regs or self.index != len(self.code) - 1:
                return None
        elif not (reader == self.index + 1 and self.code[reader][0] in UPDATES
                  and method == "addcmul_" and not divisor.factors):
            return None
        return method, names[a], names[b]

    def pipeline(self, row: Elementwise, regs: list[int], values: list[_Value], c: float,
                 divisor: Divisor, nonneg: bool, nonzero: bool) -> _Value:
        x = self.as_list(values[0])
        steps = [list(step) for step in row.foreach or ()]
        later_reads_x = any(_reads(step[1:], regs, regs[0]) for step in steps[1:])
        # overwrite x when it is a temporary that nothing reads after this op
        in_place = x.owned and self.uses[regs[0]] == 0 and not later_reads_x
        if x is not values[0]:  # a filled scalar: a temporary of this op alone
            in_place = not later_reads_x
        flowing, flowing_nonneg, first = x.name, x.nonneg, True
        inputs: dict[str, Any] = dict(zip("yz", values[1:]), x=x.name)
        numbers = {"c": c, "|c|": abs(c), "-|c|": -abs(c)}
        for method, *toks in steps:
            if method == "abs" and flowing_nonneg:
                continue  # |v| of a value that is never negative is v itself
            args, kwargs = self.arguments(toks, inputs, numbers, method)
            if first and not in_place:
                out = self.temp()
                self.emit("foreach", method, out, flowing, *args, **kwargs)
                flowing = out
            else:
                self.emit("foreach", method + "_", None, flowing, *args, **kwargs)
            first = False
            flowing_nonneg = method == "abs"
        owned = not first or x.owned
        if first and x is values[0]:
            # no op ran: the result is x itself, so neither register may be overwritten now
            owned = values[0].owned = False
        return _Value(name=flowing, divisor=divisor, nonneg=nonneg, nonzero=nonzero, owned=owned)

    def update(self, op: int, dst: int, a: int, beta: float) -> None:
        self.uses[a] -= 1
        source = self.values[a]
        row = UPDATES[op]
        numbers = {"b": beta, "1-b": 1.0 - beta}
        if source.fused is not None:
            pipeline, inputs = row.foreach_product, {"x1": source.fused[1], "x2": source.fused[2]}
        else:
            source = self.divided(a)
            pipeline, inputs = row.foreach, {"x": source}
        buf = self.values[dst]
        for method, *toks in pipeline:
            args, kwargs = self.arguments(list(toks), inputs, numbers, method)
            self.emit("foreach", method + "_", None, buf.name, *args, **kwargs)
        self.values[dst] = _Value(name=buf.name, nonneg=source.nonneg)

    def bias(self, dst: int, a: int, beta: float) -> None:
        self.uses[a] -= 1
        buf = self.values[a]
        if BIAS_CORRECTION.kernel.py_func(beta, 1.0) == 0.0:
            # b == 1: the buffer never moves and its correction is 0/0, read as 0 everywhere
            self.values[dst] = _scalar_value(lit(0.0))
            return
        self.values[dst] = _Value(name=buf.name, divisor=buf.divisor.times(Divisor(((beta, 1.0),))),
                                  nonneg=buf.nonneg)

    def final_update(self, value: _Value) -> None:
        """params += -lr * d after the weight decay, d the rule's output."""
        if value.name == PARAMS:  # the direction is w itself: copy it before w decays
            out = self.temp()
            self.emit("foreach", "mul", out, PARAMS, 1.0)
            value = _Value(name=out, divisor=value.divisor)
        self.emit("foreach", "mul_", None, PARAMS, DecayFactor(), only_with_decay=True)
        if value.fused is not None:
            method, a, b = value.fused
            self.emit("foreach", method, None, PARAMS, a, b, StepScale(value.divisor))
        elif value.name is None:
            self.emit("foreach", "add_", None, PARAMS, StepScale(multiplier=value.scalar))
        else:
            self.emit("foreach", "add_", None, PARAMS, value.name, alpha=StepScale(value.divisor))


def _scalar_value(scalar: Scalar, nonneg: bool | None = None, nonzero: bool | None = None) -> _Value:
    if scalar.op == "lit":
        v = scalar.value
        nonneg, nonzero = v >= 0.0, v != 0.0 and not math.isnan(v)
    return _Value(scalar=scalar, nonneg=bool(nonneg), nonzero=bool(nonzero))


def _fold(row: Elementwise, args: list[Scalar | None], c: float) -> Scalar:
    """A literal-only op is computed once, with the row's own kernel; otherwise per step."""
    index = table.ELEMENTWISE_INDEX[row.name]
    scalars = tuple(a for a in args if a is not None)
    if all(a.op == "lit" for a in scalars):
        xs = [a.value for a in scalars] + [scalars[0].value] * (3 - len(scalars))
        try:
            return lit(float(row.kernel.py_func(*xs, c)))
        except (ArithmeticError, ValueError):  # Python raises where float math gives inf/nan
            pass
    return Scalar("prim", index=index, args=scalars, c=c)


def _reads(toks: tuple, regs: list[int], reg: int) -> bool:
    """Whether pipeline tokens read register ``reg`` (by "x", or "y"/"z" naming the same one)."""
    names = {"x": 0, "y": 1, "z": 2}
    return any(isinstance(t, str) and t in names and names[t] < len(regs) and regs[names[t]] == reg
               for t in toks)


__all__ = ["lower"]
