"""How worker processes start: spawned, without the driver's ``__main__``, deaf to Ctrl-C.

Spawn, not fork: fork is unsafe with threads and Numba's runtime. A spawned worker would
re-import the driver's ``__main__``; it needs nothing from it, and a user's script without
``if __name__ == "__main__":`` would run again inside every worker (the ``evolve`` entry script
would load the CLI into each). A worker also must not die of the Ctrl-C that a terminal sends to
the whole process group: the driver decides when to stop.

This module imports only the standard library, because a worker imports it too (its process
class is pickled to the worker).
"""

from __future__ import annotations

import multiprocessing.context
import signal
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager

_SPAWN_LOCK = threading.Lock()


@contextmanager
def isolated_start() -> Iterator[None]:
    """While a worker is started: no ``__main__`` for it to re-import, SIGINT blocked.

    multiprocessing's spawn reads ``sys.modules['__main__']``'s ``__spec__``/``__file__`` when
    a process starts; a bare module has neither. A thread's blocked-signal mask is inherited
    across fork and exec and Python does not unblock it, so the worker cannot receive SIGINT
    before its initializer ignores it (:func:`evolve.worker.init_worker`); in the driver a
    Ctrl-C that arrives meanwhile stays pending and is delivered at the end of the block, or
    to another thread, instead of being lost (as it would be with SIG_IGN here).
    """
    with _SPAWN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            if main is not None:
                sys.modules["__main__"] = main


class IsolatedSpawnProcess(multiprocessing.context.SpawnProcess):
    """A spawned process started inside :func:`isolated_start`."""

    @staticmethod
    def _Popen(process_obj):
        with isolated_start():
            return multiprocessing.context.SpawnProcess._Popen(process_obj)


class IsolatedSpawnContext(multiprocessing.context.SpawnContext):
    """The spawn context whose processes are :class:`IsolatedSpawnProcess` (for process pools)."""

    Process = IsolatedSpawnProcess


__all__ = ["IsolatedSpawnContext", "IsolatedSpawnProcess", "isolated_start"]
