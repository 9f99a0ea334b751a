"""Budgets of one `evolve run`/`resume` call: a wall-clock limit and a number of evaluations.

A budget only decides *where* a campaign stops, always at a generation boundary with a
checkpoint, so a campaign stays a function of (config, seed): a run stopped by a budget and
resumed ends in the state of one that never stopped. Budgets are not part of ``config.json``.

* ``max_evaluations``: stop at the end of the generation in which the run's candidate count
  (the log's ``evaluations``, equivalence-cache hits included) reaches the number; a
  generation is never cut, so a run may pass it by less than one batch.
* ``time_limit``: stop before a generation that would not finish in time, keeping back what
  the final selection, the funnel and the report are expected to take (estimated from what
  this run has measured so far: seconds per tier-2 rule and per full proxy suite). The
  estimate can be wrong, most of all before the first generation has been timed; the report
  says how long the run took.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from evolve.errors import UserError
from fitness.score import Result

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)")
RECENT = 3  # the next generation is predicted to take as long as the slowest of the last 3
FIXED_FINISH_S = 8.0  # plots, report, hall-of-fame simplification: measured 3-8 s here


def parse_duration(text: str, what: str = "--time-limit") -> float:
    """``"90"``, ``"90s"``, ``"30m"``, ``"1.5h"`` or ``"1h30m"`` -> seconds (UserError if bad)."""
    spec = str(text).strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(spec):
        match = _PART.match(spec, pos)
        if match is None:
            break
        total += float(match.group(1)) * _UNITS[match.group(2) or "s"]
        pos = match.end()
    if not spec or pos != len(spec) or not math.isfinite(total) or total <= 0:
        raise UserError(f"{what} {text!r}: expected a positive duration such as 90s, 30m, "
                        "1.5h or 1h30m (a plain number is seconds)")
    return total


@dataclass
class Budget:
    """What one call may spend; ``started`` is when its clock began (``time.monotonic()``)."""

    time_limit: float | None = None  # seconds of wall-clock time from ``started``
    max_evaluations: int | None = None  # candidates scored in the whole run
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.time_limit is not None and not (math.isfinite(self.time_limit)
                                                and self.time_limit > 0):
            raise UserError(f"time limit must be a positive number of seconds, got "
                            f"{self.time_limit!r}")
        if self.max_evaluations is not None and (isinstance(self.max_evaluations, bool) or
                                                 not isinstance(self.max_evaluations, int) or
                                                 self.max_evaluations < 1):
            raise UserError(f"--max-evaluations must be a whole number >= 1, got "
                            f"{self.max_evaluations!r}")

    @property
    def limited(self) -> bool:
        return self.time_limit is not None or self.max_evaluations is not None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float | None:
        """Seconds left under the time limit (None without one)."""
        return None if self.time_limit is None else self.time_limit - self.elapsed()

    def spent(self, evaluations: int) -> bool:
        """Whether the evaluation budget is used up."""
        return self.max_evaluations is not None and evaluations >= self.max_evaluations

    def describe(self) -> str:
        parts = []
        if self.time_limit is not None:
            parts.append(f"time limit {format_duration(self.time_limit)}")
        if self.max_evaluations is not None:
            parts.append(f"at most {self.max_evaluations} evaluations")
        return ", ".join(parts) or "no budget"


def format_duration(seconds: float) -> str:
    """``95`` -> ``"1m35s"``; the shortest of h/m/s that says it."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s") if s or not h else f"{h}h"


