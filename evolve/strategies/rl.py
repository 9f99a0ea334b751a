"""The ``rl`` strategy: a recurrent controller writes rules token by token, trained by REINFORCE.

Neural Optimizer Search (Bello et al. 2017) trains an RNN that emits an update rule as a
sequence of tokens with policy gradients, the rule's score as the reward. Here:

* **Tokens** are the rule grammar in prefix order: every primitive of
  :data:`primitives.table.TABLE`, and numeric literals from small pools per argument type
  (:data:`VEC_POOL`, :data:`CONST_POOL`, :data:`BETA_POOL`; the values real optimizers use).
* **Masks** make every sample a rule: the controller fills the open argument slots of a stack
  in prefix order, and at each slot only the tokens of that slot's type are allowed (a literal
  from the beta pool in a decay position, from the const pool in a const position, any operand,
  schedule, vec literal or primitive in a vec position), a primitive only while the tree stays
  within ``max_height`` and its arguments still fit in ``max_size`` nodes (each open slot needs
  one). So every sample parses, type-checks and respects the campaign's limits.
* **Policy**: a GRU cell whose input at each step is the sum of embeddings of the previous
  token, the parent primitive, the slot's type and its argument position; a linear head gives
  logits over the vocabulary, masked.
* **Training**: REINFORCE on each told batch, reward ``log2(score)`` (the log-ratio scale on
  which suite scores are averaged), in its risk-seeking form (Petersen et al. 2021): only the
  rules above the batch's best-fifth threshold pull, their advantage taken against a baseline
  that is the larger of that threshold and its moving average; an entropy bonus keeps it
  exploring; Adam on the controller's parameters, gradient norm clipped.

Determinism (a campaign is a function of (config, seed)): parameters are initialised from the
strategy's Generator, samples are drawn from it by inverse CDF on probabilities computed in
float64 on one thread, and the parameters, Adam's state, the baseline and the pending batch's
tokens are in the checkpoint as JSON numbers (float64 round-trips exactly), so ``evolve
resume`` continues exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from evolve.config import CampaignConfig
from evolve.strategies import batch_size
from evolve.strategy import Individual, Strategy
from fitness.score import FLOOR
from fitness.training.torch_tasks import torch_threads
from primitives.grammar import Node, lit, to_text
from primitives.random_rules import BETAS, VEC_LITERALS
from primitives.table import BETA, CONST, TABLE, VEC

VEC_POOL = VEC_LITERALS
CONST_POOL = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 2.0)
BETA_POOL = BETAS + (0.9999,)
SLOT_TYPES = (VEC, CONST, BETA)
MASKED = -1e9  # finite: 0 * MASKED stays 0 in the entropy, where -inf would give NaN gradients


@dataclass(frozen=True)
class Token:
    """One token: a primitive (``args`` its argument types) or a literal of type ``slot``."""

    text: str
    slot: str  # the type of slot it fills
    args: tuple[str, ...] = ()
    value: float | None = None

    def node(self, children: tuple[Node, ...]) -> Node:
        return lit(self.value) if self.value is not None else Node(self.text, children)


def vocabulary() -> list[Token]:
    """Every primitive of the table, then the literal pools (this order is the policy's)."""
    tokens = [Token(p.name, VEC, tuple(p.args)) for p in TABLE.values()]
    for slot, pool in ((VEC, VEC_POOL), (CONST, CONST_POOL), (BETA, BETA_POOL)):
        tokens += [Token(repr(float(v)), slot, value=float(v)) for v in pool]
    return tokens


@dataclass(frozen=True)
class ControllerSettings:
    """The controller's size and training constants (NOS used a small RNN, as here)."""

    embedding: int = 32
    hidden: int = 64
    lr: float = 5e-3
    entropy: float = 0.05  # weight of the entropy bonus (per token of a rule, on average)
    risk_seeking: float = 0.2  # learn from the batch's best fraction only (1.0: plain REINFORCE)
    baseline_decay: float = 0.9  # of the moving-average reward baseline
    clip_norm: float = 1.0


class Grammar:
    """The token masks: which tokens may fill the next slot of a partial rule (see the module)."""

    def __init__(self, max_height: int, max_size: int):
        self.tokens = vocabulary()
        self.max_height, self.max_size = max_height, max_size
        n = len(self.tokens)
        self.by_slot = {s: np.array([t.slot == s for t in self.tokens]) for s in (CONST, BETA)}
        self.leaves = np.array([t.slot == VEC and not t.args for t in self.tokens])
        self.arity = np.array([len(t.args) for t in self.tokens])
        self.start = n  # index of the start-of-rule marker among previous tokens
        self.root = n  # index of "no parent"


class Partial:
    """A rule being written: its tokens and the stack of open slots (type, depth, parent, pos)."""

    def __init__(self, grammar: Grammar):
        self.g = grammar
        self.tokens: list[int] = []
        self.slots: list[tuple[str, int, int, int]] = [(VEC, 0, grammar.root, 0)]

    @property
    def done(self) -> bool:
        return not self.slots

    def features(self) -> tuple[int, int, int, int]:
        """(previous token, parent token, slot type, argument position) of the next slot."""
        slot, _, parent, pos = self.slots[-1]
        prev = self.tokens[-1] if self.tokens else self.g.start
        return prev, parent, SLOT_TYPES.index(slot), pos

    def mask(self) -> np.ndarray:
        g = self.g
        slot, depth, _, _ = self.slots[-1]
        if slot != VEC:
            return g.by_slot[slot].copy()
        # each open slot needs one node: a primitive's arguments must fit in what is left
        room = g.max_size - (len(self.tokens) + len(self.slots))
        inner = (g.arity > 0) & (g.arity <= room) & (depth + 1 <= g.max_height)
        return g.leaves | inner

    def push(self, index: int) -> None:
        slot, depth, _, _ = self.slots.pop()
        token = self.g.tokens[index]
        assert token.slot == slot, "the mask admits only tokens of the slot's type"
        self.tokens.append(index)
        for pos in reversed(range(len(token.args))):
            self.slots.append((token.args[pos], depth + 1, index, pos))

    def tree(self) -> Node:
        """The finished rule (prefix tokens to a tree, iteratively)."""
        toks = [self.g.tokens[i] for i in self.tokens]
        stack: list[list] = []
        for token in toks:
            stack.append([token, []])
            while stack and len(stack[-1][1]) == len(stack[-1][0].args):
                done_token, children = stack.pop()
                node = done_token.node(tuple(children))
                if not stack:
                    return node
                stack[-1][1].append(node)
        raise ValueError("unfinished rule")


class Controller(nn.Module):
    """GRU cell over summed embeddings (previous token, parent, slot type, position)."""

    def __init__(self, vocab: int, settings: ControllerSettings):
        super().__init__()
        e, h = settings.embedding, settings.hidden
        self.prev = nn.Embedding(vocab + 1, e)
        self.parent = nn.Embedding(vocab + 1, e)
        self.slot = nn.Embedding(len(SLOT_TYPES), e)
        self.position = nn.Embedding(3, e)
        self.cell = nn.GRUCell(e, h)
        self.head = nn.Linear(h, vocab)
        self.double()

    def init_from(self, rng: np.random.Generator) -> None:
        """Parameters drawn from ``rng`` (torch's global generator is never used)."""
        bound = 1.0 / math.sqrt(self.cell.hidden_size)
        with torch.no_grad():
            for name, param in self.named_parameters():
                shape = tuple(param.shape)
                if name.endswith(".weight") and name.split(".")[0] in (
                        "prev", "parent", "slot", "position"):
                    values = rng.normal(0.0, 0.1, size=shape)
                else:
                    values = rng.uniform(-bound, bound, size=shape)
                param.copy_(torch.from_numpy(values))

    def step(self, feats: np.ndarray, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for a batch: features (B, 4) -> (logits (B, V), new hidden (B, H))."""
        f = torch.from_numpy(feats)
        x = self.prev(f[:, 0]) + self.parent(f[:, 1]) + self.slot(f[:, 2]) + self.position(f[:, 3])
        hidden = self.cell(x, hidden)
        return self.head(hidden), hidden


def _masked_log_probs(logits: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    return torch.log_softmax(logits.masked_fill(torch.from_numpy(~mask), MASKED), dim=-1)


class RLController(Strategy):
    """Rules written by a recurrent policy, improved by REINFORCE on their scores."""

    name = "rl"

    def __init__(self, config: CampaignConfig, settings: ControllerSettings | None = None):
        super().__init__(config)
        self.settings = settings or ControllerSettings()
        self.grammar = Grammar(config.max_height, config.max_size)
        self.policy = Controller(len(self.grammar.tokens), self.settings)
        self.policy.init_from(self.rng)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.settings.lr)
        self.baseline: float | None = None
        self.updates = 0
        self._pending_tokens: list[list[int]] = []
        self._last_entropy: float | None = None

    # ------------------------------------------------------------------ sampling
    def _propose(self) -> list[str]:
        partials = self._sample(batch_size(self.config, self.started))
        self._pending_tokens = [p.tokens for p in partials]
        return [to_text(p.tree()) for p in partials]

    def _sample(self, n: int) -> list[Partial]:
        partials = [Partial(self.grammar) for _ in range(n)]
        hidden = torch.zeros(n, self.settings.hidden, dtype=torch.float64)
        with torch_threads(1), torch.no_grad():
            while True:
                live = [i for i, p in enumerate(partials) if not p.done]
                if not live:
                    return partials
                feats = np.array([partials[i].features() for i in live], dtype=np.int64)
                masks = np.array([partials[i].mask() for i in live])
                logits, h = self.policy.step(feats, hidden[live])
                hidden[live] = h
                probs = _masked_log_probs(logits, masks).exp().numpy()
                for row, i in enumerate(live):
                    cdf = np.cumsum(probs[row])
                    pick = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
                    pick = min(pick, len(cdf) - 1)
                    while not masks[row, pick]:  # a rounding edge at the top of the cdf
                        pick -= 1
                    partials[i].push(pick)

    # ------------------------------------------------------------------ learning
    def _replay(self, tokens: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of each token sequence and its summed entropy, with gradients."""
        steps = max(len(t) for t in tokens)
        n = len(tokens)
        partials = [Partial(self.grammar) for _ in range(n)]
        hidden = torch.zeros(n, self.settings.hidden, dtype=torch.float64)
        logp = torch.zeros(n, dtype=torch.float64)
        entropy = torch.zeros(n, dtype=torch.float64)
        for t in range(steps):
            live = [i for i in range(n) if t < len(tokens[i])]
            feats = np.array([partials[i].features() for i in live], dtype=np.int64)
            masks = np.array([partials[i].mask() for i in live])
            logits, h = self.policy.step(feats, hidden[live])
            hidden = hidden.clone()
            hidden[live] = h
            lp = _masked_log_probs(logits, masks)
            chosen = torch.tensor([tokens[i][t] for i in live])
            index = torch.tensor(live)
            logp = logp.index_add(0, index, lp.gather(1, chosen[:, None]).squeeze(1))
            entropy = entropy.index_add(0, index, -(lp.exp() * lp).sum(dim=1))
            for i in live:
                partials[i].push(tokens[i][t])
        return logp, entropy

    def _update(self, told: list[Individual]) -> None:
        rewards = np.array([math.log2(max(ind.score, FLOOR)) for ind in told])
        # Risk-seeking policy gradient (Petersen et al. 2021, Deep Symbolic Regression): a
        # search wants the best rule, not the best average. Plain REINFORCE here collapses onto
        # `g` within ~20 updates (most random rules score the floor, so g beats the mean by far
        # and the policy stops exploring); so only the batch's top fraction pulls, against a
        # baseline that never lags below the current threshold (a lagging one rewarded the copies
        # of g that fill a collapsing batch, and collapsed it further).
        threshold = float(np.quantile(rewards, 1.0 - self.settings.risk_seeking))
        baseline = threshold if self.baseline is None else max(threshold, self.baseline)
        advantages = torch.from_numpy(np.maximum(rewards - baseline, 0.0))
        with torch_threads(1):
            logp, entropy = self._replay(self._pending_tokens)
            lengths = torch.tensor([len(t) for t in self._pending_tokens], dtype=torch.float64)
            loss = -(advantages * logp).mean() - self.settings.entropy * (entropy / lengths).mean()
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), self.settings.clip_norm)
            self.optimizer.step()
        decay = self.settings.baseline_decay
        self.baseline = (threshold if self.baseline is None
                         else decay * self.baseline + (1 - decay) * threshold)
        self._last_entropy = float(entropy.detach().mean())
        self._pending_tokens = []
        self.updates += 1

    # ------------------------------------------------------------------ state and reporting
    def _stats(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "entropy": self._last_entropy}

    def _state(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "parameters": {k: v.tolist() for k, v in self.policy.state_dict().items()},
            "adam": {str(k): {name: (float(v) if v.dim() == 0 else v.tolist())
                              for name, v in s.items()} for k, s in opt["state"].items()},
            "baseline": self.baseline,
            "updates": self.updates,
            "pending_tokens": self._pending_tokens,
            "entropy": self._last_entropy,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        params = {k: torch.tensor(v, dtype=torch.float64) for k, v in state["parameters"].items()}
        self.policy.load_state_dict(params)
        opt = self.optimizer.state_dict()
        opt["state"] = {int(k): {name: (torch.tensor(v, dtype=torch.float32) if name == "step"
                                        else torch.tensor(v, dtype=torch.float64))
                                 for name, v in s.items()} for k, s in state["adam"].items()}
        self.optimizer.load_state_dict(opt)
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
        self._pending_tokens = [[int(i) for i in t] for t in state["pending_tokens"]]
        self._last_entropy = state["entropy"]
        n = len(self.grammar.tokens)
        if any(not 0 <= i < n for t in self._pending_tokens for i in t):
            raise ValueError("pending tokens outside the controller's vocabulary")


__all__ = ["BETA_POOL", "CONST_POOL", "ControllerSettings", "Controller", "Grammar", "Partial",
           "RLController", "Token", "VEC_POOL", "vocabulary"]
