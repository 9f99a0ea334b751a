"""Reliability and security measurements (the figures of scripts/reliability.py and its tests).

Each function measures one property and returns plain numbers; failure counts end in
``_failures``, ``_crashes``, ``_lost``, ``_mismatches`` or ``_executed`` so a reader (or a test)
can check that every one of them is zero.
"""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
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


# -------------------------------------------------------------------------------- kill -9
def _evolve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "evolve.cli", *args]


def kill_and_resume(workdir: Path, kills: int, seed: int = 0, generations: int = 10) -> dict:
    """kill -9 a campaign at random moments, resume each, compare with an uninterrupted run."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"population": 10, "generations": generations, "seed": 4, "suite": "hurdle",
              "heldout_suite": "hurdle", "executor": "serial", "checkpoint_every": 1}
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = workdir / "straight"
    started = time.perf_counter()
    subprocess.run(_evolve_cmd("run", "--config", str(config_path), "--out", str(straight)),
                   check=True, env=env, capture_output=True)
    duration = time.perf_counter() - started
    expected = _final_state(straight)
    rng = np.random.default_rng(seed)
    mismatches = lost_beyond = corrupt = not_started = 0
    for i in range(kills):
        run = workdir / f"killed{i}"
        proc = subprocess.Popen(_evolve_cmd("run", "--config", str(config_path), "--out", str(run)),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.3, 0.95)) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for name in ("checkpoint.json", "hall_of_fame.json", "config.json"):
            path = run / name
            if path.exists():
                try:
                    json.loads(path.read_text())
                except json.JSONDecodeError:
                    corrupt += 1
        if not (run / "checkpoint.json").exists():
            not_started += 1
            continue
        logged = [json.loads(x)["generation"] for x in (run / "log.jsonl").read_text().splitlines()
                  if x.strip().endswith("}")]
        saved = json.loads((run / "checkpoint.json").read_text())["campaign"]["generation"]
        lost_beyond += max(0, (max(logged) if logged else 0) - saved - config["checkpoint_every"])
        subprocess.run(_evolve_cmd("resume", str(run)), check=True, env=env, capture_output=True)
        mismatches += _final_state(run) != expected
    return {"kills": kills, "kills_before_first_checkpoint": not_started,
            "kill_generations_lost": lost_beyond, "kill_final_state_mismatches": mismatches,
            "kill_corrupt_files_failures": corrupt}


def _final_state(run: Path):
    hall = json.loads((run / "hall_of_fame.json").read_text())
    hall = [{k: e[k] for k in ("rule", "score", "tasks")} for e in hall]
    campaign = json.loads((run / "checkpoint.json").read_text())["campaign"]
    return hall, campaign


# -------------------------------------------------------------------------------- lost workers
def _heavy_rules(n: int) -> list[str]:
    """Adam variants: each passes the hurdle and runs the whole suite (a few seconds in all)."""
    return [f"div(ema_bc(g, {b1!r}), add(sqrt(ema_bc(square(g), 0.999)), 1e-08))"
            for b1 in np.round(np.linspace(0.5, 0.95, n), 6)]


def process_worker_loss(workdir: Path, n_rules: int = 40) -> dict:
    """A pool worker dies mid-evaluation: the chunk is re-run, results equal serial ones."""
    from evolve.executors import ProcessExecutor, SerialExecutor

    rules = _heavy_rules(n_rules)
    expected = SerialExecutor("search", 0).map(rules)
    marker = workdir / "process-worker-killed"
    os.environ[_MARKER_ENV] = str(marker)  # spawned workers inherit it
    executor = ProcessExecutor("search", 0, workers=2, chunk_fn=_chunk_whose_worker_dies_once)
    try:
        got = executor.map(rules)
    finally:
        os.environ.pop(_MARKER_ENV, None)
        executor.close()
    mismatches = sum(_strip(a) != _strip(b) for a, b in zip(got, expected))
    return {"process_workers_killed": int(marker.exists()),
            "process_worker_losses_seen": executor.lost_workers,
            "process_worker_result_mismatches": mismatches,
            "process_worker_lost": sum(1 for r in got if "worker lost" in (r.get("reason") or ""))}


_MARKER_ENV = "EVOLVE_RELIABILITY_MARKER"


def _chunk_whose_worker_dies_once(suite: str, seed: int, rules: list[str]) -> list[dict]:
    """Runs in a worker: the first call anywhere kills its own process mid-evaluation."""
    from evolve.executors import _evaluate_chunk

    marker = os.environ.get(_MARKER_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).write_text("killed")
        _evaluate_chunk(suite, seed, rules[:1])  # mid-evaluation, not before it
        os._exit(9)
    return _evaluate_chunk(suite, seed, rules)


def ray_worker_loss(workdir: Path, n_rules: int = 60) -> dict:
    """A Ray worker dies mid-task: the task is re-run, results equal serial ones."""
    import ray

    from evolve.executors import RayExecutor, SerialExecutor
    from primitives.grammar import to_text
    from primitives.random_rules import random_population

    rules = [to_text(t) for t in random_population(np.random.default_rng(6), n_rules, 2, 5)]
    expected = SerialExecutor("hurdle", 0).map(rules)
    marker = workdir / "ray-worker-killed"
    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()  # workers must start with the marker in their environment
    os.environ[_MARKER_ENV] = str(marker)
    try:
        executor = RayExecutor("hurdle", 0, workers=2, chunk_fn=_chunk_whose_worker_dies_once)
        got = executor.map(rules)
    finally:
        os.environ.pop(_MARKER_ENV, None)
        ray.shutdown()
    mismatches = sum(_strip(a) != _strip(b) for a, b in zip(got, expected))
    return {"ray_workers_killed": int(marker.exists()), "ray_worker_result_mismatches": mismatches,
            "ray_worker_lost": sum(1 for r in got if "worker lost" in (r.get("reason") or ""))}


def _strip(result: dict) -> dict:
    return {k: result.get(k) for k in ("aggregate", "reason", "tasks")}


# -------------------------------------------------------------------------------- disk full
def disk_full_during_checkpoint(workdir: Path) -> dict:
    """ENOSPC while a checkpoint is written: the previous one survives and resume works."""
    from evolve import runner as runner_mod
    from evolve.campaign import CampaignConfig
    from evolve.runner import run_campaign

    cfg = CampaignConfig(population=8, generations=4, seed=1, suite="hurdle",
                         heldout_suite="hurdle", executor="serial", checkpoint_every=1)
    run = workdir / "diskfull"
    run_campaign(run, config=cfg, stop_after=2)
    before = (run / "checkpoint.json").read_text()
    real = runner_mod.atomic_write_json
    failures = 0

    def full(path, obj):
        if Path(path).name == "checkpoint.json":
            real(Path(path).with_name(".probe.json"), obj)  # the write itself works...
            os.unlink(Path(path).with_name(".probe.json"))
            raise OSError(28, "No space left on device")  # ...then the disk is full
        return real(path, obj)

    runner_mod.atomic_write_json = full
    try:
        run_campaign(run, resume=True)
        failures += 1  # the full disk must surface as an error
    except OSError:
        pass
    finally:
        runner_mod.atomic_write_json = real
    failures += (run / "checkpoint.json").read_text() != before
    survivors = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    failures += bool(survivors)
    finished = run_campaign(run, resume=True)
    failures += finished.generation != cfg.generations
    return {"disk_full_failures": failures}


# -------------------------------------------------------------------------------- corrupt files
def corrupt_files(workdir: Path) -> dict:
    """Corrupt or truncated checkpoint, config and dataset files at the CLI: each must exit 2
    with one line, no traceback, and leave every file as it was."""
    from click.testing import CliRunner

    from evolve.campaign import CampaignConfig
    from evolve.cli import main
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
                         executor="serial", checkpoint_every=1)
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


__all__ = ["corrupt_files", "count_code_execution", "disk_full_during_checkpoint", "ray_worker_loss", "fuzz_parser",
           "fuzz_parser_hypothesis", "kill_and_resume", "process_worker_loss",
           "random_rules_through_backends"]
