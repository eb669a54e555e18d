"""The batched UDP loop asks the reply memo itself (kdns.server.udp ``_answer_batch``), before
the standard path: these cases go through a real socket and one ``UdpServer``, so a reply can
only be right if the loop's inline copy of ``replymemo.holds`` let go of what changed, and the
metrics can only add up if the hits the loop answered were recorded after the batch's send.

Each case asks the same question several times before and after a change: the repeats are
the loop's memo hits (the first ask fills the memo through ``Responder.respond_anew``).
"""

from __future__ import annotations

import asyncio
import socket

import dns.edns
import dns.message
import dns.rcode
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.model import Service
from kdns.server.meter import Meter
from kdns.server.replymemo import M_COOKIE_ROWS, M_METER, M_ROWS, keep_row
from kdns.server.stats import Stats
from kdns.server.udp import UdpServer
from kdns.server.wire import Responder
from tests.test_registry import make, svc

WEB = "web.default.svc.cluster.local"


class Served:
    """One UdpServer on loopback answering from ``registry``, and a client socket."""

    def __init__(self, registry: Registry, meter: Meter | None = None) -> None:
        self.responder = Responder(registry.answers, Resolver(registry).resolve, 1232, meter)
        self.responder.derived = registry.derived
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = UdpServer(sock, self.responder, Stats())
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.setblocking(False)

    async def ask(self, wires: list[bytes]) -> list[dns.message.Message]:
        """Send every query before the loop runs (one batch when batched), then read the
        replies in order."""
        for wire in wires:
            self.client.sendto(wire, ("127.0.0.1", self.port))
        out: list[dns.message.Message] = []
        deadline = asyncio.get_running_loop().time() + 5
        while len(out) < len(wires) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            while True:
                try:
                    out.append(dns.message.from_wire(self.client.recv(4096)))
                except BlockingIOError:
                    break
        assert len(out) == len(wires), "a reply is missing"
        return out

    def close(self) -> None:
        self.server.close()
        self.client.close()


def query(name: str, qid: int, rdtype: str = "A", cookie: bool = False) -> bytes:
    options: list[dns.edns.Option] = (
        [dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)] if cookie else []
    )
    q = dns.message.make_query(name, rdtype, use_edns=0 if cookie else False, options=options)
    q.id = qid
    return q.to_wire()


def addresses(message: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in message.answer for rr in rrset]


async def test_loop_hits_answer_with_each_clients_id(transport: object) -> None:
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    served = Served(registry)
    try:
        await served.ask([query(WEB, 1)])  # fills the memo
        replies = await served.ask([query(WEB, qid) for qid in range(10, 20)])
        assert [r.id for r in replies] == list(range(10, 20))
        assert all(addresses(r) == ["10.0.0.1"] for r in replies)
        assert served.responder.stats.answer_hits == 11
    finally:
        served.close()


async def test_loop_hits_follow_a_service_edit_at_once(transport: object) -> None:
    """Breaks when the loop's check leaves out the answers dict's identity (the Answer the
    entry was made from is no longer the one the registry serves)."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    served = Served(registry)
    try:
        for _ in range(3):
            assert all(addresses(r) == ["10.0.0.1"] for r in await served.ask([query(WEB, 1)] * 4))  # fmt: skip
        registry.upsert(svc("web", "10.0.0.2"))
        assert all(addresses(r) == ["10.0.0.2"] for r in await served.ask([query(WEB, 2)] * 4))
        registry.delete("Service", ("default", "web"))
        replies = await served.ask([query(WEB, 3)] * 4)
        assert all(r.rcode() == dns.rcode.NXDOMAIN for r in replies)
    finally:
        served.close()


async def test_loop_hits_of_a_negative_answer_follow_its_soa(transport: object) -> None:
    """RFC 2308 3: a negative reply carries the zone's SOA, whose serial moves with any change
    in the zone; the zone refills the shared Answer in place. Breaks when the loop's check
    leaves out the body's identity."""
    registry = make()
    served = Served(registry)
    nx = query("nope.default.svc.cluster.local", 5)
    try:
        before = {r.authority[0][0].serial for r in await served.ask([nx] * 4)}
        registry.upsert(svc("other", "10.0.0.3"))
        after = {r.authority[0][0].serial for r in await served.ask([nx] * 4)}
        assert len(before) == 1 and len(after) == 1 and after != before
        registry.upsert(svc("nope", "10.0.0.4"))
        assert all(addresses(r) == ["10.0.0.4"] for r in await served.ask([nx] * 4))
    finally:
        served.close()


