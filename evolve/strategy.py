"""The strategy seam: what proposes rules, behind ask/tell, with the bookkeeping in one base class.

Template-method style (as evosax's ``Strategy``): :class:`Strategy` keeps everything every way
of proposing rules needs — the generation counter, the evaluation count, the hall of fame, the
best-so-far champions, the generation of the last improvement, the random Generator, the
pending batch, ``state_dict``/``from_state_dict`` — and a subclass writes only its own step:

* :meth:`Strategy._propose` — the rule texts of the next batch (draw from ``self.rng`` only);
* :meth:`Strategy._update` — take the scored batch (a list of :class:`Individual`);
* :meth:`Strategy._state` / :meth:`Strategy._load_state` — its own JSON-ready state;
* optionally :meth:`Strategy._reported` (whose scores the log's population columns describe)
  and :meth:`Strategy._stats` (extra log columns).

A driver loops (the CLI's runner, a notebook, or a user who brings their own evaluator)::

    strategy = Strategy.create(config)
    while not strategy.done:
        rules = strategy.ask()
        strategy.tell(rules, results)   # one fitness.score.Result per rule, in order

A strategy is a function of (config, seed): every draw comes from ``self.rng``, whose state is in
each checkpoint together with the pending batch, so a run resumed from any checkpoint asks the
same batches as one that never stopped. Strategies are registered by name in
:data:`evolve.config.STRATEGIES` and imported only when a campaign uses them.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from evolve.config import STRATEGIES, CampaignConfig, ConfigError
from evolve.tiers import RealTierStage
from fitness.evaluate import HURDLE_THRESHOLD, Thresholds, screen_mean, screen_tasks
from fitness.score import FLOOR, Result, TaskScore, json_safe
from primitives.grammar import parse

STATE_FORMAT = 2


@dataclass
class Individual:
    """A scored rule: its suite score, size, the generation it was born in, per-task scores."""

    rule: str
    score: float
    size: int
    birth: int  # generation in which it was created (the initial batch is generation 0)
    tasks: list[TaskScore] = field(default_factory=list)
    reason: str | None = None
    hurdle_score: float | None = None  # its progress on the hurdle task (None: not run)
    stopped: bool = False  # its suite stopped early: ``score`` is an upper bound

    def selection_fitness(self, parsimony: float) -> float:
        return self.score - parsimony * self.size

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Individual:
        task_keys = {f.name for f in fields(TaskScore)}
        tasks = [TaskScore(**{k: v for k, v in t.items() if k in task_keys})
                 for t in data.get("tasks", [])]
        hurdle = data.get("hurdle_score")
        return cls(rule=data["rule"], score=float(data["score"]), size=int(data["size"]),
                   birth=int(data["birth"]), tasks=tasks, reason=data.get("reason"),
                   hurdle_score=None if hurdle is None else float(hurdle),
                   stopped=bool(data.get("stopped", False)))


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under ``name`` in :data:`evolve.config.STRATEGIES`."""
    target = STRATEGIES.get(name)
    if target is None:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def thresholds_for(survivors: Sequence[Individual], config: CampaignConfig) -> Thresholds:
    """The thresholds :meth:`Strategy.thresholds` passes, from a population and the config's
    quantiles (a pure function: benchmarks replay it under other quantiles)."""
    hurdle, stop = HURDLE_THRESHOLD, None
    progress = [i.hurdle_score for i in survivors if i.hurdle_score is not None]
    if config.hurdle_quantile > 0 and progress:
        hurdle = max(hurdle, float(np.quantile(progress, config.hurdle_quantile)))
    full = [i for i in survivors if not i.stopped]
    if config.stop_quantile > 0 and full:
        stop = float(np.quantile([i.score for i in full], config.stop_quantile))
    screen, names = None, ()
    if config.screen_quantile > 0 and config.screen_tasks > 0:
        names = screen_tasks(config.suite, config.screen_tasks)
    if names:
        means = [m for i in full if (m := screen_mean(i.tasks, names)) is not None]
        if means:
            screen = float(np.quantile(means, config.screen_quantile))
    return Thresholds(hurdle=hurdle, stop_below=stop, screen=screen,
                      screen_tasks=names if screen is not None else ())


