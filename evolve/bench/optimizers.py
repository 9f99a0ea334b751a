"""Turns the --rules list of the benchmark and validate commands into optimizer factories.

Entries of ``--rules`` (comma-separated at the top level only, since rule text has commas inside
parentheses):

* a torch baseline: ``adam``, ``adamw``, ``sgd``, ``sgd_momentum`` (or ``momentum``),
  ``nesterov``, ``lion``, ``schedulefree`` (schedule-free AdamW), ``muon`` (Muon with AdamW
  for the rest) -> torch.optim's own class, :class:`evolve.bench.lion.Lion`, or
  :mod:`evolve.bench.modern`;
* ``rule:NAME`` -> the known rule NAME through the exported class (e.g. ``rule:adam`` to compare
  the generated Adam with torch's);
* anything else goes through the one rule resolver, :func:`evolve.rundir.resolve_rule`: any
  other known rule name (``rmsprop``, ``signum``, ...), rule text, or a run's rule
  (``RUN:best``, ``RUN:search``, ``RUN:heldout``, ``RUN:3``) -> the exported class from
  :func:`primitives.export_torch.load_optimizer_class`, the same code ``evolve export`` writes.

Two entries that name one optimizer (``momentum`` and ``sgd_momentum``) are refused with a line
naming both.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from evolve.config import split_top_level
from evolve.errors import UserError
from evolve.rundir.refs import canonical, resolve_rule
from primitives.rules import KNOWN_RULES

# name -> (description, factory(params, lr, weight_decay or None, total_steps or None))
_Factory = Callable[[Iterable, float, float | None, int | None], torch.optim.Optimizer]


def _adam(params, lr, wd, total_steps=None):
    return torch.optim.Adam(params, lr=lr, weight_decay=wd or 0.0)


def _adamw(params, lr, wd, total_steps=None):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01 if wd is None else wd)


def _sgd(params, lr, wd, total_steps=None):
    return torch.optim.SGD(params, lr=lr, weight_decay=wd or 0.0)


def _sgd_momentum(params, lr, wd, total_steps=None):
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd or 0.0)


def _nesterov(params, lr, wd, total_steps=None):
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd or 0.0)


def _lion(params, lr, wd, total_steps=None):
    from evolve.bench.lion import Lion

    return Lion(params, lr=lr, weight_decay=wd or 0.0)


def _schedulefree(params, lr, wd, total_steps=None):
    from evolve.bench.modern import schedule_free_adamw

    return schedule_free_adamw(params, lr, wd, total_steps)


def _muon(params, lr, wd, total_steps=None):
    from evolve.bench.modern import muon

    return muon(params, lr, wd, total_steps)


def _sgd_hd(params, lr, wd, total_steps=None):
    from evolve.bench.hypergradient import SGDHD

    return SGDHD(params, lr=lr, weight_decay=wd or 0.0)


def _adam_hd(params, lr, wd, total_steps=None):
    from evolve.bench.hypergradient import AdamHD

    return AdamHD(params, lr=lr, weight_decay=wd or 0.0)


BASELINES: dict[str, tuple[str, _Factory]] = {
    "adam": ("torch.optim.Adam (betas 0.9, 0.999)", _adam),
    "adamw": ("torch.optim.AdamW (weight decay 0.01 unless --weight-decay)", _adamw),
    "sgd": ("torch.optim.SGD (no momentum)", _sgd),
    "sgd_momentum": ("torch.optim.SGD (momentum 0.9)", _sgd_momentum),
    "nesterov": ("torch.optim.SGD (momentum 0.9, nesterov)", _nesterov),
    "lion": ("evolve.bench.lion.Lion, Chen et al. 2023 Algorithm 2 (betas 0.9, 0.99)", _lion),
    "schedulefree": ("schedulefree.AdamWScheduleFree (Defazio et al. 2024; constant rate, 5% "
                     "warm-up, weight decay 0 unless --weight-decay)", _schedulefree),
    "muon": ("torch.optim.Muon on hidden matrices (AdamW-matched rate) + AdamW on the rest "
             "(weight decay 0.01 unless --weight-decay)", _muon),
    # hypergradient descent (issue 14): not rules, so no proxy-suite row here
    "sgd_hd": ("evolve.bench.hypergradient.SGDHD, Baydin et al. 2018 (hypergrad lr 1e-3)",
               _sgd_hd),
    "adam_hd": ("evolve.bench.hypergradient.AdamHD, Baydin et al. 2018 (hypergrad lr 1e-7)",
                _adam_hd),
}
# optimizers that replace the schedule: the benchmark runs them at a constant rate
SCHEDULE_FREE = ("schedulefree",)
ALIASES = {"momentum": "sgd_momentum", "sgd_nesterov": "nesterov", "schedule_free": "schedulefree",
           "sfadamw": "schedulefree"}

# The known rule each baseline corresponds to (for the Numba proxy suite).
BASELINE_RULES = {"adam": "adam", "adamw": "adam", "sgd": "sgd", "sgd_momentum": "momentum",
                  "nesterov": "nesterov", "lion": "lion"}


@dataclass(frozen=True)
class OptimizerSpec:
    """One entry of --rules: a label for tables, and how to build the optimizer."""

    label: str
    kind: str  # "torch" (a baseline) or "rule" (the exported class of a rule)
    rule: str | None  # canonical rule text for kind "rule", else None
    source: str  # where it came from: a baseline description, a rule name, RUN:best

    def make(self, params: Iterable, lr: float, weight_decay: float | None = None,
             total_steps: int | None = None) -> torch.optim.Optimizer:
        """Build the optimizer for ``params``. ``weight_decay=None`` keeps each default."""
        if self.kind == "torch":
            return BASELINES[self.label][1](params, lr, weight_decay, total_steps)
        cls = exported_class(self.rule)
        return cls(params, lr=lr, weight_decay=weight_decay or 0.0, total_steps=total_steps)

    @property
    def schedule_free(self) -> bool:
        return self.kind == "torch" and self.label in SCHEDULE_FREE

    def to_json(self) -> dict:
        return {"label": self.label, "kind": self.kind, "rule": self.rule, "source": self.source}


@functools.lru_cache(maxsize=64)
def exported_class(rule: str) -> type:
    """The exported optimizer class for a rule (generated once per rule and process)."""
    try:
        from primitives.export_torch import load_optimizer_class
    except ImportError as err:  # the code generator is another module's job
        raise UserError(f"cannot run rule {rule!r}: primitives.export_torch is unavailable ({err})") from None
    return load_optimizer_class(rule, "EvolvedRule")


def split_rules(text: str) -> list[str]:
    """Split on commas outside parentheses: ``adam,sign(ema(g, 0.9))`` -> two entries."""
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise UserError(f"unbalanced ')' in --rules {text!r}")
    if depth != 0:
        raise UserError(f"unbalanced '(' in --rules {text!r}")
    entries = split_top_level(text)
    if not entries:
        raise UserError("--rules is empty; give e.g. --rules adam,sgd,lion,RUN:best")
    return entries


def _short_label(rule: str, taken: set[str]) -> str:
    label = rule if len(rule) <= 32 else rule[:29] + "..."
    n = 2
    base = label
    while label in taken:
        label = f"{base} #{n}"
        n += 1
    return label


def resolve_spec(entry: str, taken: set[str] | None = None) -> OptimizerSpec:
    """One --rules entry -> an :class:`OptimizerSpec` (UserError when it is not one)."""
    taken = taken or set()
    key = entry.strip()
    name = ALIASES.get(key, key)
    if name in BASELINES:
        return OptimizerSpec(name, "torch", None, BASELINES[name][0])
    if name.startswith("rule:"):
        known = name[len("rule:"):]
        if known not in KNOWN_RULES:
            raise UserError(f"unknown rule name {known!r} in {entry!r}; known: "
                            + ", ".join(sorted(KNOWN_RULES)))
        return OptimizerSpec(f"{known} (rule)", "rule", canonical(KNOWN_RULES[known].rule, entry),
                             f"known rule {known}, exported class")
    ref = resolve_rule(key)
    if ref.source == "rule text":
        return OptimizerSpec(_short_label(ref.text, taken), "rule", ref.text, "rule text")
    return OptimizerSpec(ref.label, "rule", ref.text, f"{ref.source}, exported class")


def resolve_specs(rules: str | list[str]) -> list[OptimizerSpec]:
    """Resolve a --rules string (or a list of entries) into specs with unique labels."""
    entries = split_rules(rules) if isinstance(rules, str) else list(rules)
    specs: list[OptimizerSpec] = []
    given: dict[str, str] = {}  # label -> the entry that gave it
    for entry in entries:
        spec = resolve_spec(entry, set(given))
        if spec.label in given:
            first = given[spec.label]
            if first.strip() == entry.strip():
                raise UserError(f"--rules names {entry.strip()!r} twice")
            raise UserError(f"--rules: {first.strip()!r} and {entry.strip()!r} are the same "
                            f"optimizer ({spec.label}); give it once")
        given[spec.label] = entry
        specs.append(spec)
    return specs


def log_grid(low: float, high: float, per_decade: int = 2) -> list[float]:
    """Log-spaced learning rates from low to high inclusive, per_decade points a decade."""
    n = round(math.log10(high / low) * per_decade)
    return [float(f"{low * 10 ** (i / per_decade):.3g}") for i in range(n + 1)]


def parse_lrs(text: str) -> list[float]:
    """``--lrs 1e-4,1e-3,1e-2`` -> floats (UserError on bad input)."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--lrs {text!r}: expected comma-separated numbers such as 1e-3,1e-2") from None
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        raise UserError(f"--lrs {text!r}: learning rates must be positive finite numbers")
    return sorted(values)


__all__ = ["BASELINES", "BASELINE_RULES", "OptimizerSpec", "exported_class", "log_grid", "parse_lrs", "resolve_spec", "resolve_specs", "split_rules"]
