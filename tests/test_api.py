"""The Python API as a user scripts it: the README's example run as a script (no main guard, a
process pool), lazy `import evolve`, ask/tell with plain numbers, the config table kept in step
with the dataclass, and rule selectors in every command that takes a rule."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

import evolve
from evolve.config import CampaignConfig
from evolve.config_doc import DOC_PATH, field_docs, render
from fitness.score import FLOOR

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- api-example:start -->\n```python\n(.*?)```\n<!-- api-example:end -->",
                      text, re.S)
    assert block, "README.md lost its api-example block"
    return block.group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> tuple[Path, str]:
    """The README's example, run as a user runs a script: python example.py, in a fresh folder."""
    folder = tmp_path_factory.mktemp("api")
    (folder / "example.py").write_text(readme_example())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "example.py"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return folder, proc.stdout


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_the_readme_example_runs_as_a_script_without_a_main_guard(example, capsys):
    folder, out = example
    with capsys.disabled():
        print("\nREADME example output:\n" + out)
    lines = out.splitlines()
    run = evolve.load_run(folder / "runs" / "api-example")
    assert lines[0] == f"best rule: {run.best}" and run.finished
    assert run.config.executor == "process", "the example must exercise worker processes"
    score = float(lines[1].rsplit(" ", 1)[1])
    assert score == round(evolve.score(run.best, suite="hurdle").score, 3)
    module = (folder / "found_opt.py").read_text()
    assert "class FoundOpt(" in module and "import torch" in module
    assert lines[2].startswith("ask/tell best: (") and len(lines) == 3


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_rule_selectors_work_in_every_command_that_takes_a_rule(example):
    from evolve.bench.optimizers import resolve_specs
    from evolve.cli import main
    from evolve.cli.bench import resolve_specs_entries
    from evolve.cli.campaign import _resolve_warm_start

    run_dir = example[0] / "runs" / "api-example"
    run = evolve.load_run(run_dir)
    expect = {"best": run.best, "search": max(run.hall_of_fame, key=lambda e: e["score"])["rule"],
              "heldout": run.heldout["ranking"][0]["rule"], "2": run.hall_of_fame[1]["rule"]}
    for selector, rule in expect.items():
        ref = f"{run_dir}:{selector}"
        assert run.rule(selector) == rule
        exported = CliRunner().invoke(main, ["export", ref, "--format", "text"])
        assert exported.exit_code == 0 and exported.stdout.strip() == rule, exported.output
        scored = CliRunner().invoke(main, ["score", ref, "--suite", "hurdle", "--json",
                                           "--quiet"])
        assert scored.exit_code == 0 and json.loads(scored.stdout)["rule"] == rule
        (spec,) = resolve_specs([ref])  # evolve benchmark --rules
        assert spec.rule == rule
        assert resolve_specs_entries(ref) == [ref]  # evolve validate --rules
        assert _resolve_warm_start(f"adam,{ref}") == f"adam,{rule}"  # evolve run --warm-start
        assert f"class Sel{selector}(" in evolve.export(ref, name=f"Sel{selector}")
    bad = CliRunner().invoke(main, ["export", f"{run_dir}:best2"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_import_evolve_loads_nothing_heavy():
    code = ("import sys, evolve, evolve.worker; print(sorted(m for m in ('torch', 'click', "
            "'matplotlib', 'tensorboard', 'rich', 'evolve.api') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert set(evolve.__all__) >= {"Campaign", "CampaignConfig", "run", "resume", "score",
                                   "export", "load_run", "UserTask"}
    assert all(getattr(evolve, name).__doc__ for name in evolve.__all__)


def toy(rule: str) -> float:
    return ("sign" in rule) + ("ema" in rule) - 0.01 * len(rule)


def test_ask_tell_takes_plain_numbers_and_a_saved_state_continues_exactly():
    straight = evolve.Campaign(population=8, generations=4, seed=2)
    while not straight.done:
        rules = straight.ask()
        straight.tell(rules, [toy(r) for r in rules])
    first = evolve.Campaign(population=8, generations=4, seed=2)
    for _ in range(2):
        rules = first.ask()
        first.tell(rules, [toy(r) for r in rules])
    pending = first.ask()  # asked, not told: the state keeps the batch
    state = json.loads(json.dumps(first.state_dict()))
    again = evolve.Campaign.from_state_dict(state)
    assert again.ask() == pending
    while not again.done:
        rules = again.ask()
        again.tell(rules, [toy(r) for r in rules])
    assert again.generation == straight.generation == 4 and again.evaluations == 24
    assert again.hall_of_fame == straight.hall_of_fame
    assert again.best == straight.hall_of_fame[0]
    failed = evolve.Campaign(population=4, generations=1, seed=0)
    rules = failed.ask()
    failed.tell(rules, [float("nan")] * len(rules))  # a failure is the worst score
    assert failed.best[1] == FLOOR
    with pytest.raises(evolve.UserError, match="one score per rule"):
        failed.tell(["g"], [])


def test_api_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(evolve.UserError, match="needs out="):
        evolve.run(generations=1)
    with pytest.raises(evolve.UserError, match="bad config: population"):
        evolve.run(out=tmp_path / "r", population=1)
    with pytest.raises(evolve.UserError, match="unknown config field"):
        evolve.Campaign(populaton=8)
    with pytest.raises(evolve.UserError):
        evolve.score("foo(g)")
    with pytest.raises(evolve.UserError, match="time_limit"):
        evolve.run(out=tmp_path / "r", time_limit="soon")
    assert not (tmp_path / "r").exists()


def test_the_config_table_is_generated_from_the_dataclass_and_in_step():
    docs = field_docs()
    assert [d.name for d in docs] == [f.name for f in fields(CampaignConfig)]
    missing = [d.name for d in docs if not d.meaning]
    assert not missing, (f"CampaignConfig fields without a meaning: {missing}; put it in a "
                         "comment on the field's line in evolve/config.py")
    assert DOC_PATH.read_text() == render(), ("docs/config.md is out of step with "
                                              "CampaignConfig: run `python -m evolve.config_doc "
                                              "--write`")
