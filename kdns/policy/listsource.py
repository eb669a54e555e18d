"""A list source (a file or a URL, read in one format) and its parse, off the event loop: in a
child process forked for it, else in a thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import re
import signal
import sys
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
    stamp: tuple[int, int, int] | None = None  # file lists: when last looked at
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


def _parse_forked(source: Source, body: bytes | None) -> BlockList:
    """``parse_source`` in a child forked from this thread; its result comes back pickled
    through a pipe. A forked child keeps this process's ``hash()`` secret, so the hashes it
    computes are the ones lookups here compute. Seconds of pure-Python parsing (1M rules:
    4.5 s) then never hold this process's GIL: what the event loop waits for is the fork and
    unpickling the index (about 2 ms each per 1M names), not the parse. The child runs at
    nice 19, so where it shares a core with this process the kernel runs this one first."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, write, exit without the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(number, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop
            os.nice(19)  # on a shared core the kernel runs the serving process first
            try:
                loaded = parse_source(source, body)
                payload: tuple[bool, Any] = (True, tuple(getattr(loaded, k) for k in _SLOTS))
            except OSError as exc:
                payload = (False, (exc.errno, exc.strerror, exc.filename))
            data = memoryview(pickle.dumps(payload, pickle.HIGHEST_PROTOCOL))
            while data:
                data = data[os.write(write_fd, data) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            received = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if not received:
        raise RuntimeError(f"block list {source.where}: the parsing process failed (status {status})")  # fmt: skip
    ok, value = pickle.loads(received)
    if not ok:
        raise OSError(*value)
    loaded = BlockList(source.where, source.where, source.format, "nxdomain")
    for slot, got in zip(_SLOTS, value, strict=True):
        setattr(loaded, slot, got)
    return loaded


async def parse_off_loop(source: Source, body: bytes | None = None) -> BlockList:
    """``parse_source`` off the event loop: in a forked child (``_parse_forked``) where
    ``os.fork`` exists. Else in a thread, with the interpreter's thread switch interval
    lowered to 0.5 ms while it runs: parsing is pure Python holding the GIL, and at the
    default 5 ms the event loop waited for it (measured, 1M rules: 7 ms p99 and 379 ms worst
    loop stalls; at 0.5 ms: 4.3 ms p99, 12 ms worst; benchmarks/lan.py's refresh run)."""
    if FORK:
        return await asyncio.to_thread(_parse_forked, source, body)
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
