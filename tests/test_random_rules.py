"""Interpreter and torch backend agree on generated random rules, NaN and inf included."""

from __future__ import annotations

import numpy as np
import torch

from fitness.interpreter import StepRunner
from primitives.grammar import parse, to_text
from primitives.program import compile_rule
from primitives.random_rules import random_population
from primitives.torch_backend import run_program

N_RULES = 1200
STEPS = 4
P = 16


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if not np.array_equal(nan_a, nan_b):
        return False
    inf_a, inf_b = np.isinf(a), np.isinf(b)
    if not np.array_equal(inf_a, inf_b) or not np.array_equal(a[inf_a], b[inf_b]):
        return False
    finite = ~(nan_a | inf_a)
    return bool(np.allclose(a[finite], b[finite], rtol=1e-6, atol=1e-12))


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
    """The exporter's in-place and unmasked-division rewrites never change a result."""
    import sys

    from primitives.export_torch import load_optimizer_class

    rng = np.random.default_rng(99)
    trees = random_population(rng, 300, 1, 6)
    grads = rng.normal(size=(STEPS, P))
    grads[:, 1] = 0.0
    w0 = rng.normal(size=P)
    for tree in trees:
        program = compile_rule(tree)
        direction = sys.modules[load_optimizer_class(program, "Probe").__module__]._direction
        runner = StepRunner(program, w0, total_steps=STEPS)
        state = {s.key: torch.zeros(P, dtype=torch.float64) for s in program.states}
        w = torch.tensor(w0)
        for t in range(1, STEPS + 1):
            expected = runner.direction(grads[t - 1])
            got = direction(torch.tensor(grads[t - 1]), w, state, t, STEPS)
            got = torch.broadcast_to(got, (P,)).numpy()
            assert _same(expected, got), (program.text, t)