async def test_loop_hits_of_a_negative_answer_follow_a_refill_in_place(transport: object) -> None:
    """A zone refills its shared negative answers in place whenever its SOA moves; here one
    moves with nothing published (a zone's TTL set on its own), so the answers dict's stamp
    stays. Breaks when ``Answer.refill`` leaves ``Refills.mark`` where it was: the memo would
    serve the SOA its reply was made with."""
    registry = make()
    served = Served(registry)
    nx = query("nope.default.svc.cluster.local", 5)
    try:
        for _ in range(2):
            assert {r.authority[0].ttl for r in await served.ask([nx] * 4)} == {5}
        (zone,) = [zone for zone in registry.zones if zone.text == "cluster.local"]
        zone.set_ttl(7)
        assert {r.authority[0].ttl for r in await served.ask([nx] * 4)} == {7}
    finally:
        served.close()


async def test_loop_hits_rotate_multi_address_answers_in_turn(transport: object) -> None:
    """CoreDNS loadbalance, from the memo: each reply takes the next turn of the records, as
    the standard path gives them (the same replies, in the same order, as a responder
    without the memo), and an edit of the addresses is served at once (a rotated entry is
    looked up on every hit)."""
    registry = make()
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    registry.upsert(Service("default", "web", "ClusterIP", ips, False, "", (), (), (), False))
    served = Served(registry)
    served.responder.loadbalance = True
    plain = Responder(registry.answers, Resolver(registry).resolve, 1232)
    plain.derived = registry.derived
    plain.loadbalance = True
    plain._memo = None
    try:
        replies = await served.ask([query(WEB, 1)])
        for _ in range(3):  # later batches too: a rotated entry is never served as it was kept
            replies += await served.ask([query(WEB, 1)] * 8)
        expected = [dns.message.from_wire(plain.respond(query(WEB, 1))) for _ in range(25)]  # type: ignore[arg-type]
        assert [(r.flags, addresses(r)) for r in replies] == [(e.flags, addresses(e)) for e in expected]  # fmt: skip
        assert [addresses(r)[0] for r in replies[:3]] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
        assert served.responder.stats.memo_hits == 24
        registry.upsert(Service("default", "web", "ClusterIP", ips[:2], False, "", (), (), (), False))  # fmt: skip
        firsts = [addresses(r)[0] for r in await served.ask([query(WEB, 2)] * 4)]
        assert sorted(set(firsts)) == ["10.0.0.1", "10.0.0.2"]
    finally:
        served.close()


