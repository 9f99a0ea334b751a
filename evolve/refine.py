"""``evolve refine``: fit a rule's numeric constants by meta-gradient, CMA-ES where it is zero.

Gradient-based meta-optimization (Maclaurin et al. 2015; Baydin et al. 2018 for the online
form): a rule's constants — EMA betas, coefficients, clip bounds, interpolation weights,
vector literals such as Adam's eps — are fitted by differentiating the loss at the end of an
unrolled torch training run of each proxy task (:mod:`evolve.unroll`) with respect to them.

* **Objective** (minimised): the mean over the suite's tasks of the clipped log-ratio of the
  final scored loss to tuned Adam's, ``-log_ratio`` of :mod:`fitness.score`, each task at the
  rule's own best learning rate from the evaluator. It is the suite score's exponent at fixed
  learning rates, so a task already twice better than Adam stops pulling, as in the score.
* **Parametrisation**: a beta is fitted as its logit (so it stays in (0, 1)); any other
  constant as ``sign * exp(u)`` (it keeps its sign and scale, which suits eps = 1e-8 as well as
  a coefficient of 2). Betas of exactly 0 or 1, and constants of exactly 0, are structural
  (no memory, accumulate for ever, a zero term) and are kept.
* **Gradient phase**: Adam on the transformed constants, the meta-gradient's norm clipped;
  a step whose objective or gradient is not finite is not taken (its step size is halved).
* **CMA-ES phase** (Hansen 2016; the ``cmaes`` package, seeded): constants whose
  meta-gradient is exactly zero at the start — inside ``sign``, ``clip``, ``max``/``min``
  comparisons, or not finite — are fitted without gradients on the same objective.
* **Choice and report**: the start, the best iterate of each phase and the last are scored by
  the evaluator itself (which searches the learning rate again), and the best search score is
  kept, so refinement never returns a rule worse on the search suite than the one it was
  given. Constants, search, held-out and real-data tier scores, before and after, go to
  ``OUT/refine.md`` and ``OUT/refine.json``, with the objective's trace in ``OUT/refine.png``.

One module of about 430 lines on purpose: parametrisation, the two phases, the choice and the
report it writes are one pipeline read top to bottom, and nothing else uses its parts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evolve.errors import UserError
from evolve.unroll import Constant, RuleStep, TorchTask, constants, rule_update, run, supported
from fitness.score import CLIP, FAIL
from fitness.training.torch_tasks import torch_threads
from primitives.files import atomic_write_json, atomic_write_text
from primitives.grammar import Node, lit, parse, to_text
from primitives.table import BETA

Notify = Callable[[str], None]
BETA_EPS = 1e-12  # logits of betas are taken in [BETA_EPS, 1 - BETA_EPS]


@dataclass(frozen=True)
class RefineConfig:
    """What refinement runs: suites, steps, CMA-ES budget, seed, and whether to use the real tier."""

    suite: str = "default"  # whose tasks the constants are fitted on
    heldout_suite: str = "heldout"
    schedule: str = "cosine"  # the lr schedule of the proxy runs (fitness.schedule), as scored
    steps: int = 40  # meta-gradient steps
    meta_lr: float = 0.05  # Adam's step on the transformed constants (logits, log-magnitudes)
    clip_norm: float = 1.0
    cmaes_generations: int = 12
    cmaes_sigma: float = 0.5  # in the transformed space
    seed: int = 0
    real_tier: bool = True
    real_tasks: tuple[str, ...] | None = None  # None: the real-data tier's own task list


def refinable(tree: Node) -> list[Constant]:
    """The constants refinement may change (see the module docstring for what is kept)."""
    out = []
    for c in constants(tree):
        if c.kind == BETA and c.value in (0.0, 1.0):
            continue
        if c.kind != BETA and c.value == 0.0:
            continue
        out.append(c)
    return out


def to_free(c: Constant) -> float:
    if c.kind == BETA:
        b = min(max(c.value, BETA_EPS), 1.0 - BETA_EPS)
        return math.log(b / (1.0 - b))
    return math.log(abs(c.value))


def from_free(c: Constant, u: torch.Tensor) -> torch.Tensor:
    if c.kind == BETA:
        return torch.sigmoid(u)
    return math.copysign(1.0, c.value) * torch.exp(u)


def with_constants(tree: Node, values: dict[int, float]) -> str:
    """``tree`` with the literal at each prefix index in ``values`` replaced (4 significant digits
    for readability, betas by their distance to 1 so that 0.99999 stays 0.99999)."""
    out: list[Node] = []
    index = 0
    # rebuild iteratively in prefix order: (node, children so far)
    stack: list[list] = []

    def rounded(c_value: float, is_beta: bool) -> float:
        if is_beta:
            return float(f"{1.0 - float(f'{1.0 - c_value:.4g}'):.10g}")
        return float(f"{c_value:.4g}")

    betas = {c.index for c in constants(tree) if c.kind == BETA}
    todo: list[Node] = [tree]
    while todo:
        node = todo.pop()
        if node.is_literal and index in values:
            new = lit(rounded(values[index], index in betas))
        elif node.is_literal or not node.args:
            new = node
        else:
            new = None
        index += 1
        if new is None:
            stack.append([node, []])
            todo.extend(reversed(node.args))
            continue
        while True:
            if not stack:
                out.append(new)
                break
            stack[-1][1].append(new)
            parent, children = stack[-1]
            if len(children) < len(parent.args):
                break
            stack.pop()
            new = Node(parent.name, tuple(children))
    return to_text(out[0])


class Objective:
    """The meta-objective of a rule on a suite's tasks at their best learning rates."""

    def __init__(self, tree: Node, tasks: list[tuple[TorchTask, float, float]]):
        self.tree = tree
        self.tasks = tasks  # (task, lr, tuned Adam's loss)
        self.all = constants(tree)

    def __call__(self, values: dict[int, torch.Tensor], create_graph: bool) -> torch.Tensor:
        full = [values.get(c.index, torch.tensor(c.value, dtype=torch.float64))
                for c in self.all]
        terms = []
        for task, lr, ref in self.tasks:
            step = RuleStep(self.tree, task.steps)
            end = run(task, lr, rule_update(step, full), create_graph=create_graph)
            if end.loss is None:
                terms.append(torch.tensor(-FAIL, dtype=torch.float64))
                continue
            # -log_ratio with the same gap and clip as fitness.score, kept differentiable
            eps = 1e-9 * max(task.loss0 - task.instance.loss_min, 1e-300)
            gap = torch.clamp(end.loss - task.instance.loss_min, min=0.0) + eps
            ref_gap = max(ref - task.instance.loss_min, 0.0) + eps
            terms.append(torch.clamp(torch.log2(gap / ref_gap), -CLIP, CLIP))
        return torch.stack(terms).mean()


