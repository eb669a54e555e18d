"""One huge object (issue 22 item 17): a Service with 10,000 endpoints is rendered in slices.

The loop is never held by one object for a whole render: a probe coroutine on the same loop
runs between slices (counted, not timed), and at every turn it checks what a query could see:
each name answers from the old state or the new one, never a mix, and a copy of a reply kept
the way killer mode's wire cache keeps it (dropped only when ``Registry.watchers`` name it)
is still byte-for-byte what a fresh query gets.
"""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode

from kdns.authority.registry import GRADUAL_NAMES, STEP_COST, Registry
from kdns.authority.resolver import Resolver
from kdns.authority.slices import Pacer
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.dns.records import SOA
from kdns.k8s.static import apply_all, apply_gradually
from kdns.model import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    KubeObject,
    Namespace,
    Service,
    ServicePort,
)
from kdns.server.wire import Responder

ENDPOINTS = 10_000
BIG = "big.default.svc.cluster.local"


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def objects(generation: int) -> list[KubeObject]:
    """A normal Service and a headless one of 10,000 endpoints; each ``generation`` moves
    every endpoint address (every endpoint name and PTR changes)."""
    first = 1 + generation * ENDPOINTS
    endpoints = tuple(Endpoint((_ip(first + i),), "", True, "") for i in range(ENDPOINTS))
    port = ServicePort("p", "TCP", 80)
    return [
        Namespace("default"),
        Service("default", "web", "ClusterIP", ("10.96.0.10",), False, "", (port,), (), (), False),
        Service("default", "big", "ClusterIP", (), True, "", (port,), (), (), False),
        EndpointSlice(
            "default", "big-1", "big", "IPv4", (EndpointPort("p", "TCP", 80),), endpoints
        ),
    ]


def fresh(generation: int) -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    registry.synced = True
    apply_all(registry, objects(generation))
    return registry


def ask(registry: Registry, name: str, rdtype: str) -> bytes:
    """The reply bytes (ID 1, no EDNS) with multi-record RRsets in a fixed order."""
    query = dns.message.make_query(name, rdtype, use_edns=False)
    query.id = 1
    responder = Responder(registry.answers, Resolver(registry).resolve)
    wire = responder.respond(query.to_wire())
    assert wire is not None
    return wire


def shape(wire: bytes) -> tuple[int, list[str], list[str]]:
    """rcode, answer and authority as sorted text (loadbalance rotates the order)."""
    message = dns.message.from_wire(wire)
    answer = sorted(r.to_text() for rrset in message.answer for r in rrset.to_rdataset())
    authority = sorted(
        f"{rrset.name} {rrset.rdtype}"
        for rrset in message.authority  # the SOA serial moves: its name and type only
    )
    return message.rcode(), answer, authority


def sample() -> list[tuple[str, str]]:
    """Questions spread over the old and new endpoint names, PTRs and the service names."""
    questions = [(BIG, "A"), (BIG, "SRV"), ("_p._tcp." + BIG, "SRV"), (BIG, "TXT")]
    questions.append(("web.default.svc.cluster.local", "A"))
    questions.append(("nothere.default.svc.cluster.local", "A"))
    for i in range(0, 3 * ENDPOINTS, 997):
        ip = _ip(1 + i)
        questions.append((f"{ip.replace('.', '-')}.{BIG}", "A"))
        questions.append((names.reverse_name(ip), "PTR"))
    return questions


async def test_a_huge_service_is_committed_in_slices_each_name_old_or_new() -> None:
    registry = fresh(0)
    questions = sample()
    old = {q: shape(ask(registry, *q)) for q in questions}
    new_registry = fresh(1)
    new = {q: shape(ask(new_registry, *q)) for q in questions}
    assert any(old[q] != new[q] for q in questions)

    # A copy of replies kept like killer mode's wire cache: dropped only when told.
    cache: dict[tuple[str, str], bytes] = {}
    told: list[int] = []

    def watcher(changed: set[bytes], zones: set[str], everything: bool) -> None:
        told.append(len(changed))
        if everything:
            cache.clear()
            return
        for key in list(cache):
            wire_name = names.to_wire(key[0])
            negative = dns.message.from_wire(cache[key]).answer == []
            if wire_name in changed or (zones and negative):
                del cache[key]

    registry.watchers.append(watcher)
    turns = 0
    done = False
    mixed: list[str] = []

    async def probe() -> None:
        nonlocal turns
        while not done:
            await asyncio.sleep(0)
            turns += 1
            for q in questions:
                now = ask(registry, *q)
                got = shape(now)
                if got not in (old[q], new[q]):
                    mixed.append(f"{q}: {got}")
                kept = cache.get(q)
                if kept is not None and shape(kept) != got:
                    mixed.append(f"{q}: a kept reply the watchers were not told about")
                cache[q] = now

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    started = turns
    await apply_gradually(registry, objects(1), Pacer(0.005))
    done = True
    await task

    assert not mixed, mixed[:5]
    # Structure, not wall time: the 10,000-endpoint object let the loop in many times, and no
    # one slice committed more than a bounded number of names (today: one step, ~20,000).
    assert turns - started >= 20
    assert registry.render_steps >= 20
    assert max(told) <= 2 * STEP_COST + 16
    for q in questions:
        assert shape(ask(registry, *q)) == new[q], q
    assert set(registry.answers) == set(new_registry.answers)
    assert registry._ents == new_registry._ents
    assert set(registry._names) == set(new_registry._names)
    for name in new_registry._names:  # the SOA serials differ: every other record the same
        got, want = registry.records(name), new_registry.records(name)
        got.pop(SOA, None)
        want.pop(SOA, None)
        assert got == want


