"""Autopath on and off, standard and killer mode, in one run: what a pod's lookup of an
outside name costs (issue 18).

A real ``kdns serve`` (an objects file with 16 pods on loopback addresses 127.0.1.1-16 in
namespace ``bench``, a loopback upstream from tests/dnsupstream.py that knows ``NAMES`` external
names and answers NXDOMAIN for the rest) and 16 stub clients, each a UDP socket bound to its
pod's address, walking the kubelet's search path as a pod with ``ndots:5`` does for an A lookup:
``NAME.bench.svc.cluster.local``, ``NAME.svc.cluster.local``, ``NAME.cluster.local``,
``NAME.corp.example`` (a node search domain), then ``NAME``, stopping at the first reply that is
not NXDOMAIN. Round 1 looks every name up once (cold: the forward cache is empty), rounds 2-3
again (warm).

Per configuration: lookups per second and walk latency (p50, p99) in the warm rounds, questions
the pod sent per lookup, queries kdns sent upstream per lookup (cold round, warm rounds).

    .venv/bin/python benchmarks/autopath.py [--names N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dnsupstream import DnsUpstream  # noqa: E402
from tests.kdnsproc import LOOPBACK, Kdns  # noqa: E402

PODS = [f"127.0.1.{i}" for i in range(1, 17)]
SEARCH = ("bench.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "")
ROUNDS = 3


def objects_yaml() -> str:
    items = ["- {apiVersion: v1, kind: Namespace, metadata: {name: bench}}"]
    for i, ip in enumerate(PODS):
        items.append(
            f"- {{apiVersion: v1, kind: Pod, metadata: {{name: client-{i}, namespace: bench}}, "
            f"status: {{phase: Running, podIP: {ip}}}}}"
        )
    return "apiVersion: v1\nkind: List\nitems:\n" + "\n".join(items) + "\n"


def wire_query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".") if p)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


class Client(asyncio.DatagramProtocol):
    """One pod's stub: one question at a time on a socket bound to the pod's address."""

    def __init__(self) -> None:
        self.waiting: asyncio.Future[bytes] | None = None
        self.sent = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)

    async def ask(self, transport: asyncio.DatagramTransport, name: str, qid: int) -> int:
        loop = asyncio.get_running_loop()
        for _ in range(3):  # a lost datagram is asked again, as a stub does
            self.waiting = loop.create_future()
            transport.sendto(wire_query(qid, name))
            self.sent += 1
            try:
                reply = await asyncio.wait_for(self.waiting, 2.0)
            except TimeoutError:
                continue
            return reply[3] & 0x0F
        raise RuntimeError(f"no reply for {name}")

    async def lookup(self, transport: asyncio.DatagramTransport, name: str, qid: int) -> int:
        """Walk the search path; the rcode of the step that ended it."""
        rcode = 3
        for suffix in SEARCH:
            rcode = await self.ask(transport, f"{name}.{suffix}" if suffix else name, qid)
            if rcode != 3:
                break
        return rcode


def upstream_count(up: DnsUpstream) -> int:
    """Queries the upstream got for names (health checks and the loop probe left out)."""
    return sum(1 for name in up.names() if not name.endswith("kdns-loop-check."))


async def drive(port: int, names: list[str], up: DnsUpstream) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    clients = []
    for ip in PODS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ip, 0))
        sock.connect((LOOPBACK, port))
        transport, client = await loop.create_datagram_endpoint(Client, sock=sock)
        clients.append((transport, client))
    rounds = []
    for _ in range(ROUNDS):
        latencies: list[float] = []
        sent_before = sum(c.sent for _, c in clients)
        upstream_before = upstream_count(up)
        failed = 0

        async def run(index: int, latencies: list[float]) -> None:
            nonlocal failed
            transport, client = clients[index]
            for n, name in enumerate(names[index :: len(clients)]):
                started = time.perf_counter()
                if await client.lookup(transport, name, n & 0xFFFF) != 0:
                    failed += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(run(i, latencies) for i in range(len(clients))))
        seconds = time.perf_counter() - started
        latencies.sort()
        rounds.append(
            {
                "seconds": seconds,
                "lookups": len(latencies),
                "failed": failed,
                "questions": sum(c.sent for _, c in clients) - sent_before,
                "p50": statistics.median(latencies),
                "p99": latencies[int(len(latencies) * 0.99)],
                "upstream": upstream_count(up) - upstream_before,
            }
        )
    for transport, _ in clients:
        transport.close()
    return rounds


def measure(label: str, names: list[str], up: DnsUpstream, objects: str, *extra: str) -> dict[str, Any]:  # fmt: skip
    args = ["--objects", objects, "--upstream", up.upstream("udp"), "--autopath-search", "corp.example"]  # fmt: skip
    with Kdns(*args, *extra) as proc:
        time.sleep(0.5)  # the loop check's probe has gone out and back
        rounds = asyncio.run(drive(proc.port, names, up))
    cold, warm = rounds[0], rounds[1:]
    lookups = sum(r["lookups"] for r in warm)
    row = {
        "config": label,
        "lookups_per_second": lookups / sum(r["seconds"] for r in warm),
        "p50_ms": statistics.median(r["p50"] for r in warm) * 1e3,
        "p99_ms": max(r["p99"] for r in warm) * 1e3,
        "questions_per_lookup": sum(r["questions"] for r in warm) / lookups,
        "upstream_per_lookup_cold": cold["upstream"] / cold["lookups"],
        "upstream_per_lookup_warm": sum(r["upstream"] for r in warm) / lookups,
        "failed": sum(r["failed"] for r in rounds),
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=2000, help="external names (default 2000)")
    parser.add_argument("--json", help="write the rows here too")
    args = parser.parse_args()
    names = [f"host{i}.example.net" for i in range(args.names)]
    records = {(f"{name}.", "A"): [f"192.0.2.{i % 250 + 1}"] for i, name in enumerate(names)}
    rows = []
    with tempfile.TemporaryDirectory() as folder, DnsUpstream(records, ttl=300) as up:
        objects = Path(folder) / "bench.yaml"
        objects.write_text(objects_yaml())
        for label, extra in (
            ("standard", ()),
            ("standard + autopath", ("--autopath",)),
            ("killer", ("--killer",)),
            ("killer + autopath", ("--killer", "--autopath")),
        ):
            rows.append(measure(label, names, up, str(objects), *extra))
    print(f"{args.names} external names x {ROUNDS} rounds, {len(PODS)} pods, A lookups, "
          f"search path of {len(SEARCH)} steps; latency and rates from the warm rounds")  # fmt: skip
    header = f"{'config':22s} {'lookups/s':>10s} {'p50 ms':>7s} {'p99 ms':>7s} {'q/lookup':>9s} {'up/lookup cold':>15s} {'up/lookup warm':>15s}"  # fmt: skip
    print(header)
    for row in rows:
        print(
            f"{row['config']:22s} {row['lookups_per_second']:10.0f} {row['p50_ms']:7.2f} "
            f"{row['p99_ms']:7.2f} {row['questions_per_lookup']:9.2f} "
            f"{row['upstream_per_lookup_cold']:15.2f} {row['upstream_per_lookup_warm']:15.2f}"
            + (f"  ({row['failed']} failed)" if row["failed"] else "")
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
