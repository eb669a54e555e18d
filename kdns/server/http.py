"""The operator's HTTP endpoints: /health, /ready, /metrics (a small HTTP/1.1 server).

Each endpoint listens where the config says (CoreDNS defaults :8080 health, :8181 ready,
:9153 metrics); endpoints configured on the same address share one listener. Addresses bind
as the DNS ones do (kdns.server.sockets): ``:8080`` is 0.0.0.0:8080 and [::]:8080.

The server is plain asyncio streams, not aiohttp: aiohttp costs about 14 MiB of memory just to
import, and kdns imports it only to watch an API server (kubernetes_asyncio's connection).
Probes and scrapes need little HTTP:

- ``GET`` and ``HEAD`` of the configured paths (a query string is ignored); any other path
  is 404, any other method on a served path is 405 with ``Allow: GET, HEAD``; a request that
  is not HTTP/1.x is 400 (505 for another version);
- one request per connection: every response carries ``Content-Length`` and
  ``Connection: close`` (kubelet probes close anyway; Prometheus reconnects per scrape);
- a request head larger than ``max_request`` bytes is 431; one that is not complete within
  ``read_timeout`` seconds is dropped, so a slow (slowloris) client holds a connection for
  seconds at most; at ``max_connections`` open connections the oldest one still sending its
  request is dropped for the newcomer, so idle connections cannot lock probes out;
- a response the client does not read within ``write_timeout`` is abandoned;
- ``/metrics`` is gzip-compressed when the client accepts it (Prometheus does), with zlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import zlib
from collections.abc import Awaitable, Callable

from kdns.server.sockets import TCP, bind_address
from kdns.values import format_hostport

log = logging.getLogger("kdns.http")

ReadyCheck = Callable[[], str | None]  # None when ready, else what is not ready
# (body, content type); a coroutine when /metrics gathers the workers' numbers (--workers)
MetricsRender = Callable[[], tuple[bytes, str] | Awaitable[tuple[bytes, str]]]
# (status, content type, body, extra headers)
Response = tuple[int, str, bytes, tuple[tuple[str, str], ...]]

TEXT = "text/plain; charset=utf-8"
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
METHODS = (b"GET", b"HEAD")
GZIP_MIN = 1024  # smaller bodies go out as they are


class _TooLarge(Exception):
    pass


def _error(status: int, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    return status, TEXT, f"{status} {REASONS[status]}\n".encode(), extra


def accepts_gzip(value: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (``gzip``, ``*``; not ``gzip;q=0``)."""
    allowed = None
    for item in value.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if coding != "*" or allowed is None:  # an explicit gzip entry beats the wildcard
            allowed = q > 0
        if coding != "*":
            break
    return bool(allowed)


