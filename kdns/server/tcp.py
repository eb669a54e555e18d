"""DNS over TCP (RFC 1035 4.2.2, RFC 7766): two-byte length-prefixed messages, several per
connection, answered in order; idle connections close after ``idle_timeout``; at most
``max_connections`` at once (new ones beyond are closed straight away, as CoreDNS/miekg do
under load rather than queueing).
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


class TcpServer:
    """Shared state of every TCP connection on every listener."""

    def __init__(
        self,
        responder: Responder,
        stats: Stats,
        *,
        idle_timeout: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        self.responder = responder
        self.stats = stats
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[TcpConnection] = set()
        self.query_log = False  # flipped live on reload

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
        self.channel = TCP4
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self.server
        if len(server.connections) >= server.max_connections:
            server.stats.tcp_rejected += 1
            transport.close()
            return
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.channel = TCP6 if sock is not None and sock.family == socket.AF_INET6 else TCP4
        self.peer = transport.get_extra_info("peername")
        server.connections.add(self)
        server.stats.tcp_connections += 1
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.idle_timeout, self._idle)

    def _idle(self) -> None:
        self.server.stats.tcp_timeouts += 1
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        buf = self.buffer
        buf += data
        respond = self.server.responder.respond
        out: list[bytes] = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            started = time.perf_counter()
            try:
                response = respond(message, self.channel, self.peer, self)
            except Exception:
                self.server.stats.errors += 1
                if self.server.stats.errors < 10 or self.server.stats.errors % 10000 == 0:
                    log.exception(
                        "internal error answering a TCP query (%d so far)", self.server.stats.errors
                    )
                response = None
            self.server.stats.tcp_queries += 1
            if self.server.query_log and response is not DEFERRED:  # DEFERRED: logged when sent
                first = response[0] if isinstance(response, list) else response
                log_query("tcp", self.peer, message, first, time.perf_counter() - started)
            if response is None:
                continue
            if isinstance(response, list):  # a zone transfer: several messages
                out.extend(len(m).to_bytes(2, "big") + m for m in response)
            else:
                out.append(len(response).to_bytes(2, "big") + response)
        if out:
            self.transport.write(b"".join(out))
            # Only a complete query renews the idle deadline: a client dribbling a byte at a
            # time cannot hold its slot forever (miekg/dns read timeout).
            self._arm()

    def pause_writing(self) -> None:
        # The client does not read its answers: stop reading its queries until it does, so
        # an unread backlog cannot grow without bound (asyncio flow control).
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
        """A forwarded answer arriving later (replies may overtake each other: RFC 7766 7)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(response).to_bytes(2, "big") + response)
            self._arm()
        if self.server.query_log and query is not None:
            log_query("tcp", peer, query.data, response, time.perf_counter() - query.started)

    def eof_received(self) -> bool | None:
        return None  # close our side too once the client is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None
