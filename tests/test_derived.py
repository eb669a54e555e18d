"""The registry's derived answers (negative answers, computed pod names, ANY) are remembered
for the hot path and dropped exactly when a change could alter them.

Each case asks through a Responder that reads the memo, changes the registry, and asks again:
the answer must be what a fresh responder with no memo gives, byte for byte.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.dns import names
from kdns.model import Endpoint, EndpointPort, EndpointSlice, Namespace, Service
from kdns.server import edns as edns_module
from kdns.server.wire import Responder
from tests.test_registry import eps, headless, make, svc

QUERY_ID = 4242


def responder(registry: Registry, memo: bool = True) -> Responder:
    r = Responder(registry.answers, Resolver(registry).resolve)
    if memo:
        r.derived = registry.derived
    return r


def wire(name: str, rdtype: str = "A", edns: int | None = None, do: bool = False) -> bytes:
    query = dns.message.make_query(
        name, rdtype, use_edns=edns if edns is not None else False, want_dnssec=do
    )
    query.id = QUERY_ID
    return query.to_wire()


def fresh(registry: Registry, query: bytes) -> bytes:
    """The answer with no memo at all (what standard mode gave before memoizing)."""
    saved = dict(registry.derived)
    registry.derived.clear()
    out = responder(registry, memo=False).respond(query)
    registry.derived.clear()
    registry.derived.update(saved)
    assert isinstance(out, bytes)
    return out


def ask(registry: Registry, query: bytes) -> dns.message.Message:
    """Ask twice through the memo (fill, then hit) and check both against a fresh answer."""
    r = responder(registry)
    first, second = r.respond(query), r.respond(query)
    assert first == second == fresh(registry, query)
    assert isinstance(first, bytes)
    return dns.message.from_wire(first)


def rcode(registry: Registry, name: str, rdtype: str = "A") -> int:
    return ask(registry, wire(name, rdtype)).rcode()


def test_negative_answers_are_remembered() -> None:
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    ask(registry, wire("nope.default.svc.cluster.local"))
    ask(registry, wire("web.default.svc.cluster.local", "MX"))
    assert len(registry.derived) == 2


def test_nxdomain_name_that_starts_existing_answers_at_once() -> None:
    """Issue: a name that starts existing stops being NXDOMAIN at once."""
    registry = make()
    name = "late.default.svc.cluster.local"
    assert rcode(registry, name) == dns.rcode.NXDOMAIN
    registry.upsert(svc("late", "10.0.0.9"))
    answer = ask(registry, wire(name))
    assert answer.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for rrset in answer.answer for r in rrset] == ["10.0.0.9"]


def test_nodata_type_that_appears_answers_at_once() -> None:
    """RFC 2308 NODATA for AAAA, then the Service turns dual-stack: AAAA answers."""
    registry = make()
    name = "web.default.svc.cluster.local"
    registry.upsert(svc("web", "10.0.0.1"))
    nodata = ask(registry, wire(name, "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    dual = Service("default", "web", "ClusterIP", ("10.0.0.1", "fd00::1"), False, "", (), (), (), False)  # fmt: skip
    registry.upsert(dual)
    assert [r.to_text() for rrset in ask(registry, wire(name, "AAAA")).answer for r in rrset] == [
        "fd00::1"
    ]


def test_empty_non_terminal_made_and_gone() -> None:
    """RFC 8020: a namespace that gains a Service exists (NODATA), and loses it again."""
    registry = make()
    name = "fresh.svc.cluster.local"
    assert rcode(registry, name) == dns.rcode.NXDOMAIN
    registry.upsert(svc("a", "10.0.0.1", ns="fresh"))
    assert rcode(registry, name) == dns.rcode.NOERROR
    registry.delete("Service", ("fresh", "a"))
    assert rcode(registry, name) == dns.rcode.NXDOMAIN


def test_name_that_stops_existing_is_nxdomain_at_once() -> None:
    registry = make()
    registry.upsert(svc("gone", "10.0.0.2"))
    name = "gone.default.svc.cluster.local"
    assert rcode(registry, name, "TXT") == dns.rcode.NOERROR  # NODATA, remembered
    registry.delete("Service", ("default", "gone"))
    assert rcode(registry, name, "TXT") == dns.rcode.NXDOMAIN
    assert rcode(registry, name) == dns.rcode.NXDOMAIN


def test_computed_pod_name_follows_its_namespace() -> None:
    """CoreDNS pods insecure: a-b-c-d.<ns>.pod answers while the namespace exists."""
    registry = make()
    name = "10-1-2-3.team.pod.cluster.local"
    assert rcode(registry, name) == dns.rcode.NXDOMAIN
    registry.upsert(Namespace("team"))
    assert rcode(registry, name) == dns.rcode.NOERROR
    registry.delete("Namespace", ("", "team"))
    assert rcode(registry, name) == dns.rcode.NXDOMAIN


def test_remembered_negative_answer_carries_the_current_serial() -> None:
    """The SOA in a remembered NXDOMAIN moves with the zone's serial (RFC 1982)."""
    registry = make()
    query = wire("nothing.default.svc.cluster.local")
    before = ask(registry, query).authority[0][0].serial
    registry.upsert(svc("other", "10.0.0.3"))
    after = ask(registry, query).authority[0][0].serial
    assert after > before


