"""Proxy-task fitness: gradients, scores against tuned baselines, failures, caches, hurdles."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os

import numpy as np
import pytest

from fitness import baselines as bl
from fitness.evaluate import Evaluator
from fitness.tasks import SUITES, TaskSpec, build, get_suite
from primitives.program import compile_rule
from primitives.random_rules import random_population

FAMILY_SPECS = [
    SUITES["search"][0],  # quadratic
    SUITES["search"][1],  # noisy quadratic
    SUITES["search"][2],  # rosenbrock
    SUITES["search"][3],  # logistic regression
    SUITES["search"][4],  # digits MLP (softmax cross-entropy)
    SUITES["search"][5],  # teacher-student (MSE)
    SUITES["heldout"][2],  # deeper MLP
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("evolve-cache")


@pytest.fixture(scope="module")
def search(cache_dir):
    return Evaluator(suite="search", seed=0, hurdle=False, cache=False, cache_dir=cache_dir)


@pytest.mark.parametrize("spec", FAMILY_SPECS, ids=lambda s: s.name)
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
    spec = SUITES["search"][4]
    a, b, c = build(spec, 5), build(spec, 5), build(spec, 6)
    assert all(np.array_equal(x, y) for x, y in zip(a.arrays[:-1], b.arrays[:-1]))
    assert not np.array_equal(a.w0, c.w0)
    lo, hi = SUITES["search"][0].options["cond"]
    curvature = build(SUITES["search"][0], 1).arrays[0]
    assert lo * 0.999 <= curvature.max() / curvature.min() <= hi * 1.001


@pytest.mark.parametrize("suite", ["search", "heldout"])
def test_adam_scores_one_on_every_task(suite, cache_dir):
    ev = Evaluator(suite=suite, seed=1, hurdle=False, cache=False, cache_dir=cache_dir)
    result = ev.evaluate_one("adam")
    assert len(result.tasks) == len(get_suite(suite))
    for t in result.tasks:
        assert 0.85 <= t.score <= 1.15, t
        assert t.reason is None
        assert t.loss < t.loss0  # adam makes progress, so the normalisation is meaningful
    assert 0.85 <= result.aggregate <= 1.15


def test_heldout_families_are_not_in_search():
    search = {s.name for s in SUITES["search"]}
    heldout = {s.name for s in SUITES["heldout"]}
    assert not search & heldout
    data = {s.options.get("data") for s in SUITES["heldout"]}
    assert {"breast_cancer", "wine"} <= data


def test_sgd_is_below_adam_on_the_ill_conditioned_quadratic(search):
    result = search.evaluate_one("sgd")
    quad = next(t for t in result.tasks if t.task == "quad_ill")
    assert quad.score < 0.9
    assert quad.best_lr is not None


@pytest.mark.parametrize("rule", ["neg(g)", "div(g, sub(g, g))", "exp(mul(g, 1000.0))"])
def test_bad_rules_score_below_adam_with_reasons(search, rule):
    result = search.evaluate_one(rule)
    assert result.aggregate < 0.5
    for t in result.tasks:
        assert t.score < 0.5
        assert bl.FLOOR <= t.score <= bl.CAP
    if rule == "neg(g)":
        assert all(t.reason for t in result.tasks)
    json.dumps(result.to_dict())


def test_malformed_rule_is_a_failed_result_not_an_exception(search):
    result = search.evaluate_one("add(g,")
    assert result.aggregate == bl.FLOOR
    assert result.reason.startswith("invalid rule")
    assert all(t.score == bl.FLOOR for t in result.tasks)


def test_score_formula():
    assert bl.task_score(10.0, 10.0, 1.0) == 0.0
    assert bl.task_score(1.0, 10.0, 1.0) == pytest.approx(1.0)
    assert bl.task_score(0.1, 10.0, 1.0) == pytest.approx(2.0)
    assert bl.task_score(0.0, 10.0, 1.0) == bl.CAP  # a loss at the minimum stays finite
    assert bl.task_score(None, 10.0, 1.0) == bl.FLOOR
    assert bl.task_score(1e6, 10.0, 1.0) == bl.FLOOR
    assert bl.aggregate([0.0, 1.0, 1.0, 1.0, 5.0]) == 1.0


def test_baselines_are_cached_on_disk_as_json(tmp_path):
    inst = build(SUITES["hurdle"][0], 0)
    lrs = np.array([1e-2, 1e-1])
    store = bl.BaselineStore(tmp_path)
    first = store.get(inst, lrs)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"
    payload = json.loads(files[0].read_text())
    assert payload["key"]["task"]["name"] == "quad_hurdle"
    again = bl.BaselineStore(tmp_path)
    assert again.get(inst, lrs) == first
    assert again.computed == 0 and store.computed == 1


def test_equivalent_rules_share_one_evaluation(cache_dir):
    ev = Evaluator(suite="search", hurdle=False, cache=True, cache_dir=cache_dir)
    assert ev.fingerprint("add(g, g)") == ev.fingerprint("mul(g, 2.0)")
    assert ev.fingerprint("g") != ev.fingerprint("sign(g)")
    assert ev.fingerprint("ema(g, 0.9)") != ev.fingerprint("ema(g, 0.99)")
    assert ev.fingerprint("add(g, w)") != ev.fingerprint("g")
    a, b = ev.evaluate_many(["add(g, g)", "mul(g, 2.0)"])
    assert ev.counters.cache_hits == 1 and ev.counters.evaluations == 1
    assert b.cached and b.rule == "mul(g, 2.0)"
    assert [t.score for t in a.tasks] == [t.score for t in b.tasks]


def test_hurdle_stops_clearly_bad_rules(cache_dir):
    ev = Evaluator(suite="search", hurdle=True, cache=False, cache_dir=cache_dir)
    bad, good = ev.evaluate_many(["neg(g)", "adam"])
    assert bad.hurdle == "rejected" and bad.aggregate == bl.FLOOR and "hurdle" in bad.reason
    assert good.hurdle == "passed" and good.aggregate == pytest.approx(1.0)
    assert ev.counters.hurdle_rejections == 1
    assert ev.counters.runs_saved_by_hurdle == len(ev.tasks) * len(ev.lrs)


def test_ten_thousand_random_rules_never_crash_the_hurdle_stage(cache_dir):
    # All 10,000 through compile, fingerprint and a short run at every lr; the full suite runs
    # on a sample below (and on 1,000 in scripts/bench_fitness.py).
    ev = Evaluator(suite="hurdle", hurdle=False, cache=True, cache_dir=cache_dir)
    trees = random_population(np.random.default_rng(7), 10_000, 1, 6)
    results = ev.evaluate_many(trees)
    assert len(results) == 10_000
    assert ev.counters.errors == 0 and ev.counters.invalid == 0
    assert all(math.isfinite(r.aggregate) and bl.FLOOR <= r.aggregate <= bl.CAP for r in results)


def test_random_rules_on_the_full_suite(cache_dir):
    ev = Evaluator(suite="search", hurdle=True, cache=True, cache_dir=cache_dir)
    trees = random_population(np.random.default_rng(11), 300, 1, 6)
    results = ev.evaluate_many(trees)
    assert ev.counters.errors == 0
    assert ev.counters.hurdle_rejections > 0 and ev.counters.cache_hits > 0
    for r in results:
        assert bl.FLOOR <= r.aggregate <= bl.CAP
        assert len(r.tasks) == len(ev.tasks)
        json.dumps(r.to_dict())


DETERMINISM_RULES = ["adam", "sign(ema(g, 0.9))", "mul(g, lin_decay)", "div(g, w)"]


def _evaluate_in_child(cache: str) -> list[dict]:
    os.environ["EVOLVE_CACHE_DIR"] = cache
    ev = Evaluator(suite="search", seed=3, hurdle=False, cache=False)
    return [_numbers(r) for r in ev.evaluate(DETERMINISM_RULES)]


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
    assert compile_rule("g").n_instructions == 0
