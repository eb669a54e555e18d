"""``--workers N``: N processes answering on one port, supervised, reporting to one /metrics.

Shape, for N > 1::

    first process ── serves DNS (worker 0), HTTP (/health, /ready, /metrics), relays signals
      └─ spawner ─── forked before any event loop exists; forks workers 1..N-1 and restarts
           ├─ worker 1   any that dies (backoff 0.5 s doubling to 30 s); logs each exit
           └─ worker N-1 each: its own registry, its own watch or manifest load, its sockets
                         bound with SO_REUSEPORT (the kernel spreads clients across them)

Why a spawner: a worker must start from a process without a running event loop (a fork
from inside uvloop would share its epoll instance and every open socket with the parent). The
spawner is that clean process, kept for the pod's lifetime so a worker can be re-forked at any
time; it runs no event loop, binds nothing and sleeps in ``select``.

Dying together: every child asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, then checks ``getppid()`` in case the parent died before that).
The first process dying kills the spawner, which kills the workers: no worker outlives the
first process by more than the kernel's signal delivery. Where prctl does not exist, the same
comes from end-of-file: the spawner watches its control socket to the first process, each
worker its metrics channel, and both exit when the other end closes.

Block lists by URL: the first process downloads them; the workers load the copy it keeps
(kdns.policy.listfetch: ``share_downloads`` here before the spawner is forked, so every
process knows the directory; ``follow_downloads`` in each worker).

Metrics: the spawner hands the first process one end of a socket pair per worker (SCM_RIGHTS
over the control socket). At scrape time the first process writes a request on each channel
and the worker answers with a snapshot of its metric families (``kdns.metrics``); nothing
crosses between processes per query.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import math
import os
import select
import shutil
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from kdns.policy import listfetch

log = logging.getLogger("kdns.workers")

PR_SET_PDEATHSIG = 1
MAX_WORKERS = 64
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
STABLE = 30.0  # a worker that ran this long restarts after BACKOFF_MIN again
SCRAPE_TIMEOUT = 2.0
_REQUEST = struct.Struct("!I")  # request sequence number
_REPLY = struct.Struct("!II")  # sequence number, body length

Snapshot = Any  # JSON-able metric families (kdns.metrics.snapshot); opaque here
SnapshotFn = Callable[[], bytes]


# --------------------------------------------------------------------------- how many


def cgroup_cpus(
    root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs the cgroup CPU quota allows this process (None: no quota). cgroup v2 ``cpu.max``
    ("max 100000" or "150000 100000"), else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.
    The smallest quota on the way from our cgroup up to the root counts (a parent's limit
    applies to its children); in a container the cgroup namespace makes our cgroup the root."""
    paths: dict[str, str] = {}  # controller ("" for v2) -> our cgroup path
    with contextlib.suppress(OSError):
        for line in self_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    found: list[float] = []
    v2 = paths.get("", "/")
    for base in (root, root / "unified"):
        for directory in _up_from(base, v2):
            quota = _read_v2(directory / "cpu.max")
            if quota is not None:
                found.append(quota)
    v1 = paths.get("cpu", "/")
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for directory in _up_from(root / name, v1):
            quota = _read_v1(directory)
            if quota is not None:
                found.append(quota)
    return min(found) if found else None


def _up_from(base: Path, path: str) -> list[Path]:
    """base/path, its parents up to base (those that exist); base alone when path is not
    visible here (a container without a cgroup namespace sees the host's path)."""
    out = []
    current = base / path.strip("/") if path.strip("/") else base
    while True:
        if current.is_dir():
            out.append(current)
        if current == base or base not in current.parents:
            break
        current = current.parent
    if not out and base.is_dir():
        out.append(base)
    return out


def _read_v2(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period) if int(quota) > 0 and int(period) > 0 else None
    except ValueError:
        return None


