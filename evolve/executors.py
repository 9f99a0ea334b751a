"""Executors: one ``map`` seam (as DEAP's toolbox.map) over serial, process-pool and Ray backends.

Each executor scores a list of rule texts on a suite and returns one result dict per rule, in
order. Workers build their evaluator once (task setup, baselines, compiled kernels) and reuse it
for every chunk. Numba's cache is warmed in the parent before any worker starts, so workers load
compiled code from disk instead of compiling it again.

A lost worker (killed, out of memory) never crashes a campaign: its chunk is retried once on a
fresh pool, then scored as failed with the reason "worker lost".
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import time
from typing import Any

from evolve.evaluation import failed_result, make_evaluator, warm_numba

_WORKER_EVALUATOR: Any = None
_WORKER_KEY: tuple | None = None


def _worker_evaluator(suite: str, seed: int):
    global _WORKER_EVALUATOR, _WORKER_KEY
    if _WORKER_KEY != (suite, seed):
        _WORKER_EVALUATOR = make_evaluator(suite, seed)
        _WORKER_KEY = (suite, seed)
    return _WORKER_EVALUATOR


def _init_process_worker(suite: str, seed: int) -> None:
    # Ctrl-C goes to the whole process group; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_evaluator(suite, seed)


def _evaluate_chunk(suite: str, seed: int, rules: list[str]) -> list[dict]:
    return _worker_evaluator(suite, seed).evaluate(rules)


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
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class SerialExecutor:
    name = "serial"

    def __init__(self, suite: str, seed: int, workers: int = 1):
        self.suite, self.seed = suite, seed
        self.workers = 1

    def map(self, rules: list[str]) -> list[dict]:
        if not rules:
            return []
        return _evaluate_chunk(self.suite, self.seed, list(rules))

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A spawn-based process pool (fork is unsafe with threads and Numba's runtime)."""

    name = "process"

    def __init__(self, suite: str, seed: int, workers: int = 0, chunk_fn=None):
        self.suite, self.seed = suite, seed
        self.workers = workers or default_workers()
        self.lost_workers = 0
        self._chunk_fn = chunk_fn or _evaluate_chunk
        warm_numba()
        self._pool: cf.ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_process_worker,
                initargs=(self.suite, self.seed),
            )
        return self._pool

    def _reset_pool(self) -> None:
        """Throw away a broken pool, its surviving workers included.

        A worker killed while it held the call queue's lock leaves its siblings blocked on that
        lock for ever, and a plain shutdown would wait for them; so they are killed first.
        """
        if self._pool is not None:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                if proc.is_alive():
                    proc.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def map(self, rules: list[str]) -> list[dict]:
        if not rules:
            return []
        chunks = _chunks(list(rules), self.workers * 2)
        results: list[list[dict] | None] = [None] * len(chunks)
        todo = list(range(len(chunks)))
        for _attempt in range(2):
            pool = self._ensure_pool()
            futures = {}
            try:
                futures = {pool.submit(self._chunk_fn, self.suite, self.seed, chunks[i]): i
                           for i in todo}
            except cf.process.BrokenProcessPool:
                self._reset_pool()
                continue
            broken = False
            for fut, i in futures.items():
                try:
                    results[i] = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
            todo = [i for i in todo if results[i] is None]
            if broken:
                self.lost_workers += 1
                self._reset_pool()
            if not todo:
                break
        for i in todo:  # lost twice: scored as failed, with the reason
            results[i] = [failed_result(rule, "worker lost (process killed twice)") for rule in chunks[i]]
        return [r for chunk in results for r in chunk]  # type: ignore[union-attr]

    def close(self) -> None:
        if self._pool is None:
            return
        procs = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        # idle workers exit at once; one blocked on a lock a killed sibling held never would
        deadline = time.monotonic() + 10.0
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
        self._pool = None


class RayExecutor:
    """Ray tasks, many candidates per task; local instance unless ``address`` is given."""

    name = "ray"

    def __init__(self, suite: str, seed: int, workers: int = 0, address: str | None = None,
                 chunk_fn=None):
        try:
            import ray
        except ImportError as err:  # pragma: no cover - depends on the install
            raise RuntimeError("the ray executor needs `pip install evolve-optim[ray]`") from err
        self.ray = ray
        self.suite, self.seed = suite, seed
        self.workers = workers or default_workers()
        self.lost_workers = 0
        warm_numba()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                          configure_logging=False)
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=self.workers, **kwargs)
        # a Ray task whose worker dies is retried once by Ray itself, then scored as failed
        self._remote = ray.remote(max_retries=1)(chunk_fn or _evaluate_chunk)

    def map(self, rules: list[str]) -> list[dict]:
        if not rules:
            return []
        chunks = _chunks(list(rules), self.workers * 2)
        refs = [self._remote.remote(self.suite, self.seed, c) for c in chunks]
        out: list[dict] = []
        for chunk, ref in zip(chunks, refs):
            try:
                out.extend(self.ray.get(ref))
            except (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.RayTaskError,
                    self.ray.exceptions.TaskCancelledError):
                self.lost_workers += 1
                out.extend(failed_result(r, "worker lost (ray task failed twice)") for r in chunk)
        return out

    def close(self) -> None:
        pass  # the Ray instance is shut down with the process (or kept when it was external)


def make_executor(kind: str, suite: str, seed: int, workers: int = 0, address: str | None = None):
    if kind == "serial":
        return SerialExecutor(suite, seed)
    if kind == "process":
        return ProcessExecutor(suite, seed, workers)
    if kind == "ray":
        return RayExecutor(suite, seed, workers, address)
    raise ValueError(f"unknown executor {kind!r}; use serial, process or ray")


__all__ = ["ProcessExecutor", "RayExecutor", "SerialExecutor", "default_workers", "make_executor"]
