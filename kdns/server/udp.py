"""DNS over UDP: one synchronous call per datagram.

``datagram_received`` never creates a task, logs, or builds label dicts: a pre-rendered hit is a
dict lookup and a few byte concatenations (DESIGN.md, hot path rules). A bug that raises is
counted and swallowed so one bad packet cannot take the listener down.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from kdns.server.meter import UDP4, UDP6
from kdns.server.querylog import log_query
from kdns.server.rrl import SEND, SLIP, slip_reply
from kdns.server.stats import Stats
from kdns.server.wire import DEFERRED, Query, Responder

log = logging.getLogger("kdns.udp")


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, stats: Stats) -> None:
        self.responder = responder
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
        self.query_log = False  # flipped live on reload
        self.channel = UDP4

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.channel = UDP6 if sock is not None and sock.family == socket.AF_INET6 else UDP4

    def datagram_received(self, data: bytes, addr: Any) -> None:
        started = time.perf_counter() if self.query_log else 0.0
        try:
            response = self.responder.respond(data, self.channel, addr, self)
        except Exception:
            self._internal_error()
            return
        self.stats.udp_queries += 1
        if type(response) is bytes:
            # Never several messages over UDP (zone transfers are TCP only); DEFERRED (a
            # forwarded query) is sent, counted and logged by send_reply later.
            if self.responder.rrl is not None:
                response = self._rate_limit(response, addr)
                if response is None:
                    return
            self.transport.sendto(response, addr)  # type: ignore[union-attr]
        if started and response is not DEFERRED:
            log_query("udp", addr, data, response, time.perf_counter() - started)  # type: ignore[arg-type]

    def _rate_limit(self, response: bytes, addr: Any) -> bytes | None:
        """RRL (kdns.server.rrl): the response, its truncated slip, or None (dropped)."""
        action = self.responder.rrl.check(addr[0], response, time.monotonic())
        if action == SEND:
            return response
        if action == SLIP:
            self.stats.rrl_slipped += 1
            return slip_reply(response)
        self.stats.rrl_dropped += 1
        return None

    def _internal_error(self) -> None:
        self.stats.errors += 1
        if self.stats.errors < 10 or self.stats.errors % 10000 == 0:
            log.exception("internal error answering a UDP query (%d so far)", self.stats.errors)

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
        """A forwarded answer arriving later (kdns.server.forwarding)."""
        if self.transport is not None and not self.transport.is_closing():
            if self.responder.rrl is not None:
                limited = self._rate_limit(response, peer)
                if limited is None:
                    return
                response = limited
            self.transport.sendto(response, peer)
        if self.query_log and query is not None:
            log_query("udp", peer, query.data, response, time.perf_counter() - query.started)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        self.stats.udp_send_errors += 1
