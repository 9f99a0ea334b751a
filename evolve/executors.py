"""Executors: the one ``map`` seam (as DEAP's toolbox.map) over serial, process-pool and Ray backends.

The contract every backend keeps is the docstring of :class:`Executor`. Workers run
:func:`evolve.worker.evaluate_chunk` and build their evaluator once (task setup, baselines,
compiled kernels); Numba's cache is warmed in the driver before any worker starts, so workers
load compiled code from disk instead of compiling it again.

Process workers are spawned through :class:`evolve.spawn.IsolatedSpawnContext`: they never
re-import the driver's ``__main__`` and ignore Ctrl-C from their first instruction.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from evolve.errors import UserError
from evolve.spawn import IsolatedSpawnContext
from evolve.worker import Prints, evaluate_chunk, init_worker, prints_chunk, warm_numba
from fitness.evaluate import Thresholds
from fitness.score import Result

ChunkFn = Callable[[str, int, list[str], Thresholds | None], list[Result]]
Call = tuple[Callable[..., list[Any]], tuple[Any, ...]]  # a worker function and its arguments
ATTEMPTS = 3  # tries per chunk in one map() before its evaluations count as lost
_KILLED = "a worker process died: killed, or out of memory"


@dataclass
class ExecutorStats:
    """What went wrong with workers: ``lost`` evaluations died with their worker, ``retried``
    were submitted again, ``failures`` counts broken pools or failed tasks."""

    lost: int = 0
    retried: int = 0
    failures: int = 0


class LostEvaluations(RuntimeError):
    """Workers kept dying: some rules have no result after every attempt (never a score)."""

    def __init__(self, missing: int, attempts: int, cause: str):
        self.missing, self.attempts, self.cause = missing, attempts, cause
        super().__init__(f"{missing} evaluation(s) lost: their workers failed {attempts} times "
                         f"in a row ({cause})")


@runtime_checkable
class Executor(Protocol):
    """Scores rule texts on one suite and seed, somewhere.

    * ``map(rules, suite=None, seed=None, thresholds=None)`` returns one
      :class:`fitness.score.Result` per rule, in the order given, on the executor's suite and
      seed unless others are named (redrawn proxy instances; ``real:...`` suites are the
      real-data tier, see :mod:`evolve.tiers`), under the driver's hurdle and early-stop
      :class:`fitness.evaluate.Thresholds`. Each is a pure function of (rule, suite, seed,
      thresholds), so every executor returns the same results; the driver's equivalence
      cache and the strategy see no difference.
    * ``prints(rules)`` returns both equivalence prints of each rule
      (:func:`evolve.worker.prints_chunk`), computed where the rules are scored, with the same
      retries; the driver's cache asks for them before it decides what to score.
    * A worker that dies (killed, out of memory, a lost node) is never a score: its rules are
      submitted again on fresh workers, up to :data:`ATTEMPTS` tries in all. ``stats.lost``
      counts evaluations that died with a worker, ``stats.retried`` those submitted again.
      When a rule still has no result, ``map`` raises :class:`LostEvaluations` and returns
      nothing: no made-up result is ever cached or told to a strategy.
    * ``close()`` releases the workers, returns within about 10 s even when one hangs, and is
      safe to call twice; ``map`` after ``close`` starts fresh workers.
    """

    name: str
    workers: int
    stats: ExecutorStats

    def map(self, rules: Sequence[str], suite: str | None = None, seed: int | None = None,
            thresholds: Thresholds | None = None) -> list[Result]: ...

    def prints(self, rules: Sequence[str]) -> list[Prints]: ...

    def close(self) -> None: ...


def _chunks(items: list[str], n: int) -> list[list[str]]:
    n = max(1, min(n, len(items)))
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class SerialExecutor:
    """Scores in the driver's own process (nothing to lose)."""

    name = "serial"

    def __init__(self, suite: str, seed: int, workers: int = 1, chunk_fn: ChunkFn | None = None):
        self.suite, self.seed = suite, seed
        self.workers = 1
        self.stats = ExecutorStats()
        self._chunk_fn = chunk_fn or evaluate_chunk

    def map(self, rules: Sequence[str], suite: str | None = None, seed: int | None = None,
            thresholds: Thresholds | None = None) -> list[Result]:
        if not rules:
            return []
        return self._chunk_fn(suite or self.suite, self.seed if seed is None else seed,
                              list(rules), thresholds)

    def prints(self, rules: Sequence[str]) -> list[Prints]:
        return prints_chunk(list(rules))

    def close(self) -> None:
        pass


class _RetryingExecutor:
    """Chunks, attempts and counts shared by the process and Ray executors (see Executor).

    A subclass runs one round with :meth:`_round`: it runs ``calls[i]`` (a worker function and
    its arguments, one per chunk) for each ``i`` of ``todo``, fills ``results[i]`` for those
    that came back and returns the cause of any that did not.
    """

    name = ""
    workers = 1
    attempts = ATTEMPTS
    stats: ExecutorStats

    _chunk_fn: ChunkFn
    suite: str
    seed: int

    def _round(self, calls: list[Call], todo: list[int], results: list[list[Any] | None]) -> str:
        raise NotImplementedError

    def _before_retry(self, attempt: int) -> None:
        """Called before each attempt after the first."""

    def map(self, rules: Sequence[str], suite: str | None = None, seed: int | None = None,
            thresholds: Thresholds | None = None) -> list[Result]:
        suite, seed = suite or self.suite, self.seed if seed is None else seed
        return self._retrying(rules, lambda chunk: (self._chunk_fn,
                                                    (suite, seed, chunk, thresholds)))

    def prints(self, rules: Sequence[str]) -> list[Prints]:
        # one chunk per worker: a probe run is short, the round trips are what cost here
        return self._retrying(rules, lambda chunk: (prints_chunk, (chunk,)), per_worker=1)

    def _retrying(self, rules: Sequence[str], call: Callable[[list[str]], Call],
                  per_worker: int = 2) -> list[Any]:
        """One item per rule from ``call(chunk)`` run on every chunk, in order, with retries."""
        if not rules:
            return []
        chunks = _chunks(list(rules), self.workers * per_worker)
        calls = [call(chunk) for chunk in chunks]
        results: list[list[Any] | None] = [None] * len(chunks)
        todo = list(range(len(chunks)))
        cause = ""
        for attempt in range(self.attempts):
            if attempt:
                self.stats.retried += sum(len(chunks[i]) for i in todo)
                self._before_retry(attempt)
            cause = self._round(calls, todo, results) or cause
            todo = [i for i in todo if results[i] is None]
            if not todo:
                return [r for chunk in results for r in chunk]  # type: ignore[union-attr]
            self.stats.failures += 1
            self.stats.lost += sum(len(chunks[i]) for i in todo)
        raise LostEvaluations(sum(len(chunks[i]) for i in todo), self.attempts, cause)


