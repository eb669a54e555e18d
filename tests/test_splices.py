"""First sights of NXDOMAIN names spliced from a sibling's reply (kdns.server.splices), in the
batched UDP loop: through a real socket and one ``UdpServer``, every reply is compared byte for
byte with what the standard path gives the same query (a responder with no splices, asked
after), so a case passes only if the splice is the reply the rule gives (RFC 2308 3: the
zone's SOA in authority, its owner a pointer into the question) and lets go of what changed.
Each change case names the check whose removal breaks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from kdns.authority.localzones import from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.server import splices
from kdns.server import udp as udp_module
from kdns.server.meter import UDP4, Meter
from kdns.server.wire import Responder
from tests.test_registry import eps, headless, make, svc
from tests.test_udp_memo import Served

DEFAULT = "default.svc.cluster.local"
COOKIE = dns.edns.GenericOption(dns.edns.COOKIE, b"\x07" * 8)


@pytest.fixture(autouse=True)
def batched() -> Iterator[None]:
    if udp_module.LIBC is None:
        pytest.skip("no recvmmsg/sendmmsg here: splices are the batched loop's")
    yield


class Loop(Served):
    """One batched UdpServer on loopback answering from ``registry``, a client socket, and a
    reference: the standard path alone (a resolve with no rule to splice from)."""

    def __init__(self, registry: Registry, meter: Meter | None = None) -> None:
        super().__init__(registry, meter)
        self.registry = registry

    def reference(self, wire: bytes, dropped: bool = False) -> bytes:
        """The standard path's reply to ``wire`` on the same registry, with no splices (its
        resolve is not a Resolver's, so it has no rule to splice from); ``dropped``: b"" when
        it gives none."""
        resolver = Resolver(self.registry)
        plain = Responder(self.registry.answers, lambda *a: resolver.resolve(*a), 1232)
        plain.derived = self.registry.derived
        assert plain.splices is not None and plain.siblings is None
        reply = plain.respond_anew(wire)
        if reply is None and dropped:
            return b""
        assert isinstance(reply, bytes)
        return reply

    async def raw(self, wires: list[bytes]) -> list[bytes]:
        """Send every query before the loop runs (one batch), then read the raw replies, in
        the order of their IDs."""
        for wire in wires:
            self.client.sendto(wire, ("127.0.0.1", self.port))
        out: dict[int, bytes] = {}
        deadline = asyncio.get_running_loop().time() + 5
        while len(out) < len(wires) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            while True:
                try:
                    data = self.client.recv(4096)
                except BlockingIOError:
                    break
                out[int.from_bytes(data[:2], "big")] = data
        assert len(out) == len(wires), "a reply is missing"
        return [out[int.from_bytes(w[:2], "big")] for w in wires]

    async def same(self, wires: list[bytes]) -> list[dns.message.Message]:
        """Ask ``wires`` in one batch; each reply must equal the standard path's, byte for byte."""
        replies = await self.raw(wires)
        for wire, reply in zip(wires, replies, strict=True):
            assert reply == self.reference(wire), dns.message.from_wire(wire).question
        return [dns.message.from_wire(reply) for reply in replies]

    @property
    def spliced(self) -> int:
        return self.responder.stats.splice_hits


def query(name: str, qid: int, rdtype: str = "A", *, edns: int | None = None, cookie: bool = False, do: bool = False, rd: bool = True, size: int = 1232) -> bytes:  # fmt: skip
    options = [COOKIE] if cookie else []
    use_edns = 0 if (cookie or do or edns is not None) else False
    q = dns.message.make_query(name, rdtype, use_edns=use_edns, options=options, want_dnssec=do, payload=size)  # fmt: skip
    if not rd:
        q.flags &= ~dns.flags.RD
    q.id = qid
    return q.to_wire()


