"""Hostile input measurements: fuzzed rule text, random rules, corrupt files at the CLI.

Figures of scripts/reliability.py and its tests (the run-level ones, kill -9, lost workers and a
full disk, are in :mod:`scripts.reliability_runs`). Each function measures one property and
returns plain numbers; failure counts end in ``_failures``, ``_crashes``, ``_lost``,
``_mismatches`` or ``_executed`` so a reader (or a test) can check that every one of them is 0.
"""

from __future__ import annotations

import builtins
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from primitives.grammar import RuleSyntaxError


# -------------------------------------------------------------------------------- hostile text
@contextmanager
def count_code_execution():
    """Replace eval/exec/compile/__import__ with counters for the duration (parser fuzzing)."""
    counts = {"executed": 0}
    originals = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}

    def trap(*args, **kwargs):
        counts["executed"] += 1
        raise AssertionError("code execution attempted")

    try:
        for name in originals:
            setattr(builtins, name, trap)
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(builtins, name, fn)


_FUZZ_TOKENS = ["g", "w", "lin_decay", "cos_decay", "(", ")", ",", " ", "0.9", "-1e-8", "1e999",
                "nan", "__import__", "'os'", ".", "eval", "exec", "ema", "sign", "add", "interp",
                "clip", "ema_bc", "mom", "sqrt", "\u0435", "\uff08", "\x00", "lambda", ":", "\n"]


def fuzz_parser(n: int, seed: int = 0) -> dict:
    """Random token soups and byte strings through the parser: only RuleSyntaxError may leave."""
    from primitives.program import compile_rule

    rng = np.random.default_rng(seed)
    crashes = 0
    accepted = 0
    with count_code_execution() as counts:
        for i in range(n):
            if i % 3 == 0:
                length = int(rng.integers(0, 40))
                text = "".join(_FUZZ_TOKENS[int(j)] for j in rng.integers(0, len(_FUZZ_TOKENS), length))
            elif i % 3 == 1:
                raw = rng.integers(0, 0x3000, int(rng.integers(0, 30)))
                text = "".join(chr(int(c)) for c in raw if not 0xD800 <= c <= 0xDFFF)
            else:
                depth = int(rng.integers(1, 3000))
                text = "neg(" * depth + "g" + ")" * int(rng.integers(0, depth + 2))
            try:
                compile_rule(text)
                accepted += 1
            except RuleSyntaxError as err:
                if "\n" in str(err):
                    crashes += 1
            except Exception:  # noqa: BLE001 - counting anything else is the point
                crashes += 1
    return {"parser_inputs": n, "parser_accepted": accepted, "parser_crashes": crashes,
            "parser_code_executed": counts["executed"]}


def fuzz_parser_hypothesis(n: int) -> dict:
    """Hypothesis-generated text (arbitrary unicode and grammar-shaped strings)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from primitives.program import compile_rule

    tally = {"inputs": 0, "crashes": 0, "executed": 0}
    names = st.sampled_from(["g", "w", "ema", "add", "sign", "interp", "clip", "(", ")", ",", "0.5",
                             "1e-08", "__class__", "import", "'", ";"])
    text = st.one_of(st.text(max_size=60), st.lists(names, max_size=30).map(" ".join),
                     st.lists(names, max_size=30).map("".join))

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(text)
    def check(s: str) -> None:
        tally["inputs"] += 1
        # the trap is armed around our parser only: hypothesis itself uses compile()
        with count_code_execution() as counts:
            try:
                compile_rule(s)
            except RuleSyntaxError:
                pass
            except Exception:  # noqa: BLE001
                tally["crashes"] += 1
        tally["executed"] += counts["executed"]

    check()
    return {"hypothesis_inputs": tally["inputs"], "hypothesis_crashes": tally["crashes"],
            "hypothesis_code_executed": tally["executed"]}


# -------------------------------------------------------------------------------- random rules
def random_rules_through_backends(n: int, seed: int = 0, torch_every: int = 10,
                                  time_bound_s: float = 1.0) -> dict:
    """Random rules, deep and huge ones included, through the interpreter and torch backend."""
    import torch

    from fitness.interpreter import StepRunner
    from primitives.program import compile_rule
    from primitives.random_rules import random_tree
    from primitives.torch_backend import run_program

    rng = np.random.default_rng(seed)
    P, steps = 32, 3
    grads = rng.normal(size=(steps, P)) * rng.choice([1e-6, 1.0, 1e6], size=(steps, P))
    w0 = rng.normal(size=P)
    crashes = hangs = torch_runs = 0
    slowest = 0.0
    for i in range(n):
        depth = int(rng.integers(1, 13)) if i % 50 else 30  # every 50th: a huge one
        tree = random_tree(rng, depth, full=bool(i % 7 == 0) and depth <= 8)
        start = time.perf_counter()
        try:
            program = compile_rule(tree)
            runner = StepRunner(program, w0, total_steps=steps)
            for t in range(steps):
                runner.direction(grads[t])
            if i % torch_every == 0:
                torch_runs += 1
                state = {s.key: torch.zeros(P, dtype=torch.float64) for s in program.states}
                w = torch.tensor(w0)
                for t in range(steps):
                    run_program(program, [torch.tensor(grads[t])], [w], [state], t + 1, steps)
        except RuleSyntaxError:
            pass  # over the size limit: refused cleanly, as designed
        except Exception:  # noqa: BLE001
            crashes += 1
        elapsed = time.perf_counter() - start
        slowest = max(slowest, elapsed)
        hangs += elapsed > time_bound_s
    return {"random_rules": n, "random_rules_torch": torch_runs, "random_rule_crashes": crashes,
            "random_rule_hangs_failures": hangs, "slowest_rule_s": round(slowest, 4)}


# -------------------------------------------------------------------------------- corrupt files
def corrupt_files(workdir: Path) -> dict:
    """Corrupt or truncated checkpoint, config and dataset files at the CLI: each must exit 2
    with one line, no traceback, and leave every file as it was."""
    from click.testing import CliRunner

    from evolve.cli import main
    from evolve.config import CampaignConfig
    from evolve.runner import run_campaign
    from fitness.training.cifar import write_cifar_format

    runner = CliRunner()
    failures = cases = 0

    def check(args: list[str], watched: list[Path]) -> None:
        nonlocal failures, cases
        cases += 1
        before = {p: p.read_bytes() for p in watched if p.exists()}
        result = runner.invoke(main, args)
        lines = [x for x in result.output.splitlines() if x.strip()]
        bad = result.exit_code != 2 or len(lines) != 1 or "Traceback" in result.output
        bad |= any(p.read_bytes() != data for p, data in before.items())
        failures += bad

    run = workdir / "corrupt-run"
    cfg = CampaignConfig(population=6, generations=3, suite="hurdle", heldout_suite="hurdle",
                         executor="serial", checkpoint_every=1, real_k=0)
    run_campaign(run, config=cfg, stop_after=1)
    checkpoint = run / "checkpoint.json"
    good = checkpoint.read_text()
    for corrupt in (good[: len(good) // 2], "", "[]", '{"format": 1}', "\x00\xff", good.replace(
            '"rule": "', '"rule": "__import__(', 1)):
        checkpoint.write_text(corrupt)
        check(["resume", str(run)], list(run.iterdir()))
    config = workdir / "config.json"
    for text in ("{", "[]", '{"population": "many"}', '{"warm_start": "exec(1)"}', "\x00"):
        config.write_text(text)
        check(["run", "--config", str(config), "--out", str(workdir / "never")], [config])
    data = workdir / "cifar"
    write_cifar_format(data, n_train=20, n_test=10)
    batch = data / "cifar-10-batches-py" / "data_batch_1"
    original = batch.read_bytes()
    for damaged in (original[: len(original) // 3], b"", b"not a pickle",
                    b"cos\nsystem\n(S'echo pwned'\ntR."):
        batch.write_bytes(damaged)
        check(["validate", "--rules", "adam", "--data-dir", str(data), "--out",
               str(workdir / "val")], [batch])
    return {"corrupt_file_cases": cases, "corrupt_file_failures": failures}


__all__ = ["corrupt_files", "count_code_execution", "fuzz_parser", "fuzz_parser_hypothesis",
           "random_rules_through_backends"]
