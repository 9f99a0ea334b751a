"""Progress displays: a campaign's generations, the stages of its end, and any count of steps.

Three displays, each a rich bar on a terminal and plain lines elsewhere (logs, CI, pipes), all
on stderr so that stdout stays for results (``--json``), and all silent with ``quiet``:

* :class:`CampaignProgress` — the ``progress`` callback of :func:`evolve.runner.run_campaign`:
  generations with an ETA, candidates per second, the best proxy and real-tier scores so far,
  the equivalence cache's and the hurdle's shares; its columns are explained once, at start.
* :class:`StageProgress` — the ``stages`` callback: each stage of the final selection and the
  funnel as it begins, with how long the previous one took (also ``evolve score``'s stages).
* :class:`Steps` — a bar over a known number of steps (``evolve benchmark``, ``validate``);
  the hook other commands use (``with Steps(n, "compare") as steps: steps.advance(info=...)``).

The ETA comes from :class:`Eta`: the mean of the recent steps' wall times with the first one
of a call left out, because it carries the start-up (compiled kernels loaded, workers spawned,
tuned-Adam baselines computed) that no later step pays; before two steps it shows none.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from evolve.budget import Budget, format_duration
from evolve.plots import looked_up

LEGEND = ("columns: best = the search champion's proxy score, a geometric-mean loss ratio "
          "against tuned Adam (1 = Adam, higher is better, 0.25 = failed); real = the "
          "real-data tier's best (tier 2, the campaign's answer); median = the population's "
          "median; cand/s = candidates scored per second; cache = share of this generation's "
          "candidates answered by the equivalence cache; hurdle = share of the evaluated ones "
          "stopped by the hurdle")
RECENT = 8  # steps the ETA averages over


def is_terminal() -> bool:
    return sys.stderr.isatty()


def _echo(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Eta:
    """Seconds left, from the mean wall time of the last :data:`RECENT` steps (the first step
    of a call excluded: it carries the start-up). ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.ticks: list[float] = []

    def tick(self) -> None:
        self.ticks.append(self.clock())

    def per_step(self) -> float | None:
        if len(self.ticks) < 2:
            return None
        recent = self.ticks[-(RECENT + 1):]
        return (recent[-1] - recent[0]) / (len(recent) - 1)

    def remaining(self, steps_left: float) -> float | None:
        per = self.per_step()
        return None if per is None else per * max(steps_left, 0)

    def elapsed(self) -> float:
        return self.clock() - self.started


def _rich_console():
    from rich.console import Console

    return Console(stderr=True)


def _two_line_progress(*columns: Any) -> Any:
    """A rich Progress whose tasks show their ``info`` field on a line of its own below the
    bar (the figures do not fit beside it in an 80-column terminal)."""
    from rich.progress import Progress
    from rich.text import Text

    class TwoLine(Progress):
        def get_renderables(self):
            yield self.make_tasks_table(self.tasks)
            for task in self.tasks:
                yield Text("  " + str(task.fields.get("info", "")), overflow="fold")

    return TwoLine(*columns, console=_rich_console(), transient=False)


