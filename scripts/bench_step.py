"""Times optimizer.step() of exported rules against torch.optim.Adam(foreach=True) on ResNet-18.

The parameters have the shapes of torchvision's resnet18 (11,689,512 values, 62 tensors; built
by hand here, torchvision is not needed) with random gradients. Every optimizer is warmed up,
then timed in interleaved rounds (adam, candidate, adam, candidate...) so that both see the same
machine state; the figure is the median step time and its ratio to Adam's. Goal: exported rules
within 1.5x of Adam.

    python scripts/bench_step.py [--rules adam,lion,...] [--steps 10] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.bench.optimizers import resolve_spec  # noqa: E402


def resnet18_shapes(num_classes: int = 1000) -> list[tuple[int, ...]]:
    """Parameter shapes of torchvision.models.resnet18, in its named_parameters() order."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]  # conv1, bn1
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            first = block == 0
            cin = c_in if first else c_out
            shapes += [(c_out, cin, 3, 3), (c_out,), (c_out,), (c_out, c_out, 3, 3), (c_out,),
                       (c_out,)]
            if first and (stride != 1 or cin != c_out):
                shapes += [(c_out, cin, 1, 1), (c_out,), (c_out,)]  # downsample conv + bn
        c_in = c_out
    shapes += [(num_classes, 512), (num_classes,)]  # fc
    return shapes


def make_params(device: torch.device, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in resnet18_shapes():
        p = torch.nn.Parameter(torch.randn(shape, generator=gen).mul_(0.05).to(device))
        p.grad = torch.randn(shape, generator=gen).mul_(1e-3).to(device)
        params.append(p)
    return params


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(opt: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    _sync(device)
    return (time.perf_counter() - t0) / steps


def bench(rules: list[str], steps: int, rounds: int, warmup: int,
          device: torch.device) -> dict:
    reference = torch.optim.Adam(make_params(device), lr=1e-3, foreach=True)
    candidates = {}
    for entry in rules:
        spec = resolve_spec(entry)
        label = f"{spec.label} (torch)" if spec.kind == "torch" else f"{spec.label} (exported)"
        candidates[label] = (spec, spec.make(make_params(device), 1e-3, None, 1000))
    for opt in [reference, *[c[1] for c in candidates.values()]]:
        for _ in range(warmup):
            opt.step()
    times: dict[str, list[float]] = {"torch.optim.Adam(foreach=True)": []}
    times.update({label: [] for label in candidates})
    for _ in range(rounds):
        for label, (_, opt) in candidates.items():
            times["torch.optim.Adam(foreach=True)"].append(time_steps(reference, steps, device))
            times[label].append(time_steps(opt, steps, device))
    adam_ms = statistics.median(times["torch.optim.Adam(foreach=True)"]) * 1e3
    rows = {}
    for label, values in times.items():
        ms = statistics.median(values) * 1e3
        spec = candidates[label][0] if label in candidates else None
        rows[label] = {"ms_per_step": ms, "ratio_vs_adam": ms / adam_ms,
                       "rule": spec.rule if spec else None}
    n_params = sum(p.numel() for g in reference.param_groups for p in g["params"])
    return {"device": str(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "params": n_params,
            "tensors": len(resnet18_shapes()), "steps": steps, "rounds": rounds,
            "goal_ratio": 1.5, "results": rows,
            "ratio_vs_adam": {label: row["ratio_vs_adam"] for label, row in rows.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="rule:adam,lion,rule:lion",
                        help="comma-separated --rules entries (names; rule text without commas)")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median taken)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    from evolve.bench.optimizers import split_rules

    report = bench(split_rules(args.rules), args.steps, args.rounds, args.warmup,
                   torch.device(args.device))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"optimizer.step() on resnet18 parameters ({report['params']:,} values, "
          f"{report['tensors']} tensors), {report['device']}, torch {report['torch']}, "
          f"{report['threads']} threads; median of {args.rounds} rounds x {args.steps} steps")
    for label, row in report["results"].items():
        print(f"  {label:36s} {row['ms_per_step']:9.2f} ms/step  {row['ratio_vs_adam']:5.2f}x adam")
    return 0


if __name__ == "__main__":
    sys.exit(main())
