"""DNS over UDP: one synchronous call per datagram.

``datagram_received`` never creates a task, logs, or builds label dicts: a pre-rendered hit is a
dict lookup and a few byte concatenations (DESIGN.md, hot path rules). A bug that raises is
counted and swallowed so one bad packet cannot take the listener down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kdns.server.stats import Stats
from kdns.server.wire import Responder

log = logging.getLogger("kdns.udp")


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, stats: Stats) -> None:
        self.respond = responder.respond
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            response = self.respond(data)
        except Exception:
            self.stats.errors += 1
            if self.stats.errors < 10 or self.stats.errors % 10000 == 0:
                log.exception("internal error answering a UDP query (%d so far)", self.stats.errors)
            return
        self.stats.udp_queries += 1
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do.
        self.stats.udp_send_errors += 1
