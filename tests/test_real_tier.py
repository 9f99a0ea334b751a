"""Tier 2: ensembles train exactly like single models, Adam scores 1.0 against itself, bad rules
and bad user tasks are results or one-line errors, and Adam's runs are cached."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fitness import lr_grid
from fitness.score import FAIL
from fitness.training.real_tasks import (
    BUILTIN_NAMES,
    TaskError,
    as_real_task,
    builtin_tasks,
    load_user_task,
)
from fitness.training.real_tier import RealTier, RealTierConfig, search_task, train_ensemble
from fitness.training.torch_tasks import make_tasks, train_task
from primitives.program import compile_rule
from primitives.rules import KNOWN_RULES
from primitives.torch_backend import EvolvedOptimizer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "user_task.py"
QUICK = lr_grid.LrSearch(low=1e-3, high=1e-1, max_extensions=0, refine=False)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["digits_mlp", "digits_resmlp", "cancer_logreg",
                                  "seq_attention"])
def test_an_ensemble_trains_each_model_as_the_single_model_loop_does(name):
    """Same init, minibatches, schedule and rule: the ensemble's losses are the loop's, within
    float32 rounding (the batched products sum in another order)."""
    task = make_tasks()[name]
    rule = KNOWN_RULES["adam"].rule
    lrs, seeds = [1e-3, 3e-2], [0, 1]
    ensemble = train_ensemble(as_real_task(task), compile_rule(rule), lrs, seeds, steps=25)
    for run in ensemble:
        single = train_task(task, lambda p, lr, t: EvolvedOptimizer(p, rule, lr=lr), run.lr,
                            run.seed, steps=25)
        assert run.val_loss == pytest.approx(single.val_loss, rel=1e-4)
        assert run.test_loss == pytest.approx(single.test_loss, rel=1e-4)


def test_every_builtin_task_learns_with_adam_and_counts_its_data():
    tasks = builtin_tasks()
    assert tuple(tasks) == BUILTIN_NAMES
    adam = compile_rule(KNOWN_RULES["adam"].rule)
    for task in tasks.values():
        result = search_task(task, adam, (0,), "cosine", QUICK)
        assert result.best_lr is not None, task.name
        assert result.test_loss < 0.8 * result.loss0, task.name
        config = task.config()
        assert config["data"] and config["steps"] == task.steps


def small_tier(tmp_path, tasks=("mixture_mlp", "diabetes_mlp")) -> RealTier:
    return RealTier(RealTierConfig(tasks=tasks, seeds=(0,), search=QUICK), cache_dir=tmp_path)


def test_adam_scores_one_against_itself_and_a_diverging_rule_gets_the_floor(tmp_path):
    tier = small_tier(tmp_path)
    adam = tier.evaluate_one("adam")
    assert adam.score == pytest.approx(1.0) and adam.tier == "real"
    assert [t.log_ratio for t in adam.tasks] == [0.0, 0.0]
    bad = tier.evaluate_one("exp(exp(exp(mul(g, 100.0))))")
    assert bad.score == pytest.approx(2.0 ** FAIL)
    assert all(t.log_ratio == FAIL and t.reason for t in bad.tasks)
    broken = tier.evaluate_one("not a rule(")
    assert broken.reason.startswith("invalid rule")


def test_adams_runs_are_cached_on_disk_and_reused(tmp_path, monkeypatch):
    first = small_tier(tmp_path, tasks=("diabetes_mlp",))
    expected = first.baseline(first.tasks[0])
    files = list((tmp_path / "real-baselines").glob("diabetes_mlp-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["result"]["best_lr"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached baseline was recomputed")

    monkeypatch.setattr("fitness.training.real_tier.search_task", must_not_run)
    again = small_tier(tmp_path, tasks=("diabetes_mlp",))
    assert again.baseline(again.tasks[0]) == expected
    # another search setting is another key: it would be computed afresh
    other = RealTier(replace(again.config, schedule="constant"), cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="recomputed"):
        other.baseline(other.tasks[0])

    # so is other training code: tuned Adam's numbers of older code are never compared with
    monkeypatch.setattr("fitness.training.real_tasks.code_digest", lambda source: "other-code")
    edited = small_tier(tmp_path, tasks=("diabetes_mlp",))
    with pytest.raises(AssertionError, match="recomputed"):
        edited.baseline(edited.tasks[0])


def test_a_tasks_code_digest_follows_the_code_and_a_users_task_file(tmp_path, monkeypatch):
    from fitness.training import real_tasks

    task_file = tmp_path / "mine.py"
    task_file.write_text("x = 1\n")
    spec = f"user:{task_file}:make_task"
    before, user_before = real_tasks.code_digest(), real_tasks.code_digest(spec)
    task_file.write_text("x = 2\n")
    real_tasks.code_digest.cache_clear()
    assert real_tasks.code_digest(spec) != user_before
    monkeypatch.setattr(real_tasks, "_CODE_FILES", real_tasks._CODE_FILES[:-1])
    real_tasks.code_digest.cache_clear()
    assert real_tasks.code_digest() != before
    real_tasks.code_digest.cache_clear()

def test_the_readme_example_user_task_trains_in_the_tier(tmp_path):
    task = load_user_task(f"{EXAMPLE}:make_task")
    assert task.name == "cancer_tanh_mlp" and task.source.startswith("user:")
    tier = RealTier(RealTierConfig(tasks=(f"{EXAMPLE}:make_task",), seeds=(0,), search=QUICK),
                    cache_dir=tmp_path)
    adam, sign = tier.evaluate_many(["adam", "sign(ema(g, 0.9))"])
    assert adam.score == pytest.approx(1.0)
    assert sign.tasks[0].loss is not None and sign.tasks[0].best_lr is not None


@pytest.mark.parametrize("body,match", [
    ("x = 1\n", "defines no function make_task"),
    ("def make_task():\n    raise RuntimeError('no data here')\n", "raised RuntimeError: no data"),
    ("def make_task():\n    return 42\n", "must return"),
    ("import nosuchmodule_xyz\n", "importing"),
    ("from fitness.training.real_tasks import UserTask\nimport torch\n"
     "def make_task():\n    x = torch.randn(10, 3)\n"
     "    return UserTask('t', lambda: torch.nn.Linear(3, 2), (x, torch.zeros(9).long()),"
     " (x, x), (x, x))\n", "10 inputs and 9 targets"),
    ("from fitness.training.real_tasks import UserTask\nimport torch\n"
     "def make_task():\n    x = torch.randn(10, 3)\n    y = torch.zeros(10).long()\n"
     "    return UserTask('t', lambda: torch.nn.Linear(4, 2), (x, y), (x, y), (x, y),"
     " batch_size=4)\n",
     "does not run on its data"),
    ("from fitness.training.real_tasks import UserTask\nimport torch\n"
     "def make_task():\n    x = torch.randn(10, 3)\n    y = torch.zeros(10).long()\n"
     "    return UserTask('t', lambda: torch.nn.Sequential(torch.nn.Linear(3, 2), "
     "torch.nn.BatchNorm1d(2)), (x, y), (x, y), (x, y), batch_size=4)\n", "BatchNorm"),
])
def test_a_bad_user_task_is_one_line_that_says_what_to_fix(tmp_path, body, match):
    path = tmp_path / "task.py"
    path.write_text(body)
    with pytest.raises(TaskError, match=match) as err:
        load_user_task(f"{path}:make_task")
    assert "\n" not in str(err.value)


def test_task_specs_are_checked_before_anything_is_imported(tmp_path):
    with pytest.raises(TaskError, match="expected FILE.py:FUNCTION"):
        load_user_task("no_colon_here")
    with pytest.raises(TaskError, match="no file"):
        load_user_task(f"{tmp_path}/missing.py:make_task")
