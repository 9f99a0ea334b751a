"""The campaign lift: the adaptive hurdle, early stopping with an exact bound, and how cached
results evaluated under one threshold are (not) reused under another."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from evolve.config import CampaignConfig
from evolve.evolution import Evolution
from evolve.executors import SerialExecutor
from evolve.runner import CachedScorer, tier2_candidates
from evolve.strategy import Individual
from fitness import score as sc
from fitness.evaluate import HURDLE_THRESHOLD, Evaluator, Thresholds
from fitness.score import Result, TaskScore


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    return Evaluator(suite="search", seed=0, hurdle=True, cache=False,
                     cache_dir=tmp_path_factory.mktemp("evolve-cache"))


def _value(result: Result) -> dict:
    d = result.to_dict()
    d.pop("seconds")
    return d


def test_score_bound_is_an_upper_bound_reached_when_the_rest_are_at_the_clip():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 9))
        ratios = list(rng.choice([sc.FAIL, -1.0, 1.0, 0.0], n) * rng.uniform(0, 1, n))
        ratios = [float(np.clip(r, sc.FAIL, sc.CLIP)) for r in ratios]
        k = int(rng.integers(0, n + 1))
        bound = sc.score_bound(ratios[:k], n)
        assert bound >= sc.suite_score(ratios) * (1 - 1e-12)
        best = ratios[:k] + [sc.CLIP] * (n - k)
        assert bound == pytest.approx(sc.suite_score(best), rel=1e-12)


def test_a_suite_stops_once_it_cannot_reach_the_threshold_and_says_so(search):
    full = search.evaluate_one("g")
    assert not full.stopped and len(full.tasks) == len(search.tasks)
    stopped = search.evaluate_one("g", Thresholds(stop_below=1.99))
    assert stopped.stopped and stopped.stopped_below == 1.99
    assert "stopped early" in stopped.reason
    assert 0 < len(stopped.tasks) < len(search.tasks)
    # the tasks that ran are the full evaluation's (same library, deterministic: exact)
    by_name = {t.task: t for t in full.tasks}
    assert all(t == by_name[t.task] for t in stopped.tasks)
    # its score is the exact bound: below the threshold, never below the full score
    assert stopped.score == sc.score_bound([t.log_ratio for t in stopped.tasks],
                                           len(search.tasks))
    assert full.score <= stopped.score < 1.99


@pytest.mark.parametrize("rule", ["g", "sign(g)", "adam", "ema(g, 0.9)"])
def test_a_rule_whose_full_score_reaches_the_threshold_is_never_stopped(search, rule):
    full = search.evaluate_one(rule)
    at = search.evaluate_one(rule, Thresholds(stop_below=full.score))
    assert not at.stopped
    assert _value(at) == _value(full)


def test_the_hurdle_threshold_given_rejects_what_the_floor_lets_through(search):
    passed = search.evaluate_one("g")
    assert passed.hurdle == "passed" and passed.hurdle_score >= HURDLE_THRESHOLD
    higher = search.evaluate_one("g", Thresholds(hurdle=passed.hurdle_score + 0.01))
    assert higher.hurdle == "rejected" and higher.score == sc.FLOOR
    assert higher.hurdle_score == passed.hurdle_score
    # a threshold below the fixed floor does not lower it
    bad = search.evaluate_one("neg(g)", Thresholds(hurdle=-5.0))
    assert bad.hurdle == "rejected"


def test_thresholds_reuse_only_what_a_fresh_evaluation_would_not_contradict():
    full = Result("g", 0.8, hurdle="passed", hurdle_score=0.5)
    rejected = Result("g", sc.FLOOR, hurdle="rejected", hurdle_score=0.04)
    stopped = replace(full, score=0.7, stopped_below=0.9)
    assert Thresholds().reuses(full) and Thresholds(stop_below=1.5).reuses(full)
    assert not Thresholds(hurdle=0.6).reuses(full)  # it would be rejected now
    assert Thresholds(hurdle=0.3).reuses(rejected)
    assert not Thresholds(hurdle=0.01).reuses(rejected)  # it would pass now
    # a bound is never a full score: reused only against the same or a higher threshold
    assert not Thresholds().reuses(stopped)
    assert not Thresholds(stop_below=0.85).reuses(stopped)
    assert Thresholds(stop_below=0.9).reuses(stopped)
    assert Thresholds(stop_below=1.2).reuses(stopped)


def test_the_cache_never_serves_a_stopped_result_as_a_full_score():
    executor = SerialExecutor("search", 0)
    scorer = CachedScorer(executor)
    (first,) = scorer.score(["g"], thresholds=Thresholds(stop_below=1.99))
    assert first.stopped and scorer.misses == 1
    (second,) = scorer.score(["g"])  # no threshold: a full score is needed
    assert not second.stopped and not second.cached and scorer.misses == 2
    (third,) = scorer.score(["g"], thresholds=Thresholds(stop_below=1.99))
    assert third.cached and not third.stopped  # a full score serves any threshold
    assert scorer.lines == 2  # the replaced entry's line is counted: cache.jsonl holds both


def _ind(rule: str, score: float, hurdle: float | None, stopped: bool = False) -> Individual:
    return Individual(rule, score, 1, 0, hurdle_score=hurdle, stopped=stopped)


def test_thresholds_are_quantiles_of_the_population_with_the_fixed_floor():
    cfg = CampaignConfig(population=4, tournament=2, hurdle_quantile=0.5, stop_quantile=0.5)
    evo = Evolution(cfg)
    assert evo.thresholds() == Thresholds()  # no population yet: the fixed hurdle only
    evo.population = [_ind("g", 0.5, 0.2), _ind("sign(g)", 0.9, 0.6),
                      _ind("neg(g)", 1.9, 3.0, stopped=True), _ind("abs(g)", 0.7, None)]
    limits = evo.thresholds()
    assert limits.hurdle == pytest.approx(0.6)  # median of 0.2, 0.6, 3.0
    assert limits.stop_below == pytest.approx(0.7)  # median of full scores; the bound left out
    evo.population = [_ind("g", 0.5, 0.01), _ind("sign(g)", 0.9, 0.02)]
    assert evo.thresholds().hurdle == HURDLE_THRESHOLD  # never below the floor
    off = Evolution(replace(cfg, hurdle_quantile=0.0, stop_quantile=0.0))
    off.population = evo.population
    assert off.thresholds() == Thresholds()


def test_stopped_candidates_enter_neither_the_hall_of_fame_nor_tier_2():
    cfg = CampaignConfig(population=2, tournament=1, real_k=2, real_min_score=0.5)
    evo = Evolution(cfg)
    rules = evo.ask()
    task = [TaskScore("t", 0.0)]
    results = [Result(rules[0], 1.5, task, stopped_below=1.8), Result(rules[1], 1.1, task)]
    evo.tell(rules, results)
    assert [i.rule for i in evo.hall_of_fame] == [rules[1]]
    assert [c[0] for c in tier2_candidates(evo, rules, results)] == [rules[1]]
    # its bound stays its selection score, marked as such, and survives a checkpoint
    again = Evolution.from_state_dict(evo.state_dict())
    assert [(i.score, i.stopped) for i in again.population] == [(1.5, True), (1.1, False)]


def test_a_campaign_that_stops_suites_early_resumes_exactly(tmp_path):
    """The thresholds are a function of the checkpointed population: a run interrupted twice
    and resumed ends where the uninterrupted one does."""
    from scripts.reliability_runs import resumed_equals_straight

    cfg = CampaignConfig(population=8, generations=4, seed=1, suite="search",
                         heldout_suite="hurdle", real_k=0, executor="serial",
                         checkpoint_every=1, hurdle_quantile=0.25, stop_quantile=0.9)
    assert resumed_equals_straight(tmp_path, cfg)
    log = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert sum(r["stopped_early"] for r in log) > 0, "nothing was stopped: the test shows nothing"


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_prints_come_from_the_workers_and_the_driver_never_runs_the_probes(monkeypatch):
    """With a process pool the equivalence cache's fingerprints are the workers' work: the
    driver learns them from the executor, equal to what it would compute itself."""
    import fitness.equivalence as eq
    from evolve import worker
    from evolve.executors import ProcessExecutor

    rules = ["mul(g, 0.8125)", "add(g, mul(g, 0.8125))", "sign(ema(g, 0.8125))", "oops("]
    expected = {r: worker.rule_prints(r) for r in rules}
    for r in rules:
        worker._PRINTS.pop(r)
    assert worker.unknown_prints(rules + rules[:1]) == rules

    def refuse(program):
        raise AssertionError("the driver ran the probes")

    monkeypatch.setattr(eq, "prints", refuse)
    executor = ProcessExecutor("hurdle", 0, workers=1)
    try:
        results = CachedScorer(executor).score(rules + rules[:2])
    finally:
        executor.close()
    assert {r: worker.rule_prints(r) for r in rules} == expected
    assert [r.cached for r in results] == [False] * 4 + [True, True]


def test_the_screen_runs_first_and_stops_a_rule_below_it_with_an_estimate_under_the_bound(search):
    from fitness.evaluate import screen_mean, screen_tasks

    names = screen_tasks("search", 2)
    assert list(names) == [search.tasks[i].instance.name for i in search._order[:2]]
    full = search.evaluate_one("sign(g)")
    mean = screen_mean(full.tasks, names)
    cut = search.evaluate_one("sign(g)", Thresholds(screen=mean + 0.01, screen_tasks=names))
    assert cut.stopped and cut.screened_below == mean + 0.01 and cut.stopped_below is None
    assert "screen" in cut.reason and [t.task for t in cut.tasks] == sorted(
        names, key=[t.task for t in full.tasks].index)
    by_name = {t.task: t for t in full.tasks}
    assert all(t == by_name[t.task] for t in cut.tasks)  # the same runs: exact
    assert cut.score == pytest.approx(2.0 ** mean, rel=1e-15)
    assert cut.score <= sc.score_bound([t.log_ratio for t in cut.tasks], len(search.tasks))
    # at its own mean it passes the screen, and then its score is the full score, bit for bit
    passed = search.evaluate_one("sign(g)", Thresholds(screen=mean, screen_tasks=names))
    assert not passed.stopped and _value(passed) == _value(full)
    # a screen of tasks the suite lacks screens nothing
    other = search.evaluate_one("sign(g)", Thresholds(screen=5.0, screen_tasks=("nope",)))
    assert _value(other) == _value(full)


def test_a_screen_verdict_is_reused_only_where_a_fresh_evaluation_would_agree():
    names = ("a", "b")
    tasks = [TaskScore("a", 0.5), TaskScore("b", -0.1), TaskScore("c", 1.0)]
    full = Result("r", 1.3, tasks, hurdle="passed", hurdle_score=0.5)
    cut = Result("r", 2 ** 0.2, tasks[:2], hurdle="passed", hurdle_score=0.5,
                 screened_below=0.3)
    assert Thresholds(screen=0.2, screen_tasks=names).reuses(full)  # passes it again
    assert not Thresholds(screen=0.25, screen_tasks=names).reuses(full)  # would be cut now
    assert Thresholds(screen=0.25, screen_tasks=names).reuses(cut)
    assert not Thresholds(screen=0.2, screen_tasks=names).reuses(cut)  # would pass now
    assert not Thresholds().reuses(cut)  # a full suite is asked for
    assert not Thresholds(screen=0.5, screen_tasks=("a", "c")).reuses(cut)  # c never ran
    rejected = Result("r", sc.FLOOR, hurdle="rejected", hurdle_score=0.01)
    assert Thresholds(screen=0.9, screen_tasks=names).reuses(rejected)


def test_the_screen_is_a_quantile_of_the_full_survivors_on_the_cheapest_tasks():
    from fitness.evaluate import screen_tasks

    cfg = CampaignConfig(population=4, tournament=2, screen_quantile=0.5, screen_tasks=1)
    (name,) = screen_tasks(cfg.suite, 1)
    evo = Evolution(cfg)
    evo.population = [Individual(f"r{i}", 1.0, 1, 0, [TaskScore(name, v)], stopped=stop)
                      for i, (v, stop) in enumerate([(0.1, False), (0.5, False), (-1.0, True),
                                                      (0.3, False)])]
    limits = evo.thresholds()
    assert limits.screen == pytest.approx(0.3) and limits.screen_tasks == (name,)
    assert Evolution(replace(cfg, screen_quantile=0.0)).thresholds().screen is None
    assert screen_tasks("hurdle", 1) == ()  # a screen of the whole suite would skip nothing


def test_a_campaign_with_the_screen_resumes_exactly(tmp_path):
    from scripts.reliability_runs import resumed_equals_straight

    cfg = CampaignConfig(population=8, generations=4, seed=2, suite="search",
                         heldout_suite="hurdle", real_k=0, executor="serial",
                         checkpoint_every=1, screen_quantile=0.75, screen_tasks=2)
    assert resumed_equals_straight(tmp_path, cfg)
    cache = [json.loads(x)["result"] for x in
             (tmp_path / "straight" / "cache.jsonl").read_text().splitlines()]
    assert any(r["screened_below"] is not None for r in cache), "nothing was screened"


def test_a_redraw_rescores_stopped_survivors_as_children_under_the_rescored_ones_thresholds():
    cfg = CampaignConfig(population=3, tournament=2, stop_quantile=0.5)
    evo = Evolution(cfg)
    task = [TaskScore("t", 0.0)]
    evo.population = [_ind("g", 1.2, 0.5), _ind("sign(g)", 0.9, 0.6),
                      _ind("neg(g)", 0.8, 0.4, stopped=True)]
    evo.hall_of_fame = [_ind("abs(g)", 1.5, 0.9)]
    calls = []

    def score(rules, thresholds=None):
        calls.append((list(rules), thresholds))
        new = {"g": 1.0, "sign(g)": 1.1, "abs(g)": 1.4, "neg(g)": 0.95}
        return [Result(r, new[r], task, hurdle="passed", hurdle_score=0.5,
                       stopped_below=None if thresholds is None else thresholds.stop_below)
                for r in rules]

    assert evo.rescore(score, seed=7) == 4
    (full, none), (stopped, limits) = calls
    assert full == ["abs(g)", "g", "sign(g)"] and none is None  # full suites, no threshold
    assert stopped == ["neg(g)"] and limits.stop_below == pytest.approx(1.05)  # of g, sign(g)
    assert [(i.rule, i.score, i.stopped) for i in evo.population] == [
        ("g", 1.0, False), ("sign(g)", 1.1, False), ("neg(g)", 0.95, True)]
    assert evo.instance_seed == 7
