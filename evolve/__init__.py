"""evolve-optim: discover optimizer update rules by evolution, from Python or the command line.

::

    import evolve

    run = evolve.run(evolve.CampaignConfig(generations=30), out="runs/first")
    print(run.best)                                   # the campaign's answer (RUN:best)
    print(evolve.score(run.best).score)               # 1.0 = tuned Adam, higher is better
    evolve.export(run.best, name="MyOpt", path="my_opt.py")   # a torch.optim.Optimizer
    run = evolve.resume("runs/first", generations=60)          # extend it exactly
    run = evolve.load_run("runs/first")               # read any run directory

    campaign = evolve.Campaign(population=16, generations=10)  # bring your own evaluator
    while not campaign.done:
        rules = campaign.ask()
        campaign.tell(rules, [my_score(rule) for rule in rules])

Names are loaded on first use, so ``import evolve`` is instant and a worker process that
imports ``evolve.worker`` loads nothing else of the package (torch, click, matplotlib stay out).
The CLI is ``evolve --help``; the config fields are in ``docs/config.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:attribute", imported when first asked for
_EXPORTS = {
    "Campaign": "evolve.api:Campaign",
    "CampaignConfig": "evolve.config:CampaignConfig",
    "Run": "evolve.api:Run",
    "run": "evolve.api:run",
    "resume": "evolve.api:resume",
    "score": "evolve.api:score",
    "export": "evolve.api:export",
    "load_run": "evolve.api:load_run",
    "UserTask": "fitness.training.real_tasks:UserTask",
    "Strategy": "evolve.strategy:Strategy",
    "Result": "fitness.score:Result",
    "Budget": "evolve.budget:Budget",
    "UserError": "evolve.errors:UserError",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'evolve' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
