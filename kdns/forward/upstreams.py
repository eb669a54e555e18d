"""Forwarding to upstream resolvers: CoreDNS's ``forward`` plugin, asyncio, in wire bytes.

A ``ForwardGroup`` is one CoreDNS ``forward`` block: a list of ``Upstream`` servers, a policy
that orders them per query (``random``, ``round_robin``, ``sequential``), a limit on queries in
flight (``max_concurrent``) and a deadline per client query. ``query(wire)`` sends the client's
query bytes upstream with a fresh random ID and hands back the upstream's response bytes with
the client's ID and question restored, otherwise untouched (so the question keeps the client's
letter case and the records are exactly what the upstream said).

Per upstream:

- ``udp`` (plain DNS): one connected UDP socket per query. The kernel picks a random ephemeral
  source port for each, so a spoofer has to guess port and ID (RFC 5452 4, 9.2), the kernel
  drops datagrams from any other address, and an ICMP port unreachable fails the query at once
  instead of after a timeout. The price is CPU: about 10k forwarded queries per second on one
  core with uvloop against a loopback upstream, where one shared socket would allow roughly
  twice that; answers worth that rate come from the cache in front, and a poisoned cluster
  resolver is worse than a busy one. Each query in flight holds a file descriptor (up to
  ``max_concurrent``). A reply with TC set is asked again over TCP of the same server
  (RFC 7766 5).
- ``tcp`` and ``tls`` (DNS over TLS, RFC 7858): a small pool (``pool_size``, default 2) of
  persistent connections, each carrying many queries at once (pipelining, RFC 7766 6.2.1.1)
  with replies matched by ID in any order; a connection idle for ``expire`` seconds is closed
  (CoreDNS's ``expire``, 10 s); one the server closed is replaced, and a query lost because the
  server closed a reused connection under it is sent once more on a fresh one (CoreDNS's
  ``ErrCachedClosed`` retry). TLS verifies the certificate against the system CAs or
  ``tls_ca_file`` with SNI and name check on ``server_name`` (the IP when none is given).
- Replies are accepted only with our ID, the QR bit and our question (name compared without
  regard to case, RFC 5452 9.1); anything else is ignored and counted in ``stats.mismatched``.
- Health, as CoreDNS: ``max_fails`` consecutive failed attempts (timeouts, connection errors;
  an answer of any RCODE, SERVFAIL included, is a success) mark the upstream down; a background
  task then sends ``. IN NS`` every ``health_check`` seconds until one is answered. A down
  upstream is skipped, unless every upstream is down: then they are all tried, in random order
  (CoreDNS picks a random one: "healthcheck broken").

Timeouts: a client query has ``timeout`` (2 s) in total and each attempt ``attempt_timeout``
(1 s, including a TC retry over TCP and any connection setup). CoreDNS allows 5 s in total and
2 s per read, but a stub resolver (glibc, musl) resends after 1 to 5 s, so a SERVFAIL it can
act on after 2 s beats an answer it stopped waiting for; 1 s per attempt leaves time for one
failover after a dead upstream that is not yet marked down. On failure the next upstream in
the policy's order is tried, and the list is walked at most twice (CoreDNS walks it until its
deadline), so a query to refusing upstreams fails fast instead of spinning. SERVFAIL answers
are returned, not failed over (CoreDNS's default; its ``next`` option is not implemented).

Nothing blocks: every wait is a coroutine bounded by its own timeout, so a slow upstream only
delays the queries sent to it. Statistics are plain ints on ``Upstream.stats`` and
``ForwardGroup.stats`` for a Prometheus collector to read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import ssl
import struct
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, cast

from kdns.dns import names
from kdns.values import Upstream as UpstreamSpec
from kdns.values import parse_upstream

__all__ = [
    "LATENCY_BUCKETS",
    "POLICIES",
    "ForwardError",
    "ForwardGroup",
    "GroupStats",
    "Overloaded",
    "Upstream",
    "UpstreamSpec",
    "UpstreamStats",
    "parse_upstream",
    "question_end",
]

POLICIES = ("random", "round_robin", "sequential")

# CoreDNS plugin.TimeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16), 0.25 ms .. 8.192 s.
LATENCY_BUCKETS: tuple[float, ...] = tuple(0.00025 * 2**i for i in range(16))

_U16 = struct.Struct("!H")
_PASSES = 2  # times the upstream list is walked per client query
_SPREAD_AT = 16  # queries in flight on a connection before another one is opened (pool allowing)
_RANDOM = random.SystemRandom()  # query IDs are a defence against spoofing: unpredictable ones
# `. IN NS` with RD set: CoreDNS's health check query (ID patched per probe).
_HEALTH_QUERY = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"


class ForwardError(Exception):
    """No upstream answered this query (the caller answers SERVFAIL)."""


class Overloaded(ForwardError):
    """``max_concurrent`` queries are already in flight: rejected without trying (CoreDNS
    answers REFUSED; the caller chooses)."""


@dataclass(slots=True, eq=False)
class UpstreamStats:
    """Counters of one upstream. The latency histogram follows CoreDNS's forward request
    duration buckets; ``latency_buckets`` holds per-bucket (not cumulative) counts, the last
    one for slower than 8.192 s."""

    requests: int = 0  # exchanges sent; a TC retry over TCP is a second one
    failures: int = 0  # attempts without a usable reply (timeouts included)
    timeouts: int = 0
    truncated: int = 0  # UDP replies with TC, asked again over TCP
    mismatched: int = 0  # replies ignored: wrong ID or question (RFC 5452 9.1)
    connects: int = 0  # TCP/TLS connections opened
    health_checks: int = 0
    health_check_failures: int = 0
    rcodes: list[int] = field(default_factory=lambda: [0] * 16)  # answers by RCODE
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0  # seconds
    latency_count: int = 0

    def observe(self, seconds: float) -> None:
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # le: bound >= value
        self.latency_sum += seconds
        self.latency_count += 1

    def histogram(self) -> list[tuple[float, int]]:
        """Cumulative (upper bound, count) pairs ending with +Inf: Prometheus's shape."""
        out = []
        total = 0
        bounds = (*LATENCY_BUCKETS, float("inf"))
        for bound, count in zip(bounds, self.latency_buckets, strict=True):
            total += count
            out.append((bound, total))
        return out


