"""Every read and write of a run directory; the layout itself is spelled in :mod:`evolve.rundir`.

Writes are atomic (:mod:`primitives.files`: temp file, fsync, rename) except the two append-only
JSONL files, whose lines are appended whole and which a resume cuts back to the checkpoint.
Readers turn a missing, truncated or foreign file into a one-line :class:`UserError` that says
what to do, and never change anything on disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.config import CampaignConfig, ConfigError
from evolve.errors import UserError
from evolve.rundir.lock import LOCK, RunLock
from evolve.strategy import Strategy
from fitness.score import Result
from primitives.files import atomic_write, atomic_write_json, atomic_write_text

CONFIG = "config.json"
CHECKPOINT = "checkpoint.json"
CACHE = "cache.jsonl"
LOG = "log.jsonl"
HALL = "hall_of_fame.json"
HELDOUT = "heldout.json"
SELECTION = "selection.json"
STATUS = "status.json"
REPORT = "report.md"
SCORE_PLOT = "score.png"
LOSS_PLOT = "loss_curves.png"
PARETO_PLOT = "pareto.png"
REPORT_HTML = "report.html"
TENSORBOARD = "tensorboard"
VALIDATION = "validation"
CHECKPOINT_FORMAT = 2


@dataclass
class Checkpoint:
    """What ``checkpoint.json`` (with the cache lines it counts) holds, read and checked once."""

    strategy: Strategy
    cache: dict[str, Result]
    counters: dict[str, int]
    log: list[dict[str, Any]]  # the log rows up to the checkpoint's generation
    notes: list[str] = field(default_factory=list)  # what a resume had to repair


def _read_json(path: Path, fix: str) -> Any:
    """A result file's JSON; a one-line UserError that ends with ``fix`` when it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{path} is not valid JSON ({_one_line(err)}); {fix}") from None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _span(gens: list[int]) -> str:
    return str(gens[0]) if len(gens) == 1 else f"{gens[0]}-{gens[-1]}"


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)


