"""Modern optimizers a user would try before an evolved rule: schedule-free AdamW and Muon.

* Schedule-free AdamW (Defazio et al. 2024, the AlgoPerf self-tuning track's winner) from the
  ``schedulefree`` package: it replaces the learning-rate schedule by iterate averaging, so the
  benchmark runs it at a constant rate with a linear warm-up over the first 5% of the steps, as
  its authors prescribe, and switches it between its train and eval modes.
* Muon (Jordan et al. 2024) from ``torch.optim.Muon`` for the hidden weight matrices (momentum,
  then Newton-Schulz orthogonalisation), with AdamW for every other parameter (biases, norms,
  convolutions, the input and output layers), as Muon is meant to be used. Muon's step is scaled
  to AdamW's root-mean-square (``adjust_lr_fn="match_rms_adamw"``), so one learning rate serves
  both halves and the benchmark's lr search tunes it like any other optimizer's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

WARMUP_FRACTION = 0.05


def schedule_free_adamw(params: Iterable, lr: float, weight_decay: float | None,
                        total_steps: int | None = None) -> torch.optim.Optimizer:
    import schedulefree

    warmup = int(WARMUP_FRACTION * total_steps) if total_steps else 0
    return schedulefree.AdamWScheduleFree(params, lr=lr, warmup_steps=warmup,
                                          weight_decay=0.0 if weight_decay is None else weight_decay)


class MuonWithAdamW:
    """Muon on the hidden 2-D weight matrices, AdamW on the rest, behind one optimizer's face.

    It offers what a training loop uses: ``param_groups`` (both optimizers' groups, so a
    schedule sets every learning rate), ``step``, ``zero_grad``, ``state_dict`` and
    ``load_state_dict``.
    """

    def __init__(self, params: Iterable, lr: float, weight_decay: float | None = None):
        params = [p for p in params if p.requires_grad]
        matrices = [i for i, p in enumerate(params) if p.ndim == 2]
        # the first and last matrices are the input and output layers: AdamW's, as in Muon's
        # recipe (a network with one or two matrices has no hidden one)
        hidden = set(matrices[1:-1])
        decay = 0.01 if weight_decay is None else weight_decay
        self.muon = (torch.optim.Muon([params[i] for i in sorted(hidden)], lr=lr,
                                      weight_decay=decay, adjust_lr_fn="match_rms_adamw")
                     if hidden else None)
        rest = [p for i, p in enumerate(params) if i not in hidden]
        self.adamw = torch.optim.AdamW(rest, lr=lr, weight_decay=decay) if rest else None
        self._parts = [o for o in (self.muon, self.adamw) if o is not None]

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self._parts for g in o.param_groups]

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for o in self._parts:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self._parts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict() if self.muon else None,
                "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state: dict) -> None:
        for name in ("muon", "adamw"):
            if getattr(self, name) is not None:
                getattr(self, name).load_state_dict(state[name])


def muon(params: Iterable, lr: float, weight_decay: float | None,
         total_steps: int | None = None) -> MuonWithAdamW:
    return MuonWithAdamW(params, lr, weight_decay)


__all__ = ["MuonWithAdamW", "WARMUP_FRACTION", "muon", "schedule_free_adamw"]
