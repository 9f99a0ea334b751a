"""evolve refine and what it stands on: proxy tasks unrolled in torch agree with the Numba loops,
the rule step with tensor constants agrees with the torch backend, meta-gradients agree with
finite differences, refinement never returns a worse search score, adam scores as Adam; and the
hypergradient optimizers follow the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from evolve.bench.hypergradient import SGDHD, AdamHD
from evolve.cli import main
from evolve.refine import (
    Objective,
    RefineConfig,
    from_free,
    refinable,
    refine,
    to_free,
    with_constants,
)
from evolve.unroll import RuleStep, TorchTask, constants, rule_update, run, supported
from fitness.tasks import SEARCH_TASKS, build, get_suite
from primitives.grammar import parse, to_text
from primitives.program import compile_rule
from primitives.random_rules import random_tree
from primitives.rules import KNOWN_RULES
from primitives.torch_backend import run_program

SMOOTH = [KNOWN_RULES[n].rule for n in ("adam", "momentum")]


def _values(tree):
    return [torch.tensor(c.value, dtype=torch.float64) for c in constants(tree)]


@pytest.mark.parametrize("suite,schedule", [("search", "cosine"), ("heldout", "cosine"),
                                            ("search", "constant")])
def test_unrolled_torch_runs_agree_with_the_interpreter(suite, schedule):
    torch.set_num_threads(1)
    checked = 0
    specs = SEARCH_TASKS if suite == "search" else get_suite(suite)  # each family once
    for spec in specs:
        instance = build(spec, 0)
        assert supported(instance), spec.family
        task = TorchTask(instance, schedule)
        for rule in SMOOTH:
            ref = instance.run(compile_rule(rule), np.array([1e-2]), schedule=schedule).final[0]
            tree = parse(rule)
            with torch.no_grad():
                end = run(task, 1e-2, rule_update(RuleStep(tree, task.steps), _values(tree)))
            if math.isnan(ref):
                assert end.loss is None
            else:
                # float64 both ways; a few hundred steps amplify last-bit differences (torch's
                # matmul and tanh against the kernels' loops) to 2e-12 at most, measured
                assert float(end.loss) == pytest.approx(ref, rel=1e-9)
            checked += 1
    assert checked == len(SMOOTH) * len(specs)


def test_rule_step_with_tensor_constants_agrees_with_the_torch_backend():
    rng = np.random.default_rng(0)
    gens = np.random.default_rng(1)
    for _ in range(60):
        tree = random_tree(rng, 4)
        program = compile_rule(tree)
        step = RuleStep(tree, 20)
        states = [{b.key: torch.zeros(7, dtype=torch.float64) for b in program.states}]
        for t in range(1, 6):
            g = torch.from_numpy(gens.standard_normal(7))
            w = torch.from_numpy(gens.standard_normal(7))
            mine = step(g, w, t, _values(tree))
            theirs = run_program(program, [g], [w], states, t, 20)[0]
            torch.testing.assert_close(mine.expand_as(g), theirs.expand_as(g), rtol=1e-12,
                                       atol=1e-12, equal_nan=True)


def test_meta_gradient_agrees_with_finite_differences():
    torch.set_num_threads(1)
    instance = build(get_suite("hurdle")[0], 0)
    task = TorchTask(instance)
    tree = parse(KNOWN_RULES["adam"].rule)
    with torch.no_grad():
        ref = float(run(task, 0.01, rule_update(RuleStep(tree, task.steps), _values(tree))).loss)
    # a reference loss 4x worse keeps every term inside the clip, so the objective is smooth
    objective = Objective(tree, [(task, 0.01, 4 * ref)])
    cons = {c.index: c for c in refinable(tree)}
    free = {i: torch.tensor(to_free(c), dtype=torch.float64, requires_grad=True)
            for i, c in cons.items()}
    value = objective({i: from_free(cons[i], u) for i, u in free.items()}, create_graph=True)
    value.backward()
    for i, u in free.items():
        def at(x, i=i):
            vals = {j: from_free(cons[j], torch.tensor(x if j == i else float(v.detach()),
                                                       dtype=torch.float64))
                    for j, v in free.items()}
            with torch.no_grad():
                return float(objective(vals, create_graph=False))
        h = 1e-5
        x = float(u.detach())
        numeric = (at(x + h) - at(x - h)) / (2 * h)
        assert float(u.grad) == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_constants_round_trip_and_structural_ones_are_kept():
    tree = parse(KNOWN_RULES["adam"].rule)
    assert with_constants(tree, {c.index: c.value for c in constants(tree)}) == to_text(tree)
    assert [c.kind for c in refinable(tree)] == ["beta", "beta", "vec"]
    assert refinable(parse("div(g, add(sqrt(mom(square(g), 1.0)), 0.0))")) == []
    beta = refinable(tree)[0]
    back = from_free(beta, torch.tensor(to_free(beta), dtype=torch.float64))
    assert float(back) == pytest.approx(0.9, rel=1e-12)


@pytest.mark.slow
def test_refine_adam_starts_at_adams_score_and_never_ends_worse():
    cfg = RefineConfig(suite="hurdle", heldout_suite="hurdle", steps=3, cmaes_generations=1,
                       real_tier=False)
    result = refine(KNOWN_RULES["adam"].rule, cfg)
    before, after = result["scores"]["before"], result["scores"]["after"]
    # adam is tuned Adam: equal losses up to the last bits of the baseline's own code path
    assert before["search"] == pytest.approx(1.0, rel=1e-9)
    assert before["heldout"] == pytest.approx(1.0, rel=1e-9)
    assert after["search"] >= before["search"]
    assert all(v is not None and v < 1e-9 for v in result["unrolled_vs_evaluator"].values())
    assert {c["method"] for c in result["constants"]} <= {"gradient", "cmaes"}


@pytest.mark.slow
def test_refine_sends_zero_gradient_constants_to_cmaes():
    cfg = RefineConfig(suite="hurdle", heldout_suite="hurdle", steps=2, cmaes_generations=2,
                       real_tier=False)
    result = refine("sign(interp(ema(g, 0.99), g, 0.0909))", cfg)
    assert [c["method"] for c in result["constants"]] == ["cmaes", "cmaes"]
    assert result["scores"]["after"]["search"] >= result["scores"]["before"]["search"]


def test_evolve_refine_adam_with_adams_constants_scores_as_tuned_adam(tmp_path):
    import json

    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["refine", "adam", "--out", str(out), "--no-real",
                                       "--suite", "hurdle", "--steps", "0",
                                       "--cmaes-generations", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "refine.json").read_text())
    before = data["scores"]["before"]
    # the rule adam and the tuned-Adam baseline run the same compiled loops on both sides
    assert before["search"] == pytest.approx(1.0, rel=1e-12)
    assert before["heldout"] == pytest.approx(1.0, rel=1e-12)
    assert data["scores"]["after"]["search"] >= before["search"]
    assert [c["value"] for c in data["constants"]] == [0.9, 0.999, 1e-8]
    # the meta-objective's unrolled torch runs score adam as the evaluator does
    assert all(v is not None and v < 1e-9 for v in data["unrolled_vs_evaluator"].values())
    assert (out / "refine.md").is_file() and (out / "refine.png").is_file()


@pytest.mark.parametrize("args, words", [
    (["sign(g)"], "no numeric constants"),
    (["adam", "--schedule", "linear"], "--schedule must be one of cosine, constant"),
])
def test_bad_refine_input_is_one_line_and_exit_2(tmp_path, args, words):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["refine", *args, "--out", str(out), "--no-real",
                                       "--suite", "hurdle"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not out.exists()


# ------------------------------------------------------------------ hypergradient descent
def _quadratic_params():
    torch.manual_seed(0)
    target = torch.randn(5, dtype=torch.float64)
    return torch.zeros(5, dtype=torch.float64, requires_grad=True), target


def _steps(opt, p, target, n=6):
    grads = []
    for _ in range(n):
        opt.zero_grad()
        loss = ((p - target) ** 2 * torch.arange(1, 6)).sum()
        loss.backward()
        grads.append(p.grad.clone())
        opt.step()
    return grads


def test_hypergradient_optimizers_without_hypergradient_are_sgd_and_adam():
    for mine, theirs in ((SGDHD, torch.optim.SGD), (AdamHD, torch.optim.Adam)):
        p1, target = _quadratic_params()
        p2 = p1.detach().clone().requires_grad_(True)
        _steps(mine([p1], lr=0.05, hypergrad_lr=0.0), p1, target)
        _steps(theirs([p2], lr=0.05), p2, target)
        torch.testing.assert_close(p1, p2, rtol=1e-12, atol=1e-14)


def test_sgd_hd_learning_rate_follows_the_paper():
    p, target = _quadratic_params()
    opt = SGDHD([p], lr=0.01, hypergrad_lr=0.001)
    grads = _steps(opt, p, target, n=3)
    alpha = 0.01
    for t in (1, 2):  # alpha_t = alpha_{t-1} + beta * g_t . g_{t-1}
        alpha += 0.001 * float(grads[t] @ grads[t - 1])
    assert opt.param_groups[0]["alpha"] == pytest.approx(alpha, rel=1e-12)
    state = opt.state_dict()
    again = SGDHD([p.detach().clone().requires_grad_(True)], lr=0.01, hypergrad_lr=0.001)
    again.load_state_dict(state)
    assert again.param_groups[0]["alpha"] == opt.param_groups[0]["alpha"]


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_proxy_scores_path_scores_torch_adam_as_the_evaluator_scores_adam(schedule):
    from evolve.bench.hypergradient import proxy_scores

    torch.set_num_threads(1)
    # torch.optim.Adam through the unrolled tasks, the same lr search and schedule: the control
    assert proxy_scores("adam", "hurdle", 0, schedule) == pytest.approx(1.0, rel=1e-9)


def test_hypergradient_baselines_resolve_in_the_benchmark():
    from evolve.bench.optimizers import resolve_spec

    for name, cls in (("sgd_hd", SGDHD), ("adam_hd", AdamHD)):
        spec = resolve_spec(name)
        assert isinstance(spec.make([torch.zeros(2, requires_grad=True)], 0.1), cls)


@pytest.mark.slow
def test_run_refine_refines_the_hall_of_fame_into_the_run(tmp_path, monkeypatch):
    import functools
    import json

    import evolve.refine

    # the wiring is what is tested: a short refinement without the real-data tier
    quick = functools.partial(evolve.refine.RefineConfig, steps=2, cmaes_generations=1,
                              real_tier=False)
    monkeypatch.setattr(evolve.refine, "RefineConfig", quick)
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"suite": "hurdle", "heldout_suite": "hurdle", "real_k": 0}))
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--warm-start", "adam",
                                       "--population", "4", "--generations", "1",
                                       "--executor", "serial", "--out", str(run), "--refine",
                                       "--refine-top", "1"])
    assert result.exit_code == 0, result.output
    refined = json.loads((run / "refined" / "1" / "refine.json").read_text())
    assert refined["scores"]["after"]["search"] >= refined["scores"]["before"]["search"]
