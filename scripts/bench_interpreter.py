"""Microseconds per run of a rule on a quadratic: the interpreter beside the peers a user would use.

One run = T steps on 0.5 * sum(c * w**2) with P parameters (curvatures log-spaced over 1..100),
the loss computed before every step (as the proxy loops check it), the gradient c * w fed to
the optimizer. Side by side in one run, one thread, the same start and gradient for all:

* interpreter     the cached Numba interpreter (:func:`fitness.interpreter.run_quadratic`)
                  running five learning rates as the search runs them: side by side in one
                  call while P is small (:func:`fitness.interpreter.runs_per_call`), one per
                  call beyond; time per run (one lr);
* interp_1lr      the same with one learning rate per call;
* fused           a hand-written Numba loop of that rule with exactly the interpreter's
                  arithmetic (checked: the loss curves are equal to the bit);
* torch_adam / torch_adam_foreach   ``torch.optim.Adam`` (foreach off / on) stepping a float64
                  tensor (adam only);
* torch_lion      a hand-written torch loop of Lion (the paper's update; lion only);
* evolved         ``EvolvedOptimizer`` (this project's generic torch path) on the rule.

Times are the median CPU time of the timing thread over repeats after a warm-up (on a shared
machine that is steadier than the wall clock; on an idle one they agree), rounds interleaved
so that load changes hit every method alike. Each timed call follows an untimed call of the
same method: whatever ran just before (a torch peer's working set evicts the caches) slowed
the next method's call by up to 1.8x, measured, and that hit whichever method came first in a
round (the interpreter). Usage:

    python scripts/bench_interpreter.py [--json] [--repeats N] [--sizes 100,1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from numba import njit  # noqa: E402

from fitness.interpreter import run_quadratic, runs_per_call, warm_up  # noqa: E402
from primitives.program import compile_rule  # noqa: E402
from primitives.rules import KNOWN_RULES  # noqa: E402
from primitives.torch_backend import EvolvedOptimizer  # noqa: E402

T = 200
SIZES = (100, 1_000, 10_000, 100_000)
LR = {"adam": 0.01, "lion": 0.001}
GRID = (0.25, 0.5, 1.0, 2.0, 4.0)  # times LR: every run converges, none stops early
_J = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_J)
def _loss(c, w):
    total = 0.0
    for i in range(w.shape[0]):
        total += 0.5 * c[i] * w[i] * w[i]
    return total


@njit(**_J)
def fused_adam(c, w0, lr, steps):
    """div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.999)), 1e-08)), as the interpreter."""
    n = w0.shape[0]
    w = w0.copy()
    m = np.zeros(n)
    v = np.zeros(n)
    losses = np.empty(steps + 1)
    for t in range(1, steps + 1):
        losses[t - 1] = _loss(c, w)
        bc1 = 1.0 - 0.9 ** float(t)  # a float power, as the table's bias correction
        bc2 = 1.0 - 0.999 ** float(t)
        for i in range(n):
            g = c[i] * w[i]
            m[i] = 0.9 * m[i] + (1.0 - 0.9) * g
            v[i] = 0.999 * v[i] + (1.0 - 0.999) * (g * g)
            den = math.sqrt(abs(v[i] / bc2)) + 1e-08
            d = (m[i] / bc1) / den if den != 0.0 else 0.0
            w[i] = w[i] - lr * d
    losses[steps] = _loss(c, w)
    return losses


@njit(**_J)
def fused_lion(c, w0, lr, steps):
    """sign(interp(ema(g, 0.99), g, 0.09090909090909083)), as the interpreter."""
    n = w0.shape[0]
    w = w0.copy()
    m = np.zeros(n)
    a = 0.09090909090909083
    losses = np.empty(steps + 1)
    for t in range(1, steps + 1):
        losses[t - 1] = _loss(c, w)
        for i in range(n):
            g = c[i] * w[i]
            m[i] = 0.99 * m[i] + (1.0 - 0.99) * g
            u = (1.0 - a) * m[i] + a * g
            d = 1.0 if u > 0.0 else (-1.0 if u < 0.0 else 0.0)
            w[i] = w[i] - lr * d
    losses[steps] = _loss(c, w)
    return losses


FUSED = {"adam": fused_adam, "lion": fused_lion}


def _torch_run(make_step, c: torch.Tensor, w0: torch.Tensor) -> float:
    w = torch.nn.Parameter(w0.clone())
    step = make_step(w)
    with torch.no_grad():
        for _ in range(T):
            _ = 0.5 * (c * w * w).sum()
            w.grad = c * w
            step()
        return float(0.5 * (c * w * w).sum())


def torch_peers(name: str, lr: float, c: torch.Tensor, w0: torch.Tensor) -> dict:
    """Zero-argument callables, each one run of a peer."""
    rule = KNOWN_RULES[name].rule

    def optimizer(factory):
        return lambda: _torch_run(lambda w: factory([w]).step, c, w0)

    peers = {"evolved": optimizer(lambda p: EvolvedOptimizer(p, rule, lr=lr, foreach=False))}
    if name == "adam":
        peers["torch_adam"] = optimizer(lambda p: torch.optim.Adam(p, lr=lr, foreach=False))
        peers["torch_adam_foreach"] = optimizer(
            lambda p: torch.optim.Adam(p, lr=lr, foreach=True))
    else:
        def lion(w):
            m = torch.zeros_like(w)

            def step():
                update = (0.9 * m + 0.1 * w.grad).sign_()
                w.sub_(update, alpha=lr)
                m.mul_(0.99).add_(w.grad, alpha=0.01)

            return step

        peers["torch_lion"] = lambda: _torch_run(lion, c, w0)
    return peers


def bench(name: str, p: int, repeats: int) -> dict:
    program = compile_rule(KNOWN_RULES[name].rule)
    arrays = program.arrays()
    curvature = np.logspace(0, 2, p)
    w0 = np.random.default_rng(0).normal(size=p)
    lrs = LR[name] * np.array(GRID)
    batched = run_quadratic(*arrays, curvature, w0, lrs, T)
    for k, lr in enumerate(lrs):  # the same computation: the same bits
        if not np.array_equal(batched[k], FUSED[name](curvature, w0, lr, T)):
            raise AssertionError(f"{name} P={p}: interpreter and fused loop disagree at lr {lr}")
    per_call = runs_per_call(p)

    def as_the_search_runs_them():
        for i in range(0, len(lrs), per_call):
            run_quadratic(*arrays, curvature, w0, lrs[i:i + per_call], T)

    methods = {
        "interpreter": (as_the_search_runs_them, len(lrs)),
        "interp_1lr": (lambda: run_quadratic(*arrays, curvature, w0, lrs[2:3], T), 1),
        "fused": (lambda: FUSED[name](curvature, w0, lrs[2], T), 1),
    }
    c_t, w_t = torch.tensor(curvature), torch.tensor(w0)
    for label, fn in torch_peers(name, float(lrs[2]), c_t, w_t).items():
        methods[label] = (fn, 1)
    samples: dict[str, list[float]] = {label: [] for label in methods}
    for fn, _ in methods.values():
        fn()  # warm-up
    for _ in range(repeats):
        for label, (fn, runs) in methods.items():
            fn()  # untimed: the method timed right after a torch peer ran up to 1.8x slower
            start = time.thread_time()
            fn()
            samples[label].append((time.thread_time() - start) / runs)
    out = {label: statistics.median(s) * 1e6 for label, s in samples.items()}
    peer = out.get("torch_adam", out.get("torch_lion"))
    out["interp_over_fused"] = out["interpreter"] / out["fused"]
    out["interp_1lr_over_fused"] = out["interp_1lr"] / out["fused"]
    out["torch_over_interp"] = peer / out["interpreter"]
    if "torch_adam_foreach" in out:
        out["torch_foreach_over_interp"] = out["torch_adam_foreach"] / out["interpreter"]
    out["final_loss_interpreter"] = float(batched[2, -1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed repeats per method (default: more for small P)")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES),
                        help="comma-separated P values")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    warm_up()
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict]] = {}
    for name in ("adam", "lion"):
        results[name] = {}
        for p in sizes:
            repeats = args.repeats or max(9, min(41, int(4e6 / (p * T))))
            results[name][str(p)] = bench(name, p, repeats)
    if args.json:
        print(json.dumps({"T": T, "threads": 1, "unit": "us per run (thread CPU time, median)",
                          "rules": results}, indent=2))
        return 0
    print(f"us per run (quadratic, T={T}, one thread, median thread CPU time)")
    for name, rows in results.items():
        peers = (["torch_adam", "torch_adam_foreach"] if name == "adam" else ["torch_lion"])
        cols = ["interpreter", "interp_1lr", "fused", *peers, "evolved"]
        print(f"\n{name}: " + "".join(f"{c:>20}" for c in ["P", *cols])
              + f"{'interp/fused':>14}{'1lr/fused':>11}{'torch/interp':>14}")
        for p, r in rows.items():
            print(" " * (len(name) + 2) + f"{p:>20}" + "".join(f"{r[c]:>20.0f}" for c in cols)
                  + f"{r['interp_over_fused']:>13.2f}x{r['interp_1lr_over_fused']:>10.2f}x"
                  + f"{r['torch_over_interp']:>13.1f}x")
    print("\ngoals: interpreter within 1.3x of fused at every P, ahead of torch at every P")
    return 0


if __name__ == "__main__":
    sys.exit(main())
