"""``evolve score`` and ``evolve tasks`` as a user types them, and the bench script's smoke run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from evolve.cli.fitness import score, tasks
from fitness.tasks import get_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EVOLVE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cli-cache"))


def test_score_json_for_a_known_name():
    result = CliRunner().invoke(score, ["adam", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["aggregate"] == pytest.approx(1.0)
    assert [t["task"] for t in payload["tasks"]] == [s.name for s in get_suite("search")]
    assert all(set(t) == {"task", "score", "best_lr", "reason"} for t in payload["tasks"])


def test_a_failing_rule_exits_zero_with_floor_scores_and_reasons():
    result = CliRunner().invoke(score, ["neg(g)", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["aggregate"] < 0.5
    assert all(t["reason"] for t in payload["tasks"])


def test_score_text_output():
    result = CliRunner().invoke(score, ["sign(g)", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "aggregate score" in result.output and "quad_noisy" in result.output


@pytest.mark.parametrize("args", [["add(g,"], ["foo(g)"], ["g", "--suite", "nope"]])
def test_bad_input_exits_two_with_one_line(args):
    result = CliRunner().invoke(score, args)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_tasks_lists_sizes_and_steps():
    result = CliRunner().invoke(tasks, ["--suite", "heldout", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["tasks"]
    assert len(rows) == len(get_suite("heldout"))
    assert all(r["params"] > 0 and r["steps"] > 0 for r in rows)
    text = CliRunner().invoke(tasks, [])
    assert text.exit_code == 0 and "mlp_digits" in text.output and "P=" in text.output
    assert CliRunner().invoke(tasks, ["--suite", "nope"]).exit_code == 2


@pytest.mark.slow
def test_bench_quick_prints_finite_figures(tmp_path):
    # shares the baseline cache of the other tests (it is keyed by each task's config)
    out = subprocess.run([sys.executable, "scripts/bench_fitness.py", "--quick", "--json",
                          "--suite", "search1"],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("speedup_vs_torch", "quadratic_evals_per_s_core", "cache_hit_rate",
                "hurdle_saving", "two_process_scaling"):
        assert math.isfinite(figures[key]), key
