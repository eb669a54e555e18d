"""Mix (d), a trace replay: pods with ``ndots:5`` walking their search list to external names.

Both ends run in this process on one event loop (uvloop when installed), on the client CPU:

- ``Upstream``: a loopback DNS server that answers 20 ms after each query. ``apiN.example.com``
  gets an A record with TTL 10 whose address encodes a serial number (198.18.0.0/15), so every
  answer a client receives names the upstream answer it came from, and when that was sent;
  anything else (the ``corp.internal`` step of the walk) gets NXDOMAIN with an SOA whose
  minimum is 10.
- ``Client``: one UDP socket per pod, each on its own source address (127.0.1.N) so a server
  that learns per client sees distinct clients (``pod_objects`` gives kdns a Pod of the
  client's namespace with that podIP, so ``kdns serve --autopath`` knows who asks). A pod in namespace ``<ns>`` resolving
  ``apiN.example.com`` asks, in order, ``apiN.example.com.<ns>.svc.cluster.local``,
  ``.svc.cluster.local``, ``.cluster.local``, ``.corp.internal`` (each NXDOMAIN) and then the
  name itself, as glibc/musl do for a name with fewer than 5 dots. Each pod walks its names in a
  fixed order, one round every 15 s with +-1.5 s of jitter. A walk ends at the first reply
  that is not NXDOMAIN: with autopath that is the first question's (a CNAME to the name found
  and its A record), so ``queries_per_walk`` is what a pod sends per external lookup.

From the serials the report is exact, not inferred from timings: an answer was served from
cache when the upstream sent it before the client asked; it is past its TTL when the client
received it more than 10 s after the upstream sent it, or with a TTL reaching past that point.
The first round of every pod is warm-up and not counted.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from workload import walk_names

UPSTREAM_DELAY = 0.020
UPSTREAM_TTL = 10
PERIOD = 15.0
JITTER = 1.5
HOST_DOMAIN = "corp.internal"
QUERY_TIMEOUT = 2.0
_SERIAL_BASE = struct.unpack("!I", socket.inet_aton("198.18.0.0"))[0]
_SERIAL_SPAN = 1 << 17  # 198.18.0.0/15


class Upstream(asyncio.DatagramProtocol):
    """The delayed upstream; ``sent[serial]`` is when each A answer left, ``queries`` the
    times of every query but the forwarder's health checks (``. NS``)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.sent: dict[int, float] = {}
        self.queries: list[float] = []
        self.serial = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            query = dns.message.from_wire(data)
            question = query.question[0]
        except Exception:
            return
        if question.name != dns.name.root:
            self.queries.append(time.monotonic())
        asyncio.get_running_loop().call_later(UPSTREAM_DELAY, self._answer, query, addr)

    def _answer(self, query: dns.message.Message, addr: Any) -> None:
        question = query.question[0]
        response = dns.message.make_response(query)
        name = question.name.to_text().lower()
        if question.name == dns.name.root:
            pass  # health check: NOERROR, empty
        elif name.endswith(".example.com.") and question.rdtype == dns.rdatatype.A:
            self.serial = (self.serial + 1) % _SERIAL_SPAN
            ip = socket.inet_ntoa(struct.pack("!I", _SERIAL_BASE + self.serial))
            response.answer.append(dns.rrset.from_text(question.name, UPSTREAM_TTL, "IN", "A", ip))
            self.sent[self.serial] = time.monotonic()
        else:
            if not name.endswith(".example.com."):
                response.set_rcode(dns.rcode.NXDOMAIN)
            zone = HOST_DOMAIN + "." if name.endswith(f".{HOST_DOMAIN}.") else "example.com."
            soa = f"ns.{zone} hostmaster.{zone} 1 7200 1800 86400 {UPSTREAM_TTL}"
            response.authority.append(dns.rrset.from_text(zone, UPSTREAM_TTL, "IN", "SOA", soa))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(response.to_wire(), addr)


@dataclass
class Walk:
    client: int
    round: int
    name: str
    start: float
    end: float = 0.0
    ok: bool = False
    asked: float = 0.0  # when the final (absolute) query was sent
    serial: int | None = None
    ttl: int = 0
    queries: int = 0  # queries this walk sent


