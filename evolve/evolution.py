"""The ``evolution`` strategy: regularized ("aging") and generational evolution of rule trees.

References: Real et al. 2019 / AutoML-Zero (regularized evolution: a tournament of S sampled
individuals picks a parent, the child replaces the *oldest*), Chen et al. 2023 (the Lion search:
population warm-started from AdamW, constant mutation x2^N(0,1), restarts from the best),
DEAP (typed GP operators, see :mod:`evolve.operators`; our own explicit loop, as its docs
recommend). Multi-fidelity: once tier 2 has scored rules, a share of the parents
(``real_parents``) comes from its leaderboard, so what wins in real training breeds, and the
best of their children by proxy score takes one of the generation's tier-2 places
(:meth:`evolve.tiers.RealTierStage.promote`): tier 2 searches around its own best. The
bookkeeping (hall of fame, champions, counters, state) is the base class's,
:class:`evolve.strategy.Strategy`; this module only proposes children and updates the population.
"""

from __future__ import annotations

from typing import Any

from evolve.config import CampaignConfig, warm_start_rules
from evolve.operators import Limits, vary
from evolve.strategy import Individual, Strategy
from primitives.grammar import parse, to_text
from primitives.random_rules import random_population


class Evolution(Strategy):
    """Aging (default) or generational (mu + lambda) evolution with tournament selection."""

    name = "evolution"

    def __init__(self, config: CampaignConfig):
        super().__init__(config)
        self.limits = Limits(config.max_height, config.max_size)
        self.population: list[Individual] = []
        self.restarts = 0

    # ------------------------------------------------------------------ proposing
    def _propose(self) -> list[str]:
        if not self.started:
            return self._initial_rules()
        # tier 2's leaderboard, sorted once a generation for every child's parent draw
        board = [e.rule for e in self.real.leaderboard()] if self.config.real_parents > 0 else []
        return [self._child(board) for _ in range(self.config.children_per_generation)]

    def _initial_rules(self) -> list[str]:
        n = self.config.population
        warm = warm_start_rules(self.config.warm_start)
        if warm is None:
            trees = random_population(self.rng, n, 1, min(5, self.config.max_height))
            return [to_text(t) for t in trees]
        return [warm[i % len(warm)] for i in range(n)]

    def _rank_key(self, ind: Individual):
        return (-ind.selection_fitness(self.config.parsimony), ind.size, ind.rule)

    def _tournament(self) -> Individual:
        picks = self.rng.choice(len(self.population), size=self.config.tournament, replace=False)
        return min((self.population[int(i)] for i in picks), key=self._rank_key)

    def _parent(self, board: list[str]) -> tuple[str, bool]:
        """A parent's rule, and whether tier 2 chose it: with chance ``real_parents`` (once tier
        2 has scored rules) a tournament over its leaderboard ``board`` (best first), else over
        the population."""
        if board and self.rng.random() < self.config.real_parents:
            picks = self.rng.choice(len(board), size=min(self.config.tournament, len(board)),
                                    replace=False)
            return board[int(min(picks))], True
        return self._tournament().rule, False

    def _child(self, board: list[str]) -> str:
        parent, from_tier2 = self._parent(board)
        other = self._tournament() if self.config.crossover_prob > 0 else None
        child, _ = vary(parse(parent), self.rng, self.limits,
                        other=parse(other.rule) if other else None,
                        crossover_prob=self.config.crossover_prob)
        text = to_text(child)
        if from_tier2:
            self.real_bred.add(text)
        return text

    # ------------------------------------------------------------------ updating
    def _update(self, told: list[Individual]) -> None:
        if not self.population:
            self.population = told
        elif self.config.algorithm == "aging":
            self.population.extend(told)
            # regularized evolution: the oldest die, whatever their fitness
            excess = len(self.population) - self.config.population
            if excess > 0:
                self.population = self.population[excess:]
        else:
            merged = sorted(self.population + told, key=self._rank_key)
            # keep age order for reporting: oldest first
            self.population = sorted(merged[: self.config.population], key=lambda i: i.birth)
        self._maybe_restart()

    def _maybe_restart(self) -> None:
        after = self.config.restart_after
        if after <= 0 or self.generation - self.best_since < after:
            return
        # the Lion search: restart the population from the best rule found so far
        best = self.hall_of_fame[0]
        self.population = [Individual(best.rule, best.score, best.size, self.generation,
                                      list(best.tasks), best.reason, best.hurdle_score)
                           for _ in range(self.config.population)]
        self.best_since = self.generation
        self.restarts += 1

    # ------------------------------------------------------------------ state and reporting
    def _reported(self) -> list[Individual]:
        return self.population

    def _survivors(self) -> list[Individual]:
        return self.population

    def _stats(self) -> dict[str, Any]:
        return {"restarts": self.restarts}

    def _state(self) -> dict[str, Any]:
        return {"population": [i.to_dict() for i in self.population], "restarts": self.restarts}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = [Individual.from_dict(d) for d in state["population"]]
        self.restarts = int(state["restarts"])
        for ind in self.population:
            parse(ind.rule)  # a tampered checkpoint fails here with a RuleSyntaxError


__all__ = ["Evolution"]