async def test_first_sights_of_every_shape_equal_the_standard_paths_reply() -> None:
    """Search-path first sights under learned parents, of many shapes: first labels of every
    length and case, query types, RD and CD, no EDNS, EDNS with DO, a small payload size, one
    client COOKIE (RFC 7873, answered as without). Every reply equals the standard path's;
    most were spliced (the first of each shape is learned from the standard path's)."""
    rng = random.Random(11)
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    loop = Loop(registry)
    parents = (DEFAULT, "svc.cluster.local", "cluster.local", f"example.com.{DEFAULT}", f"web.{DEFAULT}")  # fmt: skip
    try:
        wires = []
        for qid in range(1, 1501):
            label = "".join(rng.choice("abcXYZ019-") for _ in range(rng.choice((1, 5, 9))))
            shape = rng.choice(("plain", "edns", "do", "cookie", "small", "nord", "cd"))
            wire = query(
                f"{label}.{rng.choice(parents)}", qid, rng.choice(("A", "AAAA", "TXT", "SRV", "MX")),
                edns=0 if shape == "edns" else None, cookie=shape == "cookie", do=shape == "do",
                rd=shape != "nord", size=512 if shape == "small" else 1232,
            )  # fmt: skip
            if shape == "cd":
                wire = wire[:3] + bytes((wire[3] | 0x10,)) + wire[4:]
            wires.append(wire)
        for start in range(0, len(wires), 40):
            replies = await loop.same(wires[start : start + 40])
            assert all(r.rcode() == dns.rcode.NXDOMAIN for r in replies)
        assert loop.spliced > 700, loop.spliced
    finally:
        loop.close()


async def test_a_sibling_that_exists_is_answered_from_its_records() -> None:
    """Breaks without the per-query existence check: ``webx`` exists (same parent and length
    as ``nope``, whose reply the splice was learned from) and was never asked before."""
    registry = make()
    registry.upsert(svc("webx", "10.0.0.7"))
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1), query(f"nop2.{DEFAULT}", 2)])
        await loop.same([query(f"nope.{DEFAULT}", 3, "TXT"), query(f"nop2.{DEFAULT}", 4, "TXT")])
        assert loop.spliced == 2
        (reply,) = await loop.same([query(f"webx.{DEFAULT}", 5)])
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].address == "10.0.0.7"
        (nodata,) = await loop.same([query(f"webx.{DEFAULT}", 6, "TXT")])
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        # RFC 4343: names compare without regard to ASCII case (0x20 randomizing resolvers)
        (upper,) = await loop.same([query(f"WebX.{DEFAULT}", 7)])
        assert upper.answer[0][0].address == "10.0.0.7"
        assert loop.spliced == 2
    finally:
        loop.close()


async def test_a_sibling_made_since_is_answered_from_its_records() -> None:
    """The zone's SOA moves with the new name (RFC 2308), so the splice is checked anew."""
    registry = make()
    registry.upsert(svc("other", "10.0.0.6"))
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1), query(f"nop2.{DEFAULT}", 2)])
        assert loop.spliced == 1
        registry.upsert(svc("webx", "10.0.0.7"))
        (reply,) = await loop.same([query(f"webx.{DEFAULT}", 3)])
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer[0][0].address == "10.0.0.7"
        # The first sight after the change learns the splice anew; the next is spliced.
        await loop.same([query(f"nop3.{DEFAULT}", 4), query(f"nop4.{DEFAULT}", 5)])
        assert loop.spliced == 2
    finally:
        loop.close()


async def test_children_made_below_a_parent_that_did_not_exist_are_answered() -> None:
    """A parent that does not exist has no child (RFC 8020), so its splice skips the per-query
    existence check until the registry publishes a change: a headless Service ``web`` made
    since, its endpoint ``a`` below it, is answered from its records."""
    registry = make()
    registry.upsert(svc("other", "10.0.0.6"))
    loop = Loop(registry)
    try:
        await loop.same([query(f"x.web.{DEFAULT}", 1), query(f"y.web.{DEFAULT}", 2)])
        assert loop.spliced == 1
        registry.upsert(headless("web"))
        slice_ = eps("web-abc", "web", "10.1.0.7")
        endpoint = slice_.endpoints[0]._replace(hostname="a")
        registry.upsert(slice_._replace(endpoints=(endpoint,)))
        (reply,) = await loop.same([query(f"a.web.{DEFAULT}", 3)])
        assert reply.answer[0][0].address == "10.1.0.7"
        await loop.same([query(f"b.web.{DEFAULT}", 4), query(f"c.web.{DEFAULT}", 5)])
        assert loop.spliced == 2
    finally:
        loop.close()


