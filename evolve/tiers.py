"""Successive halving from the proxy suites to the real-data tier, and the campaign's selection.

Tier 1 (the Numba proxy suite) scores every candidate; each generation the best ``real_k`` new
candidates by proxy score (at least ``real_min_score``, one per behaviour: rules that differ
only by a constant factor, which the learning-rate search absorbs, count once)
train on tier 2 (:mod:`fitness.training.real_tier`, torch on small real-data tasks); with two
places or more, the last goes to the best child of tier-2 parents (``real_parents``,
:mod:`evolve.evolution`) when none is among the others. Tier 2's
results are the campaign's answer (DESIGN invariant 8): the hall of fame lists the rules it
scored first, best first, and the final selection (``RUN:best``) is chosen among its top
``confirm`` rules re-scored on ``confirm_seeds`` fresh seeds, which guards against the winner's
curse of picking the maximum of many noisy scores, and each of them times a warmup
(:func:`warmup_variant`, ``warmup_betas``; :func:`evolve.finalize.warmup_entries`) scored on
both seed sets; of the confirmed rules within
``select_tolerance`` of the best final score, the smallest is the answer (:func:`select`).

Both tiers score on one scale (:mod:`fitness.score`: a loss ratio against tuned Adam, 1.0 =
Adam), so a rule's tier-2 score and its proxy score can sit side by side. Tier 2 ranks by a
soft minimum of the tasks' log-ratios (:func:`selection_score`) rather than their mean: a rule
that loses to Adam on one task ranks below one that wins a little everywhere. Measured with
``scripts/fidelity.py`` on two sets of 66 rules, this ranks rules closer to the benchmark's
order than the mean does (Spearman 0.789 -> 0.832 and 0.835 -> 0.872; docs/results/fidelity).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from evolve.config import CampaignConfig
from fitness.score import Result, TaskScore, json_safe

REAL_SUITE_PREFIX = "real:"
CONFIRM_SEED_OFFSET = 1000  # confirmation seeds: never the seeds the leaderboard was scored on


def real_suite(config: CampaignConfig, seeds: Sequence[int] | None = None) -> str:
    """The executor suite name of the real-data tier of ``config`` (``real:`` + its JSON)."""
    spec = {"tasks": list(config.real_tasks),
            "seeds": list(seeds) if seeds is not None else list(range(config.real_seeds)),
            "schedule": config.schedule}
    return REAL_SUITE_PREFIX + json.dumps(spec, sort_keys=True, separators=(",", ":"))


@dataclass
class RealEntry:
    """A rule the real-data tier scored: its tier-2 and proxy scores and where it came from."""

    rule: str
    fingerprint: str
    generation: int
    size: int
    proxy_score: float
    score: float  # tier 2's selection score (:func:`selection_score`)
    tasks: list[TaskScore] = field(default_factory=list)
    reason: str | None = None
    mean_score: float | None = None  # the plain geometric mean of the tasks' ratios

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_result(cls, rule: str, fingerprint: str, generation: int, size: int,
                    proxy_score: float, result: Result, softmin: float) -> RealEntry:
        """The entry of a rule tier 2 scored: its selection score and the plain mean (0 for a
        non-finite one) from ``result``."""
        mean = float(result.score) if math.isfinite(result.score) else 0.0
        return cls(rule, fingerprint, generation, size, proxy_score,
                   selection_score(result, softmin), list(result.tasks), result.reason, mean)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealEntry:
        keys = {f.name for f in fields(TaskScore)}
        tasks = [TaskScore(**{k: v for k, v in t.items() if k in keys}) for t in d.get("tasks", [])]
        return cls(rule=str(d["rule"]), fingerprint=str(d["fingerprint"]),
                   generation=int(d["generation"]), size=int(d["size"]),
                   proxy_score=float(d["proxy_score"]), score=float(d["score"]), tasks=tasks,
                   reason=d.get("reason"), mean_score=d.get("mean_score"))


def selection_score(result: Result, softmin: float) -> float:
    """Tier 2's score of ``result`` for the selection (:func:`selection_value`)."""
    return selection_value(result.score, [t.log_ratio for t in result.tasks], softmin)


def selection_value(score: float, log_ratios: Sequence[float], softmin: float) -> float:
    """``2 ** soft_minimum(log_ratios)``; 0 for a non-finite ``score`` (a result's plain mean),
    and that ``score`` when ``softmin`` is 0 or there are no task scores (an invalid rule)."""
    if not math.isfinite(score):
        return 0.0
    if softmin <= 0 or not log_ratios:
        return float(score)
    return float(2.0 ** soft_minimum(log_ratios, softmin))


def soft_minimum(values: Sequence[float], tau: float) -> float:
    """``-tau * log(mean(exp(-x / tau)))``: between the worst value (tau -> 0) and the mean
    (tau -> inf), and equal to both when all values agree (so 1.0 is still tuned Adam)."""
    low = min(values)  # shifted, so that no exponent overflows
    spread = sum(math.exp(-(x - low) / tau) for x in values) / len(values)
    return low - tau * math.log(spread)


