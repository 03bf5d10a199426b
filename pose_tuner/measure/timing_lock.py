"""One latency measurement at a time on this machine, across every ``tuner`` process.

Two searches, a search and a nightly worker, or a benchmark beside either would otherwise
time their candidates at the same moment and both store figures of a shared CPU. Every
timing loop of pose-tuner (:mod:`pose_tuner.measure.runner`, and through it the baselines' sessions
and the benchmarks) holds :func:`timing_lock` while it times; MetaSchedule's runner holds it
for each batch of its measurements (:mod:`pose_tuner.compile.tuning`).

The lock is an advisory ``flock`` on a file in ``$PTUNER_LOCK_DIR`` (default
``~/.cache/pose-tuner/locks``): the kernel releases it when its process dies, even by
``kill -9``, so a crash never leaves it held. It is re-entrant within a process (nested
timing loops take it once). A process that has to wait says so once, through the
``waiting`` callback, with the pid that holds it.

Remote devices need no host lock: an RPC session owns its device (the tracker hands each
device to one session at a time).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Callable, Iterator

#: environment variable naming the folder of the lock files
LOCK_DIR_ENV = "PTUNER_LOCK_DIR"

_local = threading.local()
_process_lock = threading.Lock()  # threads of one process take turns as well


def lock_dir() -> str:
    path = os.environ.get(LOCK_DIR_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "pose-tuner", "locks")
    os.makedirs(path, exist_ok=True)
    return path


def lock_path(device: str = "host") -> str:
    return os.path.join(lock_dir(), f"timing-{device}.lock")


def holder(device: str = "host") -> int | None:
    """The pid written by the process that holds (or last held) the lock, if any."""
    try:
        with open(lock_path(device), encoding="ascii") as f:
            text = f.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _say(message: str) -> None:
    print(f"tuner: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def timing_lock(device: str = "host",
                waiting: Callable[[str], None] | None = _say) -> Iterator[float]:
    """Hold the machine's timing lock for ``device``; yields the seconds spent waiting.

    ``waiting`` (default: a line on stderr) is told once when another process holds it.
    """
    import fcntl

    depth = getattr(_local, "depth", 0)
    if depth:
        _local.depth = depth + 1
        try:
            yield 0.0
        finally:
            _local.depth -= 1
        return
    t0 = time.monotonic()
    with _process_lock:
        fd = os.open(lock_path(device), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    other = holder(device)
                    waiting(f"waiting for another measurement on this machine"
                            f"{f' (pid {other})' if other else ''} to finish")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
            _local.depth = 1
            try:
                yield time.monotonic() - t0
            finally:
                _local.depth = 0
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
