"""One huge object from the API watch (issue 22 item 17): an EndpointSlice of 10,000 endpoints
arriving over a real list/watch stream (tests/k8sapi.py) is rendered in slices, as the
objects-file reload renders it (tests/test_render_slices.py), with the loop serving between
slices.

The loop is measured in CPU time of its own thread between two turns of a 1 ms ticker task, not
wall time: this shared machine preempts the process for tens of milliseconds whatever kdns does,
and the parse in a thread (kdns.k8s.watchstream.BIG_EVENT) is not the loop's work. Rendered in
one step, the object cost the loop one turn of 0.2-0.9 s here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.k8s.client import api_client
from kdns.k8s.cluster import ClusterSource
from kdns.k8s.objects import slim
from kdns.k8s.static import apply_all
from kdns.k8s.watchstream import MAX_LINE, lines
from kdns.server.wire import Responder
from tests.k8sapi import K8sApi, endpointslice, namespace, service

ENDPOINTS = 10_000
BIG = "big.default.svc.cluster.local"
LONGEST_TURN = 0.05  # seconds of the loop's CPU in one turn (one step was 0.2-0.9 s)


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def big_slice(generation: int) -> dict:
    first = 1 + generation * ENDPOINTS
    addresses = [(_ip(first + i), True) for i in range(ENDPOINTS)]
    return endpointslice("default", "big-1", "big", addresses, [("p", 80)])


def base() -> list[dict]:
    return [namespace("default"), service("default", "big", headless=True, ports=[("p", 80)])]


def ask(registry: Registry, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=False)
    responder = Responder(registry.answers, Resolver(registry).resolve)
    wire = responder.respond(query.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def addresses(registry: Registry) -> set[bytes]:
    return set(registry.records(names.to_wire(BIG)).get(1, ()))


class Turns:
    """The loop's own CPU time between two runs of a 1 ms timer callback (a callback, as the
    UDP server's reader is: a task woken by a timer runs one pass of the loop later): the
    longest is about the longest a datagram arriving then would have waited for the loop."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.count = 0
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None

    def _tick(self) -> None:
        now = time.thread_time()
        self.longest = max(self.longest, now - self._last)
        self.count += 1
        self._last = now
        self._handle = asyncio.get_running_loop().call_later(0.001, self._tick)

    def reset(self) -> None:
        self.longest, self.count = 0.0, 0

    def __enter__(self) -> Turns:
        self._last = time.thread_time()
        self._handle = asyncio.get_running_loop().call_later(0.001, self._tick)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        self._handle.cancel()


@pytest.fixture
def api() -> AsyncIterator[K8sApi]:
    with K8sApi(base(), bookmark_interval=None) as server:
        yield server  # type: ignore[misc]


@contextlib.asynccontextmanager
async def watching(api: K8sApi, tmp_path: Path) -> AsyncIterator[tuple[Registry, ClusterSource]]:
    found = await api_client(str(api.kubeconfig(tmp_path / "kubeconfig")))
    assert found is not None
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    source = ClusterSource(registry, found[0], pods_mode="insecure")
    source.start()
    try:
        await asyncio.wait_for(source.synced.wait(), 30)
        yield registry, source
    finally:
        await source.stop()


async def until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not applied in time"
        await asyncio.sleep(0.005)


def settled(registry: Registry, generation: int) -> bool:
    """The generation's slice is held and fully rendered (no job in flight)."""
    held = registry.slices.get(("default", "big-1"))
    first = _ip(1 + generation * ENDPOINTS)
    return (
        held is not None
        and held.endpoints[0].addresses[0] == first
        and not registry._gradual
        and not registry._dirty
    )


def from_scratch(generation: int) -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    registry.synced = True
    objects = [o for o in (slim(raw) for raw in [*base(), big_slice(generation)]) if o]
    apply_all(registry, objects)
    return registry


