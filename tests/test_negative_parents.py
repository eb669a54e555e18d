"""The resolver's negative parents (``Resolver._negative_parents``): once a child of P was
answered NXDOMAIN by the zone's last step, a later child of P that does not exist is NXDOMAIN
at once. Never a wrong NXDOMAIN: every case asks a resolver that learned P, after a change,
and compares it with a fresh resolver on the same registry (which has learned nothing), so a
case can only pass if the per-question checks let go of what changed. Each names the check
whose removal breaks it.
"""

from __future__ import annotations

import random
from pathlib import Path

from kdns.authority.hosts import Hosts, parse_lines
from kdns.authority.localzones import from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import MAX_NEGATIVE_PARENTS, Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.dns.answer import FORWARD, Answer
from kdns.dns.records import AAAA, NXDOMAIN, TXT, A
from kdns.model import Namespace
from tests.test_registry import eps, headless, make, svc

DEFAULT = "default.svc.cluster.local"


def w(name: str) -> bytes:
    return names.to_wire(name)


def same(learned: Resolver, registry: Registry, name: str, qtype: int = A) -> Answer:
    """What ``learned`` answers for ``name``, checked against a fresh resolver's answer (the
    cases here build theirs without forward settings)."""
    got = learned.resolve(w(name), qtype)
    fresh = Resolver(registry)
    fresh.hosts = learned.hosts
    registry.derived.clear()  # the fresh one derives it anew, not from the learned one's memo
    want = fresh.resolve(w(name), qtype)
    assert (got.rcode, got.counts, got.body, got.zone) == (want.rcode, want.counts, want.body, want.zone)  # fmt: skip
    return got


def test_a_sibling_that_does_not_exist_is_nxdomain_from_the_parent() -> None:
    registry = make()
    resolver = Resolver(registry)
    assert resolver.resolve(w("nope." + DEFAULT), A).rcode == NXDOMAIN
    assert w(DEFAULT) in resolver._negative_parents
    misses = resolver.misses
    answer = same(resolver, registry, "other." + DEFAULT)
    assert answer.rcode == NXDOMAIN and resolver.misses == misses + 1
    assert registry.derived  # remembered for the next asker, as the steps would


def test_a_sibling_made_since_is_answered_from_its_records() -> None:
    """Breaks without the per-question existence check: web.default appears after the
    parent was learned; its TXT is NODATA (it exists), its A is its address."""
    registry = make()
    resolver = Resolver(registry)
    resolver.resolve(w("nope." + DEFAULT), A)
    registry.upsert(svc("web", "10.0.0.1"))
    assert same(resolver, registry, "web." + DEFAULT, TXT).rcode == 0  # NODATA, not NXDOMAIN


def test_an_empty_non_terminal_made_since_is_nodata() -> None:
    """RFC 8020: a name with names below it exists. A headless Service's endpoint makes
    ``<host>.web.default`` and so ``web.default``; below the learned parent ``web.default``
    the endpoint's own name is not NXDOMAIN."""
    registry = make()
    resolver = Resolver(registry)
    resolver.resolve(w("x.web." + DEFAULT), A)  # learns web.default.svc... as a parent
    registry.upsert(headless("web"))
    registry.upsert(eps("web-abc", "web", "10.1.0.7"))
    for child in registry_names_below(registry, "web." + DEFAULT):
        assert same(resolver, registry, child, AAAA).rcode == 0


def registry_names_below(registry: Registry, parent: str) -> list[str]:
    out = []
    for qname in (w(f"{label}.{parent}") for label in ("web-abc", "10-1-0-7", "_tcp", "_http")):
        if registry.exists(qname):
            out.append(names.to_text(qname))
    assert out, "the headless Service made no name below its own"
    return out


def test_a_wildcard_made_since_answers_the_sibling(tmp_path: Path) -> None:
    """RFC 4592: breaks without the per-question wildcard check."""
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("lan", 300),))
    registry = Registry(zones, ttl=5)
    registry.set_local(from_records("lan", ["host A 192.0.2.1"], 300))
    registry.synced = True
    resolver = Resolver(registry)
    assert resolver.resolve(w("nope.apps.lan"), A).rcode == NXDOMAIN
    assert w("apps.lan") in resolver._negative_parents
    registry.set_local(from_records("lan", ["host A 192.0.2.1", "*.apps A 192.0.2.9"], 300))
    assert same(resolver, registry, "other.apps.lan").rcode == 0


