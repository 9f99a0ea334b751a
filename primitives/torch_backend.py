"""The torch backend: ``EvolvedOptimizer`` runs any rule as a ``torch.optim.Optimizer``.

It follows torch.optim.Adam's contract: every hyperparameter (the rule text included) lives in
``defaults`` and so in each param group and in ``state_dict()``; per-parameter state is created
lazily on the first step; ``step(closure=None)`` runs under ``torch.no_grad()`` and returns the
closure's loss; parameters whose grad is None are skipped; lr schedulers work because the step
reads ``group["lr"]`` each time. Weight decay is decoupled: ``w <- w - lr * (d + wd * w)``.

The rule is compiled to the same :class:`~primitives.program.Program` the Numba interpreter
runs and lowered to a :class:`~primitives.torch_plan.Plan` of ``torch._foreach_*`` calls, the
same plan the exported class prints as source (:mod:`primitives.export_torch`). With
``foreach=True`` (the default on CUDA) it runs once over all parameters of a group, otherwise
once per parameter. :func:`run_program` runs the plan without the parameter update and returns
the directions (the real-data tier calls it on stacked tensors).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import torch

from primitives import table
from primitives.grammar import Node
from primitives.lowering import lower
from primitives.program import Program, compile_rule
from primitives.rules import resolve
from primitives.torch_plan import GRADS, PARAMS, Plan, Scalar, StepArgs


@lru_cache(maxsize=256)
def _program(text: str) -> Program:
    return compile_rule(resolve(text))


@lru_cache(maxsize=512)
def _plan(text: str, step: bool) -> Plan:
    return lower(_program(text), step)


def rule_text(rule: str | Node | Program) -> str:
    """Canonical text of a rule given as a known name, text, tree or Program."""
    if isinstance(rule, Program):
        return rule.text
    if isinstance(rule, Node):
        return compile_rule(rule).text
    return _program(rule).text


def execute(plan: Plan, params: list, grads: list, states: list[dict], step: StepArgs) -> list | None:
    """Run ``plan`` on lists of tensors; state buffers (and, for a step plan, params) change in
    place. Returns the directions for a direction plan, None for a step plan."""
    env: dict[str, Any] = {GRADS: grads, PARAMS: params}
    for name, key in plan.states:
        env[name] = [st[key] for st in states]
    for call in plan.calls:
        if call.only_with_decay and step.weight_decay == 0.0:
            continue
        args = [_value(a, env, step) for a in call.args]
        kwargs = {k: _value(v, env, step) for k, v in call.kwargs}
        if call.kind == "foreach":
            result = getattr(torch, "_foreach_" + call.method)(*args, **kwargs)
        elif call.kind == "map":
            result = _map(table.TABLE[call.method].torch_fn, args, call.const)
        else:  # fill
            result = [torch.full_like(x, args[1]) for x in args[0]]
        if call.out is not None:
            env[call.out] = result
    if plan.step:
        return None
    if isinstance(plan.output, Scalar):
        value = plan.output.evaluate(step)
        return [torch.tensor(value, dtype=g.dtype, device=g.device) for g in grads]
    return env[plan.output]


def _map(fn, args: list, const: float) -> list:
    """fn over the tensors of the list arguments; a number is a 0-dim tensor like them."""
    like = next(a for a in args if not isinstance(a, float))  # foreach ops return tuples
    out = []
    for i, x in enumerate(like):
        xs = [x.new_tensor(a) if isinstance(a, float) else a[i] for a in args]
        out.append(fn(*xs, *xs[:1] * (3 - len(xs)), const))
    return out


def _value(arg: Any, env: dict, step: StepArgs) -> Any:
    if isinstance(arg, str):
        return env[arg]
    if isinstance(arg, float):
        return arg
    return arg.evaluate(step)


def run_program(program: Program, grads: list, weights: list, states: list[dict], t: int,
                total_steps: int | None) -> list:
    """Apply one step of ``program`` to lists of tensors; returns the directions d.

    ``states[i]`` holds parameter i's buffers under ``StateBuffer.key``; they are updated in
    place. A direction that is the same everywhere (a literal, a schedule) is a 0-dim tensor
    that broadcasts. Tensors of any shape work (one stacked (M, P) tensor included).
    """
    if not grads:
        return []
    plan = _plan(program.text, False)
    return execute(plan, weights, grads, states, StepArgs(t, total_steps))


def schedule_end_message(owner: str, t: int, total_steps: int) -> str:
    return (f"{owner}: step {t} is past total_steps={total_steps}; the rule's schedule "
            "(lin_decay/cos_decay) stays at its end value 0 from here on, so its scheduled "
            "terms no longer move the weights. Pass total_steps = the number of steps you train.")


class EvolvedOptimizer(torch.optim.Optimizer):
    """A torch optimizer that follows an evolved (or known) update rule.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        rule: a known rule name (``"adam"``, ``"lion"``...), rule text such as
            ``"sign(interp(ema(g, 0.99), g, 0.0909))"``, a parsed tree or a Program.
        lr: learning rate.
        weight_decay: decoupled weight decay (AdamW style), outside the rule.
        maximize: follow the gradient upwards instead of downwards.
        foreach: run the rule with ``torch._foreach_*`` ops over all parameters of a group
            together (default: on CUDA), else one parameter at a time (less temporary memory).
        total_steps: schedule length T for rules that use ``lin_decay`` or ``cos_decay``
            (required for them, see :func:`primitives.program.needs_total_steps`). After T
            steps those schedules stay at 0 and a warning says so once.

    lr schedulers that cycle momentum (``OneCycleLR``, ``CyclicLR``) need
    ``cycle_momentum=False``: a rule's decay constants are part of the rule, so there is no
    ``momentum`` or ``betas`` hyperparameter to cycle.
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
                "this rule uses a schedule (lin_decay/cos_decay): pass total_steps=<the number "
                "of steps you will train>"
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
            plan = _plan(group["rule"], True)
            # parameters that joined later (their grad was None before) have their own step
            # count, so the group runs once per count
            by_step: dict[int, list] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("EvolvedOptimizer does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for _, key in plan.states:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            foreach = group["foreach"]
            total = group["total_steps"]
            for t, ps in by_step.items():
                if plan.uses_schedule and total and t > total:
                    self._warn_schedule_end(t, total)
                grads = [p.grad for p in ps]
                if group["maximize"]:
                    grads = torch._foreach_neg(grads)
                states = [self.state[p] for p in ps]
                args = StepArgs(t, total, group["lr"], group["weight_decay"])
                if foreach if foreach is not None else ps[0].is_cuda:
                    execute(plan, ps, grads, states, args)
                else:
                    for p, g, s in zip(ps, grads, states):
                        execute(plan, [p], [g], [s], args)
        return loss

    def _warn_schedule_end(self, t: int, total: int) -> None:
        if not getattr(self, "_schedule_end_warned", False):
            self._schedule_end_warned = True
            # past this method, step() and torch.optim's no_grad and hook wrappers: the caller
            warnings.warn(schedule_end_message(type(self).__name__, t, total), stacklevel=5)


__all__ = ["EvolvedOptimizer", "execute", "rule_text", "run_program", "schedule_end_message"]
