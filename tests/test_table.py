"""Every row of the primitive table behaves the same in every backend (one table).

Backends are compared within stated tolerances (see ``tests/tolerance.py``): torch and Numba
differ in the last bit on some CPUs (torch's float64 sqrt), so exact equality is asked only where
one library is on both sides, and NaN/inf positions are always compared exactly.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from tolerance import EPS, assert_agree, mismatches

from fitness.interpreter import StepRunner
from primitives import table
from primitives.export_torch import load_module, load_optimizer_class, plan_source
from primitives.grammar import Node, lit, parse
from primitives.lowering import lower
from primitives.program import compile_rule, needs_total_steps
from primitives.symbolic import to_latex, to_sympy
from primitives.table import (
    CONST,
    ELEMENTWISE,
    SCHEDULES,
    STATE,
    TABLE,
    UPDATES,
    VEC,
    Elementwise,
    register,
)
from primitives.torch_backend import EvolvedOptimizer, run_program

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30, 1e30, 60.0, -60.0,
                    np.inf, -np.inf, np.nan, 3.0, -1e-8])
OTHER = np.roll(SPECIAL, 3)
ROOT = Path(__file__).resolve().parents[1]
# one row of a table test: torch's vectorised kernels and Numba's scalar code differ by an ulp
# or two per op (sqrt's last bit, lerp's fused multiply-add), judged at the operands' scale
ROW_ULPS = 4


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


def printed_direction(program):
    """The direction plan printed by the code generator, imported: what the exported class runs,
    minus its final parameter update."""
    source = "import math\n\nimport torch\n\n\n" + plan_source(lower(program, False), "direction",
                                                              "Directions of the rule.")
    return load_module(source, "Direction").direction


@pytest.mark.parametrize("prim", ELEMENTWISE, ids=lambda p: p.name)
def test_elementwise_kernel_torch_form_and_generated_code_agree(prim):
    rule = one_primitive_rule(prim)
    program = compile_rule(rule)
    scale = np.maximum(np.abs(SPECIAL), np.abs(OTHER))
    d_interp = interpreter_direction(rule, SPECIAL, OTHER)
    # the scalar kernel's Python form is the same arithmetic in the same library: exact
    expected = np.array([prim.kernel.py_func(x, y, x, 0.3) for x, y in zip(SPECIAL, OTHER)])
    np.testing.assert_array_equal(d_interp, expected)
    # torch: the table's torch form through the plan (foreach pipeline, or the masked map)
    g, w = torch.tensor(SPECIAL), torch.tensor(OTHER)
    d_torch = run_program(program, [g], [w], [{}], 1, 4)[0]
    assert_agree(torch.broadcast_to(d_torch, g.shape).numpy(), d_interp, rtol=ROW_ULPS * EPS,
                 scale=scale, label=f"{prim.name}: plan vs interpreter")
    d_fn = prim.torch_fn(g, w, g, 0.3)
    assert_agree(d_fn.numpy(), d_interp, rtol=ROW_ULPS * EPS, scale=scale, label="torch_fn")
    # the generated code
    d_code = printed_direction(program)([w], [g], [{}], 1, 4, 0.0, 0.0)[0]
    assert_agree(torch.broadcast_to(d_code, g.shape).numpy(), d_interp, rtol=ROW_ULPS * EPS,
                 scale=scale, label=f"{prim.name}: generated code vs interpreter")


def test_tolerance_is_what_it_says():
    """The comparison used above fails where it should (a test that cannot fail is a defect):
    the last-bit difference of torch's sqrt(0.5) passes, a 1e-12 error, a NaN where a number
    was, or an inf of the other sign does not."""
    x = np.array([0.7071067811865476, 1.0, np.inf, np.nan])
    assert not mismatches(np.array([0.7071067811865475, 1.0, np.inf, np.nan]), x,
                          rtol=ROW_ULPS * EPS).any()
    assert mismatches(np.array([0.7071067811865476 + 1e-12, 1, np.inf, np.nan]), x,
                      rtol=ROW_ULPS * EPS)[0]
    assert mismatches(np.array([0.7, np.nan, np.inf, np.nan]), x, rtol=1.0)[1]
    assert mismatches(np.array([0.7, 1.0, -np.inf, np.nan]), x, rtol=1.0)[2]
    assert mismatches(np.array([0.7, 1.0, np.inf, 0.0]), x, rtol=1.0)[3]


@pytest.mark.parametrize("prim", ELEMENTWISE, ids=lambda p: p.name)
def test_sympy_form_computes_the_kernel(prim):
    """The sympy form, evaluated numerically, is the kernel: protections (x/0, log 0, the exp
    clip) included, on special and random finite inputs (rel. 1e-12: sympy rounds decimally)."""
    rng = np.random.default_rng(3)
    special = [0.0, -1.0, 1.0, 0.5, -2.5, 1e-30, 1e30, 60.0, -60.0, 3.0, -1e-8, 1e-300]
    xs = np.concatenate([special, rng.normal(size=20) * 10.0 ** rng.integers(-5, 6, 20)])
    ys = np.concatenate([np.roll(special, 5), rng.normal(size=20)])
    ys[:3] = 0.0  # x/0 with x 0, -1, 1
    sx, sy = sympy.Symbol("x"), sympy.Symbol("y")
    vec = [sx, sy][: prim.vec_arity]
    consts = [sympy.Float(0.3)] if CONST in prim.args else []
    expr = prim.sympy_fn(*vec, *consts)
    for x, y in zip(xs, ys):
        got = expr.subs({sx: sympy.Float(float(x)), sy: sympy.Float(float(y))})
        expected = prim.kernel.py_func(x, y, x, 0.3)
        scale = 1e-12 * max(abs(x), abs(y), 1e-300)  # interp may cancel to near 0
        assert math.isclose(float(got), expected, rel_tol=1e-12, abs_tol=scale), (prim.name, x, y)


def test_protected_sympy_forms_stay_plain_where_sympy_proves_the_guard():
    adam = str(to_sympy(parse("div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.999)), 1e-08))")))
    assert "pdiv" not in adam and "/" in adam
    assert "pdiv" in str(to_sympy(parse("div(g, w)")))
    assert to_sympy(parse("div(g, 0.0)")) == 0 and to_sympy(parse("log(0.0)")) == 0
    assert to_sympy(parse("log(2.0)")) == sympy.log(2.0)


@pytest.mark.parametrize("prim", STATE, ids=lambda p: p.name)
def test_state_primitives_follow_their_update_row(prim):
    """Interpreter and torch plan apply the update row's math (its scalar kernel is the reference)."""
    g = np.array([1.0, -2.0, 0.5, 1e-8, -3e5])
    rule = Node(prim.name, (Node("g"), lit(0.9)))
    program = compile_rule(rule)
    buf = np.zeros_like(g)
    state = {s.key: torch.zeros(g.shape, dtype=torch.float64) for s in program.states}
    runner = StepRunner(program, np.zeros_like(g))
    for t in range(1, 4):
        buf = np.array([prim.update.kernel.py_func(m, x, 0.9) for m, x in zip(buf, g)])
        expected = buf / table.BIAS_CORRECTION.kernel.py_func(0.9, float(t)) if prim.bias_corrected else buf
        d_interp = runner.direction(g)
        d_torch = run_program(program, [torch.tensor(g)], [torch.zeros(5, dtype=torch.float64)],
                              [state], t, None)[0].numpy()
        np.testing.assert_array_equal(d_interp, expected)  # same arithmetic, same library
        assert_agree(d_torch, expected, rtol=ROW_ULPS * EPS, label=f"{prim.name} step {t}")
    # and the row says what the kernel does: m = b*m + (1-b)*x or b*m + x
    m, x = 2.0, -1.0
    target = 0.9 * m + ((1 - 0.9) * x if prim.update.name == "ema" else x)
    assert prim.update.kernel.py_func(m, x, 0.9) == pytest.approx(target, rel=1e-15)


