"""The `benchmark` and `validate` click commands (registered on the `evolve` group by evolve.cli).

Both write a Markdown table, the same results as JSON and PNG plots into ``--out``; ``--json``
also prints the JSON on stdout (progress goes to stderr). Bad input, a malformed rule or a
missing dataset is one line on stderr and exit code 2.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click

from evolve.bench.benchmark import BenchmarkConfig, run_benchmark
from evolve.bench.optimizers import parse_lrs, resolve_specs
from evolve.bench.report import to_json, write_report
from evolve.errors import UserError
from evolve.rundir import check_writable_folder
from fitness import lr_grid
from fitness.training.torch_tasks import SCHEDULES, TASK_NAMES

DEFAULT_RULES = "adam,adamw,sgd_momentum,nesterov,lion"
RULES_HELP = ("comma-separated optimizers: torch baselines (adam, adamw, sgd, sgd_momentum, "
              "nesterov, lion), a campaign's rule (RUN:best, RUN:search, RUN:heldout, RUN:N), "
              "rule:NAME or any other known rule name, or rule text such as 'sign(ema(g, 0.9))'")


def _steps(total: int, label: str, quiet: bool, estimate: bool = False):
    """A progress bar (plain lines when not a terminal) advanced by each progress line;
    ``estimate``: the total is a guess (see :class:`evolve.progress.Steps`)."""
    from evolve.progress import Steps

    return Steps(total, label, quiet=quiet, estimate=estimate)


def _finish(results: dict, out: str, stem: str, as_json: bool, started: float) -> None:
    paths = write_report(results, Path(out), stem)
    if as_json:
        click.echo(to_json(results))
    click.echo(f"wrote {paths['markdown']}, {paths['json']}, {paths['curves']}, "
               f"{paths['lr_sensitivity']} in {time.perf_counter() - started:.1f} s", err=True)
    for name, task in results["tasks"].items():
        winner = task.get("winner") or "none (every optimizer diverged)"
        click.echo(f"{name}: best {winner}", err=True)


def _seeds(value: int | None, default: int) -> int:
    seeds = default if value is None else value
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    return seeds


@click.command("benchmark")
@click.option("--rules", default=DEFAULT_RULES, show_default=True, help=RULES_HELP)
@click.option("--tasks", default=",".join(TASK_NAMES), show_default=True,
              help="comma-separated torch tasks")
@click.option("--seeds", type=int, default=None, help="seeds per learning rate [3; 2 with --quick]")
@click.option("--first-seed", type=int, default=0, show_default=True,
              help="the first seed: seeds FIRST..FIRST+seeds-1 (another set repeats the "
                   "benchmark on fresh initialisations and minibatches)")
@click.option("--lrs", default=None,
              help="comma-separated learning rates, one grid for every optimizer [default: the "
                   "lr search: decades 1e-4..1, a decade further while the best sits at an "
                   "edge, then a third of a decade either side of the best]")
@click.option("--refine-around", type=int, default=1, show_default=True,
              help="the search refines a third of a decade either side of this many of its "
                   "best rates; 2 also explores the runner-up's dip, where a validation curve "
                   "is flat over a decade")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True,
              help="learning-rate schedule for every optimizer (schedule-free ones run constant)")
@click.option("--quick", is_flag=True, help="small step budgets and search: a smoke test")
@click.option("--weight-decay", type=float, default=None,
              help="weight decay for every optimizer [each one's default: 0.01 for adamw, else 0]")
@click.option("--no-proxy", is_flag=True, help="skip the Numba proxy-suite scores")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch threads while training (the models are tiny; 1 is fastest)")
@click.option("--workers", type=int, default=1, show_default=True,
              help="processes, each training one (task, optimizer) pair at a time; the "
                   "numbers do not depend on it")
@click.option("--json", "as_json", is_flag=True, help="also print the results JSON on stdout")
@click.option("--quiet", is_flag=True, help="no progress lines on stderr")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="folder for benchmark.md, benchmark.json and the PNG plots")
def benchmark(rules: str, tasks: str, seeds: int | None, first_seed: int, lrs: str | None,
              refine_around: int, schedule: str, quick: bool, weight_decay: float | None,
              no_proxy: bool, threads: int, workers: int, as_json: bool, quiet: bool,
              out: str) -> None:
    """Benchmark optimizers and evolved rules on torch tasks with bundled real data."""
    started = time.perf_counter()
    if refine_around < 1:
        raise UserError("--refine-around must be at least 1")
    check_writable_folder(out, "--out")
    specs = resolve_specs(rules)
    task_names = [t.strip() for t in tasks.split(",") if t.strip()]
    config = BenchmarkConfig(tasks=task_names, seeds=_seeds(seeds, 2 if quick else 3),
                             first_seed=first_seed, lrs=parse_lrs(lrs) if lrs else None,
                             quick=quick, weight_decay=weight_decay, proxy=not no_proxy,
                             threads=threads if threads > 0 else None, schedule=schedule,
                             workers=workers,
                             search=replace(lr_grid.DEFAULT, refine_around=refine_around))
    # one step per (task, optimizer): its whole learning-rate search and seeds
    with _steps(len(task_names) * len(specs), "benchmark", quiet) as steps:
        results = run_benchmark(specs, config, progress=steps.line)
    _finish(results, out, "benchmark", as_json, started)


@click.command("validate")
@click.option("--rules", default="adam,sgd_momentum,lion", show_default=True, help=RULES_HELP)
@click.option("--dataset", type=click.Choice(["cifar10", "digits"]), default="cifar10",
              show_default=True, help="digits: scikit-learn's 8x8 digits, needs no files")
@click.option("--data-dir", default=None, type=click.Path(),
              help="folder holding cifar-10-batches-py/ (or that folder) [$CIFAR10_DIR]")
@click.option("--epochs", type=int, default=None, help="epochs per run [8 cifar10, 12 digits]")
@click.option("--subset", type=int, default=None,
              help="use N random training images (a tenth held out to choose the lr) [all]")
@click.option("--test-subset", type=int, default=None, help="use the first N test images [all]")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="seeds at each optimizer's best lr")
@click.option("--lrs", default=None,
              help="comma-separated learning rates, one grid for every optimizer [default: the "
                   "lr search of the benchmark, with seed 0]")
@click.option("--width", type=int, default=None,
              help="channels of the first conv group [64 cifar10, 16 digits]")
@click.option("--batch-size", type=int, default=None, help="[512 cifar10, 64 digits]")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (cuda:N)")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model")
@click.option("--weight-decay", type=float, default=None,
              help="weight decay for every optimizer [each one's default]")
@click.option("--threads", type=int, default=None,
              help="torch threads while training [1 for digits, else torch's default]")
@click.option("--json", "as_json", is_flag=True, help="also print the results JSON on stdout")
@click.option("--quiet", is_flag=True, help="no progress lines on stderr")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="folder for validate.md, validate.json and the PNG plots")
def validate(rules: str, dataset: str, data_dir: str | None, epochs: int | None,
             subset: int | None, test_subset: int | None, seeds: int, lrs: str | None,
             width: int | None, batch_size: int | None, device: str, use_compile: bool,
             weight_decay: float | None, threads: int | None, as_json: bool, quiet: bool,
             out: str) -> None:
    """Train a small ResNet on CIFAR-10 (or digits) with each optimizer; report test accuracy."""
    from evolve.bench.validate import validate_rules

    started = time.perf_counter()
    check_writable_folder(out, "--out")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    for name, value in (("--epochs", epochs), ("--width", width), ("--batch-size", batch_size),
                        ("--test-subset", test_subset)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be at least 1")

    entries = resolve_specs_entries(rules)
    grid = parse_lrs(lrs) if lrs else None
    # one step per training run: the lr sweep on seed 0, then the other seeds at the best lr;
    # the search's usual count is its decades and two refinements (it grows at an edge)
    sweep_runs = len(grid) if grid else len(lr_grid.log_grid(lr_grid.DEFAULT.low,
                                                            lr_grid.DEFAULT.high)) + 2
    with _steps(len(entries) * (sweep_runs + max(seeds, 1) - 1), "validate", quiet,
                estimate=grid is None) as steps:
        results = validate_rules(
            entries, dataset=dataset, data_dir=data_dir, epochs=epochs, subset=subset,
            test_subset=test_subset, seeds=seeds, lrs=grid, width=width,
            batch_size=batch_size, device=device, compile=use_compile,
            weight_decay=weight_decay, threads=threads if threads is None or threads > 0 else None,
            progress=steps.line)
    _finish(results, out, "validate", as_json, started)


def resolve_specs_entries(rules: str) -> list[str]:
    """Check --rules before any data is read, so a typo fails fast; returns the entries."""
    from evolve.bench.optimizers import split_rules

    entries = split_rules(rules)
    resolve_specs(entries)
    return entries


__all__ = ["benchmark", "validate"]
