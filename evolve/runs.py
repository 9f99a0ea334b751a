"""Reading run directories: the hall of fame and the best rule of a campaign."""

from __future__ import annotations

import json
from pathlib import Path

from evolve.errors import UserError

HALL_OF_FAME = "hall_of_fame.json"


def read_hall_of_fame(run_dir: str | Path) -> list[dict]:
    """The hall of fame of a run directory, best first; a clear UserError when unreadable."""
    path = Path(run_dir) / HALL_OF_FAME
    if not Path(run_dir).is_dir():
        raise UserError(f"run directory {run_dir} does not exist; give the --out folder of `evolve run`")
    if not path.is_file():
        raise UserError(f"{path} is missing: the campaign has not written its hall of fame yet")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); restore it or rerun `evolve resume`") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("rule"), str) for e in entries):
        raise UserError(f"{path} is not a list of {{rule, score}} objects")
    if not entries:
        raise UserError(f"{path} is empty: the campaign found no rule yet")
    return entries


def best_rule(run_dir: str | Path) -> str:
    return read_hall_of_fame(run_dir)[0]["rule"]


__all__ = ["HALL_OF_FAME", "best_rule", "read_hall_of_fame"]
