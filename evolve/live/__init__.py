"""The live view of a campaign: TensorBoard events every generation and ``report.html`` as it goes.

:class:`LiveView` is what :func:`evolve.runner.run_campaign` drives when ``live`` is on (the
CLI and the Python API turn it on). After each generation it writes TensorBoard scalars (scores,
throughput, cache and hurdle rates, lost evaluations, sizes) and, when the best rules change,
their text (:mod:`evolve.live.events`); at most every ``every`` seconds it redraws the score and
Pareto plots and rewrites ``report.html`` atomically (:mod:`evolve.live.html`), so a browser
pointed at the file follows the run. When the run ends or stops, the page and the events are
written once more with the final selection and the held-out champions.

It only reads what the run has decided and writes files of its own, so a campaign computes the
same with or without it (invariant 5).
"""

from __future__ import annotations

import math
import time
from typing import Any

from evolve.live.events import EventWriter, read_scalars, read_texts
from evolve.live.html import render
from evolve.plots import looked_up
from evolve.rundir import PARETO_PLOT, REPORT_HTML, SCORE_PLOT, TENSORBOARD, RunDirectory
from primitives.files import atomic_write_text

RELOAD_S = 15  # how often an open page reloads itself
REWRITE_EVERY_S = 15.0  # the least time between two rewrites of the page while the run goes


def row_scalars(row: dict[str, Any]) -> dict[str, float | None]:
    """The TensorBoard scalars of one log row (tags grouped as TensorBoard shows them)."""
    def share(part: Any, whole: Any) -> float | None:
        return part / whole if part is not None and whole else None

    seconds = row.get("seconds")
    return {
        "score/search_best": row.get("best_score"),
        "score/population_median": row.get("median_score"),
        "score/population_best": row.get("population_best"),
        "score/real_tier_best": row.get("real_best"),
        "rate/candidates_per_s": row.get("candidates_per_s"),
        "rate/evaluated_per_s": share(row.get("evaluated"), seconds),
        "rate/cache_hit_share": share(row.get("cache_hits"), looked_up(row)),
        "rate/hurdle_rejection_share": share(row.get("hurdle_rejections"), row.get("evaluated")),
        "workers/lost_evaluations": row.get("lost_evaluations"),
        "workers/retried_evaluations": row.get("retried_evaluations"),
        "size/mean": row.get("mean_size"),
        "size/max": row.get("max_size"),
        "count/evaluations": row.get("evaluations"),
        "count/real_scored": row.get("real_scored"),
        "time/seconds_per_generation": seconds,
    }


class LiveView:
    """TensorBoard events and ``report.html`` of one run while one process drives it."""

    def __init__(self, rd: RunDirectory, strategy: Any, every: float | None = None):
        self.rd = rd
        self.every = REWRITE_EVERY_S if every is None else every  # read now: tests set it
        # a resumed run writes its generations again from here: older events from this step
        # on are dropped by TensorBoard (see evolve.live.events)
        first = strategy.generation + 1 if strategy.started else 0
        self.events = EventWriter(rd.file(TENSORBOARD), purge_from=first if first else None)
        self._last_page = -math.inf
        self._texts: dict[str, str] = {}
        self._generation = strategy.generation
        # a funnel of an earlier stop has drawn the champions before this session already
        self._champions_from = first if rd.file("heldout.json").is_file() else 0

    def update(self, row: dict[str, Any], hall: list[dict]) -> None:
        """After a generation: its scalars, the best rules' text when they changed, and the
        page when ``every`` seconds have passed since it was last written."""
        step = int(row["generation"])
        self._generation = step
        self.events.scalars(step, row_scalars(row))
        self._text(step, "rule/search_best", row.get("best_rule"))
        self._text(step, "rule/real_tier_best", row.get("real_best_rule"))
        if time.monotonic() - self._last_page >= self.every:
            self._page("running", None, live_plots=True)

    def pause(self) -> None:
        """The process ends before the run does (``stop_after``)."""
        self.events.flush()
        self._page("paused", None, live_plots=True)

    def finish(self, stopped: str | None, plots: list[str] | None = None) -> None:
        """The run ended (``stopped`` is None) or stopped: the held-out champions and the final
        selection as events, and the page with ``plots`` (already drawn by the report)."""
        heldout = self.rd.read_heldout() if self.rd.file("heldout.json").is_file() else None
        for champion in (heldout or {}).get("champions", []):
            if champion["generation"] < self._champions_from:
                continue
            self.events.scalars(champion["generation"],
                                {"score/heldout_champion": champion.get("heldout_score")})
        selection = self.rd.read_selection()
        if selection:
            top = selection["ranking"][0] if selection.get("ranking") else {}
            self.events.scalars(self._generation,
                                {"score/final_selection": top.get("final_score")
                                 or top.get("real_score")})
            self._text(self._generation, "rule/final_selection", selection["rule"])
        self.events.flush()
        self._page("stopped" if stopped else "finished", stopped,
                   plots=plots if plots is not None else [SCORE_PLOT, PARETO_PLOT])

    def close(self) -> None:
        self.events.close()

    def _text(self, step: int, tag: str, text: str | None) -> None:
        if text and self._texts.get(tag) != text:
            self._texts[tag] = text
            self.events.text(step, tag, text)

    def _page(self, state: str, reason: str | None, plots: list[str] | None = None,
              live_plots: bool = False) -> None:
        if live_plots:
            from evolve.plots import write_plots

            plots = write_plots(self.rd, self.rd.read_log(), _hall(self.rd))
        page = render(self.rd, state, reason, plots,
                      refresh=RELOAD_S if state == "running" else None)
        atomic_write_text(self.rd.file(REPORT_HTML), page)
        self._last_page = time.monotonic()


def _hall(rd: RunDirectory) -> list[dict]:
    from evolve.errors import UserError

    try:
        return rd.read_hall_of_fame()
    except UserError:
        return []


__all__ = ["LiveView", "RELOAD_S", "REWRITE_EVERY_S", "read_scalars", "read_texts", "render", "row_scalars"]
