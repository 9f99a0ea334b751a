"""Campaign runs end to end: executors agree, kill -9 and resume end in the same state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evolve.campaign import CampaignConfig
from evolve.cli import main
from evolve.runner import run_campaign

# A small real campaign: the hurdle suite (one short quadratic) keeps each generation fast.
SMALL = dict(population=10, generations=6, seed=4, suite="hurdle", heldout_suite="hurdle",
             crossover_prob=0.2)


def final_state(run: Path) -> tuple[list, dict]:
    hall = json.loads((run / "hall_of_fame.json").read_text())
    hall = [{k: e[k] for k in ("rule", "score", "size", "generation", "tasks")} for e in hall]
    campaign = json.loads((run / "checkpoint.json").read_text())["campaign"]
    for how_it_ran in ("executor", "workers", "ray_address"):
        campaign["config"].pop(how_it_ran)
    return hall, campaign


@pytest.mark.slow
@pytest.mark.xdist_group("processes")
def test_serial_process_and_ray_executors_give_the_same_campaign(tmp_path):
    states = {}
    for executor in ("serial", "process", "ray"):
        cfg = CampaignConfig(**SMALL, executor=executor, workers=2)
        run_campaign(tmp_path / executor, config=cfg)
        states[executor] = final_state(tmp_path / executor)
    try:
        import ray

        ray.shutdown()
    except ImportError:  # pragma: no cover
        pass
    assert states["serial"] == states["process"]
    assert states["serial"] == states["ray"]
    assert states["serial"][0], "the hall of fame is not empty"


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    run_campaign(tmp_path / "straight", config=cfg)
    run_campaign(tmp_path / "broken", config=cfg, stop_after=2)
    run_campaign(tmp_path / "broken", resume=True, stop_after=1)
    run_campaign(tmp_path / "broken", resume=True)
    assert final_state(tmp_path / "broken") == final_state(tmp_path / "straight")
    log = [json.loads(x) for x in (tmp_path / "broken" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in log] == list(range(0, 7))


def _cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _evolve(*args: str) -> list[str]:
    return [sys.executable, "-m", "evolve.cli", *args]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 8, "executor": "serial"}))
    straight = tmp_path / "straight"
    subprocess.run(_evolve("run", "--config", str(config), "--out", str(straight)), check=True,
                   env=_cli_env(), capture_output=True, timeout=300)
    expected = final_state(straight)
    for i, delay in enumerate((4.0, 6.0, 8.0)):
        run = tmp_path / f"killed{i}"
        proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                                env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # every file that exists is complete JSON
        for name in ("checkpoint.json", "hall_of_fame.json", "config.json"):
            if (run / name).exists():
                json.loads((run / name).read_text())
        if not (run / "checkpoint.json").exists():
            continue  # killed before the first checkpoint: nothing to resume, as it should be
        subprocess.run(_evolve("resume", str(run)), check=True, env=_cli_env(),
                       capture_output=True, timeout=300)
        assert final_state(run) == expected


def test_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**SMALL, "generations": 400, "executor": "serial"}))
    run = tmp_path / "run"
    proc = subprocess.Popen(_evolve("run", "--config", str(config), "--out", str(run)),
                            env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.json").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "evolve resume" in err
    state = json.loads((run / "checkpoint.json").read_text())
    assert 0 <= state["campaign"]["generation"] < 400


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


def test_resume_refuses_corrupt_checkpoint_and_changes_nothing(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    run_campaign(tmp_path / "run", config=cfg, stop_after=1)
    checkpoint = tmp_path / "run" / "checkpoint.json"
    original = checkpoint.read_text()
    for corrupt in (original[: len(original) // 2], "[]", '{"format": 1}', "\x00\x01"):
        checkpoint.write_text(corrupt)
        result = CliRunner().invoke(main, ["resume", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert "corrupt" in result.output and "Traceback" not in result.output
        assert checkpoint.read_text() == corrupt
    result = CliRunner().invoke(main, ["resume", str(tmp_path / "missing")])
    assert result.exit_code == 2


def test_show_json_lists_hall_of_fame_best_first(tmp_path):
    cfg = CampaignConfig(**SMALL, executor="serial")
    result = CliRunner().invoke(main, ["run", "--config", _write(tmp_path, cfg), "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    shown = json.loads(CliRunner().invoke(main, ["show", str(tmp_path / "run"), "--json"]).output)
    scores = [e["score"] for e in shown["hall_of_fame"]]
    assert scores == sorted(scores, reverse=True) and all("rule" in e for e in shown["hall_of_fame"])
    assert (tmp_path / "run" / "report.md").exists()
    assert (tmp_path / "run" / "score.png").stat().st_size > 1000


def _write(tmp_path: Path, cfg: CampaignConfig) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)
