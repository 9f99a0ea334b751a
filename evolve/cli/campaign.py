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


class Progress:
    """A rich progress bar on a terminal, plain lines elsewhere (logs, CI, pipes)."""

    def __init__(self, label: str = "evolving"):
        self.label = label
        self.rich = None
        self.task = None
        self.start_time = time.perf_counter()
        self.start_gen: int | None = None

    def _begin(self, gen: int, total: int) -> None:
        self.start_gen = gen - 1  # the generation before the first one this call runs
        if sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("gen {task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
            )
            self.task = self.rich.add_task(self.label, total=total, completed=gen, info="")
            self.rich.start()

    def __call__(self, row: dict, total: int) -> None:
        gen = row["generation"]
        if self.start_gen is None:
            self._begin(gen, total)
        elapsed = time.perf_counter() - self.start_time
        done = max(gen - (self.start_gen or 0), 1)
        eta = elapsed / done * max(total - gen, 0)
        best = row.get("best_score")
        info = (f"best {best:.3f}  median {row.get('median_score') or 0:.3f}  "
                f"{row.get('candidates_per_s') or 0:.0f} cand/s  cache {row.get('cache_hits', 0)}")
        if row.get("lost_evaluations"):
            info += f"  lost {row['lost_evaluations']} (retried {row['retried_evaluations']})"
        if self.rich is not None:
            self.rich.update(self.task, completed=gen, info=info)
        else:
            click.echo(f"gen {gen}/{total}  {info}  eta {eta:.0f}s", err=True)

    def close(self) -> None:
        if self.rich is not None:
            self.rich.stop()


def _config_from_options(config_file: str | None, overrides: dict) -> CampaignConfig:
    data = _load_config_file(config_file)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return CampaignConfig.from_dict(data)
    except ConfigError as err:
        where = f" (config {config_file})" if config_file else ""
        raise UserError(f"bad config{where}: {err}") from None


def _run_and_finish(out: str, config: CampaignConfig | None, *, resume: bool = False,
                    generations: int | None = None, validate: bool = False, quiet: bool = False):
    """Run or resume the campaign in OUT to its end, funnel and report included."""
    from evolve.runner import run_campaign
    from evolve.strategies import run_directory

    progress = None if quiet else Progress()
    try:
        # strategies that keep files of their own (the Optuna journal) keep them in OUT
        with run_directory(out):
            return run_campaign(out, config=config, resume=resume, generations=generations,
                                progress=progress, finish=True, validate=validate,
                                notify=lambda message: click.echo(message, err=True))
    finally:
        if progress is not None:
            progress.close()


RUN_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                 help="JSON file of CampaignConfig fields; options given here override it."),
    click.option("--generations", type=int, default=None, help="Generations to run [20]."),
    click.option("--population", type=int, default=None, help="Population size [32]."),
    click.option("--seed", type=int, default=None, help="Random seed; a campaign is a function of (config, seed) [0]."),
    click.option("--strategy", default=None,
                 help=f"What proposes rules: {', '.join(STRATEGIES)} (random search, a "
                      "recurrent controller trained by REINFORCE, TPE over Adam's constants) "
                      "[evolution]."),
    click.option("--warm-start", default=None,
                 help="'random', a known rule (adam: the Lion search's start), or a comma list "
                      "such as adam,lion,sgd [random]."),
    click.option("--algorithm", type=click.Choice(ALGORITHMS), default=None,
                 help="aging: regularized evolution (oldest dies); generational: (mu+lambda) [aging]."),
    click.option("--executor", type=click.Choice(EXECUTORS), default=None,
                 help="serial, process (one worker per core) or ray [process]."),
    click.option("--workers", type=int, default=None, help="Worker processes (0 = one per core)."),
    click.option("--address", "ray_address", default=None, help="Ray cluster address (with --executor ray)."),
    click.option("--suite", default=None, help="Proxy-task suite to search on [default]."),
]


def run_options(fn):
    for option in reversed(RUN_OPTIONS):
        fn = option(fn)
    return fn


@click.command("run")
@run_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--validate/--no-validate", default=False,
              help="Send the top held-out rules through torch validation (digits) at the end.")
@click.option("--refine/--no-refine", default=False,
              help="At the end, fit the constants of the hall of fame's best rules by "
                   "meta-gradient (`evolve refine`; results in OUT/refined/RANK/).")
@click.option("--refine-top", type=int, default=3, show_default=True,
              help="How many hall-of-fame rules (with constants) --refine refines.")
