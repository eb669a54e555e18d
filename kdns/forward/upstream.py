"""One upstream server (CoreDNS forward's proxy): UDP per query, a pool of TCP/TLS streams, its
health (max_fails, then a `. IN NS` probe every health_check) and its counters."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from bisect import bisect_left
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from kdns.forward.connections import (
    _HEALTH_QUERY,
    _SPREAD_AT,
    LATENCY_BUCKETS,
    _consume,
    _is_reply,
    _new_id,
    _question_key,
    _restore,
    _Stream,
    _time_out,
    question_end,
)
from kdns.values import Upstream as UpstreamSpec
from kdns.values import parse_upstream


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