async def test_a_wildcard_made_since_answers_the_sibling() -> None:
    """RFC 4592: breaks when a splice is used under a stamp it was not checked under (a
    wildcard was published since, so the rule no longer holds: ``sibling_answer``)."""
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("lan", 300),))
    registry = Registry(zones, ttl=5)
    registry.set_local(from_records("lan", ["host A 192.0.2.1"], 300))
    registry.synced = True
    loop = Loop(registry)
    try:
        await loop.same([query("nope.apps.lan", 1), query("nop2.apps.lan", 2)])
        assert loop.spliced == 1
        registry.set_local(from_records("lan", ["host A 192.0.2.1", "*.apps A 192.0.2.9"], 300))
        (reply,) = await loop.same([query("nop3.apps.lan", 3)])
        assert reply.answer[0][0].address == "192.0.2.9"
        assert loop.spliced == 1
    finally:
        loop.close()


async def test_a_name_asked_again_goes_to_the_reply_memo() -> None:
    """A splice takes first sights only: the second sight of a name is the derived memo's
    (the splice put it there) and the third the reply memo's. Breaks without the derived memo
    check: every sight would be spliced."""
    registry = make()
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1)])  # learns the splice
        for qid in (2, 3, 4):
            await loop.same([query(f"abcd.{DEFAULT}", qid)])
        stats = loop.responder.stats
        assert (loop.spliced, stats.derived_hits, stats.memo_hits) == (1, 2, 1)
    finally:
        loop.close()


async def test_spliced_replies_carry_the_zones_soa_as_it_moves() -> None:
    """RFC 2308 3: the SOA's serial moves with any change in the zone, which refills the
    shared Answer in place. Breaks without the body check when the stamp moved."""
    registry = make()
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1), query(f"nop2.{DEFAULT}", 2)])
        before = (await loop.same([query(f"nop3.{DEFAULT}", 3)]))[0].authority[0][0].serial
        registry.upsert(svc("other", "10.0.0.3"))
        after = (await loop.same([query(f"nop4.{DEFAULT}", 4)]))[0].authority[0][0].serial
        assert after != before
        (zone,) = [zone for zone in registry.zones if zone.text == "cluster.local"]
        zone.set_ttl(7)  # refilled in place, nothing published
        (reply,) = await loop.same([query(f"nop5.{DEFAULT}", 5)])
        assert reply.authority[0].ttl == 7
        await loop.same([query(f"nop6.{DEFAULT}", 6)])
        assert loop.spliced >= 3
    finally:
        loop.close()


async def test_a_new_resolver_starts_the_splices_afresh() -> None:
    """A reload that carves a stub domain out of the cluster domain (``my.cluster.local``
    forwarded): the old resolver's rule had ``cluster.local``'s children NXDOMAIN. Breaks when
    setting ``Responder.resolve`` keeps the splices."""
    registry = make()
    loop = Loop(registry)
    try:
        await loop.same([query("no.cluster.local", 1), query("ne.cluster.local", 2)])
        assert loop.spliced == 1 and loop.responder.splices
        loop.responder.resolve = Resolver(registry, forward=True, cuts=("my.cluster.local",)).resolve  # fmt: skip
        (reply,) = await loop.raw([query("my.cluster.local", 3)])
        assert dns.message.from_wire(reply).rcode() != dns.rcode.NXDOMAIN  # forwarded: none here
        assert loop.spliced == 1
    finally:
        loop.close()


class RefuseAll:
    def decide(self, client_ip: str, qname: bytes, qtype: int) -> str:
        return "refuse"


async def test_a_stage_that_judges_the_client_turns_splices_off() -> None:
    """An ACL set after splices were learned: its REFUSED, never a splice (a splice skips
    every stage, as a memo hit does). Breaks when the loop asks splices while the memo is off
    or the stage's setter keeps them."""
    registry = make()
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1), query(f"nop2.{DEFAULT}", 2)])
        assert loop.spliced == 1
        loop.responder.acl = RefuseAll()
        assert loop.responder.splices is None
        (reply,) = await loop.raw([query(f"nop3.{DEFAULT}", 3)])
        assert dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED
    finally:
        loop.close()


