"""The DNS sockets: UDP + TCP on each listen address, rebindable without a gap.

On a reload that changes ``listen``, new addresses are bound before old ones close, so an
address kept across the reload never stops answering.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from kdns.config import format_hostport
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.udp import UdpProtocol
from kdns.server.wire import Responder

log = logging.getLogger("kdns")

Address = tuple[str, int]


@dataclass
class Listener:
    udp: asyncio.DatagramTransport
    protocol: UdpProtocol
    tcp: asyncio.Server
    port: int  # the bound port (differs from the asked one when that was 0)


class DnsListeners:
    def __init__(
        self, responder: Responder, stats: Stats, tcp: TcpServer, *, reuse_port: bool
    ) -> None:
        self.responder = responder
        self.stats = stats
        self.tcp = tcp
        self.reuse_port = reuse_port
        self.query_log = False
        self.bound: dict[Address, Listener] = {}

    async def bind(self, address: Address) -> Listener:
        loop = asyncio.get_running_loop()
        host, port = address
        host = "127.0.0.1" if host == "localhost" else host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        reuse = self.reuse_port or None
        udp, protocol = await loop.create_datagram_endpoint(
            lambda: UdpProtocol(self.responder, self.stats),
            local_addr=(host, port),
            family=family,
            reuse_port=reuse,
        )
        protocol.query_log = self.query_log
        bound_port = udp.get_extra_info("sockname")[1]  # TCP takes the same port as UDP
        try:
            tcp = await loop.create_server(
                self.tcp.protocol,
                host,
                bound_port,
                family=family,
                reuse_address=True,
                reuse_port=reuse,
                backlog=1024,
            )
        except OSError:
            udp.close()
            raise
        listener = Listener(udp, protocol, tcp, bound_port)
        self.bound[address] = listener
        log.info("dns listening on udp+tcp %s", format_hostport((host, bound_port)))
        return listener

    async def sync(self, addresses: tuple[Address, ...]) -> None:
        """Listen on exactly ``addresses``: bind the new ones first, then close the rest."""
        for address in addresses:
            if address not in self.bound:
                await self.bind(address)
        for address in [a for a in self.bound if a not in addresses]:
            self._close(address)

    def set_query_log(self, on: bool) -> None:
        self.query_log = on
        self.tcp.query_log = on
        for listener in self.bound.values():
            listener.protocol.query_log = on

    def _close(self, address: Address) -> None:
        listener = self.bound.pop(address)
        listener.udp.close()
        listener.tcp.close()
        log.info("dns stopped listening on %s", format_hostport((address[0], listener.port)))

    async def close_all(self) -> None:
        """Stop accepting (UDP and new TCP connections); open TCP connections finish writing."""
        servers = [listener.tcp for listener in self.bound.values()]
        for address in list(self.bound):
            self._close(address)
        self.tcp.close_idle()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass
