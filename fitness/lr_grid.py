"""Learning-rate grids and the learning-rate search every optimizer gets (DESIGN invariant 9).

One search for every score, tier, benchmark and validation, rules and baselines alike:

1. a coarse log grid, one point a decade from ``low`` to ``high``;
2. while the best point sits at an edge of what was tried, one more decade outwards (at most
   ``max_extensions`` times, never past ``floor``/``ceiling``);
3. the two neighbours a third of a decade either side of the best point (of the
   ``refine_around`` best points: with 2, the runner-up's basin is explored too, which matters
   where a validation curve is flat and has two dips).

So the chosen rate is resolved to a third of a decade (three points a decade around the
optimum) at the cost of a one-point-a-decade grid, and a rule whose best rate lies outside the
default range is not cut off at the range's edge. ``evaluate`` takes a batch of rates (the
Numba loops run a batch in one call) and returns one loss per rate, None for a failed run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Losses = Sequence[float | None]


def log_grid(low: float, high: float, per_decade: int = 1) -> list[float]:
    """Log-spaced rates from ``low`` to ``high`` inclusive, ``per_decade`` points a decade,
    rounded to 3 significant digits (so grids built twice give the same keys)."""
    if not (0 < low <= high):
        raise ValueError(f"need 0 < low <= high, got {low}, {high}")
    n = round(math.log10(high / low) * per_decade)
    return [_round(low * 10 ** (i / per_decade)) for i in range(n + 1)]


def _round(lr: float) -> float:
    return float(f"{lr:.3g}")


@dataclass(frozen=True)
class LrSearch:
    """The search's settings; part of every baseline cache key."""

    low: float = 1e-4
    high: float = 1.0
    max_extensions: int = 2
    floor: float = 1e-7
    ceiling: float = 100.0
    refine: bool = True  # the +-1/3 decade neighbours of the best point
    refine_around: int = 1  # ... of this many of the best points tried before refining

    def coarse(self) -> list[float]:
        return log_grid(self.low, self.high, 1)

    def to_dict(self) -> dict:
        out = {"low": self.low, "high": self.high, "max_extensions": self.max_extensions,
               "floor": self.floor, "ceiling": self.ceiling, "refine": self.refine}
        if self.refine_around != 1:  # the default stays out: cache keys written before hold
            out["refine_around"] = self.refine_around
        return out


QUICK = LrSearch(low=1e-3, high=1e-1, max_extensions=1, refine=False)
DEFAULT = LrSearch()


def _ranked(tried: dict[float, float | None]) -> list[float]:
    """The rates that did not fail, lowest loss first."""
    ok = [(loss, lr) for lr, loss in tried.items() if loss is not None and math.isfinite(loss)]
    return [lr for _, lr in sorted(ok)]


def _best(tried: dict[float, float | None]) -> float | None:
    ranked = _ranked(tried)
    return ranked[0] if ranked else None


def search(evaluate: Callable[[list[float]], Losses], spec: LrSearch = DEFAULT
           ) -> tuple[float | None, dict[float, float | None]]:
    """Run the search; returns (best rate or None when every rate failed, {rate: loss})."""
    tried: dict[float, float | None] = {}

    def run(lrs: list[float]) -> None:
        todo = list(dict.fromkeys(lr for lr in lrs if lr not in tried))
        if todo:
            for lr, loss in zip(todo, evaluate(todo)):
                tried[lr] = None if loss is None or not math.isfinite(loss) else float(loss)

    run(spec.coarse())
    for _ in range(spec.max_extensions):
        best = _best(tried)
        if best is None:
            break
        if best == min(tried) and best / 10 >= spec.floor:
            run([_round(best / 10)])
        elif best == max(tried) and best * 10 <= spec.ceiling:
            run([_round(best * 10)])
        else:
            break
    centres = _ranked(tried)[:max(spec.refine_around, 1)]
    if centres and spec.refine:
        third = 10 ** (1 / 3)
        run([_round(c * f) for c in centres for f in (1 / third, third)])
    best = _best(tried)
    return best, dict(sorted(tried.items()))


__all__ = ["DEFAULT", "LrSearch", "Losses", "QUICK", "log_grid", "search"]
