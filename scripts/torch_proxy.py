"""The proxy tasks again in torch eager with autograd: the baseline the Numba path is timed against.

Each :class:`~fitness.tasks.TaskInstance` is rebuilt from its own arrays (same data, same
minibatches, same start), the loss is written in torch and differentiated by autograd, and the
rule runs as :class:`primitives.torch_backend.EvolvedOptimizer`. Same lr grid, same steps, same
early stops as :mod:`fitness.kernels`, so the only difference timed is the execution model.
Used by ``scripts/bench_fitness.py`` and by a test that the two paths agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fitness import kernels
from fitness.tasks import ASCEND_FACTOR, TaskInstance


def _mlp_parts(inst: TaskInstance):
    sizes, w_off, b_off, _, x, y, batches, x_test, y_test, loss_kind = inst.arrays
    return [int(s) for s in sizes], w_off, b_off, x, y, batches, x_test, y_test, int(loss_kind)


def _mlp_loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss_kind: int):
    h = x
    n_layers = len(params) // 2
    for layer in range(n_layers):
        h = h @ params[2 * layer] + params[2 * layer + 1]
        if layer < n_layers - 1:
            h = torch.relu(h)
    if loss_kind == kernels.LOSS_SOFTMAX_CE:
        return -(y * torch.log_softmax(h, dim=1)).sum(dim=1).mean()
    if loss_kind == kernels.LOSS_LOGISTIC:
        return torch.nn.functional.binary_cross_entropy_with_logits(h, y)
    return 0.5 * ((h - y) ** 2).sum(dim=1).mean()


def run_torch(inst: TaskInstance, rule: str, lrs: np.ndarray) -> np.ndarray:
    """Final scored loss at each lr (NaN where the run failed), as ``TaskInstance.run``."""
    from primitives.torch_backend import EvolvedOptimizer

    family = inst.spec.family
    steps = inst.steps
    finals = np.full(len(lrs), np.nan)
    if family == "quadratic":
        curvature, center, w0, noise = (torch.from_numpy(a) for a in inst.arrays)

        def make():
            return [w0.clone().requires_grad_(True)]

        def train_loss(params, t):
            r = params[0] - center
            return 0.5 * (curvature * r * r).sum()

        def add_noise(params, t):
            if noise.shape[0]:
                params[0].grad += noise[t]

        def scored(params):
            return train_loss(params, 0)
    elif family == "rosenbrock":
        shift, w0 = (torch.from_numpy(a) for a in inst.arrays)

        def make():
            return [w0.clone().requires_grad_(True)]

        def train_loss(params, t):
            u = params[0] + shift
            return (100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2).sum()

        def add_noise(params, t):
            pass

        def scored(params):
            return train_loss(params, 0)
    else:
        sizes, w_off, b_off, x, y, batches, x_test, y_test, loss_kind = _mlp_parts(inst)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        x_test, y_test = torch.from_numpy(x_test), torch.from_numpy(y_test)
        batches = torch.from_numpy(batches)
        w0 = inst.w0

        def make():
            params = []
            for layer, (nin, nout) in enumerate(zip(sizes[:-1], sizes[1:])):
                weights = w0[w_off[layer]:w_off[layer] + nin * nout].reshape(nin, nout)
                params.append(torch.tensor(weights).requires_grad_(True))
                params.append(torch.tensor(w0[b_off[layer]:b_off[layer] + nout])
                              .requires_grad_(True))
            return params

        def train_loss(params, t):
            rows = batches[t]
            return _mlp_loss(params, x[rows], y[rows], loss_kind)

        def add_noise(params, t):
            pass

        def scored(params):
            return _mlp_loss(params, x_test, y_test, loss_kind)

    with torch.no_grad():
        loss0 = float(scored(make()))
    limit = ASCEND_FACTOR * loss0
    for k, lr in enumerate(lrs):
        params = make()
        opt = EvolvedOptimizer(params, rule, lr=float(lr))
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
            opt.step()
        if ok:
            with torch.no_grad():
                final = float(scored(params))
            if math.isfinite(final) and final <= limit:
                finals[k] = final
    return finals


__all__ = ["run_torch"]
