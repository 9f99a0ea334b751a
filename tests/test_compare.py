"""evolve compare: every strategy gets the same evaluations and seeds; bad input is one line and
exit 2; the table, JSON and plot are written from what the runs logged."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from evolve.cli import main
from evolve.compare import CompareConfig, compare, markdown, plot
from evolve.errors import UserError


def test_budget_is_rounded_up_to_a_whole_generation_for_every_strategy():
    cfg = CompareConfig(budget=5000, population=100, children=50)
    assert (cfg.generations, cfg.evaluations) == (98, 5000)
    cfg = CompareConfig(budget=101, population=100, children=50)
    assert (cfg.generations, cfg.evaluations) == (1, 150)
    campaigns = [cfg.campaign(s, 2) for s in cfg.strategies]
    assert len({(c.population, c.children, c.generations, c.seed, c.suite) for c in campaigns}) == 1


@pytest.mark.parametrize("args, words", [
    (["--strategies", "evolution,annealing", "--budget", "100"], "unknown strategy 'annealing'"),
    (["--budget", "0"], "--budget must be at least 1"),
    (["--budget", "50", "--population", "100"], "below the first generation"),
    (["--budget", "100", "--seeds", "0"], "--seeds must be at least 1"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, words):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(main, ["compare", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not out.exists()


def test_check_raises_user_error_before_any_work():
    with pytest.raises(UserError):
        CompareConfig(strategies=("evolution", "evolution"), budget=10).check()


def _fake(strategy: str, seed: int, best: float) -> dict:
    curve = [[10, best - 0.2], [15, best - 0.1], [20, best]]
    return {"strategy": strategy, "seed": seed, "run": "x", "rule": "g", "how": "test",
            "search": best, "heldout": best - 0.1, "real": None, "evaluations": 20,
            "distinct_evaluations": 18, "cache_hits": 2, "search_loop_seconds": 1.0,
            "best_search": best, "curve": curve}


def test_table_and_plot_from_results(tmp_path):
    from evolve.compare import summarize

    cfg = CompareConfig(strategies=("evolution", "random"), budget=20, seeds=2, population=10,
                        children=5)
    rows = [_fake("evolution", 0, 1.2), _fake("evolution", 1, 1.4), _fake("random", 0, 0.9),
            _fake("random", 1, 0.9)]
    results = {"config": cfg.to_dict(), "runs": rows, "summary": summarize(rows, cfg.strategies),
               "seconds": 3.0}
    assert results["summary"]["evolution"]["search"]["mean"] == pytest.approx(1.3)
    assert results["summary"]["evolution"]["search"]["std"] == pytest.approx(0.1414, abs=1e-4)
    text = markdown(results)
    assert "| evolution | 1.300 ± 0.141 |" in text and "| random | 0.900 ± 0.000 |" in text
    plot(results, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_compare_runs_each_strategy_to_the_same_budget_and_resumes(tmp_path):
    cfg = CompareConfig(strategies=("evolution", "random"), budget=16, seeds=1, population=8,
                        children=4, suite="hurdle", heldout_suite="hurdle", executor="serial",
                        real_tier=False, real_k=0)
    results = compare(tmp_path, cfg)
    assert [r["evaluations"] for r in results["runs"]] == [16, 16]
    assert all(r["curve"][0][0] == 8 for r in results["runs"])
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["summary"].keys() == {"evolution", "random"}
    assert (tmp_path / "best_so_far.png").exists() and (tmp_path / "compare.md").exists()
    again = compare(tmp_path, cfg)  # finished campaigns are read again, not rerun
    assert [r["rule"] for r in again["runs"]] == [r["rule"] for r in results["runs"]]
    other = CompareConfig(**{**cfg.__dict__, "population": 6})
    with pytest.raises(UserError, match="other settings"):
        compare(tmp_path, other)
