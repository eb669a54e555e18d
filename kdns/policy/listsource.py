"""A list source (a file or a URL, read in one format) and its parse, off the event loop: in a
child of the parse helper (a process forked once at start), else in a child forked for it,
else in a thread; the index comes back as raw bytes and is rebuilt in slices on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import pickle
import re
import signal
import socket
import struct
import sys
import threading
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kdns.policy.blocklist import BlockList

log = logging.getLogger("kdns.blocklist")


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
    return BlockList.parse(source.where, source.where, source.format, "nxdomain", _lines(body))


def _lines(body: bytes) -> Iterable[bytes]:
    """A download's lines one at a time: ``splitlines`` made all 1M lines of a big list at
    once, about 60 MB more at the parse's peak (benchmarks/refresh_lag.py measures the pod's
    memory through a refresh). A BytesIO of bytes shares their buffer. Lines end in
    ``\n`` (or ``\r\n``), which the parser strips; a file of ``\r`` line ends alone (old Mac
    files) is split as ``splitlines`` splits it."""
    if b"\n" not in body and b"\r" in body:
        return body.splitlines()
    return io.BytesIO(body)


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


def _reply(source: Source, body: bytes | None) -> list[memoryview]:
    """In a parsing child: ``parse_source`` and the reply's parts (``_HEAD``, the index's
    small parts pickled, then the hashes and the prefix index as raw bytes)."""
    big: list[memoryview] = []
    try:
        loaded = parse_source(source, body)
        payload: tuple[bool, Any] = (True, tuple(getattr(loaded, k) for k in _REST))
        big = [memoryview(loaded.hashes).cast("B"), memoryview(loaded.index).cast("B")]
    except OSError as exc:
        payload = (False, (exc.errno, exc.strerror, exc.filename))
    rest = pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
    sizes = [len(part) for part in big] or [0, 0]
    return [memoryview(_HEAD.pack(len(rest), *sizes)), memoryview(rest), *big]


def _write_all(fd: int, parts: list[memoryview]) -> None:
    for data in parts:
        while data:
            data = data[os.write(fd, data) :]


def _quiet_child() -> None:
    """A child forked from kdns: default signal handlers, no wake-ups of the parent's loop,
    idle priority."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop
    _yield_cpu()


def _parse_forked(source: Source, body: bytes | None) -> bytes | bytearray:
    """``parse_source`` in a child, its reply (``_reply``) for ``_rebuild`` on the loop: from
    the parse helper (``Helper``) when it runs, else from a child forked from this thread.
    Either child keeps this process's ``hash()`` secret (both are forks of it), so the hashes
    it computes are the ones lookups here compute. Seconds of pure-Python parsing (1M rules:
    4.5 s) never hold this process's GIL; the child runs at SCHED_IDLE (``_yield_cpu``)."""
    helper = _helper
    if helper is not None:
        try:
            return helper.parse(source, body)
        except OSError as exc:
            _stop_helper(f"the parse helper is gone ({exc}): parsing in children forked per list")  # fmt: skip
    # A fork of this process holds its GIL through the fork: 3-5 ms at 100 MB (refresh_lag.py).
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, write, exit without the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            _quiet_child()
            _write_all(write_fd, _reply(source, body))
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