class RealTierStage:
    """Which candidates go to tier 2, and what it said of them (kept in every checkpoint)."""

    def __init__(self, config: CampaignConfig):
        self.config = config
        self.entries: list[RealEntry] = []

    @property
    def enabled(self) -> bool:
        return self.config.real_k > 0 and bool(self.config.real_tasks)

    def promote(self, rules: Sequence[str], proxy: Sequence[Result], prints: Sequence[str],
                sizes: Sequence[int], bred: Collection[str] = ()
                ) -> list[tuple[str, str, float, int]]:
        """(rule, fingerprint, proxy score, size) of this batch's candidates for tier 2: the
        best by proxy score; with two places or more, the last goes to the best of the children
        ``bred`` from tier-2 parents when none of them is among the others."""
        if not self.enabled:
            return []
        seen = {e.fingerprint for e in self.entries}
        best: dict[str, tuple[str, str, float, int]] = {}
        for rule, result, fp, size in zip(rules, proxy, prints, sizes):
            score = float(result.score)
            if fp in seen or not math.isfinite(score) or score < self.config.real_min_score:
                continue
            if fp not in best or (-score, size, rule) < (-best[fp][2], best[fp][3], best[fp][0]):
                best[fp] = (rule, fp, score, size)
        ranked = sorted(best.values(), key=lambda c: (-c[2], c[3], c[0]))
        k = self.config.real_k * (2 if not self.entries else 1)  # the first batch: twice as many
        local = [c for c in ranked if c[0] in bred]
        if k >= 2 and local and local[0] not in ranked[:k]:
            return ranked[:k - 1] + local[:1]
        return ranked[:k]

    def record(self, candidate: tuple[str, str, float, int], generation: int,
               result: Result) -> RealEntry:
        rule, fp, proxy_score, size = candidate
        entry = RealEntry.from_result(rule, fp, generation, size, proxy_score, result,
                                      self.config.real_softmin)
        self.entries.append(entry)
        return entry

    def leaderboard(self) -> list[RealEntry]:
        """Best tier-2 score first (ties: smaller, then older)."""
        return sorted(self.entries, key=lambda e: (-e.score, e.size, e.generation, e.rule))

    def best(self) -> RealEntry | None:
        board = self.leaderboard()
        return board[0] if board else None

    def state_dict(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.entries]

    def load_state(self, entries: Sequence[dict[str, Any]]) -> None:
        self.entries = [RealEntry.from_dict(d) for d in entries]


def warmup_variant(rule: str, beta: float) -> str:
    """``rule`` times the warmup ``ema(1.0, beta)`` (= 1 - beta^t: a step that ramps up over
    about 1/(1-beta) steps), in canonical text."""
    from primitives.grammar import parse, to_text

    return to_text(parse(f"mul({rule}, ema(1.0, {beta!r}))"))


def confirmation_seeds(config: CampaignConfig) -> list[int]:
    """Fresh seeds for the final confirmation (``confirm_seeds`` of them)."""
    return [CONFIRM_SEED_OFFSET + i for i in range(config.confirm_seeds)]


def select(board: Sequence[RealEntry], confirmations: dict[str, Result], softmin: float,
           seeds: tuple[int, int] = (1, 1), tolerance: float = 0.0) -> list[dict[str, Any]]:
    """The final ranking: the confirmed rules first, the rest after them by their leaderboard
    score.

    A confirmed rule's final score (:func:`final_score`) is the geometric mean of its two tier-2
    selection scores weighted by their seeds (``seeds``: the leaderboard's and the
    confirmation's count), so every training run counts alike and the leaderboard's score,
    which was the maximum of many noisy ones when the rule got its place, counts for no more
    than its seeds. The first
    rule, the answer, is the smallest confirmed rule whose final score is within
    ``tolerance`` (a fraction) of the best one: between rules that tier 2 cannot tell apart
    the simpler is the one that has had less room to fit tier 2's tasks. The others follow by
    final score.
    """
    rows = []
    for e in board:
        confirm = confirmations.get(e.fingerprint)
        confirmed = selection_score(confirm, softmin) if confirm is not None else None
        final = final_score(e.score, confirmed, seeds) if confirmed is not None else None
        rows.append({"rule": e.rule, "fingerprint": e.fingerprint, "size": e.size,
                     "generation": e.generation, "proxy_score": e.proxy_score,
                     "real_score": e.score, "real_mean_score": e.mean_score,
                     "confirm_score": confirmed,
                     "final_score": final,
                     "confirm_tasks": [asdict(t) for t in confirm.tasks] if confirm else []})
    rows.sort(key=lambda r: (r["final_score"] is None, -(r["final_score"] or r["real_score"]),
                             r["size"], r["rule"]))
    finals = [r for r in rows if r["final_score"] is not None]
    if finals and finals[0]["final_score"] > 0:
        near = [r for r in finals if r["final_score"] >= (1.0 - tolerance) * finals[0]["final_score"]]
        answer = min(near, key=lambda r: (r["size"], -r["final_score"], r["rule"]))
        rows.remove(answer)
        rows.insert(0, answer)
    return rows


def final_score(board: float, confirmed: float, seeds: tuple[int, int]) -> float:
    """A confirmed rule's final score: the geometric mean of its leaderboard and confirmation
    selection scores weighted by their seeds (``seeds``: the leaderboard's and the
    confirmation's count)."""
    return _weighted_geomean((board, seeds[0]), (confirmed, seeds[1]))


def _weighted_geomean(*pairs: tuple[float, int]) -> float:
    """``exp(sum(w * log x) / sum(w))`` over (x, w) pairs; 0 when any x is not positive."""
    if any(not (x > 0) for x, _ in pairs):
        return 0.0
    return math.exp(sum(w * math.log(x) for x, w in pairs) / sum(w for _, w in pairs))


__all__ = ["REAL_SUITE_PREFIX", "RealEntry", "RealTierStage", "confirmation_seeds", "final_score",
           "real_suite", "select", "selection_score", "selection_value", "soft_minimum",
           "warmup_variant"]
