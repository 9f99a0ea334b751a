"""`evolve validate`: optimizers trained on CIFAR-10 (or the digits fallback) with one fixed recipe.

For each optimizer: the learning-rate search of :mod:`fitness.lr_grid` with seed 0 (the same
search every tier and the benchmark give every optimizer: decades, extended while the best sits
at an edge, then a third of a decade either side; or one explicit grid), chosen on a validation
split held out of the training images, then the best rate with every seed; the report gives mean ± std test
accuracy, time per run and curves through :mod:`evolve.bench.report`, like the benchmark.
:func:`validate_rules` is the entry point a campaign calls for its top-k rules.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from evolve.bench.optimizers import OptimizerSpec, resolve_specs, split_rules
from evolve.bench.report import METHOD_SWEEP_THEN_SEEDS, cpu_name, pick_winner, summarize
from evolve.errors import UserError
from fitness import lr_grid
from fitness.training.cifar import CifarError, ImageData, digits_images, load_cifar10
from fitness.training.image_train import Recipe, train_images
from fitness.training.torch_tasks import RunResult, torch_threads

DATASETS = ("cifar10", "digits")
VAL_FRACTION = 0.1

# Per-dataset defaults for settings the user leaves out: CIFAR-10 as airbench (GPU-sized);
# digits small enough for a laptop CPU.
DEFAULTS = {
    "cifar10": dict(epochs=8, batch_size=512, width=64),
    "digits": dict(epochs=12, batch_size=64, width=16),
}

Progress = Callable[[str], None]


def load_dataset(dataset: str, data_dir: str | None = None) -> ImageData:
    """The image set by name; a missing or corrupt CIFAR-10 folder is a one-line UserError."""
    if dataset == "digits":
        return digits_images()
    if dataset == "cifar10":
        try:
            return load_cifar10(data_dir)
        except CifarError as err:
            raise UserError(str(err)) from None
    raise UserError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def split_indices(n: int, subset: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices into the training images: an optional random subset of
    ``subset`` images, of which VAL_FRACTION is held out for choosing the learning rate."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    if subset is not None:
        order = order[:subset]
    n_val = max(1, int(round(len(order) * VAL_FRACTION)))
    return order[n_val:], order[:n_val]


def subset_test(data: ImageData, n: int | None) -> ImageData:
    """Keep the first n test images (the official test batch is in random order)."""
    if n is None or n >= len(data.x_test):
        return data
    return replace(data, x_test=data.x_test[:n], y_test=data.y_test[:n])


def validate_rules(
    rules: Sequence[str] | str,
    *,
    dataset: str = "cifar10",
    data_dir: str | None = None,
    baselines: Sequence[str] = (),
    epochs: int | None = None,
    subset: int | None = None,
    test_subset: int | None = None,
    seeds: int = 3,
    lrs: Sequence[float] | None = None,
    width: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    compile: bool = False,
    weight_decay: float | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> dict:
    """Validate optimizers on an image set and return the results dict of :mod:`evolve.bench.report`.

    ``rules`` are --rules entries (rule text, known names, ``RUN:best``, baselines) as a list or
    one comma-separated string; ``baselines`` are prepended (e.g. ``("adam", "lion")`` when a
    campaign validates its top-k rules). ``threads`` sets torch's intra-op threads for the
    runs (default: 1 for digits, whose convs are too small to share, else torch's setting).
    Raises UserError for bad input or a missing dataset.
    """
    entries = [*baselines, *(split_rules(rules) if isinstance(rules, str) else rules)]
    specs = resolve_specs(entries)
    if seeds < 1:
        raise UserError("--seeds must be at least 1")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device; use --device cpu")
    defaults = DEFAULTS.get(dataset, DEFAULTS["cifar10"])
    recipe = Recipe(
        epochs=epochs or defaults["epochs"],
        batch_size=batch_size or defaults["batch_size"],
        width=width or defaults["width"],
        weight_decay=weight_decay,
        device=device,
        compile=compile,
    )
    data = subset_test(load_dataset(dataset, data_dir), test_subset)
    if subset is not None and subset < 20:
        raise UserError("--subset must be at least 20 images")
    train_idx, val_idx = split_indices(len(data.x_train), subset)
    lrs = list(lrs) if lrs else None
    if threads is None and dataset == "digits":
        threads = 1
    with torch_threads(threads):
        results = run_validation(specs, data, recipe, lrs, seeds, train_idx, val_idx, progress)
    results["config"].update(dataset=dataset, subset=subset or len(data.x_train),
                             test_images=len(data.x_test))
    return results


def run_validation(specs: Sequence[OptimizerSpec], data: ImageData, recipe: Recipe,
                   lrs: Sequence[float] | None, seeds: int, train_idx: torch.Tensor,
                   val_idx: torch.Tensor, progress: Progress | None = None) -> dict:
    """Search (or sweep ``lrs``) each optimizer's learning rate with seed 0, then run its best
    rate on every seed."""
    per_opt: dict[str, dict] = {}
    for spec in specs:
        def make(params, lr, total_steps, spec=spec):
            return spec.make(params, lr, recipe.weight_decay, total_steps)

        def run(lr: float, seed: int, spec=spec, make=make) -> RunResult:
            result = train_images(data, make, lr, seed, recipe, train_idx, val_idx,
                                  scale_lr=not spec.schedule_free)
            if progress:
                shown = ("diverged: " + result.reason) if result.diverged else (
                    f"val loss {result.val_loss:.4f} test acc {result.test_acc:.4f}")
                progress(f"{data.name} {spec.label:20s} lr {lr:<8.3g} seed {seed} {shown} "
                         f"({result.seconds:.1f} s)")
            return result

        sweep: dict[float, list[RunResult]] = {}

        def seed_zero(rates: list[float], run=run, sweep=sweep) -> list[float | None]:
            for lr in rates:
                sweep[lr] = [run(lr, 0)]
            return [None if sweep[lr][0].diverged else sweep[lr][0].val_loss for lr in rates]

        if lrs:
            seed_zero(list(lrs))
        else:
            lr_grid.search(seed_zero, lr_grid.DEFAULT)
        sweep = dict(sorted(sweep.items()))
        summary = summarize(sweep)
        if not summary["diverged"] and seeds > 1:
            best = summary["best_lr"]
            final = sweep[best] + [run(best, seed) for seed in range(1, seeds)]
            summary = summarize(sweep, final)
        per_opt[spec.label] = summary
    checks = data.checks
    note = ""
    if checks.get("md5_mismatch"):
        note = ("md5 differs from the official CIFAR-10 files for "
                + ", ".join(checks["md5_mismatch"]) + " (not the official data?)")
    return {
        "kind": "validate",
        "title": f"Validation on {data.name}: evolved rules against torch optimizers",
        "method": METHOD_SWEEP_THEN_SEEDS,
        "config": {"epochs": recipe.epochs, "batch_size": recipe.batch_size,
                   "width": recipe.width, "seeds": seeds,
                   "lrs": (",".join(f"{lr:g}" for lr in lrs) if lrs else "lr search " + ", ".join(
                       f"{k}={v}" for k, v in lr_grid.DEFAULT.to_dict().items())),
                   "device": recipe.device,
                   "compile": recipe.compile, "torch": torch.__version__, "cpu": cpu_name(),
                   "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()},
        "optimizers": [s.to_json() for s in specs],
        "tasks": {data.name: {
            "description": (f"SmallResNet width {recipe.width} ({recipe.epochs} epochs, "
                            f"{len(train_idx)} train / {len(val_idx)} val / "
                            f"{len(data.x_test)} test images); lr swept with seed 0, "
                            f"best lr rerun on {seeds} seeds"),
            "lrs": sorted({r["lr"] for o in per_opt.values() for r in o["sweep"]}),
            "results": per_opt, "winner": pick_winner(per_opt)}},
        "data_checks": checks,
        "note": note,
        "proxy": None,
    }


__all__ = ["DATASETS", "DEFAULTS", "load_dataset", "run_validation",
           "split_indices", "subset_test", "validate_rules"]