class BudgetClock:
    """What this run has measured, and the stop decision at each generation boundary.

    Fed by the runner with each generation's wall time, its fresh (not cached) proxy results
    and the wall time of its tier-2 batch. ``Result.seconds`` is a worker's own time for one
    rule, so a full proxy suite's cost (for the held-out funnel, which the driver runs alone)
    is measured on the candidates that passed the hurdle. Tier 2 is measured as wall time per
    round of ``workers`` rules, the slowest recent round counting: rules trained side by side
    on a loaded machine take longer each than one alone, and the final confirmation is such
    rounds.
    """

    def __init__(self, budget: Budget, workers: int, confirm: int, funnel_ratio: float = 1.0,
                 real_k: int = 0, confirm_scale: float = 1.0, variants: int = 0):
        self.budget = budget
        self.workers = max(1, workers)
        self.confirm = confirm
        self.confirm_scale = confirm_scale  # confirmation seeds / tier-2 seeds: its rounds' cost
        self.variants = variants  # warmup variants per confirmed rule (warmup_betas)
        self.real_k = real_k  # tier-2 rules a generation may add (and so the end may confirm)
        self.funnel_ratio = funnel_ratio  # held-out suite cost / search suite cost
        self.durations: list[float] = []
        self.suite_seconds: list[float] = []  # per rule that ran the whole proxy suite
        self.real_rounds: list[float] = []  # wall seconds per round of `workers` tier-2 rules

    @classmethod
    def for_run(cls, budget: Budget | None, config: Any, workers: int) -> BudgetClock | None:
        """The clock of a run with ``config`` (a CampaignConfig), or None without a budget."""
        if budget is None or not budget.limited:
            return None
        from fitness.tasks import get_suite

        try:
            ratio = len(get_suite(config.heldout_suite)) / max(1, len(get_suite(config.suite)))
        except KeyError:
            ratio = 1.0
        return cls(budget, workers, config.confirm, ratio, config.real_k,
                   config.confirm_seeds / config.real_seeds, len(config.warmup_betas))

    def record(self, seconds: float, proxy: list[Result], real_seconds: float = 0.0,
               real_rules: int = 0) -> None:
        """One generation: its wall time, its fresh proxy results, and the wall time of its
        tier-2 batch of ``real_rules`` rules."""
        self.durations.append(seconds)
        self.suite_seconds = (self.suite_seconds + [
            r.seconds for r in proxy if r.hurdle != "rejected" and r.seconds > 0])[-200:]
        if real_rules:
            self.real_rounds.append(real_seconds / math.ceil(real_rules / self.workers))

    def _real_round(self) -> float:
        """Wall seconds of one round of tier-2 rules: the slowest of the recent ones."""
        return max(self.real_rounds[-2 * RECENT:], default=0.0)

    def next_generation(self) -> float:
        """Predicted wall time of the next generation (0 before any was timed): the slowest of
        the recent ones, or a generation that trains ``real_k`` rules on tier 2 if slower."""
        real = math.ceil(self.real_k / self.workers) * self._real_round()
        return max(self.durations[-RECENT:] + [real], default=0.0)

    def finish_estimate(self, real_entries: int, funnel_rules: int) -> float:
        """Seconds the final selection, the funnel, plots and report are expected to take
        after one more generation (which may add ``real_k`` rules to confirm): the confirmed
        rules and their warmup variants on the fresh seeds, the variants on tier 2's too."""
        confirm = min(self.confirm, real_entries + self.real_k)
        variants = confirm * self.variants
        real = (math.ceil((confirm + variants) / self.workers) * self.confirm_scale
                + math.ceil(variants / self.workers)) * self._real_round()
        suite = (sum(self.suite_seconds) / len(self.suite_seconds) if self.suite_seconds
                 else 0.0)
        # the funnel's rules, adam and sgd, then adam and sgd again for the loss curves
        proxy = (funnel_rules + 4) * suite * self.funnel_ratio
        return FIXED_FINISH_S + real + proxy

    def stop_reason(self, evaluations: int, real_entries: int, funnel_rules: int) -> str | None:
        """Why the run must stop now, or None to go on."""
        budget = self.budget
        if budget.spent(evaluations):
            return f"--max-evaluations {budget.max_evaluations} reached ({evaluations} candidates)"
        remaining = budget.remaining()
        if remaining is None:
            return None
        need = self.next_generation() + self.finish_estimate(real_entries, funnel_rules)
        if need > remaining:
            return (f"--time-limit {format_duration(budget.time_limit or 0)}: "
                    f"{format_duration(budget.elapsed())} used, another generation and the "
                    f"report need about {format_duration(need)}")
        return None


def end_status(strategy: Any, reason: str | None, finish_seconds: float,
               budget: Budget | None) -> dict[str, Any]:
    """``status.json`` of a call that ended the run (``reason`` None) or stopped it: which
    generation the report describes, and how long the call and its end took."""
    return {"state": "stopped" if reason else "finished", "reason": reason,
            "generation": strategy.generation, "generations": strategy.config.generations,
            "evaluations": strategy.evaluations,
            "seconds": round(budget.elapsed(), 2) if budget is not None else None,
            "finish_seconds": round(finish_seconds, 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


__all__ = ["Budget", "BudgetClock", "end_status", "format_duration", "parse_duration"]