def run_cmd(config_file, generations, population, seed, strategy, warm_start, algorithm, executor,
            workers, ray_address, suite, out, validate, refine, refine_top):
    """Run a campaign (evolution by default; --strategy) and write it to the run directory OUT.

    \b
    Examples:
        evolve run --generations 30 --out runs/first
        evolve run --warm-start adam --executor ray --out runs/from-adam
    Interrupt with Ctrl-C: a checkpoint is saved; continue with `evolve resume RUN`.
    """
    config = _config_from_options(config_file, dict(
        generations=generations, population=population, seed=seed, strategy=strategy,
        warm_start=warm_start, algorithm=algorithm, executor=executor, workers=workers,
        ray_address=ray_address, suite=suite))
    _check_suite(config.suite)
    if refine and refine_top < 1:
        raise UserError("--refine-top must be at least 1")
    _run_and_finish(out, config, validate=validate)
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
                                        seed=config.seed),
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
def resume_cmd(run, generations, validate):
    """Continue the campaign in RUN from its last checkpoint (same end state as never stopping).

    \b
    A run killed before its first checkpoint starts again from its config.json; a finished run
    says so, and `--generations N` extends it.
    """
    if generations is not None and generations < 0:
        raise UserError("--generations must be >= 0")
    _run_and_finish(run, None, resume=True, generations=generations, validate=validate)
    _print_summary(run)


@click.command("show")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print hall of fame, funnel and curves as JSON.")
def show_cmd(run, as_json):
    """Show the hall of fame and score curves of the campaign in RUN."""
    from evolve.finalize import needs_total_steps
    from evolve.rundir import RunDirectory

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
                       ("generation", "best_score", "median_score", "mean_size", "candidates_per_s")},
            "heldout": heldout,
        }, indent=2))
        return
    click.echo(f"hall of fame of {run} (search score; 1.0 = tuned Adam)")
    for i, entry in enumerate(hall, 1):
        click.echo(f"{i:>2}. {entry['score']:+.3f}  {entry['rule']}")
        if entry.get("simplified") and entry["simplified"] != entry["rule"]:
            click.echo(f"           pruned: {entry['simplified']}")
        if entry["needs_total_steps"]:
            click.echo("           needs total_steps (reads a schedule)")
    if log:
        last = log[-1]
        click.echo(f"generations: {last['generation']}  evaluations: {last['evaluations']}")
    if heldout:
        click.echo("held-out ranking:")
        for row in heldout.get("ranking", [])[:5]:
            click.echo(f"    {row['heldout_score']:+.3f} (search {row['search_score']:+.3f})  {row['rule']}")
    rule, how = rd.final_selection()
    click.echo(f"{run}:best ({how}): {rule}")


@click.command("demo")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run directory [build/demo-run-<time>].")
@click.option("--generations", type=int, default=150, show_default=True)
@click.option("--population", type=int, default=64, show_default=True)
def demo_cmd(out, generations, population):
    """A short real campaign with the defaults, then the discovered rule beside adam and sgd."""
    from evolve.finalize import needs_total_steps
    from evolve.rundir import REPORT, RunDirectory
    from evolve.worker import score_rules
    from primitives.rules import KNOWN_RULES

    out = out or f"build/demo-run-{time.strftime('%Y%m%d-%H%M%S')}"
    config = CampaignConfig(generations=generations, population=population, warm_start="random")
    click.echo(f"evolving {population} rules for {generations} generations on the "
               f"'{config.suite}' proxy suite -> {out}", err=True)
    strategy = _run_and_finish(out, config)
    rd = RunDirectory(out)
    heldout = rd.read_heldout() or {}
    chosen, how = rd.final_selection()
    held = {row["rule"]: row["heldout_score"] for row in heldout.get("ranking", [])}
    search = {ind.rule: ind.score for ind in strategy.hall_of_fame}
    search.update({c["rule"]: c["score"] for c in strategy.champions})
    adam, sgd = score_rules(config.suite, config.seed, [KNOWN_RULES["adam"].rule,
                                                      KNOWN_RULES["sgd"].rule])
    baselines = heldout.get("baselines", {})
    rows = [("discovered", search.get(chosen), held.get(chosen), chosen),
            ("adam", adam.score, baselines.get("adam"), KNOWN_RULES["adam"].rule),
            ("sgd", sgd.score, baselines.get("sgd"), KNOWN_RULES["sgd"].rule)]
    click.echo("")
    click.echo("scores: 1.0 = tuned Adam, higher is better; held-out tasks were never searched on")
    click.echo(f"{'optimizer':<11} {'search':>7} {'held-out':>9}  rule")
    for name, search_score, held_score, rule in rows:
        cells = [f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"
                 for v, w in ((search_score, 7), (held_score, 9))]
        click.echo(f"{name:<11} {cells[0]} {cells[1]}  {rule}")
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


def _check_suite(name: str) -> None:
    from evolve.worker import suite_names

    if name not in suite_names():
        raise UserError(f"unknown suite {name!r}; choose one of {', '.join(suite_names())}")


def _print_summary(run: str) -> None:
    from evolve.rundir import REPORT, RunDirectory

    rd = RunDirectory(run)
    hall = rd.read_hall_of_fame()
    click.echo(f"search champion (score {hall[0]['score']:.3f}): {hall[0]['rule']}")
    heldout = rd.read_heldout()
    if heldout and heldout["ranking"]:
        top = heldout["ranking"][0]
        click.echo(f"final selection, {run}:best (held-out {top['heldout_score']:.3f}, search "
                   f"{top['search_score']:.3f}): {top['rule']}")
    if rd.has_report():
        click.echo(f"report: {rd.file(REPORT)}")


__all__ = ["demo_cmd", "resume_cmd", "run_cmd", "show_cmd"]
