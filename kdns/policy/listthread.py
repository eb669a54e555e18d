"""The block lists' own thread: downloads and the copies in cache_dir are read and written
there, at idle priority, and written a slice at a time (kdns.policy.listfetch uses it)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Downloads, reads and writes of list copies run in one thread of their own at SCHED_IDLE
# (Linux sets the policy per thread), so on a shared CPU the serving loop goes first. Their
# system calls copy tens of MiB (a 36 MB list's download, its copy to cache_dir): written in
# one call, the copy kept the loop waiting 10-33 ms (benchmarks/refresh_lag.py, one CPU), at
# SCHED_IDLE too, as one system call is one long step; paced (``paced_write``), 6.5 ms worst.
_background: concurrent.futures.ThreadPoolExecutor | None = None


def _lower_this_thread() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


PACE_BYTES = 1 << 18  # a copy on disk is written this much at a time...
PACE_PAUSE = 0.001  # ...with this pause between writes


def paced_write(out: Any, data: bytes) -> None:
    """Write ``data`` (a list's copy, tens of MiB) a quarter MiB at a time with a millisecond
    between writes: in one write the kernel copied 36 MB at once and the serving loop, on the
    same CPU, woke up to 10-30 ms late while it did (benchmarks/refresh_lag.py); paced, the
    copy takes about 0.2 s and the loop's waits stay at the machine's own."""
    view = memoryview(data)
    for offset in range(0, len(view), PACE_BYTES):
        out.write(view[offset : offset + PACE_BYTES])
        if offset + PACE_BYTES < len(view):
            time.sleep(PACE_PAUSE)


SWITCH_INTERVAL = 0.0005  # the interpreter's thread switch interval while a job runs
_running = 0
_restore: list[float] = []


async def in_background(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in the list thread (created on first use, idle priority). While it
    runs, the interpreter hands the GIL over every 0.5 ms instead of 5: urllib's Python code
    between reads held it up to the full 5 ms, and the loop woke 6-11 ms late at the start of
    a download (benchmarks/refresh_lag.py)."""
    global _background, _running
    if _background is None:
        _background = concurrent.futures.ThreadPoolExecutor(1, "kdns-lists", _lower_this_thread)  # fmt: skip
    if _running == 0:
        _restore.append(sys.getswitchinterval())
        sys.setswitchinterval(min(SWITCH_INTERVAL, _restore[-1]))
    _running += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_background, func, *args)
    finally:
        _running -= 1
        if _running == 0:
            sys.setswitchinterval(_restore.pop())