class RunDirectory:
    """One run directory on disk (see :mod:`evolve.rundir` for the layout)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def lock(self, purpose: str = "a campaign") -> RunLock:
        return RunLock(self.path, purpose)

    def require_folder(self) -> None:
        if not self.path.is_dir():
            raise UserError(f"run directory {self.path} does not exist; give the --out folder "
                            "of `evolve run`")

    def _existing(self, name: str, missing: str) -> Path:
        """``RUN/name``, or a UserError: the folder is missing, or the file (``missing`` says)."""
        self.require_folder()
        path = self.file(name)
        if not path.is_file():
            raise UserError(f"{path} is missing: {missing}")
        return path

    # ------------------------------------------------------------------ a new run
    def prepare_new(self) -> None:
        """Check that a new campaign can go here, and create the folder; UserError if not."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path} is a file, not a folder; choose another --out")
        if self.path.is_dir():
            entries = [p.name for p in self.path.iterdir() if p.name != LOCK]
            if self.file(CONFIG).exists():
                raise UserError(f"{self.path} already holds a campaign; continue it with "
                                f"`evolve resume {self.path}` or choose another --out")
            if entries:
                raise UserError(f"{self.path} exists and is not empty; choose another --out")
        check_writable_folder(self.path, "--out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create run directory {self.path} ({err.strerror or err}); "
                            "choose another --out") from None

    def create(self, strategy: Strategy) -> None:
        """Write config, empty log and cache, and a checkpoint of the unstarted strategy."""
        atomic_write_json(self.file(CONFIG), strategy.config.to_dict())
        atomic_write_text(self.file(LOG), "")
        atomic_write_text(self.file(CACHE), "")
        self.save_checkpoint(strategy, [], 0, {}, [])

    # ------------------------------------------------------------------ config and checkpoint
    def has_config(self) -> bool:
        return self.file(CONFIG).is_file()

    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).is_file()

    def has_results(self) -> bool:
        """Whether a generation has left anything here (a hall of fame, a log row)."""
        log = self.file(LOG)
        return self.file(HALL).exists() or (log.is_file() and log.stat().st_size > 0)

    def read_config(self) -> CampaignConfig:
        path = self._existing(CONFIG, f"{self.path} holds no campaign; start one with "
                                      f"`evolve run --out {self.path}`")
        try:
            return CampaignConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, ConfigError, TypeError) as err:
            raise UserError(f"{path} is corrupt ({_one_line(err)}); nothing was changed — "
                            "restore it or start a new campaign") from None

    def write_config(self, config: CampaignConfig) -> None:
        atomic_write_json(self.file(CONFIG), config.to_dict())

    def load_checkpoint(self) -> Checkpoint:
        """Read and check the checkpoint and the cache lines it counts; UserError if corrupt."""
        path = self._existing(CHECKPOINT, "nothing to resume (start with `evolve run`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("format") == 1:
                raise UserError(f"{path} was written by an older evolve-optim (checkpoint "
                                "format 1) and cannot be resumed; `evolve show` still reads it")
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not an evolve-optim checkpoint (format {CHECKPOINT_FORMAT})")
            strategy = Strategy.from_state_dict(data["strategy"])
            entries = data["cache_entries"]
            if not isinstance(entries, int) or entries < 0:
                raise ValueError("cache_entries must be a count")
            counters = {str(k): int(v) for k, v in data["counters"].items()}
            log = data["log"]
            if not isinstance(log, list) or not all(isinstance(r, dict) for r in log):
                raise ValueError("log must be a list of rows")
        except UserError:
            raise
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError,
                ConfigError) as err:
            raise UserError(f"{path} is corrupt ({_one_line(err)}); nothing was changed — "
                            "restore it from a copy or start a new campaign") from None
        cache, notes = self._read_cache(entries)
        return Checkpoint(strategy, cache, counters, log, notes)

    def save_checkpoint(self, strategy: Strategy, new_cache: list[tuple[str, Result]],
                        cache_size: int, counters: dict[str, int], log: list[dict]) -> None:
        """Append the new cache lines (fsynced), then replace the checkpoint atomically."""
        if new_cache:
            with open(self.file(CACHE), "a", encoding="utf-8") as fh:
                fh.write(_jsonl([{"fp": fp, "result": r.to_dict()} for fp, r in new_cache]))
                fh.flush()
                os.fsync(fh.fileno())
        atomic_write_json(self.file(CHECKPOINT), {
            "format": CHECKPOINT_FORMAT,
            "strategy": strategy.state_dict(),
            "cache_entries": cache_size,
            "counters": counters,
            "log": log,
        })

    def _read_cache(self, entries: int) -> tuple[dict[str, Result], list[str]]:
        # ``entries`` counts lines: an entry evaluated again under new thresholds is appended
        # again, and the later line replaces the earlier one
        cache: dict[str, Result] = {}
        damaged = read = 0
        if entries and self.file(CACHE).is_file():
            with open(self.file(CACHE), encoding="utf-8", errors="replace") as fh:
                for _, line in zip(range(entries), fh):
                    try:
                        row = json.loads(line)
                        cache[str(row["fp"])] = Result.from_dict(row["result"])
                        read += 1
                    except (ValueError, KeyError, TypeError, AttributeError):
                        damaged += 1
        notes = []
        if read < entries:
            notes.append(f"{CACHE} holds {read} of the {entries} entries the checkpoint "
                         f"counts ({damaged} damaged): the others are evaluated again, so rules "
                         "equivalent to them may score in the last digits unlike an "
                         "uninterrupted run")
        return cache, notes

    def restore(self, checkpoint: Checkpoint) -> list[str]:
        """Cut the log and cache back to the checkpoint, rebuild what was lost; returns notes."""
        notes = list(checkpoint.notes)
        keep = checkpoint.log
        rows, damaged = self._read_log_lines()
        on_disk = {r.get("generation"): r for r in rows}
        missing = [r["generation"] for r in keep if on_disk.get(r.get("generation")) != r]
        kept = {r.get("generation") for r in keep}
        after = sorted(g for g in on_disk if isinstance(g, int) and g not in kept)
        if missing:
            notes.append(f"{LOG} had lost generation(s) {_span(missing)}: rewritten from the "
                         "checkpoint")
        if damaged:
            notes.append(f"{LOG}: {damaged} damaged line(s) dropped")
        if after:
            notes.append(f"generation(s) {_span(after)} ran after the last checkpoint and run "
                         "again")
        text = _jsonl(keep)
        if not self.file(LOG).is_file() or self.file(LOG).read_text(encoding="utf-8",
                                                                   errors="replace") != text:
            atomic_write_text(self.file(LOG), text)
        atomic_write_text(self.file(CACHE), _jsonl(
            [{"fp": fp, "result": r.to_dict()} for fp, r in checkpoint.cache.items()]))
        return notes

    # ------------------------------------------------------------------ log
    def append_log(self, row: dict) -> None:
        with open(self.file(LOG), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, allow_nan=False) + "\n")

    def _read_log_lines(self) -> tuple[list[dict], int]:
        rows: list[dict] = []
        damaged = 0
        if not self.file(LOG).is_file():
            return rows, 0
        for line in self.file(LOG).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                damaged += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                damaged += 1
        return rows, damaged

    def read_log(self) -> list[dict]:
        """The log's whole rows (a line cut by a kill is skipped)."""
        return self._read_log_lines()[0]

    # ------------------------------------------------------------------ results
    def write_hall_of_fame(self, entries: list[dict]) -> None:
        atomic_write_json(self.file(HALL), entries)

    def read_hall_of_fame(self) -> list[dict]:
        """The hall of fame, best first; a one-line UserError when there is none to read."""
        path = self._existing(HALL, "the campaign has not finished a generation yet")
        entries = _read_json(path, f"restore it or run `evolve resume {self.path}`")
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("rule"), str) for e in entries):
            raise UserError(f"{path} is not a list of {{rule, score}} objects")
        if not entries:
            raise UserError(f"{path} is empty: the campaign found no rule yet")
        return entries

    def write_heldout(self, funnel: dict) -> None:
        atomic_write_json(self.file(HELDOUT), funnel)

    def read_heldout(self) -> dict | None:
        """The held-out funnel, or None before the campaign has finished."""
        path = self.file(HELDOUT)
        if not path.is_file():
            return None
        funnel = _read_json(path, f"rerun the funnel with `evolve resume {self.path}`")
        ranking = funnel.get("ranking") if isinstance(funnel, dict) else None
        if not isinstance(ranking, list) or not all(
                isinstance(r, dict) and isinstance(r.get("rule"), str) for r in ranking):
            raise UserError(f"{path} has no ranking of {{rule, heldout_score}} objects")
        return funnel

    def write_selection(self, selection: dict) -> None:
        atomic_write_json(self.file(SELECTION), selection)

    def read_selection(self) -> dict | None:
        """The campaign's final selection (tier 2, confirmed), or None before its end."""
        path = self.file(SELECTION)
        if not path.is_file():
            return None
        selection = _read_json(path, f"rerun the selection with `evolve resume {self.path}`")
        if not isinstance(selection, dict) or not isinstance(selection.get("rule"), str):
            raise UserError(f"{path} names no selected rule")
        return selection

    def write_status(self, status: dict) -> None:
        atomic_write_json(self.file(STATUS), status)

    def read_status(self) -> dict | None:
        """How the last call left the run (``state`` finished or stopped, ``reason``, the
        ``generation`` its report describes), or None when no call has ended it yet."""
        try:
            status = json.loads(self.file(STATUS).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        return status if isinstance(status, dict) else None

    def report_is_final(self, generation: int) -> bool:
        """Whether the report is the end-of-run one for ``generation`` (not a stop report,
        nor one of fewer generations); runs from before ``status.json``: whether one exists."""
        status = self.read_status()
        if status is None:
            return self.has_report() and not self.file(STATUS).exists()
        return status.get("state") == "finished" and status.get("generation") == generation

    def write_report(self, text: str) -> Path:
        atomic_write_text(self.file(REPORT), text)
        return self.file(REPORT)

    def has_report(self) -> bool:
        return self.file(REPORT).is_file()

    def save_figure(self, fig: Any, name: str, dpi: int = 110) -> None:
        """A matplotlib figure as ``RUN/name`` (PNG), atomically."""
        atomic_write(self.file(name), lambda fh: fig.savefig(fh, format="png", dpi=dpi))

    # ------------------------------------------------------------------ rule selection
    def final_selection(self) -> tuple[str, str]:
        """(rule, how it was chosen): the campaign's answer, what ``RUN:best`` means.

        The real-data tier's choice confirmed on fresh seeds (``selection.json``, written when
        the campaign ends); before that, the hall of fame's first rule (the tier-2 leader when
        tier 2 has scored any, else the search champion); for runs made without tier 2, the
        held-out funnel's first rule.
        """
        selection = self.read_selection()
        if selection:
            return selection["rule"], selection.get("how", "the campaign's final selection")
        hall = self.read_hall_of_fame()
        if hall[0].get("tier") == "real":
            return hall[0]["rule"], "the real-data tier's leader (the campaign has not ended)"
        funnel = self.read_heldout()
        if funnel and funnel["ranking"]:
            return funnel["ranking"][0]["rule"], "the held-out funnel's first rule"
        return hall[0]["rule"], "the search champion (the held-out funnel has not run yet)"

    def select(self, selector: str) -> tuple[str, str]:
        """(rule, how) for ``best``, ``search``, ``heldout`` or a hall-of-fame rank ``N``."""
        if selector == "best":
            return self.final_selection()
        if selector == "search":
            hall = self.read_hall_of_fame()
            best = max(hall, key=lambda e: e.get("proxy_score", e.get("score")) or 0.0)
            return best["rule"], "the search champion (best proxy score)"
        if selector == "heldout":
            funnel = self.read_heldout()
            if not funnel or not funnel["ranking"]:
                raise UserError(f"{self.path} has no held-out funnel yet ({HELDOUT} is written "
                                f"when the campaign ends); use {self.path}:search")
            return funnel["ranking"][0]["rule"], "the held-out funnel's first rule"
        if selector.isdigit() and int(selector) >= 1:
            hall = self.read_hall_of_fame()
            rank = int(selector)
            if rank > len(hall):
                raise UserError(f"{self.file(HALL)} has {len(hall)} rules, asked for "
                                f"number {rank}")
            return hall[rank - 1]["rule"], f"number {rank} of the hall of fame"
        raise UserError(f"{self.path}:{selector}: expected RUN:best, RUN:search, RUN:heldout "
                        "or RUN:N (a hall-of-fame rank, N >= 1)")


def check_writable_folder(path: str | os.PathLike, what: str) -> Path:
    """Prove that files can be written in folder ``path`` (or created where it will be).

    Called before any work, so an unwritable ``--out`` fails in a second, not after an hour; a
    probe file is created and removed in the folder, or in its nearest existing parent, and
    nothing else is made. UserError when that fails.
    """
    folder = Path(path)
    probe_in = folder
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UserError(f"{probe_in} is a file, not a folder; choose another {what}")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_in, prefix=".evolve-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot write to {probe_in} ({err.strerror or err}); choose another "
                        f"{what} or fix its permissions") from None
    return folder


def check_writable_file(path: str | os.PathLike, what: str) -> Path:
    """The folder of an output file must exist and be writable; UserError if not."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise UserError(f"{target} is a folder; give {what} a file name")
    if not folder.is_dir():
        raise UserError(f"folder {folder} does not exist; create it or choose another {what}")
    return check_writable_folder(folder, what)


__all__ = ["CACHE", "CHECKPOINT", "CHECKPOINT_FORMAT", "CONFIG", "Checkpoint", "HALL", "HELDOUT",
           "LOG", "LOSS_PLOT", "PARETO_PLOT", "REPORT", "REPORT_HTML", "TENSORBOARD", "RunDirectory", "SCORE_PLOT", "STATUS", "VALIDATION", "check_writable_file",
           "check_writable_folder"]