@dataclass(slots=True, eq=False)
class GroupStats:
    overloaded: int = 0  # rejected by max_concurrent (CoreDNS max_concurrent_rejects_total)
    all_down: int = 0  # queries sent while every upstream was down (healthcheck_broken_total)
    failed: int = 0  # queries that raised ForwardError after trying


def question_end(wire: bytes) -> int:
    """Offset just past the single question of a query; ``ValueError`` if it is not one."""
    if len(wire) < 17 or wire[2] & 0x80 or wire[4:6] != b"\x00\x01":
        raise ValueError("not a query with one question")
    return names.question_end(wire)


def _question_key(message: bytes, qend: int) -> bytes:
    """The question as compared between query and reply: name lowercased, type and class as is.
    (Label lengths are at most 63, below ASCII 'A', so ``lower`` touches only letters.)"""
    return message[12 : qend - 4].lower() + message[qend - 4 : qend]


def _is_reply(reply: bytes, msg_id: bytes, key: bytes, qend: int) -> bool:
    """RFC 5452 9.1: our ID, a response, and our question. An error reply without a question
    (some servers send FORMERR/NOTIMP that way) passes on the ID alone."""
    if len(reply) < 12 or reply[:2] != msg_id or not reply[2] & 0x80:
        return False
    qdcount = reply[4:6]
    if qdcount == b"\x00\x01":
        return len(reply) >= qend and _question_key(reply, qend) == key
    return qdcount == b"\x00\x00" and reply[3] & 0x0F != 0


def _restore(wire: bytes, qend: int, reply: bytes) -> bytes:
    """The reply under the client's ID, with the client's own question bytes (same length as
    the upstream's, which matched them but for letter case)."""
    if reply[4:6] == b"\x00\x01":
        return wire[:2] + reply[2:12] + wire[12:qend] + reply[qend:]
    return wire[:2] + reply[2:]


def _new_id() -> bytes:
    return _U16.pack(_RANDOM.getrandbits(16))


