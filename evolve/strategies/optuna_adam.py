"""The ``optuna-adam`` strategy: "tune Adam instead", TPE over Adam/AdamW's constants.

The tool most users reach for first is a hyperparameter search of Adam. This strategy is that
baseline at the same budget and on the same evaluator as every other strategy: Optuna's TPE
sampler (Bergstra et al. 2011; seeded, multivariate, constant liar for batches) proposes
beta1, beta2, eps and, when it switches it on, a decoupled weight decay (AdamW, Loshchilov &
Hutter 2019), each written as a rule of the grammar::

    div(ema_bc(g, b1), add(sqrt(ema_bc(square(g), b2)), eps))              Adam
    add(<Adam>, mul(wd, w))                                                 AdamW

The learning rate is not a parameter: the evaluator's own learning-rate search tunes it for
every rule, as for every strategy. The first trial is Adam's defaults. The betas are searched
as ``1 - beta`` on a log scale and rounded to four significant digits there (so 0.99999 stays
0.99999 in the rule text).

State: every told trial (parameters and score) is in the checkpoint, and the sampler is rebuilt
from them each generation with a seed drawn from the strategy's Generator, so a resumed run asks
exactly what an uninterrupted one asks. When the CLI binds a run directory
(:func:`evolve.strategies.run_directory`), the trials are also kept in Optuna's own storage
there, ``RUN/optuna-journal.jsonl`` (a JournalStorage: one JSON operation a line, readable by
``optuna.load_study``); on resume it is cut back to the checkpoint (as ``log.jsonl`` is), and
rebuilt from the checkpoint when damaged. A journal whose study belongs to another campaign is
refused with one line, and nothing is changed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from evolve.config import CampaignConfig
from evolve.errors import UserError
from evolve.strategies import batch_size, bound_run_directory
from evolve.strategy import Individual, Strategy
from primitives.files import atomic_write_bytes
from primitives.grammar import Node, lit, to_text

JOURNAL = "optuna-journal.jsonl"
CREATE_TRIAL = 4  # the journal's operation code of a new trial (optuna.storages.journal)
# the parameters of a trial: name -> (low, high) on a log scale
RANGES = {"one_minus_beta1": (1e-3, 1.0), "one_minus_beta2": (1e-5, 1e-1),
          "eps": (1e-12, 1e-1), "weight_decay": (1e-5, 1e-1)}
SWITCH = "decoupled_weight_decay"
ADAM_DEFAULTS = {"one_minus_beta1": 0.1, "one_minus_beta2": 0.001, "eps": 1e-8, SWITCH: False}
# config fields that do not change which rules are asked (the study's identity ignores them)
_NOT_IDENTITY = ("generations", "executor", "workers", "ray_address", "checkpoint_every")


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def adam_rule(params: dict[str, Any]) -> str:
    """The rule text of one trial's parameters (see the module docstring)."""
    # 1 - x printed to 10 digits: 1 - 0.9337 is 0.0663, not 0.06630000000000003
    b1 = float(f"{1.0 - _round(params['one_minus_beta1']):.10g}")
    b2 = float(f"{1.0 - _round(params['one_minus_beta2']):.10g}")
    adam = Node("div", (Node("ema_bc", (Node("g"), lit(b1))),
                        Node("add", (Node("sqrt", (Node("ema_bc", (Node("square", (Node("g"),)),
                                                                     lit(b2))),)),
                                     lit(_round(params["eps"]))))))
    if params.get(SWITCH):
        adam = Node("add", (adam, Node("mul", (lit(_round(params["weight_decay"])), Node("w")))))
    return to_text(adam)


def study_name(config: CampaignConfig) -> str:
    """The study's name: a digest of everything in the config that decides the trials."""
    data = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
    return f"evolve-optuna-adam-{digest}"


def _distributions(params: dict[str, Any]) -> dict[str, Any]:
    optuna = _optuna()
    out: dict[str, Any] = {SWITCH: optuna.distributions.CategoricalDistribution([False, True])}
    for name, (low, high) in RANGES.items():
        if name in params:
            out[name] = optuna.distributions.FloatDistribution(low, high, log=True)
    return out


def _frozen(trial: dict[str, Any]):
    params = trial["params"]
    return _optuna().trial.create_trial(params=params, distributions=_distributions(params),
                                        value=float(trial["value"]))


def _suggest(trial) -> dict[str, Any]:
    params = {name: trial.suggest_float(name, *RANGES[name], log=True)
              for name in ("one_minus_beta1", "one_minus_beta2", "eps")}
    params[SWITCH] = trial.suggest_categorical(SWITCH, [False, True])
    if params[SWITCH]:
        params["weight_decay"] = trial.suggest_float("weight_decay", *RANGES["weight_decay"],
                                                     log=True)
    return params


