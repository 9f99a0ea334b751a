"""The proxy tasks again in torch eager with autograd: the baseline the Numba path is timed against.

Each :class:`~fitness.tasks.TaskInstance` is rebuilt from its own arrays (same data, same
minibatches, same start), the loss is written in torch and differentiated by autograd, and the
rule runs as :class:`primitives.torch_backend.EvolvedOptimizer` with the group's lr multiplied by
the same schedule factor (:mod:`fitness.schedule`) before each step. Same steps and same early
stops as :mod:`fitness.kernels`, one lr at a time, so the figures compare execution models.
Used by ``scripts/bench_fitness.py`` and by ``tests/test_fitness.py`` (the two paths agree).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fitness import kernels
from fitness import schedule as lr_schedule
from fitness.tasks import ASCEND_FACTOR, TaskInstance


def _mlp_loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, act: int,
              loss_kind: int) -> torch.Tensor:
    h = x
    n_layers = len(params) // 2
    for layer in range(n_layers):
        h = h @ params[2 * layer] + params[2 * layer + 1]
        if layer < n_layers - 1:
            h = torch.relu(h) if act == kernels.ACT_RELU else torch.tanh(h)
    if loss_kind == kernels.LOSS_SOFTMAX_CE:
        return -(y * torch.log_softmax(h, dim=1)).sum(dim=1).mean()
    if loss_kind == kernels.LOSS_LOGISTIC:
        return torch.nn.functional.binary_cross_entropy_with_logits(h, y)
    return 0.5 * ((h - y) ** 2).sum(dim=1).mean()


def _problem(inst: TaskInstance):
    """(make params, training loss at step t, gradient noise at step t, scored loss)."""
    family = inst.spec.family
    if family == "quadratic":
        curvature, center, w0, noise = (torch.from_numpy(a) for a in inst.arrays)

        def loss(params, t):
            r = params[0] - center
            return 0.5 * (curvature * r * r).sum()

        def add_noise(params, t):
            if noise.shape[0]:
                params[0].grad += noise[t]

        return (lambda: [w0.clone().requires_grad_(True)]), loss, add_noise, \
            (lambda params: loss(params, 0))
    if family == "rosenbrock":
        shift, w0 = (torch.from_numpy(a) for a in inst.arrays)

        def loss(params, t):
            u = params[0] + shift
            return (100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2).sum()

        return (lambda: [w0.clone().requires_grad_(True)]), loss, (lambda params, t: None), \
            (lambda params: loss(params, 0))
    if family == "rnn":
        return _rnn_problem(inst)
    sizes, w_off, b_off, act, w0, x, y, batches, x_test, y_test, loss_kind = inst.arrays
    sizes = [int(s) for s in sizes]
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)
    batches = torch.from_numpy(batches)

    def make():
        params = []
        for layer, (nin, nout) in enumerate(zip(sizes[:-1], sizes[1:])):
            weights = w0[w_off[layer]:w_off[layer] + nin * nout].reshape(nin, nout)
            params.append(torch.tensor(weights).requires_grad_(True))
            params.append(torch.tensor(w0[b_off[layer]:b_off[layer] + nout]).requires_grad_(True))
        return params

    def loss(params, t):
        rows = batches[t]
        return _mlp_loss(params, x[rows], y[rows], int(act), int(loss_kind))

    def scored(params):
        return _mlp_loss(params, x_test, y_test, int(act), int(loss_kind))

    return make, loss, (lambda params, t: None), scored


def _rnn_problem(inst: TaskInstance):
    from evolve.unroll import rnn_loss, rnn_params

    dims, w0, x, y, batches, x_test, y_test = inst.arrays
    length = int(dims[2])
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)
    batches = torch.from_numpy(batches)

    def make():
        return [p.clone().requires_grad_(True) for p in rnn_params(torch.from_numpy(w0), dims)]

    def loss(params, t):
        rows = batches[t]
        return rnn_loss(*params, x[rows], y[rows], length)

    def scored(params):
        return rnn_loss(*params, x_test, y_test, length)

    return make, loss, (lambda params, t: None), scored


def run_torch(inst: TaskInstance, rule: str, lrs: np.ndarray,
              schedule: str = lr_schedule.DEFAULT) -> np.ndarray:
    """Final scored loss at each lr (NaN where the run failed), as ``TaskInstance.run``."""
    from primitives.torch_backend import EvolvedOptimizer

    make, train_loss, add_noise, scored = _problem(inst)
    steps = inst.steps
    factors = lr_schedule.factors(schedule, steps)
    finals = np.full(len(lrs), np.nan)
    with torch.no_grad():
        loss0 = float(scored(make()))
    limit = ASCEND_FACTOR * loss0
    for k, lr in enumerate(lrs):
        params = make()
        opt = EvolvedOptimizer(params, rule, lr=float(lr), total_steps=steps)
        ok = True
        for t in range(steps):
            opt.zero_grad()
            loss = train_loss(params, t)
            value = float(loss.detach())
            if not math.isfinite(value) or value > limit:
                ok = False
                break
            loss.backward()
            add_noise(params, t)
            opt.param_groups[0]["lr"] = float(lr) * float(factors[t])
            opt.step()
        if ok:
            with torch.no_grad():
                final = float(scored(params))
            if math.isfinite(final) and final <= limit:
                finals[k] = final
    return finals


__all__ = ["run_torch"]
