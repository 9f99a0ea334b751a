"""Interpreter and torch backends agree on generated random rules, NaN and inf included.

Random rules compose up to a few dozen ops, and some (sign of a difference, exp, division by a
small number) magnify a last-bit difference between torch and Numba, so finite values are
compared at rtol 1e-6 (atol 1e-12); NaN and inf positions exactly.
"""

from __future__ import annotations

import inspect
import sys

import numpy as np
import torch
from test_table import printed_direction
from tolerance import mismatches

from fitness.interpreter import StepRunner
from primitives.export_torch import load_optimizer_class
from primitives.grammar import parse, to_text
from primitives.program import compile_rule
from primitives.random_rules import random_population
from primitives.torch_backend import EvolvedOptimizer, run_program

N_RULES = 1200
STEPS = 4
P = 16


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return not mismatches(a, b, rtol=1e-6, atol=1e-12).any()


def test_backends_agree_on_random_rules():
    rng = np.random.default_rng(1234)
    trees = random_population(rng, N_RULES, 1, 6)
    grads = rng.normal(size=(STEPS, P)) * rng.choice([1e-4, 1.0, 1e3], size=(STEPS, P))
    grads[:, 0] = 0.0  # exact zeros exercise the protected operations
    w0 = rng.normal(size=P)
    mismatches = []
    non_finite = 0
    for tree in trees:
        program = compile_rule(tree)
        runner = StepRunner(program, w0, total_steps=STEPS)
        w = torch.tensor(w0)
        state = {s.key: torch.zeros(P, dtype=torch.float64) for s in program.states}
        for t in range(1, STEPS + 1):
            d_interp = runner.direction(grads[t - 1])
            g = torch.tensor(grads[t - 1])
            d_torch = run_program(program, [g], [w], [state], t, STEPS)[0]
            d_torch = torch.broadcast_to(d_torch, (P,)).numpy()
            non_finite += int(not np.isfinite(d_interp).all())
            if not _same(d_interp, d_torch):
                mismatches.append((program.text, t))
                break
    assert not mismatches, f"{len(mismatches)} rules disagree, first: {mismatches[:3]}"
    # the population really exercised the failure paths
    assert non_finite > 0


def test_random_rules_round_trip_through_text():
    rng = np.random.default_rng(7)
    for tree in random_population(rng, 500, 1, 7):
        text = to_text(tree)
        assert parse(text) == tree
        assert compile_rule(text).hash == compile_rule(tree).hash


def test_generated_code_agrees_with_interpreter_on_random_rules():
    """The printed plan (in-place temporaries, unmasked division where the denominator is never
    zero, bias corrections kept as scalars, folded literals) never changes a result."""
    rng = np.random.default_rng(99)
    trees = random_population(rng, 300, 1, 6)
    grads = rng.normal(size=(STEPS, P))
    grads[:, 1] = 0.0
    w0 = rng.normal(size=P)
    for tree in trees:
        program = compile_rule(tree)
        direction = printed_direction(program)
        runner = StepRunner(program, w0, total_steps=STEPS)
        state = {s.key: torch.zeros(P, dtype=torch.float64) for s in program.states}
        w = torch.tensor(w0)
        for t in range(1, STEPS + 1):
            expected = runner.direction(grads[t - 1])
            got = direction([w], [torch.tensor(grads[t - 1])], [state], t, STEPS, 0.0, 0.0)[0]
            got = torch.broadcast_to(got, (P,)).numpy()
            assert _same(expected, got), (program.text, t)


def test_fused_step_agrees_with_interpreter_on_random_rules():
    """The exported class and EvolvedOptimizer, foreach on, fuse the update into the rule's last
    op (addcdiv_, addcmul_, add_ with alpha) after the decay w *= 1 - lr*wd; the weights follow
    the interpreter's w - lr*(d + wd*w) step for step. A rule is followed until its weights stop
    being finite (from there on inf - inf and inf*(1 - lr*wd) part ways, by design)."""
    rng = np.random.default_rng(5)
    # and rules whose last op is a division the plan fuses, with bias corrections as scalars
    trees = [parse(text) for text in FUSED_DIVISIONS] + random_population(rng, 200, 1, 6)
    grads = rng.normal(size=(STEPS, 2, P // 2)) * rng.choice([1e-3, 1.0, 10.0], size=(STEPS, 2, 1))
    grads[:, :, 0] = 0.0
    w0 = rng.normal(size=(2, P // 2))
    lr, wd = 0.05, 0.1
    fused = 0
    for tree in trees:
        program = compile_rule(tree)
        exported = load_optimizer_class(program, "Probe")
        kwargs = dict(lr=lr, weight_decay=wd, foreach=True, total_steps=STEPS)
        for make in (exported, lambda ps, **kw: EvolvedOptimizer(ps, program, **kw)):  # noqa: B023
            params = [torch.nn.Parameter(torch.tensor(row)) for row in w0]  # two tensors
            opt = make(params, **kwargs)
            runner = StepRunner(program, w0.ravel(), total_steps=STEPS)
            for t in range(STEPS):
                for p, g in zip(params, grads[t]):
                    p.grad = torch.tensor(g)
                with np.errstate(all="ignore"):
                    expected = runner.step(grads[t].ravel(), lr, wd).copy()
                opt.step()
                got = torch.cat([p.detach() for p in params]).numpy()
                assert _same(got, expected), (program.text, t)
                if not np.isfinite(expected).all():
                    break
        fused += "_foreach_addc" in inspect.getsource(sys.modules[exported.__module__]._step)
    # the fused ops were exercised (6 of the 200 random rules end in a fusable mul)
    assert fused >= len(FUSED_DIVISIONS) + 5


FUSED_DIVISIONS = (
    "div(g, add(abs(w), 0.5))",
    "div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.99)), 1e-08))",
    "div(mul(ema_bc(g, 0.5), ema_bc(g, 0.9)), add(sqrt(ema_bc(square(g), 0.999)), 0.001))",
    "div(ema_bc(g, 0.9), sqrt(add(ema_bc(square(g), 0.999), 1e-08)))",
    "mul(ema_bc(g, 0.9), exp(g))",
)
