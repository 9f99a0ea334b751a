"""Driving a strategy in a run directory: cached scoring, checkpoints, stops, resume, extension.

:func:`run_campaign` is the one loop: ask the strategy, score through the equivalence cache and
an executor, tell, log, checkpoint; every strategy goes through it the same way. It holds the
run directory's lock for its whole length (funnel and report included), and stops cleanly on
SIGINT/SIGTERM (after the current generation), on a budget (:mod:`evolve.budget`), on lost
workers and on a failed write, always with a checkpoint from which ``evolve resume`` continues
exactly. A run stopped by a budget gets the full final selection and report, one stopped by a
signal a report of what it has (no new scoring); ``status.json`` says which. The layout it
writes is :mod:`evolve.rundir`'s; the live view (TensorBoard events, ``report.html``) is
:mod:`evolve.live`'s. (Longer than 400 lines on purpose: the loop and every way it ends —
done, budget, signal, lost workers, failed write — share one session's state and read best
side by side.)
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from evolve import interrupt
from evolve.budget import Budget, BudgetClock, end_status
from evolve.config import CampaignConfig, ConfigError
from evolve.errors import RunError, UserError
from evolve.executors import Executor, LostEvaluations, make_executor
from evolve.rundir import CHECKPOINT, CONFIG, RunDirectory
from evolve.strategy import Strategy
from evolve.tiers import REAL_SUITE_PREFIX, RealTierStage, confirmation_seeds, real_suite
from evolve.worker import fingerprint, proxy_suite, remember_prints, unknown_prints, warm_real_tier
from fitness.evaluate import Thresholds
from fitness.score import Result, json_safe
from primitives.grammar import parse

Progress = Callable[[dict, int], None]  # (log row, total generations)
Notify = Callable[[str], None]
Stages = Callable[[str], None]  # the final selection's and funnel's stages, as each begins


class CachedScorer:
    """The functional-equivalence cache in front of an executor.

    Rules whose fingerprints (outputs on fixed probe gradients) agree share one evaluation. It
    lives in the driver and its entries are saved with each checkpoint, so which rules share a
    result does not depend on the executor or on a restart. Scoring is two-phase: the
    executor's workers compute the prints of rule texts the driver has not seen
    (:meth:`~evolve.executors.Executor.prints`), then the driver sends what the cache lacks to
    be scored; the same function either way, so results do not depend on where prints ran. Only real results enter it: when
    the executor loses evaluations, :class:`~evolve.executors.LostEvaluations` passes through
    and nothing of that batch is cached. An entry evaluated under other thresholds is reused
    only where :meth:`fitness.evaluate.Thresholds.reuses` allows (a suite stopped early is never
    reused as a full score); otherwise the rule is evaluated again and its new result replaces
    the entry (``lines`` counts what ``cache.jsonl`` holds, replaced entries included).
    """

    def __init__(self, executor: Executor, cache: dict[str, Result] | None = None):
        self.executor = executor
        self.cache: dict[str, Result] = dict(cache or {})
        self.hits = 0
        self.misses = 0
        self.new_entries: list[tuple[str, Result]] = []  # not yet appended to cache.jsonl
        self.fresh: list[Result] = []  # the executor's results of the last call, with timings
        self.lines = len(self.cache)  # a resumed run's cache.jsonl is rewritten compacted

    def score(self, rules: Sequence[str], suite: str | None = None, seed: int | None = None,
              namespace: str = "", thresholds: Thresholds | None = None) -> list[Result]:
        """Results for ``rules`` on the executor's suite and seed (or the ones named) under
        ``thresholds`` (proxy suites); keys of other suites and instance seeds carry a
        ``namespace`` so their results never mix."""
        limits = thresholds or Thresholds()
        self._learn_prints(rules)
        prints = [namespace + fingerprint(r) for r in rules]
        todo: list[str] = []
        todo_prints: list[str] = []
        for rule, fp in zip(rules, prints):
            entry = self.cache.get(fp)
            if (entry is not None and limits.reuses(entry)) or fp in todo_prints:
                self.hits += 1
            else:
                todo.append(rule)
                todo_prints.append(fp)
        results = self.executor.map(todo, suite, seed, thresholds)
        self.fresh = list(results)
        self.misses += len(todo)
        for fp, result in zip(todo_prints, results):
            # timing is not part of a result's value: a resumed run must store the same bytes
            self.cache[fp] = replace(result, seconds=0.0, cached=False)
            self.new_entries.append((fp, self.cache[fp]))
            self.lines += 1
        fresh = set(todo_prints)  # the first rule of each of these was evaluated just now
        out = []
        for rule, fp in zip(rules, prints):
            out.append(replace(self.cache[fp], rule=rule, cached=fp not in fresh))
            fresh.discard(fp)
        return out

    def _learn_prints(self, rules: Sequence[str]) -> None:
        """The prints of rule texts this process has not seen, computed by the executor's
        workers (one cheap probe run each, in parallel, instead of one after another here)."""
        new = unknown_prints(rules)
        compute = getattr(self.executor, "prints", None)  # an executor of the older protocol
        if new and compute is not None:
            for rule, found in zip(new, compute(new)):
                remember_prints(rule, found)


def hall_entries(strategy: Strategy) -> list[dict[str, Any]]:
    """The hall of fame as ``hall_of_fame.json`` stores it: the rules the real-data tier scored,
    best first (``score`` is their tier-2 score: the campaign's answer), then the proxy suite's
    best that tier 2 has not scored (``score`` is their proxy score); one rule per behaviour
    (a behaviour print: rules that differ by a constant factor are one), ``hall_of_fame`` of
    each kind at most."""
    entries, seen = [], set()
    for e in strategy.real.leaderboard()[: strategy.config.hall_of_fame]:
        seen.add(e.fingerprint)
        entries.append(json_safe({
            "rule": e.rule, "tier": "real", "score": e.score, "real_score": e.score,
            "proxy_score": e.proxy_score, "size": e.size, "generation": e.generation,
            "tasks": [asdict(t) for t in e.tasks], "reason": e.reason}))
    for ind in strategy.hall_of_fame:
        fp = fingerprint(ind.rule, scale_free=True)
        if fp in seen:
            continue
        seen.add(fp)
        d = ind.to_dict()
        entries.append({"rule": d["rule"], "tier": "proxy", "score": d["score"],
                        "real_score": None, "proxy_score": d["score"], "size": d["size"],
                        "generation": d["birth"], "tasks": d["tasks"], "reason": d["reason"]})
    return entries


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to checkpoint and stop after the current generation."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a notebook worker thread)
                pass
        if interrupt.take():  # a Ctrl-C during start-up that something swallowed
            self.signal = signal.SIGINT
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class _Stop:
    """Why the loop stopped before the run was done: a budget, or a signal (its number)."""

    reason: str
    signal: int | None = None


class _Session:
    """One open run: its directory, strategy, scorer and what has been saved."""

    def __init__(self, rd: RunDirectory, strategy: Strategy, cache: dict[str, Result],
                 counters: dict[str, int], log: list[dict]):
        self.rd, self.strategy, self.log = rd, strategy, list(log)
        self.cache, self.counters = cache, dict(counters)
        self.saved = strategy.generation if strategy.started else None
        self.scorer: CachedScorer | None = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A failed write stops the run with one line that names the file and the checkpoint."""
        try:
            yield
        except OSError as err:
            where = err.filename or "the run directory"
            last = ("generation " + str(self.saved)) if self.saved is not None else "the start"
            raise RunError(f"cannot write {where}: {err.strerror or err}; the last checkpoint "
                           f"({last}) is intact — free space or fix permissions, then "
                           f"`evolve resume {self.rd.path}`") from None

    def save(self) -> None:
        scorer = self.scorer
        assert scorer is not None
        with self.writing():
            self.rd.save_checkpoint(self.strategy, scorer.new_entries, scorer.lines,
                                    self.counters, self.log)
        scorer.new_entries.clear()
        self.saved = self.strategy.generation if self.strategy.started else None


def _reopen(rd: RunDirectory, generations: int | None, notify: Notify) -> _Session:
    """The session a resume continues: from the checkpoint, or from the config alone."""
    if not rd.has_checkpoint():
        config = rd.read_config()  # a UserError that says what to do when there is none
        if rd.has_results():
            raise UserError(f"{rd.path} holds results but no {CHECKPOINT} (a copy without "
                            "it, or a run of an older evolve-optim), so it cannot be resumed; "
                            "`evolve show` reads it, `evolve run` starts a new one")
        notify(f"{rd.path} stopped before its first checkpoint: starting it from {CONFIG}")
        strategy = Strategy.create(config)
        rd.create(strategy)
        session = _Session(rd, strategy, {}, {}, [])
    else:
        checkpoint = rd.load_checkpoint()
        for note in rd.restore(checkpoint):
            notify(f"{rd.path}: {note}")
        session = _Session(rd, checkpoint.strategy, checkpoint.cache, checkpoint.counters,
                           checkpoint.log)
    strategy = session.strategy
    if generations is not None and generations != strategy.config.generations:
        if generations < strategy.generation:
            raise UserError(f"--generations {generations} is below the {strategy.generation} "
                            f"generations {rd.path} has already run")
        strategy.config = replace(strategy.config, generations=generations)
        # the checkpoint first: it is what a later resume reads
        rd.save_checkpoint(strategy, [], len(session.cache), session.counters, session.log)
        rd.write_config(strategy.config)
        if not type(strategy).exact_extension:
            notify(f"the {strategy.name} strategy depends on the number of generations: the "
                   "extended run is not the same as one run with the larger number")
    return session


def run_campaign(run_dir: str | Path, *, config: CampaignConfig | None = None,
                 resume: bool = False, generations: int | None = None,
                 progress: Progress | None = None, executor: Executor | None = None,
                 stop_after: int | None = None, finish: bool = False, validate: bool = False,
                 notify: Notify | None = None, budget: Budget | None = None,
                 live: bool = False, stages: Stages | None = None) -> Strategy:
    """Start (``config``) or continue (``resume``) a campaign in ``run_dir`` until it is done.

    ``generations`` (with ``resume``) sets a new total: a finished run is extended exactly as
    if it had been started with that number (see ``Strategy.exact_extension``). ``finish``
    runs the held-out funnel and writes the report at the end (``validate``: the torch stage
    too); a finished run whose report exists is left as it is. ``stop_after`` stops after that
    many generations in this call (tests use it to simulate an interruption). ``notify``
    receives one-line notes (what a resume repaired; default: stderr).

    ``budget`` (:class:`evolve.budget.Budget`) stops the run at a generation boundary with a
    checkpoint, then (with ``finish``) runs the final selection, funnel and report as at the
    end; ``evolve resume`` continues it exactly. On SIGINT/SIGTERM (with ``finish``) the report
    and plots are written from what the run has, without new scoring. ``live`` writes the live
    view as the run goes (:mod:`evolve.live`: TensorBoard events, ``report.html``); ``stages``
    hears each stage of the final selection and funnel as it begins (progress displays).

    Raises UserError for bad input (an unusable --out, a held lock, a corrupt checkpoint, an
    unreachable Ray cluster), RunError when the run had to stop (lost workers, a failed write;
    a checkpoint is saved), SystemExit(130/143) after saving on SIGINT/SIGTERM.
    """
    rd = RunDirectory(run_dir)
    notify = notify or _stderr
    own_executor = executor is None
    if resume:
        rd.require_folder()
        with rd.lock("evolve resume"):
            session = _reopen(rd, generations, notify)
            strategy = session.strategy
            if strategy.done and (rd.report_is_final(strategy.generation) or not finish):
                notify(f"{rd.path} is complete ({strategy.generation} of "
                       f"{strategy.config.generations} generations); extend it with "
                       f"`evolve resume {rd.path} --generations N`")
                return strategy
            if budget is not None and budget.spent(strategy.evaluations) and not strategy.done:
                notify(f"{rd.path} has already scored {strategy.evaluations} candidates, the "
                       f"--max-evaluations {budget.max_evaluations} given: nothing to do; give "
                       "a larger number to continue it")
                return strategy
            if strategy.done:
                notify(f"{rd.path}: its generations are done; running the funnel and the report")
            executor = executor or _executor_for(strategy.config, budget)
            _drive(session, executor, own_executor, progress, stop_after, finish, validate,
                   _Extras(budget, live, stages))
        return strategy
    if config is None:
        raise ConfigError("a new campaign needs a config")
    config.validate()
    created = not rd.path.exists()
    rd.prepare_new()  # before any slow work: a bad --out fails at once
    try:
        # connect before writing anything: a failed start (Ray unreachable) leaves no run behind
        executor = executor or _executor_for(config, budget)
    except BaseException:
        if created and not any(rd.path.iterdir()):
            rd.path.rmdir()
        raise
    try:
        lock = rd.lock("evolve run")
        lock.acquire()
    except BaseException:
        if own_executor:
            executor.close()
        raise
    try:
        if rd.has_config():  # another `evolve run` got here first
            if own_executor:
                executor.close()
            raise UserError(f"{rd.path} already holds a campaign; continue it with "
                            f"`evolve resume {rd.path}` or choose another --out")
        session = _Session(rd, Strategy.create(config), {}, {}, [])
        with session.writing():
            rd.create(session.strategy)
        _drive(session, executor, own_executor, progress, stop_after, finish, validate,
               _Extras(budget, live, stages))
    finally:
        lock.release()
    return session.strategy


def _executor_for(config: CampaignConfig, budget: Budget | None = None) -> Executor:
    executor = make_executor(config.executor, proxy_suite(config.suite, config.schedule),
                             config.seed, config.workers,
                             config.ray_address)
    suites = [real_suite(config)]
    if budget is not None and budget.time_limit is not None and config.confirm:
        # the final selection's fresh seeds too: the first time, their tuned-Adam runs are
        # the largest cost of a run's end, and a time limit can only keep back time it has seen
        suites.append(real_suite(config, confirmation_seeds(config)))
    if RealTierStage(config).enabled:
        try:
            for suite in suites:
                warm_real_tier(suite)  # tuned Adam's runs, once, before the workers
        except BaseException as err:
            executor.close()
            from fitness.training.real_tasks import TaskError

            if isinstance(err, TaskError | KeyError):  # a user task, or a task name, is wrong
                raise UserError(str(err).strip("'\"")) from None
            raise
    return executor


@dataclass
class _Extras:
    """What a call adds to the loop without changing what it computes."""

    budget: Budget | None = None
    live: bool = False
    stages: Stages | None = None


def _drive(session: _Session, executor: Executor, own_executor: bool,
           progress: Progress | None, stop_after: int | None, finish: bool,
           validate: bool, extras: _Extras) -> None:
    """The loop, then the funnel and report when the run is done or a budget stopped it (a
    quick report when a signal did); closes its own executor."""
    view = None
    try:
        session.scorer = CachedScorer(executor, session.cache)
        session.scorer.hits = session.counters.get("cache_hits", 0)
        session.scorer.misses = session.counters.get("evaluated", 0)
        if extras.live:
            from evolve.live import LiveView

            view = LiveView(session.rd, session.strategy)
        clock = BudgetClock.for_run(extras.budget, session.strategy.config, executor.workers)
        stop = _loop(session, executor, progress, stop_after, clock, view)
        strategy, rd = session.strategy, session.rd
        if stop is not None and stop.signal is not None:
            if finish and strategy.started:
                _stop_report(session, stop, view)
            name = "SIGINT" if stop.signal == signal.SIGINT else "SIGTERM"
            print(f"{name}: checkpoint saved at generation {strategy.generation}; "
                  f"continue with `evolve resume {rd.path}`", file=sys.stderr)
            raise SystemExit(130 if stop.signal == signal.SIGINT else 143)
        if finish and (strategy.done or stop is not None):
            from evolve.finalize import finalize

            started = time.monotonic()
            with session.writing():
                done = finalize(rd, strategy, validate=validate, counters=session.counters,
                                executor=executor, stopped=stop.reason if stop else None,
                                stages=extras.stages)
                rd.write_status(end_status(strategy, stop.reason if stop else None,
                                           time.monotonic() - started, extras.budget))
                if view is not None:
                    view.finish(stop.reason if stop else None, done["plots"])
        elif view is not None:
            view.pause()
    finally:
        if view is not None:
            view.close()
        if own_executor:
            executor.close()


def _stop_report(session: _Session, stop: _Stop, view: Any) -> None:
    """After a signal: the report and plots of what the run has (nothing is scored again).

    A second Ctrl-C during it stops at once (the loop's handler is gone by now)."""
    from evolve.finalize import stop_report

    with session.writing():
        plots = stop_report(session.rd, session.strategy, session.counters, stop.reason)
        session.rd.write_status(end_status(session.strategy, stop.reason, 0.0, None))
        if view is not None:
            view.finish(stop.reason, plots)


def _loop(session: _Session, executor: Executor, progress: Progress | None,
          stop_after: int | None, clock: BudgetClock | None, view: Any) -> _Stop | None:
    """Generations until the run is done (None), ``stop_after`` of them (None), a budget or a
    signal (the :class:`_Stop`); the checkpoint is saved whenever it stops."""
    rd, strategy, scorer = session.rd, session.strategy, session.scorer
    assert scorer is not None
    cfg = strategy.config
    steps = 0
    with _StopFlag() as stop:
        while not strategy.done:
            started = time.perf_counter()
            hits0, misses0 = scorer.hits, scorer.misses
            lost0, retried0 = executor.stats.lost, executor.stats.retried
            seed = cfg.proxy_seed(strategy.generation + 1 if strategy.started else 0)
            try:
                rescored = _redraw(strategy, scorer, seed)
                rules = strategy.ask()
                results = scorer.score(rules, seed=seed, namespace=_namespace(cfg, seed),
                                       thresholds=strategy.thresholds())
                fresh_proxy = scorer.fresh
                promoted = tier2_candidates(strategy, rules, results)
                real_started = time.perf_counter()
                real = scorer.score([c[0] for c in promoted], suite=real_suite(cfg),
                                    namespace=REAL_SUITE_PREFIX) if promoted else []
                real_wall = (time.perf_counter() - real_started, len(scorer.fresh) if promoted
                             else 0)
            except LostEvaluations as err:
                _count(session, executor, lost0, retried0)
                session.save()  # the pending batch is in it: a resume asks it again
                where = (f"generation {strategy.generation + 1}" if strategy.started
                         else "the first generation")
                raise RunError(f"stopped in {where}: {err}; nothing of it was scored or "
                               f"cached, and the checkpoint is saved — check the machine's "
                               f"memory and load, then `evolve resume {rd.path}`") from None
            strategy.tell(rules, results)
            for candidate, result in zip(promoted, real):
                strategy.real.record(candidate, strategy.generation, result)
            elapsed = time.perf_counter() - started
            lost, retried = _count(session, executor, lost0, retried0)
            row = strategy.stats()
            row.update({
                "candidates": len(rules),
                "cache_hits": scorer.hits - hits0,
                "evaluated": scorer.misses - misses0,
                "hurdle_rejections": sum(1 for r in results
                                         if r.hurdle == "rejected" and not r.cached),
                "stopped_early": sum(1 for r in results if r.stopped and not r.cached),
                "lost_evaluations": lost,
                "retried_evaluations": retried,
                "proxy_seed": seed,
                "rescored": rescored,
                **_real_columns(strategy, len(promoted)),
                "seconds": round(elapsed, 4),
                "candidates_per_s": round(len(rules) / elapsed, 2) if elapsed > 0 else None,
            })
            row = json_safe(row)
            session.log.append(row)
            hall = hall_entries(strategy)
            with session.writing():
                rd.append_log(row)
                rd.write_hall_of_fame(hall)
            session.counters.update(cache_hits=scorer.hits, evaluated=scorer.misses)
            steps += 1
            halt = None
            if stop.signal is not None:
                name = "SIGINT" if stop.signal == signal.SIGINT else "SIGTERM"
                halt = _Stop(f"{name} at generation {strategy.generation}", stop.signal)
            elif clock is not None and not strategy.done:
                clock.record(time.perf_counter() - started, fresh_proxy, *real_wall)
                reason = clock.stop_reason(strategy.evaluations, len(strategy.real.entries),
                                           len(strategy.hall_of_fame) + len(strategy.champions))
                halt = _Stop(reason) if reason else None
            last = strategy.done or halt is not None or (stop_after and steps >= stop_after)
            if last or strategy.generation % cfg.checkpoint_every == 0:
                session.save()
            if progress:
                progress(row, cfg.generations)
            if view is not None:
                with session.writing():
                    view.update(row, hall)
            if halt is not None:
                return halt
            if stop_after and steps >= stop_after:
                break
    return None


def tier2_candidates(strategy: Strategy, rules: Sequence[str],
                     results: Sequence[Result]) -> list[tuple[str, str, float, int]]:
    """The batch's candidates for tier 2 (:meth:`evolve.tiers.RealTierStage.promote`), among
    full proxy scores only: a suite stopped early has an upper bound, not a score."""
    full = [(r, res) for r, res in zip(rules, results) if not res.stopped]
    return strategy.real.promote([r for r, _ in full], [res for _, res in full],
                                 [fingerprint(r, scale_free=True) for r, _ in full],
                                 [parse(r).size() for r, _ in full], bred=strategy.real_bred)


def _namespace(config: CampaignConfig, seed: int) -> str:
    """Cache keys of redrawn proxy instances carry their seed (the first ones need none)."""
    return "" if seed == config.seed else f"proxy{seed}:"


def _redraw(strategy: Strategy, scorer: CachedScorer, seed: int) -> int:
    """New proxy instances from this generation on: the survivors are scored on them before
    the strategy proposes again (what they scored on the old ones no longer counts)."""
    if strategy.instance_seed == seed:
        return 0
    cfg = strategy.config
    return strategy.rescore(lambda rules, thresholds=None: scorer.score(
        rules, seed=seed, namespace=_namespace(cfg, seed), thresholds=thresholds), seed)


def _real_columns(strategy: Strategy, evaluated: int) -> dict[str, Any]:
    best = strategy.real.best()
    return {"real_evaluated": evaluated, "real_scored": len(strategy.real.entries),
            "real_best": best.score if best else None,
            "real_best_rule": best.rule if best else None}


def _count(session: _Session, executor: Executor, lost0: int, retried0: int) -> tuple[int, int]:
    lost = executor.stats.lost - lost0
    retried = executor.stats.retried - retried0
    session.counters["lost"] = session.counters.get("lost", 0) + lost
    session.counters["retried"] = session.counters.get("retried", 0) + retried
    return lost, retried


__all__ = ["CachedScorer", "hall_entries", "run_campaign", "tier2_candidates"]
