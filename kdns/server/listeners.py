"""The DNS sockets: UDP + TCP on each listen address, rebindable without a gap.

Each configured address binds its concrete addresses (kdns.server.sockets): ``:53`` is
0.0.0.0:53 and [::]:53 (IPv6-only), each on UDP and TCP. One "dns listening on udp+tcp
HOST:PORT" line is logged per concrete address.

On a reload that changes ``listen``, new addresses are bound before old ones close, so an
address kept across the reload never stops answering. (An old address that shares a socket
with a new one, 0.0.0.0:53 becoming :53, is closed first: the kernel would refuse the new one.)
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kdns.server.sockets import TCP, UDP, Address, ListenError, bind_address, overlaps
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.udp import Front, UdpServer
from kdns.server.wire import Responder
from kdns.values import format_hostport

__all__ = ["DnsListeners", "ListenError", "Listener"]

log = logging.getLogger("kdns")


@dataclass
class Listener:
    udp: UdpServer
    tcp: asyncio.Server
    host: str  # the concrete address: "0.0.0.0", "::", "127.0.0.1", ...
    port: int  # the bound port (differs from the asked one when that was 0)

    @property
    def address(self) -> Address:
        return self.host, self.port


class DnsListeners:
    def __init__(
        self, responder: Responder, stats: Stats, tcp: TcpServer, *, reuse_port: bool
    ) -> None:
        self.responder = responder
        self.stats = stats
        self.tcp = tcp
        self.reuse_port = reuse_port
        self.query_log = False
        self.bound: dict[Address, list[Listener]] = {}  # configured address -> its sockets
        # Killer mode puts its wire cache in front of each UDP socket's standard path.
        self.udp_front: Callable[[UdpServer], Front] | None = None

    async def bind(self, address: Address) -> list[Listener]:
        """Listen on a configured address; raises ``ListenError`` (nothing left bound)."""
        loop = asyncio.get_running_loop()
        groups = bind_address("dns", address, (UDP, TCP), reuse_port=self.reuse_port)
        listeners: list[Listener] = []
        try:
            while groups:
                group = groups.pop(0)
                try:
                    udp = UdpServer(group.sockets[UDP], self.responder, self.stats)
                    if self.udp_front is not None:
                        udp.front = self.udp_front(udp)
                except BaseException:
                    group.close()
                    raise
                try:
                    tcp = await loop.create_server(
                        self.tcp.protocol, sock=group.sockets[TCP], backlog=1024
                    )
                except BaseException:
                    udp.close()
                    group.sockets[TCP].close()
                    raise
                udp.query_log = self.query_log
                listeners.append(Listener(udp, tcp, group.host, group.port))
        except BaseException:
            for group in groups:
                group.close()
            for listener in listeners:
                listener.udp.close()
                listener.tcp.close()
            raise
        self.bound[address] = listeners
        for listener in listeners:
            log.info("dns listening on udp+tcp %s", format_hostport(listener.address))
        return listeners

    async def sync(self, addresses: tuple[Address, ...]) -> None:
        """Listen on exactly ``addresses``: bind the new ones first, then close the rest."""
        new = [a for a in addresses if a not in self.bound]
        freed = [a for a in self.bound if a not in addresses and any(overlaps(a, n) for n in new)]
        for old in freed:
            self._close(old)  # same socket as a new address: the new bind needs it free
        try:
            for address in new:
                await (self._bind_freed(address) if freed else self.bind(address))
        except ListenError:
            for old in freed:  # a failed reload does not leave the old addresses deaf
                try:
                    await self._bind_freed(old)
                except ListenError as exc:
                    log.error("cannot listen on the old address again: %s", exc)
            raise
        for address in [a for a in self.bound if a not in addresses]:
            self._close(address)

    async def _bind_freed(self, address: Address) -> list[Listener]:
        """Bind right after closing a socket on the same address: the transports close it on
        the loop's next turns, so EADDRINUSE is retried for a moment."""
        for _ in range(40):
            try:
                return await self.bind(address)
            except ListenError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
            await asyncio.sleep(0.025)
        return await self.bind(address)

    def set_query_log(self, on: bool) -> None:
        self.query_log = on
        self.tcp.query_log = on
        for listeners in self.bound.values():
            for listener in listeners:
                listener.udp.query_log = on

    def _close(self, address: Address) -> None:
        for listener in self.bound.pop(address):
            listener.udp.close()
            listener.tcp.close()
            log.info("dns stopped listening on %s", format_hostport(listener.address))

    async def close_all(self) -> None:
        """Stop accepting (UDP and new TCP connections); open TCP connections finish writing."""
        servers = [listener.tcp for group in self.bound.values() for listener in group]
        for address in list(self.bound):
            self._close(address)
        self.tcp.close_idle()
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except TimeoutError:
                pass
