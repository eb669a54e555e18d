"""A loopback DNS server for tests: the upstream that kdns forwards to.

It answers from a dict of canned records over UDP and TCP on one ephemeral port of 127.0.0.1,
and optionally over TLS (DNS over TLS, RFC 7858) on a second port with a certificate from a
trustme test CA. It records every query it receives (name as received, type, transport, ID), so
a test can assert exactly what reached it (leak tests), and it has knobs for failures:

    truncate_udp   answer UDP with TC set and an empty answer (the client must retry over TCP)
    drop           read queries and never answer (the client times out)
    servfail       answer SERVFAIL
    delay          seconds to wait before each answer; ``delays`` per lowercase name; HOLD
                   (infinite) holds the answer until ``release`` (a threading.Event) is set
    refuse_tcp     accept TCP/TLS connections and abort them at once
    spoof          before each UDP answer send one with a wrong ID and one with a wrong question

The server runs its own event loop in a daemon thread, so sync tests and async tests (whose loop
stays free while it answers) use it the same way. Knobs are plain attributes read per query;
``stop()`` closes the listeners and every connection, ``start()`` binds the same ports again.

    with DnsUpstream({("example.com.", "A"): ["192.0.2.1"]}, tls=True) as up:
        up.upstream("udp")   # "127.0.0.1:PORT", what kdns.config.parse_upstream reads
        up.upstream("tls")   # "tls://127.0.0.1:TLSPORT@dns.test"; trust up.ca_file
        up.queries           # [QueryRecord(name="example.com.", type="A", transport="udp", id=..)]

Answers echo the question's letter case (the owner name is the question's name, compressed to
it) and fit the client's UDP size (its EDNS payload size, else 512): a larger UDP answer is sent
empty with TC set, as a real server truncates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trustme

__all__ = ["DnsUpstream", "QueryRecord"]

T = TypeVar("T")
_HOOK_TIMEOUT = 10.0

Records = Mapping[tuple[str, str], Sequence[str]]  # (name, TYPE) -> rdata texts
HOLD = float("inf")  # a delay that holds the answer until DnsUpstream.release is set


@dataclass(frozen=True, slots=True)
class QueryRecord:
    name: str  # as received: letter case kept, trailing dot ("." for the root)
    type: str  # "A", "NS", ...
    transport: str  # "udp", "tcp" or "tls"
    id: int


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsUpstream) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self.server
        delay = server._delay_for(data)
        if delay:
            server._spawn(self._answer_later(data, addr, delay))
        else:
            self._answer(data, addr)

    async def _answer_later(self, data: bytes, addr: Any, delay: float) -> None:
        await self.server._wait(delay)
        self._answer(data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        server = self.server
        reply = server._respond(data, "udp")
        if reply is None or self.transport is None or self.transport.is_closing():
            return
        if server.spoof:
            bogus_id = bytes(((reply[0] + 1) & 0xFF, reply[1])) + reply[2:]
            self.transport.sendto(bogus_id, addr)
            message = dns.message.from_wire(reply)
            message.question[0].name = dns.name.from_text("spoofed.invalid.")
            message.answer = []
            self.transport.sendto(message.to_wire(), addr)
        self.transport.sendto(reply, addr)


class DnsUpstream:
    """A canned-answer DNS server on 127.0.0.1 (UDP + TCP, optional TLS) in its own thread."""

    def __init__(
        self,
        records: Records | None = None,
        *,
        tls: bool = False,
        tls_name: str = "dns.test",
        ca: trustme.CA | None = None,
        ttl: int = 300,
        host: str = "127.0.0.1",
    ) -> None:
        self.records: dict[tuple[str, str], list[str]] = {
            (name.lower(), rtype.upper()): list(rdatas)
            for (name, rtype), rdatas in (records or {}).items()
        }
        self.ttl = ttl
        self.host = host
        self.tls_name = tls_name
        # knobs
        self.truncate_udp = False
        self.drop = False
        self.servfail = False
        self.delay = 0.0
        self.delays: dict[str, float] = {}
        self.release = threading.Event()  # ends every HOLD delay
        self.held = 0  # answers that started a HOLD delay
        self.refuse_tcp = False
        self.spoof = False
        # what happened
        self.connections: Counter[str] = Counter()  # accepted, by transport
        self.open_connections = 0
        self.peak_connections = 0
        self._queries: list[QueryRecord] = []
        self._lock = threading.Lock()
        # TLS
        self.ca: trustme.CA | None = None
        self.ca_file: str | None = None
        self._server_ssl: ssl.SSLContext | None = None
        if tls:
            self.ca = ca or trustme.CA()
            cert = self.ca.issue_cert(tls_name, host)
            self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._server_ssl)
            fd, self.ca_file = tempfile.mkstemp(prefix="dnsupstream-ca-", suffix=".pem")
            os.close(fd)
            self.ca.cert_pem.write_to_path(self.ca_file)
        # runtime (server loop only)
        self.port = 0
        self.tls_port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.running = False

    # lifecycle

    def start(self) -> DnsUpstream:
        """Start serving: the first time on fresh ephemeral ports, later on the same ones."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(
                target=loop.run_forever, name="dnsupstream", daemon=True
            )
            self._thread.start()
        if not self.running:
            self._await(self._listen())
            self.running = True
        return self

    def stop(self) -> None:
        """Close the listeners and every open connection; ``start()`` brings them back."""
        if self.running:
            self._await(self._unlisten())
            self.running = False

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self.stop()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_HOOK_TIMEOUT)
            self._loop.close()
            self._loop = self._thread = None
            if self.ca_file:
                os.unlink(self.ca_file)
                self.ca_file = None

    def __enter__(self) -> DnsUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upstream(self, transport: str = "udp", server_name: str | None = None) -> str:
        """This server as an upstream spec for ``kdns.config.parse_upstream``."""
        if transport == "udp":
            return f"{self.host}:{self.port}"
        if transport == "tcp":
            return f"tcp://{self.host}:{self.port}"
        if transport == "tls":
            if not self.tls_port:
                raise RuntimeError("this DnsUpstream has no TLS listener (tls=True)")
            return f"tls://{self.host}:{self.tls_port}@{server_name or self.tls_name}"
        raise ValueError(transport)

    # what it saw

    @property
    def queries(self) -> list[QueryRecord]:
        with self._lock:
            return list(self._queries)

    def names(self, transport: str | None = None, *, health: bool = False) -> list[str]:
        """Names asked, in order; without the health checks' ``. NS`` unless ``health``."""
        return [
            q.name
            for q in self.queries
            if (transport is None or q.transport == transport) and (health or q.name != ".")
        ]

    def clear(self) -> None:
        with self._lock:
            self._queries.clear()
        self.connections.clear()
        self.peak_connections = self.open_connections

    # serving (server loop)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):  # UDP and TCP on one port: retry while TCP finds that port taken
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, self.port)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(
                    lambda r, w: self._client(r, w, "tcp"), self.host, port, reuse_address=True
                )
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            self.port = port
            self._udp = udp
            self._servers = [tcp]
            break
        else:
            raise RuntimeError("no free port for UDP and TCP together")
        if self._server_ssl is not None:
            tls = await asyncio.start_server(
                lambda r, w: self._client(r, w, "tls"),
                self.host,
                self.tls_port,
                ssl=self._server_ssl,
                reuse_address=True,
            )
            self.tls_port = tls.sockets[0].getsockname()[1]
            self._servers.append(tls)

    async def _unlisten(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        await asyncio.sleep(0)  # let aborted connections and cancelled tasks finish

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        self.connections[transport] += 1
        if self.refuse_tcp:
            writer.transport.abort()
            return
        self._writers.add(writer)
        self.open_connections += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        try:
            while True:  # pipelining: answer each query as soon as it is ready, in any order
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                self._spawn(self._answer_stream(data, writer, transport))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.transport.abort()

    async def _answer_stream(
        self, data: bytes, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        delay = self._delay_for(data)
        if delay:
            await self._wait(delay)
        reply = self._respond(data, transport)
        if reply is not None and not writer.transport.is_closing():
            writer.write(len(reply).to_bytes(2, "big") + reply)

    async def _wait(self, delay: float) -> None:
        if delay != HOLD:
            await asyncio.sleep(delay)
            return
        self.held += 1
        while not self.release.is_set():
            await asyncio.sleep(0.005)

    def _delay_for(self, data: bytes) -> float:
        if self.delays:
            try:
                name = dns.message.from_wire(data).question[0].name.to_text().lower()
            except Exception:
                return self.delay
            return self.delays.get(name, self.delay)
        return self.delay

    def _respond(self, data: bytes, transport: str) -> bytes | None:
        """The reply to one query, or None to stay silent; records the query."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        if not query.question or query.flags & dns.flags.QR:
            return None
        question = query.question[0]
        with self._lock:
            self._queries.append(
                QueryRecord(
                    question.name.to_text(),
                    dns.rdatatype.to_text(question.rdtype),
                    transport,
                    query.id,
                )
            )
        if self.drop:
            return None
        response = dns.message.make_response(query)
        if self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if transport == "udp" and self.truncate_udp:
            response.flags |= dns.flags.TC
            return response.to_wire()
        name = question.name.to_text().lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        rdatas = self.records.get((name, rtype))
        if rdatas:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, self.ttl, dns.rdataclass.IN, question.rdtype, rdatas
                )
            )
        else:
            if not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            # Negative answers carry the zone's SOA (RFC 2308 3), as a real server's do:
            # resolvers and caches take the negative TTL from it.
            zone = question.name.parent() if len(question.name) > 3 else question.name
            soa = f"ns.test. hostmaster.test. 1 7200 1800 86400 {self.ttl}"
            response.authority.append(dns.rrset.from_text(zone, self.ttl, "IN", "SOA", soa))
        limit = 65535
        if transport == "udp":
            limit = max(query.payload, 512) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer = []
            response.flags |= dns.flags.TC
            return response.to_wire()

    # marshalling into the server loop

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("DnsUpstream is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("DnsUpstream hooks block; do not call them from its loop")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(_HOOK_TIMEOUT)
