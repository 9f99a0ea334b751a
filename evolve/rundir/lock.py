"""The exclusive lock on a run directory: one process at a time runs, resumes or finishes it.

``RUN/.lock`` holds the holder's pid, host, command and start time (JSON), and the holder keeps an
``flock`` on it. The kernel drops an ``flock`` when its process dies, however it dies (kill -9
included), so a lock file left behind by a dead holder is stale by construction: the next
process takes it over and says so. A second live process gets a one-line :class:`UserError`
naming the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from evolve.errors import UserError

LOCK = ".lock"


def _describe(holder: dict) -> str:
    what = f"pid {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        what += f" on {holder['host']}"
    if holder.get("command"):
        what += f" ({holder['command']}"
        what += f", since {holder['since']})" if holder.get("since") else ")"
    return what


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory's lock for the block."""

    def __init__(self, run_dir: str | os.PathLike, purpose: str = "a campaign"):
        self.run_dir = Path(run_dir)
        self.purpose = purpose
        self.path = self.run_dir / LOCK
        self.stale: dict | None = None  # what a dead holder had left, when one was taken over
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise UserError(f"cannot lock {self.run_dir}: {err.strerror}; check that the "
                                "folder exists and is writable") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(f"{self.run_dir} is in use by {_describe(holder)}; wait for it "
                                "to finish or stop it, then try again") from None
            # the previous holder may have unlinked the file between our open and our flock:
            # then we locked a file nobody else will ever see, so try again on the new one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.stale = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": self.purpose,
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiting opener retries (above)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK", "RunLock"]
