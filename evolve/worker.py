"""The scoring side of the executor seam: what a worker process imports and runs, and nothing else.

A worker (a spawned process, a Ray task, or the driver itself for the serial executor) builds
one :class:`fitness.evaluate.Evaluator` per (suite, seed, hurdle) and reuses it for every
chunk; each chunk returns one :class:`fitness.score.Result` per rule, in order. Before scoring,
the driver asks workers for the equivalence prints of rule texts it has not seen
(:func:`prints_chunk`) and remembers them (:func:`remember_prints`). This module
imports only ``fitness`` and ``primitives`` (numpy, Numba, scikit-learn's bundled data): a
worker never loads torch, click, the CLI or the run directory, so each stays small.

Evaluators are built with ``cache=False``: the equivalence cache lives in the driver
(:class:`evolve.runner.CachedScorer`), so which rules share a result never depends on how
candidates were split across workers.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from fitness.evaluate import Thresholds
from fitness.score import Result
from primitives.grammar import RuleSyntaxError
from primitives.program import Program

_EVALUATORS: dict[tuple[str, int, bool], Any] = {}


def proxy_suite(suite: str, schedule: str = "cosine") -> str:
    """The executor suite name of a proxy suite under an lr schedule (``search`` for the default
    cosine schedule, ``search@constant`` otherwise)."""
    return suite if schedule == "cosine" else f"{suite}@{schedule}"


def evaluator(suite: str, seed: int, hurdle: bool = True):
    """This process's evaluator for (suite[@schedule], seed, hurdle), built on first use."""
    key = (suite, int(seed), bool(hurdle))
    if key not in _EVALUATORS:
        from fitness.evaluate import Evaluator

        name, _, schedule = suite.partition("@")
        _EVALUATORS[key] = Evaluator(suite=name, seed=seed, hurdle=hurdle, cache=False,
                                     schedule=schedule or "cosine")
    return _EVALUATORS[key]


def real_tier(suite: str):
    """This process's real-data tier for a ``real:{json}`` suite (see :func:`evolve.tiers.real_suite`),
    built on first use; its tuned-Adam runs come from the disk cache the driver filled."""
    if suite not in _EVALUATORS:
        import json

        import torch

        from fitness.baselines import cache_dir
        from fitness.training.real_tier import RealTier, RealTierConfig

        torch.set_num_threads(1)  # tiny networks: workers, not threads, are the parallelism
        spec = json.loads(suite[len("real:"):])
        config = RealTierConfig(tasks=tuple(spec["tasks"]), seeds=tuple(spec["seeds"]),
                                schedule=spec["schedule"])
        _EVALUATORS[suite] = RealTier(config, cache_dir=cache_dir())
    return _EVALUATORS[suite]


def warm_real_tier(suite: str) -> None:
    """Compute (or load) tuned Adam's runs on every task of a real-data tier suite in this
    process, so that workers find them in the disk cache instead of each computing them."""
    tier = real_tier(suite)
    for task in tier.tasks:
        tier.baseline(task)


def score_rules(suite: str, seed: int, rules: list[str], hurdle: bool = True,
                thresholds: Thresholds | None = None) -> list[Result]:
    """Score rule texts on a suite in this process: one typed Result per rule, in order.

    ``thresholds`` (the hurdle's and the early stop's, :class:`fitness.evaluate.Thresholds`)
    apply to proxy suites. A ``real:...`` suite trains them on the real-data tier (which has
    no hurdle, no early stop and no seed of its own: its seeds are in the suite's spec)."""
    if suite.startswith("real:"):
        return real_tier(suite).evaluate_many(list(rules))
    # each rule text is parsed and compiled once per process (its fingerprint used it too)
    return evaluator(suite, seed, hurdle).evaluate_many([compiled(r) for r in rules],
                                                         thresholds)


def evaluate_chunk(suite: str, seed: int, rules: list[str],
                   thresholds: Thresholds | None = None) -> list[Result]:
    """What executors run in a worker: :func:`score_rules` with the hurdle on."""
    return score_rules(suite, seed, rules, thresholds=thresholds)


def init_worker(suite: str, seed: int) -> None:
    """A pool worker's first call: ignore Ctrl-C (the driver decides when to stop), leave when
    the driver dies, build the evaluator before the first chunk arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    evaluator(suite, seed)


def _exit_with_parent(every: float = 1.0) -> None:
    """Exit when the driver is gone (killed with -9, say). A pool worker would otherwise wait on
    its task queue for ever: every worker holds that queue's write end too, so the queue never
    reports that the driver has closed it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@lru_cache(maxsize=4096)
def compiled(rule: str) -> Program | str:
    """The Program of a rule text or known name, compiled once in this process; the text itself
    when it does not compile (the evaluator then reports why, as a failed Result)."""
    from fitness.evaluate import to_program

    try:
        return to_program(rule)
    except (RuleSyntaxError, TypeError, ValueError):
        return rule


def fingerprint(rule: str, scale_free: bool = False) -> str:
    """Equivalence fingerprint of rule text (malformed text gets a fingerprint of its own);
    ``scale_free``: the behaviour print, blind to a positive constant factor (same optimizer
    under a learning-rate search)."""
    return rule_prints(rule)[1 if scale_free else 0]


Prints = tuple[str, str]  # (exact fingerprint, behaviour print) of one rule
_PRINTS: OrderedDict[str, Prints] = OrderedDict()
PRINTS_KEPT = 200_000  # rule texts whose prints this process remembers (least recent go first)


def rule_prints(rule: str) -> Prints:
    """Both prints of a rule from one run on the probes, remembered per rule text (the driver
    asks for the exact one of every candidate and the behaviour print of most of them)."""
    known = _PRINTS.get(rule)
    if known is not None:
        _PRINTS.move_to_end(rule)
        return known
    from fitness.equivalence import prints

    program = compiled(rule)
    found = ("invalid:" + rule,) * 2 if isinstance(program, str) else prints(program)
    remember_prints(rule, found)
    return found


def remember_prints(rule: str, found: Prints) -> None:
    """Keep prints computed elsewhere (by a worker) so that this process never runs the probes
    for that rule text."""
    _PRINTS[rule] = found
    _PRINTS.move_to_end(rule)
    while len(_PRINTS) > PRINTS_KEPT:
        _PRINTS.popitem(last=False)


def unknown_prints(rules: Iterable[str]) -> list[str]:
    """The distinct rule texts among ``rules`` whose prints this process does not hold yet, in
    the order first seen."""
    return [r for r in dict.fromkeys(rules) if r not in _PRINTS]


def prints_chunk(rules: list[str]) -> list[Prints]:
    """What executors run in a worker for the equivalence cache's first phase: both prints of
    each rule, in order (:func:`rule_prints`)."""
    return [rule_prints(r) for r in rules]


def suite_names() -> list[str]:
    from fitness.tasks import suite_names as names

    return names()


def warm_numba() -> None:
    """Compile or load every cached kernel in this process, before workers start (so that they
    load compiled code from disk instead of compiling it again)."""
    from fitness.interpreter import warm_up

    warm_up()
    score_rules("hurdle", 0, ["g"])


__all__ = ["Prints", "compiled", "evaluate_chunk", "evaluator", "fingerprint", "init_worker",
           "prints_chunk", "proxy_suite", "real_tier", "remember_prints", "rule_prints",
           "score_rules", "suite_names", "unknown_prints", "warm_numba", "warm_real_tier"]
