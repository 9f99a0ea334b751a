"""Campaign runs end to end: executors agree, kill -9 and resume end in the same state, the run
directory is locked, repaired, extended, and lost workers never become scores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from evolve.cli import main
from evolve.config import CampaignConfig
from evolve.errors import RunError
from evolve.executors import (
    Executor,
    LostEvaluations,
    ProcessExecutor,
    RayExecutor,
    SerialExecutor,
)
from evolve.runner import run_campaign
from fitness.evaluate import Thresholds
from fitness.score import Result
from scripts.reliability_runs import final_state, resumed_equals_straight

ROOT = Path(__file__).resolve().parents[1]
# A small real campaign: the hurdle suite (one short quadratic) keeps each generation fast; the
# real-data tier is off here (tests/test_tiers.py runs campaigns with it).
SMALL = dict(population=10, generations=6, seed=4, suite="hurdle", heldout_suite="hurdle",
             crossover_prob=0.2, real_k=0)


def _value(result: Result) -> dict:
    d = result.to_dict()
    d.pop("seconds")
    return d


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_serial_process_and_ray_executors_give_the_same_campaign(tmp_path):
    """Every executor keeps the Executor contract: typed results, in order, equal to serial."""
    from evolve.rundir import resolve_rule

    rules = [resolve_rule(r).text for r in ("g", "sign(g)", "adam", "div(g, 0.0)",
                                             "mul(g, 1e9)", "ema(g, 0.9)")]
    states, results = {}, {}
    for kind in ("serial", "process", "ray"):
        executor = {"serial": SerialExecutor, "process": ProcessExecutor,
                    "ray": RayExecutor}[kind]("hurdle", 4, workers=2)
        try:
            assert isinstance(executor, Executor)
            got = executor.map(rules)
            assert all(isinstance(r, Result) for r in got)
            assert [r.rule for r in got] == rules
            # the driver's thresholds travel too: an adaptive hurdle, and an early stop on a
            # suite of several tasks
            limits = Thresholds(hurdle=0.3, stop_below=1.2)
            results[kind] = [_value(r) for r in got + executor.map(rules, "search", 0, limits)]
            cfg = CampaignConfig(**SMALL, executor=kind, workers=2)
            run_campaign(tmp_path / kind, config=cfg, executor=executor)
            states[kind] = final_state(tmp_path / kind)
        finally:
            executor.close()
    try:
        import ray

        ray.shutdown()
    except ImportError:  # pragma: no cover
        pass
    assert results["serial"] == results["process"] == results["ray"]
    assert any(r["stopped_below"] for r in results["serial"])
    assert any(r["hurdle"] == "rejected" for r in results["serial"][len(rules):])
    assert states["serial"] == states["process"]
    assert states["serial"] == states["ray"]
    assert states["serial"][0], "the hall of fame is not empty"


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    assert resumed_equals_straight(tmp_path, cfg)
    log = [json.loads(x) for x in (tmp_path / "broken" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in log] == list(range(0, 7))


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _evolve(*args: str) -> list[str]:
    return [sys.executable, "-m", "evolve.cli", *args]


def _rows(run: Path) -> int:
    try:
        return sum(1 for x in (run / "log.jsonl").read_text().splitlines() if x.endswith("}"))
    except OSError:
        return 0


def _checkpoint_generation(run: Path) -> int | None:
    """The generation the checkpoint holds; None when it holds no generation yet."""
    try:
        state = json.loads((run / "checkpoint.json").read_text())["strategy"]
    except (OSError, ValueError, KeyError):
        return None
    return state["generation"] if state["started"] else None


@pytest.mark.slow
def test_kill_9_before_the_first_checkpoint_mid_run_and_at_random_then_resume(tmp_path):
    """Kills land at chosen points: before the first generation checkpoint, after one (so the
    resume starts mid-run), and at a random moment scaled to the run's own duration; each
    resume must end in the uninterrupted run's state."""
    config = tmp_path / "config.json"
    # a large first population makes generation 0 long enough to land a kill inside it
    config.write_text(json.dumps({**SMALL, "population": 200, "children": 5, "generations": 60,
                                  "checkpoint_every": 20, "executor": "serial"}))
    straight = tmp_path / "straight"
    started = time.perf_counter()
    subprocess.run(_evolve("run", "--config", str(config), "--out", str(straight)), check=True,
                   env=_cli_env(), capture_output=True, timeout=300)
    duration = time.perf_counter() - started
    expected = final_state(straight)
    rng = np.random.default_rng(0)
    saved_at_kill = {}
    for name, when in (("before_first", lambda run: (run / "checkpoint.json").exists()),
                       ("mid_run", lambda run: _rows(run) >= 25),
                       ("random", None)):
        run = tmp_path / name
        proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                                env=_cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        if when is None:
            while not (run / "config.json").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 0.8)) * duration)
        else:
            while not when(run) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for file in ("checkpoint.json", "hall_of_fame.json", "config.json"):
            if (run / file).exists():
                json.loads((run / file).read_text())  # every file that exists is whole JSON
        saved_at_kill[name] = _checkpoint_generation(run)
        resumed = subprocess.run(_evolve("resume", str(run)), env=_cli_env(),
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert final_state(run) == expected, name
    assert saved_at_kill["before_first"] is None, "that kill was meant to land in generation 0"
    assert saved_at_kill["mid_run"] is not None and saved_at_kill["mid_run"] >= 20


def test_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 400, "executor": "serial"}))
    run = tmp_path / "run"
    proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                            env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and _rows(run) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "evolve resume" in err
    state = json.loads((run / "checkpoint.json").read_text())["strategy"]
    assert 0 <= state["generation"] < 400 and state["started"]


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_ctrl_c_at_any_moment_prints_one_line(tmp_path):
    """SIGINT to the whole process group (what a terminal's Ctrl-C does), during start-up, while
    the pool starts and mid-run: one line, no worker traceback, and a resumable run."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 4000, "executor": "process",
                                  "workers": 2}))
    moments = {"start-up": lambda run: time.sleep(0.3) or True,
               "pool start": lambda run: (run / "config.json").exists(),
               "mid-run": lambda run: _rows(run) >= 3}
    for name, ready in moments.items():
        run = tmp_path / name.replace(" ", "-")
        # a terminal starts a command with SIGINT at its default; a process that inherits it
        # ignored (a background job of a script, and once a test worker here) has no
        # KeyboardInterrupt until the runner installs its own handler
        proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                                env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while not ready(run) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith(("gen ", "columns: "))]
        # 130, or death by the SIGINT itself when it lands during interpreter shutdown (the
        # shell shows both as 130)
        assert proc.returncode in (130, -signal.SIGINT), (name, err)
        assert len(lines) == 1 and "Traceback" not in err, (name, err)
        if name == "mid-run":
            assert "checkpoint saved" in lines[0] and "evolve resume" in lines[0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_during_start_up_still_stops_the_run(tmp_path, capsys):
    """A SIGINT that lands in a finaliser is printed as "Exception ignored" and lost to Python;
    the command line remembers it, and the run stops at its first generation with one line."""
    from evolve import interrupt

    class SwallowsIt:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside __del__

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupt.install()
        SwallowsIt()  # dropped at once: __del__ runs and its KeyboardInterrupt is ignored
        assert interrupt.received()
        cfg = CampaignConfig(**{**SMALL, "generations": 50}, executor="serial")
        with pytest.raises(SystemExit) as stopped:
            run_campaign(tmp_path / "run", config=cfg)
    finally:
        signal.signal(signal.SIGINT, old)
    assert not interrupt.received()  # taken by the run it stopped: the next run starts clean
    assert stopped.value.code == 130
    assert _checkpoint_generation(tmp_path / "run") == 0
    assert "SIGINT: checkpoint saved at generation 0" in capsys.readouterr().err


def test_a_second_process_is_refused_by_the_lock_and_a_dead_holders_lock_is_taken_over(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 4000, "executor": "serial"}))
    run = tmp_path / "run"
    first = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                             env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and _rows(run) < 1:
            time.sleep(0.05)
        second = subprocess.run(_evolve("resume", str(run)), env=_cli_env(),
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and f"in use by pid {first.pid}" in lines[0], second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (run / ".lock").exists()  # left behind by the kill: stale
    saved = _checkpoint_generation(run) or 0
    done = subprocess.run(_evolve("resume", str(run), "--generations", str(saved + 2)),
                          env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (run / ".lock").exists()


def test_truncated_log_is_rebuilt_from_the_checkpoint_and_said(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial", checkpoint_every=1)
    run_campaign(tmp_path / "straight", config=cfg)
    run = tmp_path / "run"
    run_campaign(run, config=cfg, stop_after=4)
    text = (run / "log.jsonl").read_text()
    (run / "log.jsonl").write_text(text[: len(text) // 3])  # gens 0 and part of 1 survive
    notes: list[str] = []
    run_campaign(run, resume=True, notify=notes.append)
    assert any("lost generation(s) 1-3" in n and "rewritten" in n for n in notes), notes
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == list(range(7))
    timing = ("seconds", "candidates_per_s")
    assert ([{k: v for k, v in r.items() if k not in timing} for r in rows]
            == [{k: v for k, v in r.items() if k not in timing} for r in straight])
    assert final_state(run) == final_state(tmp_path / "straight")


def test_finished_run_says_complete_and_extends_exactly(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    longer = CampaignConfig(**{**SMALL, "generations": 9}, executor="serial")
    run_campaign(tmp_path / "longer", config=longer)
    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["run", "--config", _write(tmp_path, cfg), "--out",
                                     str(run)]).exit_code == 0
    report = (run / "report.md").stat().st_mtime_ns
    result = CliRunner().invoke(main, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "is complete (6 of 6 generations)" in result.output
    assert (run / "report.md").stat().st_mtime_ns == report, "the funnel must not run again"
    result = CliRunner().invoke(main, ["resume", str(run), "--generations", "9"])
    assert result.exit_code == 0, result.output
    assert final_state(run) == final_state(tmp_path / "longer")
    assert json.loads((run / "config.json").read_text())["generations"] == 9
    assert (run / "report.md").stat().st_mtime_ns != report
    result = CliRunner().invoke(main, ["resume", str(run), "--generations", "3"])
    assert result.exit_code == 2 and "below the 9 generations" in result.output


def test_run_killed_before_its_first_checkpoint_resumes_from_its_config(tmp_path):
    """A folder with config.json and nothing else (a kill between the two first writes) is
    started by `resume` and ends like an uninterrupted run; `run` says to resume it."""
    cfg = CampaignConfig(**SMALL, executor="serial")
    run_campaign(tmp_path / "straight", config=cfg)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    result = CliRunner().invoke(main, ["run", "--config", _write(tmp_path, cfg), "--out", str(run)])
    assert result.exit_code == 2 and f"evolve resume {run}" in result.output
    result = CliRunner().invoke(main, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "starting it from config.json" in result.output
    assert final_state(run) == final_state(tmp_path / "straight")
    # a finished run copied without its checkpoint (docs/results/) is never restarted over
    (run / "checkpoint.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = CliRunner().invoke(main, ["resume", str(run)])
    assert result.exit_code == 2 and "holds results but no checkpoint.json" in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


class FlakyExecutor(SerialExecutor):
    """Serial scoring whose workers are lost for good on one call of map()."""

    def __init__(self, suite: str, seed: int, lose_on_call: int):
        super().__init__(suite, seed)
        self.calls, self.lose_on_call = 0, lose_on_call

    def map(self, rules, suite=None, seed=None, thresholds=None):
        self.calls += 1
        if self.calls == self.lose_on_call and rules:
            self.stats.lost += 3 * len(rules)
            self.stats.retried += 2 * len(rules)
            raise LostEvaluations(len(rules), 3, "killed")
        return super().map(rules, suite, seed, thresholds)


def test_lost_evaluations_stop_the_run_are_never_cached_and_resume_exactly(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    run_campaign(tmp_path / "straight", config=cfg)
    run = tmp_path / "run"
    with pytest.raises(RunError) as info:
        run_campaign(run, config=cfg, executor=FlakyExecutor("hurdle", 4, lose_on_call=3),
                     finish=True)
    message = str(info.value)
    assert "lost" in message and f"evolve resume {run}" in message and "\n" not in message
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    assert checkpoint["strategy"]["generation"] == 1 and checkpoint["strategy"]["pending"]
    assert checkpoint["counters"]["lost"] > 0 and checkpoint["counters"]["retried"] > 0
    cache = (run / "cache.jsonl").read_text().splitlines()
    assert len(cache) == checkpoint["cache_entries"]
    assert not any("lost" in (json.loads(x)["result"]["reason"] or "") for x in cache)
    assert not (run / "report.md").exists()
    run_campaign(run, resume=True, finish=True)
    assert final_state(run) == final_state(tmp_path / "straight")
    report = (run / "report.md").read_text()
    assert f"{checkpoint['counters']['lost']} evaluations lost with a worker" in report


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_workers_that_keep_dying_raise_instead_of_scoring(tmp_path):
    from scripts.reliability_runs import chunk_whose_worker_always_dies

    executor = ProcessExecutor("hurdle", 0, workers=2, attempts=2,
                               chunk_fn=chunk_whose_worker_always_dies)
    try:
        with pytest.raises(LostEvaluations) as info:
            executor.map(["g", "sign(g)", "neg(g)", "ema(g, 0.9)"])
    finally:
        executor.close()
    assert info.value.missing == 4
    assert executor.stats.lost == 8 and executor.stats.retried == 4


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_workers_import_only_what_scoring_needs():
    from scripts.reliability_runs import worker_main_file, worker_modules

    executor = ProcessExecutor("hurdle", 0, workers=1)
    try:
        heavy = ("torch", "click", "matplotlib", "evolve.cli", "evolve.rundir", "ray")
        loaded = executor._ensure_pool().submit(worker_modules, heavy).result(timeout=120)
        main_file = executor._pool.submit(worker_main_file).result(timeout=60)
    finally:
        executor.close()
    assert loaded == []
    assert "pytest" not in (main_file or ""), "workers must not re-import the driver's __main__"


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_workers_leave_when_the_driver_is_killed(tmp_path):
    from scripts.reliability_runs import pool_workers

    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 4000, "executor": "process",
                                  "workers": 2}))
    run = tmp_path / "run"
    proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                            env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _rows(run) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = pool_workers(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in workers if _running(pid)]
    for pid in alive:  # leave no orphan behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, "orphaned workers must exit"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (now init) can reap it


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_a_script_without_a_main_guard_runs_on_processes_like_serial(tmp_path):
    """The obvious first script: no `if __name__ == "__main__":`, process executor."""
    script = tmp_path / "first.py"
    config = {**SMALL, "generations": 3, "workers": 2}
    script.write_text(textwrap.dedent(f"""
        from evolve.config import CampaignConfig
        from evolve.runner import run_campaign

        config = CampaignConfig(**{config!r}, executor=EXECUTOR)
        best = run_campaign(OUT, config=config).hall_of_fame[0]
        print(best.rule, best.score)
    """))
    outputs = {}
    for executor in ("serial", "process"):
        text = script.read_text().replace("EXECUTOR", repr(executor)).replace(
            "OUT", repr(str(tmp_path / executor)))
        (tmp_path / f"{executor}.py").write_text(text)
        proc = subprocess.run([sys.executable, str(tmp_path / f"{executor}.py")], cwd=tmp_path,
                              env={**_cli_env(), "PYTHONPATH": str(ROOT)}, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        outputs[executor] = proc.stdout
    assert outputs["serial"] == outputs["process"]
    assert final_state(tmp_path / "serial") == final_state(tmp_path / "process")


def test_run_refuses_existing_campaign_and_bad_config(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(main, ["run", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    assert not (tmp_path / "r").exists()
    bad.write_text(json.dumps({"population": -3}))
    result = runner.invoke(main, ["run", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "population" in result.output
    result = runner.invoke(main, ["run", "--suite", "nope", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown suite" in result.output
    result = runner.invoke(main, ["run", "--strategy", "annealing", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "strategy must be one of evolution" in result.output
    assert not (tmp_path / "r").exists()


def test_unwritable_out_and_unreachable_ray_say_what_failed_and_leave_nothing(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--generations", "1", "--out", "/proc/evolve-run"])
    assert result.exit_code == 2 and "cannot write to /proc" in result.output
    assert "checkpoint" not in result.output
    out = tmp_path / "r"
    result = runner.invoke(main, ["run", "--generations", "1", "--executor", "ray",
                                  "--address", "127.0.0.1:1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "cannot connect to the Ray cluster at 127.0.0.1:1" in result.output
    assert "checkpoint" not in result.output and not out.exists()
    if os.geteuid() != 0:  # root writes into read-only folders
        out.mkdir()
        out.chmod(0o555)
        result = runner.invoke(main, ["run", "--generations", "1", "--out", str(out)])
        assert result.exit_code == 2 and f"cannot write to {out}" in result.output


def test_resume_refuses_corrupt_checkpoint_and_changes_nothing(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    run_campaign(tmp_path / "run", config=cfg, stop_after=1)
    checkpoint = tmp_path / "run" / "checkpoint.json"
    original = checkpoint.read_text()
    for corrupt in (original[: len(original) // 2], "[]", '{"format": 2}', "\x00\x01"):
        checkpoint.write_text(corrupt)
        result = CliRunner().invoke(main, ["resume", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert "corrupt" in result.output and "Traceback" not in result.output
        assert checkpoint.read_text() == corrupt
    result = CliRunner().invoke(main, ["resume", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_show_json_lists_hall_of_fame_best_first_and_rule_references_resolve(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "--config", _write(tmp_path, cfg), "--out", str(run)])
    assert result.exit_code == 0, result.output
    shown = json.loads(CliRunner().invoke(main, ["show", str(run), "--json"]).output)
    scores = [e["score"] for e in shown["hall_of_fame"]]
    assert scores == sorted(scores, reverse=True) and all("rule" in e for e in shown["hall_of_fame"])
    assert all(isinstance(e["needs_total_steps"], bool) for e in shown["hall_of_fame"])
    assert (run / "report.md").exists()
    assert (run / "score.png").stat().st_size > 1000
    heldout = json.loads((run / "heldout.json").read_text())
    hall = json.loads((run / "hall_of_fame.json").read_text())
    expect = {"best": heldout["ranking"][0]["rule"], "heldout": heldout["ranking"][0]["rule"],
              "search": hall[0]["rule"], "2": hall[1]["rule"]}
    for selector, rule in expect.items():
        out = CliRunner().invoke(main, ["export", f"{run}:{selector}", "--format", "text"])
        assert out.exit_code == 0 and out.output.strip() == rule, (selector, out.output)
    scored = CliRunner().invoke(main, ["score", f"{run}:best", "--suite", "hurdle", "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["rule"] == expect["best"]
    bad = CliRunner().invoke(main, ["export", f"{run}:99"])
    assert bad.exit_code == 2 and "asked for number 99" in bad.output


def _write(tmp_path: Path, cfg: CampaignConfig) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)
