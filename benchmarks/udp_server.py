"""Run one UDP protocol on 127.0.0.1:PORT forever, on uvloop when installed: the shared main of
the benchmark's comparison servers (baseline_dnslib.py, echo_ceiling.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable


def serve_forever(protocol: Callable[[], asyncio.DatagramProtocol]) -> None:
    port = int(sys.argv[1])

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(protocol, local_addr=("127.0.0.1", port))
        await asyncio.Event().wait()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