async def test_loop_hits_are_metered_one_row_per_reply(transport: object) -> None:
    """Every reply counted once, with its own labels and sizes: a COOKIE query shares the bare
    query's memo entry (RFC 7873: kdns acts on no cookie) but is metered with its own size."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    meter = Meter()
    served = Served(registry, meter)
    bare, cookie = query(WEB, 1), query(WEB, 2, cookie=True)
    try:
        await served.ask([bare])
        await served.ask([bare] * 5 + [cookie] * 3)
        await served.ask([cookie, bare])
        counts: dict[int, int] = {}
        for key, row in meter.rows.items():
            counts[key[4]] = counts.get(key[4], 0) + int(sum(row[1:]))
        assert counts == {len(bare): 7, len(cookie): 4}
        assert served.responder.stats.answer_hits == 11
    finally:
        served.close()


async def test_loop_batch_of_cookies_short_datagrams_and_hits(transport: object) -> None:
    """One batch mixing what the loop looks at in C (bare hits, one-COOKIE hits found by the
    bare query's entry) with what it must leave to the standard path: a 1-byte datagram
    first (no header: dropped, RFC 1035 4.1.1; its slot's "last 14 bytes" lie before the
    receive area), a header asking no question (FORMERR), a COOKIE query the memo does not
    hold. Each gets its own reply, or none, with its own ID."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    served = Served(registry)
    try:
        await served.ask([query(WEB, 1), query(WEB, 2, cookie=True)])  # fills the memo
        empty = (40).to_bytes(2, "big") + b"\x01\x00" + b"\x00" * 8
        wires = [b"\x07", query(WEB, 41, cookie=True), query(WEB, 42), empty]
        wires += [query("other.default.svc.cluster.local", 43, cookie=True), query(WEB, 44, cookie=True)]  # fmt: skip
        for wire in wires:
            served.client.sendto(wire, ("127.0.0.1", served.port))
        replies: dict[int, dns.message.Message] = {}
        deadline = asyncio.get_running_loop().time() + 5
        while len(replies) < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            while True:
                try:
                    data = served.client.recv(4096)
                except BlockingIOError:
                    break
                message = dns.message.from_wire(data)
                replies[message.id] = message
        await asyncio.sleep(0.05)
        assert sorted(replies) == [40, 41, 42, 43, 44]
        assert [addresses(replies[i]) for i in (41, 42, 44)] == [["10.0.0.1"]] * 3
        assert replies[43].rcode() == dns.rcode.NXDOMAIN
        assert replies[40].rcode() == dns.rcode.FORMERR
        assert served.responder.stats.memo_hits == 3
    finally:
        served.close()


async def test_repeats_are_answered_over_the_batch_without_the_one_by_one_path(transport: object, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Batched: repeated questions, bare or with one client COOKIE (once the loop has seen
    cookies), are answered by the look over the whole batch; the one-by-one path runs only
    for what that look left. Breaks when the batch look (or its cookie pass) finds nothing,
    or when a batch of hits does not turn the look over the batch back on."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    served = Served(registry)
    one_by_one: list[int] = []
    answer_rest = UdpServer._answer_rest

    def counted(self: UdpServer, batch: object, rest: list[int], *args: object) -> list[int]:
        one_by_one.append(len(rest))
        return answer_rest(self, batch, rest, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(UdpServer, "_answer_rest", counted)
    try:
        await served.ask([query(WEB, 1), query(WEB, 2, cookie=True)])  # fills the memo
        # A batch of misses has the next one looked at one by one (the memo answered too few
        # to look over the batch); its hits turn the look over the batch back on, and its
        # cookies the look for them (until a batch has none).
        await served.ask([query(WEB, 2, cookie=True)] * 2)
        one_by_one.clear()
        for wires in ([query(WEB, 4, cookie=True)] * 6, [query(WEB, 3)] * 6):
            assert all(addresses(r) == ["10.0.0.1"] for r in await served.ask(wires))
        if transport == "batched":
            assert one_by_one == []
        assert served.responder.stats.memo_hits == 2 + 12
    finally:
        served.close()


def test_a_new_meter_lets_go_of_every_kept_row() -> None:
    """A reload's new meter: a row kept for the other channel belongs to the old meter and
    must not be counted into."""
    old, new = Meter(), Meter()
    entry: list[object] = [True, b"", None, b"", b"", b"", None, None, None, 0, None, None, None]
    for slot in (M_ROWS, M_ROWS + 1, M_COOKIE_ROWS, M_COOKIE_ROWS + 1):
        keep_row(entry, slot, old, [0.0])
    row = [0.0]
    keep_row(entry, M_ROWS, new, row)
    assert entry[M_ROWS] is row and entry[M_METER] is new
    assert entry[M_ROWS + 1] is entry[M_COOKIE_ROWS] is entry[M_COOKIE_ROWS + 1] is None


async def test_loop_hits_follow_a_new_registry(transport: object) -> None:
    """A config reload that rebuilds the registry swaps the responder's dicts: an entry
    checked under the old registry's stamp must not pass under the new one (each registry's
    derived memo has a stamp no other had)."""
    old = make()
    old.upsert(svc("web", "10.0.0.1"))
    served = Served(old)
    try:
        for _ in range(2):
            assert all(addresses(r) == ["10.0.0.1"] for r in await served.ask([query(WEB, 1)] * 4))  # fmt: skip
        new = make()
        new.upsert(svc("web", "10.0.0.2"))
        served.responder.answers = new.answers
        served.responder.derived = new.derived
        assert all(addresses(r) == ["10.0.0.2"] for r in await served.ask([query(WEB, 2)] * 4))
    finally:
        served.close()


async def test_loop_hits_follow_a_ttl_reload(transport: object) -> None:
    """A TTL reload re-renders every answer: breaks when ``Registry.set_ttl`` keeps the stamp."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    served = Served(registry)
    try:
        for _ in range(2):
            assert {r.answer[0].ttl for r in await served.ask([query(WEB, 1)] * 4)} == {5}
        registry.set_ttl(9)
        assert {r.answer[0].ttl for r in await served.ask([query(WEB, 2)] * 4)} == {9}
    finally:
        served.close()