def gzip_bytes(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 16+15: the gzip container
    return compressor.compress(body) + compressor.flush()


class HttpEndpoints:
    read_timeout = 5.0  # seconds for the whole request head
    write_timeout = 10.0  # seconds for the client to take the response
    linger = 1.0  # seconds to wait for the client to close after the response
    max_request = 8192  # bytes of request line + headers
    max_connections = 128  # open connections per process (all endpoints together)

    def __init__(self, ready: ReadyCheck, metrics: MetricsRender) -> None:
        self.ready = ready
        self.metrics = metrics
        self.servers: list[asyncio.AbstractServer] = []
        self.bound: dict[str, tuple[str, int]] = {}
        # open connection -> whether it is still reading its request; insertion order = age
        self._connections: dict[asyncio.StreamWriter, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ endpoints

    async def _health(self) -> Response:
        # Liveness: the process and its loop answer. Stays 200 during lameduck (CoreDNS health).
        return 200, TEXT, b"OK\n", ()

    async def _ready(self) -> Response:
        problem = self.ready()
        if problem is None:
            return 200, TEXT, b"OK\n", ()
        return 503, TEXT, f"not ready: {problem}\n".encode(), ()

    async def _metrics(self) -> Response:
        result = self.metrics()
        body, content_type = result if isinstance(result, tuple) else await result
        return 200, content_type, body, ()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, listeners: dict[str, tuple[str, int] | None]) -> None:
        """Serve each endpoint ("health", "ready", "metrics") on its address (None = off)."""
        by_address: dict[tuple[str, int], list[str]] = {}
        for endpoint, address in listeners.items():
            if address is not None:
                by_address.setdefault(address, []).append(endpoint)
        for address, endpoints in by_address.items():
            # Raises ListenError naming the endpoints: "health: cannot listen on ...".
            groups = bind_address("+".join(endpoints), address, (TCP,))
            routes = {"/" + endpoint: endpoint for endpoint in endpoints}
            try:
                while groups:
                    group = groups[0]
                    server = await asyncio.start_server(
                        functools.partial(self._connection, routes=routes),
                        sock=group.sockets[TCP],
                        limit=self.max_request,
                    )
                    self.servers.append(server)  # stop() closes it whatever happens next
                    groups.pop(0)
                    for endpoint in endpoints:
                        self.bound.setdefault(endpoint, (group.host, group.port))
                        where = format_hostport((group.host, group.port))
                        log.info("%s listening on http://%s/%s", endpoint, where, endpoint)
            finally:
                for group in groups:  # not handed to a server: still ours to close
                    group.close()

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.servers.clear()
        self.bound.clear()

    # ------------------------------------------------------------------ one connection

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: dict[str, str]
    ) -> None:
        connections = self._connections
        if len(connections) >= self.max_connections:
            # Full: let the oldest connection still sending its request go (a slow client).
            oldest = next((w for w, reading in connections.items() if reading), None)
            if oldest is None:
                writer.transport.abort()
                return
            connections.pop(oldest)
            oldest.transport.abort()
        connections[writer] = True
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._exchange(reader, writer, routes)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            # stop(), or the loop closing. The task ends normally: asyncio's stream callback
            # (3.11) logs a spurious error for a cancelled connection task.
            writer.transport.abort()
        finally:
            connections.pop(writer, None)
            self._tasks.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: dict[str, str]
    ) -> None:
        try:
            async with asyncio.timeout(self.read_timeout):
                head = await self._read_head(reader)
        except TimeoutError:
            return  # slow or silent client: drop it
        except _TooLarge:
            head = None
        if head is None:
            response, method = _error(431), b"GET"
        elif not head:
            return  # closed before sending anything
        else:
            response, method = await self._respond(head, routes)
        self._connections[writer] = False  # answered: not a slow client any more
        await self._send(writer, response, method)
        if writer.transport.is_closing():
            return
        # Lingering close: give the client a moment to read the response and close first,
        # so what it sent beyond the head (a body) does not turn our close into a reset.
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.linger):
                while await reader.read(65536):
                    pass
        writer.close()

    async def _read_head(self, reader: asyncio.StreamReader) -> list[bytes]:
        """The request line and header lines (without line ends); [] when the client closed
        at once. Raises _TooLarge past ``max_request`` bytes."""
        lines: list[bytes] = []
        size = 0
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                raise _TooLarge from exc
            except asyncio.IncompleteReadError as exc:
                if not lines and not exc.partial:
                    return []
                raise
            size += len(line)
            if size > self.max_request:
                raise _TooLarge
            line = line.rstrip(b"\r\n")
            if not line:
                if lines:
                    return lines
                continue  # RFC 9112 2.2: ignore empty lines before the request line
            lines.append(line)

    async def _respond(self, head: list[bytes], routes: dict[str, str]) -> tuple[Response, bytes]:
        """The response to a request head, and the request's method."""
        parts = head[0].split()
        if len(parts) != 3:
            return _error(400), b"GET"
        method, target, version = parts
        if not version.startswith(b"HTTP/"):
            return _error(400), b"GET"
        if version not in (b"HTTP/1.0", b"HTTP/1.1"):
            return _error(505), b"GET"
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                return _error(400), method
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        path = target.decode("latin-1").partition("?")[0].partition("#")[0]
        if "://" in path:  # absolute form (through a proxy): http://host:port/path
            path = "/" + path.partition("://")[2].partition("/")[2]
        endpoint = routes.get(path)
        if endpoint is None:
            return _error(404), method
        if method not in METHODS:
            return _error(405, (("Allow", "GET, HEAD"),)), method
        handler = {"health": self._health, "ready": self._ready, "metrics": self._metrics}
        try:
            response = await handler[endpoint]()
        except Exception:
            log.exception("http: %s failed", path)
            return _error(500), method
        status, content_type, body, extra = response
        if (
            endpoint == "metrics"
            and len(body) >= GZIP_MIN
            and accepts_gzip(headers.get("accept-encoding", ""))
        ):
            body = gzip_bytes(body)
            extra = (*extra, ("Content-Encoding", "gzip"))
        if endpoint == "metrics":
            extra = (*extra, ("Vary", "Accept-Encoding"))
        return (status, content_type, body, extra), method

    async def _send(self, writer: asyncio.StreamWriter, response: Response, method: bytes) -> None:
        status, content_type, body, extra = response
        lines = [
            f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in extra),
        ]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(data if method == b"HEAD" else data + body)
        try:
            async with asyncio.timeout(self.write_timeout):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # a client that does not read: let it go
