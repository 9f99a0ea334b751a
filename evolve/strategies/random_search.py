"""The ``random`` strategy: random search over the rule grammar, the baseline every search must beat.

AutoML-Zero (Real et al. 2020) and the Lion search (Chen et al. 2023) both report that random
search over their spaces never matched evolution; this strategy measures the same here. Each
rule is a random well-typed tree from :func:`primitives.random_rules.random_tree` (the same
generator, literal pools and typing as evolution's random start), its height drawn uniformly
in ``1..max_height`` and grown (not full); a tree over ``max_size`` nodes is drawn again, so
every rule respects the campaign's limits. Nothing is learned from the scores: the strategy's
only state is its random Generator, which the base class checkpoints.
"""

from __future__ import annotations

from evolve.strategies import batch_size
from evolve.strategy import Individual, Strategy
from primitives.grammar import Node, to_text
from primitives.random_rules import random_tree

MAX_REDRAWS = 100


class RandomSearch(Strategy):
    """Uniform random rules within the campaign's height and size limits."""

    name = "random"

    def _propose(self) -> list[str]:
        return [to_text(self._draw()) for _ in range(batch_size(self.config, self.started))]

    def _draw(self) -> Node:
        height = int(self.rng.integers(1, self.config.max_height + 1))
        for _ in range(MAX_REDRAWS):
            tree = random_tree(self.rng, height)
            if tree.size() <= self.config.max_size and tree.height() <= self.config.max_height:
                return tree
            height = max(1, height - 1)  # deep draws overflow small size limits: come down
        return Node("g")  # max_size >= 1 always (the config says so)

    def _update(self, told: list[Individual]) -> None:
        """Random search learns nothing from the scores."""


__all__ = ["RandomSearch"]
