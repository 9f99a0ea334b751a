"""Budgets: --time-limit and --max-evaluations stop at a generation boundary with a checkpoint
and the full report (final selection included), and a resumed run ends as one never stopped."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from test_tiers import tiny_config

from evolve.budget import Budget, BudgetClock, parse_duration
from evolve.cli import main
from evolve.errors import UserError
from evolve.runner import run_campaign
from fitness.score import Result
from scripts.reliability_runs import final_state


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("30m", 1800),
                                           ("1.5h", 5400), ("1h30m", 5400), (" 2m ", 120)])
def test_durations_take_s_m_h(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0", "m", "1h-"])
def test_a_bad_duration_says_what_to_write(text):
    with pytest.raises(UserError, match="expected a positive duration such as 90s, 30m"):
        parse_duration(text)


def test_the_clock_keeps_back_what_the_end_of_the_run_needs():
    clock = BudgetClock(Budget(time_limit=100.0, started=0.0), workers=2, confirm=4, real_k=2)
    clock.budget.elapsed = lambda: 60.0  # type: ignore[method-assign]
    proxy = [Result("a", 1.0, hurdle="passed", seconds=0.5),
             Result("b", 0.3, hurdle="rejected", seconds=0.01)]  # the hurdle's cost is not a suite's
    clock.record(10.0, proxy, real_seconds=4.0, real_rules=1)
    # 1 tier-2 rule so far, up to 2 more in the next generation: 3 to confirm, in 2 batches
    # 8 s fixed + 2 x 4 s + (10 funnel rules + 4) x 0.5 s = 23 s
    assert clock.finish_estimate(real_entries=1, funnel_rules=10) == pytest.approx(23.0)
    assert clock.stop_reason(50, 1, 10) is None  # 10 + 23 s needed, 40 s left
    clock.record(20.0, proxy)
    assert "--time-limit 1m40s: 1m00s used" in clock.stop_reason(50, 1, 10)  # 20 + 23 > 40
    assert "--max-evaluations 50 reached" in BudgetClock(
        Budget(max_evaluations=50), 1, 0).stop_reason(50, 0, 0)
    # with two warmup variants per confirmed rule: 3 rules + 6 variants on the fresh seeds (5
    # rounds of 2, each twice a tier-2 round: 2 seeds against 1), the 6 variants on tier 2's
    # seeds too (3 rounds): 8 s + (5 x 2 + 3) x 4 s + 7 s = 67 s
    wide = BudgetClock(Budget(time_limit=100.0, started=0.0), workers=2, confirm=4, real_k=2,
                       confirm_scale=2.0, variants=2)
    wide.record(10.0, proxy, real_seconds=4.0, real_rules=1)
    assert wide.finish_estimate(real_entries=1, funnel_rules=10) == pytest.approx(67.0)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    config = tiny_config(tmp, generations=5)
    run_campaign(tmp / "run", config=config, finish=True)
    return tmp / "run", config


def test_max_evaluations_stops_with_the_full_report_and_resume_ends_as_never_stopped(
        tmp_path, straight):
    straight, config = straight
    run = tmp_path / "run"
    # 8 candidates in generation 0, 4 in each after it: 16 >= 14 at generation 2
    run_campaign(run, config=config, finish=True, budget=Budget(max_evaluations=14))
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and status["generation"] == 2
    assert status["reason"] == "--max-evaluations 14 reached (16 candidates)"
    checkpoint = json.loads((run / "checkpoint.json").read_text())["strategy"]
    assert checkpoint["generation"] == 2 and checkpoint["evaluations"] == 16
    assert json.loads((run / "selection.json").read_text())["generation"] == 2
    assert json.loads((run / "heldout.json").read_text())["generation"] == 2
    assert "**Stopped at generation 2 of 5**" in (run / "report.md").read_text()
    again = CliRunner().invoke(main, ["resume", str(run), "--max-evaluations", "14", "--quiet"])
    assert again.exit_code == 0 and "nothing to do" in again.output, again.output
    done = CliRunner().invoke(main, ["resume", str(run), "--quiet"])
    assert done.exit_code == 0, done.output
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert final_state(run) == final_state(straight)
    assert (json.loads((run / "selection.json").read_text())["rule"]
            == json.loads((straight / "selection.json").read_text())["rule"])


def test_time_limit_stops_on_a_generation_boundary_with_a_report(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(tmp_path, generations=5).to_dict()))
    run = tmp_path / "run"
    # 1 s cannot hold another generation and the report (at least 8 s are kept for it)
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--out", str(run),
                                       "--time-limit", "1s", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "stopped at generation 0 of 5 (--time-limit 1.0s:" in result.output
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and "--time-limit" in status["reason"]
    assert (run / "selection.json").exists() and (run / "report.html").exists()
    assert "stopped: --time-limit" in (run / "report.html").read_text()
    result = CliRunner().invoke(main, ["resume", str(run), "--quiet"])
    assert result.exit_code == 0 and "final selection" in result.output, result.output
    assert json.loads((run / "status.json").read_text())["generation"] == 5


@pytest.mark.parametrize("args, message", [(["--time-limit", "soon"], "--time-limit 'soon'"),
                                           (["--max-evaluations", "0"], "--max-evaluations")])
def test_bad_budgets_are_one_line_and_create_nothing(tmp_path, args, message):
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["run", "--out", str(out), "--quiet", *args])
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
