"""The live view as a user meets it: TensorBoard scalars listed from the event files, report.html
rewritten while the run goes and rendered by headless Chromium, the report left by a stop, and
the progress display (ETA, legend, plain lines)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from test_tiers import tiny_config

import evolve.live
from evolve.config import CampaignConfig
from evolve.live import read_scalars, read_texts
from evolve.progress import LEGEND, CampaignProgress, Eta, Steps
from evolve.runner import run_campaign

SCALARS = {"score/search_best", "score/population_median", "score/population_best",
           "score/real_tier_best", "score/heldout_champion", "score/final_selection",
           "rate/candidates_per_s", "rate/evaluated_per_s", "rate/cache_hit_share",
           "rate/hurdle_rejection_share", "workers/lost_evaluations",
           "workers/retried_evaluations", "size/mean", "size/max", "count/evaluations",
           "count/real_scored", "time/seconds_per_generation"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync"]


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A small finished campaign with the real-data tier (a tiny user task), watched live, with
    the page rewritten after every generation; the progress callback keeps each page it saw."""
    tmp = tmp_path_factory.mktemp("live")
    run = tmp / "run"
    pages = []

    def progress(row, total):
        page = run / "report.html"
        if page.exists():
            pages.append((row["generation"], page.read_text()))

    old = evolve.live.REWRITE_EVERY_S
    evolve.live.REWRITE_EVERY_S = 0.0  # a page after every generation
    try:
        run_campaign(run, config=tiny_config(tmp, generations=4), finish=True, live=True,
                     progress=progress)
    finally:
        evolve.live.REWRITE_EVERY_S = old
    (tmp / "pages.json").write_text(json.dumps(pages))
    return run


def test_tensorboard_scalars_follow_the_log(finished, capsys):
    scalars = read_scalars(finished / "tensorboard")
    with capsys.disabled():
        print("\nTensorBoard scalars of", finished.name)
        for tag, points in sorted(scalars.items()):
            print(f"  {tag:<32} {len(points):>2} points, last {points[-1]}")
    assert SCALARS <= set(scalars), SCALARS - set(scalars)
    log = _log(finished)
    best = scalars["score/search_best"]
    assert [step for step, _ in best] == [r["generation"] for r in log]
    for (_, value), row in zip(best, log):  # event files hold float32
        assert value == pytest.approx(row["best_score"], rel=1e-6)
    assert scalars["count/evaluations"][-1][1] == log[-1]["evaluations"]
    heldout = json.loads((finished / "heldout.json").read_text())
    assert [s for s, _ in scalars["score/heldout_champion"]] == sorted(
        c["generation"] for c in heldout["champions"])
    texts = read_texts(finished / "tensorboard")
    selection = json.loads((finished / "selection.json").read_text())
    assert texts["rule/final_selection"][-1][1] == selection["rule"]
    assert texts["rule/search_best"][-1][1] == log[-1]["best_rule"]


def test_the_live_view_changes_nothing_the_campaign_computes(finished):
    from scripts.reliability_runs import final_state

    tmp = finished.parent
    config = json.loads((finished / "config.json").read_text())
    run_campaign(tmp / "unwatched", config=CampaignConfig.from_dict(config), finish=True)
    assert final_state(tmp / "unwatched") == final_state(finished)
    assert not (tmp / "unwatched" / "tensorboard").exists()


def test_report_html_is_rewritten_while_the_run_goes(finished):
    pages = json.loads((finished.parent / "pages.json").read_text())
    # seen before generations 1..4 (the page of the generation before, written atomically)
    assert [g for g, _ in pages] == [1, 2, 3, 4]
    for generation, page in pages:
        assert page.endswith("</html>\n") and "http-equiv='refresh'" in page
        assert f"<b>{generation - 1} / 4</b>" in page
    final = (finished / "report.html").read_text()
    assert "http-equiv" not in final and "finished" in final
    assert final.count("data:image/png;base64,") == 3  # score, Pareto front, loss curves
    assert not list(finished.glob("*.tmp*")), "a temp file was left behind"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a file, as a user's browser opens it."""
    browser = _chromium()
    assert browser
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (`apt-get install "
                    "chromium`; .ci/run installs it): report.html is not opened in a browser")