def _suite_tasks(rule: str, config: RefineConfig
                 ) -> tuple[list[tuple[TorchTask, float, float]], list[str], Any]:
    from evolve.worker import proxy_suite, score_rules
    from fitness.tasks import build, get_suite

    suite, seed = config.suite, config.seed
    result = score_rules(proxy_suite(suite, config.schedule), seed, [rule], hurdle=False)[0]
    by_task = {t.task: t for t in result.tasks}
    tasks, skipped = [], []
    for spec in get_suite(suite):
        instance = build(spec, seed)
        score = by_task.get(spec.name)
        if not supported(instance) or score is None or score.best_lr is None \
                or score.ref_loss is None:
            skipped.append(spec.name)
            continue
        tasks.append((TorchTask(instance, config.schedule), float(score.best_lr),
                      float(score.ref_loss)))
    return tasks, skipped, result


def _evaluate(rule: str, suite: str, config: RefineConfig) -> float:
    from evolve.worker import proxy_suite, score_rules

    return float(score_rules(proxy_suite(suite, config.schedule), config.seed, [rule],
                             hurdle=False)[0].score)


def _gradient_phase(objective: Objective, free: dict[int, torch.Tensor], config: RefineConfig,
                    cons: dict[int, Constant], trace: list[dict], notify: Notify
                    ) -> tuple[dict[int, float], set[int]]:
    """Adam on the transformed constants; returns the best iterate and the zero-gradient ones."""
    params = list(free.values())
    opt = torch.optim.Adam(params, lr=config.meta_lr)
    best: tuple[float, dict[int, float]] | None = None
    zero: set[int] = set()
    for step in range(config.steps + 1):
        opt.zero_grad()
        values = {i: from_free(cons[i], u) for i, u in free.items()}
        value = objective(values, create_graph=True)
        current = {i: float(v.detach()) for i, v in values.items()}
        number = float(value.detach())
        if math.isfinite(number) and (best is None or number < best[0]):
            best = (number, current)
        trace.append({"phase": "gradient", "step": step, "objective": number})
        if step == config.steps:
            break
        if value.requires_grad:
            value.backward()
        grads = {i: (u.grad if u.grad is not None else torch.zeros(())) for i, u in free.items()}
        if step == 0:
            zero = {i for i, g in grads.items() if not math.isfinite(float(g)) or float(g) == 0.0}
            if zero:
                notify(f"refine: {len(zero)} constant(s) with a zero meta-gradient go to CMA-ES")
            for i in zero:
                free[i].requires_grad_(False)
        live = [free[i] for i in free if i not in zero]
        if not live:
            break
        if not all(torch.isfinite(u.grad).all() for u in live if u.grad is not None):
            for group in opt.param_groups:
                group["lr"] /= 2  # a non-finite meta-gradient: no step, a smaller one next
            continue
        torch.nn.utils.clip_grad_norm_(live, config.clip_norm)
        opt.step()
        if step % 10 == 0:
            notify(f"refine: gradient step {step}/{config.steps}, objective {number:.4f}")
    return (best[1] if best else {}), zero


