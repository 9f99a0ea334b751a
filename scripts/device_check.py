"""Times full CIFAR-shaped trainings per optimizer on a GPU: images/s and the step's share of time.

For a machine with a GPU, no internet and no CIFAR-10: random uint8 images are written in the
exact CIFAR-10 python format to a temp folder (50,000 train / 10,000 test), read back through the
safe loader, and the validate recipe (SmallResNet width 64, batch 512, bf16 autocast and
channels_last on CUDA) trains 8 epochs with each optimizer: torch Adam, SGD (momentum 0.9,
nesterov), evolve.bench.lion.Lion, and the exported classes of the adam and lion rules (the same code
`evolve export` writes). A short warm-up run comes first. Printed per optimizer: seconds,
images/s, the share of time inside optimizer.step() (CUDA synchronised around it) and test
accuracy (random images: about chance, plus the class-dependent colour shift the writer adds).

SIZE=tiny (or --size tiny: 256 images, width 8, 4 epochs) runs on a CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.bench.optimizers import resolve_spec  # noqa: E402
from fitness.training.cifar import load_cifar10, write_cifar_format  # noqa: E402
from fitness.training.image_train import Recipe, train_images  # noqa: E402

SIZES = {
    # train, test, width, epochs, batch
    "full": dict(n_train=50_000, n_test=10_000, width=64, epochs=8, batch_size=512),
    "tiny": dict(n_train=256, n_test=64, width=8, epochs=4, batch_size=64),
}
# One representative learning rate per optimizer: this check times, it does not tune.
OPTIMIZERS = (("adam", 2e-3), ("nesterov", 0.05), ("lion", 2e-4), ("rule:adam", 2e-3),
              ("rule:lion", 2e-4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=os.environ.get("SIZE", "full"), choices=sorted(SIZES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json-out", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    device = torch.device(args.device)
    if args.size == "tiny" and device.type == "cpu":
        torch.set_num_threads(1)  # tiny convs: threads only add spin-waits on a small CPU
    started = time.perf_counter()
    print(f"device check: size {args.size}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", torch {torch.__version__}, {torch.get_num_threads()} CPU threads", flush=True)

    with tempfile.TemporaryDirectory(prefix="cifar-synthetic-") as tmp:
        t0 = time.perf_counter()
        write_cifar_format(tmp, n_train=size["n_train"], n_test=size["n_test"], seed=0)
        data = load_cifar10(tmp)
        print(f"wrote and loaded {size['n_train']} + {size['n_test']} synthetic CIFAR-format "
              f"images in {time.perf_counter() - t0:.1f} s (md5 official: "
              f"{data.checks['official']})", flush=True)

    recipe = Recipe(epochs=size["epochs"], batch_size=size["batch_size"], width=size["width"],
                    device=str(device), compile=args.compile, profile_step=True)
    # warm-up: kernels, cuDNN autotuning, allocator (and compilation with --compile)
    warm_idx = torch.arange(min(len(data.x_train), 4 * size["batch_size"]))
    t0 = time.perf_counter()
    train_images(data, resolve_spec("adam").make, 1e-3, 0,
                 Recipe(**{**recipe.to_json(), "epochs": 1}), warm_idx)
    print(f"warm-up: {time.perf_counter() - t0:.1f} s", flush=True)

    rows = {}
    n_images = len(data.x_train) // size["batch_size"] * size["batch_size"] * size["epochs"]
    for entry, lr in OPTIMIZERS:
        spec = resolve_spec(entry)

        def make(params, lr, total_steps, spec=spec):
            return spec.make(params, lr, None, total_steps)

        run = train_images(data, make, lr, 0, recipe)
        rows[spec.label] = {
            "runs_as": "exported class" if spec.kind == "rule" else "torch",
            "lr": lr, "seconds": run.seconds, "images_per_s": n_images / run.seconds,
            "step_seconds": run.step_seconds, "step_share": run.step_seconds / run.seconds,
            "test_acc": run.test_acc, "diverged": run.diverged, "reason": run.reason}
        r = rows[spec.label]
        print(f"  {spec.label:14s} {r['runs_as']:15s} {r['seconds']:7.2f} s  "
              f"{r['images_per_s']:10.0f} img/s  step {r['step_share']:6.1%}  "
              f"test acc {r['test_acc']:.3f}" + ("  DIVERGED " + run.reason if run.diverged
                                                   else ""), flush=True)
    report = {"size": args.size, "device": str(device), "torch": torch.__version__,
              "recipe": recipe.to_json(), "n_train": len(data.x_train),
              "n_test": len(data.x_test), "results": rows,
              "total_seconds": time.perf_counter() - started}
    for base, twin in (("adam", "adam (rule)"), ("lion", "lion (rule)")):
        if base in rows and twin in rows:
            report[f"{twin} step time vs {base}"] = (rows[twin]["step_seconds"]
                                                     / rows[base]["step_seconds"])
            print(f"exported {base} rule: optimizer step time {report[f'{twin} step time vs {base}']:.2f}x "
                  f"torch {base}")
    print(f"total {report['total_seconds']:.1f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