class CampaignProgress:
    """``progress(row, total)`` for :func:`evolve.runner.run_campaign` (see the module doc).

    ``budget`` bounds the ETA: a run stops at its time limit or evaluation budget, so the
    generations left are the fewest of what the config, the evaluations and the clock allow.
    """

    def __init__(self, label: str = "evolving", budget: Budget | None = None,
                 quiet: bool = False, rich: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.budget = budget
        self.quiet = quiet
        self.use_rich = is_terminal() if rich is None else rich
        self.eta = Eta(clock)
        self._bar: Any = None
        self._task: Any = None
        self._legend = False

    def note(self, message: str) -> None:
        """A line above the bar (what a resume repaired, and such)."""
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            _echo(message)

    def _start(self, gen: int, total: int) -> None:
        if not self._legend:
            self.note(LEGEND)
            self._legend = True
        if self.use_rich and self._bar is None:
            from rich.progress import BarColumn, TextColumn

            self._bar = _two_line_progress(TextColumn("[bold]{task.description}"),
                                           BarColumn(bar_width=30),
                                           TextColumn("gen {task.completed}/{task.total}"),
                                           TextColumn("{task.fields[eta]}"))
            self._task = self._bar.add_task(self.label, total=total, completed=gen, eta="",
                                            info="")
            self._bar.start()

    def generations_left(self, row: dict, total: int) -> float:
        left = float(max(total - row["generation"], 0))
        if self.budget is not None and self.budget.max_evaluations is not None:
            batch = max(row.get("candidates") or 1, 1)
            spare = self.budget.max_evaluations - (row.get("evaluations") or 0)
            left = min(left, max(math.ceil(spare / batch), 0))
        return left

    def eta_seconds(self, row: dict, total: int) -> float | None:
        eta = self.eta.remaining(self.generations_left(row, total))
        if eta is not None and self.budget is not None:
            remaining = self.budget.remaining()
            if remaining is not None:
                eta = min(eta, max(remaining, 0.0))
        return eta

    def info(self, row: dict) -> str:
        def share(part: Any, whole: Any) -> str:
            return f"{100 * part / whole:.0f}%" if part is not None and whole else "-"

        best, real = row.get("best_score"), row.get("real_best")
        text = (f"best {best:.3f}" if best is not None else "best -")
        text += f"  real {real:.3f}" if real is not None else ""
        median = row.get("median_score")
        text += f"  median {median:.3f}" if median is not None else ""
        text += (f"  {row.get('candidates_per_s') or 0:.0f} cand/s"
                 f"  cache {share(row.get('cache_hits'), looked_up(row))}"
                 f"  hurdle {share(row.get('hurdle_rejections'), row.get('evaluated'))}")
        if row.get("lost_evaluations"):
            text += f"  lost {row['lost_evaluations']} (retried {row['retried_evaluations']})"
        return text

    def __call__(self, row: dict, total: int) -> None:
        if self.quiet:
            return
        self.eta.tick()
        self._start(row["generation"], total)
        eta = self.eta_seconds(row, total)
        shown = f"eta {format_duration(eta)}" if eta is not None else "eta after 2 generations"
        if self._bar is not None:
            self._bar.update(self._task, completed=row["generation"], total=total, eta=shown,
                             info=self.info(row))
        else:
            _echo(f"gen {row['generation']}/{total}  {self.info(row)}  {shown}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class StageProgress:
    """``stages(description)``: each stage as it begins, the previous one's time when it ends."""

    def __init__(self, label: str = "finishing", quiet: bool = False, rich: bool | None = None,
                 before: Callable[[], None] | None = None):
        self.label = label
        self.before = before  # called as the first stage begins (to close a campaign's bar)
        self.quiet = quiet
        self.use_rich = is_terminal() if rich is None else rich
        self._current: tuple[str, float] | None = None
        self._status: Any = None
        self.started = time.monotonic()

    def __call__(self, description: str) -> None:
        if self.quiet:
            return
        if self.before is not None:
            self.before()
            self.before = None
        self._end()
        self._current = (description, time.monotonic())
        if self.use_rich:
            self._status = _rich_console().status(f"{self.label}: {description}")
            self._status.start()
        else:
            _echo(f"{self.label}: {description} ...")

    def _end(self) -> None:
        if self._current is None:
            return
        description, began = self._current
        took = format_duration(time.monotonic() - began)
        if self._status is not None:
            self._status.stop()
            self._status = None
            _echo(f"{self.label}: {description} ({took})")
        else:
            _echo(f"{self.label}: {description}: done in {took}")
        self._current = None

    def close(self) -> None:
        if not self.quiet:
            self._end()


class Steps:
    """A bar over ``total`` steps with an ETA (see the module doc); a context manager.

    With ``estimate`` the total is a guess (an lr search that extends at an edge runs more
    steps than planned, one that ends early fewer): plain lines show it as ``[n/~total]``, and
    a total that the steps outrun grows with them."""

    def __init__(self, total: int, label: str, quiet: bool = False, rich: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, estimate: bool = False):
        self.total = max(int(total), 1)
        self.label = label
        self.quiet = quiet
        self.estimate = estimate
        self.done = 0
        self.eta = Eta(clock)
        self._bar: Any = None
        if not quiet and (is_terminal() if rich is None else rich):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[eta]}"),
                                 console=_rich_console(), transient=False)
            self._task = self._bar.add_task(label, total=self.total, eta="")
            self._bar.start()

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def advance(self, n: int = 1, info: str = "") -> None:
        """``n`` more steps done; ``info`` is printed with them (a line above the bar)."""
        if self.quiet:
            return
        self.done += n
        self.total = max(self.total, self.done)
        self.eta.tick()
        eta = self.eta.remaining(self.total - self.done)
        shown = f"eta {format_duration(eta)}" if eta is not None else ""
        if self._bar is not None:
            if info:
                self._bar.console.print(info, markup=False, highlight=False)
            self._bar.update(self._task, completed=self.done, total=self.total, eta=shown)
        else:
            total = f"~{self.total}" if self.estimate else str(self.total)
            _echo(f"[{self.done}/{total}] {info}" + (f"  {shown}" if shown else ""))

    def line(self, text: str) -> None:
        """A progress callback that reports one finished step per line (bench's style)."""
        self.advance(1, text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


__all__ = ["CampaignProgress", "Eta", "LEGEND", "StageProgress", "Steps", "is_terminal"]
