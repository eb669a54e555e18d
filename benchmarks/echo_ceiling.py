"""The ceiling: a UDP server on the same loop that does no DNS work at all (flips QR and sends
the packet back). Nothing in Python can answer faster on this machine; kdns's hit path should
come close to it.

    python benchmarks/echo_ceiling.py PORT
"""

from __future__ import annotations

import asyncio


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data[:2] + b"\x85\x00" + data[4:], addr)  # type: ignore[attr-defined]


if __name__ == "__main__":
    from udp_server import serve_forever  # beside this script

    serve_forever(Echo)