def test_bias_correction_of_a_frozen_buffer_is_zero_everywhere():
    d = interpreter_direction(parse("ema_bc(g, 1.0)"), np.array([1.0, np.nan]), np.zeros(2))
    torch_d = run_program(compile_rule("ema_bc(g, 1.0)"), [torch.tensor([1.0, np.nan])],
                          [torch.zeros(2, dtype=torch.float64)], [{"ema_2": torch.zeros(2)}], 1, None)
    assert d.tolist() == [0.0, 0.0] and torch_d[0].item() == 0.0


@pytest.mark.parametrize("prim", SCHEDULES, ids=lambda p: p.name)
def test_schedules_start_at_one_end_at_zero_and_print_as_they_compute(prim):
    first = interpreter_direction(Node(prim.name), np.zeros(2), np.zeros(2), total_steps=10, steps=1)
    last = interpreter_direction(Node(prim.name), np.zeros(2), np.zeros(2), total_steps=10, steps=11)
    assert first[0] == pytest.approx(1.0) and last[0] == pytest.approx(0.0, abs=1e-12)
    for frac in (0.0, 0.3, 0.5, 1.0):
        printed = template_value(prim.src.format(frac=repr(frac)))
        assert printed == prim.kernel.py_func(frac)  # the same Python arithmetic