def test_report_html_renders_in_headless_chromium(finished, tmp_path):
    dom = chromium(finished / "report.html", tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    selection = json.loads((finished / "selection.json").read_text())
    assert f'id="best-rule">{selection["rule"]}</code>' in dom.stdout
    assert 'data-plots-loaded="3"' in dom.stdout, "the browser did not decode the three plots"
    shot = tmp_path / "report.png"
    done = chromium(finished / "report.html", tmp_path / "profile", "--hide-scrollbars",
                    "--window-size=1200,1600", f"--screenshot={shot}")
    assert done.returncode == 0 and shot.stat().st_size > 20_000, done.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1200) and pixels.std() > 0.05  # not a blank page


def test_a_signal_leaves_a_report_and_plots_and_resume_finishes(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")
    run = tmp_path / "run"

    def progress(row, total):
        if row["generation"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled after the next generation

    with pytest.raises(SystemExit) as stopped:
        run_campaign(run, config=tiny_config(tmp_path, generations=5), finish=True, live=True,
                     progress=progress)
    assert stopped.value.code == 143
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "stopped" and status["reason"].startswith("SIGTERM")
    assert "**Stopped at generation 2 of 5**" in (run / "report.md").read_text()
    assert (run / "score.png").stat().st_size > 1000 and (run / "pareto.png").exists()
    assert "stopped: SIGTERM" in (run / "report.html").read_text()
    assert not (run / "selection.json").exists(), "a signal must not start new scoring"
    run_campaign(run, resume=True, finish=True)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert (run / "selection.json").exists()


def test_the_eta_leaves_out_start_up_and_follows_recent_generations():
    now = [0.0]
    eta = Eta(clock=lambda: now[0])
    for t in (40.0, 41.0, 42.0):  # generation 0 took 40 s of start-up, then 1 s each
        now[0] = t
        eta.tick()
    # 10 s left; the old estimate, elapsed / generations done x generations left, said 140 s
    assert eta.remaining(10) == pytest.approx(10.0)
    for t in (44.0, 46.0):  # generations slow down to 2 s: the estimate follows
        now[0] = t
        eta.tick()
    assert eta.remaining(10) == pytest.approx(15.0)
    for _ in range(20):
        now[0] += 2.0
        eta.tick()
    assert eta.remaining(10) == pytest.approx(20.0)  # only the recent ones count


def test_plain_progress_explains_its_columns_once_and_counts_budgets(capsys):
    from evolve.budget import Budget

    now = [0.0]
    bar = CampaignProgress(budget=Budget(max_evaluations=40), rich=False, clock=lambda: now[0])
    for gen in range(3):
        now[0] += 5.0
        bar({"generation": gen, "best_score": 1.1, "median_score": 0.9, "candidates": 10,
             "evaluations": 10 * (gen + 1), "cache_hits": 2, "evaluated": 8,
             "hurdle_rejections": 4, "candidates_per_s": 2.0, "real_best": None}, 100)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == LEGEND and sum(line == LEGEND for line in lines) == 1
    assert lines[1].endswith("eta after 2 generations")
    # 30 of 40 evaluations used: one more generation of 10, not 97 more
    assert "cache 20%  hurdle 50%" in lines[3] and lines[3].endswith("eta 5.0s")
    steps = Steps(3, "compare", rich=False)
    steps.advance(info="evolution seed 0 done")
    assert "[1/3] evolution seed 0 done" in capsys.readouterr().err
    # a guessed total is marked, and grows when the steps outrun it
    guess = Steps(2, "validate", rich=False, estimate=True)
    for i in range(3):
        guess.advance(info=f"run {i}")
    assert [line.split(" run")[0] for line in capsys.readouterr().err.splitlines()] == [
        "[1/~2]", "[2/~2]", "[3/~3]"]
    quiet = CampaignProgress(quiet=True, rich=False)
    quiet({"generation": 0}, 5)
    assert capsys.readouterr().err == ""