def _drain(steps: object) -> None:
    for _ in steps:  # type: ignore[attr-defined]
        pass


def _step_into_commit(registry: Registry, generation: int) -> object:
    with registry.deferred():
        for obj in objects(generation):
            registry.upsert(obj)
    steps = registry.flush_steps()
    committed = registry.render_steps
    while registry.render_steps < committed + 3:  # part of the names committed
        next(steps)
    return steps


def test_a_whole_apply_of_the_same_object_overtakes_a_sliced_one() -> None:
    registry = fresh(0)
    steps = _step_into_commit(registry, 1)
    registry.upsert(objects(2)[3])  # synchronous: rendered whole now, from the half state
    _drain(steps)  # the sliced job sees it was overtaken and stops
    registry.flush()
    want = fresh(2)
    assert set(registry._names) == set(want._names)
    assert set(registry.answers) == set(want.answers)
    assert registry._ents == want._ents
    assert shape(ask(registry, BIG, "A")) == shape(ask(want, BIG, "A"))


def test_a_change_deferred_during_a_sliced_apply_lands_after_it() -> None:
    registry = fresh(0)
    steps = _step_into_commit(registry, 1)
    with registry.deferred():
        registry.upsert(objects(2)[3])
    _drain(steps)
    _drain(registry.flush_steps())
    want = fresh(2)
    assert set(registry._names) == set(want._names)
    assert registry._ents == want._ents
    assert shape(ask(registry, BIG, "SRV")) == shape(ask(want, BIG, "SRV"))


def test_small_owners_are_rendered_at_once() -> None:
    registry = fresh(0)
    before = registry.render_steps
    port = ServicePort("http", "TCP", 80)
    with registry.deferred():
        registry.upsert(
            Service("default", "s", "ClusterIP", ("10.96.0.11",), False, "", (port,), (), (), False)
        )
    assert list(registry.flush_steps()) == []
    assert registry.render_steps == before
    assert shape(ask(registry, "s.default.svc.cluster.local", "A"))[0] == dns.rcode.NOERROR
    assert GRADUAL_NAMES < ENDPOINTS


def test_a_name_rendered_ahead_of_its_commit_equals_one_rendered_in_it() -> None:
    """A headless Service of 700 named endpoints: its own name's SRV answer (about 30 KB, so
    rendered ahead of its commit in slices) carries glue for its first targets. Every answer,
    byte for byte, and the glue dependencies match a registry that rendered it in one step."""
    port = ServicePort("p", "TCP", 80)

    def medium(generation: int) -> list[KubeObject]:
        endpoints = tuple(
            Endpoint((_ip(1 + generation * 1000 + i),), f"host-{i}", True, "") for i in range(700)
        )
        return [
            Namespace("default"),
            Service("default", "mid", "ClusterIP", (), True, "", (port,), (), (), False),
            EndpointSlice(
                "default", "mid-1", "mid", "IPv4", (EndpointPort("p", "TCP", 80),), endpoints
            ),
        ]

    sliced = Registry(ZoneSet.build("cluster.local", (), 5))
    apply_all(sliced, medium(0))
    steps = sliced.render_steps
    with sliced.deferred():
        sliced.upsert(medium(1)[2])
    _drain(sliced.flush_steps())
    assert sliced.render_steps - steps >= 5  # it did go in slices
    whole = Registry(ZoneSet.build("cluster.local", (), 5))
    apply_all(whole, medium(1))
    mid = names.to_wire("mid.default.svc.cluster.local")
    srv = sliced.answers[mid + b"\x00\x21\x00\x01"]
    assert srv.sections[2], "the SRV answer carries glue: the case under test"
    assert set(sliced.answers) == set(whole.answers)
    for key, answer in whole.answers.items():
        assert sliced.answers[key].sections == answer.sections, key
    assert sliced._dep_targets == whole._dep_targets
    assert sliced._deps == whole._deps
