"""Registry write side: incremental re-rendering, atomic relists, serials and generations."""

from __future__ import annotations

import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.authority.registry import Registry, question_key, shard_of
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.dns.records import SRV, A
from kdns.model import Endpoint, EndpointPort, EndpointSlice, Namespace, Service, ServicePort
from kdns.server.wire import Responder


def svc(name: str, ip: str, ns: str = "default", ports: tuple[ServicePort, ...] = ()) -> Service:
    return Service(ns, name, "ClusterIP", (ip,), False, "", ports, (), (), False)


def headless(name: str, ns: str = "default") -> Service:
    return Service(
        ns, name, "ClusterIP", (), True, "", (ServicePort("p", "TCP", 80),), (), (), False
    )


def eps(
    name: str, service: str, *ips: str, ready: bool = True, ns: str = "default"
) -> EndpointSlice:
    endpoints = tuple(Endpoint((ip,), "", ready, "") for ip in ips)
    return EndpointSlice(ns, name, service, "IPv4", (EndpointPort("p", "TCP", 80),), endpoints)


def make() -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    registry.synced = True
    return registry


def ask(registry: Registry, name: str, rdtype: str = "A") -> dns.message.Message:
    responder = Responder(registry.answers, Resolver(registry).resolve)
    wire = responder.respond(dns.message.make_query(name, rdtype).to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def addresses(registry: Registry, name: str) -> list[str]:
    resp = ask(registry, name)
    return sorted(r.to_text() for rrset in resp.answer for r in rrset)


def test_unchanged_update_is_dropped() -> None:
    """DESIGN: an update that changes nothing DNS-visible re-renders nothing."""
    registry = make()
    assert registry.upsert(svc("a", "10.0.0.1"))
    generation = registry.generation
    assert not registry.upsert(svc("a", "10.0.0.1"))
    assert registry.generation == generation


def test_change_rerenders_only_that_service() -> None:
    """One changed Service re-renders its own names: other answers are the same objects."""
    registry = make()
    with registry.batch():
        registry.upsert(svc("a", "10.0.0.1"))
        registry.upsert(svc("b", "10.0.0.2"))
    key_b = question_key(names.to_wire("b.default.svc.cluster.local"), A)
    before_b = registry.answers[key_b]
    registry.upsert(svc("a", "10.0.0.9"))
    assert registry.answers[key_b] is before_b
    assert addresses(registry, "a.default.svc.cluster.local") == ["10.0.0.9"]


def test_shard_generation_moves_for_the_changed_owner_only() -> None:
    registry = make()
    registry.upsert(svc("a", "10.0.0.1"))
    shards = list(registry.shard_generation)
    registry.upsert(svc("a", "10.0.0.2"))
    moved = [
        i for i, (x, y) in enumerate(zip(shards, registry.shard_generation, strict=True)) if x != y
    ]
    assert shard_of(("svc", "default", "a")) in moved


def test_delete_gives_nxdomain_and_drops_ptr() -> None:
    registry = make()
    registry.upsert(svc("a", "10.0.0.1"))
    assert ask(registry, "1.0.0.10.in-addr.arpa", "PTR").answer
    registry.delete("Service", ("default", "a"))
    assert ask(registry, "a.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(registry, "1.0.0.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN


def test_empty_non_terminal_refcounted() -> None:
    """RFC 8020: <ns>.svc.<zone> is NODATA while a service lives below it, NXDOMAIN after."""
    registry = make()
    registry.upsert(svc("a", "10.0.0.1", ns="team"))
    registry.upsert(svc("b", "10.0.0.2", ns="team"))
    assert ask(registry, "team.svc.cluster.local").rcode() == dns.rcode.NOERROR
    registry.delete("Service", ("team", "a"))
    assert ask(registry, "team.svc.cluster.local").rcode() == dns.rcode.NOERROR
    registry.delete("Service", ("team", "b"))
    assert ask(registry, "team.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_namespace_object_alone_makes_namespace_name_exist() -> None:
    registry = make()
    registry.upsert(Namespace("empty"))
    assert ask(registry, "empty.svc.cluster.local").rcode() == dns.rcode.NOERROR
    registry.delete("Namespace", ("", "empty"))
    assert ask(registry, "empty.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_relist_replaces_atomically_and_applies_deletions() -> None:
    """A relist (410 Gone recovery) swaps a kind's contents in one batch: objects deleted during
    the gap go away, the rest stay answerable throughout (one flush, one generation bump)."""
    registry = make()
    with registry.batch():
        for i in range(5):
            registry.upsert(svc(f"s{i}", f"10.0.0.{i + 1}"))
    generation = registry.generation
    registry.replace(
        "Service", [svc(f"s{i}", f"10.0.0.{i + 1}") for i in range(3)] + [svc("new", "10.0.1.1")]
    )
    assert registry.generation == generation + 1
    assert addresses(registry, "s0.default.svc.cluster.local") == ["10.0.0.1"]
    assert ask(registry, "s4.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert addresses(registry, "new.default.svc.cluster.local") == ["10.0.1.1"]


def test_soa_serial_moves_on_change() -> None:
    registry = make()
    first = ask(registry, "cluster.local", "SOA").answer[0][0].serial
    registry.upsert(svc("a", "10.0.0.1"))
    second = ask(registry, "cluster.local", "SOA").answer[0][0].serial
    assert second > first
    # The SOA in negative answers moves with it.
    assert ask(registry, "zz.default.svc.cluster.local").authority[0][0].serial == second


def test_endpoint_readiness_change_updates_headless_answer() -> None:
    """Spec 2.4.1: a not-ready endpoint leaves the headless answer."""
    registry = make()
    registry.upsert(headless("h"))
    registry.upsert(eps("h-1", "h", "10.1.0.1", "10.1.0.2"))
    assert addresses(registry, "h.default.svc.cluster.local") == ["10.1.0.1", "10.1.0.2"]
    slice_ = eps("h-1", "h", "10.1.0.1")
    registry.upsert(
        slice_._replace(endpoints=slice_.endpoints + (Endpoint(("10.1.0.2",), "", False, ""),))
    )
    assert addresses(registry, "h.default.svc.cluster.local") == ["10.1.0.1"]


def test_slice_moving_between_services() -> None:
    registry = make()
    registry.upsert(headless("x"))
    registry.upsert(headless("y"))
    registry.upsert(eps("s", "x", "10.1.0.1"))
    registry.upsert(eps("s", "y", "10.1.0.1"))
    assert addresses(registry, "x.default.svc.cluster.local") == []
    assert addresses(registry, "y.default.svc.cluster.local") == ["10.1.0.1"]


def test_srv_glue_follows_target_change() -> None:
    """The additional section of an SRV answer is re-rendered when the target's address moves."""
    registry = make()
    ports = (ServicePort("http", "TCP", 80),)
    registry.upsert(svc("a", "10.0.0.1", ports=ports))
    registry.upsert(svc("a", "10.0.0.2", ports=ports))
    resp = ask(registry, "_http._tcp.a.default.svc.cluster.local", "SRV")
    assert [r.to_text() for r in resp.additional[0]] == ["10.0.0.2"]


def test_ttl_change_rerenders() -> None:
    registry = make()
    registry.upsert(svc("a", "10.0.0.1"))
    registry.set_ttl(30)
    assert ask(registry, "a.default.svc.cluster.local").answer[0].ttl == 30
    assert ask(registry, "zz.default.svc.cluster.local").authority[0].ttl == 30


def test_shared_ptr_name_merges_owners() -> None:
    """Two owners contributing to one name (an IP behind two services) both answer, and
    removing one leaves the other."""
    registry = make()
    registry.upsert(headless("x"))
    registry.upsert(headless("y"))
    registry.upsert(eps("sx", "x", "10.1.0.7"))
    registry.upsert(eps("sy", "y", "10.1.0.7"))
    ptrs = sorted(r.to_text() for r in ask(registry, "7.0.1.10.in-addr.arpa", "PTR").answer[0])
    assert ptrs == [
        "10-1-0-7.x.default.svc.cluster.local.",
        "10-1-0-7.y.default.svc.cluster.local.",
    ]
    registry.delete("EndpointSlice", ("default", "sx"))
    ptrs = [r.to_text() for r in ask(registry, "7.0.1.10.in-addr.arpa", "PTR").answer[0]]
    assert ptrs == ["10-1-0-7.y.default.svc.cluster.local."]


_ip = st.tuples(st.integers(0, 3), st.integers(1, 4)).map(lambda t: f"10.9.{t[0]}.{t[1]}")
_op = st.tuples(
    st.sampled_from(["up", "del"]), st.sampled_from(["a", "b", "c"]), st.lists(_ip, max_size=3)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_op, max_size=25))
def test_incremental_equals_fresh_build(ops: list[tuple[str, str, list[str]]]) -> None:
    """Whatever sequence of updates and deletes, the incremental registry answers exactly
    like one built from the final objects in one go."""
    registry = make()
    final: dict[str, EndpointSlice] = {}
    for name in "abc":
        registry.upsert(headless(name))
    for op, name, ips in ops:
        if op == "up":
            final[name] = eps(f"{name}-s", name, *ips)
            registry.upsert(final[name])
        elif registry.delete("EndpointSlice", ("default", f"{name}-s")):
            final.pop(name)
    fresh = make()
    with fresh.batch():
        for name in "abc":
            fresh.upsert(headless(name))
        for slice_ in final.values():
            fresh.upsert(slice_)

    def rendered(r: Registry) -> dict[bytes, bytes]:
        # Zone apex answers hold SOA serials, which differ by construction; compare the rest.
        return {k: a.body for k, a in r.answers.items() if k[:-4] not in r.zones.by_apex}

    assert rendered(registry) == rendered(fresh)
    assert registry._ents == fresh._ents
    assert set(registry._names) == set(fresh._names)
    assert {k for k in registry.answers if k.endswith(SRV.to_bytes(2, "big") + b"\x00\x01")} == {
        k for k in fresh.answers if k.endswith(SRV.to_bytes(2, "big") + b"\x00\x01")
    }


def test_unusable_external_name_does_not_stop_the_batch() -> None:
    """The API accepts an externalName label over 63 bytes; DNS cannot carry it. That Service
    answers NODATA (CoreDNS skips such a target) and every other object still renders."""
    registry = make()
    bad = Service(
        "default", "bad", "ExternalName", (), False, "a" * 64 + ".example.com", (), (), (), False
    )
    with registry.batch():
        for i in range(5):
            registry.upsert(svc(f"s{i}", f"10.0.0.{i + 1}"))
        registry.upsert(bad)
        registry.upsert(svc("after", "10.0.0.99"))
    assert addresses(registry, "after.default.svc.cluster.local") == ["10.0.0.99"]
    assert all(addresses(registry, f"s{i}.default.svc.cluster.local") for i in range(5))
    resp = ask(registry, "bad.default.svc.cluster.local")
    assert resp.rcode() == dns.rcode.NOERROR and not resp.answer


def test_dependency_index_is_pruned_when_names_go() -> None:
    """SRV glue dependencies are forgotten with the names that had them (no growth with churn)."""
    registry = make()
    baseline = ({k: set(v) for k, v in registry._deps.items()}, dict(registry._dep_targets))
    for i in range(20):
        registry.upsert(headless(f"h{i}"))
        registry.upsert(eps(f"h{i}-s", f"h{i}", f"10.1.{i}.1"))
        ask(registry, f"_p._tcp.h{i}.default.svc.cluster.local", "SRV")
    for i in range(20):
        registry.delete("Service", ("default", f"h{i}"))
        registry.delete("EndpointSlice", ("default", f"h{i}-s"))
    assert (registry._deps, registry._dep_targets) == baseline


def test_ttl_change_moves_the_apex_soa_minimum() -> None:
    registry = make()
    registry.set_ttl(30)
    soa = ask(registry, "cluster.local", "SOA").answer[0][0]
    assert soa.minimum == 30