class Client(asyncio.DatagramProtocol):
    """One pod: its own socket, one query in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Future[dns.message.Message]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        future = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
        if future is not None and not future.done():
            try:
                future.set_result(dns.message.from_wire(data))
            except Exception as err:
                future.set_exception(err)

    async def ask(self, name: str, server: tuple[str, int]) -> dns.message.Message | None:
        query = dns.message.make_query(name, "A")
        future: asyncio.Future[dns.message.Message] = asyncio.get_running_loop().create_future()
        self.waiting[query.id] = future
        assert self.transport is not None
        self.transport.sendto(query.to_wire(), server)
        try:
            return await asyncio.wait_for(future, QUERY_TIMEOUT)
        except TimeoutError:
            self.waiting.pop(query.id, None)
            return None


@dataclass
class TraceResult:
    walks: list[Walk] = field(default_factory=list)
    upstream_queries: list[float] = field(default_factory=list)
    sent: dict[int, float] = field(default_factory=dict)
    warm_from: float = 0.0
    end: float = 0.0

    def summary(self) -> dict[str, Any]:
        counted = [w for w in self.walks if w.round > 0 and w.start >= self.warm_from]
        done = [w for w in counted if w.ok]
        lat = sorted((w.end - w.start) * 1e3 for w in done)
        cached = stale = 0
        for w in done:
            fetched = self.sent.get(w.serial) if w.serial is not None else None
            if fetched is None:
                continue
            cached += fetched < w.asked
            age = w.end - fetched
            if age > UPSTREAM_TTL + 0.05 or w.ttl + age > UPSTREAM_TTL + 1.05:
                stale += 1
        upstream = sum(1 for t in self.upstream_queries if self.warm_from <= t <= self.end)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else None

        return {
            "walks": len(counted),
            "failed_walks": len(counted) - len(done),
            "walk_p50_ms": pct(50),
            "walk_p99_ms": pct(99),
            "from_cache": cached / len(done) if done else None,
            "past_ttl": stale,
            "upstream_per_walk": upstream / len(counted) if counted else None,
            "queries_per_walk": sum(w.queries for w in counted) / len(counted) if counted else None,
            "upstream_queries": upstream,
        }


async def _pod(
    index: int,
    ns: str,
    names: list[str],
    server: tuple[str, int],
    t0: float,
    until: float,
    rng: random.Random,
    out: list[Walk],
) -> None:
    loop = asyncio.get_running_loop()
    source = pod_source(index)
    try:
        transport, client = await loop.create_datagram_endpoint(Client, local_addr=(source, 0))
    except OSError:  # no 127/8 aliasing here: distinct source ports only
        transport, client = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    search = [n.removeprefix("x.") for n in walk_names("x", ns)] + [HOST_DOMAIN]
    offset = rng.uniform(0, PERIOD)
    try:
        for round_ in range(1_000_000):
            start = t0 + offset + round_ * PERIOD + rng.uniform(-JITTER, JITTER)
            if start > until:
                break
            await asyncio.sleep(max(0.0, start - loop.time()))
            for name in names:
                walk = Walk(index, round_, name, time.monotonic())
                for step in [f"{name}.{suffix}" for suffix in search] + [name]:
                    walk.queries += 1
                    walk.asked = time.monotonic()
                    reply = await client.ask(step, server)
                    if reply is None or reply.rcode() != dns.rcode.NXDOMAIN:
                        break
                walk.end = time.monotonic()
                # The name itself, or (autopath) a search step answered with a CNAME to it.
                if reply is not None and reply.rcode() == dns.rcode.NOERROR:
                    for rrset in reply.answer:
                        if rrset.rdtype == dns.rdatatype.A:
                            addr = struct.unpack("!I", socket.inet_aton(rrset[0].address))[0]
                            walk.serial = addr - _SERIAL_BASE
                            walk.ttl = rrset.ttl
                            walk.ok = True
                out.append(walk)
    finally:
        transport.close()


def pod_source(index: int) -> str:
    """Client ``index``'s source address."""
    return f"127.0.1.{1 + index % 250}"


def pod_objects(clients: int, namespaces: list[str]) -> list[dict[str, Any]]:
    """A running Pod per client, in the client's namespace, with its source address as podIP
    (beyond 250 clients addresses repeat, and one held in two namespaces is nobody's)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"trace-client-{i}", "namespace": namespaces[i % len(namespaces)]},
            "status": {"phase": "Running", "podIP": pod_source(i)},
        }
        for i in range(clients)
    ]


class TraceUpstream:
    """The upstream, bound before kdns starts (kdns needs its port on the command line)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]


def run_trace(
    upstream: TraceUpstream,
    server_port: int,
    namespaces: list[str],
    seconds: float,
    clients: int = 50,
    names_per_client: int = 8,
    pool: int = 200,
    seed: int = 4,
) -> TraceResult:
    """Replay for ``seconds`` against a server on ``server_port`` forwarding to ``upstream``."""

    async def main() -> TraceResult:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(Upstream, sock=upstream.sock)
        rng = random.Random(seed)
        walks: list[Walk] = []
        t0 = loop.time()
        mono0 = time.monotonic()
        tasks = []
        for i in range(clients):
            names = [f"api{n}.example.com" for n in rng.sample(range(pool), names_per_client)]
            ns = namespaces[i % len(namespaces)]
            tasks.append(
                _pod(
                    i,
                    ns,
                    names,
                    ("127.0.0.1", server_port),
                    t0,
                    t0 + seconds,
                    random.Random(seed * 1000 + i),
                    walks,
                )  # fmt: skip
            )
        await asyncio.gather(*tasks)
        end = time.monotonic()
        proto.transport.close()  # type: ignore[union-attr]
        return TraceResult(walks, proto.queries, proto.sent, mono0 + PERIOD + JITTER, end)

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())
