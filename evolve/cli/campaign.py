"""CLI commands that run campaigns: ``evolve run``, ``evolve resume``, ``evolve show``, ``evolve demo``.

The work is :func:`evolve.runner.run_campaign`'s and the files are :mod:`evolve.rundir`'s; these
commands parse options, show progress and print what happened.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

from evolve.config import ALGORITHMS, EXECUTORS, STRATEGIES, CampaignConfig, ConfigError
from evolve.errors import UserError


def _load_config_file(path: str | None) -> dict:
    if path is None:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read config {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"config {path} is not UTF-8 text; it must be a JSON object") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"config {path} is not valid JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a JSON object of field: value")
    return data


def _config_from_options(config_file: str | None, overrides: dict) -> CampaignConfig:
    data = _load_config_file(config_file)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return CampaignConfig.from_dict(data)
    except ConfigError as err:
        where = f" (config {config_file})" if config_file else ""
        raise UserError(f"bad config{where}: {err}") from None


def _run_and_finish(out: str, config: CampaignConfig | None, *, resume: bool = False,
                    generations: int | None = None, validate: bool = False, quiet: bool = False,
                    time_limit: str | None = None, max_evaluations: int | None = None):
    """Run or resume the campaign in OUT to its end (or its budget), funnel and report
    included, with a progress bar (nothing with ``quiet``) and the live view."""
    from evolve.budget import Budget, parse_duration
    from evolve.cli import STARTED
    from evolve.progress import CampaignProgress, StageProgress
    from evolve.runner import run_campaign
    from evolve.strategies import run_directory

    budget = Budget(time_limit=parse_duration(time_limit) if time_limit else None,
                    max_evaluations=max_evaluations, started=STARTED)
    progress = CampaignProgress(budget=budget, quiet=quiet)
    stages = StageProgress("finishing", quiet=quiet, before=progress.close)
    try:
        # strategies that keep files of their own (the Optuna journal) keep them in OUT
        with run_directory(out):
            return run_campaign(out, config=config, resume=resume, generations=generations,
                                progress=progress, finish=True, validate=validate,
                                notify=progress.note, budget=budget, live=True, stages=stages)
    finally:
        progress.close()
        stages.close()


_DEFAULTS = CampaignConfig()


def _default(field: str) -> str:
    """`[value]`: a field's default for a help text, read from CampaignConfig so it cannot drift."""
    return f"[{getattr(_DEFAULTS, field)}]"


RUN_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                 help="JSON file of CampaignConfig fields; options given here override it."),
    click.option("--generations", type=int, default=None,
                 help=f"Generations to run {_default('generations')}."),
    click.option("--population", type=int, default=None,
                 help=f"Population size {_default('population')}."),
    click.option("--seed", type=int, default=None,
                 help="Random seed; a campaign is a function of (config, seed) "
                      f"{_default('seed')}."),
    click.option("--strategy", default=None,
                 help=f"What proposes rules: {', '.join(STRATEGIES)} (random search, a "
                      "recurrent controller trained by REINFORCE, TPE over Adam's constants) "
                      f"{_default('strategy')}."),
    click.option("--warm-start", default=None,
                 help="'random', a known rule (adam: the Lion search's start), or a comma list "
                      f"such as adam,lion,sgd {_default('warm_start')}."),
    click.option("--algorithm", type=click.Choice(ALGORITHMS), default=None,
                 help="aging: regularized evolution (oldest dies); generational: (mu+lambda) "
                      f"{_default('algorithm')}."),
    click.option("--executor", type=click.Choice(EXECUTORS), default=None,
                 help=f"serial, process (one worker per core) or ray {_default('executor')}."),
    click.option("--workers", type=int, default=None, help="Worker processes (0 = one per core)."),
    click.option("--address", "ray_address", default=None, help="Ray cluster address (with --executor ray)."),
    click.option("--suite", default=None, help=f"Proxy-task suite to search on {_default('suite')}."),
    click.option("--task", "tasks", multiple=True, metavar="FILE.py:FUNCTION",
                 help="Add your own model and data to the real-data tier (repeatable); FUNCTION "
                      "returns an evolve.UserTask (README: 'Bring your own task')."),
    click.option("--real-k", type=int, default=None,
                 help="New candidates per generation trained on the real-data tier (0: off) "
                      f"{_default('real_k')}."),
    click.option("--hurdle-quantile", type=float, default=None,
                 help="Adaptive hurdle: a child must reach this quantile of the population's "
                      "progress on the hurdle task (never below 0.05 of tuned Adam's; 0: that "
                      f"fixed floor only) {_default('hurdle_quantile')}."),
    click.option("--stop-quantile", type=float, default=None,
                 help="Early stop: a child's suite stops once it cannot reach this quantile of "
                      "the population's scores; its score is then that bound, and it never "
                      "enters the hall of fame or tier 2 (0: never stop) "
                      f"{_default('stop_quantile')}."),
    click.option("--screen-quantile", type=float, default=None,
                 help="Screen: a child runs the suite's cheapest tasks first and stops there "
                      "when its mean log-ratio on them is below this quantile of the "
                      "population's; its score is then that mean's, and it never enters the "
                      f"hall of fame or tier 2 (0: no screen) {_default('screen_quantile')}."),
    click.option("--screen-tasks", type=int, default=None,
                 help="How many of the suite's cheapest tasks the screen runs "
                      f"{_default('screen_tasks')}."),
]