async def test_spliced_replies_are_metered_as_the_standard_path_meters_them() -> None:
    """coredns_dns_requests_total and friends: the same labels and sizes (zone, type, NXDOMAIN,
    request and response size, plain and with a COOKIE) as replies of the standard path."""
    meter = Meter()
    loop = Loop(make(), meter=meter)
    reference = Meter()
    plain = Responder(loop.registry.answers, lambda *a: Resolver(loop.registry).resolve(*a), 1232, reference)  # fmt: skip
    try:
        wires = [query(f"n{i:03d}.{DEFAULT}", i + 1, cookie=i % 2 == 1) for i in range(20)]
        await loop.raw(wires)
        assert loop.spliced == 18  # the first plain and the first with a COOKIE learned
        for wire in wires:
            loop.registry.derived.clear()
            plain.respond_anew(wire)
        counts = {key: sum(row[1:]) for key, row in meter.rows.items()}  # every bucket
        assert counts == {key: sum(row[1:]) for key, row in reference.rows.items()}
        for wire in wires[:2]:  # plain, then with a COOKIE (its reply carries our OPT)
            key = (UDP4, b"\x00\x01", "cluster.local", 3, len(wire), len(loop.reference(wire)))
            assert counts[key] == 10
    finally:
        loop.close()


def test_the_splices_are_bounded() -> None:
    registry = make()
    responder = Responder(registry.answers, Resolver(registry).resolve, 1232)
    responder.derived = registry.derived
    for i in range(splices.MAX_SPLICES + 50):
        wire = query(f"x.p{i}.{DEFAULT}", 1)
        responder.respond_anew(wire)  # learns p{i} as a parent
        responder.respond_anew(query(f"y.p{i}.{DEFAULT}", 2))
    assert 0 < len(responder.splices or ()) <= splices.MAX_SPLICES


async def test_types_the_derived_memo_does_not_keep_are_never_spliced() -> None:
    """A splice puts the name in the derived memo, which a change clears for the types it keeps
    only (MEMO_TYPES): HINFO first sights are the standard path's, so once the name is made its
    HINFO is NODATA, not a remembered NXDOMAIN. Breaks without the type check of
    ``sibling_answer``."""
    registry = make()
    registry.upsert(svc("other", "10.0.0.6"))  # the namespace is known: a change drops names'
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1)])  # the parent learned
        await loop.same([query(f"nop2.{DEFAULT}", 2, "HINFO"), query(f"webx.{DEFAULT}", 3, "HINFO")])  # fmt: skip
        registry.upsert(svc("webx", "10.0.0.7"))
        (reply,) = await loop.same([query(f"webx.{DEFAULT}", 4, "HINFO")])
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        assert loop.spliced == 0
    finally:
        loop.close()


async def test_the_query_log_sees_every_first_sight(caplog: pytest.LogCaptureFixture) -> None:
    """CoreDNS log: with the query log on, every query is logged, first sights a splice would
    answer among them. Breaks when the loop asks splices while it does not ask the memo."""
    registry = make()
    loop = Loop(registry)
    try:
        await loop.same([query(f"nope.{DEFAULT}", 1), query(f"nop2.{DEFAULT}", 2)])
        assert loop.spliced == 1
        loop.server.query_log = True
        with caplog.at_level("INFO", logger="kdns.query"):
            await loop.same([query(f"nop3.{DEFAULT}", 3)])
        assert "nop3" in caplog.text and loop.spliced == 1
    finally:
        loop.close()


def test_the_real_server_splices_a_walk_flood_and_counts_it() -> None:
    """End to end (the ``kdns`` process, demo cluster): 1,500 never-seen search-path names in
    batches, each NXDOMAIN with the zone's SOA and the client's own question, every one counted
    once in kdns_dns_responses_total; most answered by splices
    (kdns_cache_hits_total{cache="splices"}), counted as misses of the answers dict, as the
    standard path would."""
    from tests.kdnsproc import Kdns, udp_blast
    from tests.test_e2e_forward import _metric

    names = [f"new{i}.example.com.shop.svc.cluster.local" for i in range(1500)]
    wires = [query(name, 0, rd=i % 3 != 0) for i, name in enumerate(names)]
    with Kdns("--demo", "--no-forward") as proc:
        _, before = proc.get("metrics")
        replies, _ = udp_blast(proc.port, wires)
        _, text = proc.get("metrics")
    for wire, reply in zip(wires, replies, strict=True):
        assert reply is not None
        message = dns.message.from_wire(reply)
        assert message.rcode() == dns.rcode.NXDOMAIN and message.flags & dns.flags.AA
        assert message.question == dns.message.from_wire(wire).question
        assert message.authority[0].name.to_text() == "cluster.local."
        assert bool(message.flags & dns.flags.RD) == bool(wire[2] & 1)
    spliced = _metric(text, "kdns_cache_hits_total", cache="splices")
    assert spliced > 1000, spliced
    nx = _metric(text, "kdns_dns_responses_total", rcode="NXDOMAIN", zone="cluster.local.")
    assert nx - _metric(before, "kdns_dns_responses_total", rcode="NXDOMAIN") == len(wires)
    asked = _metric(text, "kdns_cache_misses_total", cache="splices") + spliced
    assert asked == len(wires)  # every first sight asked the splices: hit or miss
    misses = _metric(text, "kdns_cache_misses_total", cache="answers")
    assert misses - _metric(before, "kdns_cache_misses_total", cache="answers") == len(wires)


