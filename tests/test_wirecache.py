"""Killer mode's wire cache on its own and behind its UDP transport: keys that ignore EDNS
options (RFC 7873 cookies, RFC 7830 padding, RFC 7871 client subnet), bounds per name and in
all, O(1) eviction, invalidation by name and by zone epoch, honest byte accounting, hit
counting, and the batched path taking every datagram the standard path takes."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kdns.dns import names
from kdns.killer.wirecache import (
    E_AT,
    E_EPOCH,
    ENTRY_OVERHEAD,
    MAX_VARIANTS,
    WireCache,
    cookie_key,
    ends_in_bare_opt,
    qname_of,
    without_options,
)
from kdns.model import Service
from kdns.server.meter import UDP4, Meter
from tests.test_killer import _config, _started

COOKIE = dns.edns.GenericOption(10, bytes(range(8)))  # RFC 7873 4.1: a client cookie
SERVER_COOKIE = dns.edns.GenericOption(10, bytes(range(24)))  # client + server cookie
PADDING = dns.edns.GenericOption(12, bytes(40))  # RFC 7830
ECS = dns.edns.ECSOption("192.0.2.0", 24)  # RFC 7871


def query(name: str, rdtype: str = "A", qid: int = 7, **edns: Any) -> bytes:
    q = dns.message.make_query(name, rdtype, **edns)
    q.id = qid
    return q.to_wire(max_size=65535)


def reply_for(wire: bytes, rcode: int = 0, answers: int = 1, authority: int = 0) -> bytes:
    """A fake reply: the query's header turned into a response with the given counts."""
    head = wire[:2] + bytes((0x84, rcode)) + b"\x00\x01"
    counts = answers.to_bytes(2, "big") + authority.to_bytes(2, "big") + b"\x00\x00"
    return head + counts + wire[12:] + b"\xc0\x0c" + b"x" * 20


def put(cache: WireCache, wire: bytes, zone: str = "example", **kw: Any) -> list[Any]:
    reply = reply_for(wire, **kw)
    entry = cache.insert(wire, reply, float("inf"), zone, b"\x00\x01")
    if entry is None and kw.get("answers") == 0:  # a negative reply: stored on a second miss
        entry = cache.insert(wire, reply, float("inf"), zone, b"\x00\x01")
    assert entry is not None
    return entry


def live(cache: WireCache, wire: bytes) -> bool:
    """What the transport serves: an entry under the query's key whose epoch still holds."""
    key = without_options(wire) or wire[2:]
    entry = cache.entries.get(key)
    return entry is not None and entry[E_EPOCH][0] == entry[E_AT]


# ---------------------------------------------------------------- keys


def test_qname_of_lowercases_and_rejects_garbage() -> None:
    assert qname_of(query("WeB.Example")[2:]) == names.to_wire("web.example")
    assert qname_of(b"\x00" * 10 + b"\x40abc") == b""


def test_hit_needs_the_same_bytes_after_the_id() -> None:
    cache = WireCache()
    put(cache, query("web.example"))
    assert cache.entries.get(query("web.example", qid=99)[2:]) is not None  # not the ID
    assert cache.entries.get(query("WEB.example")[2:]) is None  # the case is


@pytest.mark.parametrize(
    "options",
    [[COOKIE], [SERVER_COOKIE], [PADDING], [ECS], [COOKIE, PADDING], [dns.edns.NSIDOption(b"")]],
    ids=["cookie", "server-cookie", "padding", "ecs", "cookie+padding", "nsid"],
)
def test_options_kdns_never_acts_on_are_left_out_of_the_key(options: list[Any]) -> None:
    """Issue 17: `dig` sends a COOKIE by default; with the whole OPT in the key every such
    query was a new entry. The key of a query with options is the same query without them."""
    plain = query("web.example", use_edns=0)
    with_options = query("web.example", use_edns=0, options=options, qid=1234)
    assert without_options(with_options) == plain[2:]
    cache = WireCache()
    put(cache, with_options)  # stored under the option-less key
    assert list(cache.entries) == [plain[2:]]
    put(cache, query("web.example", use_edns=0, options=options, qid=99))
    assert len(cache) == 1


def test_the_cookie_shortcut_agrees_with_the_walk() -> None:
    for name in ("a.example", "web.shop.svc.cluster.local", "x" * 63 + ".example"):
        wire = query(name, use_edns=0, options=[COOKIE])
        assert cookie_key(wire) == without_options(wire)
    assert cookie_key(query("a.example", use_edns=0)) is None
    assert cookie_key(query("a.example", use_edns=0, options=[SERVER_COOKIE])) is None


