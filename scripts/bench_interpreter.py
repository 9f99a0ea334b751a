"""Microseconds per evaluation of a rule on a quadratic, for four ways of running it.

One evaluation = T=200 steps of the rule on 0.5 * sum(c * w**2) with P=1000 parameters
(curvatures log-spaced over 1..100). Side by side in one run:

* interpreter   the cached Numba interpreter running the Program (what the search uses);
* fused         a hand-written Numba loop for that one rule (the speed ceiling);
* deap_numpy    DEAP's gp.compile of the rule into a nested Python lambda over numpy arrays
                (our own known rules only; gp.compile calls eval and never sees outside text);
* torch_eager   EvolvedOptimizer stepping a torch tensor (float64, CPU).

Each timing is the median of several repeats after a warm-up. Usage:

    python scripts/bench_interpreter.py [--json] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch
from deap import gp
from numba import njit

from fitness.interpreter import run_quadratic, warm_up
from primitives.gp import Beta, Const, Vec, to_deap
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES
from primitives.table import EXP_CLIP
from primitives.torch_backend import EvolvedOptimizer

P = 1000
T = 200
LR = {"adam": 0.01, "lion": 0.001}


@njit(cache=True, nogil=True, error_model="numpy")
def _loss(curvature, w):
    loss = 0.0
    for i in range(w.shape[0]):
        loss += 0.5 * curvature[i] * w[i] * w[i]
    return loss


@njit(cache=True, nogil=True, error_model="numpy")
def fused_adam(curvature, w0, lr, steps):
    w = w0.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    b1, b2, eps = 0.9, 0.999, 1e-8
    losses = np.empty(steps + 1)
    for t in range(1, steps + 1):
        losses[t - 1] = _loss(curvature, w)
        inv_bc1 = 1.0 / (1.0 - b1**t)
        inv_bc2 = 1.0 / (1.0 - b2**t)
        for i in range(w.shape[0]):
            g = curvature[i] * w[i]
            m[i] = b1 * m[i] + (1.0 - b1) * g
            v[i] = b2 * v[i] + (1.0 - b2) * g * g
            w[i] -= lr * (m[i] * inv_bc1) / (math.sqrt(v[i] * inv_bc2) + eps)
    losses[steps] = _loss(curvature, w)
    return losses


@njit(cache=True, nogil=True, error_model="numpy")
def fused_lion(curvature, w0, lr, steps):
    w = w0.copy()
    m = np.zeros_like(w)
    b1, b2 = 0.9, 0.99
    losses = np.empty(steps + 1)
    for t in range(1, steps + 1):
        losses[t - 1] = _loss(curvature, w)
        for i in range(w.shape[0]):
            g = curvature[i] * w[i]
            c = b1 * m[i] + (1.0 - b1) * g
            w[i] -= lr * (1.0 if c > 0 else (-1.0 if c < 0 else 0.0))
            m[i] = b2 * m[i] + (1.0 - b2) * g
    losses[steps] = _loss(curvature, w)
    return losses


FUSED = {"adam": fused_adam, "lion": fused_lion}


class _NumpyState:
    """State for the DEAP lambda: buffers indexed by the order of stateful calls in a step."""

    def __init__(self):
        self.buffers: list[np.ndarray] = []
        self.calls = 0
        self.t = 0

    def next_buffer(self, like: np.ndarray) -> np.ndarray:
        if self.calls == len(self.buffers):
            self.buffers.append(np.zeros_like(like))
        buf = self.buffers[self.calls]
        self.calls += 1
        return buf


def _deap_numpy_pset(state: _NumpyState) -> gp.PrimitiveSetTyped:
    """A pset with the same names and types whose primitives are numpy functions."""

    def ema(x, b):
        buf = state.next_buffer(x)
        buf *= b
        buf += (1.0 - b) * x
        return buf

    def ema_bc(x, b):
        return ema(x, b) / (1.0 - b**state.t)

    def mom(x, b):
        buf = state.next_buffer(x)
        buf *= b
        buf += x
        return buf

    def div(x, y):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(y != 0, x / y, 0.0)

    fns = {
        "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": div, "neg": np.negative,
        "abs": np.abs, "sign": np.sign, "sqrt": lambda x: np.sqrt(np.abs(x)),
        "square": np.square, "exp": lambda x: np.exp(np.minimum(x, EXP_CLIP)),
        "interp": lambda x, y, a: (1.0 - a) * x + a * y, "ema": ema, "ema_bc": ema_bc,
        "mom": mom, "max": np.maximum, "min": np.minimum,
        "clip": lambda x, c: np.clip(x, -abs(c), abs(c)),
        "log": lambda x: np.where(x != 0, np.log(np.abs(np.where(x != 0, x, 1.0))), 0.0),
    }
    types = {"vec": Vec, "const": Const, "beta": Beta}
    from primitives.table import TABLE

    pset = gp.PrimitiveSetTyped("BENCH", [Vec], Vec)
    pset.renameArguments(ARG0="g")
    for prim in TABLE.values():
        if prim.arity:
            pset.addPrimitive(fns[prim.name], [types[a] for a in prim.args], Vec, name=prim.name)
    return pset


def time_call(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def bench_rule(name: str, repeats: int) -> dict:
    rule = KNOWN_RULES[name].rule
    lr = LR[name]
    curvature = np.logspace(0, 2, P)
    w0 = np.random.default_rng(0).normal(size=P)
    program = compile_rule(rule)
    arrays = program.arrays()

    interp = time_call(lambda: run_quadratic(*arrays, curvature, w0, lr, T), repeats)
    fused = time_call(lambda: FUSED[name](curvature, w0, lr, T), repeats)

    state = _NumpyState()
    pset = _deap_numpy_pset(state)
    direction = gp.compile(str(to_deap(program.tree)), pset)  # our own known rule text

    def deap_run():
        state.buffers.clear()
        w = w0.copy()
        for t in range(1, T + 1):
            state.t, state.calls = t, 0
            g = curvature * w
            w -= lr * direction(g)
        return 0.5 * float(np.sum(curvature * w * w))

    deap = time_call(deap_run, max(3, repeats // 4))

    c_t = torch.tensor(curvature)

    def torch_run():
        w = torch.nn.Parameter(torch.tensor(w0))
        opt = EvolvedOptimizer([w], rule, lr=lr, foreach=False)
        for _ in range(T):
            w.grad = c_t * w.detach()
            opt.step()
        return float(0.5 * (c_t * w.detach() ** 2).sum())

    eager = time_call(torch_run, max(3, repeats // 4))

    # all four computed the same trajectory (the equivalence tests pin this down exactly)
    final_interp = run_quadratic(*arrays, curvature, w0, lr, T)[-1]
    final_fused = FUSED[name](curvature, w0, lr, T)[-1]
    return {
        "interpreter_us": interp,
        "fused_us": fused,
        "deap_numpy_us": deap,
        "torch_eager_us": eager,
        "interpreter_vs_torch_eager": eager / interp,
        "interpreter_over_fused": interp / fused,
        "final_loss_interpreter": float(final_interp),
        "final_loss_fused": float(final_fused),
        "final_loss_deap_numpy": deap_run(),
        "final_loss_torch_eager": torch_run(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=40, help="timed repeats per method")
    args = parser.parse_args(argv)
    warm_up()
    torch.set_num_threads(1)
    results = {name: bench_rule(name, args.repeats) for name in ("adam", "lion")}
    if args.json:
        print(json.dumps({"P": P, "T": T, "rules": results}, indent=2))
        return 0
    print(f"us per evaluation (quadratic, P={P}, T={T}, one core, median)")
    header = f"{'rule':<6} {'interpreter':>12} {'fused':>10} {'deap_numpy':>11} {'torch_eager':>12}"
    print(header + f" {'eager/interp':>13} {'interp/fused':>13}")
    for name, r in results.items():
        print(f"{name:<6} {r['interpreter_us']:>12.0f} {r['fused_us']:>10.0f} "
              f"{r['deap_numpy_us']:>11.0f} {r['torch_eager_us']:>12.0f} "
              f"{r['interpreter_vs_torch_eager']:>12.1f}x {r['interpreter_over_fused']:>12.2f}x")
    print("goals: interpreter >= 15x faster than torch eager, within 3x of the fused loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