def _time_out(future: asyncio.Future[bytes], message: str) -> None:
    if not future.done():
        future.set_exception(TimeoutError(message))


def _consume(task: asyncio.Future[Any]) -> None:
    """Done callback: mark a background failure as seen (nobody may be awaiting it)."""
    if not task.cancelled():
        task.exception()


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection to an upstream carrying pipelined queries (RFC 7766 6.2.1.1):
    each query gets an ID unique on the connection and waits for the reply with that ID, in
    whatever order the server answers."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.opening: asyncio.Task[None] | None = None  # connect (and TLS handshake)
        self.pending: dict[bytes, tuple[asyncio.Future[bytes], bytes, int]] = {}
        self.load = 0  # queries using this connection, including those waiting for it to open
        self.answered = 0
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                return
            reply = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            entry = self.pending.get(reply[:2])
            if entry is None or not _is_reply(reply, reply[:2], entry[1], entry[2]):
                self.upstream.stats.mismatched += 1  # late (timed out) or not ours
                continue
            if not entry[0].done():
                entry[0].set_result(reply)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost fails what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop()
        if not self.lost.done():
            self.lost.set_result(None)
        error = ConnectionResetError(f"connection closed by {self.upstream}: {exc or 'EOF'}")
        for future, _, _ in self.pending.values():
            if not future.done():
                future.set_exception(error)

    # use

    async def exchange(self, wire: bytes, qend: int) -> bytes:
        """Send the query under an ID free on this connection and wait for its reply (the
        caller bounds the wait)."""
        assert self.opening is not None
        if not self.opening.done():
            await asyncio.shield(self.opening)
        self.opening.result()  # raises the connect error
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError(f"connection to {self.upstream} closed")
        msg_id = _new_id()
        while msg_id in self.pending:
            msg_id = _new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = (future, _question_key(wire, qend), qend)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.transport.write(_U16.pack(len(wire)) + msg_id + wire[2:])
            reply = await future
            self.answered += 1
            return reply
        finally:
            del self.pending[msg_id]

    def release(self) -> None:
        """A query is done with this connection: start the idle clock when it was the last."""
        self.load -= 1
        self.arm_idle()

    def arm_idle(self) -> None:
        """Close after ``expire`` seconds unless a query comes (CoreDNS's ``expire``)."""
        if self.load == 0 and self.idle is None and not self.closed and self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(self.upstream.expire, self.close)

    def close(self) -> None:
        self._drop()
        if self.transport is not None:
            self.transport.close()

    def _drop(self) -> None:
        self.closed = True
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.upstream._forget(self)


