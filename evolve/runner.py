"""Running a campaign in a run directory: cached scoring, checkpoints, resume, progress.

Run directory layout (everything JSON / JSONL / Markdown / PNG, written atomically)::

    RUN/config.json         the CampaignConfig
    RUN/checkpoint.json     the campaign state (every N generations, on SIGINT/SIGTERM, and at
                            the end), with the number of cache lines it relies on
    RUN/cache.jsonl         the equivalence cache, append-only: fingerprint -> compact result
    RUN/log.jsonl           one line per generation: best and median score, sizes, cache hits,
                            evaluations/s
    RUN/hall_of_fame.json   best rules first: rule, score, per-task scores, simplified form
    RUN/heldout.json        the funnel: hall of fame and champions re-scored on held-out tasks
    RUN/report.md, RUN/*.png

A checkpoint is written after the generation's log line, so on resume the log is cut back to
the checkpoint's generation and the run continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evolve.campaign import FLOOR, Campaign, CampaignConfig, ConfigError
from evolve.errors import UserError
from evolve.evaluation import fingerprint
from evolve.executors import make_executor
from primitives.files import atomic_write_json, atomic_write_text

CHECKPOINT = "checkpoint.json"
CONFIG = "config.json"
LOG = "log.jsonl"
HALL = "hall_of_fame.json"
CACHE = "cache.jsonl"


class CachedScorer:
    """The functional-equivalence cache in front of an executor.

    Rules whose fingerprints (outputs on fixed probe gradients) agree share one evaluation.
    It lives in the driver and is saved with each checkpoint, so which rules share a result
    does not depend on the executor or on a restart.
    """

    def __init__(self, executor, cache: dict[str, dict] | None = None):
        self.executor = executor
        self.cache: dict[str, dict] = dict(cache or {})
        self.hits = 0
        self.misses = 0
        self.new_entries: list[tuple[str, dict]] = []  # not yet appended to cache.jsonl

    def score(self, rules: list[str]) -> list[dict]:
        prints = [fingerprint(r) for r in rules]
        todo: list[str] = []
        todo_prints: list[str] = []
        for rule, fp in zip(rules, prints):
            if fp in self.cache or fp in todo_prints:
                self.hits += 1
            else:
                todo.append(rule)
                todo_prints.append(fp)
                self.misses += 1
        for fp, result in zip(todo_prints, self.executor.map(todo)):
            self.cache[fp] = _compact(result)
            self.new_entries.append((fp, self.cache[fp]))
        return [dict(self.cache[fp]) for fp in prints]


def _compact(result: dict) -> dict:
    """What the campaign keeps of a result: aggregate, per-task scores, reasons, best lrs."""
    out = {k: result[k] for k in ("aggregate", "reason", "hurdle") if k in result}
    out["aggregate"] = _finite_or(out.get("aggregate"), FLOOR)
    out["tasks"] = [{"task": t.get("task"), "score": _finite_or(t.get("score"), FLOOR),
                     "best_lr": _finite_or(t.get("best_lr"), None), "reason": t.get("reason")}
                    for t in result.get("tasks", [])]
    return out


def _finite_or(value, default):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


class RunDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def create(self, config: CampaignConfig) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            if self.exists():
                raise UserError(f"{self.path} already holds a campaign; continue it with "
                                f"`evolve resume {self.path}` or choose another --out")
            raise UserError(f"{self.path} exists and is not empty; choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create run directory {self.path}: {err.strerror}") from None
        atomic_write_json(self.file(CONFIG), config.to_dict())
        atomic_write_text(self.file(LOG), "")
        atomic_write_text(self.file(CACHE), "")

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.file(CHECKPOINT)
        if not self.path.is_dir():
            raise UserError(f"run directory {self.path} does not exist")
        if not path.is_file():
            raise UserError(f"{path} is missing: nothing to resume (start with `evolve run`)")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("format") != 1:
                raise ValueError("not an evolve-optim checkpoint (format 1)")
            Campaign.from_state_dict(state["campaign"])  # validates every field
            entries = state["cache_entries"]
            if not isinstance(entries, int) or entries < 0:
                raise ValueError("cache_entries must be a count")
            state["cache"] = self._read_cache(entries)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} is corrupt ({_one_line(err)}); nothing was changed — restore "
                            "it from a copy or start a new campaign") from None
        return state

    def _read_cache(self, entries: int) -> dict[str, dict]:
        cache: dict[str, dict] = {}
        if entries == 0:
            return cache
        with open(self.file(CACHE), encoding="utf-8") as fh:
            for _, line in zip(range(entries), fh):
                row = json.loads(line)
                cache[row["fp"]] = row["result"]
        if len(cache) != entries:
            raise ValueError(f"{CACHE} holds {len(cache)} entries, the checkpoint needs {entries}")
        return cache

    def truncate_cache(self, cache: dict[str, dict]) -> None:
        """Drop lines appended after the checkpoint (a kill between append and checkpoint)."""
        atomic_write_text(self.file(CACHE), "".join(
            json.dumps({"fp": fp, "result": r}, allow_nan=False) + "\n" for fp, r in cache.items()))

    def save_checkpoint(self, campaign: Campaign, scorer: CachedScorer, counters: dict) -> None:
        if scorer.new_entries:
            with open(self.file(CACHE), "a", encoding="utf-8") as fh:
                for fp, result in scorer.new_entries:
                    fh.write(json.dumps({"fp": fp, "result": result}, allow_nan=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            scorer.new_entries.clear()
        atomic_write_json(self.file(CHECKPOINT), {
            "format": 1,
            "campaign": campaign.state_dict(),
            "cache_entries": len(scorer.cache),
            "counters": counters,
        })

    def append_log(self, row: dict) -> None:
        with open(self.file(LOG), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")
            fh.flush()

    def read_log(self) -> list[dict]:
        rows = []
        if not self.file(LOG).exists():
            return rows
        for line in self.file(LOG).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill; the checkpoint decides what counts
        return rows

    def truncate_log(self, generation: int) -> None:
        rows = [r for r in self.read_log() if r.get("generation", 0) <= generation]
        atomic_write_text(self.file(LOG), "".join(json.dumps(r) + "\n" for r in rows))

    def write_hall_of_fame(self, campaign: Campaign) -> None:
        atomic_write_json(self.file(HALL), [
            {"rule": ind.rule, "score": ind.score, "size": ind.size, "generation": ind.birth,
             "tasks": ind.tasks, "reason": ind.reason}
            for ind in campaign.hall_of_fame
        ])


def _one_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current generation."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker thread)
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_campaign(run_dir: str | Path, *, config: CampaignConfig | None = None, resume: bool = False,
                 progress: Callable[[dict], None] | None = None, executor=None,
                 stop_after: int | None = None) -> Campaign:
    """Start (``config``) or continue (``resume``) a campaign in ``run_dir`` until it is done.

    ``stop_after`` stops after that many generations in this call (tests use it to simulate an
    interruption). Returns the campaign; on SIGINT/SIGTERM raises SystemExit after saving.
    """
    rd = RunDirectory(run_dir)
    if resume:
        state = rd.load_checkpoint()
        campaign = Campaign.from_state_dict(state["campaign"])
        counters = dict(state.get("counters", {}))
        rd.truncate_log(campaign.generation)
        cache = state["cache"]
        rd.truncate_cache(cache)
    else:
        if config is None:
            raise ConfigError("a new campaign needs a config")
        rd.create(config)
        campaign = Campaign(config)
        counters = {}
        cache = {}
    cfg = campaign.config
    own_executor = executor is None
    if executor is None:
        executor = make_executor(cfg.executor, cfg.suite, cfg.seed, cfg.workers, cfg.ray_address)
    scorer = CachedScorer(executor, cache)
    scorer.hits = int(counters.get("cache_hits", 0))
    scorer.misses = int(counters.get("evaluated", 0))
    steps = 0
    try:
        with _StopFlag() as stop:
            while not campaign.done:
                started = time.perf_counter()
                hits0, misses0 = scorer.hits, scorer.misses
                rules = campaign.ask()
                results = scorer.score(rules)
                campaign.tell(rules, results)
                elapsed = time.perf_counter() - started
                row = campaign.stats()
                row.update({
                    "candidates": len(rules),
                    "cache_hits": scorer.hits - hits0,
                    "evaluated": scorer.misses - misses0,
                    "hurdle_rejections": sum(1 for r in results if r.get("hurdle") == "rejected"),
                    "seconds": round(elapsed, 4),
                    "candidates_per_s": round(len(rules) / elapsed, 2) if elapsed > 0 else None,
                })
                rd.append_log(_json_safe(row))
                rd.write_hall_of_fame(campaign)
                counters = {"cache_hits": scorer.hits, "evaluated": scorer.misses}
                steps += 1
                last = campaign.done or stop.signal is not None or (stop_after and steps >= stop_after)
                if last or campaign.generation % cfg.checkpoint_every == 0:
                    rd.save_checkpoint(campaign, scorer, counters)
                if progress:
                    progress(row)
                if stop.signal is not None:
                    name = "SIGINT" if stop.signal == signal.SIGINT else "SIGTERM"
                    print(f"{name}: checkpoint saved at generation {campaign.generation}; "
                          f"continue with `evolve resume {rd.path}`", file=sys.stderr)
                    raise SystemExit(130 if stop.signal == signal.SIGINT else 143)
                if stop_after and steps >= stop_after:
                    break
    finally:
        if own_executor:
            executor.close()
    return campaign


def _json_safe(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


__all__ = ["CachedScorer", "RunDirectory", "run_campaign"]