def test_malformed_options_are_not_stripped() -> None:
    """RFC 6891 6.1.2: an option overrunning the OPT RDATA is FORMERR in the standard path;
    its key must not be the well-formed query's."""
    good = query("web.example", use_edns=0, options=[COOKIE])
    bad = bytearray(good)
    bad[-9] = 0x20  # the option's length now runs past the record
    assert without_options(bytes(bad)) is None
    assert without_options(query("web.example")) is None  # no OPT at all
    assert without_options(query("web.example", use_edns=0)) is None  # nothing to leave out


def test_a_client_varying_flags_sizes_and_case_is_bounded_per_name() -> None:
    cache = WireCache()
    for size in range(512, 512 + 200):
        for name in ("web.example", "WEB.example"):
            put(cache, query(name, use_edns=0, payload=size))
    assert len(cache) == MAX_VARIANTS
    put(cache, query("other.example"))
    assert len(cache) == MAX_VARIANTS + 1  # other names are not crowded out


# ---------------------------------------------------------------- bounds


def test_a_negative_reply_is_stored_on_its_second_miss() -> None:
    """Admission: a name asked once (a walk for a name never seen again, a random-name flood)
    costs no entry; asked again, it is held."""
    cache = WireCache()
    for i in range(1000):
        q = query(f"once{i}.example")
        assert cache.insert(q, reply_for(q, 3, 0, 1), float("inf"), "example", b"\x00\x01") is None
    assert len(cache) == 0 and cache.deferred == 1000
    q = query("once7.example")
    assert cache.insert(q, reply_for(q, 3, 0, 1), float("inf"), "example", b"\x00\x01") is not None
    positive = query("web.example")
    assert cache.insert(positive, reply_for(positive), float("inf"), "example", b"\x00\x01")


def test_errors_are_never_cached() -> None:
    cache = WireCache()
    q = query("web.example")
    for rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR):
        assert cache.insert(q, reply_for(q, rcode), float("inf"), "example", b"\x00\x01") is None
    assert len(cache) == 0


def test_bounded_by_entries_and_by_bytes() -> None:
    cache = WireCache(max_entries=10, max_bytes=1 << 30)
    for i in range(25):
        put(cache, query(f"n{i}.example"))
    assert len(cache) == 10 and cache.evictions == 15
    assert cache.entries.get(query("n24.example")[2:]) is not None  # newest kept (FIFO)
    assert cache.entries.get(query("n14.example")[2:]) is None
    small = WireCache(max_entries=1000, max_bytes=5000)
    for i in range(100):
        put(small, query(f"n{i}.example"))
    assert small.bytes <= 5000 and len(small) < 100


def test_eviction_never_walks_past_what_is_gone() -> None:
    """Issue 17: eviction took next(iter(dict)), which walks every slot freed at the front of
    the dict: 11-91 us per insert on a full cache under a random-name flood. The FIFO holds
    what is in the cache plus a bounded tail of what left, however long the flood."""
    cache = WireCache(max_entries=1000, max_bytes=1 << 30)
    for i in range(50_000):
        put(cache, query(f"r{i}.flood.example"))
        if i % 3 == 0:  # invalidations leave holes too
            cache.registry_changed({names.to_wire(f"r{i}.flood.example")}, set(), False)
    assert len(cache) <= 1000
    assert len(cache._fifo) <= 2 * len(cache) + 1024


def test_byte_accounting_matches_what_is_allocated() -> None:
    """Issue 17: ~870 B were allocated per entry where 570-590 B were counted against
    cache_bytes. What insert counts must cover what Python allocates for it."""
    cache = WireCache(max_entries=100_000, max_bytes=1 << 30)
    queries = [query(f"name-{i}.ns{i % 50}.svc.cluster.local") for i in range(5000)]
    replies = [reply_for(q) for q in queries]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for q, r in zip(queries, replies, strict=True):
            cache.insert(q, r, float("inf"), "cluster.local", b"\x00\x01")
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert allocated <= cache.bytes, (allocated / 5000, cache.bytes / 5000)
    assert cache.bytes <= 1.5 * allocated  # and not wildly over either
    assert ENTRY_OVERHEAD > 0


# ---------------------------------------------------------------- invalidation


def test_invalidation_is_exact() -> None:
    """A registry change drops the changed names' entries; a zone's serial move makes its
    replies with an authority section (they carry the SOA) stale; nothing else moves."""
    cache = WireCache()
    keep, gone, gone_aaaa = query("keep.example"), query("gone.example"), query("gone.example", "AAAA")  # fmt: skip
    negative = query("missing.example")
    forwarded = query("www.public.test")
    for wire in (keep, gone, gone_aaaa):
        put(cache, wire)
    put(cache, negative, rcode=3, answers=0, authority=1)
    cache.insert(forwarded, reply_for(forwarded), 1e12, ".", b"\x00\x01")
    cache.registry_changed({names.to_wire("gone.example")}, set(), False)
    assert set(cache.entries) == {keep[2:], negative[2:], forwarded[2:]}
    cache.registry_changed(set(), {"example"}, False)
    assert live(cache, keep) and live(cache, forwarded) and not live(cache, negative)
    cache.registry_changed(set(), {"other.zone"}, False)
    assert live(cache, keep)
    cache.registry_changed(set(), set(), True)
    assert len(cache) == 0 and cache.bytes == 0  # everything: forwarded replies too