class OptunaAdam(Strategy):
    """TPE over Adam/AdamW's constants, each trial a rule of the grammar."""

    name = "optuna-adam"

    def __init__(self, config: CampaignConfig):
        super().__init__(config)
        self.study_name = study_name(config)
        self.trials: list[dict[str, Any]] = []  # told: {"params": ..., "value": score}
        self._pending_params: list[dict[str, Any]] = []
        folder = bound_run_directory()
        self.journal_path = folder / JOURNAL if folder is not None else None
        self._storage = None
        self._study = None
        if self.journal_path is not None:
            self._check_identity()

    # ------------------------------------------------------------------ proposing
    def _propose(self) -> list[str]:
        optuna = _optuna()
        seed = int(self.rng.integers(0, 2**31 - 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                 constant_liar=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.add_trials([_frozen(t) for t in self.trials])
        if not self.started:
            study.enqueue_trial(ADAM_DEFAULTS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._pending_params = [_suggest(study.ask())
                                    for _ in range(batch_size(self.config, self.started))]
        return [adam_rule(p) for p in self._pending_params]

    def _update(self, told: list[Individual]) -> None:
        new = [{"params": p, "value": ind.score} for p, ind in zip(self._pending_params, told)]
        self.trials.extend(new)
        self._pending_params = []
        if self.journal_path is not None:
            self._journal_study().add_trials([_frozen(t) for t in new])

    # ------------------------------------------------------------------ the journal
    def _check_identity(self) -> None:
        """A journal of another campaign is refused before anything is read or written."""
        path = self.journal_path
        if path is None or not path.is_file():
            return
        try:
            with open(path, encoding="utf-8") as fh:
                first = json.loads(fh.readline() or "{}")
            name = first.get("study_name") if isinstance(first, dict) else None
        except (OSError, UnicodeDecodeError, ValueError):
            name = None
        if name is None:
            return  # damaged: rebuilt from the checkpoint on resume
        if name != self.study_name:
            raise UserError(f"{path} holds Optuna study {name!r} of another campaign (this "
                            f"one is {self.study_name!r}); nothing was changed — move it away "
                            "or resume the campaign it belongs to")

    def _journal_study(self):
        if self._study is None:
            optuna = _optuna()
            backend = optuna.storages.journal.JournalFileBackend(str(self.journal_path))
            self._storage = optuna.storages.JournalStorage(backend)
            if self.journal_path.is_file() and self.journal_path.stat().st_size:
                # create_study(load_if_exists=True) would append a second creation line
                self._study = optuna.load_study(study_name=self.study_name,
                                                storage=self._storage)
            else:
                self._study = optuna.create_study(storage=self._storage,
                                                  study_name=self.study_name,
                                                  direction="maximize")
        return self._study

    def _journal_matches(self) -> bool:
        try:
            trials = self._journal_study().get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - any unreadable journal is rebuilt from the checkpoint
            self._study = None
            return False
        told = [(t.params, t.value) for t in trials]
        return told == [(t["params"], t["value"]) for t in self.trials]

    def _sync_journal(self) -> None:
        """Make the journal hold exactly the told trials: cut it back, or rebuild it.

        Optuna writes one operation a line, and a finished trial added to the study is one
        operation (``CREATE_TRIAL``), so the checkpoint's part ends with the line of its last
        trial."""
        path = self.journal_path
        assert path is not None
        if path.is_file():
            with open(path, "rb") as fh:
                lines = fh.readlines()
            keep, trials = 0, 0
            for keep, line in enumerate(lines, 1):
                if trials == len(self.trials):
                    keep -= 1
                    break
                try:
                    trials += json.loads(line).get("op_code") == CREATE_TRIAL
                except (ValueError, AttributeError):
                    break
            if keep < len(lines):
                atomic_write_bytes(path, b"".join(lines[:keep]))
            if self._journal_matches():
                return
        self._study = self._storage = None
        tmp = path.with_name(f".{JOURNAL}.rebuild")
        if tmp.exists():
            tmp.unlink()
        optuna = _optuna()
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp)))
        study = optuna.create_study(storage=storage, study_name=self.study_name,
                                    direction="maximize")
        study.add_trials([_frozen(t) for t in self.trials])
        data = tmp.read_bytes()
        tmp.unlink()
        atomic_write_bytes(path, data)

    # ------------------------------------------------------------------ state
    def _stats(self) -> dict[str, Any]:
        best = max(self.trials, key=lambda t: t["value"], default=None)
        return {"best_params": best["params"] if best else None}

    def _state(self) -> dict[str, Any]:
        if self.journal_path is not None:
            self._journal_study()  # the journal exists from the campaign's first checkpoint
        return {"trials": self.trials, "pending_params": self._pending_params,
                "study_name": self.study_name}

    def _load_state(self, state: dict[str, Any]) -> None:
        if state["study_name"] != self.study_name:
            raise ValueError("the checkpoint's Optuna study is not this config's")
        self.trials = [{"params": dict(t["params"]), "value": float(t["value"])}
                       for t in state["trials"]]
        self._pending_params = [dict(p) for p in state["pending_params"]]
        for params in [t["params"] for t in self.trials] + self._pending_params:
            adam_rule(params)  # a tampered checkpoint fails here (KeyError, ValueError)
        if self.journal_path is not None:
            self._sync_journal()


def journal_path(run_dir: str | Path) -> Path:
    """Where a campaign's Optuna journal lives."""
    return Path(run_dir) / JOURNAL


__all__ = ["ADAM_DEFAULTS", "JOURNAL", "OptunaAdam", "RANGES", "adam_rule", "journal_path",
           "study_name"]