class ProcessExecutor(_RetryingExecutor):
    """A pool of spawned worker processes, two chunks per worker per map."""

    name = "process"

    def __init__(self, suite: str, seed: int, workers: int = 0, chunk_fn: ChunkFn | None = None,
                 attempts: int = ATTEMPTS):
        self.suite, self.seed = suite, seed
        self.workers = workers or default_workers()
        self.attempts = attempts
        self.stats = ExecutorStats()
        self._chunk_fn = chunk_fn or evaluate_chunk
        warm_numba()
        self._pool: cf.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=IsolatedSpawnContext(),
                initializer=init_worker, initargs=(self.suite, self.seed))
        return self._pool

    def _kill_pool(self) -> None:
        """Throw away a broken pool, its surviving workers included.

        A worker killed while it held the call queue's lock leaves its siblings blocked on that
        lock for ever, and a plain shutdown would wait for them; so they are killed first.
        """
        if self._pool is not None:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def _before_retry(self, attempt: int) -> None:
        time.sleep(0.2 * attempt)  # let whatever killed the workers pass

    def _round(self, calls: list[Call], todo: list[int], results: list[list[Any] | None]) -> str:
        try:
            pool = self._ensure_pool()
            futures = {pool.submit(calls[i][0], *calls[i][1]): i for i in todo}
        except cf.process.BrokenProcessPool:
            self._kill_pool()
            return _KILLED
        cause = ""
        for fut, i in futures.items():
            try:
                results[i] = fut.result()
            except cf.process.BrokenProcessPool:
                cause = _KILLED
            except Exception as err:  # noqa: BLE001 - a broken task is lost as well
                cause = f"{type(err).__name__}: {_one_line(err)}"
        if cause:
            self._kill_pool()
        return cause

    def close(self) -> None:
        if self._pool is None:
            return
        procs = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        # idle workers exit at once; one blocked on a lock a killed sibling held never would
        deadline = time.monotonic() + 10.0
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
        self._pool = None


class RayExecutor(_RetryingExecutor):
    """Ray tasks, many candidates per task; a local instance unless ``address`` is given."""

    name = "ray"

    def __init__(self, suite: str, seed: int, workers: int = 0, address: str | None = None,
                 chunk_fn: ChunkFn | None = None, attempts: int = ATTEMPTS):
        try:
            import ray
        except ImportError:  # pragma: no cover - depends on the install
            raise UserError("the ray executor needs Ray: pip install 'evolve-optim[ray]'") from None
        self.ray = ray
        self.suite, self.seed = suite, seed
        self.workers = workers or default_workers()
        self.attempts = attempts
        self.stats = ExecutorStats()
        if address:
            _check_reachable(address)
        warm_numba()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                          configure_logging=False)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=self.workers, **kwargs)
            except (Exception, SystemExit) as err:  # Ray exits the process on some failures
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise UserError(f"cannot connect to {where} ({_one_line(err)}); check --address, "
                                "or use --executor process") from None
        self._chunk_fn = chunk_fn or evaluate_chunk
        # retries are ours (counted, and never a made-up score), not Ray's
        self._remotes = {fn: ray.remote(max_retries=0)(fn)
                         for fn in (self._chunk_fn, prints_chunk)}

    def _round(self, calls: list[Call], todo: list[int], results: list[list[Any] | None]) -> str:
        refs = {i: self._remotes[calls[i][0]].remote(*calls[i][1]) for i in todo}
        cause = ""
        for i, ref in refs.items():
            try:
                results[i] = self.ray.get(ref)
            except self.ray.exceptions.RayError as err:
                cause = type(err).__name__
        return cause

    def close(self) -> None:
        pass  # the Ray instance is shut down with the process (or kept when it was external)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a host:port address does not answer."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return  # "auto" and other forms are Ray's to interpret
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(f"cannot connect to the Ray cluster at {address} "
                        f"({err.strerror or err}); check --address, or use --executor process"
                        ) from None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def make_executor(kind: str, suite: str, seed: int, workers: int = 0,
                  address: str | None = None) -> Executor:
    """The executor a config names; UserError when it cannot start (e.g. Ray unreachable)."""
    if kind == "serial":
        return SerialExecutor(suite, seed)
    if kind == "process":
        return ProcessExecutor(suite, seed, workers)
    if kind == "ray":
        return RayExecutor(suite, seed, workers, address)
    raise ValueError(f"unknown executor {kind!r}; use serial, process or ray")


__all__ = ["ATTEMPTS", "Executor", "ExecutorStats", "LostEvaluations", "ProcessExecutor",
           "RayExecutor", "SerialExecutor", "default_workers", "make_executor"]
