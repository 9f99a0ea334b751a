"""What a campaign is made of: its config (with the seed, everything that determines it).

:class:`CampaignConfig` is stored as ``config.json`` in the run directory and inside every
checkpoint; :data:`STRATEGIES`, :data:`ALGORITHMS` and :data:`EXECUTORS` are the choices its
fields admit. A bad value is a :class:`ConfigError` whose message names the field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

from fitness.schedule import SCHEDULES as SCHEDULE_NAMES
from fitness.training import REAL_TASK_NAMES
from primitives.grammar import RuleSyntaxError, parse, to_text
from primitives.rules import KNOWN_RULES

# strategy name -> "module:class", imported only when a campaign uses it (a strategy may need
# heavy packages, such as torch for a learned controller, that the others never load)
STRATEGIES = {"evolution": "evolve.evolution:Evolution",
              # issue 14: the other meta-optimizers, side by side (evolve/strategies/)
              "random": "evolve.strategies.random_search:RandomSearch",
              "rl": "evolve.strategies.rl:RLController",
              "optuna-adam": "evolve.strategies.optuna_adam:OptunaAdam"}
ALGORITHMS = ("aging", "generational")  # of the evolution strategy
EXECUTORS = ("serial", "process", "ray")


class ConfigError(ValueError):
    """A campaign config that cannot run; the message says which field and why."""


def _field_value(name: str, value: Any, hint: Any) -> Any:
    """A config field's JSON value checked against the field's annotation (``int``, ``float``,
    ``str``, ``X | None``, ``list[str]``: names, ``list[float]``: numbers) and returned as that
    type; booleans are never numbers, as JSON ``true`` is no population size."""
    args = get_args(hint)
    or_null = ""
    if type(None) in args:  # an optional field: null, or its other type
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        or_null = " or null"
    if get_origin(hint) is list:
        element = get_args(hint)[0]
        number = element is float
        ok = isinstance(value, list) and all(
            _is_number(v) if number else isinstance(v, element) for v in value)
        if not ok:
            kind = "numbers" if number else "names"
            raise ConfigError(f"{name} must be a list of {kind}, got {value!r}")
        return [float(v) for v in value] if number else value
    if hint is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{name} must be an integer{or_null}, got {value!r}")
    if hint is float:
        if not _is_number(value):
            raise ConfigError(f"{name} must be a number{or_null}, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{name} must be text{or_null}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class CampaignConfig:
    """Everything that determines a campaign (with the seed). Stored as config.json.

    The comment on each field's line is its meaning in docs/config.md (evolve.config_doc).
    """

    # the search: what proposes rules, and how evolution varies them
    strategy: str = "evolution"  # what proposes rules (evolution: aging or generational)
    population: int = 32  # rules in the population
    generations: int = 100  # batches after the first one (generation 0 is the initial batch)
    children: int = 0  # children per generation; 0 = population // 2
    algorithm: str = "aging"  # aging: regularized evolution (the oldest dies); generational: (mu+lambda)
    tournament: int = 4  # rules sampled per tournament that picks a parent
    crossover_prob: float = 0.1  # chance that a child comes from one-point crossover
    parsimony: float = 0.002  # score subtracted per node of size when parents are picked
    max_height: int = 8  # tallest rule tree allowed
    max_size: int = 32  # most nodes a rule may have
    warm_start: str = "random"  # random, a known rule (adam), a comma list (adam,lion,sgd) or rule texts
    restart_after: int = 0  # generations without improvement before a restart; 0 = never
    # scoring on the proxy suites
    suite: str = "default"  # proxy suite every candidate is scored on (`evolve tasks`)
    heldout_suite: str = "heldout"  # proxy suite of the held-out funnel at the end
    hurdle_quantile: float = 0.25  # a child must reach this quantile of the population's hurdle progress (never below 0.05 of tuned Adam's); 0 = that fixed floor only
    stop_quantile: float = 0.5  # a child's suite stops once it cannot reach this quantile of the population's scores (its score is then that bound); 0 = never stop
    screen_quantile: float = 0.75  # a child's suite stops after its first tasks (the screen) when their mean log-ratio is below this quantile of the population's on them (its score is then that mean's); 0 = no screen
    screen_tasks: int = 1  # the screen: how many of the suite's cheapest tasks run first
    # the run: bookkeeping, seed and where scoring runs
    hall_of_fame: int = 10  # best distinct rules kept (of each tier)
    seed: int = 0  # the seed: a campaign is a function of (config, seed)
    checkpoint_every: int = 5  # generations between checkpoints (also at stops and the end)
    executor: str = "process"  # serial, process (a spawned pool) or ray; never changes results
    workers: int = 0  # worker processes of the process executor; 0 = one per core
    ray_address: str | None = None  # Ray cluster address with executor ray (null: a local one)
    # the real-data tier (tier 2) and the final selection
    real_k: int = 2  # new candidates per generation trained on tier 2 (0: no tier 2)
    real_min_score: float = 0.9  # proxy score a candidate needs to be trained on tier 2
    real_tasks: list[str] = field(default_factory=lambda: list(REAL_TASK_NAMES))  # tier-2 tasks: built-in names or FILE.py:FUNCTION (your own)
    real_seeds: int = 2  # seeds per learning rate on tier 2
    real_softmin: float = 0.3  # tier 2 ranks by the soft minimum of a rule's task log2-ratios at this temperature, so a rule that loses on one task ranks low (0: their plain mean)
    real_parents: float = 0.25  # chance that a child's parent is the winner of a tournament over tier 2's leaderboard instead of the population, so real training steers the search; the best such child of a generation takes one of its tier-2 places (0: proxy parents only)
    confirm: int = 5  # top tier-2 rules re-scored on fresh seeds for the final selection
    confirm_seeds: int = 4  # fresh seeds per learning rate for that re-scoring; a rule's final score weighs all its seeds alike, so the leaderboard's winner's curse counts less
    select_tolerance: float = 0.01  # the answer is the smallest confirmed rule whose final score is within this fraction of the best one (0: the best)
    warmup_betas: list[float] = field(default_factory=lambda: [0.9, 0.95, 0.99])  # the final selection also confirms each confirmed rule times the warmup ema(1.0, b) (a step that ramps up over ~1/(1-b) steps) for each b, on tier 2's seeds and the fresh ones ([]: none)
    schedule: str = "cosine"  # learning-rate schedule of every optimizer, in every tier
    redraw_every: int = 25  # generations between new proxy-task instances (0: never)

    def proxy_seed(self, generation: int) -> int:
        """The seed of the proxy-task instances that score ``generation``'s batch: new
        instances every ``redraw_every`` generations, so rules cannot fit fixed ones."""
        if self.redraw_every <= 0:
            return self.seed
        return self.seed + generation // self.redraw_every

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
        hints = get_type_hints(cls)
        values = {name: _field_value(name, value, hints[name]) for name, value in data.items()}
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        need(self.strategy in STRATEGIES,
             f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
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
        need(self.real_k >= 0, f"real_k must be >= 0, got {self.real_k}")
        need(self.real_seeds >= 1, f"real_seeds must be >= 1, got {self.real_seeds}")
        need(self.confirm >= 0, f"confirm must be >= 0, got {self.confirm}")
        need(self.confirm_seeds >= 1, f"confirm_seeds must be >= 1, got {self.confirm_seeds}")
        need(math.isfinite(self.select_tolerance) and 0.0 <= self.select_tolerance < 1.0,
             f"select_tolerance must be in [0, 1), got {self.select_tolerance!r}")
        need(all(0.0 < b < 1.0 for b in self.warmup_betas),
             f"warmup_betas must be a list of numbers in (0, 1), got {self.warmup_betas!r}")
        need(math.isfinite(self.real_softmin) and self.real_softmin >= 0,
             f"real_softmin must be a number >= 0, got {self.real_softmin}")
        need(math.isfinite(self.real_min_score), "real_min_score must be a number")
        need(self.screen_tasks >= 0, f"screen_tasks must be >= 0, got {self.screen_tasks}")
        for name in ("hurdle_quantile", "stop_quantile", "screen_quantile", "real_parents"):
            value = getattr(self, name)
            need(math.isfinite(value) and 0.0 <= value <= 1.0,
                 f"{name} must be in [0, 1], got {value!r}")
        need(self.redraw_every >= 0, f"redraw_every must be >= 0, got {self.redraw_every}")
        need(self.schedule in SCHEDULE_NAMES,
             f"schedule must be one of {', '.join(SCHEDULE_NAMES)}, got {self.schedule!r}")
        for task in self.real_tasks:
            need(task in REAL_TASK_NAMES or (":" in task and task.split(":")[0].endswith(".py")),
                 f"real_tasks: {task!r} is neither a built-in task ({', '.join(REAL_TASK_NAMES)}) "
                 "nor FILE.py:FUNCTION")
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


__all__ = ["ALGORITHMS", "CampaignConfig", "ConfigError", "EXECUTORS", "STRATEGIES",
           "split_top_level", "warm_start_rules"]
