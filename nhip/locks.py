"""Whole-process locks on files (`flock`): one writer of the event store, one feature build at a time.

An `flock` belongs to an open file, so a process that dies, however it dies, releases its locks with it:
nothing is left to clean up, unlike a lock file whose existence is the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path, wait: float, busy: Callable[[], BaseException],
                   waiting: Callable[[], None] | None = None, tell_after: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if need be) for the block.

    Waits up to `wait` seconds for another holder, then raises `busy()`; calls `waiting()` once, when
    it has waited `tell_after` seconds, so a command can say what it is waiting for.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        started, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited > wait:
                    raise busy() from None
                if waiting is not None and not told and waited >= tell_after:
                    waiting()
                    told = True
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock
