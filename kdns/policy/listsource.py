"""A list source (a file or a URL, read in one format) and its parse, off the event loop: in a
child process forked for it, else in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pickle
import re
import signal
import struct
import sys
from array import array
from dataclasses import dataclass, field
from typing import Any

from kdns.policy.blocklist import BlockList


@dataclass
class Source:
    """One list source (a file or a URL, read in one format), shared by the lists naming it."""

    file: str | None
    url: str | None
    format: str
    refresh: float = 0.0
    loaded: BlockList | None = None
    stamp: tuple[int, int, int] | None = None  # the file (a URL list: its copy) last loaded
    due: float = 0.0  # URL lists: monotonic time of the next download
    last_success: float = 0.0  # wall-clock time of the last good load (0: never)
    size: int = 0  # bytes of the last good download (the shrink guard's reference)
    results: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.file or self.url or "", self.format)

    @property
    def where(self) -> str:
        return self.file or self.url or ""

    def cache_path(self, cache_dir: str) -> str:
        digest = hashlib.sha256((self.url or "").encode()).hexdigest()[:16]
        tail = re.sub(r"[^A-Za-z0-9._-]", "_", (self.url or "").rsplit("/", 1)[-1])[:40]
        return os.path.join(cache_dir, f"{digest}-{tail or 'list'}.txt")

    def count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


def parse_source(source: Source, body: bytes | None = None) -> BlockList:
    """Parse a source's file, or ``body`` (a download or its cached copy)."""
    if body is None:
        assert source.file is not None
        return BlockList.load(source.where, source.file, source.format, "nxdomain")
    return BlockList.parse(source.where, source.where, source.format, "nxdomain", body.splitlines())  # fmt: skip


PARSE_SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
_parsing = 0
FORK = hasattr(os, "fork")  # tests turn it off to exercise the thread fallback
# What crosses the pipe: a BlockList's slots but its answers (rebuilt from ``answer``).
_SLOTS = tuple(slot for slot in BlockList.__slots__ if slot != "_answers")
if sys.version_info >= (3, 12):  # the child only parses: it takes no lock but the GIL
    import warnings

    warnings.filterwarnings("ignore", r".*multi-threaded, use of fork\(\)", DeprecationWarning)


_HEAD = struct.Struct("!QQQ")  # lengths: the pickled rest, the hashes, the prefix index
_BIG = ("hashes", "index")  # arrays sent as their raw bytes, rebuilt in slices on the loop
_REST = tuple(slot for slot in _SLOTS if slot not in _BIG)
REBUILD_SLICE = 1 << 19  # bytes of an array copied per step of the event loop (~0.1 ms)


def _parse_forked(source: Source, body: bytes | None) -> bytes:
    """``parse_source`` in a child forked from this thread; what it sends back through a pipe
    (``_HEAD``, the index's small parts pickled, then the hashes and the prefix index as raw
    bytes), for ``_rebuild`` on the loop. A forked child keeps this process's ``hash()``
    secret, so the hashes it computes are the ones lookups here compute. Seconds of
    pure-Python parsing (1M rules: 4.5 s) never hold this process's GIL; the child runs at
    SCHED_IDLE (``_yield_cpu``). What the event loop still waits for is the fork itself (the
    GIL is held through it: 3-4 ms for a 100 MB process here) and slices of the rebuild."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, write, exit without the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(number, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop
            _yield_cpu()
            big: list[memoryview] = []
            try:
                loaded = parse_source(source, body)
                payload: tuple[bool, Any] = (True, tuple(getattr(loaded, k) for k in _REST))
                big = [memoryview(loaded.hashes).cast("B"), memoryview(loaded.index).cast("B")]
            except OSError as exc:
                payload = (False, (exc.errno, exc.strerror, exc.filename))
            rest = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
            sizes = [len(part) for part in big] or [0, 0]
            for data in (memoryview(_HEAD.pack(len(rest), *sizes)), memoryview(rest), *big):
                while data:
                    data = data[os.write(write_fd, data) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            received = pipe.read()  # in this thread, without the GIL while it waits
    finally:
        _, status = os.waitpid(pid, 0)
    if len(received) < _HEAD.size:
        raise RuntimeError(f"block list {source.where}: the parsing process failed (status {status})")  # fmt: skip
    return received


async def _rebuild(source: Source, received: bytes) -> BlockList:
    """The BlockList of a child's reply, on the event loop: the small parts unpickled, then
    the hashes (8 MiB per 1M names) and the prefix index copied into their arrays a slice at
    a time with a turn of the loop between slices. Unpickling the 8 MiB at once held the GIL
    5-10 ms (benchmarks/refresh_lag.py), longer than the 5 ms a refresh may stall DNS."""
    rest, hashes, index = _HEAD.unpack_from(received)
    view = memoryview(received)[_HEAD.size :]
    ok, value = pickle.loads(view[:rest])
    if not ok:
        raise OSError(*value)
    loaded = BlockList(source.where, source.where, source.format, "nxdomain")
    for slot, got in zip(_REST, value, strict=True):
        setattr(loaded, slot, got)
    at = rest
    for slot, size in zip(_BIG, (hashes, index), strict=True):
        built = array(getattr(loaded, slot).typecode)
        for offset in range(at, at + size, REBUILD_SLICE):
            built.frombytes(view[offset : min(offset + REBUILD_SLICE, at + size)])
            await asyncio.sleep(0)
        setattr(loaded, slot, built)
        at += size
    return loaded


def _yield_cpu() -> None:
    """In the parsing child: let the serving process run first on a shared CPU. SCHED_IDLE,
    because a waking SCHED_NORMAL task preempts a SCHED_IDLE one at once, where a nice 19
    task keeps the CPU until the next scheduler tick: measured with benchmarks/refresh_lag.py
    (one CPU for both), nice 19 alone made the serving loop wake 4.8 ms late every ~50 ms of
    the parse. nice 19 stays for where SCHED_IDLE is missing (not Linux)."""
    os.nice(19)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


async def parse_off_loop(source: Source, body: bytes | None = None) -> BlockList:
    """``parse_source`` off the event loop: in a forked child (``_parse_forked``) where
    ``os.fork`` exists. Else in a thread, with the interpreter's thread switch interval
    lowered to 0.5 ms while it runs: parsing is pure Python holding the GIL, and at the
    default 5 ms the event loop waited for it (measured, 1M rules: 7 ms p99 and 379 ms worst
    loop stalls; at 0.5 ms: 4.3 ms p99, 12 ms worst; benchmarks/lan.py's refresh run)."""
    if FORK:
        return await _rebuild(source, await asyncio.to_thread(_parse_forked, source, body))
    global _parsing
    if _parsing == 0:
        _parsing_restore.append(sys.getswitchinterval())
        sys.setswitchinterval(PARSE_SWITCH_INTERVAL)
    _parsing += 1
    try:
        return await asyncio.to_thread(parse_source, source, body)
    finally:
        _parsing -= 1
        if _parsing == 0:
            sys.setswitchinterval(_parsing_restore.pop())


_parsing_restore: list[float] = []


def describe(blocklist: BlockList) -> str:
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(blocklist.skipped_by.items()))
    return (
        f"{blocklist.entries} rules ({blocklist.skipped} lines skipped"
        + (f": {reasons}" if reasons else "")
        + f"), {blocklist.memory() / (1 << 20):.1f} MiB"
    )