def test_a_zone_flush_costs_one_integer_whatever_it_holds() -> None:
    """Issue 17: one edit dropped 45,000 negative entries at once (88 ms, the worst response
    110-175 ms). A serial move is an epoch bump; stale entries are replaced when asked."""
    cache = WireCache(max_entries=100_000, max_bytes=1 << 30)
    for i in range(45_000):
        put(cache, query(f"miss{i}.example"), rcode=3, answers=0, authority=1)
    cache.registry_changed(set(), {"example"}, False)
    assert len(cache) == 45_000  # nothing walked
    assert not live(cache, query("miss7.example"))
    put(cache, query("miss7.example"), rcode=3, answers=0, authority=1)
    assert live(cache, query("miss7.example")) and cache.invalidations == 1


def test_a_forwarded_name_that_becomes_ours_is_dropped() -> None:
    """Issue 17: a forwarded PTR survived the change that made the address kdns's own."""
    cache = WireCache()
    ptr = query("20.10.96.10.in-addr.arpa", "PTR")
    cache.insert(ptr, reply_for(ptr), 1e12, ".", b"\x00\x0c", watch=True)
    cache.registry_changed({names.to_wire("20.10.96.10.in-addr.arpa")}, set(), False)
    assert len(cache) == 0


def test_hits_are_recorded_with_their_duration() -> None:
    """Issue 17: every hit was recorded as a nominal 2 us. Hits now carry their batch's
    time from read to send, so a slow batch lands in a slow bucket."""
    meter = Meter()
    cache = WireCache()
    cache.attach(meter)
    entry = put(cache, query("web.example"))
    cache.record_hits([entry] * 41, UDP4, 0.0001)
    cache.record_hits([entry], UDP4, 0.003)
    totals = list(meter.totals().values())
    assert sum(t.count for t in totals) == 42
    assert sum(t.duration_sum for t in totals) == pytest.approx(41 * 0.0001 + 0.003)
    durations = [sum(t.durations[i] for t in totals) for i in range(len(totals[0].durations))]
    assert durations[0] == 41 and sum(durations[1:]) == 1
    assert cache.counters()["hits"] == 42


# ---------------------------------------------------------------- behind the transport


def _exchange(port: int, wires: list[bytes], timeout: float = 5.0) -> list[bytes]:
    """Send every query from one socket without waiting (one batch for the server), then
    collect the replies, in the order of their IDs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        for wire in wires:
            sock.sendto(wire, ("127.0.0.1", port))
        replies = [sock.recvfrom(65535)[0] for _ in wires]
    finally:
        sock.close()
    return sorted(replies, key=lambda r: r[:2])


@pytest.fixture(params=[True, False], ids=["batched", "recvfrom"])
def transport(request: pytest.FixtureRequest) -> Any:
    from kdns.server import udp as killer_udp

    saved = killer_udp.LIBC
    if not request.param:
        killer_udp.LIBC = None
    yield request.param
    killer_udp.LIBC = saved


async def test_cookie_padding_and_ecs_queries_hit(transport: bool) -> None:
    """Issue 17: 30 default `dig`s (each with its own client cookie) gave 0 hits and 30
    entries. Now they share one entry, and each reply is the standard path's for its query."""
    app, port = await _started(_config())
    loop = asyncio.get_running_loop()
    try:
        name = "web.shop.svc.cluster.local"
        first = query(name, use_edns=0, qid=1)
        await loop.run_in_executor(None, _exchange, port, [first])
        assert app.killer is not None
        wire = app.killer.wire
        hits = wire.hits
        variants = []
        for i in range(30):  # a new client cookie each time, as dig does
            variants.append(query(name, use_edns=0, qid=100 + i, options=[dns.edns.GenericOption(10, i.to_bytes(8, "big"))]))  # fmt: skip
        variants.append(query(name, use_edns=0, qid=200, options=[PADDING]))
        variants.append(query(name, use_edns=0, qid=201, options=[ECS]))
        variants.append(query(name, use_edns=0, qid=202, options=[SERVER_COOKIE, PADDING]))
        memo_hits = app.stats.memo_hits
        replies = await loop.run_in_executor(None, _exchange, port, variants)
        # Every variant is a hit: of the reply memo (the bare query's entry, which a client
        # COOKIE shares), or of the wire cache, which keys the other options away (the
        # first of them is its one miss, then the bare query's entry there serves the rest).
        served = wire.hits - hits + app.stats.memo_hits - memo_hits
        assert served == len(variants) - 1 and len(wire) == 1
        standard = app.responder  # the same query through the standard path
        for q, r in zip(variants, replies, strict=True):
            expected = standard.respond(q)
            assert isinstance(expected, bytes) and r == expected
    finally:
        await app.listeners.close_all()