class Upstream:
    """One upstream server: its transport, connections, health and statistics."""

    def __init__(
        self,
        spec: UpstreamSpec | str,
        *,
        max_fails: int = 2,
        health_check: float = 0.5,
        expire: float = 10.0,
        tls_ca_file: str | None = None,
        pool_size: int = 2,
        connect_timeout: float = 1.0,
        health_timeout: float = 1.0,
    ) -> None:
        if isinstance(spec, str):
            spec = parse_upstream(spec)
        if spec.transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"unknown transport {spec.transport!r}")
        if max_fails < 0 or pool_size < 1:
            raise ValueError("max_fails must be >= 0 and pool_size >= 1")
        if min(health_check, expire, connect_timeout, health_timeout) <= 0:
            raise ValueError("health_check, expire and timeouts must be positive")
        self.spec = spec
        self.transport = spec.transport
        self.host = spec.host
        self.port = spec.port
        self.max_fails = max_fails  # 0: never marked down (CoreDNS: health checking off)
        self.health_check = health_check
        self.expire = expire
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.health_timeout = health_timeout
        self.stats = UpstreamStats()
        self.fails = 0  # consecutive failed attempts
        self.down = False
        ipv6 = ipaddress.ip_address(spec.host).version == 6
        self._family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self._ssl: ssl.SSLContext | None = None
        if spec.transport == "tls":
            # The system CAs, or only the configured CA (create_default_context loads the
            # default store only when no cafile is given); hostname checking on.
            self._ssl = ssl.create_default_context(cafile=tls_ca_file)
        self._streams: list[_Stream] = []
        self._health: asyncio.Task[None] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Upstream({self})"

    def __str__(self) -> str:
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"{self.transport}://{host}:{self.port}"

    @property
    def connections(self) -> int:
        """Open (or opening) TCP/TLS connections."""
        return len(self._streams)

    async def query(self, wire: bytes, *, timeout: float = 1.0, tcp: bool = False) -> bytes:
        """One attempt at this upstream alone: the response with the client's ID restored.
        Raises ``OSError`` (``TimeoutError`` included) when it fails."""
        return await self.attempt(wire, question_end(wire), timeout, tcp)

    async def attempt(self, wire: bytes, qend: int, timeout: float, tcp: bool) -> bytes:
        """One attempt within ``timeout``, counted for statistics and health: UDP (then TCP if
        truncated) or the stream transport; ``tcp`` skips UDP (the client came over TCP)."""
        if self._closed:
            raise ConnectionAbortedError(f"{self} is closed")
        stats = self.stats
        stats.requests += 1
        started = perf_counter()
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            if self.transport == "udp" and not tcp:
                reply = await self._udp(wire, qend, timeout)
                if reply[2] & 0x02:  # TC: ask the same server over TCP (RFC 7766 5)
                    stats.truncated += 1
                    stats.requests += 1
                    async with asyncio.timeout_at(deadline):
                        reply = await self._stream(wire, qend)
            else:
                async with asyncio.timeout_at(deadline):
                    reply = await self._stream(wire, qend)
        except TimeoutError:
            stats.timeouts += 1
            self._failed()
            raise TimeoutError(f"{self}: no reply within {timeout:.3g}s") from None
        except OSError:
            self._failed()
            raise
        stats.observe(perf_counter() - started)
        stats.rcodes[reply[3] & 0x0F] += 1
        if self.fails or self.down:
            self._mark_up()  # any answer proves it alive (also when tried while all down)
        return _restore(wire, qend, reply)

    async def close(self) -> None:
        """Stop the health check and close every connection (pending queries fail). A TLS
        connection is given half a second to exchange close_notify, then aborted."""
        self._closed = True
        task, self._health = self._health, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        conns = list(self._streams)
        for conn in conns:
            conn.close()
        closing = [c for c in conns if c.transport is not None and not c.lost.done()]
        if closing:
            await asyncio.wait([c.lost for c in closing], timeout=0.5)
            for conn in closing:
                if not conn.lost.done() and conn.transport is not None:
                    conn.transport.abort()
            await asyncio.sleep(0)  # let the aborts run connection_lost

    # transports

    async def _udp(self, wire: bytes, qend: int, timeout: float) -> bytes:
        """One query on its own connected UDP socket within ``timeout``; replies that do not
        match are ignored. The common path, so it is one future woken by a reader callback and
        a timer rather than sock_recv under asyncio.timeout (a third less CPU per query)."""
        loop = asyncio.get_running_loop()
        msg_id = _new_id()
        key = _question_key(wire, qend)
        stats = self.stats
        future: asyncio.Future[bytes] = loop.create_future()
        sock = socket.socket(self._family, socket.SOCK_DGRAM)

        def readable() -> None:
            while not future.done():
                try:
                    reply = sock.recv(65535)
                except BlockingIOError:
                    return
                except OSError as exc:  # ICMP port unreachable: ConnectionRefusedError
                    future.set_exception(exc)
                    return
                if _is_reply(reply, msg_id, key, qend):
                    future.set_result(reply)
                else:
                    stats.mismatched += 1

        timer = loop.call_later(timeout, _time_out, future, f"{self}: no reply in {timeout:.3g}s")
        fd = -1
        try:
            sock.setblocking(False)
            sock.connect((self.host, self.port))  # UDP connect: no packet, just the peer filter
            sock.send(msg_id + wire[2:])  # a fresh socket's buffer is empty: it does not block
            fd = sock.fileno()
            loop.add_reader(fd, readable)
            return await future
        finally:
            timer.cancel()
            if fd >= 0:
                loop.remove_reader(fd)
            sock.close()

    async def _stream(self, wire: bytes, qend: int) -> bytes:
        """One query over a pooled TCP/TLS connection; if a reused connection turns out closed
        by the server before answering, once more on a fresh one."""
        for retry in (False, True):
            conn = self._pick()
            reused = conn.answered > 0
            conn.load += 1
            try:
                return await conn.exchange(wire, qend)
            except ConnectionResetError:
                if retry or not reused:
                    raise
            finally:
                conn.release()
        raise AssertionError("unreachable")

    def _pick(self) -> _Stream:
        """The least loaded connection; a new one while the pool has room and the best
        already carries ``_SPREAD_AT`` queries (or there is none)."""
        best = None
        for conn in self._streams:
            if not conn.closed and (best is None or conn.load < best.load):
                best = conn
        if best is None or (best.load >= _SPREAD_AT and len(self._streams) < self.pool_size):
            best = _Stream(self)
            self._streams.append(best)
            best.opening = asyncio.get_running_loop().create_task(self._connect(best))
            best.opening.add_done_callback(_consume)
        return best

    async def _connect(self, conn: _Stream) -> None:
        loop = asyncio.get_running_loop()
        self.stats.connects += 1
        kwargs: dict[str, Any] = {}
        if self._ssl is not None:
            kwargs = {
                "ssl": self._ssl,
                "server_hostname": self.spec.server_name or self.host,
                "ssl_handshake_timeout": self.connect_timeout,
            }
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port, **kwargs)
        except TimeoutError:
            conn.close()
            raise TimeoutError(f"{self}: no connection in {self.connect_timeout:.3g}s") from None
        except BaseException:
            conn.close()
            raise
        if self._closed:
            conn.close()
            raise ConnectionAbortedError(f"{self} is closed")
        conn.arm_idle()  # for when every query that wanted it gave up while it was opening

    def _forget(self, conn: _Stream) -> None:
        try:
            self._streams.remove(conn)
        except ValueError:
            pass

    # health

    def _failed(self) -> None:
        self.stats.failures += 1
        self.fails += 1
        if self.max_fails and self.fails >= self.max_fails and not self.down:
            self.down = True
            if not self._closed:
                self._health = asyncio.get_running_loop().create_task(self._health_loop())

    def _mark_up(self) -> None:
        self.fails = 0
        self.down = False
        task, self._health = self._health, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _health_loop(self) -> None:
        """While down: every ``health_check`` seconds ask ``. IN NS`` over this upstream's own
        transport; any reply (whatever its RCODE) marks it up, as CoreDNS's health check."""
        while self.down and not self._closed:
            await asyncio.sleep(self.health_check)
            self.stats.health_checks += 1
            try:
                async with asyncio.timeout(self.health_timeout):
                    if self.transport == "udp":
                        await self._udp(_HEALTH_QUERY, len(_HEALTH_QUERY), self.health_timeout)
                    else:
                        await self._stream(_HEALTH_QUERY, len(_HEALTH_QUERY))
            except OSError:
                self.stats.health_check_failures += 1
                continue
            self._mark_up()


