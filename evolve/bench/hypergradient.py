"""Hypergradient descent: SGD-HD and Adam-HD, optimizers that learn their own learning rate.

Baydin, Cornish, Martinez Rubio, Schmidt and Wood, "Online Learning Rate Adaptation with
Hypergradient Descent", ICLR 2018 (Algorithms 2 and 3). The learning rate alpha is updated
each step by gradient descent on the loss with respect to alpha itself; since
``theta_t = theta_{t-1} - alpha * u_{t-1}`` (u the previous update direction),
``d f(theta_t) / d alpha = -grad_t . u_{t-1}``, and so

    alpha_t = alpha_{t-1} + beta * grad_t . u_{t-1}          (the hypergradient step)
    theta_t = theta_{t-1} - alpha_t * u_t

with ``u = grad`` for SGD-HD and ``u = m_hat / (sqrt(v_hat) + eps)`` for Adam-HD. As in the
paper, alpha is one scalar per parameter group (the dot product runs over all its
parameters), and beta (``hypergrad_lr``) is the hypergradient's learning rate: 1e-3 for
SGD-HD and 1e-7 for Adam-HD are the paper's values for its tasks.

Learning-rate schedules: ``group["lr"]`` is the initial alpha. A schedule that changes
``group["lr"]`` (a torch scheduler, or the benchmark's cosine decay) scales the step by
``group["lr"] / initial lr`` on top of the adapted alpha, so under a constant schedule this
is exactly the paper's algorithm, and under a schedule both act. Weight decay, when given, is
decoupled (``theta <- theta - alpha * (u + wd * theta)``) and left out of the hypergradient.

These are not elementwise rules (alpha couples every parameter of a group), so they are not in
the rule grammar; the benchmark runs them as torch baselines, and :func:`proxy_scores` scores
them on the Numba proxy suites' tasks rebuilt in torch (:mod:`evolve.unroll`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def _evaluate(closure):
    """The closure's loss, with gradients on (``step`` itself runs without)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class _HypergradientOptimizer(torch.optim.Optimizer):
    """The shared loop: per group, the hypergradient step on alpha, then the update."""

    def __init__(self, params: Iterable, defaults: dict):
        if not 0.0 <= defaults["lr"]:
            raise ValueError(f"Invalid learning rate: {defaults['lr']}")
        if not 0.0 <= defaults["hypergrad_lr"]:
            raise ValueError(f"Invalid hypergrad_lr: {defaults['hypergrad_lr']}")
        if not 0.0 <= defaults["weight_decay"]:
            raise ValueError(f"Invalid weight_decay value: {defaults['weight_decay']}")
        super().__init__(params, defaults)
        for group in self.param_groups:
            group.setdefault("initial_lr_hd", group["lr"])

    def _directions(self, group: dict, params: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = _evaluate(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            alpha = group.get("alpha")
            if alpha is None:
                alpha = group["initial_lr_hd"]
            previous = [self.state[p].get("previous_direction") for p in params]
            if all(u is not None for u in previous):
                # the hypergradient: d f(theta_t) / d alpha = -grad_t . u_{t-1}
                h = sum(float((p.grad * u).sum()) for p, u in zip(params, previous))
                alpha = alpha + group["hypergrad_lr"] * h
            group["alpha"] = alpha
            scale = group["lr"] / group["initial_lr_hd"] if group["initial_lr_hd"] else 1.0
            directions = self._directions(group, params)
            for p, u in zip(params, directions):
                self.state[p]["previous_direction"] = u
                step = u if group["weight_decay"] == 0 else u + group["weight_decay"] * p
                p.add_(step, alpha=-alpha * scale)
        return loss


class SGDHD(_HypergradientOptimizer):
    """SGD with hypergradient descent on its learning rate (Baydin et al. 2018, Algorithm 2).

    Args:
        params: parameters or param groups.
        lr: the initial learning rate alpha_0.
        hypergrad_lr: beta, the learning rate of alpha's own descent (paper: 1e-3).
        weight_decay: decoupled weight decay.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, hypergrad_lr: float = 1e-3,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, hypergrad_lr=hypergrad_lr,
                                      weight_decay=weight_decay))

    def _directions(self, group: dict, params: list[torch.Tensor]) -> list[torch.Tensor]:
        return [p.grad.clone() for p in params]


class AdamHD(_HypergradientOptimizer):
    """Adam with hypergradient descent on its learning rate (Baydin et al. 2018, Algorithm 3).

    Args:
        params: parameters or param groups.
        lr: the initial learning rate alpha_0.
        betas, eps: Adam's (0.9, 0.999) and 1e-8.
        hypergrad_lr: beta, the learning rate of alpha's own descent (paper: 1e-7).
        weight_decay: decoupled weight decay (AdamW style).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, hypergrad_lr: float = 1e-7, weight_decay: float = 0.0):
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid betas: {betas}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, hypergrad_lr=hypergrad_lr,
                                      weight_decay=weight_decay))

    def _directions(self, group: dict, params: list[torch.Tensor]) -> list[torch.Tensor]:
        beta1, beta2 = group["betas"]
        out = []
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            m_hat = m / (1 - beta1**t)
            v_hat = v / (1 - beta2**t)
            out.append(m_hat / (v_hat.sqrt() + group["eps"]))
        return out


def proxy_scores(kind: str, suite: str = "search", seed: int = 0, schedule: str = "cosine"
                 ) -> float:
    """SGD-HD (``kind="sgd_hd"``) or Adam-HD (``"adam_hd"``) on a proxy suite's tasks, scored
    as rules are; ``"adam"`` runs torch.optim.Adam through the same path, the control that shows
    what the path itself gives Adam.

    Each task is rebuilt in torch (:mod:`evolve.unroll`) and trained with the paper's update
    on the flat weight vector (one alpha for all weights, as one param group) under the lr
    ``schedule``; the initial learning rate gets the same search as every optimizer
    (:mod:`fitness.lr_grid`), and the best final loss is scored against tuned Adam's on the
    same instance as the evaluator scores a rule (FAIL without progress,
    :func:`fitness.score.log_ratio`, :func:`fitness.score.suite_score`).
    """
    from evolve.unroll import TorchTask, optimizer_update, run, supported
    from evolve.worker import proxy_suite, score_rules
    from fitness import lr_grid
    from fitness.score import FAIL, log_ratio, suite_score
    from fitness.tasks import build, get_suite

    cls = {"sgd_hd": SGDHD, "adam_hd": AdamHD, "adam": torch.optim.Adam}[kind]
    adam = {t.task: t for t in score_rules(proxy_suite(suite, schedule), seed, ["adam"],
                                           hurdle=False)[0].tasks}
    ratios = []
    for spec in get_suite(suite):
        instance = build(spec, seed)
        if not supported(instance) or spec.name not in adam:
            continue
        task = TorchTask(instance, schedule)

        def evaluate(lrs: list[float], task: TorchTask = task) -> list[float | None]:
            out = []
            for lr in lrs:
                update, _ = optimizer_update(task, lambda p, r: cls(p, lr=r), lr)
                with torch.no_grad():
                    end = run(task, lr, update)
                out.append(None if end.loss is None else float(end.loss))
            return out

        best_lr, tried = lr_grid.search(evaluate)
        best = None if best_lr is None else tried[best_lr]
        progressed = best is not None and best < task.loss0
        ratios.append(log_ratio(best, adam[spec.name].ref_loss, task.loss0, instance.loss_min)
                      if progressed else FAIL)
    return suite_score(ratios)


__all__ = ["AdamHD", "SGDHD", "proxy_scores"]