async def test_malformed_refused_and_formerr_are_never_hits(transport: bool) -> None:
    """Issue 17: the answer-cache hit count was total queries minus misses, so 100 malformed
    packets added 100 hits (and fed coredns_cache_hits_total)."""
    app, port = await _started(_config(metrics_compat="coredns"))
    loop = asyncio.get_running_loop()
    try:
        stats = app.stats
        before = (stats.answer_hits, app.killer.wire.hits if app.killer else 0)
        garbage = [bytes([i, 1]) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff" for i in range(100)]  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for g in garbage:
            sock.sendto(g, ("127.0.0.1", port))
        sock.close()
        refused = [query("www.example.com", qid=i) for i in range(20)]  # --no-forward: REFUSED
        replies = await loop.run_in_executor(None, _exchange, port, refused)
        assert all(r[3] & 0x0F == dns.rcode.REFUSED for r in replies)
        assert app.killer is not None
        assert (stats.answer_hits, app.killer.wire.hits) == before
        good = [query("web.shop.svc.cluster.local", qid=i) for i in range(5)]
        await loop.run_in_executor(None, _exchange, port, good[:1])
        await loop.run_in_executor(None, _exchange, port, good[1:])
        # The first from the answers dict, the rest from the reply memo (asked first by the
        # UDP loop: registry answers are its hits in both modes); none from the wire cache.
        assert stats.answer_hits - before[0] == 5 and app.killer.wire.hits - before[1] == 0
        assert stats.memo_hits == 4
        # coredns_cache_hits_total: every answer served from a cache (dict or wire), no more.
        body, _ = await app.render_metrics()
        (line,) = [
            x for x in body.decode().splitlines() if x.startswith("coredns_cache_hits_total")
        ]
        assert float(line.split()[-1]) == stats.answer_hits + app.killer.wire.hits
    finally:
        await app.listeners.close_all()


async def test_big_udp_queries_are_answered_as_standard_mode_answers_them(transport: bool) -> None:
    """Issue 17: batched receive buffers were 4,096 bytes, so a larger query got FORMERR
    where standard mode answered it. Padding (RFC 7830) makes a large, valid query."""
    app, port = await _started(_config())
    loop = asyncio.get_running_loop()
    try:
        for size in (4000, 5000, 9000, 60000):
            big = query("web.shop.svc.cluster.local", use_edns=0, payload=1232, options=[dns.edns.GenericOption(12, bytes(size))], qid=size % 65536)  # fmt: skip
            (reply,) = await loop.run_in_executor(None, _exchange, port, [big])
            assert reply == app.responder.respond(big), size
            assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
    finally:
        await app.listeners.close_all()


async def test_a_serial_move_is_never_answered_from_the_old_negative_reply(transport: bool) -> None:
    """A negative answer carries the zone's SOA serial: an unrelated edit moves it, and the
    same query bytes must get the new serial at once."""
    app, port = await _started(_config())
    loop = asyncio.get_running_loop()
    try:
        q = query("nothing-here.shop.svc.cluster.local", qid=5)
        before = await loop.run_in_executor(None, _exchange, port, [q, q])
        assert before[0] == before[1]
        app.registry.upsert(Service("shop", "brand-new", "ClusterIP", ("10.96.77.7",), False, "", (), (), (), False))  # fmt: skip
        (after,) = await loop.run_in_executor(None, _exchange, port, [q])
        assert after != before[0]
        assert after == app.responder.respond(q)
    finally:
        await app.listeners.close_all()


@given(
    name=st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,20}){0,4}", fullmatch=True),
    rdtype=st.sampled_from(["A", "AAAA", "TXT", "SRV"]),
    payload=st.integers(512, 4096),
    do=st.booleans(),
)
def test_a_bare_opt_needs_no_walk_for_its_key(name: str, rdtype: str, payload: int, do: bool) -> None:  # fmt: skip
    """The shortcut that skips ``without_options`` for a query ending in an option-less OPT
    record loses nothing: the walk would give the query's own bytes after the ID as its key."""
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=payload, want_dnssec=do)
    data = q.to_wire()
    assert ends_in_bare_opt(data)
    assert without_options(data) in (None, data[2:])
    with_cookie = dns.message.make_query(name, rdtype, use_edns=0, payload=payload, options=[dns.edns.GenericOption(10, b"\x01" * 8)])  # fmt: skip
    assert not ends_in_bare_opt(with_cookie.to_wire())