class Helper:
    """The parse helper: a process forked once, before kdns serves (``start_helper``), that
    forks a child per parse. A fork of the serving process holds its GIL for the whole fork
    (3-5 ms for a 100 MB process, measured with benchmarks/refresh_lag.py: the largest wait a
    refresh left the loop), and the serving process then pays a copy-on-write fault for each
    page it writes while the child lives. The helper is small and idle; its forks cost the
    serving process nothing. Jobs go over a socket pair, one at a time: the job pickled
    (the source, and the body to parse), the child's reply back as ``_reply`` made it. The
    helper exits when this process closes the socket (it dies with us)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                ours.close()
                # Nothing of kdns's stays open here (listening sockets, --workers channels):
                # their other ends see end of file when kdns closes them, not when we do.
                keep = theirs.fileno()
                os.closerange(3, keep)
                os.closerange(keep + 1, _max_fd())
                _quiet_child()
                self._serve(theirs)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        # A child killed mid-reply (the OOM killer) would leave us waiting for bytes that
        # never come: past this, the helper counts as gone (OSError) and parses fork again.
        ours.settimeout(HELPER_TIMEOUT)
        self.sock = ours
        self.lock = threading.Lock()

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        while True:
            head = _recv_exact(sock, _JOB.size)
            if head is None:
                return  # kdns closed its end: it is gone or stopping
            job = _recv_exact(sock, _JOB.unpack(head)[0])
            if job is None:
                return
            file, url, fmt, size = pickle.loads(job)
            body = None if size < 0 else _recv_exact(sock, size)
            if size >= 0 and body is None:
                return
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    # Lines as bytes, as at home; the received copy freed before the parse
                    # (a 1M-line list: 36 MB less at the parse's peak).
                    text = None if body is None else bytes(body)
                    body = None
                    _write_all(sock.fileno(), _reply(Source(file, url, fmt), text))
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            del body
            _, status = os.waitpid(pid, 0)
            if status:  # no reply from it: say so, or kdns would wait for one forever
                _write_all(sock.fileno(), [memoryview(_HEAD.pack(0, 0, 0))])

    def parse(self, source: Source, body: bytes | None) -> bytearray:
        """One job (blocking: run it in a thread). OSError when the helper is gone."""
        # The body goes as it is (sendall releases the GIL): pickled with the job, its tens
        # of MiB would be copied holding the GIL.
        size = -1 if body is None else len(body)
        job = pickle.dumps((source.file, source.url, source.format, size), pickle.HIGHEST_PROTOCOL)  # fmt: skip
        with self.lock:
            self.sock.sendall(_JOB.pack(len(job)) + job)
            if body is not None:
                self.sock.sendall(body)
            head = _recv_exact(self.sock, _HEAD.size)
            if head is None:
                raise ConnectionResetError("the parse helper closed its socket")
            rest, hashes, index = _HEAD.unpack(head)
            if rest == 0:
                raise RuntimeError(f"block list {source.where}: the parsing process failed")
            received = bytearray(_HEAD.size + rest + hashes + index)
            received[: _HEAD.size] = head
            if not _recv_into(self.sock, memoryview(received)[_HEAD.size :]):
                raise ConnectionResetError("the parse helper closed its socket")
        return received

    def close(self) -> None:
        """Let the helper go: it ends at end of file on its socket; one that does not within
        a second (stuck, stopped) is killed, so this never waits on it for long."""
        self.sock.close()
        with contextlib.suppress(ChildProcessError):
            for _ in range(100):
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
                time.sleep(0.01)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


HELPER_TIMEOUT = 900.0  # seconds for one job (a 1M-line list parses in 5-15 s)
_JOB = struct.Struct("!Q")
_helper: Helper | None = None


def _recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    """``size`` bytes from ``sock`` (None at end of file)."""
    buffer = bytearray(size)
    return buffer if _recv_into(sock, memoryview(buffer)) else None


def _recv_into(sock: socket.socket, view: memoryview) -> bool:
    """Fill ``view`` from ``sock`` (False at end of file); the GIL is released while it waits."""
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            return False
        got += n
    return True


def start_helper() -> None:
    """Fork the parse helper (once; before serving, while this process is small: kdns calls
    it when it loads its lists at start). Where fork is missing, or it fails: nothing (each
    parse forks its own child, or runs in a thread)."""
    global _helper
    if _helper is not None or not FORK:
        return
    try:
        _helper = Helper()
    except OSError as exc:
        log.warning("block lists: no parse helper (%s): parsing in children forked per list", exc)  # fmt: skip


def _stop_helper(why: str) -> None:
    global _helper
    if _helper is not None:
        log.warning("block lists: %s", why)
        helper, _helper = _helper, None
        with contextlib.suppress(OSError):
            helper.close()


async def _rebuild(source: Source, received: bytes | bytearray) -> BlockList:
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
