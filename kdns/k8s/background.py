"""Keeping a source's big work from stalling the queries served on the same loop.

A source (manifest files, the API watch) sometimes has a lot to do at once: parse a manifest of
10,000 endpoints, render a Service of 10,000 endpoints. The rendering goes in slices
(kdns.authority.slices.Pacer); two costs are not in any slice and are kept small here:

- ``quiet_gc``: no cyclic collection while the work runs, and what it kept moved out of the
  collector's generations afterwards (CPython's ``gc.freeze`` recipe for pre-loaded state).
  A full collection over a 10,000-endpoint cluster walks the whole heap, 40-70 ms (hundreds on
  a big cluster) while queries wait; the objects a source keeps live until they are replaced
  and hold no reference cycles, and what it drops is freed by reference counting.
- ``parsing``: for a parse in a thread beside the loop. The loop's thread asks for the
  interpreter back every time it returns from a system call (epoll; recvmmsg and sendmmsg,
  ctypes calls that release it), and a thread running Python keeps it up to the switch
  interval each time, 5 ms by default: a query waited 10-15 ms during a parse. The interval is
  0.5 ms while a parse runs, which costs the parse a few more switches, for its first seconds
  only (a 10,000-endpoint manifest parses in about one): beside a loop that never idles, a
  short interval starves the parse (the loop takes the interpreter back after every system
  call), so a longer parse gets the default back.

Both count their users, so overlapping work (a reload's parse and a watch event's render) ends
them only when the last user is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Iterator

PARSE_SWITCH_INTERVAL = 0.0005
# A parse still running after this long is being starved by a loop that never idles (with a
# short switch interval a busy loop takes the interpreter back at once, every time): the
# default interval is restored, so the parse gets the share it had before (a 400-Service
# manifest beside a spinning loop: 15 s at 5 ms, over 60 s at 0.5 ms).
PARSE_SHORT_FOR = 3.0


class _Counted:
    """How many users are inside, and what to restore after the last one."""

    def __init__(self) -> None:
        self.users = 0
        self.collecting = True
        self.interval = 0.005
        self.relax: asyncio.TimerHandle | None = None


_GC = _Counted()
_SWITCH = _Counted()


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    if not _GC.users:
        _GC.collecting = gc.isenabled()
        gc.disable()
    _GC.users += 1
    try:
        yield
    finally:
        _GC.users -= 1
        if not _GC.users:
            gc.freeze()
            if _GC.collecting:
                gc.enable()


@contextlib.contextmanager
def parsing() -> Iterator[None]:
    """Around a parse in a thread (``asyncio.to_thread``): a short switch interval, no cyclic
    collection (``quiet_gc``)."""
    if not _SWITCH.users:
        _SWITCH.interval = sys.getswitchinterval()
        sys.setswitchinterval(min(PARSE_SWITCH_INTERVAL, _SWITCH.interval))
        with contextlib.suppress(RuntimeError):  # no running loop: nothing spins beside it
            _SWITCH.relax = asyncio.get_running_loop().call_later(PARSE_SHORT_FOR, _relax)
    _SWITCH.users += 1
    try:
        with quiet_gc():
            yield
    finally:
        _SWITCH.users -= 1
        if not _SWITCH.users:
            if _SWITCH.relax is not None:
                _SWITCH.relax.cancel()
                _SWITCH.relax = None
            sys.setswitchinterval(_SWITCH.interval)


def _relax() -> None:
    """A parse ran past PARSE_SHORT_FOR: back to the interval it had before it began."""
    _SWITCH.relax = None
    sys.setswitchinterval(_SWITCH.interval)
