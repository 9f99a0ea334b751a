"""Every entry of the primitive table behaves the same in every backend (one table)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from fitness.interpreter import StepRunner
from primitives.export_torch import load_optimizer_class
from primitives.grammar import Node, lit, to_text
from primitives.program import compile_rule
from primitives.table import CONST, ELEMENTWISE, SCHEDULES, STATE, TABLE, VEC
from primitives.torch_backend import run_program

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, 1e30, 60.0, -60.0,
                    np.inf, -np.inf, np.nan, 3.0, -1e-8])
OTHER = np.roll(SPECIAL, 3)


def one_primitive_rule(prim) -> Node:
    args = []
    vec_inputs = [Node("g"), Node("w"), Node("g")]
    for t in prim.args:
        if t == VEC:
            args.append(vec_inputs.pop(0))
        elif t == CONST:
            args.append(lit(0.3))
        else:
            args.append(lit(0.9))
    return Node(prim.name, tuple(args))


def interpreter_direction(rule: Node, g, w, total_steps=4, steps=1):
    runner = StepRunner(compile_rule(rule), w, total_steps=total_steps)
    for _ in range(steps):
        d = runner.direction(g)
    return d


@pytest.mark.parametrize("prim", ELEMENTWISE, ids=lambda p: p.name)
def test_elementwise_kernel_torch_form_and_generated_code_agree(prim):
    rule = one_primitive_rule(prim)
    d_interp = interpreter_direction(rule, SPECIAL, OTHER)
    program = compile_rule(rule)
    d_torch = run_program(program, [torch.tensor(SPECIAL)], [torch.tensor(OTHER)], [{}], 1, 4)[0].numpy()
    np.testing.assert_array_equal(d_interp, d_torch)
    # the Python reference of the scalar kernel agrees too
    expected = [prim.kernel.py_func(x, y, x, 0.3) for x, y in zip(SPECIAL, OTHER)]
    np.testing.assert_array_equal(d_interp, np.array(expected))
    # and the generated standalone code
    cls = load_optimizer_class(to_text(rule), "Probe")
    direction = sys.modules[cls.__module__]._direction
    d_code = direction(torch.tensor(SPECIAL), torch.tensor(OTHER), {}, 1, 4)
    np.testing.assert_array_equal(d_interp, torch.broadcast_to(d_code, SPECIAL.shape).numpy())


@pytest.mark.parametrize("prim", STATE, ids=lambda p: p.name)
def test_state_primitives_follow_their_update_rule(prim):
    g = np.array([1.0, -2.0, 0.5])
    rule = Node(prim.name, (Node("g"), lit(0.9)))
    d = interpreter_direction(rule, g, np.zeros(3), steps=3)
    buf = np.zeros(3)
    for _ in range(3):
        buf = 0.9 * buf + ((1 - 0.9) * g if prim.update == "ema" else g)
    if prim.read == "bias_corrected":
        buf = buf / (1 - 0.9**3)
    np.testing.assert_allclose(d, buf, rtol=1e-15)


@pytest.mark.parametrize("prim", SCHEDULES, ids=lambda p: p.name)
def test_schedules_start_at_one_and_end_at_zero(prim):
    rule = Node(prim.name)
    first = interpreter_direction(rule, np.zeros(2), np.zeros(2), total_steps=10, steps=1)
    last = interpreter_direction(rule, np.zeros(2), np.zeros(2), total_steps=10, steps=11)
    assert first[0] == pytest.approx(1.0) and last[0] == pytest.approx(0.0, abs=1e-12)
    assert prim.extra["py"](0.5) == pytest.approx(prim.kernel.py_func(0.5))


def test_table_names_are_unique_and_documented():
    assert len(TABLE) == len(set(TABLE))
    for prim in TABLE.values():
        assert prim.doc
        assert prim.name.isidentifier() and not prim.name.startswith("_")
        if prim.kind == "elementwise":
            assert prim.torch_fn is not None and prim.torch_src and prim.sympy_fn is not None


def test_exp_is_clipped_and_log_protected():
    d = interpreter_direction(compile_rule("exp(g)").tree, np.array([1000.0]), np.zeros(1))
    assert d[0] == pytest.approx(math.exp(50.0))
    d = interpreter_direction(compile_rule("log(g)").tree, np.array([0.0]), np.zeros(1))
    assert d[0] == 0.0