def run_options(fn):
    for option in reversed(RUN_OPTIONS):
        fn = option(fn)
    return fn


BUDGET_OPTIONS = [
    click.option("--time-limit", default=None, metavar="DURATION",
                 help="Stop cleanly before this much wall-clock time has passed (90s, 30m, "
                      "1.5h), keeping time for the final selection and report; `evolve "
                      "resume` continues exactly."),
    click.option("--max-evaluations", type=int, default=None, metavar="N",
                 help="Stop at the end of the generation in which the run has scored N "
                      "candidates (cache hits included), with the full report."),
    click.option("--quiet", is_flag=True, help="No progress bar or lines (errors and notes "
                                                "still print)."),
]


def budget_options(fn):
    for option in reversed(BUDGET_OPTIONS):
        fn = option(fn)
    return fn


@click.command("run")
@run_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--validate/--no-validate", default=False,
              help="Send the top held-out rules through torch validation (digits) at the end.")
@budget_options
@click.option("--refine/--no-refine", default=False,
              help="At the end, fit the constants of the hall of fame's best rules by "
                   "meta-gradient (`evolve refine`; results in OUT/refined/RANK/).")
@click.option("--refine-top", type=int, default=3, show_default=True,
              help="How many hall-of-fame rules (with constants) --refine refines.")
def run_cmd(config_file, generations, population, seed, strategy, warm_start, algorithm, executor,
            workers, ray_address, suite, tasks, real_k, hurdle_quantile, stop_quantile,
            screen_quantile, screen_tasks, out, validate, time_limit, max_evaluations, quiet, refine, refine_top):
    """Run a campaign (evolution by default; --strategy) and write it to the run directory OUT.

    \b
    Examples:
        evolve run --generations 30 --out runs/first
        evolve run --warm-start adam --executor ray --out runs/from-adam
        evolve run --task my_task.py:make_task --out runs/mine
    Every candidate is scored on the proxy suite; the best new ones of each generation train
    on the real-data tier; its top rules are re-scored on fresh seeds, and the smallest of
    those within 1% of the best final score is the answer (RUN:best).
    Watch it: OUT/report.html reloads itself while the run goes; `tensorboard --logdir
    OUT/tensorboard` shows its curves. Interrupt with Ctrl-C: a checkpoint, report and plots
    are saved; continue with `evolve resume OUT`.
    """
    config = _config_from_options(config_file, dict(
        generations=generations, population=population, seed=seed, strategy=strategy,
        warm_start=_resolve_warm_start(warm_start), algorithm=algorithm, executor=executor,
        workers=workers, ray_address=ray_address, suite=suite, real_k=real_k,
        hurdle_quantile=hurdle_quantile, stop_quantile=stop_quantile,
        screen_quantile=screen_quantile, screen_tasks=screen_tasks))
    if tasks:
        config = _with_user_tasks(config, tasks)
    _check_suite(config.suite)
    if refine and refine_top < 1:
        raise UserError("--refine-top must be at least 1")
    _run_and_finish(out, config, validate=validate, quiet=quiet, time_limit=time_limit,
                    max_evaluations=max_evaluations)
    _print_summary(out)
    if refine:
        _refine_hall(out, config, refine_top)


def _refine_hall(out: str, config: CampaignConfig, top: int) -> None:
    """``evolve refine`` on the hall of fame's best rules with constants, into OUT/refined/N/."""
    from evolve.refine import RefineConfig, refinable, refine_to
    from evolve.rundir import RunDirectory
    from primitives.grammar import parse

    hall = RunDirectory(out).read_hall_of_fame()
    done = 0
    for rank, entry in enumerate(hall, 1):
        if done == top:
            break
        if not refinable(parse(entry["rule"])):
            click.echo(f"refine: number {rank} has no constants: {entry['rule']}", err=True)
            continue
        folder = Path(out) / "refined" / str(rank)
        result = refine_to(entry["rule"], folder,
                           RefineConfig(suite=config.suite, heldout_suite=config.heldout_suite,
                                        schedule=config.schedule, seed=config.seed),
                           notify=lambda message: click.echo(message, err=True))
        s = result["scores"]
        click.echo(f"refined number {rank}: search {s['before']['search']:.3f} -> "
                   f"{s['after']['search']:.3f}: {result['refined']} ({folder}/refine.md)")
        done += 1


