"""kdns.server.http: the small HTTP/1.1 server behind /health, /ready and /metrics.

Driven over real loopback sockets: well-formed requests through urllib (what tests/kdnsproc.py
and probes use), edge cases as raw bytes (what a broken or hostile client sends).
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator

import pytest

from kdns.server.http import HttpEndpoints, accepts_gzip
from kdns.server.sockets import ListenError

LOOPBACK = "127.0.0.1"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_BODY = b"".join(b'kdns_thing{n="%d"} 1.0\n' % i for i in range(200))


class State:
    problem: str | None = None
    renders = 0


@pytest.fixture
async def http() -> AsyncIterator[tuple[HttpEndpoints, State]]:
    state = State()

    async def render() -> tuple[bytes, str]:
        state.renders += 1
        await asyncio.sleep(0)  # the workers' path: a coroutine
        return METRICS_BODY, METRICS_TYPE

    endpoints = HttpEndpoints(lambda: state.problem, render)
    endpoints.read_timeout = 0.5
    endpoints.linger = 0.2
    # health and ready share 127.0.0.1:0; metrics has its own listener ("localhost" binds
    # 127.0.0.1 too, on another port)
    shared = (LOOPBACK, 0)
    await endpoints.start({"health": shared, "ready": shared, "metrics": ("localhost", 0)})
    try:
        yield endpoints, state
    finally:
        await endpoints.stop()


async def exchange(port: int, request: bytes, *, close_write: bool = False) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), headers, body


def get(port: int, path: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_health_ready_metrics_answer_with_length_and_close(http) -> None:
    endpoints, state = http
    port = endpoints.bound["health"][1]
    status, headers, body = parse(await exchange(port, get(port, "/health")))
    assert (status, body) == (200, b"OK\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == "3"
    assert headers["connection"] == "close"

    port = endpoints.bound["metrics"][1]
    status, headers, body = parse(await exchange(port, get(port, "/metrics")))
    assert (status, body) == (200, METRICS_BODY)
    assert headers["content-type"] == METRICS_TYPE
    assert int(headers["content-length"]) == len(METRICS_BODY)
    assert "content-encoding" not in headers


async def test_ready_is_503_with_the_reason(http) -> None:
    endpoints, state = http
    state.problem = "waiting for the first list of Services"
    port = endpoints.bound["ready"][1]
    status, _, body = parse(await exchange(port, get(port, "/ready?verbose=1")))
    assert status == 503
    assert body == b"not ready: waiting for the first list of Services\n"


async def test_unknown_path_is_404_and_other_endpoints_are_not_served_here(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["health"][1]
    for path in ("/", "/metrics", "/healthz", "/health/", "/HEALTH"):
        status, headers, _ = parse(await exchange(port, get(port, path)))
        assert status == 404, path
        assert int(headers["content-length"]) > 0


async def test_other_methods_are_405_with_allow(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["health"][1]
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        request = f"{method} /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".encode()
        status, headers, _ = parse(await exchange(port, request))
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"


async def test_head_has_the_headers_without_the_body(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["metrics"][1]
    raw = await exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == 200
    assert int(headers["content-length"]) == len(METRICS_BODY)
    assert body == b""


async def test_metrics_are_gzipped_only_when_accepted(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["metrics"][1]
    raw = await exchange(port, get(port, "/metrics", Accept_Encoding="gzip, deflate"))
    status, headers, body = parse(raw)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body) < len(METRICS_BODY)
    assert gzip.decompress(body) == METRICS_BODY
    raw = await exchange(port, get(port, "/metrics", Accept_Encoding="gzip;q=0, identity"))
    assert parse(raw)[2] == METRICS_BODY


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", True),
        ("GZIP;q=0.5", True),
        ("deflate, gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("*;q=0", False),
        ("gzip;q=0, *", False),
        ("identity", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(value: str, expected: bool) -> None:
    assert accepts_gzip(value) is expected


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /health\r\n\r\n", 400),  # HTTP/0.9 style
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health SPDY/3\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\n\r\n", 505),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"\r\nGET /health HTTP/1.0\n\n", 200),  # a leading empty line, bare LFs
        (b"GET http://kdns:8080/health HTTP/1.1\r\n\r\n", 200),  # absolute form
    ],
)
async def test_malformed_requests(http, request_bytes: bytes, status: int) -> None:
    endpoints, _ = http
    port = endpoints.bound["health"][1]
    assert parse(await exchange(port, request_bytes))[0] == status


async def test_oversized_request_is_431(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["health"][1]
    big = b"GET /health HTTP/1.1\r\n" + b"X-Junk: " + b"a" * 20000 + b"\r\n\r\n"
    assert parse(await exchange(port, big))[0] == 431
    # Many small header lines add up too.
    many = b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n"
    assert parse(await exchange(port, many))[0] == 431
    # The server still answers afterwards.
    assert parse(await exchange(port, get(port, "/health")))[0] == 200


async def test_slow_client_is_dropped_after_the_read_timeout(http) -> None:
    endpoints, _ = http
    port = endpoints.bound["health"][1]
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    started = time.monotonic()
    try:
        writer.write(b"GET /health HTTP/1.1\r\n")
        for _ in range(20):  # a header byte now and then, never the blank line (slowloris)
            if reader.at_eof():
                break
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.1)
        data = await asyncio.wait_for(reader.read(), 5)
    except ConnectionError:
        data = b""
    finally:
        writer.close()
    assert data == b""  # dropped without an answer
    assert time.monotonic() - started < 1.5  # read_timeout is 0.5 s here
    assert not endpoints._connections
    # A silent client (connects, sends nothing) goes the same way.
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert parse(await exchange(port, get(port, "/health")))[0] == 200


async def test_idle_connections_cannot_lock_out_probes(http) -> None:
    endpoints, _ = http
    endpoints.read_timeout = 30.0
    endpoints.max_connections = 4
    port = endpoints.bound["health"][1]
    idle = [await asyncio.open_connection(LOOPBACK, port) for _ in range(6)]
    await asyncio.sleep(0.1)
    assert len(endpoints._connections) <= 4
    # A probe still gets its answer: the oldest idle connection made room.
    assert parse(await exchange(port, get(port, "/health")))[0] == 200
    for _, writer in idle:
        writer.close()


async def test_client_closing_early_costs_nothing(http) -> None:
    endpoints, state = http
    port = endpoints.bound["metrics"][1]
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"GET /metr")
    writer.close()
    await asyncio.sleep(0.1)
    assert parse(await exchange(port, get(port, "/metrics")))[0] == 200


async def test_render_failure_is_500_and_logged(caplog) -> None:
    def broken() -> tuple[bytes, str]:
        raise RuntimeError("boom")

    endpoints = HttpEndpoints(lambda: None, broken)
    await endpoints.start({"metrics": (LOOPBACK, 0)})
    try:
        port = endpoints.bound["metrics"][1]
        assert parse(await exchange(port, get(port, "/metrics")))[0] == 500
        assert "boom" in caplog.text
    finally:
        await endpoints.stop()


async def test_shared_address_serves_both_and_stop_releases_the_port(caplog) -> None:
    caplog.set_level("INFO", logger="kdns.http")
    endpoints = HttpEndpoints(lambda: None, lambda: (b"", METRICS_TYPE))
    await endpoints.start({"health": (LOOPBACK, 0), "ready": None, "metrics": None})
    port = endpoints.bound["health"][1]
    assert f"health listening on http://{LOOPBACK}:{port}/health" in caplog.text
    await endpoints.stop()
    assert endpoints.bound == {}
    # Rebinding the same port works at once (a reload back onto the old address).
    again = HttpEndpoints(lambda: None, lambda: (b"", METRICS_TYPE))
    await again.start({"health": (LOOPBACK, port), "ready": (LOOPBACK, port)})
    try:
        assert parse(await exchange(port, get(port, "/ready")))[0] == 200
        assert parse(await exchange(port, get(port, "/health")))[0] == 200
    finally:
        await again.stop()


async def test_stop_drops_open_connections() -> None:
    endpoints = HttpEndpoints(lambda: None, lambda: (b"", METRICS_TYPE))
    endpoints.read_timeout = 30.0
    await endpoints.start({"health": (LOOPBACK, 0)})
    port = endpoints.bound["health"][1]
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"GET /health HTTP/1.1\r\n")
    await asyncio.sleep(0.05)
    await asyncio.wait_for(endpoints.stop(), 2)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()


async def test_port_in_use_is_a_listen_error() -> None:
    first = HttpEndpoints(lambda: None, lambda: (b"", METRICS_TYPE))
    await first.start({"metrics": (LOOPBACK, 0)})
    port = first.bound["metrics"][1]
    second = HttpEndpoints(lambda: None, lambda: (b"", METRICS_TYPE))
    try:
        with pytest.raises(
            ListenError, match=rf"metrics: cannot listen on 127.0.0.1:{port} \(tcp\)"
        ):
            await second.start({"metrics": (LOOPBACK, port)})
    finally:
        await second.stop()
        await first.stop()
