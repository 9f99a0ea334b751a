"""Times optimizer.step() of rules (exported class, EvolvedOptimizer) against torch.optim.Adam.

The parameters have the shapes of torchvision's resnet18 (11,689,512 values, 62 tensors; built
by hand here, torchvision is not needed) with random gradients. Each contestant steps its own
copy. In every round each contestant (in an order that rotates from round to round) takes
``--steps`` single steps, each next to one step of ``torch.optim.Adam(foreach=True)`` (which of
the two goes first alternates), so both see the same machine state; the round's ratio is the
median contestant step over the median Adam step. The figures are the medians over rounds of
those ratios and of ms per step, and the ratio of the fastest steps (noise only ever adds time,
so on a loaded machine that is the steadier figure). ``--clock cpu`` times with this process's
CPU time instead of the wall clock, which leaves out the time spent waiting for a core on a
machine shared with other work (use it with ``--threads 1``). Goal: the exported adam rule
within 1.05x of Adam(foreach=True). On a shared machine the ratios are what to read, not the
milliseconds.

    python scripts/bench_step.py [--rules adam,lion] [--steps 5] [--rounds 7] [--threads N]
                                 [--clock wall|cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.bench.lion import Lion  # noqa: E402
from primitives.export_torch import load_optimizer_class  # noqa: E402
from primitives.torch_backend import EvolvedOptimizer, rule_text  # noqa: E402

REFERENCE = "torch.optim.Adam(foreach=True)"
GOAL_RATIO = 1.05


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


def contestants(rules: list[str]) -> dict[str, Callable]:
    """label -> factory(params): the reference first, then torch's own, then each rule."""
    lr = 1e-3
    made: dict[str, Callable] = {
        REFERENCE: lambda ps: torch.optim.Adam(ps, lr=lr, foreach=True),
        "torch.optim.Adam(foreach=False)": lambda ps: torch.optim.Adam(ps, lr=lr, foreach=False),
        "Lion (evolve.bench.lion, torch)": lambda ps: Lion(ps, lr=lr),
    }
    for rule in rules:
        text = rule_text(rule)
        cls = load_optimizer_class(text, "Bench")
        for foreach in (True, False):
            made[f"{rule}: exported class (foreach={foreach})"] = (
                lambda ps, c=cls, f=foreach: c(ps, lr=lr, foreach=f, total_steps=10**9))
        made[f"{rule}: EvolvedOptimizer (foreach=True)"] = (
            lambda ps, t=text: EvolvedOptimizer(ps, t, lr=lr, foreach=True, total_steps=10**9))
    return made


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def time_step(opt: torch.optim.Optimizer, device: torch.device) -> float:
    """Seconds of one step."""
    _sync(device)
    t0 = _clock()
    opt.step()
    _sync(device)
    return _clock() - t0


def bench(rules: list[str], steps: int, rounds: int, warmup: int, device: torch.device) -> dict:
    factories = contestants(rules)
    opts = {label: make(make_params(device)) for label, make in factories.items()}
    for opt in opts.values():
        for _ in range(warmup):
            opt.step()
    labels = list(opts)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    ratios: dict[str, list[float]] = {label: [1.0] for label in labels}
    reference = opts[REFERENCE]
    for r in range(rounds):
        order = [label for label in labels[r % len(labels):] + labels[: r % len(labels)]
                 if label != REFERENCE]
        for label in order:
            mine, adam = [], []
            for s in range(steps):
                first, second = (reference, opts[label]) if s % 2 else (opts[label], reference)
                a, b = time_step(first, device), time_step(second, device)
                mine.append(b if s % 2 else a)
                adam.append(a if s % 2 else b)
            seconds[label].extend(mine)
            seconds[REFERENCE].extend(adam)
            ratios[label].append(statistics.median(mine) / statistics.median(adam))
    for label in labels:
        if label != REFERENCE:
            ratios[label].pop(0)
    rows = {label: {"ms_per_step": statistics.median(seconds[label]) * 1e3,
                    "ratio_vs_adam": statistics.median(ratios[label]),
                    "ratio_min": min(ratios[label]), "ratio_max": max(ratios[label]),
                    "ratio_of_fastest": min(seconds[label]) / min(seconds[REFERENCE])}
            for label in labels}
    n_params = sum(math.prod(shape) for shape in resnet18_shapes())
    return {"device": str(device), "torch": torch.__version__, "clock": _clock.__name__,
            "threads": torch.get_num_threads(), "params": n_params,
            "tensors": len(resnet18_shapes()), "steps": steps, "rounds": rounds,
            "goal_ratio": GOAL_RATIO, "results": rows,
            "ratio_vs_adam": {label: row["ratio_vs_adam"] for label, row in rows.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", default="adam,lion",
                        help="comma-separated known rule names (or rule text without commas)")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (medians taken)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall clock, or this process's CPU time (steadier on a shared "
                             "machine, with --threads 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    report = bench(rules, args.steps, args.rounds, args.warmup, torch.device(args.device))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"optimizer.step() on resnet18 parameters ({report['params']:,} values, "
          f"{report['tensors']} tensors), {report['device']}, torch {report['torch']}, "
          f"{report['threads']} threads, {args.clock} clock; medians of {args.rounds} rounds x "
          f"{args.steps} steps")
    for label, row in report["results"].items():
        print(f"  {label:42s} {row['ms_per_step']:8.1f} ms/step  {row['ratio_vs_adam']:5.2f}x adam "
              f"(rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f}; fastest steps "
              f"{row['ratio_of_fastest']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
