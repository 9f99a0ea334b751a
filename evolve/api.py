"""The Python API behind ``import evolve``: run, resume and read campaigns, score and export
rules, and ask/tell for users who bring their own evaluator.

Everything here is a thin layer over what the CLI uses (:func:`evolve.runner.run_campaign`,
:func:`evolve.rundir.resolve_rule`, :func:`evolve.worker.score_rules`, the code generator), so
a script and ``evolve run`` give the same campaign for the same config and seed. A script
needs no ``if __name__ == "__main__":`` guard: worker processes never re-import it
(:mod:`evolve.spawn`). Bad input raises :class:`evolve.UserError` with a one-line message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.budget import Budget, parse_duration
from evolve.config import CampaignConfig, ConfigError
from evolve.errors import UserError
from evolve.rundir import REPORT, REPORT_HTML, RunDirectory, resolve_rule
from evolve.strategy import Strategy
from fitness.score import Result


def _config(config: CampaignConfig | dict | None, fields: dict[str, Any]) -> CampaignConfig:
    """A CampaignConfig from a config, a dict of fields, or none, with ``fields`` on top."""
    if isinstance(config, CampaignConfig):
        data = config.to_dict()
    elif isinstance(config, dict):
        data = dict(config)
    elif config is None:
        data = {}
    else:
        raise UserError(f"config must be a CampaignConfig or a dict, got {type(config).__name__}")
    data.update(fields)
    try:
        return CampaignConfig.from_dict(data)
    except ConfigError as err:
        raise UserError(f"bad config: {err}") from None


@dataclass
class Run:
    """A run directory, read: what ``evolve show`` prints, as Python objects.

    ``best`` is the campaign's answer (``RUN:best``: tier 2's confirmed choice once the run
    has ended); :meth:`rule` resolves any selector (``best``, ``search``, ``heldout``, ``N``).
    """

    path: Path
    config: CampaignConfig
    log: list[dict]  # one row per generation (log.jsonl)
    hall_of_fame: list[dict]  # best first: rule, tier, score, proxy_score, size, ...
    selection: dict | None  # selection.json: the final ranking (None before the end)
    heldout: dict | None  # heldout.json: the funnel (None before the end)
    status: dict | None  # status.json: finished, or stopped and why

    @property
    def best(self) -> str:
        """The campaign's answer, as rule text (``RUN:best``)."""
        return self.rule("best")

    def rule(self, selector: str | int = "best") -> str:
        """The rule ``RUN:selector`` names: best, search, heldout or a hall-of-fame rank."""
        return resolve_rule(f"{self.path}:{selector}").text

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def finished(self) -> bool:
        return bool(self.status and self.status.get("state") == "finished")

    def __repr__(self) -> str:
        gens = self.log[-1]["generation"] if self.log else "no"
        state = (self.status or {}).get("state", "not ended")
        return f"Run({str(self.path)!r}, {gens} generations, {state})"


def load_run(path: str | Path) -> Run:
    """Read the run directory at ``path`` (UserError when it holds no campaign)."""
    rd = RunDirectory(path)
    config = rd.read_config()
    return Run(path=rd.path, config=config, log=rd.read_log(),
               hall_of_fame=rd.read_hall_of_fame() if rd.file("hall_of_fame.json").exists()
               else [], selection=rd.read_selection(), heldout=rd.read_heldout(),
               status=rd.read_status())


def _budget(time_limit: float | str | None, max_evaluations: int | None) -> Budget:
    seconds = parse_duration(time_limit, "time_limit") if isinstance(time_limit, str) \
        else time_limit
    return Budget(time_limit=seconds, max_evaluations=max_evaluations)


def _drive(out: str | Path, config: CampaignConfig | None, budget: Budget, progress: bool,
           live: bool, **kwargs: Any) -> Run:
    from evolve.progress import CampaignProgress, StageProgress
    from evolve.runner import run_campaign

    bar = CampaignProgress(budget=budget, quiet=not progress)
    stages = StageProgress("finishing", quiet=not progress, before=bar.close)
    try:
        run_campaign(out, config=config, finish=True, progress=bar, stages=stages,
                     notify=bar.note, budget=budget, live=live, **kwargs)
    finally:
        bar.close()
        stages.close()
    return load_run(out)


def run(config: CampaignConfig | dict | None = None, out: str | Path | None = None, *,
        time_limit: float | str | None = None, max_evaluations: int | None = None,
        progress: bool = True, live: bool = True, validate: bool = False,
        **fields: Any) -> Run:
    """Run a campaign in the new run directory ``out`` to its end and return it, read.

    ``config`` is a :class:`CampaignConfig` (or a dict of its fields); keyword ``fields``
    override it (``evolve.run(out="runs/a", generations=30, seed=2)``). ``time_limit``
    (seconds, or text such as ``"30m"``) and ``max_evaluations`` stop it early with a
    checkpoint and the full report; :func:`resume` continues it exactly. ``progress`` shows
    the progress bar on stderr; ``live`` writes TensorBoard events and ``report.html`` as
    the run goes; ``validate`` adds torch validation of the top rules at the end.
    """
    if out is None:
        raise UserError("run() needs out=, the run directory to create")
    return _drive(out, _config(config, fields), _budget(time_limit, max_evaluations),
                  progress, live, validate=validate)


