"""CLI commands that run campaigns: ``evolve run``, ``evolve resume``, ``evolve show``, ``evolve demo``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from evolve.campaign import ALGORITHMS, EXECUTORS, CampaignConfig, ConfigError
from evolve.errors import RunError, UserError


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

    def __init__(self, total: int, start: int = 0, label: str = "evolving"):
        self.total = total
        self.start_time = time.perf_counter()
        self.start_gen = start
        self.rich = None
        if sys.stderr.isatty():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.rich = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("gen {task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False,
            )
            self.task = self.rich.add_task(label, total=total, completed=start, info="")
            self.rich.start()

    def __call__(self, row: dict) -> None:
        gen = row["generation"]
        elapsed = time.perf_counter() - self.start_time
        done = max(gen - self.start_gen, 1)
        eta = elapsed / done * max(self.total - gen, 0)
        best = row.get("best_score")
        info = (f"best {best:.3f}  median {row.get('median_score') or 0:.3f}  "
                f"{row.get('candidates_per_s') or 0:.0f} cand/s  cache {row.get('cache_hits', 0)}")
        if self.rich is not None:
            self.rich.update(self.task, completed=gen, info=info)
        else:
            click.echo(f"gen {gen}/{self.total}  {info}  eta {eta:.0f}s", err=True)

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


def _run_and_finish(out: str, config: CampaignConfig | None, resume: bool, validate: bool,
                    quiet: bool = False):
    from evolve.finalize import finalize
    from evolve.runner import RunDirectory, run_campaign

    if resume:
        state = RunDirectory(out).load_checkpoint()
        cfg = CampaignConfig.from_dict(state["campaign"]["config"])
        start = int(state["campaign"]["generation"])
    else:
        cfg, start = config, 0
    progress = None if quiet else Progress(cfg.generations, start)
    try:
        campaign = run_campaign(out, config=config, resume=resume, progress=progress)
    except OSError as err:
        raise RunError(f"cannot write to {out}: {err.strerror or err}; the last checkpoint is "
                       f"intact — free space or fix permissions, then `evolve resume {out}`") from None
    finally:
        if progress is not None:
            progress.close()
    summary = finalize(out, campaign, validate=validate)
    return campaign, summary


RUN_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                 help="JSON file of CampaignConfig fields; options given here override it."),
    click.option("--generations", type=int, default=None, help="Generations to run [20]."),
    click.option("--population", type=int, default=None, help="Population size [32]."),
    click.option("--seed", type=int, default=None, help="Random seed; a campaign is a function of (config, seed) [0]."),
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
def run_cmd(config_file, generations, population, seed, warm_start, algorithm, executor, workers,
            ray_address, suite, out, validate):
    """Run an evolution campaign and write it to the run directory OUT.

    \b
    Examples:
        evolve run --generations 30 --out runs/first
        evolve run --warm-start adam --executor ray --out runs/from-adam
    Interrupt with Ctrl-C: a checkpoint is saved; continue with `evolve resume RUN`.
    """
    config = _config_from_options(config_file, dict(
        generations=generations, population=population, seed=seed, warm_start=warm_start,
        algorithm=algorithm, executor=executor, workers=workers, ray_address=ray_address,
        suite=suite))
    _check_suite(config.suite)
    campaign, summary = _run_and_finish(out, config, False, validate)
    _print_summary(campaign, summary)


@click.command("resume")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--validate/--no-validate", default=False, help="As for `evolve run`.")
def resume_cmd(run, validate):
    """Continue the campaign in RUN from its last checkpoint (same end state as never stopping)."""
    campaign, summary = _run_and_finish(run, None, True, validate)
    _print_summary(campaign, summary)


@click.command("show")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print hall of fame, funnel and curves as JSON.")
def show_cmd(run, as_json):
    """Show the hall of fame and score curves of the campaign in RUN."""
    from evolve.runner import RunDirectory
    from evolve.runs import read_hall_of_fame

    hall = read_hall_of_fame(run)
    rd = RunDirectory(run)
    log = rd.read_log()
    heldout_path = Path(run) / "heldout.json"
    heldout = json.loads(heldout_path.read_text()) if heldout_path.exists() else None
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
    if log:
        last = log[-1]
        click.echo(f"generations: {last['generation']}  evaluations: {last['evaluations']}")
    if heldout:
        click.echo("held-out ranking:")
        for row in heldout.get("ranking", [])[:5]:
            click.echo(f"    {row['heldout_score']:+.3f} (search {row['search_score']:+.3f})  {row['rule']}")


@click.command("demo")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run directory [build/demo-run-<time>].")
@click.option("--generations", type=int, default=150, show_default=True)
@click.option("--population", type=int, default=64, show_default=True)
def demo_cmd(out, generations, population):
    """A short real campaign with the defaults, then the discovered rule beside adam and sgd."""
    from evolve.evaluation import make_evaluator

    out = out or f"build/demo-run-{time.strftime('%Y%m%d-%H%M%S')}"
    config = CampaignConfig(generations=generations, population=population, warm_start="random")
    click.echo(f"evolving {population} rules for {generations} generations on the "
               f"'{config.suite}' proxy suite -> {out}", err=True)
    campaign, summary = _run_and_finish(out, config, False, False)
    best = campaign.hall_of_fame[0]
    from primitives.rules import KNOWN_RULES

    evaluator = make_evaluator(config.suite, config.seed)
    adam, sgd = evaluator.evaluate([KNOWN_RULES["adam"].rule, KNOWN_RULES["sgd"].rule])
    heldout = json.loads((Path(out) / "heldout.json").read_text())
    rows = [("discovered", best.score, summary.get("heldout_best"), best.rule),
            ("adam", adam["aggregate"], heldout["baselines"]["adam"], KNOWN_RULES["adam"].rule),
            ("sgd", sgd["aggregate"], heldout["baselines"]["sgd"], KNOWN_RULES["sgd"].rule)]
    click.echo("")
    click.echo("scores: 1.0 = tuned Adam, higher is better; held-out tasks were never searched on")
    click.echo(f"{'optimizer':<11} {'search':>7} {'held-out':>9}  rule")
    for name, search, held, rule in rows:
        held_text = f"{held:>9.3f}" if held is not None else f"{'-':>9}"
        click.echo(f"{name:<11} {search:>7.3f} {held_text}  {rule}")
    click.echo(f"\nreport: {Path(out) / 'report.md'}   export: evolve export {out}:best "
               "--name MyOptimizer -o my_optimizer.py")


def _check_suite(name: str) -> None:
    from evolve.evaluation import suite_names

    if name not in suite_names():
        raise UserError(f"unknown suite {name!r}; choose one of {', '.join(suite_names())}")


def _print_summary(campaign, summary: dict) -> None:
    best = campaign.hall_of_fame[0]
    click.echo(f"best rule (search score {best.score:.3f}): {best.rule}")
    if summary.get("heldout_best") is not None:
        click.echo(f"held-out score: {summary['heldout_best']:.3f}")
    click.echo(f"report: {summary.get('report')}")


__all__ = ["demo_cmd", "resume_cmd", "run_cmd", "show_cmd"]