def template_value(expr: str) -> float:
    """The value of a table source template (our own text, not a user's), through a module."""
    return load_module(f"import math\n\nVALUE = {expr}\n", "Template").VALUE


def _valid_pipeline(pipeline, tokens) -> bool:
    for method, *toks in pipeline:
        if toks and isinstance(toks[-1], dict):
            toks = toks[:-1] + list(toks[-1].values())
        assert hasattr(torch, "_foreach_" + method) and hasattr(torch, f"_foreach_{method}_")
        assert all(t in tokens or isinstance(t, float) for t in toks), (method, toks)
    return True


def test_rows_have_every_field_their_kind_needs_and_valid_pipelines():
    assert len(TABLE) == len(set(TABLE))
    for prim in TABLE.values():
        assert prim.doc and prim.latex
        assert prim.name.isidentifier() and not prim.name.startswith("_")
        if prim.kind == "elementwise":
            assert prim.kernel is not None and prim.torch_fn is not None and prim.torch_src
            assert prim.sympy_fn is not None
            assert prim.divisor in ("", "keep", "drop", "sqrt", "square", "product", "quotient",
                                    "shift")
            assert _valid_pipeline(prim.foreach or (), {"x", "y", "z", "c", "|c|", "-|c|"})
            if prim.fused:
                assert prim.fused[0] in ("addcmul_", "addcdiv_") and hasattr(torch, "_foreach_"
                                                                             + prim.fused[0])
                assert set(prim.fused[1:]) <= {"x", "y"} and prim.vec_arity <= 2
        elif prim.kind == "state":
            assert prim.update in UPDATES.values()
            assert _valid_pipeline(prim.update.foreach, {"x", "b", "1-b"})
            assert _valid_pipeline(prim.update.foreach_product, {"x1", "x2", "b", "1-b"})
        elif prim.kind == "schedule":
            assert prim.kernel is not None and prim.src


def test_exp_is_clipped_and_log_protected():
    d = interpreter_direction(parse("exp(g)"), np.array([1000.0]), np.zeros(1))
    assert d[0] == pytest.approx(math.exp(50.0))
    d = interpreter_direction(parse("log(g)"), np.array([0.0]), np.zeros(1))
    assert d[0] == 0.0


def test_latex_uses_the_table_templates_with_parentheses_where_needed():
    assert to_latex(parse("ema(g, 0.9)")) == "\\operatorname{EMA}_{0.9}\\left(g\\right)"
    assert to_latex(parse("clip(g, 0.5)")) == "\\operatorname{clip}_{0.5}\\left(g\\right)"
    assert to_latex(parse("mul(add(g, w), g)")) == "\\left(g + w\\right) \\cdot g"
    assert to_latex(parse("add(mul(g, w), g)")) == "g \\cdot w + g"
    assert to_latex(parse("square(exp(g))")) == "\\left(e^{g}\\right)^{2}"
    assert "10^{-8}" in to_latex(parse("add(g, 1e-08)"))


def test_needs_total_steps_names_schedule_rules():
    assert needs_total_steps("mul(lin_decay, g)") and needs_total_steps(parse("cos_decay"))
    assert not needs_total_steps("adam") and not needs_total_steps(compile_rule("sign(g)"))


