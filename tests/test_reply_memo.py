"""The standard path's reply memo (``Responder._remember``): a pre-rendered answer's reply kept
by the query's bytes after its ID. Its invalidation story: an entry is served only while the
answers dict (or the derived memo) still maps its key to the same Answer object with the same
body bytes; the settings a reply depends on start the memo afresh when they are set.

Every case asks through ONE responder before and after a change, so the second reply can only
be right if the memo let go of the first; each names the check whose removal breaks it.
"""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.model import Service
from kdns.server import wire as wire_module
from kdns.server.meter import UDP4, UDP6, Meter
from kdns.server.wire import Responder
from tests.test_registry import make, svc

WEB = "web.default.svc.cluster.local"


def responder(registry: Registry, meter: Meter | None = None) -> Responder:
    r = Responder(registry.answers, Resolver(registry).resolve, 1232, meter)
    r.derived = registry.derived
    return r


def query(name: str, rdtype: str = "A", edns: bool = False, qid: int = 7) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    q.id = qid
    return q.to_wire()


def ask(r: Responder, data: bytes, channel: int = UDP4) -> dns.message.Message:
    out = r.respond(data, channel)
    assert isinstance(out, bytes)
    return dns.message.from_wire(out)


def addresses(message: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in message.answer for rr in rrset]


def test_a_repeated_question_is_answered_from_the_memo_with_the_clients_id() -> None:
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    first = r.respond(query(WEB, qid=1))
    assert r._memo is not None and len(r._memo) == 1
    second = r.respond(query(WEB, qid=2))
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert first[:2] == b"\x00\x01" and second[:2] == b"\x00\x02" and first[2:] == second[2:]
    assert r.stats.answer_hits == 2  # a memo hit is an answer served from the dict


def test_a_service_edit_is_served_at_once() -> None:
    """Breaks without the identity check against the answers dict."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    assert addresses(ask(r, query(WEB))) == ["10.0.0.1"]
    assert addresses(ask(r, query(WEB))) == ["10.0.0.1"]
    registry.upsert(svc("web", "10.0.0.2"))
    assert addresses(ask(r, query(WEB))) == ["10.0.0.2"]
    registry.delete("Service", ("default", "web"))
    assert ask(r, query(WEB)).rcode() == dns.rcode.NXDOMAIN


def test_a_remembered_nxdomain_follows_the_name_appearing() -> None:
    """A derived (negative) answer: served from the memo while the derived memo holds it."""
    registry = make()
    name = "late.default.svc.cluster.local"
    r = responder(registry)
    for _ in range(3):
        assert ask(r, query(name)).rcode() == dns.rcode.NXDOMAIN
    registry.upsert(svc("late", "10.0.0.9"))
    assert addresses(ask(r, query(name))) == ["10.0.0.9"]


def test_a_negative_answers_soa_moving_in_place_is_served() -> None:
    """Zones refill their shared negative answers in place (same Answer object, new body):
    breaks without the body identity check."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    nx = query("nope.default.svc.cluster.local")
    before = [ask(r, nx).authority[0][0].serial for _ in range(3)]
    registry.upsert(svc("other", "10.0.0.3"))  # the zone's serial moves
    after = ask(r, nx).authority[0][0].serial
    fresh = Responder(registry.answers, Resolver(registry).resolve).respond(nx)
    assert isinstance(fresh, bytes)
    assert before[0] == before[2] and after != before[0]
    assert after == dns.message.from_wire(fresh).authority[0][0].serial


def test_turning_loadbalance_on_rotates_remembered_answers() -> None:
    """CoreDNS loadbalance: a reload that turns rotation on must reach replies kept before."""
    registry = make()
    registry.upsert(Service("default", "web", "ClusterIP", ("10.0.0.1", "10.0.0.2"), False, "", (), (), (), False))  # fmt: skip
    r = responder(registry)
    firsts = {addresses(ask(r, query(WEB)))[0] for _ in range(4)}
    assert len(firsts) == 1
    r.loadbalance = True
    firsts = {addresses(ask(r, query(WEB)))[0] for _ in range(4)}
    assert len(firsts) == 2


def test_rotated_answers_are_remembered_and_take_every_turn() -> None:
    """CoreDNS loadbalance: a rotated reply is kept (it was the costliest answer still built
    per query) and every hit takes the next turn, exactly as the standard path would; an
    edit of the addresses is served at once."""
    registry = make()
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    registry.upsert(Service("default", "web", "ClusterIP", ips, False, "", (), (), (), False))
    r, plain = responder(registry), responder(registry)
    r.loadbalance = plain.loadbalance = True
    plain._memo = None
    for qid in range(10):
        assert r.respond(query(WEB, qid=qid)) == plain.respond(query(WEB, qid=qid))
    assert r.stats.memo_hits == 9
    registry.upsert(Service("default", "web", "ClusterIP", ips[1:], False, "", (), (), (), False))  # fmt: skip
    assert {addresses(ask(r, query(WEB)))[0] for _ in range(6)} == set(ips[1:])


