"""The evolution engine: an ask/tell ``Campaign`` with regularized and generational loops.

References: Real et al. 2019 / AutoML-Zero (regularized "aging" evolution: tournament of S
sampled individuals picks a parent, the child replaces the *oldest*), Chen et al. 2023 (Lion
search: population warm-started from AdamW, constant mutation x2^N(0,1), restarts from the best,
funnel selection), DEAP (typed GP operators; our own explicit loop, as its docs recommend).

The campaign is a function of (config, seed): every random draw comes from one
``numpy.random.Generator`` whose state is saved in each checkpoint, and the functional
equivalence cache lives here (not in workers), so serial, process and Ray executors and a
killed-and-resumed run all reach the same state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from evolve.operators import Limits, vary
from primitives.grammar import RuleSyntaxError, parse, to_text
from primitives.random_rules import random_population
from primitives.rules import KNOWN_RULES

FLOOR = -1.0  # fitness of a rule that failed every task (scores are >= this floor)
ALGORITHMS = ("aging", "generational")
EXECUTORS = ("serial", "process", "ray")


class ConfigError(ValueError):
    """A campaign config that cannot run; the message says which field and why."""


@dataclass
class CampaignConfig:
    """Everything that determines a campaign (with the seed). Stored as config.json."""

    population: int = 32
    generations: int = 20
    children: int = 0  # children per generation; 0 = population // 2
    algorithm: str = "aging"
    tournament: int = 4
    crossover_prob: float = 0.1
    parsimony: float = 0.002
    max_height: int = 8
    max_size: int = 32
    warm_start: str = "random"
    restart_after: int = 0  # generations without improvement before a restart; 0 = never
    suite: str = "default"
    heldout_suite: str = "heldout"
    hall_of_fame: int = 10
    seed: int = 0
    checkpoint_every: int = 5
    executor: str = "process"
    workers: int = 0  # 0 = one per core
    ray_address: str | None = None

    @property
    def children_per_generation(self) -> int:
        return self.children or max(1, self.population // 2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignConfig:
        if not isinstance(data, dict):
            raise ConfigError("a config must be a JSON object of field: value")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        values = {}
        defaults = cls()
        for name, value in data.items():
            expected = type(getattr(defaults, name))
            if name == "ray_address":
                if value is not None and not isinstance(value, str):
                    raise ConfigError("ray_address must be a string such as 'auto' or null")
            elif expected is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            elif expected is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            elif expected is str and not isinstance(value, str):
                raise ConfigError(f"{name} must be text, got {value!r}")
            values[name] = float(value) if expected is float else value
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        need(self.population >= 2, f"population must be >= 2, got {self.population}")
        need(self.generations >= 0, f"generations must be >= 0, got {self.generations}")
        need(self.children >= 0, f"children must be >= 0, got {self.children}")
        need(self.algorithm in ALGORITHMS, f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        need(1 <= self.tournament <= self.population,
             f"tournament must be in 1..population, got {self.tournament}")
        need(0.0 <= self.crossover_prob <= 1.0, "crossover_prob must be in [0, 1]")
        need(math.isfinite(self.parsimony) and self.parsimony >= 0.0, "parsimony must be >= 0")
        need(self.max_height >= 1 and self.max_size >= 1, "max_height and max_size must be >= 1")
        need(self.hall_of_fame >= 1, "hall_of_fame must be >= 1")
        need(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        need(self.executor in EXECUTORS, f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        need(self.workers >= 0, "workers must be >= 0")
        need(self.seed >= 0, "seed must be >= 0")
        warm_start_rules(self.warm_start)  # raises ConfigError when unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def warm_start_rules(spec: str) -> list[str] | None:
    """Rule texts for a warm start spec ("random", "adam", "adam,lion", or rule texts)."""
    if spec.strip() == "random":
        return None
    rules = []
    for item in split_top_level(spec):
        name = item.strip()
        if name in KNOWN_RULES:
            rules.append(KNOWN_RULES[name].rule)
            continue
        try:
            rules.append(to_text(parse(name)))
        except RuleSyntaxError as err:
            raise ConfigError(
                f"warm start {name!r} is neither 'random', a known rule ({', '.join(KNOWN_RULES)}) "
                f"nor a valid rule: {err}"
            ) from None
    if not rules:
        raise ConfigError("warm start is empty; use 'random' or names such as 'adam'")
    return rules


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses (rule texts contain commas)."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


class Evaluator(Protocol):
    """What the campaign needs from fitness/: scores for rule texts, and a fingerprint."""

    def fingerprint(self, rule: str) -> str: ...

    def evaluate(self, rules: list[str]) -> list[dict]: ...


@dataclass
class Individual:
    rule: str
    score: float
    size: int
    birth: int  # generation in which it was created
    tasks: list[dict] = field(default_factory=list)
    reason: str | None = None

    def selection_fitness(self, parsimony: float) -> float:
        return self.score - parsimony * self.size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Individual:
        return cls(**d)


def _finite(x: Any) -> float:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return FLOOR
    return value if math.isfinite(value) else FLOOR


class Campaign:
    """Ask/tell evolution. ``ask()`` returns rule texts to score; ``tell()`` takes the scores.

    A driver (the CLI, a notebook, a distributed worker pool) loops::

        while not campaign.done:
            rules = campaign.ask()
            campaign.tell(rules, score(rules))
    """

    def __init__(self, config: CampaignConfig):
        config.validate()
        self.config = config
        self.limits = Limits(config.max_height, config.max_size)
        self.rng = np.random.default_rng(config.seed)
        self.generation = 0  # generations completed (the initial population is generation 0)
        self.population: list[Individual] = []
        self.hall_of_fame: list[Individual] = []
        self.champions: list[dict] = []  # best-so-far rule after each generation
        self.evaluations = 0  # candidates scored (cache hits included)
        self.best_since = 0  # generation of the last improvement (for restarts)
        self.restarts = 0
        self._pending: list[str] | None = None

    # ---------------------------------------------------------------- ask / tell
    @property
    def initialised(self) -> bool:
        return bool(self.population)

    @property
    def done(self) -> bool:
        return self.initialised and self.generation >= self.config.generations

    def ask(self) -> list[str]:
        """The next batch of rule texts to score (the same batch until told)."""
        if self._pending is not None:
            return list(self._pending)
        if not self.initialised:
            batch = self._initial_rules()
        else:
            batch = [self._child() for _ in range(self.config.children_per_generation)]
        self._pending = batch
        return list(batch)

    def tell(self, rules: list[str], results: list[dict]) -> None:
        if self._pending is None or list(rules) != self._pending:
            raise ValueError("tell() must answer the batch returned by the last ask()")
        if len(results) != len(rules):
            raise ValueError("tell() needs one result per rule")
        self._pending = None
        born = 0 if not self.initialised else self.generation + 1
        children = [self._individual(r, res, born) for r, res in zip(rules, results)]
        self.evaluations += len(children)
        if not self.initialised:
            self.population = children
        elif self.config.algorithm == "aging":
            self.population.extend(children)
            # regularized evolution: the oldest die, whatever their fitness
            excess = len(self.population) - self.config.population
            if excess > 0:
                self.population = self.population[excess:]
        else:
            merged = self.population + children
            merged.sort(key=self._rank_key)
            self.population = merged[: self.config.population]
            # keep age order stable for reporting: oldest first
            self.population.sort(key=lambda ind: ind.birth)
        self.generation = born
        self._update_hall_of_fame(children)
        self._maybe_restart()

    # ---------------------------------------------------------------- internals
    def _rank_key(self, ind: Individual):
        return (-ind.selection_fitness(self.config.parsimony), ind.size, ind.rule)

    def _individual(self, rule: str, result: dict, born: int) -> Individual:
        return Individual(
            rule=rule,
            score=_finite(result.get("aggregate")),
            size=parse(rule).size(),
            birth=born,
            tasks=list(result.get("tasks", [])),
            reason=result.get("reason"),
        )

    def _initial_rules(self) -> list[str]:
        n = self.config.population
        warm = warm_start_rules(self.config.warm_start)
        if warm is None:
            trees = random_population(self.rng, n, 1, min(5, self.config.max_height))
            return [to_text(t) for t in trees]
        return [warm[i % len(warm)] for i in range(n)]

    def _tournament(self) -> Individual:
        k = self.config.tournament
        picks = self.rng.choice(len(self.population), size=k, replace=False)
        sample = [self.population[int(i)] for i in picks]
        return min(sample, key=self._rank_key)

    def _child(self) -> str:
        parent = self._tournament()
        other = self._tournament() if self.config.crossover_prob > 0 else None
        child, _ = vary(parse(parent.rule), self.rng, self.limits,
                        other=parse(other.rule) if other else None,
                        crossover_prob=self.config.crossover_prob)
        return to_text(child)

    def _update_hall_of_fame(self, candidates: list[Individual]) -> None:
        best: dict[str, Individual] = {ind.rule: ind for ind in self.hall_of_fame}
        for ind in candidates:
            if ind.rule not in best:
                best[ind.rule] = ind
        ranked = sorted(best.values(), key=lambda i: (-i.score, i.size, i.rule))
        previous = self.hall_of_fame[0].score if self.hall_of_fame else -math.inf
        self.hall_of_fame = ranked[: self.config.hall_of_fame]
        top = self.hall_of_fame[0]
        if top.score > previous:
            self.best_since = self.generation
        if not self.champions or self.champions[-1]["rule"] != top.rule:
            self.champions.append({"generation": self.generation, "rule": top.rule,
                                   "score": top.score})

    def _maybe_restart(self) -> None:
        after = self.config.restart_after
        if after <= 0 or self.generation - self.best_since < after:
            return
        # Lion search: restart the population from the best rule found so far
        best = self.hall_of_fame[0]
        self.population = [Individual(best.rule, best.score, best.size, self.generation,
                                      best.tasks, best.reason)
                           for _ in range(self.config.population)]
        self.best_since = self.generation
        self.restarts += 1

    # ---------------------------------------------------------------- reporting
    def stats(self) -> dict[str, Any]:
        scores = np.array([ind.score for ind in self.population])
        sizes = np.array([ind.size for ind in self.population])
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
            "restarts": self.restarts,
        }

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; JSON-serialisable."""
        return {
            "format": 1,
            "config": self.config.to_dict(),
            "generation": self.generation,
            "rng": self.rng.bit_generator.state,
            "population": [i.to_dict() for i in self.population],
            "hall_of_fame": [i.to_dict() for i in self.hall_of_fame],
            "champions": self.champions,
            "evaluations": self.evaluations,
            "best_since": self.best_since,
            "restarts": self.restarts,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Campaign:
        campaign = cls(CampaignConfig.from_dict(state["config"]))
        campaign.generation = int(state["generation"])
        campaign.rng.bit_generator.state = state["rng"]
        campaign.population = [Individual.from_dict(d) for d in state["population"]]
        campaign.hall_of_fame = [Individual.from_dict(d) for d in state["hall_of_fame"]]
        campaign.champions = list(state["champions"])
        campaign.evaluations = int(state["evaluations"])
        campaign.best_since = int(state["best_since"])
        campaign.restarts = int(state["restarts"])
        for ind in campaign.population + campaign.hall_of_fame:
            parse(ind.rule)  # a tampered checkpoint fails here with a RuleSyntaxError
        return campaign


__all__ = ["ALGORITHMS", "Campaign", "CampaignConfig", "ConfigError", "EXECUTORS", "Evaluator",
           "FLOOR", "Individual", "split_top_level", "warm_start_rules"]