async def test_mangled_datagrams_get_what_the_standard_path_gives() -> None:
    """Splices are keyed by bytes: a datagram of a learned shape with any byte changed, cut
    short or grown (a first label's length that runs past the end, a compression pointer, a
    count that no longer holds, a cut COOKIE) must get the standard path's reply, FORMERR and
    silence included. 2,000 mangled datagrams in batches, each compared byte for byte."""
    rng = random.Random(3)
    registry = make()
    loop = Loop(registry)
    shapes = [query(f"nope.{DEFAULT}", 1), query(f"nope.{DEFAULT}", 2, cookie=True), query(f"nope.{DEFAULT}", 3, do=True)]  # fmt: skip
    try:
        await loop.same(shapes + [query(f"nop2.{DEFAULT}", 4)])
        assert loop.spliced == 1
        mangled = []
        for qid in range(10, 2010):
            wire = bytearray(rng.choice(shapes))
            wire[:2] = qid.to_bytes(2, "big")
            how = rng.randrange(4)
            if how == 0:  # a byte changed past the ID
                wire[rng.randrange(2, len(wire))] = rng.randrange(256)
            elif how == 1:
                del wire[rng.randrange(12, len(wire)) :]
            elif how == 2:
                wire += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
            else:  # the first label's length
                wire[12] = rng.choice((0, 1, 3, 5, 63, 64, 0xC0, 255))
            mangled.append(bytes(wire))
        sent = loop.responder.stats.splice_hits
        for start in range(0, len(mangled), 50):
            batch = mangled[start : start + 50]
            for wire in batch:
                loop.client.sendto(wire, ("127.0.0.1", loop.port))
            got: dict[int, bytes] = {}
            quiet = 0
            while quiet < 5:  # until nothing came for 50 ms
                await asyncio.sleep(0.01)
                quiet += 1
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = loop.client.recv(4096)
                        got[int.from_bytes(data[:2], "big")] = data
                        quiet = 0
            want = {int.from_bytes(w[:2], "big"): loop.reference(w, dropped=True) for w in batch}
            assert got == {qid: reply for qid, reply in want.items() if reply}
        assert loop.responder.stats.splice_hits > sent  # some mangled ones were still queries
        assert loop.server.stats.errors == 0
    finally:
        loop.close()


async def test_response_rate_limiting_judges_spliced_replies() -> None:
    """RRL (BIND's, CoreDNS's ratelimit) holds for every reply, splices included: under the
    limit the spliced replies are the standard path's; past it, NXDOMAINs of one zone from one
    client are dropped or slipped (TC, no answer) like any other."""
    from kdns.server.rrl import Rrl

    registry = make()
    loop = Loop(registry)
    loop.responder.rrl = Rrl(1000, slip=2)
    try:
        await loop.same([query(f"n{i:03d}.{DEFAULT}", i + 1) for i in range(40)])
        assert loop.spliced == 39
        loop.responder.rrl = Rrl(5, slip=2)
        wires = [query(f"m{i:03d}.{DEFAULT}", i + 100) for i in range(60)]
        for wire in wires:
            loop.client.sendto(wire, ("127.0.0.1", loop.port))
        got = []
        quiet = 0
        while quiet < 10:
            await asyncio.sleep(0.01)
            quiet += 1
            with contextlib.suppress(BlockingIOError):
                while True:
                    got.append(dns.message.from_wire(loop.client.recv(4096)))
                    quiet = 0
        full = [m for m in got if not m.flags & dns.flags.TC]
        assert 0 < len(full) < 20 and len(got) < 60  # limited: some dropped, some slipped
        assert all(m.rcode() == dns.rcode.NXDOMAIN and m.authority for m in full)
        assert loop.spliced > 39 + 40
    finally:
        loop.close()