def resume(out: str | Path, *, generations: int | None = None,
           time_limit: float | str | None = None, max_evaluations: int | None = None,
           progress: bool = True, live: bool = True, validate: bool = False) -> Run:
    """Continue the campaign in ``out`` from its checkpoint (the same end state as a run that
    never stopped); ``generations`` sets a new total, extending a finished run exactly."""
    return _drive(out, None, _budget(time_limit, max_evaluations), progress, live,
                  resume=True, generations=generations, validate=validate)


def score(rule: str, suite: str = "search", seed: int = 0) -> Result:
    """``rule`` (a known name, rule text or ``RUN:best``...) scored on a proxy suite: a
    :class:`fitness.score.Result` whose ``score`` is 1.0 for tuned Adam, higher is better,
    with per-task scores in ``tasks``."""
    from evolve.worker import score_rules, suite_names

    if suite not in suite_names():
        raise UserError(f"unknown suite {suite!r}; known suites: {', '.join(suite_names())}")
    (result,) = score_rules(suite, seed, [resolve_rule(rule).text], hurdle=False)
    return result


def export(rule: str, name: str = "EvolvedOptimizer", path: str | Path | None = None,
           lr: float = 1e-3) -> str:
    """The source of a standalone module with one ``torch.optim.Optimizer`` class for ``rule``
    (what ``evolve export`` writes); written to ``path`` atomically when given."""
    from primitives.export_torch import check_class_name, export_torch, write_module
    from primitives.program import compile_rule

    try:
        check_class_name(name)
        source = export_torch(compile_rule(resolve_rule(rule).text), name, lr)
    except ValueError as err:
        raise UserError(str(err)) from None
    if path is not None:
        write_module(str(path), source)
    return source


class Campaign:
    """Ask/tell over a search strategy, for users who bring their own evaluator.

    As Optuna's ``study.ask()``/``study.tell()``: the strategy proposes rule texts, you score
    them however you like (your own training runs, a cluster), and tell it the scores, higher
    is better (a NaN or a failure: ``float("nan")``, it becomes the worst score)::

        campaign = evolve.Campaign(population=16, generations=10, seed=0)
        while not campaign.done:
            rules = campaign.ask()
            campaign.tell(rules, [my_score(rule) for rule in rules])
        print(campaign.best)

    Scores may be plain numbers or :class:`fitness.score.Result`\\ s (what
    :func:`evolve.score` returns). The evolution strategy subtracts ``parsimony`` x size
    (0.002 per node by default) when it picks parents, so numbers on the scale of the
    project's scores (around 1) keep that pressure as intended. :meth:`state_dict` /
    :meth:`from_state_dict` (JSON) let a loop stop and continue exactly.
    """

    def __init__(self, config: CampaignConfig | dict | None = None, **fields: Any):
        self.strategy = Strategy.create(_config(config, fields))

    @property
    def config(self) -> CampaignConfig:
        return self.strategy.config

    @property
    def done(self) -> bool:
        return self.strategy.done

    @property
    def generation(self) -> int:
        return self.strategy.generation

    @property
    def evaluations(self) -> int:
        return self.strategy.evaluations

    def ask(self) -> list[str]:
        """The next batch of rule texts (the same batch until it is told)."""
        return self.strategy.ask()

    def tell(self, rules: Sequence[str], scores: Sequence[float | Result]) -> None:
        """One score per rule of the last :meth:`ask`, in order."""
        if len(scores) != len(rules):
            raise UserError(f"tell() needs one score per rule: {len(rules)} rules, "
                            f"{len(scores)} scores")
        results = [s if isinstance(s, Result) else
                   Result(rule=r, score=float(s) if math.isfinite(float(s)) else float("nan"))
                   for r, s in zip(rules, scores)]
        try:
            self.strategy.tell(rules, results)
        except ValueError as err:
            raise UserError(str(err)) from None

    @property
    def best(self) -> tuple[str, float] | None:
        """(rule, score) of the best rule told so far."""
        top = self.strategy.hall_of_fame[:1]
        return (top[0].rule, top[0].score) if top else None

    @property
    def hall_of_fame(self) -> list[tuple[str, float]]:
        return [(i.rule, i.score) for i in self.strategy.hall_of_fame]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, JSON-ready."""
        return self.strategy.state_dict()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Campaign:
        campaign = cls.__new__(cls)
        try:
            campaign.strategy = Strategy.from_state_dict(json.loads(json.dumps(state)))
        except (ValueError, KeyError, TypeError, ConfigError) as err:
            raise UserError(f"not a campaign state: {err}") from None
        return campaign


__all__ = ["Campaign", "Run", "export", "load_run", "resume", "run", "score"]