def _cmaes_phase(objective: Objective, start: dict[int, float], zero: list[int],
                 cons: dict[int, Constant], config: RefineConfig, trace: list[dict]
                 ) -> dict[int, float]:
    """CMA-ES over the zero-gradient constants (others fixed at ``start``)."""
    from cmaes import CMA

    mean = np.array([to_free(Constant(i, cons[i].kind, start[i], cons[i].parent))
                     for i in zero])
    # one dimension: CMA-ES needs two; a dummy coordinate that nothing reads
    dims = max(len(zero), 2)
    cma = CMA(mean=np.pad(mean, (0, dims - len(zero))), sigma=config.cmaes_sigma,
              seed=config.seed)
    best_value, best = math.inf, dict(start)
    for generation in range(config.cmaes_generations):
        told = []
        for _ in range(cma.population_size):
            x = cma.ask()
            values = {i: torch.tensor(v, dtype=torch.float64) for i, v in start.items()}
            for k, i in enumerate(zero):
                values[i] = from_free(cons[i], torch.tensor(x[k], dtype=torch.float64))
            with torch.no_grad():
                value = float(objective(values, create_graph=False))
            value = value if math.isfinite(value) else -FAIL
            told.append((x, value))
            if value < best_value:
                best_value, best = value, {i: float(v) for i, v in values.items()}
        cma.tell(told)
        trace.append({"phase": "cmaes", "step": generation,
                      "objective": min(v for _, v in told)})
    return best


