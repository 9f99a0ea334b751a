"""Resampling a benchmark's seeds: the rate chosen again per draw, exact draws, subsets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evolve.bench.benchmark import versus_reference
from evolve.bench.report import markdown, summarize
from evolve.bench.uncertainty import rate_choice_cost, ratios_on, resample, run_seeds, subsets
from evolve.errors import UserError
from fitness.training.torch_tasks import RunResult


def _runs(lr: float, vals: list[float | None], tests: list[float]) -> list[RunResult]:
    return [RunResult(lr=lr, seed=seed, diverged=val is None,
                      val_loss=math.inf if val is None else val, test_loss=test,
                      test_acc=None, curve=[(1, 1.0), (2, test)])
            for seed, (val, test) in enumerate(zip(vals, tests))]


def _results(x_fast_vals: list[float | None]) -> dict:
    """One task, adam (test loss 1 at its best rate on every seed) and x, whose best rate
    depends on the seeds: at 0.01 seed 0 validates far better than seeds 1 and 2 (test 0.6), at
    0.1 every seed validates at 0.72 (test 0.9)."""
    sweeps = {
        "adam": {0.01: _runs(0.01, [1.0] * 3, [1.0] * 3),
                 0.1: _runs(0.1, [2.0] * 3, [3.0] * 3)},
        "x": {0.01: _runs(0.01, [0.5, 0.95, 0.9], [0.6] * 3),
              0.1: _runs(0.1, x_fast_vals, [0.9] * 3)},
    }
    results = {"optimizers": [{"label": "adam", "kind": "torch", "source": "torch.optim.Adam"},
                              {"label": "x", "kind": "torch", "source": "a test"}],
               "tasks": {"t": {"results": {lab: summarize(s) for lab, s in sweeps.items()}}}}
    results["summary"] = versus_reference(results)
    return results


def test_all_seeds_give_the_runs_own_figures_and_draws_choose_the_rate_again():
    results = _results([0.72] * 3)
    assert run_seeds(results) == [0, 1, 2]
    # on all seeds 0.01 validates at 0.783 > 0.72: the rate 0.1, test 0.9, as the run said
    summary = results["summary"]["optimizers"]
    assert ratios_on(results, [0, 1, 2])["x"] == pytest.approx(summary["x"]["loss_ratio"],
                                                               rel=1e-12)
    assert summary["x"]["loss_ratio"] == pytest.approx(0.9, rel=1e-6)
    # seed 0 twice and seed 1: 0.01 validates at 0.65 < 0.72, so that rate, test 0.6
    assert ratios_on(results, [0, 0, 1])["x"] == pytest.approx(0.6, rel=1e-6)
    assert ratios_on(results, [0, 1, 1])["x"] == pytest.approx(0.9, rel=1e-6)


def test_the_bootstrap_enumerates_every_draw_of_three_seeds():
    out = resample(_results([0.72] * 3))
    assert out["exact"] and out["draws"] == 27 and out["seeds"] == 3
    x = out["optimizers"]["x"]
    # 0.01 wins a draw when 0.5a + 0.95b + 0.9c < 2.16 for a, b, c draws of seeds 0, 1, 2:
    # (3,0,0), (2,1,0), (2,0,1): 1 + 3 + 3 = 7 of the 27 ordered draws
    low_share = 7 / 27
    assert x["median"] == pytest.approx(0.9, rel=1e-6)
    assert x["low"] == pytest.approx(0.6, rel=1e-6) and x["high"] == pytest.approx(0.9, rel=1e-6)
    p = low_share
    assert x["ln_std"] == pytest.approx(math.sqrt(p * (1 - p)) * math.log(0.9 / 0.6), rel=1e-6)
    assert x["first"] == 1.0 and x["ahead"]["adam"] == 1.0
    assert out["optimizers"]["adam"]["first"] == 0.0


def test_a_rate_where_a_drawn_seed_diverged_does_not_count_in_that_draw():
    results = _results([0.72, 0.72, None])
    # seed 2 diverged at 0.1: the run itself cannot use 0.1, so 0.01 (test 0.6)
    assert results["summary"]["optimizers"]["x"]["loss_ratio"] == pytest.approx(0.6, rel=1e-6)
    # without seed 2 in the draw 0.1 counts again and validates better than 0.01 on seeds 1, 1
    assert ratios_on(results, [1, 1, 0])["x"] == pytest.approx(0.9, rel=1e-6)
    assert ratios_on(results, [1, 1, 2])["x"] == pytest.approx(0.6, rel=1e-6)


def test_subsets_give_each_k_seed_figure():
    out = subsets(_results([0.72] * 3), 2)
    assert out["draws"] == 3 and out["k"] == 2
    # (0,1): 0.725 > 0.72 -> 0.9; (0,2): 0.70 -> 0.6; (1,2): 0.925 -> 0.9
    x = out["optimizers"]["x"]
    assert x["median"] == pytest.approx(0.9, rel=1e-6)
    assert x["ln_std"] == pytest.approx(np.std(np.log([0.9, 0.6, 0.9])), rel=1e-6)
    with pytest.raises(UserError, match="1 <= k < 3"):
        subsets(_results([0.72] * 3), 3)


def test_results_without_per_seed_losses_are_a_usage_error():
    results = _results([0.72] * 3)
    for summary in results["tasks"]["t"]["results"].values():
        for row in summary["sweep"]:
            del row["val_losses"]
    with pytest.raises(UserError, match="older evolve benchmark"):
        resample(results)
    with pytest.raises(UserError, match="reference 'sgd'"):
        resample(_results([0.72] * 3), reference="sgd")


def test_the_summary_table_shows_the_interval_and_first_places():
    results = _results([0.72] * 3)
    results["uncertainty"] = resample(results)
    text = markdown(results)
    assert "| x | 0.900 | 0.600 – 0.900 | 100% | 1/1 | 0 |" in text
    assert "| adam | 1.000 | — | 0% | 0/1 | 0 |" in text
    assert "every possible draw, 27 in all" in text
    assert "x is ahead of adam in 100% of the draws" in text


def test_benchmark_repeats_subsets_reads_one_run(tmp_path, capsys):
    from scripts.benchmark_repeats import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "benchmark.json").write_text(json.dumps(_results([0.72] * 3)))
    assert main([str(tmp_path / "run"), "--subsets", "2"]) == 0
    text = capsys.readouterr().out
    assert "| x | **0.900** | 0.900 |" in text and "over the 3 subsets of 2 seeds" in text
    # the subsets' ratios of x are 0.9, 0.6, 0.9: at most 0.7 and ahead of adam in one of three
    assert main([str(tmp_path / "run"), "--subsets", "2", "--bar", "0.7", "--baselines",
                 "adam", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bar"]["held"] == {"x": pytest.approx(1 / 3)}
    assert result["ratios"]["x"] == pytest.approx([0.9, 0.6, 0.9], rel=1e-6)
    for argv in ([str(tmp_path / "run"), str(tmp_path / "run"), "--subsets", "2"],
                 [str(tmp_path / "run"), "--subsets", "5"],
                 [str(tmp_path / "run"), "--subsets", "2", "--bar", "0.9"],
                 [str(tmp_path / "run"), "--bar", "0.9", "--baselines", "adam"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


def test_rate_choice_cost_is_the_test_loss_validation_gave_up():
    results = _results([0.72] * 3)
    cost = rate_choice_cost(results)["tasks"]["t"]
    # adam: validation and test both prefer 0.01; x: validation prefers 0.1 (0.72 < 0.783),
    # whose test loss 0.9 is 1.5x the 0.6 of 0.01
    assert cost["optimizers"]["adam"] == 1.0
    assert cost["optimizers"]["x"] == pytest.approx(1.5, rel=1e-6)
    assert cost["geomean"] == pytest.approx(math.sqrt(1.5), rel=1e-6) and cost["max"] == 1.5
    # a cost beyond the clip counts as the clip, as a task's ratio does in the benchmark
    assert rate_choice_cost(results, clip=1.2)["tasks"]["t"]["optimizers"]["x"] == 1.2
    # seed 2 diverged at 0.1: validation can only choose 0.01, which test prefers too
    assert rate_choice_cost(_results([0.72, 0.72, None]))["geomean"] == 1.0


def test_benchmark_repeats_rate_cost_compares_runs(tmp_path, capsys):
    from scripts.benchmark_repeats import main

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "benchmark.json").write_text(json.dumps(_results([0.72] * 3)))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "benchmark.json").write_text(json.dumps(_results([0.8] * 3)))
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--rate-cost"]) == 0
    text = capsys.readouterr().out
    # in b, 0.1 validates at 0.8 > 0.783: validation chooses 0.01 as test would
    assert "| t | 1.225 | 1.500 | 1.000 | 1.000 |" in text
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "a"), "--rate-cost", "--subsets", "2"])
    assert exit_info.value.code == 2


def test_benchmark_repeats_combines_runs_whose_reference_trained_alike(tmp_path, capsys):
    """New rules benchmarked alone beside an earlier run's baselines: the reference (Adam)
    trained to the same losses in both, so the two read as one; a label the first run has with
    other results is left out and said so; runs whose reference differs cannot combine."""
    import copy

    from scripts.benchmark_repeats import main

    first = _results([0.72] * 3)  # adam and x
    second = _results([0.5] * 3)  # adam as in the first; x with other results
    second["optimizers"].append({"label": "y", "kind": "torch", "source": "a test"})
    second["tasks"]["t"]["results"]["y"] = copy.deepcopy(first["tasks"]["t"]["results"]["x"])
    other = _results([0.72] * 3)
    other["tasks"]["t"]["results"]["adam"]["sweep"][0]["test_losses"] = [1.0, 1.0, 1.1]
    for name, run in (("a", first), ("b", second), ("c", other)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps(run))
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--subsets", "2", "--combine",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["optimizers"]) == {"adam", "x", "y"}
    # y is x of the first run under another name: the same figures on every subset
    assert result["ratios"]["y"] == result["ratios"]["x"]
    assert result["ratios"]["x"] == pytest.approx([0.9, 0.6, 0.9], rel=1e-6)
    assert result["combined"][1]["labels"] == ["y"] and result["combined"][1]["left_out"] == ["x"]
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--subsets", "2", "--combine"]) == 0
    assert "left out, as another result of a label above: x" in capsys.readouterr().out
    for argv in ([str(tmp_path / "a"), str(tmp_path / "c"), "--subsets", "2", "--combine"],
                 [str(tmp_path / "a"), str(tmp_path / "b"), "--combine"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "did not train to the same losses on t" in capsys.readouterr().err
