"""Lion as a torch.optim.Optimizer, written from Algorithm 2 of Chen et al. 2023.

"Symbolic Discovery of Optimization Algorithms" (arXiv:2302.06675), Algorithm 2::

    c_t     = b1 * m_{t-1} + (1 - b1) * g_t
    theta_t = theta_{t-1} - lr * (sign(c_t) + wd * theta_{t-1})
    m_t     = b2 * m_{t-1} + (1 - b2) * g_t

with b1 = 0.9, b2 = 0.99 and weight decay 0 by default. This is the torch baseline the
benchmark compares against; the same optimizer written as a rule is ``lion`` in
:mod:`primitives.rules` and runs through the exported class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


class Lion(torch.optim.Optimizer):
    """EvoLved Sign Momentum (Chen et al. 2023, Algorithm 2).

    Every setting lives in ``defaults`` so param groups, schedulers and ``state_dict`` work.
    ``foreach=None`` uses the multi-tensor path when every parameter is on one non-CPU device
    type, as torch.optim does.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] <= 1.0 and 0.0 <= betas[1] <= 1.0):
            raise ValueError(f"invalid betas {betas}; each must lie in [0, 1]")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight decay {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                        maximize=maximize, foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(-p.grad if group["maximize"] else p.grad)
                exp_avgs.append(state["exp_avg"])
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.device.type != "cpu" for p in params)
            b1, b2 = group["betas"]
            fn = _lion_foreach if foreach else _lion_single
            fn(params, grads, exp_avgs, lr=group["lr"], b1=b1, b2=b2,
               weight_decay=group["weight_decay"])
        return loss


def _lion_single(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *,
                 lr: float, b1: float, b2: float, weight_decay: float) -> None:
    for p, g, m in zip(params, grads, exp_avgs):
        if weight_decay != 0.0:
            p.mul_(1.0 - lr * weight_decay)
        c = m.lerp(g, 1.0 - b1)  # b1*m + (1-b1)*g
        p.add_(c.sign_(), alpha=-lr)
        m.lerp_(g, 1.0 - b2)


def _lion_foreach(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *,
                  lr: float, b1: float, b2: float, weight_decay: float) -> None:
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    c = torch._foreach_lerp(exp_avgs, grads, 1.0 - b1)
    torch._foreach_sign_(c)
    torch._foreach_add_(params, c, alpha=-lr)
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - b2)


__all__ = ["Lion"]