def refine(rule: str, config: RefineConfig = RefineConfig(), notify: Notify | None = None
           ) -> dict[str, Any]:
    """Refine ``rule`` (canonical text); the results dict that ``refine_to`` writes."""
    notify = notify or (lambda message: None)
    started = time.perf_counter()
    tree = parse(rule)
    cons = {c.index: c for c in refinable(tree)}
    if not cons:
        raise UserError(f"rule {rule} has no numeric constants to refine (betas of exactly 0 or "
                        "1 and zero terms are structural and kept); give a rule with "
                        "constants, such as adam")
    with torch_threads(1):
        tasks, skipped, before = _suite_tasks(rule, config)
        if not tasks:
            raise UserError(f"no task of suite {config.suite!r} can be rebuilt in torch for "
                            "refinement; choose another --suite")
        objective = Objective(tree, tasks)
        start = {i: c.value for i, c in cons.items()}
        with torch.no_grad():
            start_value = float(objective({i: torch.tensor(v, dtype=torch.float64)
                                           for i, v in start.items()}, create_graph=False))
        trace: list[dict] = []
        free = {i: torch.tensor(to_free(c), dtype=torch.float64, requires_grad=True)
                for i, c in cons.items()}
        grad_best, zero = _gradient_phase(objective, free, config, cons, trace, notify)
        grad_best = {**start, **grad_best}
        candidates = {"start": start, "gradient": grad_best}
        if zero and config.cmaes_generations > 0:
            notify(f"refine: CMA-ES over {len(zero)} constant(s), "
                   f"{config.cmaes_generations} generations")
            candidates["cmaes"] = _cmaes_phase(objective, grad_best, sorted(zero), cons, config,
                                               trace)
    texts = {name: with_constants(tree, values) for name, values in candidates.items()}
    texts["start"] = rule
    search = {}
    for name, text in texts.items():
        if text not in search.values():
            search[name] = _evaluate(text, config.suite, config)
    chosen = max(search, key=lambda name: (search[name], name == "start"))
    after = texts[chosen]
    notify(f"refine: search score {search['start']:.4f} -> {search[chosen]:.4f} ({chosen})")
    scores = {"before": {"search": search["start"]}, "after": {"search": search[chosen]}}
    for label, text in (("before", rule), ("after", after)):
        scores[label]["heldout"] = _evaluate(text, config.heldout_suite, config)
    if config.real_tier:
        from fitness.baselines import cache_dir
        from fitness.training.real_tier import RealTier, RealTierConfig

        tier_config = RealTierConfig(tasks=config.real_tasks or RealTierConfig().tasks,
                                     schedule=config.schedule)
        tier = RealTier(tier_config, cache_dir=cache_dir())
        with torch_threads(1):
            notify("refine: real-data tier, before")
            scores["before"]["real"] = float(tier.evaluate_one(rule).score)
            if after != rule:
                notify("refine: real-data tier, after")
            scores["after"]["real"] = (float(tier.evaluate_one(after).score) if after != rule
                                       else scores["before"]["real"])
    after_values = {c.index: c.value for c in constants(parse(after))}
    table = [{**asdict(c), "after": after_values.get(c.index, c.value),
              "method": ("kept" if c.index not in cons else
                         "cmaes" if c.index in zero else "gradient")}
             for c in constants(tree)]
    evaluator_losses = {t.task: t.loss for t in before.tasks}
    agreement = _agreement(objective, start, evaluator_losses)
    return {
        "kind": "refine", "rule": rule, "refined": after, "chosen": chosen,
        "config": asdict(config), "constants": table, "scores": scores,
        "candidates": {name: {"rule": texts[name], "search": search.get(name)}
                       for name in texts},
        "objective": {"start": start_value, "trace": trace},
        "tasks": [t.name for t, _, _ in tasks], "skipped_tasks": skipped,
        "unrolled_vs_evaluator": agreement,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _agreement(objective: Objective, start: dict[int, float],
               evaluator: dict[str, float | None]) -> dict[str, float | None]:
    """Relative difference of each task's unrolled final loss from the evaluator's (the check
    that the meta-objective scores the rule the way the search does)."""
    out: dict[str, float | None] = {}
    full = [torch.tensor(start.get(c.index, c.value), dtype=torch.float64)
            for c in objective.all]
    with torch_threads(1), torch.no_grad():
        for task, lr, _ in objective.tasks:
            end = run(task, lr, rule_update(RuleStep(objective.tree, task.steps), full))
            ref = evaluator.get(task.name)
            if end.loss is None or ref is None:
                out[task.name] = None if (end.loss is None) != (ref is None) else 0.0
            else:
                out[task.name] = abs(float(end.loss) - ref) / max(abs(ref), 1e-300)
    return out


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(results: dict) -> str:
    s = results["scores"]
    lines = [
        "# Refinement of a rule's constants",
        "",
        f"- rule: `{results['rule']}`",
        f"- refined: `{results['refined']}` (kept: the {results['chosen']} candidate, the best "
        "search score among start, gradient phase and CMA-ES phase)",
        f"- meta-objective on `{results['config']['suite']}` tasks "
        f"{', '.join(results['tasks'])}" + (f" (skipped: {', '.join(results['skipped_tasks'])})"
                                            if results["skipped_tasks"] else ""),
        "- real-data tier tasks: " + (", ".join(results["config"]["real_tasks"])
                                      if results["config"].get("real_tasks")
                                      else "the tier's own"),
        "",
        "| score (1.0 = tuned Adam) | before | after |",
        "|---|---|---|",
    ]
    for key, label in (("search", "search suite"), ("heldout", "held-out suite"),
                       ("real", "real-data tier")):
        if key in s["before"]:
            lines.append(f"| {label} | {_fmt(s['before'][key])} | {_fmt(s['after'][key])} |")
    lines += ["", "| # | type | argument of | before | after | fitted by |", "|---|---|---|---|---|---|"]
    for c in results["constants"]:
        lines.append(f"| {c['index']} | {c['kind']} | {c['parent'] or '(root)'} | {c['value']:.6g} "
                     f"| {c['after']:.6g} | {c['method']} |")
    worst = max((v for v in results["unrolled_vs_evaluator"].values() if v is not None),
                default=0.0)
    lines += ["", f"Scoring check: the unrolled torch runs of the start rule agree with the "
              f"evaluator's final losses to a relative {worst:.1e} at most.", "",
              "![objective](refine.png)", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    from evolve.compare import save_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = results["objective"]["trace"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for phase in ("gradient", "cmaes"):
        rows = [r for r in trace if r["phase"] == phase]
        if rows:
            ax.plot([r["step"] for r in rows], [r["objective"] for r in rows], marker=".",
                    label=phase + (" (best of each generation)" if phase == "cmaes" else ""))
    ax.set(xlabel="step / generation", ylabel="mean -log2(loss ratio to Adam)",
           title="meta-objective (lower is better)")
    save_png(fig, ax, path)


def refine_to(rule: str, out: str | Path, config: RefineConfig = RefineConfig(),
              notify: Notify | None = None) -> dict[str, Any]:
    """:func:`refine`, then ``OUT/refine.md``, ``OUT/refine.json`` and ``OUT/refine.png``."""
    results = refine(rule, config, notify)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "refine.json", results)
    atomic_write_text(out / "refine.md", markdown(results))
    plot(results, out / "refine.png")
    return results


__all__ = ["RefineConfig", "from_free", "markdown", "refinable", "refine", "refine_to", "to_free",
           "with_constants"]