def _read_v1(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(quota: float | None, cpus: int) -> int:
    """One worker per whole CPU the container may use: the CPUs we may run on (affinity,
    cpuset), capped by the CFS quota rounded down (as Go's automaxprocs: a worker is one
    thread, and 2 workers on a 1.5-CPU quota get throttled every period, which is latency)."""
    count = cpus if quota is None else min(cpus, max(1, math.floor(quota)))
    return max(1, min(MAX_WORKERS, count))


def resolve(setting: int | str) -> int:
    """The number of processes for the ``workers`` setting (an int, or "auto")."""
    if setting != "auto":
        return int(setting)
    quota, cpus = cgroup_cpus(), affinity_cpus()
    count = auto_workers(quota, cpus)
    log.info(
        "workers auto: %d (%d CPUs in our affinity, cgroup CPU quota %s)",
        count,
        cpus,
        "none" if quota is None else f"{quota:g} CPUs",
    )
    return count


# --------------------------------------------------------------------------- dying together


def die_with_parent(parent: int) -> None:
    """In a child just forked from ``parent``: SIGKILL when the parent dies. If it already
    died between the fork and the prctl, we have been reparented: exit now."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


# --------------------------------------------------------------------------- in a worker


@dataclass
class Seat:
    """What a worker knows of its place: its index and its channel to the first process."""

    index: int
    channel: socket.socket
    restarted: bool

    async def serve(self, snapshot: SnapshotFn, parent_gone: Callable[[], None]) -> None:
        """Answer snapshot requests until the first process closes the channel."""
        loop = asyncio.get_running_loop()
        sock = self.channel
        sock.setblocking(False)
        buffer = b""
        while True:
            data = await loop.sock_recv(sock, 4096)
            if not data:
                parent_gone()
                return
            buffer += data
            while len(buffer) >= _REQUEST.size:
                (seq,) = _REQUEST.unpack_from(buffer)
                buffer = buffer[_REQUEST.size :]
                body = snapshot()
                await loop.sock_sendall(sock, _REPLY.pack(seq, len(body)) + body)


# --------------------------------------------------------------------------- the spawner


def start(count: int) -> Pool | Seat:
    """Fork the spawner; it forks workers 1..count-1. Call before any event loop exists.
    Returns the Pool in the first process, a Seat in a worker (the spawner never returns)."""
    first = os.getpid()
    shared = listfetch.share_downloads()  # before the fork: every process knows where
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        die_with_parent(first)
        return _Spawner(count, theirs).run()
    theirs.close()
    log.info(
        "%d processes share the DNS port: this one and %d worker%s",
        count,
        count - 1,
        "s" if count > 2 else "",
    )
    pool = Pool(pid, ours, count)
    pool.shared_dir = shared
    return pool


@dataclass
class _Child:
    pid: int
    started: float


class _Spawner:
    def __init__(self, count: int, ctl: socket.socket) -> None:
        self.count = count
        self.ctl = ctl
        self.children: dict[int, _Child] = {}  # index -> running child
        self.due: dict[int, float] = {}  # index -> when to restart it
        self.backoff: dict[int, float] = {}
        self.restarts = 0
        self.stopping = False
        self.signals: list[int] = []

    def run(self) -> Seat:
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the first process only, which relays it
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        for index in range(1, self.count):
            seat = self._fork(index, restarted=False, fds=(wake_r, wake_w))
            if seat is not None:
                return seat
        while True:
            now = time.monotonic()
            timeout = max(0.0, min(self.due.values()) - now) if self.due else None
            readable, _, _ = select.select([wake_r, self.ctl.fileno()], [], [], timeout)
            if wake_r in readable:
                os.read(wake_r, 512)
            if self.ctl.fileno() in readable and not self.ctl.recv(64):
                self._exit_now("the first process is gone")
            self._handle_signals()
            self._reap()
            if self.stopping and not self.children:
                os._exit(0)
            now = time.monotonic()
            for index, when in sorted(self.due.items()):
                if when <= now and not self.stopping:
                    del self.due[index]
                    seat = self._fork(index, restarted=True, fds=(wake_r, wake_w))
                    if seat is not None:
                        return seat

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def _handle_signals(self) -> None:
        pending, self.signals = self.signals, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
                self.due.clear()
            for child in self.children.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = next((i for i, c in self.children.items() if c.pid == pid), None)
            if index is None:
                continue
            child = self.children.pop(index)
            ran = time.monotonic() - child.started
            if self.stopping:
                log.info("worker %d (pid %d) %s", index, pid, describe_status(status))
                continue
            delay = BACKOFF_MIN if ran >= STABLE else self.backoff.get(index, BACKOFF_MIN)
            self.backoff[index] = min(BACKOFF_MAX, delay * 2)
            self.due[index] = time.monotonic() + delay
            log.error(
                "worker %d (pid %d) %s after %.1fs; restarting it in %.1fs",
                index,
                pid,
                describe_status(status),
                ran,
                delay,
            )
            self._send({"down": index, "pid": pid})

    def _fork(self, index: int, *, restarted: bool, fds: tuple[int, int]) -> Seat | None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            for fd in fds:
                os.close(fd)
            self.ctl.close()
            parent_end.close()
            die_with_parent(me)
            listfetch.follow_downloads()  # the first process downloads the URL lists
            return Seat(index, child_end, restarted)
        child_end.close()
        self.children[index] = _Child(pid, time.monotonic())
        if restarted:
            self.restarts += 1
            log.info(
                "worker %d restarted as pid %d (%d restarts so far)", index, pid, self.restarts
            )
        self._send({"up": index, "pid": pid, "restarted": restarted}, parent_end.fileno())
        parent_end.close()
        return None

    def _send(self, message: dict[str, Any], fd: int | None = None) -> None:
        data = json.dumps(message).encode()
        try:
            socket.send_fds(self.ctl, [data], [] if fd is None else [fd])
        except OSError:
            self._exit_now("the first process is gone")

    def _exit_now(self, why: str) -> NoReturn:
        log.error("%s: stopping %d workers", why, len(self.children))
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        os._exit(1)


# --------------------------------------------------------------------------- the first process


@dataclass
class _Member:
    index: int
    pid: int
    sock: socket.socket
    last: Snapshot = None  # the latest snapshot it sent
    seq: int = 0
    waiting: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Pool:
    """The first process's view of the workers: who runs, their channels, restarts, and the
    counters of workers that died (so summed counters never go backwards)."""

    def __init__(self, spawner: int, ctl: socket.socket, size: int) -> None:
        self.spawner = spawner
        self.ctl = ctl
        self.size = size
        self.members: dict[int, _Member] = {}
        self.restarts = 0
        self.retired: Snapshot = None  # counters of dead workers, folded by ``fold``
        self.fold: Callable[[Snapshot, Snapshot], Snapshot] = lambda old, new: old
        self.spawner_exit: int | None = None
        # Called once when the spawner dies while this process serves (the OOM killer): the
        # pod then runs at a fraction of its capacity, so the app stops and Kubernetes
        # restarts it whole. A new spawner cannot be forked from here (see "Why a spawner").
        self.on_spawner_lost: Callable[[str], None] = lambda why: None
        self.closing = False  # a stop signal was passed on: the spawner ends as asked
        self.shared_dir: str | None = None  # list copies without a cache_dir (removed at close)

    @property
    def processes(self) -> int:
        """Processes answering DNS: this one and the workers alive now."""
        return 1 + len(self.members)

    def attach(self) -> None:
        """Start reading the spawner's messages (in the running loop)."""
        self.ctl.setblocking(False)
        asyncio.get_running_loop().add_reader(self.ctl.fileno(), self._on_ctl)

    def _on_ctl(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.ctl, 4096, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                asyncio.get_running_loop().remove_reader(self.ctl.fileno())
                if self.closing:
                    return  # it stopped with its workers, as asked; close() reaps it
                why = self._reap_spawner()
                for index in list(self.members):
                    self._drop(index)
                log.error(
                    "the worker spawner (pid %d) %s, and its workers with it: stopping so the "
                    "pod restarts with all %d processes",
                    self.spawner,
                    why,
                    self.size,
                )
                self.on_spawner_lost(why)
                return
            message = json.loads(data)
            if "up" in message:
                sock = socket.socket(fileno=fds[0])
                sock.setblocking(False)
                member = _Member(message["up"], message["pid"], sock)
                self._drop(member.index)
                self.members[member.index] = member
                member.reader = asyncio.get_running_loop().create_task(self._read(member))
                if message.get("restarted"):
                    self.restarts += 1
            elif "down" in message:
                member_ = self.members.get(message["down"])
                if member_ is not None and member_.pid == message["pid"]:
                    self._drop(member_.index)

    def _drop(self, index: int) -> None:
        member = self.members.pop(index, None)
        if member is None:
            return
        if member.last is not None:
            self.retired = self.fold(self.retired, member.last)
        if member.reader is not None:
            member.reader.cancel()
        for future in member.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("worker gone"))
        member.sock.close()

    def _reap_spawner(self) -> str:
        """Collect the dead spawner (no zombie left); how it ended, for the log."""
        for _ in range(100):
            try:
                pid, status = os.waitpid(self.spawner, os.WNOHANG)
            except ChildProcessError:
                return "is gone"
            if pid:
                self.spawner_exit = status
                return describe_status(status)
            time.sleep(0.01)  # its socket closes a moment before it can be reaped
        return "closed its socket"

    async def _read(self, member: _Member) -> None:
        loop = asyncio.get_running_loop()
        buffer = b""
        try:
            while True:
                while len(buffer) >= _REPLY.size:
                    seq, length = _REPLY.unpack_from(buffer)
                    if len(buffer) < _REPLY.size + length:
                        break
                    body = buffer[_REPLY.size : _REPLY.size + length]
                    buffer = buffer[_REPLY.size + length :]
                    future = member.waiting.pop(seq, None)
                    if future is not None and not future.done():
                        future.set_result(body)
                data = await loop.sock_recv(member.sock, 1 << 16)
                if not data:
                    break
                buffer += data
        except OSError:
            pass
        for future in member.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("worker gone"))

    async def snapshots(self, parse: Callable[[bytes], Snapshot]) -> list[Snapshot]:
        """Every live worker's snapshot (a worker that does not answer in time counts with its
        last one), then the retired counters of dead workers."""
        members = list(self.members.values())
        results = await asyncio.gather(*(self._ask(m, parse) for m in members))
        out = [r for r in results if r is not None]
        if self.retired is not None:
            out.append(self.retired)
        return out

    async def _ask(self, member: _Member, parse: Callable[[bytes], Snapshot]) -> Snapshot:
        loop = asyncio.get_running_loop()
        member.seq = (member.seq + 1) & 0xFFFFFFFF
        future: asyncio.Future[bytes] = loop.create_future()
        member.waiting[member.seq] = future
        try:
            async with member.lock:
                await loop.sock_sendall(member.sock, _REQUEST.pack(member.seq))
            body = await asyncio.wait_for(future, SCRAPE_TIMEOUT)
            member.last = parse(body)
        except (OSError, ConnectionError, TimeoutError) as exc:
            member.waiting.pop(member.seq, None)
            log.warning(
                "worker %d (pid %d) sent no metrics (%s): using its last ones",
                member.index,
                member.pid,
                exc or type(exc).__name__,
            )
        return member.last

    def signal(self, signum: int) -> None:
        """Pass a signal on: the spawner relays it to every worker."""
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.closing = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.spawner, signum)

    def close(self, code: int) -> None:
        """After this process stopped: wait for the spawner (it waits for the workers, which
        got our signal); if this process failed, stop them first."""
        if code != 0:
            self.signal(signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.spawner, 0)
        for index in list(self.members):
            member = self.members.pop(index)
            member.sock.close()
        self.ctl.close()
        if self.shared_dir is not None:
            shutil.rmtree(self.shared_dir, ignore_errors=True)