def test_configuring_an_acl_turns_the_memo_off() -> None:
    """A stage that judges the client must see every query: breaks when setting ``acl``
    leaves the memo on."""

    class BlockAll:
        def decide(self, client_ip: str, qname: bytes, qtype: int) -> str:
            return "block"

    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    for _ in range(2):
        assert ask(r, query(WEB)).rcode() == dns.rcode.NOERROR
    r.acl = BlockAll()
    assert r._memo is None
    assert ask(r, query(WEB)).rcode() == dns.rcode.REFUSED
    r.acl = None
    assert r._memo == {}


def test_a_new_udp_size_reaches_remembered_replies() -> None:
    """Our OPT record says our payload size: set_udp_size starts the memo afresh."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    for _ in range(2):
        assert ask(r, query(WEB, edns=True)).payload == 1232
    r.set_udp_size(4096)
    assert ask(r, query(WEB, edns=True)).payload == 4096


def test_a_client_cookie_shares_the_entry_of_the_same_query_without_it() -> None:
    """RFC 7873: a server that does not do cookies answers as if the option were absent, so
    a one-cookie query (dig's default) is kept under the bare query's key; other options
    never fill the memo (they would make each entry one client's)."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    bare = query(WEB, edns=True)
    cookie = dns.message.make_query(WEB, "A", use_edns=0, options=[dns.edns.GenericOption(10, b"\x01" * 8)])  # fmt: skip
    cookie.id = 7
    other = dns.message.make_query(WEB, "A", use_edns=0, options=[dns.edns.GenericOption(3, b"")])  # fmt: skip
    other.id = 7
    first = r.respond(cookie.to_wire())
    assert r._memo is not None and list(r._memo) == [bare[2:]]
    assert r.respond(bare) == first == r.respond(cookie.to_wire())
    assert isinstance(first, bytes) and addresses(dns.message.from_wire(first)) == ["10.0.0.1"]
    assert r.respond(other.to_wire()) == first
    assert list(r._memo) == [bare[2:]]


def test_tcp_is_never_answered_from_the_memo() -> None:
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    r.respond(query(WEB), wire_module.TCP4)
    assert r._memo == {}


def test_the_memo_is_bounded() -> None:
    registry = make()
    r = responder(registry)
    for i in range(wire_module.MEMO_MAX + 100):
        data = query(f"n{i}.default.svc.cluster.local")
        r.respond(data)
        r.respond(data)  # the second sight is a derived answer: remembered
        assert r._memo is not None and len(r._memo) <= wire_module.MEMO_MAX


def test_memo_hits_are_metered_exactly_per_channel() -> None:
    """Every query is counted once, in its own channel's row, hit or not."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    meter = Meter()
    r = responder(registry, meter)
    for _ in range(5):
        ask(r, query(WEB), UDP4)
    for _ in range(3):
        ask(r, query(WEB), UDP6)
    counted = {key[0]: sum(row[1:]) for key, row in meter.rows.items()}
    assert counted == {UDP4: 5, UDP6: 3}
    # A meter swapped in (metrics reconfigured) gets the next hits, not the old one.
    fresh = Meter()
    r.meter = fresh
    ask(r, query(WEB), UDP4)
    assert sum(sum(row[1:]) for row in fresh.rows.values()) == 1
    assert sum(sum(row[1:]) for row in meter.rows.values()) == 8


def test_a_full_memo_keeps_its_entries_and_renews_after_turning_many_away(monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Bounded without thrashing: a full memo turns new questions away (counted) and keeps
    serving what it holds; a stale entry is still replaced; after RENEW_AFTER refusals it
    starts afresh so that names popular now get in."""
    from kdns.server import replymemo

    monkeypatch.setattr(replymemo, "MEMO_MAX", 4)
    monkeypatch.setattr(replymemo, "RENEW_AFTER", 6)
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    held = [query(f"n{i}.default.svc.cluster.local") for i in range(3)] + [query(WEB)]
    for data in held * 2:  # derived names are kept on their second sight
        r.respond(data)
    assert r._memo is not None and len(r._memo) == 4
    hits = r.stats.derived_hits + r.stats.answer_hits
    for i in range(5):  # new questions, twice each: turned away, the held ones stay
        data = query(f"new{i}.default.svc.cluster.local")
        r.respond(data)
        r.respond(data)
    assert set(r._memo) == {d[2:] for d in held} and r.memo_refused == 5
    registry.upsert(svc("web", "10.0.0.2"))  # a held entry goes stale: replaced, not refused
    assert addresses(ask(r, query(WEB))) == ["10.0.0.2"]
    assert r.memo_refused == 5 and r._memo[query(WEB)[2:]][2] is registry.answers[r._memo[query(WEB)[2:]][1]]  # fmt: skip
    assert r.stats.derived_hits + r.stats.answer_hits > hits
    late = query("late.default.svc.cluster.local")
    r.respond(late)
    r.respond(late)  # the sixth refusal: the memo starts afresh, and this one gets in
    assert list(r._memo) == [late[2:]] and r.memo_refused == 0