def _adjust(
    upstream: Upstream | UpstreamSpec | str, force_tcp: bool, tls_servername: str | None
) -> Upstream | UpstreamSpec | str:
    """A spec under a group's ``force_tcp`` (plain DNS over TCP only) and ``tls_servername``
    (the name TLS upstreams without one of their own are checked against)."""
    if isinstance(upstream, Upstream) or not (force_tcp or tls_servername):
        return upstream
    spec = parse_upstream(upstream) if isinstance(upstream, str) else upstream
    if force_tcp and spec.transport == "udp":
        spec = spec._replace(transport="tcp")
    if tls_servername and spec.transport == "tls" and spec.server_name is None:
        spec = spec._replace(server_name=tls_servername)
    return spec


class ForwardGroup:
    """One CoreDNS ``forward`` block: upstreams, a policy, a concurrency limit and a deadline.

    ``upstreams`` are ``Upstream`` objects (used as they are) or specs (``"1.1.1.1"``,
    ``"tcp://10.0.0.2:53"``, ``"tls://1.1.1.1@cloudflare-dns.com"``, or a parsed
    ``kdns.config.Upstream``) built with the per-upstream settings given here.
    """

    def __init__(
        self,
        upstreams: Iterable[Upstream | UpstreamSpec | str],
        *,
        policy: str = "random",
        max_concurrent: int = 1000,
        timeout: float = 2.0,
        attempt_timeout: float = 1.0,
        max_fails: int = 2,
        health_check: float = 0.5,
        expire: float = 10.0,
        tls_ca_file: str | None = None,
        pool_size: int = 2,
        force_tcp: bool = False,
        prefer_udp: bool = False,
        tls_servername: str | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if max_concurrent < 1 or timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("max_concurrent, timeout and attempt_timeout must be positive")
        upstreams = [_adjust(u, force_tcp, tls_servername) for u in upstreams]
        self.upstreams: tuple[Upstream, ...] = tuple(
            u
            if isinstance(u, Upstream)
            else Upstream(
                u,
                max_fails=max_fails,
                health_check=health_check,
                expire=expire,
                tls_ca_file=tls_ca_file,
                pool_size=pool_size,
                connect_timeout=attempt_timeout,
                health_timeout=attempt_timeout,
            )
            for u in upstreams
        )
        if not self.upstreams:
            raise ValueError("a forward group needs at least one upstream")
        self.policy = policy
        # CoreDNS forward: a query goes upstream over the transport it came in on (TCP in, TCP
        # out) unless ``prefer_udp``; ``force_tcp`` (upstreams turned tcp:// above) always TCP.
        self.prefer_udp = prefer_udp
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.stats = GroupStats()
        self.inflight = 0
        self._robin = 0
        self._closed = False

    def healthy(self) -> bool:
        """At least one upstream is not marked down."""
        return any(not u.down for u in self.upstreams)

    async def query(self, wire: bytes, *, tcp: bool = False) -> bytes:
        """Forward a client query (wire bytes, any ID) and return the upstream's response with
        the client's ID and question bytes restored.

        ``tcp``: the client asked over TCP, so plain-DNS upstreams are asked over TCP directly
        (CoreDNS uses the client's protocol). The response may be larger than the client's UDP
        limit after a TC retry: fitting it is the caller's job. Raises ``ValueError`` for a
        message that is not a one-question query, ``Overloaded`` beyond ``max_concurrent``,
        ``ForwardError`` when no upstream answered within ``timeout``.
        """
        if self._closed:
            raise ForwardError("forwarder is closed")
        if self.prefer_udp:
            tcp = False
        qend = question_end(wire)
        if self.inflight >= self.max_concurrent:
            self.stats.overloaded += 1
            raise Overloaded(f"{self.inflight} queries in flight (max_concurrent)")
        self.inflight += 1
        try:
            return await self._forward(wire, qend, tcp)
        finally:
            self.inflight -= 1

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(u.close() for u in self.upstreams))

    async def __aenter__(self) -> ForwardGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _order(self) -> list[Upstream]:
        """The upstreams in this query's policy order (CoreDNS policy.go)."""
        upstreams = self.upstreams
        if self.policy == "sequential" or len(upstreams) == 1:
            return list(upstreams)
        if self.policy == "round_robin":
            start = self._robin % len(upstreams)
            self._robin += 1
            return list(upstreams[start:] + upstreams[:start])
        return _RANDOM.sample(upstreams, len(upstreams))

    async def _forward(self, wire: bytes, qend: int, tcp: bool) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        order = self._order()
        errors: list[str] = []
        counted = False
        for _ in range(_PASSES):
            candidates = [u for u in order if not u.down]
            broken = not candidates
            if broken:
                # Every upstream is down: assume the health checks are what is broken and try
                # them all anyway, in random order.
                candidates = _RANDOM.sample(order, len(order))
            for upstream in candidates:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if broken and not counted:
                    self.stats.all_down += 1  # once per query that had to
                    counted = True
                try:
                    return await upstream.attempt(
                        wire, qend, min(remaining, self.attempt_timeout), tcp
                    )
                except OSError as exc:
                    errors.append(str(exc) or f"{upstream}: {type(exc).__name__}")
        self.stats.failed += 1
        raise ForwardError("no upstream answered: " + "; ".join(errors or ["timed out"]))