def test_any_answer_follows_its_glue() -> None:
    """ANY is derived (RFC 8482) with the additional addresses of its SRV targets."""
    registry = make()
    registry.upsert(headless("db"))
    registry.upsert(eps("db-1", "db", "10.1.0.1"))
    query = wire("db.default.svc.cluster.local", "ANY")
    first = ask(registry, query)
    registry.upsert(eps("db-1", "db", "10.1.0.1", "10.1.0.2"))
    second = ask(registry, query)
    assert len(second.answer[0]) > len(first.answer[0]) or second.answer != first.answer


def test_headless_without_ready_endpoints_is_nxdomain() -> None:
    """Spec 2.4.1 (schema 1.1.0): no ready endpoints -> NXDOMAIN, and then back."""
    registry = make()
    registry.upsert(headless("idle"))
    registry.upsert(eps("idle-1", "idle", "10.2.0.1", ready=False))
    name = "idle.default.svc.cluster.local"
    for rdtype in ("A", "AAAA", "SRV"):
        assert rcode(registry, name, rdtype) == dns.rcode.NXDOMAIN
    assert rcode(registry, "_p._tcp." + name, "SRV") == dns.rcode.NXDOMAIN
    registry.upsert(eps("idle-1", "idle", "10.2.0.1"))
    assert rcode(registry, name) == dns.rcode.NOERROR
    assert rcode(registry, "_p._tcp." + name, "SRV") == dns.rcode.NOERROR


