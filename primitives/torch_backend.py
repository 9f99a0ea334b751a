"""The torch backend: ``EvolvedOptimizer`` runs any rule as a ``torch.optim.Optimizer``.

It follows torch.optim.Adam's contract: every hyperparameter (the rule text included) lives in
``defaults`` and so in each param group and in ``state_dict()``; per-parameter state is created
lazily on the first step; ``step(closure=None)`` runs under ``torch.no_grad()`` and returns the
closure's loss; parameters whose grad is None are skipped; lr schedulers work because the step
reads ``group["lr"]`` each time. Weight decay is decoupled: ``w <- w - lr * (d + wd * w)``.

The rule is compiled to the same :class:`~primitives.program.Program` the Numba interpreter
runs, and each opcode is applied with the primitive table's torch form. With ``foreach=True``
(the default on CUDA) each opcode is applied to all parameters of a group in one list
comprehension and state updates use ``torch._foreach_*`` kernels.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import torch

from primitives.grammar import Node
from primitives.program import REG_GRAD, REG_WEIGHT, Program, compile_rule
from primitives.rules import resolve
from primitives.table import (
    ELEMENTWISE,
    N_ELEMENTWISE,
    OP_ACC,
    OP_BIAS,
    OP_EMA,
    OP_SCHEDULE,
    SCHEDULES,
    schedule_frac,
)


@lru_cache(maxsize=256)
def _program(text: str) -> Program:
    return compile_rule(resolve(text))


def rule_text(rule: str | Node | Program) -> str:
    """Canonical text of a rule given as a known name, text, tree or Program."""
    if isinstance(rule, Program):
        return rule.text
    if isinstance(rule, Node):
        return compile_rule(rule).text
    return _program(rule).text


def run_program(program: Program, grads: list, weights: list, states: list[dict], t: int,
                total_steps: int | None) -> list:
    """Apply one step of ``program`` to lists of tensors; returns the directions d.

    ``states[i]`` holds parameter i's buffers under ``StateBuffer.key``; they are updated in
    place. Literal and schedule registers are 0-dim tensors that broadcast.
    """
    n = len(grads)
    if n == 0:
        return []
    proto = grads[0]
    regs: list[list | None] = [None] * program.n_registers
    regs[REG_GRAD] = grads
    regs[REG_WEIGHT] = weights
    for reg, value in zip(program.literal_registers.tolist(), program.literal_values.tolist()):
        scalar = torch.tensor(value, dtype=proto.dtype, device=proto.device)
        regs[reg] = [scalar] * n
    keys = {s.register: s.key for s in program.states}
    for reg, key in keys.items():
        regs[reg] = [st[key] for st in states]
    consts = program.consts.tolist()
    for op, dst, a, b, c, k in program.code.tolist():
        kc = consts[k] if k >= 0 else 0.0
        if op < N_ELEMENTWISE:
            fn = ELEMENTWISE[op].torch_fn
            xs, ys, zs = regs[a], regs[b], regs[c]
            regs[dst] = [fn(xs[i], ys[i], zs[i], kc) for i in range(n)]
        elif op == OP_EMA or op == OP_ACC:
            bufs = regs[dst]
            xs = _as_full(regs[a], bufs)
            torch._foreach_mul_(bufs, kc)
            torch._foreach_add_(bufs, xs, alpha=(1.0 - kc) if op == OP_EMA else 1.0)
        elif op == OP_BIAS:
            denom = 1.0 - kc**t
            src = regs[a]
            regs[dst] = [s / denom if denom != 0.0 else torch.zeros_like(s) for s in src]
        else:
            prim = SCHEDULES[op - OP_SCHEDULE]
            value = prim.extra["py"](schedule_frac(t, total_steps or 0))
            scalar = torch.tensor(value, dtype=proto.dtype, device=proto.device)
            regs[dst] = [scalar] * n
    return regs[program.output]


def _as_full(xs: list, like: list) -> list:
    """foreach kernels need equal shapes: expand 0-dim literals to their buffer's shape."""
    return [x if x.shape == y.shape else x.expand_as(y) for x, y in zip(xs, like)]


class EvolvedOptimizer(torch.optim.Optimizer):
    """A torch optimizer that follows an evolved (or known) update rule.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        rule: a known rule name (``"adam"``, ``"lion"``...), rule text such as
            ``"sign(interp(ema(g, 0.99), g, 0.0909))"``, a parsed tree or a Program.
        lr: learning rate.
        weight_decay: decoupled weight decay (AdamW style), outside the rule.
        maximize: follow the gradient upwards instead of downwards.
        foreach: apply each opcode to all parameters of a group together (default: on CUDA).
        total_steps: schedule length T for rules that use ``lin_decay`` or ``cos_decay``.
    """

    def __init__(
        self,
        params: Iterable,
        rule: str | Node | Program,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        total_steps: int | None = None,
    ):
        text = rule_text(rule)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if total_steps is not None and int(total_steps) <= 0:
            raise ValueError(f"Invalid total_steps: {total_steps}")
        if _program(text).uses_schedule and total_steps is None:
            raise ValueError(
                "this rule uses a schedule (lin_decay/cos_decay): pass total_steps=<steps>"
            )
        defaults: dict[str, Any] = dict(
            rule=text,
            lr=lr,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            total_steps=total_steps,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("total_steps", None)
            group.setdefault("weight_decay", 0.0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            program = _program(group["rule"])
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("EvolvedOptimizer does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for buf in program.states:
                        state[buf.key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            foreach = group["foreach"]
            if foreach is None:
                foreach = params[0].is_cuda
            # all params of a group advance together; group them by step count so that a
            # parameter that joined later (its grad was None before) gets its own bias correction
            by_step: dict[int, list] = {}
            for p in params:
                by_step.setdefault(self.state[p]["step"], []).append(p)
            for t, ps in by_step.items():
                if foreach:
                    self._update(program, group, ps, t)
                else:
                    for p in ps:
                        self._update(program, group, [p], t)
        return loss

    def _update(self, program: Program, group: dict, params: list, t: int) -> None:
        grads = [-p.grad if group["maximize"] else p.grad for p in params]
        states = [self.state[p] for p in params]
        directions = run_program(program, grads, params, states, t, group["total_steps"])
        lr, wd = group["lr"], group["weight_decay"]
        for p, d in zip(params, directions):
            if wd != 0.0:
                d = d + wd * p
            p.add_(d, alpha=-lr)


__all__ = ["EvolvedOptimizer", "rule_text", "run_program"]