def test_hosts_set_since_answer_the_sibling() -> None:
    """CoreDNS hosts comes before the zones: breaks without the ``hosts is None`` check."""
    registry = make()
    resolver = Resolver(registry)
    resolver.resolve(w("nope." + DEFAULT), A)
    resolver.hosts = Hosts(parse_lines(["10.9.9.9 pinned." + DEFAULT], "x"), ttl=60, fallthrough=True)  # fmt: skip
    answer = same(resolver, registry, "pinned." + DEFAULT)
    assert answer.rcode == 0 and answer.counts[:2] == b"\x00\x01"


def test_a_parent_of_a_forward_cut_is_never_learned() -> None:
    """A stub domain inside the cluster domain (my.cluster.local): a sibling of nope.cluster.local
    that is the cut itself is forwarded, never NXDOMAIN."""
    registry = make()
    resolver = Resolver(registry, forward=True, cuts=("my.cluster.local",))
    assert resolver.resolve(w("nope.cluster.local"), A).rcode == NXDOMAIN
    assert w("cluster.local") not in resolver._negative_parents
    assert resolver.resolve(w("my.cluster.local"), A) is FORWARD


def test_a_parent_of_a_zone_apex_is_never_learned() -> None:
    """A local zone inside another zone's names: its apex is a sibling that answers SOA."""
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("lan", 300), ("in.lan", 300)))
    registry = Registry(zones, ttl=5)
    registry.set_local(from_records("lan", ["host A 192.0.2.1"], 300))
    registry.set_local(from_records("in.lan", ["host A 192.0.2.2"], 300))
    registry.synced = True
    resolver = Resolver(registry)
    assert resolver.resolve(w("nope.lan"), A).rcode == NXDOMAIN
    assert w("lan") not in resolver._negative_parents


def test_insecure_pod_names_are_never_learned() -> None:
    """CoreDNS pods insecure: a-b-c-d.<ns>.pod.<zone> answers from its label, existing or not."""
    registry = make()
    registry.pods_mode = "insecure"
    registry.upsert(Namespace("shop"))
    resolver = Resolver(registry)
    assert resolver.resolve(w("not-an-ip.shop.pod.cluster.local"), A).rcode == NXDOMAIN
    answer = same(resolver, registry, "10-1-2-3.shop.pod.cluster.local")
    assert answer.rcode == 0 and answer.counts[:2] == b"\x00\x01"


def test_the_table_is_bounded() -> None:
    registry = make()
    resolver = Resolver(registry)
    for i in range(MAX_NEGATIVE_PARENTS + 10):
        resolver.resolve(w(f"x.p{i}.{DEFAULT}"), A)
    assert 0 < len(resolver._negative_parents) <= MAX_NEGATIVE_PARENTS


def test_random_walks_and_changes_agree_with_a_fresh_resolver() -> None:
    """Search-path walks (ndots:5) over names that come and go: every answer of the learned
    resolver equals a fresh one's, for 3,000 questions between 300 changes."""
    rng = random.Random(7)
    registry = make()
    resolver = Resolver(registry)
    stems = [f"s{i}" for i in range(12)]
    for step in range(3000):
        if step % 10 == 0:
            name = rng.choice(stems)
            if rng.random() < 0.5:
                registry.upsert(svc(name, f"10.0.{rng.randrange(250)}.{rng.randrange(250)}"))
            else:
                registry.delete("Service", ("default", name))
        stem = rng.choice(stems)
        suffix = rng.choice((DEFAULT, "svc.cluster.local", "cluster.local", f"x.{DEFAULT}"))
        qname = f"{stem}.{suffix}" if rng.random() < 0.7 else f"{stem}.ex.com.{suffix}"
        same(resolver, registry, qname, rng.choice((A, AAAA, TXT)))


def test_a_registry_not_synced_answers_servfail_not_nxdomain() -> None:
    """Before the (re)list completes, a cluster name is SERVFAIL, never a cacheable NXDOMAIN:
    breaks without the per-question ``synced`` check."""
    registry = make()
    resolver = Resolver(registry)
    resolver.resolve(w("nope." + DEFAULT), A)
    registry.synced = False
    assert same(resolver, registry, "other." + DEFAULT).rcode == 2  # SERVFAIL