async def test_a_huge_endpointslice_from_the_watch_is_rendered_in_slices(
    api: K8sApi, tmp_path: Path
) -> None:
    async with watching(api, tmp_path) as (registry, _):
        slices = [big_slice(0), big_slice(1)]  # built before: the test's work, not kdns's
        with Turns() as turns:
            for generation in (0, 1):  # added, then every address moved
                await asyncio.sleep(0.05)
                turns.reset()
                steps = registry.render_steps
                await asyncio.to_thread(api.apply, slices[generation])
                await until(lambda g=generation: settled(registry, g))  # type: ignore[misc]
                assert turns.longest < LONGEST_TURN, f"one loop turn took {turns.longest:.3f}s"
                # Structure too: the object was committed in many slices, the loop let in
                # between them (20,000 endpoint names and PTRs, the SRV and A of the service).
                assert registry.render_steps - steps >= 20
                assert turns.count >= 20
        want = from_scratch(1)
        assert addresses(registry) == addresses(want)
        assert len(addresses(registry)) == ENDPOINTS
        assert set(registry.answers) == set(want.answers)
        assert registry._ents == want._ents
        sample = _ip(1 + ENDPOINTS + 4321)
        for name, rdtype in (
            (f"{sample.replace('.', '-')}.{BIG}", "A"),
            (names.reverse_name(sample), "PTR"),
            (f"{_ip(1 + 4321).replace('.', '-')}.{BIG}", "A"),  # generation 0's: gone
            (f"_p._tcp.{BIG}", "SRV"),
        ):
            got, expected = ask(registry, name, rdtype), ask(want, name, rdtype)
            assert got.rcode() == expected.rcode(), name
            assert sorted(map(str, got.answer)) == sorted(map(str, expected.answer)), name


async def test_events_after_a_huge_one_apply_in_order(api: K8sApi, tmp_path: Path) -> None:
    """The watch reads its next event once the huge one is rendered: a delete right behind it
    leaves nothing, and the Service watched beside it (its own stream) changes meanwhile."""
    async with watching(api, tmp_path) as (registry, _):
        await asyncio.to_thread(api.apply, big_slice(0))
        await asyncio.to_thread(api.delete, "EndpointSlice", "default", "big-1")
        # A Service edit arrives on the Service watch while the slice may still be rendering.
        await asyncio.to_thread(
            api.apply, service("default", "big", headless=True, ports=[("q", 81)])
        )
        await until(
            lambda: (
                ("default", "big-1") not in registry.slices
                and registry.services[("default", "big")].ports[0].port == 81
                and not registry._gradual
                and not registry._dirty
            )
        )
        assert ask(registry, BIG, "A").rcode() == dns.rcode.NXDOMAIN  # headless, no endpoints
        assert not any(b"10-0-0-1" in key for key in registry.answers)
        empty = Registry(ZoneSet.build("cluster.local", (), 5))
        apply_all(empty, [o for o in (slim(raw) for raw in base()) if o])
        assert set(registry._names) - set(empty._names) == set()


async def test_a_watch_stopped_mid_render_leaves_no_half_committed_service(
    api: K8sApi, tmp_path: Path
) -> None:
    """Stopping the watch (a reload turning a kind off, shutdown) while a huge object is being
    rendered in slices finishes that render at once: the registry holds the object whole."""
    async with watching(api, tmp_path) as (registry, source):
        await asyncio.to_thread(api.apply, big_slice(0))
        await until(lambda: bool(registry._gradual))  # a sliced render in progress
        await source.stop()
        assert not registry._gradual and not registry._dirty
        want = from_scratch(0)
        assert set(registry.answers) == set(want.answers)
        assert registry._ents == want._ents
        assert addresses(registry) == addresses(want)


class _Chunks:
    """What ``lines`` reads: the chunks a response body arrived in."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def _read(*chunks: bytes) -> list[bytes]:
    return [line async for line in lines(_Chunks(*chunks))]  # type: ignore[arg-type]


async def test_watch_lines_are_cut_at_newlines_whatever_the_chunks() -> None:
    """The Kubernetes watch is one JSON event per line ("API concepts", efficient detection
    of changes), in whatever chunks the transport delivers."""
    assert await _read(b'{"a":1}\n{"b"', b":2}\n", b'{"c":3}\n{"d":4}\n') == [
        b'{"a":1}',
        b'{"b":2}',
        b'{"c":3}',
        b'{"d":4}',
    ]
    assert await _read(b"x" * 1000, b"y" * 1000, b"\n") == [b"x" * 1000 + b"y" * 1000]
    assert await _read(b"last line, no newline") == [b"last line, no newline"]
    assert await _read(b"\n\nz\n") == [b"", b"", b"z"]


async def test_a_watch_line_past_the_cap_is_an_error() -> None:
    with pytest.raises(ValueError, match="longer than"):
        await _read(*([b"x" * (1 << 20)] * ((MAX_LINE >> 20) + 1)))
