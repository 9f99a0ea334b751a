"""Benchmark: --rules parsing, optimizer specs, divergence handling, reports and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from evolve.bench.benchmark import BenchmarkConfig, run_benchmark
from evolve.bench.lion import Lion
from evolve.bench.optimizers import log_grid, parse_lrs, resolve_specs, split_rules
from evolve.bench.report import markdown, summarize
from evolve.cli.bench import benchmark
from evolve.errors import UserError
from fitness.training.torch_tasks import RunResult, make_tasks, train_task
from primitives.rules import KNOWN_RULES


def test_split_rules_splits_only_at_top_level_commas():
    text = "adam, sign(interp(ema(g, 0.99), g, 0.1)) ,RUN:best,lion"
    assert split_rules(text) == ["adam", "sign(interp(ema(g, 0.99), g, 0.1))", "RUN:best", "lion"]
    with pytest.raises(UserError, match="unbalanced"):
        split_rules("adam,sign(g")
    with pytest.raises(UserError, match="empty"):
        split_rules(" , ")


def test_names_map_to_torch_baselines_and_the_rest_to_exported_rules(tmp_path):
    run = tmp_path / "run7"
    run.mkdir()
    (run / "hall_of_fame.json").write_text(json.dumps(
        [{"rule": "sign(ema(g, 0.9))", "score": 1.2}, {"rule": "g", "score": 0.5}]))
    specs = resolve_specs(f"adam,adamw,sgd,momentum,nesterov,lion,rule:adam,rmsprop,"
                          f"{run}:best,{run}:2,mul(g, 2.0)")
    kinds = {s.label: s.kind for s in specs}
    assert [k for k in kinds.values()][:6] == ["torch"] * 6
    assert kinds["sgd_momentum"] == "torch"
    assert kinds["adam (rule)"] == "rule" and kinds["rmsprop"] == "rule"
    by_label = {s.label: s for s in specs}
    # a run's rule is labelled as it was given, so runs/a:best and runs/b:best stay apart
    assert by_label[f"{run}:best"].rule == "sign(ema(g, 0.9))"
    assert by_label[f"{run}:2"].rule == "g"
    assert by_label["mul(g, 2.0)"].rule == "mul(g, 2.0)"
    assert by_label["adam (rule)"].rule == KNOWN_RULES["adam"].rule
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(by_label["lion"].make(params, 1e-3), Lion)
    assert isinstance(by_label["nesterov"].make(params, 1e-3), torch.optim.SGD)
    assert type(by_label["mul(g, 2.0)"].make(params, 1e-3)).__name__ == "EvolvedRule"


@pytest.mark.parametrize("entry,match", [
    ("nosuchname", "neither a known name nor a rule"),
    ("sign(g", "unbalanced"),
    ("adam,adam", "twice"),
    ("rule:nosuch", "unknown rule name"),
    ("/nonexistent/run:best", "does not exist"),
    ("x:0", "RUN:best, RUN:search, RUN:heldout or RUN:N"),
    ("adam,momentum,sgd_momentum", "'momentum' and 'sgd_momentum' are the same optimizer"),
])
def test_bad_rules_are_user_errors(entry, match):
    with pytest.raises(UserError, match=match):
        resolve_specs(entry)


def test_lr_grid_and_parsing():
    assert log_grid(1e-4, 1.0, 2) == [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1, 0.316, 1.0]
    assert parse_lrs("1e-2, 1e-3") == [1e-3, 1e-2]
    for bad in ("abc", "-1", "0", "inf"):
        with pytest.raises(UserError):
            parse_lrs(bad)


def test_lion_matches_algorithm_2_by_hand():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    w0 = w.detach().clone()
    m = torch.zeros(5)
    opt = Lion([w], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    for _ in range(3):
        g = torch.randn(5)
        w.grad = g.clone()
        opt.step()
        c = 0.9 * m + 0.1 * g
        w0 = w0 - 0.1 * (torch.sign(c) + 0.5 * w0)
        m = 0.99 * m + 0.01 * g
        assert torch.allclose(w.detach(), w0, atol=1e-6)


def test_exported_lion_rule_matches_torch_lion_on_a_task():
    task = make_tasks(quick=True)["cancer_logreg"]
    specs = {s.label: s for s in resolve_specs("lion,rule:lion")}
    runs = [train_task(task, lambda p, lr, T, s=s: s.make(p, lr, None, T), 0.01, 0, steps=20)
            for s in specs.values()]
    assert math.isclose(runs[0].test_loss, runs[1].test_loss, rel_tol=1e-4)


def test_a_diverging_rule_is_a_result_not_a_crash():
    task = make_tasks(quick=True)["digits_mlp"]
    spec = resolve_specs("exp(mul(g, 1000.0))")[0]
    run = train_task(task, lambda p, lr, T: spec.make(p, lr, None, T), 1.0, 0, steps=30)
    assert run.diverged and run.reason
    summary = summarize({1.0: [run]})
    assert summary["diverged"] and summary["best_lr"] is None
    results = {"tasks": {"t": {"results": {"bad": summary}, "winner": None}},
               "optimizers": [spec.to_json()]}
    assert "| bad | — | diverged |" in markdown(results)


def test_summary_picks_the_lr_with_lowest_validation_loss_and_skips_diverged():
    def run(lr, val, seed=0, diverged=False):
        return RunResult(lr=lr, seed=seed, diverged=diverged, val_loss=val, test_loss=val,
                         test_acc=1 - val, curve=[(1, 1.0), (2, val)])
    sweep = {0.1: [run(0.1, 0.2), run(0.1, math.inf, 1, True)],
             0.01: [run(0.01, 0.4), run(0.01, 0.5, 1)],
             0.001: [run(0.001, 0.9), run(0.001, 0.8, 1)]}
    s = summarize(sweep)
    assert s["best_lr"] == 0.01
    assert s["test_loss_mean"] == pytest.approx(0.45)
    assert s["sweep"][2]["n_diverged"] == 1 and s["sweep"][2]["val_loss"] is None


def test_run_benchmark_on_one_tiny_task_gives_a_winner_and_proxy_scores():
    specs = resolve_specs("adam,sgd,mul(g, 1e9)")
    config = BenchmarkConfig(tasks=["cancer_logreg"], seeds=2, lrs=[1e-2, 1e-1], quick=True)
    results = run_benchmark(specs, config)
    task = results["tasks"]["cancer_logreg"]
    assert task["winner"] in ("adam", "sgd")
    assert task["results"][specs[2].label]["diverged"]
    assert task["results"]["adam"]["test_acc_mean"] > 0.8
    scores = results["proxy"]["scores"]
    assert scores["adam"]["score"] == pytest.approx(1.0)
    assert set(scores) == {"adam", "sgd", specs[2].label}
    # the seeds kept per rate give the summary again, and every draw of them (2^2)
    from evolve.bench.uncertainty import ratios_on

    again = ratios_on(results, [0, 1])
    for label, row in results["summary"]["optimizers"].items():
        assert again[label] == pytest.approx(row["loss_ratio"], rel=1e-12)
    assert results["uncertainty"]["draws"] == 4 and results["uncertainty"]["exact"]


def test_benchmark_cli_writes_markdown_json_and_plots(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(benchmark, [
        "--rules", "adam,lion,sign(ema(g, 0.9))", "--tasks", "cancer_logreg,digits_mlp",
        "--seeds", "1", "--lrs", "1e-2,1e-1", "--quick", "--no-proxy", "--json", "--quiet",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["tasks"]) == {"cancer_logreg", "digits_mlp"}
    assert "torch kernels" in data["config"]["cpu"]  # figures from two CPUs can differ
    assert json.loads((out / "benchmark.json").read_text()) == data
    md = (out / "benchmark.md").read_text()
    assert "## digits_mlp" in md and "★" in md and "`sign(ema(g, 0.9))`" in md
    for png in ("benchmark_curves.png", "benchmark_lr.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workers_give_the_numbers_of_one_process():
    specs = resolve_specs("adam,sign(ema(g, 0.9))")
    config = BenchmarkConfig(tasks=["cancer_logreg", "digits_mlp"], seeds=1, lrs=[1e-2, 1e-1],
                             quick=True, proxy=False)
    one = run_benchmark(specs, config)
    two = run_benchmark(specs, replace(config, workers=2))
    assert list(two["tasks"]) == list(one["tasks"])  # the table keeps the order given
    for name, task in one["tasks"].items():
        assert list(two["tasks"][name]["results"]) == list(task["results"])
        for label, cell in task["results"].items():
            other = two["tasks"][name]["results"][label]
            # the same library on both sides, one thread each: the same arithmetic
            assert other["best_lr"] == cell["best_lr"]
            assert other["test_loss_mean"] == pytest.approx(cell["test_loss_mean"], rel=1e-12)


def test_first_seed_picks_another_seed_set():
    specs = resolve_specs("adam")
    config = BenchmarkConfig(tasks=["cancer_logreg"], seeds=2, lrs=[1e-1], quick=True,
                             proxy=False)
    both = run_benchmark(specs, config)
    later = run_benchmark(specs, replace(config, seeds=1, first_seed=1))
    assert later["config"]["first_seed"] == 1
    runs = both["tasks"]["cancer_logreg"]["results"]["adam"]["runs"]
    (run,) = later["tasks"]["cancer_logreg"]["results"]["adam"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and run["seed"] == 1
    # seed 1 trains the same alone as second of two; seed 0 trains otherwise
    assert run["test_loss"] == pytest.approx(runs[1]["test_loss"], rel=1e-9)
    assert run["test_loss"] != pytest.approx(runs[0]["test_loss"], rel=1e-6)


@pytest.mark.parametrize("args,match", [
    (["--rules", "adam,frobnicate(g)"], "unknown name"),
    (["--tasks", "imagenet"], "unknown task"),
    (["--lrs", "fast"], "--lrs"),
    (["--seeds", "0"], "--seeds"),
    (["--workers", "0"], "--workers"),
    (["--first-seed", "-1"], "--first-seed"),
    (["--refine-around", "0"], "--refine-around"),
])
def test_benchmark_cli_bad_input_is_one_line_exit_2(tmp_path, args, match):
    result = CliRunner().invoke(benchmark, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert match in result.output and "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1


def test_bench_step_builds_resnet18_parameter_shapes():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_step.py"
    spec = importlib.util.spec_from_file_location("bench_step", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shapes = module.resnet18_shapes()
    # torchvision.models.resnet18(): 11,689,512 parameters in 62 tensors
    assert sum(math.prod(s) for s in shapes) == 11_689_512
    assert len(shapes) == 62


def test_the_summary_compares_every_optimizer_with_tuned_adam_over_all_tasks():
    specs = resolve_specs("adam,sgd")
    config = BenchmarkConfig(tasks=["cancer_logreg", "friedman_mlp"], seeds=1, quick=True,
                             proxy=False)
    results = run_benchmark(specs, config)  # no --lrs: the (quick) lr search
    for task in results["tasks"].values():
        tried = {row["lr"] for row in task["results"]["adam"]["sweep"]}
        assert {1e-3, 1e-2, 1e-1} <= tried
    assert results["tasks"]["friedman_mlp"]["results"]["adam"]["test_acc_mean"] is None
    summary = results["summary"]["optimizers"]
    assert summary["adam"]["loss_ratio"] == pytest.approx(1.0)
    assert summary["adam"]["tasks_better"] == 0
    ratios = [min(max(t["results"]["sgd"]["test_loss_mean"] / t["results"]["adam"]["test_loss_mean"],
                      0.5), 2.0) for t in results["tasks"].values()]
    assert summary["sgd"]["loss_ratio"] == pytest.approx(math.prod(ratios) ** 0.5, rel=1e-6)
    text = markdown(results)
    assert "## Against tuned adam" in text and "| adam | 1.000 | 0/2 | 0 |" in text


def test_modern_baselines_muon_takes_hidden_matrices_and_schedule_free_runs_constant():
    from evolve.bench.benchmark import spec_schedule
    from evolve.bench.modern import MuonWithAdamW

    specs = {s.label: s for s in resolve_specs("schedulefree,muon,adam")}
    assert spec_schedule(specs["schedulefree"], "cosine") == "constant"
    assert spec_schedule(specs["muon"], "cosine") == "cosine"
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8),
                              torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = specs["muon"].make(net.parameters(), 0.01, None, 10)
    assert isinstance(opt, MuonWithAdamW)
    muon_params = [p for g in opt.muon.param_groups for p in g["params"]]
    assert len(muon_params) == 1 and muon_params[0] is net[2].weight
    assert len(opt.param_groups) == 2  # a schedule reaches both halves
    task = make_tasks(quick=True)["digits_mlp"]
    for label in ("schedulefree", "muon"):
        run = train_task(task, lambda p, lr, t, s=specs[label]: s.make(p, lr, None, t), 0.01, 0,
                         steps=30)
        assert not run.diverged and run.test_loss < 2.3, label


def _bench_results(first_seed: int, losses: dict[str, dict[str, float]]) -> dict:
    """A benchmark results dict with the given test losses per task and optimizer."""
    labels = list(next(iter(losses.values())))
    return {"config": {"seeds": 3, "first_seed": first_seed},
            "optimizers": [{"label": lab} for lab in labels],
            "tasks": {t: {"results": {lab: {"test_loss_mean": v, "diverged": False}
                                      for lab, v in row.items()}} for t, row in losses.items()}}


def test_benchmark_repeats_separates_the_seeds_noise_from_the_optimizers_spread(tmp_path):
    from scripts.benchmark_repeats import analyse, main

    a = _bench_results(0, {"t1": {"adam": 1.0, "x": 0.8, "y": 1.0},
                           "t2": {"adam": 2.0, "x": 1.6, "y": 1.0}})
    b = _bench_results(3, {"t1": {"adam": 1.0, "x": 0.9, "y": 1.0},
                           "t2": {"adam": 2.0, "x": 1.8, "y": 1.0}})
    result = analyse([a, b])
    x = result["optimizers"]["x"]
    assert x["loss_ratios"] == pytest.approx([0.8, 0.9], rel=1e-6)  # the gap's epsilon
    assert x["loss_ratio"] == pytest.approx(math.sqrt(0.8 * 0.9), rel=1e-6)
    assert x["log_ratio_std"] == pytest.approx(abs(math.log(0.9 / 0.8)) / math.sqrt(2), rel=1e-6)
    # y is 2x better than adam on t2 in both runs (the clip's edge) and equal on t1
    assert result["optimizers"]["y"]["loss_ratios"] == pytest.approx([2 ** -0.5] * 2, rel=1e-6)
    assert result["optimizers"]["y"]["log_ratio_std"] == 0.0
    # t1: x moves by log(9/8) between the runs, y not at all; the seeds' noise is their mean
    assert result["tasks"]["t1"]["noise"] == pytest.approx(math.log(9 / 8) / math.sqrt(2) / 2,
                                                          rel=1e-6)
    assert "adam" not in result["optimizers"] and result["seeds"] == [(0, 3), (3, 3)]
    paths = []
    for name, run in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps(run))
        paths.append(str(tmp_path / name))
    assert main(paths) == 0
    with pytest.raises(SystemExit) as exit_info:  # one run cannot show a spread
        main(paths[:1])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # a folder without results: a usage error
        main([paths[0], str(tmp_path / "missing")])
    assert exit_info.value.code == 2


def test_ensemble_replay_retrains_a_benchmark_rule_as_the_fidelity_stages_do(tmp_path, capsys):
    """The benchmark's module-at-a-time training and the fidelity stages' ensemble differ only
    in the order of float sums: on a short convex task at small rates they agree to rounding
    (rtol 1e-4), and both choose a rate from their own validation losses."""
    from scripts.ensemble_replay import main, replay

    out = tmp_path / "bench"
    result = CliRunner().invoke(benchmark, [
        "--rules", "adam,sign(ema(g, 0.9))", "--tasks", "cancer_logreg", "--seeds", "2",
        "--lrs", "1e-3,1e-2", "--quick", "--no-proxy", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    replayed = replay(json.loads((out / "benchmark.json").read_text()), None, None)
    assert replayed["rule"] == "sign(ema(g, 0.9))"
    task = replayed["tasks"]["cancer_logreg"]
    assert [r["lr"] for r in task["rates"]] == pytest.approx([1e-3, 1e-2])
    for row in task["rates"]:
        assert row["ensemble_test"] == pytest.approx(row["module_test"], rel=1e-4)
        assert row["max_rel_val"] < 1e-4 and row["max_rel_test"] < 1e-4
    assert task["chosen"]["module"] == task["chosen"]["ensemble"]
    assert main([str(out)]) == 0
    assert "| cancer_logreg | 0.001 |" in capsys.readouterr().out
    for argv, says in (([str(out), "--optimizer", "adam"], "no rule labelled 'adam'"),
                       ([str(out), "--tasks", "seq_gru"], "seq_gru not in the run"),
                       ([str(tmp_path / "nowhere")], "cannot read a benchmark")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
