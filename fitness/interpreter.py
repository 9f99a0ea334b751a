"""The Numba interpreter: one cached, precompiled function runs every Program.

No rule is ever JIT-compiled. The opcodes of a :class:`~primitives.program.Program` are executed
one after another, each as one vectorised loop over the P parameters, dispatching over the
primitive table's scalar kernels (``literal_unroll`` over the table's kernel tuple, so a new
primitive needs no change here). Compile options follow DESIGN.md invariant 3:
``cache=True`` (warm once, reused by every process), ``error_model='numpy'`` (x/0 is inf, not
an exception), ``nogil=True`` (threads can share a process).

Entry points:

* :func:`init_registers` / :func:`exec_step` / :func:`apply_update`: one step at a time, driven
  from Python (the torch-equivalence tests feed torch gradients through these);
* :func:`run_quadratic`: a whole run on a diagonal quadratic, used by benchmarks; the proxy
  tasks in :mod:`fitness.tasks` call :func:`exec_step` from their own compiled loops.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import literal_unroll, njit
from numba.core.errors import NumbaExperimentalFeatureWarning

from primitives.program import REG_GRAD, REG_WEIGHT, Program
from primitives.table import (
    ACCUMULATE_UPDATE,
    BIAS_CORRECTION,
    ELEMENTWISE_KERNELS,
    EMA_UPDATE,
    N_ELEMENTWISE,
    OP_ACC,
    OP_BIAS,
    OP_EMA,
    OP_SCHEDULE,
    SCHEDULE_KERNELS,
)

# literal_unroll over a tuple of functions is tagged experimental by Numba; it is exactly the
# dispatch we want (one branch per table entry, resolved at compile time).
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)

_JIT = dict(cache=True, nogil=True, error_model="numpy")

_KERNELS = ELEMENTWISE_KERNELS
_SCHEDULES = SCHEDULE_KERNELS
_EMA, _ACC, _BIAS = EMA_UPDATE.kernel, ACCUMULATE_UPDATE.kernel, BIAS_CORRECTION.kernel


@njit(**_JIT)
def _elementwise(op, out, x, y, z, c):
    k = 0
    for kernel in literal_unroll(_KERNELS):
        if k == op:
            for i in range(out.shape[0]):
                out[i] = kernel(x[i], y[i], z[i], c)
        k += 1


@njit(**_JIT)
def _schedule_value(index, frac):
    k = 0
    value = 0.0
    for kernel in literal_unroll(_SCHEDULES):
        if k == index:
            value = kernel(frac)
        k += 1
    return value


@njit(**_JIT)
def exec_step(code, consts, regs, t, total_steps):
    """Run the Program's opcodes once; ``regs[0]`` must hold the gradient, ``regs[1]`` w.

    ``t`` is the 1-based step (bias correction, schedules); ``total_steps`` the schedule length.
    """
    n = regs.shape[1]
    for r in range(code.shape[0]):
        op = code[r, 0]
        dst = regs[code[r, 1]]
        x = regs[code[r, 2]]
        kc = consts[code[r, 5]] if code[r, 5] >= 0 else 0.0
        if op < N_ELEMENTWISE:
            _elementwise(op, dst, x, regs[code[r, 3]], regs[code[r, 4]], kc)
        elif op == OP_EMA:
            for i in range(n):
                dst[i] = _EMA(dst[i], x[i], kc)
        elif op == OP_ACC:
            for i in range(n):
                dst[i] = _ACC(dst[i], x[i], kc)
        elif op == OP_BIAS:
            denom = _BIAS(kc, float(t))
            if denom == 0.0:
                for i in range(n):
                    dst[i] = 0.0
            else:
                for i in range(n):
                    dst[i] = x[i] / denom
        else:
            frac = 0.0
            if total_steps > 0:
                frac = min(max((t - 1) / total_steps, 0.0), 1.0)
            value = _schedule_value(op - OP_SCHEDULE, frac)
            for i in range(n):
                dst[i] = value


@njit(**_JIT)
def init_registers(n_registers, literal_registers, literal_values, w):
    """A fresh register file: zero gradient and states, ``w`` copied, literals filled."""
    regs = np.zeros((n_registers, w.shape[0]))
    regs[REG_WEIGHT, :] = w
    for j in range(literal_registers.shape[0]):
        regs[literal_registers[j], :] = literal_values[j]
    return regs


@njit(**_JIT)
def apply_update(regs, output, lr, weight_decay):
    """w <- w - lr * (d + weight_decay * w), decoupled weight decay as AdamW and Lion."""
    w = regs[REG_WEIGHT]
    d = regs[output]
    if weight_decay != 0.0:
        for i in range(w.shape[0]):
            w[i] = w[i] - lr * (d[i] + weight_decay * w[i])
    else:
        for i in range(w.shape[0]):
            w[i] = w[i] - lr * d[i]


@njit(**_JIT)
def run_quadratic(code, consts, literal_registers, literal_values, n_registers, output,
                  curvature, w0, lr, steps):
    """Minimise 0.5 * sum(curvature * w**2) for ``steps`` steps; returns the loss curve."""
    regs = init_registers(n_registers, literal_registers, literal_values, w0)
    losses = np.empty(steps + 1)
    w = regs[REG_WEIGHT]
    g = regs[REG_GRAD]
    for t in range(steps + 1):
        loss = 0.0
        for i in range(w.shape[0]):
            g[i] = curvature[i] * w[i]
            loss += 0.5 * curvature[i] * w[i] * w[i]
        losses[t] = loss
        if t == steps or not math.isfinite(loss):
            for j in range(t + 1, steps + 1):
                losses[j] = np.nan
            break
        exec_step(code, consts, regs, t + 1, steps)
        apply_update(regs, output, lr, 0.0)
    return losses


class StepRunner:
    """Drive a Program one step at a time from Python on a flat parameter vector.

    >>> runner = StepRunner(compile_rule("sign(g)"), w0)   # doctest: +SKIP
    >>> w = runner.step(grad, lr=0.01)                      # doctest: +SKIP
    """

    def __init__(self, program: Program, w0: np.ndarray, total_steps: int = 0):
        self.program = program
        self.total_steps = int(total_steps)
        self.regs = init_registers(
            program.n_registers,
            program.literal_registers,
            program.literal_values,
            np.ascontiguousarray(w0, dtype=np.float64),
        )
        self.t = 0

    @property
    def weights(self) -> np.ndarray:
        return self.regs[REG_WEIGHT]

    def direction(self, grad: np.ndarray) -> np.ndarray:
        """Advance the state with ``grad`` and return the update direction d (a copy)."""
        self.t += 1
        self.regs[REG_GRAD, :] = grad
        exec_step(self.program.code, self.program.consts, self.regs, self.t, self.total_steps)
        return self.regs[self.program.output].copy()

    def step(self, grad: np.ndarray, lr: float, weight_decay: float = 0.0) -> np.ndarray:
        self.t += 1
        self.regs[REG_GRAD, :] = grad
        exec_step(self.program.code, self.program.consts, self.regs, self.t, self.total_steps)
        apply_update(self.regs, self.program.output, float(lr), float(weight_decay))
        return self.regs[REG_WEIGHT]


def warm_up() -> None:
    """Compile (or load from the cache) every entry point once, before workers fork."""
    from primitives.program import compile_rule

    prog = compile_rule("ema_bc(add(clip(g, 1.0), lin_decay), 0.9)")
    w0 = np.ones(4)
    run_quadratic(*prog.arrays(), np.ones(4), w0, 0.1, 2)
    runner = StepRunner(prog, w0, total_steps=2)
    runner.step(np.ones(4), 0.1, 0.01)


__all__ = ["StepRunner", "apply_update", "exec_step", "init_registers", "run_quadratic", "warm_up"]
