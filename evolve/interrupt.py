"""A Ctrl-C that cannot be lost: the command line's SIGINT is remembered as well as raised.

Python raises KeyboardInterrupt wherever the main thread is when the signal lands; inside a
finaliser (``__del__``, a weakref callback) it is printed as "Exception ignored" and the program
goes on, and a library may catch it. ``evolve`` installs :func:`install` first thing, so an
interrupt during start-up is also a flag that the campaign loop reads when it takes over SIGINT
(:func:`take`): the run then stops at its first chance, with the usual one line.
"""

from __future__ import annotations

import signal

_received = False


def _handler(signum, frame) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    """Remember SIGINTs from now on (only where SIGINT has Python's default handler: a process
    started with SIGINT ignored keeps ignoring it, as a background job should)."""
    global _received
    _received = False
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
    except ValueError:  # not the main thread
        pass


def received() -> bool:
    """Whether a SIGINT arrived since :func:`install` (and was not taken)."""
    return _received


def take() -> bool:
    """Whether a SIGINT arrived, and forget it: the one campaign loop it stops has taken it (a
    later run in the same process, such as a test's, starts clean)."""
    global _received
    seen, _received = _received, False
    return seen


__all__ = ["install", "received", "take"]