@pytest.mark.parametrize("make", ["evolved", "exported"])
def test_schedule_end_is_explicit_a_warning_once_and_the_schedule_stays_at_zero(make):
    rule = "mul(cos_decay, g)"
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    if make == "evolved":
        opt = EvolvedOptimizer([w], rule, lr=0.1, total_steps=2)
    else:
        opt = load_optimizer_class(rule, "Sched")([w], lr=0.1, total_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            w.grad = torch.ones(3, dtype=torch.float64)
            opt.step()
    ended = [c for c in caught if "past total_steps=2" in str(c.message)]
    assert len(ended) == 1 and "stays at its end value 0" in str(ended[0].message)
    # 1 at step 1, 0.5 at step 2, 0 at every step after: w = 1 - 0.1 * 1.5
    assert torch.allclose(w.detach(), torch.full((3,), 0.85, dtype=torch.float64), rtol=1e-15)


def test_register_is_refused_once_fitness_has_keyed_its_interpreter():
    row = Elementwise("late", "elementwise", (VEC,), "x", "{x}", kernel=ELEMENTWISE[0].kernel)
    with pytest.raises(RuntimeError, match="locked"):
        register(row)
    assert "late" not in TABLE


NEW_ROW = '''
import math
from numba import njit
from primitives.table import VEC, Elementwise


@njit(inline="always")
def kernel(x, y, z, c):
    return x * x * x


CUBE = Elementwise(
    "cube", "elementwise", (VEC,), "x * x * x", "{x}^{{3}}", 3,
    kernel=kernel, torch_fn=lambda x, y, z, c: x * x * x, torch_src="{x} * {x} * {x}",
    foreach=(("mul", "x"), ("mul", "x")), sign_rule=lambda nn, pos, c: (nn[0], False),
    sympy_fn=lambda x: x**3,
)
'''

NEW_ROW_CHECK = '''
import sys, warnings
import numpy as np, torch
from primitives import table
import cube_row

before = table.kernel_signature()
table.register(cube_row.CUBE)
assert table.kernel_signature() != before  # the interpreter's cache key changes with the rows

from fitness.interpreter import StepRunner          # compiles with the new row
from fitness.numba_cache import configure, source_key
from primitives.export_torch import load_optimizer_class
from primitives.program import compile_rule
from primitives.symbolic import to_latex, to_sympy
from primitives.torch_backend import EvolvedOptimizer
from primitives.grammar import parse

assert configure().endswith(source_key())  # the cache folder is keyed with the new row
rule = "add(cube(g), mul(cube(w), 0.1))"
g = np.array([0.5, -2.0, 3.0, 0.0])
w0 = np.array([1.0, -1.0, 0.5, 2.0])
runner = StepRunner(compile_rule(rule), w0)
expected = runner.step(g, lr=0.1).copy()
assert np.allclose(expected, w0 - 0.1 * (g**3 + 0.1 * w0**3), rtol=1e-15)
for make in ("evolved", "exported"):
    w = torch.nn.Parameter(torch.tensor(w0))
    w.grad = torch.tensor(g)
    if make == "evolved":
        opt = EvolvedOptimizer([w], rule, lr=0.1, foreach=True)
    else:
        opt = load_optimizer_class(rule, "Cube")([w], lr=0.1, foreach=True)
    opt.step()
    assert np.allclose(w.detach().numpy(), expected, rtol=1e-15, atol=0), make
assert str(to_sympy(parse("cube(g)"))) == "g**3"
assert to_latex(parse("cube(g)")) == "g^{3}"
print("cube reached the interpreter, torch, the exported class and sympy")
'''


@pytest.mark.slow
def test_a_new_primitive_is_one_row_and_reaches_every_backend(tmp_path):
    """One Elementwise row, registered before fitness is imported, runs in the Numba interpreter
    (compiled afresh into an empty cache folder), EvolvedOptimizer, the exported class, sympy
    and LaTeX."""
    (tmp_path / "cube_row.py").write_text(textwrap.dedent(NEW_ROW))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               EVOLVE_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=f"{ROOT}:{tmp_path}")
    proc = subprocess.run([sys.executable, "-c", NEW_ROW_CHECK], env=env, capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reached the interpreter" in proc.stdout
