"""The strategy seam and the evolution strategy: typed children within limits, determinism, exact
state round trip, the base class's bookkeeping."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest

from evolve.config import CampaignConfig, ConfigError, split_top_level, warm_start_rules
from evolve.evolution import Evolution
from evolve.strategy import Strategy
from fitness.score import FLOOR, Result, TaskScore
from primitives.grammar import parse
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES


def toy_scores(rules: list[str]) -> list[Result]:
    """A deterministic stand-in for the proxy suite: rewards momentum and small rules."""
    out = []
    for rule in rules:
        tree = parse(rule)
        names = [n.name for n in tree.walk()]
        score = 0.5 * ("ema" in names or "ema_bc" in names) + 0.3 * ("sign" in names)
        score += 0.2 * ("div" in names) - 0.01 * tree.size() + 1.0
        out.append(Result(rule=rule, score=score, tasks=[TaskScore("toy", score - 1.0)]))
    return out


def Campaign(config: CampaignConfig) -> Strategy:  # noqa: N802 - reads as the class it builds
    return Strategy.create(config)


def drive(campaign: Strategy, generations: int | None = None) -> Strategy:
    steps = 0
    while not campaign.done and (generations is None or steps < generations):
        rules = campaign.ask()
        campaign.tell(rules, toy_scores(rules))
        steps += 1
    return campaign


@pytest.mark.parametrize("algorithm", ["aging", "generational"])
def test_campaign_improves_and_respects_limits(algorithm):
    cfg = CampaignConfig(population=16, generations=15, algorithm=algorithm, seed=3,
                         max_height=5, max_size=15, executor="serial")
    campaign = drive(Campaign(cfg))
    assert campaign.generation == 15
    assert len(campaign.population) == 16
    first = toy_scores(Campaign(cfg).ask())
    assert campaign.hall_of_fame[0].score > max(r.score for r in first)
    for ind in campaign.population:
        tree = parse(ind.rule)
        assert tree.height() <= 5 and tree.size() <= 15
        compile_rule(tree)
    scores = [i.score for i in campaign.hall_of_fame]
    assert scores == sorted(scores, reverse=True)


def test_same_seed_same_campaign_and_other_seed_differs():
    cfg = CampaignConfig(population=12, generations=6, seed=11, executor="serial")
    a = drive(Campaign(cfg)).state_dict()
    b = drive(Campaign(cfg)).state_dict()
    assert a == b
    c = drive(Campaign(CampaignConfig(population=12, generations=6, seed=12, executor="serial")))
    assert c.state_dict()["own"]["population"] != a["own"]["population"]


def test_state_round_trip_through_json_continues_identically():
    cfg = CampaignConfig(population=12, generations=8, seed=5, crossover_prob=0.3, executor="serial")
    straight = drive(Campaign(cfg))
    half = drive(Campaign(cfg), generations=4)
    half.ask()  # a pending batch is part of the state: the resumed run must ask it again
    state = json.loads(json.dumps(half.state_dict()))
    resumed = Strategy.from_state_dict(state)
    assert isinstance(resumed, Evolution)
    drive(resumed)
    assert resumed.state_dict() == straight.state_dict()


def test_aging_removes_the_oldest():
    cfg = CampaignConfig(population=6, generations=3, children=2, seed=0, executor="serial")
    campaign = Campaign(cfg)
    drive(campaign, 2)
    births = [i.birth for i in campaign.population]
    assert births == sorted(births)
    assert births.count(0) == 4  # two of the six initial individuals died of age


def test_warm_start_from_adam_fills_population():
    cfg = CampaignConfig(population=8, warm_start="adam", executor="serial")
    assert Campaign(cfg).ask() == [KNOWN_RULES["adam"].rule] * 8
    mix = warm_start_rules("adam,lion,sign(g)")
    assert mix == [KNOWN_RULES["adam"].rule, KNOWN_RULES["lion"].rule, "sign(g)"]


def test_restart_from_best_after_stagnation():
    cfg = CampaignConfig(population=8, generations=12, restart_after=2, seed=1, executor="serial")
    campaign = drive(Campaign(cfg))
    assert campaign.restarts >= 1


def test_tell_must_answer_ask():
    campaign = Campaign(CampaignConfig(population=4, executor="serial"))
    rules = campaign.ask()
    assert campaign.ask() == rules  # same batch until told
    with pytest.raises(ValueError):
        campaign.tell(rules[:-1], toy_scores(rules[:-1]))


def test_failures_are_the_floor_not_a_crash():
    campaign = Campaign(CampaignConfig(population=4, executor="serial"))
    rules = campaign.ask()
    campaign.tell(rules, [Result(rule=r, score=float("nan")) for r in rules])
    assert all(i.score == FLOOR for i in campaign.population)


def test_base_class_keeps_the_bookkeeping_for_any_strategy():
    """A strategy that only proposes and updates gets counters, hall of fame, champions and an
    exact state round trip from the base class (the seam other strategies plug into)."""

    class Constant(Strategy):
        name = "constant"

        def _propose(self):
            k = int(self.rng.integers(1, 9))
            return [f"mul(g, {k}.0)", "sign(g)"]

        def _update(self, told):
            pass

    cfg = CampaignConfig(population=2, tournament=2, generations=3, seed=2, executor="serial")
    s = Constant(cfg)
    drive(s)
    assert s.done and s.generation == 3 and s.evaluations == 8
    assert s.hall_of_fame[0].score == max(i.score for i in s.hall_of_fame)
    assert s.champions[0]["generation"] == 0
    row = s.stats()
    assert row["evaluations"] == 8 and row["population_best"] is not None


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="strategy"):
        CampaignConfig.from_dict({"strategy": "annealing"})
    state = Campaign(CampaignConfig(population=4, executor="serial")).state_dict()
    state["strategy"] = "random"
    with pytest.raises(ValueError, match="strategy"):
        Strategy.from_state_dict(state)


@pytest.mark.parametrize("bad, message", [
    ({"population": 1}, "population"),
    ({"algorithm": "annealing"}, "algorithm"),
    ({"warm_start": "adamx"}, "warm start"),
    ({"populaton": 3}, "unknown config field"),
    ({"population": "ten"}, "integer"),
    ({"tournament": 100}, "tournament"),
    ({"executor": "gpu"}, "executor"),
    ({"stop_quantile": 1.5}, "stop_quantile must be in"),
    ({"hurdle_quantile": -0.1}, "hurdle_quantile must be in"),
    ({"warmup_betas": [0.9, 1.0]}, r"warmup_betas must be a list of numbers in \(0, 1\)"),
    ({"warmup_betas": ["0.9"]}, "warmup_betas must be a list of numbers"),
    ({"warmup_betas": 0.9}, "warmup_betas must be a list of numbers"),
    ({"warmup_betas": [True]}, "warmup_betas must be a list of numbers"),
    ({"real_tasks": "mixture_mlp"}, "real_tasks must be a list of names"),
    ({"real_tasks": [3]}, "real_tasks must be a list of names"),
    ({"population": True}, "population must be an integer"),
    ({"real_min_score": "high"}, "real_min_score must be a number"),
    ({"suite": 3}, "suite must be text"),
    ({"ray_address": 5}, "ray_address must be text or null"),
])
def test_bad_config_is_a_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message):
        CampaignConfig.from_dict(bad)


def test_every_config_field_is_type_checked():
    """Each field's annotation is one the config reader checks: a value of no JSON type any field
    takes is refused by name for every field, so a new field cannot slip in unchecked."""
    for f in fields(CampaignConfig):
        with pytest.raises(ConfigError, match=f"^{f.name} must be"):
            CampaignConfig.from_dict({f.name: {"not": "a value"}})


def test_split_top_level_keeps_rule_commas():
    assert split_top_level('adam, sign(ema(g, 0.9)),RUN:best') == ["adam", "sign(ema(g, 0.9))", "RUN:best"]


def test_children_are_reproducible_from_rng_state():
    rng_a = np.random.default_rng(0)
    rng_b = np.random.default_rng(0)
    from evolve.operators import Limits, vary

    tree = parse(KNOWN_RULES["adam"].rule)
    for _ in range(50):
        a, _ = vary(tree, rng_a, Limits(), other=tree, crossover_prob=0.3)
        b, _ = vary(tree, rng_b, Limits(), other=tree, crossover_prob=0.3)
        assert a == b


def test_normalise_divides_a_gradient_subtree_by_a_running_rms():
    """The normalise mutation wraps one gradient-reading subtree x as
    div(x, sqrt(ema_bc(square(y), b))), y = g or x; rules without g come back unchanged."""
    from evolve.operators import NORMALISE_BETAS, normalise
    from primitives.grammar import to_text

    rng = np.random.default_rng(3)
    tree = parse("interp(sign(ema(g, 0.5)), mul(w, 0.1), 0.8)")
    seen = set()
    for _ in range(200):
        child = normalise(tree, rng)
        compile_rule(child)  # type-checks and lowers
        wraps = [n for n in child.walk() if n.name == "div"]
        assert len(wraps) == 1
        x, scale = wraps[0].args
        assert "g" in {n.name for n in x.walk()}
        assert scale.name == "sqrt" and scale.args[0].name == "ema_bc"
        square, beta = scale.args[0].args
        assert square.name == "square" and square.args[0] in (parse("g"), x)
        assert beta.value in NORMALISE_BETAS
        assert to_text(child).replace(to_text(wraps[0]), to_text(x)) == to_text(tree)
        seen.add(to_text(x))
    # every gradient-reading subtree is a place it can act: g, ema(g), sign(ema(g)), the root
    assert seen == {"g", "ema(g, 0.5)", "sign(ema(g, 0.5))", to_text(tree)}
    assert normalise(parse("mul(w, 0.1)"), rng) == parse("mul(w, 0.1)")


def test_campaign_repeats_exactly_in_fresh_processes():
    """Nothing may depend on process state (set order of classes, hash seeds, addresses)."""
    import subprocess
    import sys

    script = (
        "import hashlib, json, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_campaign import Campaign, CampaignConfig, drive\n"
        "cfg = CampaignConfig(population=12, generations=25, seed=9, crossover_prob=1.0,\n"
        "                     executor='serial')\n"
        "state = drive(Campaign(cfg)).state_dict()\n"
        "print(hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("0", "1", "2", "3", "random", "random"):
        env = {**__import__("os").environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1