@click.command("resume")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--generations", type=int, default=None,
              help="A new total number of generations: extends a finished run exactly as if it "
                   "had been started with this number.")
@click.option("--validate/--no-validate", default=False, help="As for `evolve run`.")
@budget_options
def resume_cmd(run, generations, validate, time_limit, max_evaluations, quiet):
    """Continue the campaign in RUN from its last checkpoint (same end state as never stopping).

    \b
    A run killed before its first checkpoint starts again from its config.json; a finished run
    says so, and `--generations N` extends it. A run stopped by --time-limit or
    --max-evaluations continues here, with new budgets if given.
    """
    if generations is not None and generations < 0:
        raise UserError("--generations must be >= 0")
    _run_and_finish(run, None, resume=True, generations=generations, validate=validate,
                    quiet=quiet, time_limit=time_limit, max_evaluations=max_evaluations)
    _print_summary(run)


@click.command("show")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print hall of fame, funnel and curves as JSON.")
def show_cmd(run, as_json):
    """Show the hall of fame and score curves of the campaign in RUN."""
    from evolve.rundir import RunDirectory
    from primitives.program import needs_total_steps

    rd = RunDirectory(run)
    hall = rd.read_hall_of_fame()
    log = rd.read_log()
    heldout = rd.read_heldout()
    for entry in hall:
        entry.setdefault("needs_total_steps", needs_total_steps(entry["rule"]))
    if as_json:
        click.echo(json.dumps({
            "hall_of_fame": hall,
            "curves": {k: [r.get(k) for r in log] for k in
                       ("generation", "best_score", "median_score", "mean_size", "candidates_per_s",
                        "real_best")},
            "heldout": heldout,
            "selection": rd.read_selection(),
            "status": rd.read_status(),
        }, indent=2))
        return
    click.echo(f"hall of fame of {run} (1.0 = tuned Adam; real-data tier first, then the "
               "proxy suite's best)")
    for i, entry in enumerate(hall, 1):
        tier = entry.get("tier", "proxy")
        click.echo(f"{i:>2}. {tier:<5} {entry['score']:.3f}  {entry['rule']}")
        _say_pruned(entry, "pruned")
        if entry["needs_total_steps"]:
            click.echo("           needs total_steps (reads a schedule)")
    if log:
        last = log[-1]
        click.echo(f"generations: {last['generation']}  evaluations: {last['evaluations']}")
    if heldout:
        click.echo("held-out ranking:")
        for row in heldout.get("ranking", [])[:5]:
            click.echo(f"    {row['heldout_score']:+.3f} (search {row['search_score']:+.3f})  {row['rule']}")
    selection = rd.read_selection()
    if selection and selection.get("pareto"):
        click.echo("Pareto front (real-data tier score against rule size):")
        for point in selection["pareto"]:
            click.echo(f"    size {point['size']:>3}  {point['score']:.3f}  {point['rule']}")
            _say_pruned(point)
    rule, how = rd.final_selection()
    click.echo(f"{run}:best ({how}): {rule}")
    if selection:
        _say_pruned(selection)
    _say_if_stopped(rd, run)


