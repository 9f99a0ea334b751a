"""The strategies of issue 14 behind the seam: random, rl and optuna-adam ask well-formed rules
within the limits, are functions of (config, seed), resume exactly (in memory and through the
runner), and the Optuna journal of another campaign is refused without changing anything."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from evolve.cli import main
from evolve.config import STRATEGIES, CampaignConfig
from evolve.runner import run_campaign
from evolve.strategies import run_directory
from evolve.strategies.optuna_adam import JOURNAL, OptunaAdam, adam_rule
from evolve.strategies.rl import Grammar, Partial, RLController
from evolve.strategy import Strategy
from primitives.grammar import check_types, parse
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES
from scripts.reliability_runs import final_state
from tests.test_campaign import drive, toy_scores

ROOT = Path(__file__).resolve().parents[1]
NEW = ("random", "rl", "optuna-adam")


def _config(name: str, **kw) -> CampaignConfig:
    base = dict(strategy=name, population=12, children=6, generations=5, seed=3,
                executor="serial")
    base.update(kw)
    return CampaignConfig(**base)


def test_registered_by_name():
    for name in NEW:
        assert name in STRATEGIES
        assert Strategy.create(_config(name)).name == name


@pytest.mark.parametrize("name", NEW)
def test_rules_parse_compile_and_respect_the_limits(name):
    strategy = Strategy.create(_config(name, max_height=4, max_size=12, generations=3))
    while not strategy.done:
        rules = strategy.ask()
        assert len(rules) == (6 if strategy.started else 12)  # the same batches as evolution
        for rule in rules:
            tree = parse(rule)
            compile_rule(tree)
            if name != "optuna-adam":  # its rules are Adam's, whatever the limits
                assert tree.height() <= 4 and tree.size() <= 12
        strategy.tell(rules, toy_scores(rules))


@pytest.mark.parametrize("name", NEW)
def test_resume_from_json_state_equals_uninterrupted(name):
    cfg = _config(name)
    straight = drive(Strategy.create(cfg))
    half = drive(Strategy.create(cfg), generations=2)
    half.ask()  # the pending batch is part of the state: a resume asks it again
    resumed = Strategy.from_state_dict(json.loads(json.dumps(half.state_dict())))
    drive(resumed)
    assert resumed.state_dict() == straight.state_dict()
    other = drive(Strategy.create(_config(name, seed=4)))
    assert other.state_dict()["hall_of_fame"] != straight.state_dict()["hall_of_fame"]


@pytest.mark.parametrize("name", NEW)
def test_runner_interrupted_and_resumed_equals_uninterrupted(tmp_path, name):
    cfg = _config(name, generations=4, suite="hurdle", heldout_suite="hurdle",
                  checkpoint_every=2, real_k=0)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    with run_directory(straight):
        run_campaign(straight, config=cfg)
    with run_directory(broken):
        run_campaign(broken, config=cfg, stop_after=3)  # a generation past the checkpoint
    for stop in (1, None):
        with run_directory(broken):
            run_campaign(broken, resume=True, stop_after=stop)
    assert final_state(broken) == final_state(straight)


def test_rl_masks_admit_only_rules_within_the_limits():
    rng = np.random.default_rng(0)
    for height, size in ((1, 4), (2, 5), (3, 9), (8, 32)):
        grammar = Grammar(height, size)
        for _ in range(200):
            partial = Partial(grammar)
            while not partial.done:
                allowed = np.flatnonzero(partial.mask())
                assert len(allowed)
                partial.push(int(rng.choice(allowed)))
            tree = partial.tree()
            check_types(tree)
            assert tree.height() <= height and tree.size() <= size


def test_rl_controller_learns_from_rewards():
    cfg = _config("rl", population=40, children=40, generations=14, seed=0)
    controller = RLController(cfg)
    means = []
    while not controller.done:
        rules = controller.ask()
        scores = toy_scores(rules)
        controller.tell(rules, scores)
        means.append(np.mean([r.score for r in scores]))
    assert np.mean(means[-3:]) > means[0] + 0.1


@pytest.mark.slow
def test_rl_campaign_is_the_same_in_a_fresh_process(tmp_path):
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from tests.test_campaign import drive\n"
        "from evolve.config import CampaignConfig\n"
        "from evolve.strategy import Strategy\n"
        "cfg = CampaignConfig(strategy='rl', population=12, children=6, generations=3,"
        " seed=3, executor='serial')\n"
        "print(json.dumps(drive(Strategy.create(cfg)).state_dict()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    here = drive(Strategy.create(_config("rl", generations=3))).state_dict()
    assert json.loads(out.stdout) == json.loads(json.dumps(here))


def test_optuna_adam_starts_from_adam_and_writes_adam_family_rules():
    strategy = OptunaAdam(_config("optuna-adam", generations=2))
    first = strategy.ask()
    assert first[0] == KNOWN_RULES["adam"].rule
    drive(strategy)
    for trial in strategy.trials:
        tree = parse(adam_rule(trial["params"]))
        assert tree.name in ("div", "add")
        names = [n.name for n in tree.walk()]
        assert names.count("ema_bc") == 2 and ("w" in names) == (tree.name == "add")
    decoupled = adam_rule({"one_minus_beta1": 0.1, "one_minus_beta2": 1e-5, "eps": 1e-8,
                           "decoupled_weight_decay": True, "weight_decay": 0.01})
    assert decoupled == ("add(div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.99999)), "
                         "1e-08)), mul(0.01, w))")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


def test_optuna_journal_holds_the_trials_and_one_of_another_campaign_is_refused(tmp_path):
    import optuna

    runs = {}
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"heldout_suite": "hurdle", "suite": "hurdle", "real_k": 0}))
    for seed in (1, 2):
        runs[seed] = tmp_path / f"seed{seed}"
        args = ["run", "--strategy", "optuna-adam", "--population", "6", "--generations", "1",
                "--config", str(small), "--executor", "serial", "--seed", str(seed),
                "--out", str(runs[seed])]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    journal = runs[1] / JOURNAL
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name=None, storage=storage)
    assert len(study.trials) == 9  # 6 + 3, every evaluation a trial
    shutil.copy(journal, runs[2] / JOURNAL)
    before = _files(runs[2])
    result = CliRunner().invoke(main, ["resume", str(runs[2]), "--generations", "3"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "another campaign" in lines[0] and "nothing was changed" in lines[0]
    assert _files(runs[2]) == before


def test_unknown_strategy_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["run", "--strategy", "annealing", "--out",
                                       str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "strategy must be one of" in lines[0] and "annealing" in lines[0]
    assert not (tmp_path / "x").exists()
