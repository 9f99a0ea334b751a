"""Campaigns with the real-data tier: promotion, the tier-2 hall of fame, the confirmed final
selection (RUN:best), redrawn proxy instances, and exact resume with both."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from evolve.cli import main
from evolve.cli.campaign import _print_summary
from evolve.config import CampaignConfig
from evolve.rundir import RunDirectory, resolve_rule
from evolve.runner import run_campaign
from evolve.simplify import prune
from evolve.tiers import RealTierStage, select, selection_score, warmup_variant
from evolve.worker import fingerprint
from fitness.score import Result, TaskScore
from scripts.reliability_runs import final_state

TINY_TASK = '''
import torch
from fitness.training.real_tasks import UserTask


def make_task():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=gen)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) > 0).long()
    return UserTask("tiny", lambda: torch.nn.Linear(4, 2), (x[:40], y[:40]), (x[40:50], y[40:50]),
                    (x[50:], y[50:]), steps=12, batch_size=8)
'''


def tiny_config(tmp_path: Path, **extra) -> CampaignConfig:
    task = tmp_path / "tiny_task.py"
    task.write_text(TINY_TASK)
    base = dict(population=8, generations=4, seed=3, suite="hurdle", heldout_suite="hurdle",
                executor="serial", real_tasks=[f"{task}:make_task"], real_k=1, real_seeds=1,
                real_min_score=0.5, confirm=2, confirm_seeds=1, checkpoint_every=1)
    return CampaignConfig(**{**base, **extra})


def test_a_campaign_answers_with_the_real_tier_confirmed_on_fresh_seeds(tmp_path, capsys):
    run = tmp_path / "run"
    strategy = run_campaign(run, config=tiny_config(tmp_path), finish=True)
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert sum(r["real_evaluated"] for r in log) == len(strategy.real.entries) > 0
    hall = json.loads((run / "hall_of_fame.json").read_text())
    assert hall[0]["tier"] == "real"
    real_scores = [e["score"] for e in hall if e["tier"] == "real"]
    assert real_scores == sorted(real_scores, reverse=True)
    selection = json.loads((run / "selection.json").read_text())
    confirmed = [r for r in selection["ranking"] if r["confirm_score"] is not None]
    bases = [r for r in confirmed if r["warmup_of"] is None]
    assert 1 <= len(bases) <= 2 and selection["confirm_seeds"] == [1000]
    # each confirmed rule also times the warmup ema(1.0, b) for the default betas, on both
    # tier 2's seeds and the fresh ones (where it does not behave as a rule scored already)
    variants = {(r["warmup_of"], r["rule"]) for r in confirmed if r["warmup_of"] is not None}
    assert variants and variants <= {(b["rule"], warmup_variant(b["rule"], beta))
                                     for b in bases for beta in (0.9, 0.95, 0.99)}
    assert all(r["real_score"] is not None and r["proxy_score"] is None
               for r in confirmed if r["warmup_of"])
    best = max(r["final_score"] for r in confirmed)
    near = [r for r in confirmed if r["final_score"] >= 0.99 * best]
    assert selection["rule"] == confirmed[0]["rule"] == min(near, key=lambda r: r["size"])["rule"]
    finals = [r["final_score"] for r in confirmed[1:]]
    assert finals == sorted(finals, reverse=True)
    for row in confirmed:  # one seed each: the plain geometric mean
        assert row["final_score"] == pytest.approx((row["real_score"] * row["confirm_score"]) ** 0.5)
    assert resolve_rule(f"{run}:best").text == selection["rule"]
    assert selection["simplified"] == prune(selection["rule"], fingerprint)
    assert selection["pareto"] and all(p["simplified"] == prune(p["rule"], fingerprint)
                                       for p in selection["pareto"])
    assert RunDirectory(run).final_selection()[1].startswith("the real-data tier's top")
    report = (run / "report.md").read_text()
    assert "The campaign's answer: the real-data tier" in report and "Pareto front" in report
    # a warmup variant as the answer (it has no proxy score): the summary still prints it
    variant = next(r for r in confirmed if r["warmup_of"])
    assert f"`{variant['rule']}` (a warmup variant)" in report
    selection["ranking"].insert(0, selection["ranking"].pop(selection["ranking"].index(variant)))
    selection["rule"] = variant["rule"]
    (run / "selection.json").write_text(json.dumps(selection))
    _print_summary(str(run))
    assert f"a warmup variant of a tier-2 rule, no proxy score): {variant['rule']}" \
        in capsys.readouterr().out
    # the answer's pruned form is kept beside it and printed when it is smaller
    selection["rule"] = "div(g, sqrt(ema_bc(square(neg(g)), 0.9)))"
    selection["simplified"] = prune(selection["rule"], fingerprint)
    assert selection["simplified"] == "div(g, sqrt(ema_bc(square(g), 0.9)))"
    (run / "selection.json").write_text(json.dumps(selection))
    _print_summary(str(run))
    assert "pruned (the same on the probes): div(g, sqrt(ema_bc(square(g), 0.9)))" \
        in capsys.readouterr().out
    selection["pareto"] = [{"rule": selection["rule"], "size": 10, "score": 1.1,
                            "simplified": selection["simplified"]}]
    (run / "selection.json").write_text(json.dumps(selection))
    shown = CliRunner().invoke(main, ["show", str(run)]).output
    assert "size  10  1.100  div(g, sqrt(ema_bc(square(neg(g)), 0.9)))\n" \
           "           pruned (the same on the probes): div(g, sqrt(ema_bc(square(g), 0.9)))" in shown


def test_tier_two_and_redrawn_instances_resume_exactly(tmp_path):
    cfg = tiny_config(tmp_path, generations=5, redraw_every=2)
    run_campaign(tmp_path / "straight", config=cfg)
    run_campaign(tmp_path / "broken", config=cfg, stop_after=2)
    run_campaign(tmp_path / "broken", resume=True, stop_after=1)
    run_campaign(tmp_path / "broken", resume=True)
    assert final_state(tmp_path / "broken") == final_state(tmp_path / "straight")
    state = json.loads((tmp_path / "straight" / "checkpoint.json").read_text())["strategy"]
    assert state["real"] and state["instance_seed"] == 3 + 5 // 2
    log = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["proxy_seed"] for r in log] == [3, 3, 4, 4, 5, 5]
    assert [r["generation"] for r in log if r["rescored"]] == [2, 4]


def result(score: float) -> Result:
    return Result(rule="", score=score, tasks=[TaskScore("t", math.log2(score))])


def test_promotion_takes_the_best_new_behaviours_above_the_threshold():
    stage = RealTierStage(CampaignConfig(real_k=2, real_min_score=0.9))
    rules = ["a", "b", "c", "d", "e"]
    scores = [1.2, 1.2, 0.5, 1.1, 1.0]
    prints = ["p1", "p1", "p3", "p4", "p5"]
    sizes = [3, 1, 1, 1, 1]
    first = stage.promote(rules, [result(s) for s in scores], prints, sizes)
    # the first batch promotes twice real_k; one rule per fingerprint (the smaller), none below
    assert [c[0] for c in first] == ["b", "d", "e"]
    for c in first:
        stage.record(c, 0, result(c[2] - 0.1))
    again = stage.promote(rules, [result(s) for s in scores], prints, sizes)
    assert again == []  # every behaviour above the threshold was scored already
    assert [e.rule for e in stage.leaderboard()] == ["b", "d", "e"]


def test_rules_that_differ_by_a_constant_factor_are_one_behaviour_for_tier_2():
    from evolve.worker import fingerprint

    pick = ("div(ema(div(g, {}), 0.5312), add(sqrt(ema_bc(square(g), 0.8833)), 9.605e-09))")
    a, b = pick.format("1.543"), pick.format("0.5628")
    # the proxy cache tells them apart (on a fixed rate grid their scores differ) ...
    assert fingerprint(a) != fingerprint(b)
    # ... the behaviour print does not: the learning-rate search absorbs the factor
    assert fingerprint(a, scale_free=True) == fingerprint(b, scale_free=True)
    assert fingerprint("mul(g, 3.0)", scale_free=True) == fingerprint("g", scale_free=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # huge directions must not overflow (a console warning)
        assert fingerprint("mul(g, 1e300)", scale_free=True) == fingerprint("g", scale_free=True)
    for other in ("neg(g)", "sign(g)", "ema(g, 0.9)", "add(g, w)", "add(g, 1.0)"):
        assert fingerprint(other, scale_free=True) != fingerprint("g", scale_free=True), other
    assert fingerprint("ema(g, 0.9)", scale_free=True) != fingerprint("ema(g, 0.99)",
                                                                      scale_free=True)
    stage = RealTierStage(CampaignConfig(real_k=2, real_min_score=0.9))
    rules = [a, b, "sign(g)"]
    promoted = stage.promote(rules, [result(s) for s in (1.3, 1.35, 1.1)],
                             [fingerprint(r, scale_free=True) for r in rules], [9, 9, 2])
    assert [c[0] for c in promoted] == [b, "sign(g)"]  # one of the two scaled copies, the better


def test_the_final_ranking_puts_confirmed_rules_first_by_both_scores():
    stage = RealTierStage(CampaignConfig())
    for rule, score in (("a", 1.3), ("b", 1.2), ("c", 1.1)):
        stage.record((rule, "fp" + rule, 1.0, 1), 0, result(score))
    board = stage.leaderboard()
    rows = select(board, {"fpa": result(0.9), "fpb": result(1.2)}, 0.3)
    assert [r["rule"] for r in rows] == ["b", "a", "c"]
    assert rows[2]["final_score"] is None


def test_the_final_score_weighs_each_seed_alike():
    stage = RealTierStage(CampaignConfig())
    stage.record(("a", "fpa", 1.0, 1), 0, result(1.3))
    [row] = select(stage.leaderboard(), {"fpa": result(1.1)}, 0.3, seeds=(2, 4))
    assert row["final_score"] == pytest.approx(1.3 ** (2 / 6) * 1.1 ** (4 / 6), rel=1e-12)
    assert row["final_score"] < (1.3 * 1.1) ** 0.5  # the leaderboard's score counts less


def test_the_answer_is_the_smallest_confirmed_rule_within_the_tolerance():
    stage = RealTierStage(CampaignConfig())
    for rule, size in (("big", 27), ("small", 9), ("smaller", 5), ("tiny", 3)):
        stage.record((rule, "fp" + rule, 1.0, size), 0, result(1.2))
    confirmations = {"fpbig": result(1.2), "fpsmall": result(1.19), "fpsmaller": result(1.1)}
    board = stage.leaderboard()
    # within 1% of the best final score: the smaller rule wins, the rest follow by final score
    rows = select(board, confirmations, 0.3, tolerance=0.01)
    assert [r["rule"] for r in rows] == ["small", "big", "smaller", "tiny"]
    # tolerance 0: the best final score (ties by size)
    assert [r["rule"] for r in select(board, confirmations, 0.3)][:3] == ["big", "small", "smaller"]
    # an unconfirmed rule is never the answer, however small
    assert select(board, confirmations, 0.3, tolerance=0.5)[0]["rule"] == "smaller"


def tasks_result(*log_ratios: float) -> Result:
    tasks = [TaskScore(f"t{i}", x) for i, x in enumerate(log_ratios)]
    return Result(rule="r", score=2.0 ** (sum(log_ratios) / len(log_ratios)), tasks=tasks)


def test_tier_two_ranks_a_rule_that_loses_on_one_task_below_one_that_wins_a_little_everywhere():
    spiky = tasks_result(1.0, 1.0, 1.0, -0.6)  # mean 0.6: 2x better on three, 1.5x worse on one
    steady = tasks_result(0.3, 0.3, 0.3, 0.3)
    assert spiky.score > steady.score
    assert selection_score(spiky, 0.3) < selection_score(steady, 0.3)
    # one scale with the mean: agreeing tasks give their common ratio, 1.0 is tuned Adam
    assert selection_score(steady, 0.3) == pytest.approx(2.0 ** 0.3, rel=1e-12)
    assert selection_score(tasks_result(0.0, 0.0), 0.3) == pytest.approx(1.0, rel=1e-12)
    # between the worst task and the mean; 0 turns it off (the plain mean)
    assert 2.0 ** -0.6 < selection_score(spiky, 0.3) < spiky.score
    assert selection_score(spiky, 0.0) == spiky.score
    assert selection_score(tasks_result(-2.0, 1.0), 1e-3) == pytest.approx(0.25, rel=1e-3)
    stage = RealTierStage(CampaignConfig())
    stage.record(("spiky", "fp1", 1.5, 3), 0, spiky)
    stage.record(("steady", "fp2", 1.2, 3), 0, steady)
    assert [e.rule for e in stage.leaderboard()] == ["steady", "spiky"]
    assert stage.leaderboard()[1].mean_score == spiky.score


def test_one_tier_two_place_goes_to_the_best_child_of_tier_two_parents():
    stage = RealTierStage(CampaignConfig(real_k=2, real_min_score=0.9))
    stage.record(("old", "p0", 1.0, 1), 0, result(1.1))  # not the first batch: k = real_k
    rules, prints, sizes = ["a", "b", "c", "d"], ["pa", "pb", "pc", "pd"], [1, 1, 1, 1]
    scores = [result(s) for s in (1.3, 1.2, 1.1, 1.0)]

    def promoted(bred, real_k=2):
        stage.config = CampaignConfig(real_k=real_k, real_min_score=0.9)
        return [c[0] for c in stage.promote(rules, scores, prints, sizes, bred=bred)]

    assert promoted(()) == ["a", "b"]
    assert promoted({"c", "d"}) == ["a", "c"]  # the better of the bred children
    assert promoted({"b", "d"}) == ["a", "b"]  # a bred child already placed: nothing changes
    assert promoted({"c"}, real_k=1) == ["a"]  # one place stays the proxy's


def test_tier_two_parents_breed_the_children_they_are_asked_to():
    from evolve.evolution import Evolution
    from evolve.strategy import Strategy
    from tests.test_campaign import toy_scores

    def first_children(real_parents: float) -> tuple[list[str], set[str], Evolution]:
        strategy = Evolution(CampaignConfig(population=8, children=6, seed=1, executor="serial",
                                            real_parents=real_parents))
        rules = strategy.ask()
        strategy.tell(rules, toy_scores(rules))
        strategy.real.record(("div(g, sqrt(ema_bc(square(g), 0.7416)))", "fp", 1.0, 6), 0,
                             result(1.2))
        return strategy.ask(), strategy.real_bred, strategy

    children, bred, strategy = first_children(1.0)
    assert bred == set(children)
    # the children are variations of the leaderboard's rule (one mutation each)
    assert all(c.startswith("div(g, ") for c in children), children
    resumed = Strategy.from_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert resumed.real_bred == bred and resumed.ask() == children
    children, bred, _ = first_children(0.0)
    assert bred == set()
    assert not all(c.startswith("div(g, ") for c in children), children