@click.command("demo")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run directory [build/demo-run-<time>].")
@click.option("--generations", type=int, default=20, show_default=True)
@click.option("--population", type=int, default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar or lines.")
def demo_cmd(out, generations, population, quiet):
    """A short real campaign (proxy suite and real-data tier), then the discovered rule beside
    adam and sgd."""
    from evolve.rundir import REPORT, RunDirectory
    from evolve.worker import score_rules
    from primitives.program import needs_total_steps
    from primitives.rules import KNOWN_RULES

    out = out or f"build/demo-run-{time.strftime('%Y%m%d-%H%M%S')}"
    # a few minutes on a laptop: one candidate a generation on tier 2, on one seed (a campaign's
    # default trains two on two seeds)
    config = CampaignConfig(generations=generations, population=population, warm_start="random",
                            real_k=1, real_seeds=1, confirm=3, confirm_seeds=1)
    click.echo(f"evolving {population} rules for {generations} generations on the "
               f"'{config.suite}' proxy suite, the best new one of each generation trained on "
               f"the real-data tier -> {out}", err=True)
    _run_and_finish(out, config, quiet=quiet)
    rd = RunDirectory(out)
    chosen, how = rd.final_selection()
    from evolve.tiers import real_suite, selection_score

    rules = [chosen, KNOWN_RULES["adam"].rule, KNOWN_RULES["sgd"].rule]
    search = score_rules(config.suite, config.seed, rules)
    held_out = score_rules(config.heldout_suite, config.seed, rules)
    click.echo("training adam and sgd on the real-data tier for the comparison...", err=True)
    real = score_rules(real_suite(config), config.seed, rules)
    click.echo("")
    click.echo("scores: loss ratio against tuned Adam (1.0 = Adam, higher is better): "
               "geometric mean over the proxy tasks (the held-out ones never searched on); the "
               "real tier's soft minimum over its tasks, as the campaign ranks (docs/scoring.md)")
    click.echo(f"{'optimizer':<11} {'search':>7} {'held-out':>9} {'real tier':>10}  rule")
    for name, rule, s, h, r in zip(("discovered", "adam", "sgd"), rules, search, held_out, real):
        click.echo(f"{name:<11} {s.score:>7.3f} {h.score:>9.3f} "
                   f"{selection_score(r, config.real_softmin):>10.3f}  {rule}")
    click.echo(f"(discovered: {how})")
    if needs_total_steps(chosen):
        click.echo("the discovered rule reads a schedule: its exported optimizer needs "
                   "total_steps=N (the number of steps it will take)")
    click.echo(f"\nreport: {rd.file(REPORT)}   export: {_evolve_command()} export "
               f"{out}:best --name MyOptimizer -o my_optimizer.py")


def _evolve_command() -> str:
    """How to call this CLI from the user's shell: ``evolve`` if it is on PATH, else its path."""
    if shutil.which("evolve"):
        return "evolve"
    script = Path(sys.executable).with_name("evolve")
    return str(script) if script.exists() else f"{sys.executable} -m evolve.cli"


def _with_user_tasks(config: CampaignConfig, specs: tuple[str, ...]) -> CampaignConfig:
    """The config with the user's tasks added to the real-data tier, each checked first (it
    is imported, built and run once on its data), so a bad one stops before anything is
    written."""

    from fitness.training.real_tasks import TaskError, load_user_task

    for spec in specs:
        try:
            load_user_task(spec)
        except TaskError as err:
            raise UserError(str(err)) from None
    try:
        return CampaignConfig.from_dict({**config.to_dict(),
                                         "real_tasks": [*config.real_tasks, *specs]})
    except ConfigError as err:
        raise UserError(f"--task: {err}") from None


def _resolve_warm_start(spec: str | None) -> str | None:
    """``--warm-start`` items that name a run's rule (``RUN:best``, ``RUN:3``...) become that
    rule's text, so config.json holds the rules themselves and the campaign stays a function
    of its config."""
    if spec is None:
        return None
    from evolve.config import split_top_level
    from evolve.rundir.refs import resolve_rule, split_run_ref

    items = split_top_level(spec)
    return ",".join(resolve_rule(i).text if split_run_ref(i) else i for i in items)


def _check_suite(name: str) -> None:
    from evolve.worker import suite_names

    if name not in suite_names():
        raise UserError(f"unknown suite {name!r}; choose one of {', '.join(suite_names())}")


def _say_pruned(entry: dict, label: str = "pruned (the same on the probes)") -> None:
    """The smaller form with the same fingerprint of a hall entry, the answer or a Pareto point,
    if it has one."""
    from evolve.simplify import smaller_form

    if pruned := smaller_form(entry):
        click.echo(f"           {label}: {pruned}")


def _say_if_stopped(rd, run: str) -> None:
    status = rd.read_status()
    if status and status.get("state") == "stopped":
        click.echo(f"stopped at generation {status['generation']} of {status['generations']} "
                   f"({status['reason']}); continue with `evolve resume {run}`")


def _print_summary(run: str) -> None:
    from evolve.rundir import REPORT, REPORT_HTML, RunDirectory

    rd = RunDirectory(run)
    hall = rd.read_hall_of_fame()
    best = max(hall, key=lambda e: e.get("proxy_score", e["score"]))
    click.echo(f"search champion (proxy score {best.get('proxy_score', best['score']):.3f}): "
               f"{best['rule']}")
    selection = rd.read_selection()
    if selection:
        top = selection["ranking"][0]
        shown = top["final_score"] if top["final_score"] is not None else top["real_score"]
        proxy = (f"proxy {top['proxy_score']:.3f}" if top.get("proxy_score") is not None
                 else "a warmup variant of a tier-2 rule, no proxy score")
        click.echo(f"final selection, {run}:best (real-data tier {shown:.3f}, tuned Adam = 1; "
                   f"{proxy}): {top['rule']}")
        _say_pruned(selection)
    else:
        rule, how = rd.final_selection()
        click.echo(f"final selection, {run}:best ({how}): {rule}")
    _say_if_stopped(rd, run)
    if rd.has_report():
        click.echo(f"report: {rd.file(REPORT)} and {rd.file(REPORT_HTML)}")


__all__ = ["demo_cmd", "resume_cmd", "run_cmd", "show_cmd"]
