"""The interpreter's fused passes (EMA with its bias correction, last opcode with the weight
update, a last sign with the opcode before it and the update, an EMA with the opcode that reads
it and the update) give the bits of the separate passes they replace, on every path a small P
skips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numba import njit

from fitness.interpreter import StepRunner, _fused_ema, _fused_tail, new_registers, rule_step
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES
from primitives.table import OP_BIAS, OP_EMA

# beta 1.0 makes the second bias correction's denominator 0 (its value is then 0)
ADAM_LIKE = "div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 1.0)), 1e-08))"


@njit(cache=False, error_model="numpy")
def _reference_update(w, d, lr, weight_decay):
    # the update as a separate pass, in Numba as the interpreter (the same library both sides)
    for i in range(w.shape[0]):
        if weight_decay != 0.0:
            w[i] = w[i] - lr * (d[i] + weight_decay * w[i])
        else:
            w[i] = w[i] - lr * d[i]


def _fused_pairs(code: np.ndarray) -> int:
    return sum(1 for r in range(len(code) - 1)
               if code[r, 0] == OP_EMA and code[r + 1, 0] == OP_BIAS
               and code[r + 1, 2] == code[r, 1])


def _apart(program):
    """The same Program with no EMA directly followed by its own bias correction."""
    code = program.code
    ema_m, bias_m, square, ema_v, bias_v = 0, 1, 2, 3, 4
    assert [code[r, 0] for r in (ema_m, bias_m, ema_v, bias_v)] == [OP_EMA, OP_BIAS] * 2
    order = [square, ema_m, ema_v, bias_m, bias_v, *range(5, len(code))]
    apart = dataclasses.replace(program, code=np.ascontiguousarray(code[order]))
    assert _fused_pairs(program.code) == 2 and _fused_pairs(apart.code) == 0
    return apart


@pytest.mark.parametrize("p", [50, 2_000])  # one tile; several tiles of 368
def test_ema_and_its_bias_correction_in_one_pass_give_the_bits_of_two(p):
    program = compile_rule(ADAM_LIKE)
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(p)
    fused, apart = StepRunner(program, w0), StepRunner(_apart(program), w0)
    for _ in range(6):
        g = rng.standard_normal(p)
        np.testing.assert_array_equal(fused.step(g, 0.01, 0.1), apart.step(g, 0.01, 0.1))
    assert np.isfinite(fused.weights).all()


# each rule with how many of its last opcodes run in the update's pass
FUSED_TAILS = {"lion": 2, "sign(add(g, w))": 2, "sign(sign(g))": 2,
               "sign(interp(ema(g, 0.9), g, 0.7))": 2, "adam": 1, "mul(sign(g), w)": 1,
               "sign(ema(g, 0.9))": 1, "g": 0, "ema(g, 0.9)": 0}


# rules whose EMA joins that pass (1), with their fused tails; the state read as y, or by an
# opcode outside interp and sign, keeps its own pass (0)
FUSED_EMA = {"lion": (2, 1), "sign(interp(ema(g, 0.9), g, 0.7))": (2, 1),
             "sign(ema(g, 0.9))": (1, 1), "interp(ema(g, 0.9), g, 0.3)": (1, 1),
             "sign(ema(w, 0.9))": (1, 1), "interp(ema(g, 0.9), ema(g, 0.9), 0.4)": (1, 1),
             "sign(interp(ema(add(g, w), 0.9), w, 0.2))": (2, 1),
             "sign(interp(g, ema(g, 0.9), 0.7))": (2, 0), "mul(ema(g, 0.9), g)": (1, 0),
             "adam": (1, 0), "ema(g, 0.9)": (0, 0)}


def _program(rule):
    return compile_rule(KNOWN_RULES[rule].rule if rule in KNOWN_RULES else rule)


@pytest.mark.parametrize("rule", FUSED_TAILS)
def test_a_last_sign_joins_the_update_pass_with_the_elementwise_opcode_it_reads(rule):
    program = _program(rule)
    assert _fused_tail(program.code, program.output) == FUSED_TAILS[rule]


@pytest.mark.parametrize("rule", FUSED_EMA)
def test_an_ema_joins_the_update_pass_of_an_interp_or_sign_whose_first_input_it_is(rule):
    program = _program(rule)
    tail, ema = FUSED_EMA[rule]
    assert _fused_tail(program.code, program.output) == tail
    assert _fused_ema(program.code, len(program.code) - tail) == ema


@pytest.mark.parametrize("rule", [*FUSED_TAILS, *(r for r in FUSED_EMA if r not in FUSED_TAILS)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_the_update_fused_into_the_last_opcodes_gives_the_bits_of_separate_passes(
        rule, weight_decay):
    # lion (lerp's first branch), sign(interp(.., 0.7)) (its second) and sign(add(g, w)) (the
    # pair reads w, which it updates) end in sign of an elementwise opcode; adam and
    # mul(sign(g), w) in one elementwise opcode; g and ema(g, 0.9) in a row (a separate pass).
    # FUSED_EMA's rules add an EMA to that pass: of w (updated in the same pass), of a tile
    # register, read twice by interp (its second read from memory)
    program = _program(rule)
    p = 1_500
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal(p)
    stepped, directed = StepRunner(program, w0), StepRunner(program, w0)
    reference = w0.copy()
    for _ in range(5):
        g = rng.standard_normal(p)
        stepped.step(g, 0.003, weight_decay)
        directed.weights[:] = reference  # the direction may read w
        _reference_update(reference, directed.direction(g), 0.003, weight_decay)
        np.testing.assert_array_equal(stepped.weights, reference)


@pytest.mark.parametrize("rule, p", [("lion", 300), ("adam", 1_000)])
def test_runs_side_by_side_with_weight_decay_give_the_bits_of_runs_alone(rule, p):
    # lion's tile (816) holds several runs; adam's (368) tiles straddle the runs' boundaries
    program = compile_rule(KNOWN_RULES[rule].rule)
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(p)
    lrs = np.array([0.001, 0.01, 0.03])
    buf, starts, layout = new_registers(program.code, program.literal_registers,
                                        program.literal_values, program.n_registers, w0, 3)
    alone = [StepRunner(program, w0) for _ in lrs]
    n = 3 * p
    for t in range(1, 5):
        g = rng.standard_normal(p)
        buf[:n] = np.tile(g, 3)  # the gradient row holds every run's gradient
        rule_step(program.code, program.consts, buf, starts, layout, n, t, 0, program.output,
                  lrs, p, 0.2)
        for k, runner in enumerate(alone):
            runner.step(g, lrs[k], 0.2)
    for k, runner in enumerate(alone):
        np.testing.assert_array_equal(buf[n + k * p:n + (k + 1) * p], runner.weights)
