"""DNS over TCP (RFC 1035 4.2.2, RFC 7766): two-byte length-prefixed messages, several per
connection, answered in order.

Limits, so no client can cost the others anything (a client that does not read costs the others
nothing):

- idle connections close after ``idle_timeout`` (only a complete query renews it);
- at most ``max_connections`` at once: a new one beyond closes the oldest *idle* connection
  (nothing pending, nothing unsent) to make room, or is closed itself when none is idle;
- at most ``max_per_client`` at once from one client network (``/32`` and ``/128`` by default,
  ``set_client_prefixes``): 1,000 connections from one address cannot lock out everyone else;
- pipelined queries are answered at most ``BATCH`` per turn of the event loop, and not at all
  while the client leaves ``HIGH_WATER`` bytes of answers unread: its further queries wait in
  the kernel (reading paused). A client whose write buffer stays full ``write_timeout`` seconds
  is disconnected (its unsent answers discarded).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from kdns.server.meter import TCP4, TCP6
from kdns.server.querylog import log_query
from kdns.server.stats import Stats
from kdns.server.wire import DEFERRED, Query, Responder

log = logging.getLogger("kdns.tcp")

BATCH = 64  # queries answered per turn of the event loop, per connection
HIGH_WATER = 64 * 1024  # unread answer bytes at which a connection stops being read
_FLUSH = 16 * 1024  # answers are written in pieces of about this size
_ALL4 = (1 << 32) - 1
_ALL6 = (1 << 128) - 1


class TcpServer:
    """Shared state of every TCP connection on every listener."""

    def __init__(
        self,
        responder: Responder,
        stats: Stats,
        *,
        idle_timeout: float = 10.0,
        max_connections: int = 1000,
        max_per_client: int = 100,
        write_timeout: float = 5.0,
    ) -> None:
        self.responder = responder
        self.stats = stats
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_per_client = max_per_client  # 0: no per-client limit
        self.write_timeout = write_timeout
        # Insertion order is accept order: the first idle one found is the oldest.
        self.connections: dict[TcpConnection, None] = {}
        self.per_client: dict[bytes, int] = {}
        self.query_log = False  # flipped live on reload
        self._mask4 = _ALL4
        self._mask6 = _ALL6

    def set_client_prefixes(self, ipv4: int, ipv6: int) -> None:
        """What one client is for ``max_per_client``: the leading bits of its address."""
        self._mask4 = _ALL4 ^ ((1 << (32 - ipv4)) - 1)
        self._mask6 = _ALL6 ^ ((1 << (128 - ipv6)) - 1)

    def client_key(self, peer: Any) -> bytes:
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        for family, mask in ((socket.AF_INET, self._mask4), (socket.AF_INET6, self._mask6)):
            try:
                packed = socket.inet_pton(family, host.partition("%")[0])
            except (OSError, TypeError):
                continue
            return (int.from_bytes(packed, "big") & mask).to_bytes(len(packed), "big")
        return b""

    def admit(self, conn: TcpConnection) -> bool:
        """Count a new connection in, making room or refusing it (see the module docstring)."""
        if self.max_per_client and self.per_client.get(conn.client, 0) >= self.max_per_client:
            return False
        if len(self.connections) >= self.max_connections:
            oldest = next((c for c in self.connections if c.idle), None)
            if oldest is None:
                return False
            self.stats.tcp_evicted += 1
            oldest.abort()
        self.connections[conn] = None
        self.per_client[conn.client] = self.per_client.get(conn.client, 0) + 1
        return True

    def release(self, conn: TcpConnection) -> None:
        if self.connections.pop(conn, 0) is None:
            left = self.per_client.get(conn.client, 1) - 1
            if left > 0:
                self.per_client[conn.client] = left
            else:
                self.per_client.pop(conn.client, None)

    def protocol(self) -> TcpConnection:
        return TcpConnection(self)

    def close_idle(self) -> None:
        """Close every connection with no query in progress (shutdown)."""
        for conn in list(self.connections):
            conn.close()


class TcpConnection(asyncio.Protocol):
    def __init__(self, server: TcpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.channel = TCP4
        self.peer: Any = None
        self.client = b""
        self.deferred = 0  # forwarded queries whose answers are still to come
        self.blocked = False  # the client leaves HIGH_WATER bytes unread: not reading
        self.scheduled = False  # a backlog is being answered over several loop turns
        self.eof = False  # the client closed its sending side

    @property
    def idle(self) -> bool:
        """Nothing asked and unanswered, nothing unsent: closing it loses no answer."""
        transport = self.transport
        return (
            transport is not None
            and not transport.is_closing()  # not already on its way out (evicted, timed out)
            and not self.deferred
            and not self.buffer
            and not transport.get_write_buffer_size()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        self.peer = transport.get_extra_info("peername")
        self.client = server.client_key(self.peer)
        if not server.admit(self):
            server.stats.tcp_rejected += 1
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        self.channel = TCP6 if sock is not None and sock.family == socket.AF_INET6 else TCP4
        server.stats.tcp_connections += 1
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.idle_timeout, self._idle)

    def _idle(self) -> None:
        self.server.stats.tcp_timeouts += 1
        self.abort() if self.blocked else self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, discarding unsent answers (a client that does not read them)."""
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.buffer += data
        if not self.scheduled and not self.blocked:
            self._answer()

    def _answer(self) -> None:
        """Answer up to BATCH complete queries; the rest wait for the next loop turn, or for
        the client to read (reading is paused meanwhile, so the backlog is bounded)."""
        self.scheduled = False
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        buf = self.buffer
        server = self.server
        respond = server.responder.respond
        out: list[bytes] = []
        pending = 0  # bytes in ``out``
        answered = 0
        while len(buf) >= 2 and answered < BATCH and not self.blocked:
            length = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            answered += 1
            started = time.perf_counter()
            try:
                response = respond(message, self.channel, self.peer, self)
            except Exception:
                server.stats.errors += 1
                if server.stats.errors < 10 or server.stats.errors % 10000 == 0:
                    log.exception(
                        "internal error answering a TCP query (%d so far)", server.stats.errors
                    )
                response = None
            server.stats.tcp_queries += 1
            if response is DEFERRED:
                self.deferred += 1  # logged when sent
            elif server.query_log:
                first = response[0] if isinstance(response, list) else response
                log_query("tcp", self.peer, message, first, time.perf_counter() - started)
            if response is None:
                continue
            messages = response if isinstance(response, list) else (response,)
            for m in messages:  # a zone transfer is several
                out.append(len(m).to_bytes(2, "big") + m)
                pending += len(m) + 2
            if pending >= _FLUSH:
                # Written as we go: past HIGH_WATER unread bytes, pause_writing() (called
                # from write) sets ``blocked`` and this loop stops.
                transport.write(b"".join(out))
                out.clear()
                pending = 0
        if out:
            transport.write(b"".join(out))
        if answered:
            # Only a complete query renews the idle deadline: a client dribbling a byte at a
            # time cannot hold its slot forever (miekg/dns read timeout).
            self._arm()
        if self.blocked or transport.is_closing():
            return  # resume_writing() carries on
        if len(buf) >= 2 and len(buf) >= 2 + ((buf[0] << 8) | buf[1]):
            # More complete queries: answer them on a later turn, and read no more meanwhile.
            transport.pause_reading()
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._answer)
        elif self.eof:
            transport.close()  # the client finished sending and every query is answered
        else:
            transport.resume_reading()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its queries until it does, so
        # an unread backlog cannot grow without bound (asyncio flow control), and give it
        # write_timeout seconds to catch up.
        transport = self.transport
        if transport is None:
            return
        self.blocked = True
        transport.pause_reading()
        if self.write_timer is None:
            loop = asyncio.get_running_loop()
            self.write_timer = loop.call_later(self.server.write_timeout, self._write_timeout)

    def resume_writing(self) -> None:
        self.blocked = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.transport is not None and not self.transport.is_closing():
            if not self.scheduled:
                self._answer()

    def _write_timeout(self) -> None:
        self.write_timer = None
        if self.blocked:
            self.server.stats.tcp_write_timeouts += 1
            self.abort()

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
        """A forwarded answer arriving later (replies may overtake each other: RFC 7766 7)."""
        if self.deferred:
            self.deferred -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(response).to_bytes(2, "big") + response)
            self._arm()
        if self.server.query_log and query is not None:
            log_query("tcp", peer, query.data, response, time.perf_counter() - query.started)

    def eof_received(self) -> bool | None:
        # Close our side too once the client is done, after answering what it sent.
        self.eof = True
        buf = self.buffer
        if self.scheduled or (self.blocked and len(buf) >= 2):
            return True  # _answer() closes when the backlog is answered
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.release(self)
        for timer in (self.timer, self.write_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.write_timer = None
        self.transport = None