def test_edns_on_negative_answers() -> None:
    """RFC 6891: OPT echoed on NXDOMAIN and NODATA, DO copied (RFC 3225 3), same rcode."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    for name, rdtype, expected in (
        ("nope.default.svc.cluster.local", "A", dns.rcode.NXDOMAIN),
        ("web.default.svc.cluster.local", "MX", dns.rcode.NOERROR),
    ):
        for do in (False, True):
            reply = ask(registry, wire(name, rdtype, edns=0, do=do))
            assert reply.rcode() == expected
            assert reply.edns == 0
            assert bool(reply.ednsflags & dns.flags.DO) == do
            assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA


def test_edns_fast_path_matches_the_full_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The remembered option-less OPT gives the same reply as the first (parsed) one, and
    a query with options (a cookie) is answered the same way. The module's table of OPTs
    seen is emptied first: an earlier test must not have put the fast path on both sides."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    r._memo = None  # the table of OPTs is under test here, not the reply memo before it
    plain = wire("web.default.svc.cluster.local", edns=0, do=True)
    seen: dict[bytes, object] = {}
    monkeypatch.setattr(edns_module, "_EDNS_SEEN", seen)
    parsed = r.respond(plain)  # the full parse, which remembers the OPT
    assert len(seen) == 1
    fast = r.respond(plain)  # the fast path: one lookup in the table
    assert isinstance(parsed, bytes) and fast == parsed
    reply = dns.message.from_wire(parsed)
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO
    assert [r.to_text() for rrset in reply.answer for r in rrset] == ["10.0.0.1"]
    query = dns.message.make_query(
        "web.default.svc.cluster.local",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(10, b"12345678")],
    )
    reply = r.respond(query.to_wire())
    assert isinstance(reply, bytes)
    assert dns.message.from_wire(reply).answer


def test_malformed_opt_is_formerr() -> None:
    """RFC 6891 6.1.1: OPT owned by a non-root name, or options overrunning RDATA: FORMERR."""
    registry = make()
    r = responder(registry)
    base = wire("web.default.svc.cluster.local")
    header = base[:11] + b"\x01"  # ARCOUNT 1
    not_root = header + base[12:] + b"\x01a\x00" + b"\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    overrun = header + base[12:] + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x06\x00\x0a\x00\x08ab"
    for query in (not_root, overrun):
        reply = r.respond(query)
        assert isinstance(reply, bytes)
        assert reply[3] & 0x0F == dns.rcode.FORMERR


# ---------------------------------------------------------------- differential

NAMESPACES = ("default", "team")
SERVICES = ("a", "b", "c")
QUESTIONS = (
    [
        (f"{s}.{ns}.svc.cluster.local", t)
        for s in (*SERVICES, "zz")
        for ns in (*NAMESPACES, "nons")
        for t in ("A", "AAAA", "SRV", "TXT", "ANY")
    ]
    + [(f"{ns}.svc.cluster.local", "A") for ns in (*NAMESPACES, "nons")]
    + [(f"10-0-0-1.{ns}.pod.cluster.local", "A") for ns in (*NAMESPACES, "nons")]
    + [
        ("_p._tcp.a.default.svc.cluster.local", "SRV"),
        ("x.a.default.svc.cluster.local", "A"),
        ("1.0.0.10.in-addr.arpa", "PTR"),
        ("9.0.0.10.in-addr.arpa", "PTR"),
    ]
)

Change = tuple[str, str, str, int, bool]  # op, namespace, service, address octet, headless
Objects = dict[tuple[str, str, str], object]  # (kind, namespace, name) -> the object applied


@st.composite
def changes(draw: st.DrawFn) -> Change:
    return (
        draw(st.sampled_from(("upsert", "delete", "slice", "unslice", "ns", "unns", "alias"))),
        draw(st.sampled_from(NAMESPACES)),
        draw(st.sampled_from(SERVICES)),
        draw(st.integers(1, 3)),
        draw(st.booleans()),
    )


def apply(registry: Registry, change: Change, objects: Objects) -> None:
    """Apply one change to the registry and to ``objects`` (what a fresh registry is built
    from)."""
    op, ns, name, octet, is_headless = change
    ip = f"10.0.0.{octet}"
    obj: object
    if op in ("upsert", "alias"):
        if op == "alias":
            # An ExternalName whose target is another Service of ours: an in-zone CNAME whose
            # answer carries the target's records, re-rendered when the target changes.
            other = SERVICES[(SERVICES.index(name) + octet) % len(SERVICES)]
            target = f"{other}.{ns if octet != 3 else NAMESPACES[1]}.svc.cluster.local"
            obj = Service(ns, name, "ExternalName", (), False, target, (), (), (), False)
        else:
            obj = headless(name, ns) if is_headless else svc(name, ip, ns)
        registry.upsert(obj)  # type: ignore[arg-type]
        objects[("Service", ns, name)] = obj
    elif op == "delete":
        registry.delete("Service", (ns, name))
        objects.pop(("Service", ns, name), None)
    elif op == "slice":
        endpoints = (Endpoint((ip,), "", not is_headless or octet != 3, ""),)
        obj = EndpointSlice(
            ns, f"{name}-s", name, "IPv4", (EndpointPort("p", "TCP", 80),), endpoints
        )
        registry.upsert(obj)
        objects[("EndpointSlice", ns, f"{name}-s")] = obj
    elif op == "unslice":
        registry.delete("EndpointSlice", (ns, f"{name}-s"))
        objects.pop(("EndpointSlice", ns, f"{name}-s"), None)
    elif op == "ns":
        obj = Namespace(ns)
        registry.upsert(obj)
        objects[("Namespace", "", ns)] = obj
    else:
        registry.delete("Namespace", ("", ns))
        objects.pop(("Namespace", "", ns), None)


def rebuilt(objects: Objects) -> Registry:
    """A registry that never saw the history: the current objects, loaded once."""
    registry = make()
    for kind in ("Namespace", "Service", "EndpointSlice"):
        for (k, _, _), obj in sorted(objects.items(), key=lambda item: item[0]):
            if k == kind:
                registry.upsert(obj)  # type: ignore[arg-type]
    return registry


def meaning(reply: bytes | None) -> tuple[object, ...]:
    """What a reply says, whatever the order of its records and the zone's serial (a rebuilt
    registry counts its own)."""
    assert isinstance(reply, bytes)
    message = dns.message.from_wire(reply)

    def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, int, list[str]]]:
        out = []
        for rrset in rrsets:
            texts = []
            for rdata in rrset:
                if rdata.rdtype == dns.rdatatype.SOA:
                    rdata = rdata.replace(serial=0)
                texts.append(rdata.to_text())
            out.append((rrset.name.to_text(), rrset.rdtype, sorted(texts)))
        return sorted(out)

    return (
        message.rcode(),
        message.flags,
        section(message.answer),
        section(message.authority),
        section(message.additional),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(changes(), min_size=1, max_size=12))
def test_memo_never_differs_from_a_fresh_answer(steps: list[Change]) -> None:
    """Whatever the sequence of changes, every question answered through the memo is byte
    for byte the answer computed from scratch (the memo is only ever a shortcut), and says
    what a registry built from the current objects alone says: dependents (glue, in-zone
    CNAME targets, ANY) are re-rendered when what they point at changes."""
    registry = make()
    objects: Objects = {}
    r = responder(registry)
    for change in steps:
        apply(registry, change, objects)
        reference = responder(rebuilt(objects), memo=False)
        for name, rdtype in QUESTIONS:
            query = wire(name, rdtype)
            got = r.respond(query)
            assert got == fresh(registry, query), (change, name, rdtype)
            assert meaning(got) == meaning(reference.respond(query)), (steps, name, rdtype)


def test_dependents_follow_what_they_point_at() -> None:
    """An in-zone CNAME's answer (the target's records chased in) and the apex NS glue are
    re-rendered when the target changes or goes: each answer says what a registry built from
    the current objects says."""
    registry = make()
    objects: Objects = {}
    r = responder(registry)
    questions = [
        ("a.default.svc.cluster.local", "A"),
        ("a.default.svc.cluster.local", "ANY"),
        ("cluster.local", "NS"),
    ]
    steps: list[Change] = [
        ("upsert", "default", "b", 1, False),
        ("alias", "default", "a", 1, False),  # a -> b.default
        ("upsert", "default", "b", 2, False),  # the target's address changes
        ("upsert", "default", "b", 2, True),  # ... becomes headless without endpoints
        ("slice", "default", "b", 3, False),  # ... gains an endpoint
        ("delete", "default", "b", 1, False),  # ... goes
    ]
    for change in steps:
        apply(registry, change, objects)
        reference = responder(rebuilt(objects), memo=False)
        for name, rdtype in questions:
            got = r.respond(wire(name, rdtype))
            assert meaning(got) == meaning(reference.respond(wire(name, rdtype))), (change, name)
    dns_service = Service("kube-system", "kube-dns", "ClusterIP", ("10.96.0.10",), False, "", (), (), (), False)  # fmt: skip
    for ip in ("10.96.0.10", "10.96.0.11"):
        registry.upsert(dns_service._replace(cluster_ips=(ip,)))
        objects[("Service", "kube-system", "kube-dns")] = dns_service._replace(cluster_ips=(ip,))
        reference = responder(rebuilt(objects), memo=False)
        for name, rdtype in questions:
            got = r.respond(wire(name, rdtype))
            assert meaning(got) == meaning(reference.respond(wire(name, rdtype))), (ip, name)


def test_any_queries_do_not_grow_the_dependency_index() -> None:
    """Hardening 1: each ANY for a name whose records point into our zones re-rendered the
    answer and appended to the dependency index (40,001 entries after 40,000 queries). Now
    ANY is derived once per registry state and the index holds each target once."""
    registry = make()
    registry.upsert(headless("db"))
    registry.upsert(eps("db-1", "db", "10.1.0.1", "10.1.0.2"))
    r = responder(registry)
    query = wire("_p._tcp.db.default.svc.cluster.local", "ANY")
    misses = Resolver(registry)  # a responder without the memo re-derives every time
    bare = Responder(registry.answers, misses.resolve)
    for _ in range(2000):
        assert r.respond(query) is not None
        assert bare.respond(query) is not None
    name = names.to_wire("_p._tcp.db.default.svc.cluster.local")
    assert len(registry._dep_targets.get(name, ())) <= 2
    assert sum(len(v) for v in registry._deps.values()) < 20


def test_meta_types_in_a_question_are_formerr() -> None:
    """Hardening 11, RFC 6895 3.1: OPT, TKEY, TSIG and type 0 are never asked: FORMERR."""
    registry = make()
    registry.upsert(svc("web", "10.0.0.1"))
    r = responder(registry)
    for qtype in (0, 41, 249, 250):
        reply = r.respond(wire("web.default.svc.cluster.local", dns.rdatatype.to_text(qtype)))
        assert isinstance(reply, bytes)
        assert reply[3] & 0x0F == dns.rcode.FORMERR, qtype
