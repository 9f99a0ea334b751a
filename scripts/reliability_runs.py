"""Run-level reliability measurements: kill -9 and resume, lost workers, a full disk.

Figures of scripts/reliability.py and its tests. Each function drives real campaigns (through
the CLI in subprocesses where a kill must hit a whole process) and returns plain numbers;
failure counts end in ``_failures``, ``_lost`` or ``_mismatches`` and should all be 0. The
``chunk_*`` and :func:`worker_modules` functions run inside workers (they must be importable).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


# -------------------------------------------------------------------------------- kill -9
def _evolve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "evolve.cli", *args]


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def kill_and_resume(workdir: Path, kills: int, seed: int = 0, generations: int = 10) -> dict:
    """kill -9 a campaign at random moments, resume each, compare with an uninterrupted run.

    A kill that lands before the run directory holds its config is followed by `evolve run`
    (there is nothing to resume: the user starts again); every other one by `evolve resume`,
    which continues from the last checkpoint, or from the config when no generation was saved.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"population": 10, "generations": generations, "seed": 4, "suite": "hurdle",
              "heldout_suite": "hurdle", "executor": "serial", "checkpoint_every": 1, "real_k": 0}
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    straight = workdir / "straight"
    started = time.perf_counter()
    subprocess.run(_evolve_cmd("run", "--config", str(config_path), "--out", str(straight)),
                   check=True, env=_env(), capture_output=True)
    duration = time.perf_counter() - started
    expected = final_state(straight)
    rng = np.random.default_rng(seed)
    mismatches = lost_beyond = corrupt = before_first = before_start = 0
    for i in range(kills):
        run = workdir / f"killed{i}"
        proc = subprocess.Popen(_evolve_cmd("run", "--config", str(config_path), "--out", str(run)),
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        if not (run / "config.json").exists():
            before_start += 1
            subprocess.run(_evolve_cmd("run", "--config", str(config_path), "--out", str(run)),
                           check=True, env=_env(), capture_output=True)
        else:
            saved = _saved_generation(run)
            if saved is None:
                before_first += 1
            else:
                logged = [json.loads(x)["generation"] for x in
                          (run / "log.jsonl").read_text().splitlines() if x.strip().endswith("}")]
                lost_beyond += max(0, (max(logged) if logged else 0) - saved
                                   - config["checkpoint_every"])
            subprocess.run(_evolve_cmd("resume", str(run)), check=True, env=_env(),
                           capture_output=True)
        mismatches += final_state(run) != expected
    return {"kills": kills, "kills_before_the_run_existed": before_start,
            "kills_before_first_checkpoint": before_first,
            "kill_generations_lost": lost_beyond, "kill_final_state_mismatches": mismatches,
            "kill_corrupt_files_failures": corrupt}


def _saved_generation(run: Path) -> int | None:
    """The generation the checkpoint holds (None: no generation saved yet)."""
    try:
        state = json.loads((run / "checkpoint.json").read_text())["strategy"]
    except (OSError, ValueError, KeyError):
        return None
    return int(state["generation"]) if state["started"] else None


def final_state(run: Path):
    """Hall of fame and strategy state, without how the run was executed."""
    hall = json.loads((run / "hall_of_fame.json").read_text())
    hall = [{k: e[k] for k in ("rule", "score", "size", "generation", "tasks")} for e in hall]
    state = json.loads((run / "checkpoint.json").read_text())["strategy"]
    for how_it_ran in ("executor", "workers", "ray_address"):
        state["config"].pop(how_it_ran)
    return hall, state


def resumed_equals_straight(workdir: Path, config) -> bool:
    """A campaign run straight, and the same one stopped after 2 generations, resumed for 1,
    stopped, and resumed to its end: whether both end in the same state."""
    from evolve.runner import run_campaign

    run_campaign(workdir / "straight", config=config)
    run_campaign(workdir / "broken", config=config, stop_after=2)
    run_campaign(workdir / "broken", resume=True, stop_after=1)
    run_campaign(workdir / "broken", resume=True)
    return final_state(workdir / "broken") == final_state(workdir / "straight")


# -------------------------------------------------------------------------------- lost workers
def _heavy_rules(n: int) -> list[str]:
    """Adam variants: each passes the hurdle and runs the whole suite (a few seconds in all)."""
    return [f"div(ema_bc(g, {b1!r}), add(sqrt(ema_bc(square(g), 0.999)), 1e-08))"
            for b1 in np.round(np.linspace(0.5, 0.95, n), 6)]


def _value(result) -> dict:
    """What a result says about its rule (timing aside)."""
    d = result.to_dict()
    d.pop("seconds")
    return d


def process_worker_loss(workdir: Path, n_rules: int = 40) -> dict:
    """A pool worker dies mid-evaluation: the chunk is re-run, results equal serial ones."""
    from evolve.executors import ProcessExecutor, SerialExecutor

    rules = _heavy_rules(n_rules)
    expected = SerialExecutor("search", 0).map(rules)
    marker = workdir / "process-worker-killed"
    got, executor = _map_with_one_death(
        lambda: ProcessExecutor("search", 0, workers=2, chunk_fn=chunk_whose_worker_dies_once),
        rules, marker)
    mismatches = sum(_value(a) != _value(b) for a, b in zip(got, expected))
    return {"process_workers_killed": int(marker.exists()),
            "process_worker_losses_seen": executor.stats.failures,
            "process_worker_retried": executor.stats.retried,
            "process_worker_result_mismatches": mismatches,
            "process_worker_lost": len(rules) - len(got)}


_MARKER_ENV = "EVOLVE_RELIABILITY_MARKER"


def _map_with_one_death(make, rules: list[str], marker: Path):
    """(results, executor) of ``make().map(rules)`` while the marker asks one worker to die;
    results are [] when the executor gave up (LostEvaluations)."""
    from evolve.executors import LostEvaluations

    os.environ[_MARKER_ENV] = str(marker)  # workers started from here on inherit it
    try:
        executor = make()
        try:
            got = executor.map(rules)
        except LostEvaluations:
            got = []
        finally:
            executor.close()
    finally:
        os.environ.pop(_MARKER_ENV, None)
    return got, executor


def chunk_whose_worker_dies_once(suite: str, seed: int, rules: list[str], thresholds=None):
    """Runs in a worker: the first call anywhere kills its own process mid-evaluation."""
    from evolve.worker import evaluate_chunk

    marker = os.environ.get(_MARKER_ENV)
    if marker and not os.path.exists(marker):
        Path(marker).write_text("killed")
        evaluate_chunk(suite, seed, rules[:1], thresholds)  # mid-evaluation, not before it
        os._exit(9)
    return evaluate_chunk(suite, seed, rules, thresholds)


def chunk_whose_worker_always_dies(suite: str, seed: int, rules: list[str], thresholds=None):
    """Runs in a worker: every call kills its own process (a machine that keeps losing them)."""
    os._exit(9)


def worker_modules(names: tuple[str, ...]) -> list[str]:
    """Runs in a worker: which of ``names`` this process has imported."""
    return [n for n in names if n in sys.modules]


def worker_main_file() -> str | None:
    """Runs in a worker: the file its ``__main__`` came from (None: it imported none)."""
    return getattr(sys.modules["__main__"], "__file__", None)


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
    try:
        got, executor = _map_with_one_death(
            lambda: RayExecutor("hurdle", 0, workers=2, chunk_fn=chunk_whose_worker_dies_once),
            rules, marker)
    finally:
        ray.shutdown()
    mismatches = sum(_value(a) != _value(b) for a, b in zip(got, expected))
    return {"ray_workers_killed": int(marker.exists()), "ray_worker_retried": executor.stats.retried,
            "ray_worker_result_mismatches": mismatches, "ray_worker_lost": len(rules) - len(got)}


def pool_workers(pid: int) -> list[int]:
    """The spawned worker processes among the children of ``pid`` (Linux /proc); not
    multiprocessing's resource tracker, which is a child too."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            out.append(int(entry.name))
    return out


def worker_kill_storm(workdir: Path, seconds: float = 6.0, interval: float = 0.2) -> dict:
    """kill -9 the process pool's workers every ``interval`` s for ``seconds`` during
    `evolve run`: no lost worker may become a score. Either the run finishes, or it stops with
    one line and a checkpoint, and `evolve resume` then finishes it; both must end in the state
    of an uninterrupted serial run."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {"population": 10, "generations": 150, "seed": 5, "suite": "hurdle",
              "heldout_suite": "hurdle", "checkpoint_every": 10, "workers": 2, "real_k": 0}
    config_path = workdir / "storm-config.json"
    config_path.write_text(json.dumps({**config, "executor": "serial"}))
    straight = workdir / "storm-straight"
    subprocess.run(_evolve_cmd("run", "--config", str(config_path), "--out", str(straight)),
                   check=True, env=_env(), capture_output=True)
    config_path.write_text(json.dumps({**config, "executor": "process"}))
    run = workdir / "storm"
    proc = subprocess.Popen(_evolve_cmd("run", "--config", str(config_path), "--out", str(run)),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kills = 0
    deadline = time.monotonic() + 120
    while not (run / "log.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        for child in pool_workers(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(interval)
    _, err = proc.communicate(timeout=600)
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("gen ")]
    stopped = proc.returncode != 0
    bad_stop = stopped and (len(lines) != 1 or "lost" not in lines[0]
                            or "evolve resume" not in lines[0])
    if stopped:
        subprocess.run(_evolve_cmd("resume", str(run)), check=True, env=_env(),
                       capture_output=True)
    cache = [json.loads(x) for x in (run / "cache.jsonl").read_text().splitlines()]
    garbage = sum("lost" in (row["result"].get("reason") or "") for row in cache)
    return {"storm_kills": kills, "storm_run_stopped": int(stopped),
            "storm_stop_message_failures": int(bad_stop),
            "storm_traceback_failures": int("Traceback" in err),
            "storm_lost_scores_cached_failures": garbage,
            "storm_final_state_mismatches": int(final_state(run) != final_state(straight))}


# -------------------------------------------------------------------------------- disk full
def disk_full_during_checkpoint(workdir: Path) -> dict:
    """ENOSPC while a checkpoint is written: the previous one survives, the run stops with a
    line that names the file, and resume works."""
    from evolve.config import CampaignConfig
    from evolve.errors import RunError
    from evolve.rundir import directory as directory_mod
    from evolve.runner import run_campaign

    cfg = CampaignConfig(population=8, generations=4, seed=1, suite="hurdle",
                         heldout_suite="hurdle", executor="serial", checkpoint_every=1, real_k=0)
    run = workdir / "diskfull"
    run_campaign(run, config=cfg, stop_after=2)
    before = (run / "checkpoint.json").read_text()
    real = directory_mod.atomic_write_json
    failures = 0

    def full(path, obj):
        if Path(path).name == "checkpoint.json":
            real(Path(path).with_name(".probe.json"), obj)  # the write itself works...
            os.unlink(Path(path).with_name(".probe.json"))
            raise OSError(28, "No space left on device", str(path))  # ...then the disk is full
        return real(path, obj)

    directory_mod.atomic_write_json = full
    try:
        run_campaign(run, resume=True)
        failures += 1  # the full disk must surface as an error
    except RunError as err:
        failures += "checkpoint.json" not in str(err) or "intact" not in str(err)
    finally:
        directory_mod.atomic_write_json = real
    failures += (run / "checkpoint.json").read_text() != before
    survivors = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    failures += bool(survivors)
    finished = run_campaign(run, resume=True)
    failures += finished.generation != cfg.generations
    return {"disk_full_failures": failures}


__all__ = ["chunk_whose_worker_always_dies", "chunk_whose_worker_dies_once",
           "disk_full_during_checkpoint", "final_state", "kill_and_resume", "pool_workers",
           "process_worker_loss", "resumed_equals_straight",
           "ray_worker_loss", "worker_kill_storm", "worker_main_file", "worker_modules"]
