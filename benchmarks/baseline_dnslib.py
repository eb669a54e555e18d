"""Baseline for benchmarks: the naive design kdns avoids.

Every query is parsed into dnslib objects, answered by building a dnslib reply, and packed:
what a straightforward Python DNS server does. Same demo data (A records of the services and
their endpoints), same loop (uvloop when installed), so the difference is the hot path.

    python benchmarks/baseline_dnslib.py PORT
"""

from __future__ import annotations

import asyncio

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from kdns.k8s.demo import demo_objects
from kdns.model import Service


def records() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for obj in demo_objects():
        if isinstance(obj, Service):
            name = f"{obj.name}.{obj.namespace}.svc.cluster.local."
            out[name] = [ip for ip in obj.cluster_ips if ":" not in ip]
    return out


class Baseline(asyncio.DatagramProtocol):
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return
        reply = query.reply()
        name = str(query.q.qname).lower()
        ips = self.table.get(name)
        if ips is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif query.q.qtype == QTYPE.A:
            for ip in ips:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(ip), ttl=5))
        self.transport.sendto(reply.pack(), addr)  # type: ignore[attr-defined]


if __name__ == "__main__":
    from udp_server import serve_forever  # beside this script

    serve_forever(lambda: Baseline(records()))