class Strategy(ABC):
    """Ask/tell over rule texts; the bookkeeping every strategy shares (see the module docstring).

    ``exact_extension`` says whether raising ``config.generations`` of a finished run and
    continuing gives exactly the run that had the larger number from the start (true when
    nothing a subclass does depends on the total, e.g. no schedule over generations).
    """

    name: ClassVar[str] = ""
    exact_extension: ClassVar[bool] = True

    def __init__(self, config: CampaignConfig):
        config.validate()
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.generation = 0  # batches told after the first one (the first is generation 0)
        self.started = False  # the first batch has been told
        self.evaluations = 0  # candidates scored (equivalence-cache hits included)
        self.hall_of_fame: list[Individual] = []
        self.champions: list[dict[str, Any]] = []  # best-so-far rule after each change
        self.best_since = 0  # generation of the last improvement of the best score
        self._pending: list[str] | None = None
        self._last: list[Individual] = []
        self.real = RealTierStage(config)  # tier 2: what it scored (the campaign's answer)
        self.real_bred: set[str] = set()  # rules of the pending batch bred from tier-2 parents
        self.instance_seed = config.seed  # the proxy instances the scores below were drawn on

    @staticmethod
    def create(config: CampaignConfig) -> Strategy:
        """A fresh strategy of the kind ``config.strategy`` names."""
        return strategy_class(config.strategy)(config)

    # ------------------------------------------------------------------ ask / tell
    @property
    def done(self) -> bool:
        return self.started and self.generation >= self.config.generations

    def ask(self) -> list[str]:
        """The next batch of rule texts to score (the same batch until it is told)."""
        if self._pending is None:
            self.real_bred = set()  # a subclass's _propose names the children tier 2 bred
            self._pending = list(self._propose())
        return list(self._pending)

    def tell(self, rules: Sequence[str], results: Sequence[Result]) -> list[Individual]:
        """Take one result per rule of the last :meth:`ask`, in order; returns the individuals."""
        if self._pending is None or list(rules) != self._pending:
            raise ValueError("tell() must answer the batch returned by the last ask()")
        if len(results) != len(rules):
            raise ValueError("tell() needs one result per rule")
        born = self.generation + 1 if self.started else 0
        told = [self._individual(rule, result, born) for rule, result in zip(rules, results)]
        self._pending = None
        self.started = True
        self.generation = born
        self.evaluations += len(told)
        self._update_hall_of_fame(told)
        self._last = told
        self._update(told)
        return told

    def rescore(self, score: Callable[..., list[Result]], seed: int) -> int:
        """Score again, on proxy instances drawn with ``seed``, every rule whose score steers
        what comes next (the hall of fame, and a subclass's :meth:`_survivors`); returns how
        many rules were scored. ``score(rules, thresholds=None)`` scores a batch.

        The hall of fame and the survivors whose suite ran in full are scored in full; then the
        survivors whose suite stopped early, which a full score has never placed, as children
        are: under the thresholds of the rescored ones (they rarely become parents, and a
        redraw would otherwise pay their whole suites)."""
        survivors = self._survivors()
        full = sorted({i.rule for i in self.hall_of_fame} |
                      {i.rule for i in survivors if not i.stopped})
        fresh = dict(zip(full, score(full))) if full else {}
        self._take(fresh)
        stopped = sorted({i.rule for i in survivors} - set(fresh))
        if stopped:
            limits = thresholds_for([i for i in survivors if i.rule in fresh], self.config)
            new = dict(zip(stopped, score(stopped, thresholds=limits)))
            self._take(new)
            fresh.update(new)
        self.hall_of_fame.sort(key=lambda i: (-i.score, i.size, i.rule))
        self.instance_seed = seed
        return len(fresh)

    def _take(self, fresh: dict[str, Result]) -> None:
        """New results of rules of the hall of fame and the survivors (see :meth:`rescore`)."""
        for ind in self.hall_of_fame + self._survivors():
            if ind.rule in fresh:
                new = self._individual(ind.rule, fresh[ind.rule], ind.birth)
                ind.score, ind.tasks, ind.reason = new.score, new.tasks, new.reason
                ind.hurdle_score, ind.stopped = new.hurdle_score, new.stopped

    def thresholds(self) -> Thresholds:
        """The hurdle and early-stop thresholds for the next batch, from the survivors (a
        population; strategies without one keep the fixed hurdle and never stop early).

        The adaptive hurdle is the ``hurdle_quantile`` of the survivors' hurdle progress, never
        below :data:`fitness.evaluate.HURDLE_THRESHOLD` (as AutoML-Zero's hurdle is a
        percentile of the population); the early stop is the ``stop_quantile`` of the scores of
        survivors whose suite ran in full: a child that cannot reach it would rarely win a
        tournament; the screen is the ``screen_quantile`` of those survivors' mean log-ratio on
        the suite's ``screen_tasks`` cheapest tasks, which a child runs first. All read only
        checkpointed state, so a resumed run passes the same ones.
        """
        return thresholds_for(self._survivors(), self.config)

    # ------------------------------------------------------------------ what subclasses write
    @abstractmethod
    def _propose(self) -> list[str]:
        """Rule texts of the next batch; ``self.started`` is False for the first one."""

    @abstractmethod
    def _update(self, told: list[Individual]) -> None:
        """Take the scored batch (after the base class has counted it and updated the hall)."""

    def _state(self) -> dict[str, Any]:
        """The subclass's own state, JSON-ready."""
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_state` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state of its own, got {sorted(state)}")

    def _reported(self) -> list[Individual]:
        """The individuals the log's population columns describe (default: the last batch)."""
        return self._last

    def _survivors(self) -> list[Individual]:
        """Individuals whose scores steer later proposals (a population); rescored when the
        proxy instances are redrawn. Default: none."""
        return []

    def _stats(self) -> dict[str, Any]:
        """Extra columns for the log."""
        return {}

    # ------------------------------------------------------------------ bookkeeping
    def _individual(self, rule: str, result: Result, born: int) -> Individual:
        score = float(result.score) if result.score is not None else FLOOR
        # a NaN score would sort unpredictably and poison the hall of fame: it is the worst one
        if not math.isfinite(score):
            score = FLOOR
        return Individual(rule=rule, score=score, size=parse(rule).size(), birth=born,
                          tasks=list(result.tasks), reason=result.reason,
                          hurdle_score=result.hurdle_score, stopped=result.stopped)

    def _update_hall_of_fame(self, candidates: list[Individual]) -> None:
        best: dict[str, Individual] = {ind.rule: ind for ind in self.hall_of_fame}
        for ind in candidates:
            if not ind.stopped:  # a bound is not a score: only full suites enter the hall
                best.setdefault(ind.rule, ind)
        if not best:
            return
        ranked = sorted(best.values(), key=lambda i: (-i.score, i.size, i.rule))
        previous = self.hall_of_fame[0].score if self.hall_of_fame else -math.inf
        self.hall_of_fame = ranked[: self.config.hall_of_fame]
        top = self.hall_of_fame[0]
        if top.score > previous:
            self.best_since = self.generation
        if not self.champions or self.champions[-1]["rule"] != top.rule:
            self.champions.append({"generation": self.generation, "rule": top.rule,
                                   "score": top.score})

    def stats(self) -> dict[str, Any]:
        """One log row: best so far, the reported individuals' scores and sizes, counts."""
        reported = self._reported()
        scores = np.array([ind.score for ind in reported])
        sizes = np.array([ind.size for ind in reported])
        best = self.hall_of_fame[0] if self.hall_of_fame else None
        return {
            "generation": self.generation,
            "best_score": float(best.score) if best else None,
            "best_rule": best.rule if best else None,
            "population_best": float(scores.max()) if len(scores) else None,
            "median_score": float(np.median(scores)) if len(scores) else None,
            "mean_size": float(sizes.mean()) if len(sizes) else None,
            "max_size": int(sizes.max()) if len(sizes) else None,
            "evaluations": self.evaluations,
            **self._stats(),
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; JSON-serialisable."""
        return {
            "format": STATE_FORMAT,
            "strategy": self.name,
            "config": self.config.to_dict(),
            "generation": self.generation,
            "started": self.started,
            "rng": self.rng.bit_generator.state,
            "pending": self._pending,
            "real_bred": sorted(self.real_bred),
            "hall_of_fame": [i.to_dict() for i in self.hall_of_fame],
            "champions": self.champions,
            "evaluations": self.evaluations,
            "best_since": self.best_since,
            "real": self.real.state_dict(),
            "instance_seed": self.instance_seed,
            "own": self._state(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Strategy:
        """The strategy a :meth:`state_dict` describes (ValueError/KeyError/TypeError if bad)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a strategy state of format {STATE_FORMAT}")
        config = CampaignConfig.from_dict(state["config"])
        if state["strategy"] != config.strategy:
            raise ValueError(f"state of strategy {state['strategy']!r}, config says "
                             f"{config.strategy!r}")
        strategy = strategy_class(config.strategy)(config)
        strategy.generation = int(state["generation"])
        strategy.started = bool(state["started"])
        strategy.rng.bit_generator.state = state["rng"]
        pending = state["pending"]
        strategy._pending = None if pending is None else [str(r) for r in pending]
        strategy.real_bred = {str(r) for r in state.get("real_bred", [])}
        strategy.hall_of_fame = [Individual.from_dict(d) for d in state["hall_of_fame"]]
        strategy.champions = [dict(c) for c in state["champions"]]
        strategy.evaluations = int(state["evaluations"])
        strategy.best_since = int(state["best_since"])
        strategy.real.load_state(state.get("real", []))
        strategy.instance_seed = int(state.get("instance_seed", config.seed))
        strategy._load_state(state["own"])
        for rule in [i.rule for i in strategy.hall_of_fame] + (strategy._pending or []):
            parse(rule)  # a tampered checkpoint fails here with a RuleSyntaxError
        return strategy


__all__ = ["Individual", "STATE_FORMAT", "Strategy", "strategy_class", "thresholds_for"]
