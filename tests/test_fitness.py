"""Proxy-task fitness: gradients, batched runs, scores against tuned Adam, caches, hurdles."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from dataclasses import replace

import numpy as np
import pytest

from fitness import lr_grid, schedule
from fitness import score as sc
from fitness.baselines import BaselineStore, code_key
from fitness.evaluate import Evaluator
from fitness.interpreter import TILE, StepRunner, run_quadratic, runs_per_call
from fitness.tasks import SEARCH_TASKS, SUITES, TaskSpec, build, get_suite
from fitness.tuning import tune
from primitives.program import compile_rule
from primitives.random_rules import random_population
from primitives.rules import KNOWN_RULES

ALL_SPECS = [*SEARCH_TASKS, *SUITES["heldout"], *SUITES["hurdle"]]  # each family once


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("evolve-cache")


@pytest.fixture(scope="module")
def search(cache_dir):
    return Evaluator(suite="search", seed=0, hurdle=False, cache=False, cache_dir=cache_dir)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
def test_hand_written_gradients_match_finite_differences(spec):
    inst = build(spec, 3)
    rng = np.random.default_rng(0)
    w = inst.w0 + 0.05 * rng.standard_normal(inst.n_params)
    _, grad = inst.loss_and_grad(w, step=1)
    for i in rng.choice(inst.n_params, size=min(12, inst.n_params), replace=False):
        h = 1e-6
        wp, wm = w.copy(), w.copy()
        wp[i] += h
        wm[i] -= h
        fd = (inst.loss_and_grad(wp, 1)[0] - inst.loss_and_grad(wm, 1)[0]) / (2 * h)
        assert fd == pytest.approx(grad[i], rel=1e-4, abs=1e-6), (spec.name, i)


def test_instances_are_a_function_of_the_seed():
    spec = next(s for s in SUITES["search"] if s.family == "blobs")
    a, b, c = build(spec, 5), build(spec, 5), build(spec, 6)
    numeric = [i for i, v in enumerate(a.arrays) if isinstance(v, np.ndarray)]
    assert all(np.array_equal(a.arrays[i], b.arrays[i]) for i in numeric)
    assert not np.array_equal(a.w0, c.w0)
    assert not np.array_equal(a.arrays[5], c.arrays[5])  # new data, not only a new start
    quad = next(s for s in SUITES["heldout"] if s.family == "quadratic")
    lo, hi = quad.options["cond"]
    curvature = build(quad, 1).arrays[0]
    assert lo * 0.999 <= curvature.max() / curvature.min() <= hi * 1.001


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s.name in
                                  ("quad_noisy", "teacher_deep", "mlp_diabetes", "logreg_50_b8")],
                         ids=lambda s: s.name)
def test_lrs_run_side_by_side_give_the_numbers_of_runs_alone(spec):
    inst = build(spec, 2)
    program = compile_rule(KNOWN_RULES["lion"].rule)
    lrs = np.array([1e-4, 3e-3, 0.1, 1.0, 30.0, 3e-2])
    together = inst.run(program, lrs)
    if spec.family != "quadratic":
        # lion stops at large rates, some mid-run: runs are swapped out of the batch
        stopped = together.steps_done[together.status != 0]
        assert ((stopped > 1) & (stopped < spec.steps)).any()
    for k in range(len(lrs)):
        alone = inst.run(program, lrs[k:k + 1])
        assert alone.status[0] == together.status[k]
        assert alone.steps_done[0] == together.steps_done[k]
        # the same compiled arithmetic on both sides: equal bits, NaN where a run failed
        np.testing.assert_array_equal(alone.final[:1], together.final[k:k + 1])


def test_large_tasks_run_their_lrs_in_several_calls_with_the_same_numbers():
    spec = TaskSpec("quad_big", "quadratic", 12, {"dim": 20_000, "cond": (1e2, 1e3)})
    inst = build(spec, 0)
    program = compile_rule("g")
    lrs = np.array([1e-3, 1e-1, 10.0])  # gradient descent at 10 diverges
    together = inst.run(program, lrs)
    assert runs_per_call(inst.n_params) < len(lrs)
    for k in range(len(lrs)):
        alone = inst.run(program, lrs[k:k + 1])
        assert (alone.status[0], alone.steps_done[0]) == (together.status[k],
                                                          together.steps_done[k])
        np.testing.assert_array_equal(alone.final[:1], together.final[k:k + 1])
    assert together.status[2] != 0


def test_tiles_and_segments_do_not_change_the_numbers():
    # every primitive is elementwise: stepping w in pieces must give the same bits as at once
    rule = "div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.999)), mul(lin_decay, 1e-8)))"
    program = compile_rule(rule)
    rng = np.random.default_rng(1)
    p = 2 * TILE + 77
    w0 = rng.standard_normal(p)
    whole = StepRunner(program, w0, total_steps=5)
    left = StepRunner(program, w0[:TILE - 3], total_steps=5)
    right = StepRunner(program, w0[TILE - 3:], total_steps=5)
    for _ in range(5):
        g = rng.standard_normal(p)
        whole.step(g, 0.01, 0.1)
        left.step(g[:TILE - 3], 0.01, 0.1)
        right.step(g[TILE - 3:], 0.01, 0.1)
    np.testing.assert_array_equal(whole.weights, np.concatenate([left.weights, right.weights]))
    curvature = np.logspace(0, 2, 300)
    lrs = np.array([0.01, 0.001, 0.03])
    batched = run_quadratic(*program.arrays(), curvature, w0[:300], lrs, 20)
    for k in range(3):
        single = run_quadratic(*program.arrays(), curvature, w0[:300], lrs[k:k + 1], 20)
        np.testing.assert_array_equal(single[0], batched[k])


@pytest.mark.parametrize("name", ["quad_noisy", "teacher_deep", "mlp_wine_tanh", "rnn_adding"])
def test_numba_loops_agree_with_torch_autograd_and_evolved_optimizer(name):
    from scripts.torch_proxy import run_torch

    inst = build(next(s for s in ALL_SPECS if s.name == name), 4)
    lrs = np.array([1e-3, 1e-2])
    for rule in ("adam", "lion"):
        program = compile_rule(KNOWN_RULES[rule].rule)
        ours = inst.run(program, lrs).final
        theirs = run_torch(inst, KNOWN_RULES[rule].rule, lrs)
        assert np.isfinite(ours).all()
        # two libraries: equal to rounding, not to the bit
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_schedules():
    assert schedule.factor("cosine", 1, 100) == 1.0
    assert schedule.factor("cosine", 51, 100) == pytest.approx(0.5)
    assert 0.0 < schedule.factor("cosine", 100, 100) < 1e-3
    assert schedule.factors("constant", 7).tolist() == [1.0] * 7
    with pytest.raises(ValueError, match="cosine"):
        schedule.check("linear")
    inst = build(SUITES["hurdle"][0], 0)
    program = compile_rule("g")
    lrs = np.array([0.3])
    cosine = inst.run(program, lrs, schedule="cosine").final[0]
    constant = inst.run(program, lrs, schedule="constant").final[0]
    assert cosine != constant  # the schedule reaches the loop


@pytest.mark.parametrize("suite", ["search", "heldout"])
def test_adam_scores_one_on_every_task(suite, cache_dir):
    ev = Evaluator(suite=suite, seed=1, hurdle=False, cache=False, cache_dir=cache_dir)
    result = ev.evaluate_one("adam")
    assert isinstance(result, sc.Result)
    assert len(result.tasks) == len(get_suite(suite))
    for t in result.tasks:
        assert t.log_ratio == 0.0, t  # the same search on the same instance as the baseline
        assert t.reason is None
        assert t.loss < t.loss0  # adam makes progress, so the reference is meaningful
        assert t.best_lr is not None
    assert result.score == 1.0 and result.suite == suite and result.seed == 1


def test_the_search_suite_holds_fresh_draws_of_each_task():
    from fitness.tasks import SEARCH_DRAWS

    search, once = get_suite("search"), get_suite("search1")
    assert once == SEARCH_TASKS and len(search) == SEARCH_DRAWS * len(once)
    for spec in once:
        copies = [s for s in search if s.name.split(".")[0] == spec.name]
        assert [s.name for s in copies] == [spec.name] + [f"{spec.name}.{j}"
                                                         for j in range(2, SEARCH_DRAWS + 1)]
        assert all(s.family == spec.family and s.options == spec.options for s in copies)
        # the same shapes, other numbers (data, start, conditioning)
        drawn = [np.concatenate([np.ravel(a) for a in build(s, 0).arrays
                                 if isinstance(a, np.ndarray) and a.dtype == np.float64])
                 for s in copies]
        assert all(d.shape == drawn[0].shape and not np.array_equal(d, drawn[0])
                   for d in drawn[1:]), spec.name


def test_heldout_tasks_differ_from_search_in_family_or_data():
    search = SUITES["search"]
    for spec in SUITES["heldout"]:
        same_family = [s for s in search if s.family == spec.family]
        if "data" in spec.options and spec.options["data"] != "manifold":
            # a bundled dataset never trains the same family in search
            assert all(s.options.get("data") != spec.options["data"] for s in same_family)
        else:
            # synthetic data is drawn per task name, and the problem's shape differs too
            assert all(s.options != spec.options for s in same_family), spec.name
    assert not {s.name for s in search} & {s.name for s in SUITES["heldout"]}
    # the torch benchmark's breast-cancer data stays out of every proxy suite
    assert all(s.options.get("data") != "breast_cancer" for s in ALL_SPECS)


def test_sgd_is_below_adam_on_an_ill_conditioned_quadratic(cache_dir):
    ev = Evaluator(suite="heldout", hurdle=False, cache=False, cache_dir=cache_dir)
    result = ev.evaluate_one("sgd")
    quad = next(t for t in result.tasks if t.task == "quad_ill_1000")
    assert quad.log_ratio < -0.5
    assert quad.best_lr is not None and quad.loss < quad.loss0


@pytest.mark.parametrize("rule", ["neg(g)", "div(g, sub(g, g))", "exp(mul(g, 1000.0))"])
def test_bad_rules_score_below_adam_with_reasons(search, rule):
    result = search.evaluate_one(rule)
    assert result.score < 0.6
    for t in result.tasks:
        assert sc.FAIL <= t.log_ratio <= sc.CLIP
        assert t.log_ratio < 0
    if rule == "neg(g)":
        assert all(t.reason for t in result.tasks)
        assert result.score == sc.FLOOR  # fails everywhere
    json.dumps(result.to_dict())
    assert sc.Result.from_dict(result.to_dict()).score == result.score


def test_malformed_rule_is_a_failed_result_not_an_exception(search):
    result = search.evaluate_one("add(g,")
    assert result.score == sc.FLOOR
    assert result.reason.startswith("invalid rule")
    assert all(t.log_ratio == sc.FAIL for t in result.tasks)
    assert len(result.tasks) == len(search.tasks)


def test_score_formula():
    assert sc.log_ratio(1.0, 1.0, 10.0) == 0.0
    assert sc.log_ratio(0.5, 1.0, 10.0) == pytest.approx(1.0)
    assert sc.log_ratio(1e-30, 1.0, 10.0) == sc.CLIP  # one tiny loss cannot dominate
    assert sc.log_ratio(4.0, 1.0, 10.0) == -sc.CLIP
    assert sc.log_ratio(None, 1.0, 10.0) == sc.FAIL
    assert sc.suite_score([0.0, 0.0]) == 1.0
    assert sc.suite_score([1.0, -1.0, 0.0]) == 1.0
    assert sc.suite_score([sc.FAIL] * 3) == sc.FLOOR
    assert sc.progress(1.0, 10.0, 1.0) == pytest.approx(1.0)
    assert sc.progress(10.0, 10.0, 1.0) == 0.0


def test_lr_search_extends_past_an_edge_and_refines():
    calls = []

    def evaluate(lrs):
        calls.append(list(lrs))
        return [abs(math.log10(lr) - math.log10(3e-6)) for lr in lrs]  # best far below 1e-4

    best, tried = lr_grid.search(evaluate, lr_grid.DEFAULT)
    assert calls[0] == lr_grid.DEFAULT.coarse()
    assert 1e-5 in tried and 1e-6 in tried and best == pytest.approx(2.15e-6)
    assert len(calls) == 4  # coarse, two extensions, refinement


def test_lr_search_can_refine_around_the_runner_up_too():
    # two dips: a shallow one at 1e-1 (the best decade point) and a deep one at 4.64e-4,
    # between decades, whose decade neighbours 1e-3 and 1e-4 validate worse than 1e-1
    losses = {1e-4: 0.9, 1e-3: 0.5, 1e-2: 0.6, 1e-1: 0.45, 1.0: 2.0,
              4.64e-4: 0.2, 2.15e-3: 0.55, 4.64e-2: 0.47, 2.15e-1: 0.8}

    def evaluate(lrs):
        return [losses[lr] for lr in lrs]

    best, tried = lr_grid.search(evaluate, lr_grid.DEFAULT)
    assert best == 0.1 and 4.64e-4 not in tried  # refining the best decade point only
    wide = replace(lr_grid.DEFAULT, refine_around=2)
    best, tried = lr_grid.search(evaluate, wide)
    assert best == 4.64e-4 and set(tried) == set(losses)
    assert "refine_around" not in lr_grid.DEFAULT.to_dict()  # old cache keys hold
    assert wide.to_dict()["refine_around"] == 2


def test_tune_names_the_failure_when_every_rate_fails():
    inst = build(SUITES["hurdle"][0], 0)
    run = tune(inst, compile_rule("mul(exp(50.0), exp(50.0))"))  # a huge constant step
    assert run.best_loss is None and run.best_lr is None
    assert run.reason in (sc.REASON_NAN, sc.REASON_ASCENDED)
    assert run.runs == len(lr_grid.DEFAULT.coarse())
    ascending = tune(inst, compile_rule("neg(g)"))  # finite at tiny rates, never below the start
    assert ascending.best_loss is not None and ascending.reason == sc.REASON_NO_PROGRESS


def test_baselines_are_cached_on_disk_per_search_and_schedule(tmp_path):
    inst = build(SUITES["hurdle"][0], 0)
    store = BaselineStore(tmp_path)
    first = store.get(inst, lr_grid.QUICK, "cosine")
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    payload = json.loads(files[0].read_text())
    assert payload["key"]["task"]["name"] == "quad_hurdle"
    assert payload["key"]["schedule"] == "cosine" and payload["key"]["search"]["low"] == 1e-3
    assert payload["key"]["code"] == code_key()  # an edit to the kernels gets fresh baselines
    store.get(inst, lr_grid.QUICK, "constant")
    assert len(list(tmp_path.iterdir())) == 2 and store.computed == 2
    from fitness.baselines import clear_memo

    clear_memo()
    again = BaselineStore(tmp_path)
    assert again.get(inst, lr_grid.QUICK, "cosine") == first
    assert again.computed == 0


def test_a_new_seed_computes_its_baselines_once(cache_dir):
    first = Evaluator(suite="search", seed=11, hurdle=False, cache=False, cache_dir=cache_dir)
    assert first.baselines.computed == len(first.tasks) + 1  # the suite and the hurdle
    again = Evaluator(suite="search", seed=11, hurdle=False, cache=False, cache_dir=cache_dir)
    assert again.baselines.computed == 0
    other = Evaluator(suite="search", seed=11, schedule="constant", hurdle=False, cache=False,
                      cache_dir=cache_dir)
    assert other.baselines.computed == len(other.tasks) + 1


def test_equivalent_rules_share_one_evaluation(cache_dir):
    ev = Evaluator(suite="search", hurdle=False, cache=True, cache_dir=cache_dir)
    assert ev.fingerprint("add(g, g)") == ev.fingerprint("mul(g, 2.0)")
    assert ev.fingerprint("g") != ev.fingerprint("sign(g)")
    assert ev.fingerprint("ema(g, 0.9)") != ev.fingerprint("ema(g, 0.99)")
    assert ev.fingerprint("add(g, w)") != ev.fingerprint("g")
    a, b = ev.evaluate_many(["add(g, g)", "mul(g, 2.0)"])
    assert ev.counters.cache_hits == 1 and ev.counters.evaluations == 1
    assert b.cached and b.rule == "mul(g, 2.0)"
    assert [t.log_ratio for t in a.tasks] == [t.log_ratio for t in b.tasks]


def test_hurdle_stops_clearly_bad_rules(cache_dir):
    ev = Evaluator(suite="search", hurdle=True, cache=False, cache_dir=cache_dir)
    bad, good = ev.evaluate_many(["neg(g)", "adam"])
    assert bad.hurdle == "rejected" and bad.score == sc.FLOOR and "hurdle" in bad.reason
    assert good.hurdle == "passed" and good.score == 1.0
    assert good.hurdle_score == pytest.approx(1.0)
    assert ev.counters.hurdle_rejections == 1
    # rejected before any suite evaluation: the estimate is the coarse grid on every task
    assert ev.counters.runs_saved_by_hurdle == len(ev.tasks) * len(lr_grid.DEFAULT.coarse())


def test_ten_thousand_random_rules_never_crash_the_hurdle_stage(cache_dir):
    # All 10,000 through compile, fingerprint and the lr search on the short quadratic; the full
    # suite runs on a sample below (and on 1,000 in scripts/bench_fitness.py).
    ev = Evaluator(suite="hurdle", hurdle=False, cache=True, cache_dir=cache_dir)
    trees = random_population(np.random.default_rng(7), 10_000, 1, 6)
    results = ev.evaluate_many(trees)
    assert len(results) == 10_000
    assert ev.counters.errors == 0 and ev.counters.invalid == 0
    assert all(math.isfinite(r.score) and sc.FLOOR <= r.score <= 2.0 ** sc.CLIP
               for r in results)


@pytest.mark.slow
def test_random_rules_on_the_full_suite(cache_dir):
    ev = Evaluator(suite="search", hurdle=True, cache=True, cache_dir=cache_dir)
    trees = random_population(np.random.default_rng(11), 300, 1, 6)
    results = ev.evaluate_many(trees)
    assert ev.counters.errors == 0
    assert ev.counters.hurdle_rejections > 0 and ev.counters.cache_hits > 0
    assert ev.counters.evaluations > 0
    for r in results:
        assert sc.FLOOR <= r.score <= 2.0 ** sc.CLIP
        assert len(r.tasks) == len(ev.tasks)
        json.dumps(r.to_dict())


DETERMINISM_RULES = ["adam", "sign(ema(g, 0.9))", "mul(g, lin_decay)", "div(g, w)"]


def _evaluate_in_child(cache: str) -> list[dict]:
    os.environ["EVOLVE_CACHE_DIR"] = cache
    ev = Evaluator(suite="search", seed=3, hurdle=False, cache=False)
    return [_numbers(r.to_dict()) for r in ev.evaluate_many(DETERMINISM_RULES)]


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "seconds"}


@pytest.mark.slow
def test_same_rule_and_seed_give_the_same_numbers_in_a_spawned_process(tmp_path):
    here = _evaluate_in_child(str(tmp_path / "a"))
    again = _evaluate_in_child(str(tmp_path / "a"))  # baselines now read back from disk
    with mp.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_evaluate_in_child, (str(tmp_path / "b"),))
    assert here == again == there


def test_task_spec_config_is_plain_json():
    spec = TaskSpec("x", "quadratic", 10, {"dim": 5, "cond": (1e2, 1e3)})
    assert json.loads(json.dumps(spec.config(1)))["seed"] == 1
    with pytest.raises(KeyError, match="known suites"):
        get_suite("nope")
    with pytest.raises(ValueError, match="schedule"):
        Evaluator(suite="hurdle", schedule="linear")
    assert compile_rule("g").n_instructions == 0
