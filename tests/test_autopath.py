"""Autopath (kdns.authority.autopath): table cases through the real Responder on query bytes, with
the real forwarder and response cache in front of a loopback upstream (tests/dnsupstream.py).

The cluster (tests/fixtures/autopath.yaml) has pods on loopback addresses: 127.0.0.5 is a pod of
``prod``, 127.0.0.6 one of ``shop``, 127.0.0.7 is held by pods of both (hostNetwork). The host
search domain is ``corp.example``, so a pod of prod walks ``prod.svc.cluster.local``,
``svc.cluster.local``, ``cluster.local``, ``corp.example``, then the name as given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.app import autopath_search
from kdns.authority.autopath import REASONS, Autopath
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.config import ConfigError, build_config
from kdns.forward.cache import ResponseCache
from kdns.forward.upstreams import ForwardGroup
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all
from kdns.model import Namespace, Pod, Service
from kdns.policy.blocklist import BlockList
from kdns.policy.views import View, Views
from kdns.server.forwarding import Forwarder, Route
from kdns.server.wire import DEFERRED, Query, Responder
from tests.dnsupstream import DnsUpstream

FIXTURE = str(Path(__file__).parent / "fixtures" / "autopath.yaml")
PROD = ("127.0.0.5", 40000)
PROD_2 = ("127.0.0.8", 40000)
SHOP = ("127.0.0.6", 40000)
SHARED = ("127.0.0.7", 40000)  # pods of prod and shop: namespace unknown
STRANGER = ("127.0.0.9", 40000)  # no pod
UPSTREAM = {
    ("api.github.com.", "A"): ["140.82.112.5"],
    ("api.github.com.", "AAAA"): ["2606:50c0:8000::64"],
    ("intranet.corp.example.", "A"): ["10.1.2.3"],
    ("payments.example.net.", "A"): ["192.0.2.80"],
    ("cache.shop.", "A"): ["192.0.2.50"],
    # Five dots: tried as is before the search path; also present under the host domain.
    ("a.b.c.d.e.example.", "A"): ["192.0.2.61"],
    ("a.b.c.d.e.example.corp.example.", "A"): ["192.0.2.62"],
    # Four dots: the search path first, so the host domain's wins.
    ("b.c.d.e.example.", "A"): ["192.0.2.71"],
    ("b.c.d.e.example.corp.example.", "A"): ["192.0.2.72"],
    ("blocked.example.", "A"): ["192.0.2.90"],
}


@pytest.fixture
def upstream() -> Iterator[DnsUpstream]:
    with DnsUpstream(UPSTREAM, ttl=60) as up:
        yield up


class Stack:
    """Registry, resolver, forwarder (with its cache) and responder, as the app wires them."""

    def __init__(self, up: DnsUpstream, *, ttl: int = 5, search: tuple[str, ...] = ("corp.example",)) -> None:  # fmt: skip
        zones = ZoneSet.build("cluster.local", (), ttl)
        self.registry = Registry(zones, ttl=ttl, client_index=True)
        apply_all(self.registry, load_objects([FIXTURE]))
        self.registry.synced = True
        self.forwarder = Forwarder(
            [Route(".", ForwardGroup([up.upstream("udp")], timeout=2.0))], ResponseCache()
        )
        resolver = Resolver(self.registry, forward=True)
        self.responder = Responder(self.registry.answers, resolver.resolve)
        self.responder.derived = self.registry.derived
        self.responder.forwarder = self.forwarder
        self.autopath = Autopath(self.registry, search)
        self.responder.autopath = self.autopath

    async def ask(self, peer: Any, qname: str, qtype: str = "A", **kw: Any) -> dns.message.Message:
        wire = await self.raw(peer, qname, qtype, **kw)
        return dns.message.from_wire(wire)

    async def raw(self, peer: Any, qname: str, qtype: str = "A", **kw: Any) -> bytes:
        query = dns.message.make_query(qname, qtype, **kw)
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Replier:
            def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
                replies.put_nowait(response)

        response = self.responder.respond(query.to_wire(), peer=peer, replier=Replier())
        if response is DEFERRED:
            return await asyncio.wait_for(replies.get(), 5)
        assert isinstance(response, bytes)
        return response

    async def close(self) -> None:
        await self.forwarder.close()


@pytest.fixture
async def stack(upstream: DnsUpstream) -> Any:
    built = Stack(upstream)
    yield built
    await built.close()


def _service(namespace: str, name: str, ip: str) -> Service:
    return Service(namespace, name, "ClusterIP", (ip,), False, "", (), (), (), False)


def answer(reply: dns.message.Message) -> list[str]:
    """The answer section in order: owner TTL TYPE rdata."""
    return [
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in reply.answer
        for rdata in rrset
    ]


def asked(up: DnsUpstream) -> list[str]:
    return [name.lower() for name in up.names()]


# --- where the name is found ---------------------------------------------------------------

# fmt: off
CASES = [
    # (id, client, qname, qtype, rcode, answer section)
    ("step 1: the name exists, answered as it is (no CNAME)", PROD,
     "api.prod.svc.cluster.local.", "A", "NOERROR",
     ["api.prod.svc.cluster.local. 5 A 10.96.0.30"]),
    ("step 2: web.shop from prod finds web.shop.svc", PROD,
     "web.shop.prod.svc.cluster.local.", "A", "NOERROR",
     ["web.shop.prod.svc.cluster.local. 5 CNAME web.shop.svc.cluster.local.",
      "web.shop.svc.cluster.local. 5 A 10.96.0.20"]),
    ("step 3: dns-version finds dns-version.cluster.local", PROD,
     "dns-version.prod.svc.cluster.local.", "TXT", "NOERROR",
     ["dns-version.prod.svc.cluster.local. 5 CNAME dns-version.cluster.local.",
      'dns-version.cluster.local. 5 TXT "1.1.0"']),
    ("a host search domain (upstream)", PROD,
     "intranet.prod.svc.cluster.local.", "A", "NOERROR",
     ["intranet.prod.svc.cluster.local. 5 CNAME intranet.corp.example.",
      "intranet.corp.example. 5 A 10.1.2.3"]),
    ("only as given: an external name", PROD,
     "api.github.com.prod.svc.cluster.local.", "A", "NOERROR",
     ["api.github.com.prod.svc.cluster.local. 5 CNAME api.github.com.",
      "api.github.com. 5 A 140.82.112.5"]),
    ("an ExternalName found on the way: its target chased upstream", PROD,
     "payments.shop.prod.svc.cluster.local.", "A", "NOERROR",
     ["payments.shop.prod.svc.cluster.local. 5 CNAME payments.shop.svc.cluster.local.",
      "payments.shop.svc.cluster.local. 5 CNAME payments.example.net.",
      "payments.example.net. 5 A 192.0.2.80"]),
    ("five dots: tried as is first", PROD,
     "a.b.c.d.e.example.prod.svc.cluster.local.", "A", "NOERROR",
     ["a.b.c.d.e.example.prod.svc.cluster.local. 5 CNAME a.b.c.d.e.example.",
      "a.b.c.d.e.example. 5 A 192.0.2.61"]),
    ("four dots: the search path first", PROD,
     "b.c.d.e.example.prod.svc.cluster.local.", "A", "NOERROR",
     ["b.c.d.e.example.prod.svc.cluster.local. 5 CNAME b.c.d.e.example.corp.example.",
      "b.c.d.e.example.corp.example. 5 A 192.0.2.72"]),
    ("AAAA where only A exists: the name exists, NODATA after the CNAME", PROD,
     "web.shop.prod.svc.cluster.local.", "AAAA", "NOERROR",
     ["web.shop.prod.svc.cluster.local. 5 CNAME web.shop.svc.cluster.local."]),
    ("NXDOMAIN everywhere: the plain NXDOMAIN", PROD,
     "nothing.prod.svc.cluster.local.", "A", "NXDOMAIN", []),
    ("unknown client: no autopath", STRANGER,
     "api.github.com.prod.svc.cluster.local.", "A", "NXDOMAIN", []),
    ("an IP pods of two namespaces share: no autopath", SHARED,
     "api.github.com.prod.svc.cluster.local.", "A", "NXDOMAIN", []),
    ("a client of another namespace: no autopath", SHOP,
     "api.github.com.prod.svc.cluster.local.", "A", "NXDOMAIN", []),
    ("the shop pod on its own search path", SHOP,
     "web.shop.svc.cluster.local.", "A", "NOERROR",
     ["web.shop.svc.cluster.local. 5 A 10.96.0.20"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("client", "qname", "qtype", "rcode", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_table(stack: Stack, client: Any, qname: str, qtype: str, rcode: str, expected: list[str]) -> None:  # fmt: skip
    reply = await stack.ask(client, qname, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert answer(reply) == expected
    assert reply.question[0].name.to_text() == qname
    if rcode == "NXDOMAIN" or qtype == "AAAA":  # the SOA of the zone that said so
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


async def test_plain_nxdomain_is_the_one_autopath_off_gives(upstream: DnsUpstream) -> None:
    on, off = Stack(upstream), Stack(upstream)
    off.responder.autopath = None
    try:
        for peer in (PROD, STRANGER, SHOP):
            name = "nothing.prod.svc.cluster.local."
            assert (await on.raw(peer, name, id=7)) == (await off.raw(peer, name, id=7))
    finally:
        await on.close()
        await off.close()


async def test_misses_by_reason_answers_and_saved(stack: Stack) -> None:
    autopath = stack.autopath
    await stack.ask(STRANGER, "x.prod.svc.cluster.local.")
    await stack.ask(SHARED, "x.prod.svc.cluster.local.")
    await stack.ask(SHOP, "x.prod.svc.cluster.local.")
    await stack.ask(PROD, "nothing.prod.svc.cluster.local.")
    assert autopath.misses == {**dict.fromkeys(REASONS, 0), "unknown_client": 2,
                               "other_namespace": 1, "not_found": 1}  # fmt: skip
    assert autopath.answers == 0 and autopath.saved == 0
    await stack.ask(PROD, "web.shop.prod.svc.cluster.local.")  # step 2: saves 1 query
    await stack.ask(PROD, "intranet.prod.svc.cluster.local.")  # step 4: saves 3
    await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")  # as given: saves 4
    await stack.ask(PROD, "api.prod.svc.cluster.local.")  # exists: not autopath
    assert autopath.answers == 3 and autopath.saved == 1 + 3 + 4


async def test_repeated_walk_goes_upstream_once(stack: Stack, upstream: DnsUpstream) -> None:
    """The forwarded candidates go through the forward cache: the second walk sends nothing."""
    first = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
    assert asked(upstream) == ["api.github.com.corp.example.", "api.github.com."]
    second = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
    assert answer(second) == answer(first)
    assert len(asked(upstream)) == 2
    assert stack.forwarder.stats.cache_hits == 2


async def test_forward_allow_denies_the_client(stack: Stack, upstream: DnsUpstream) -> None:
    stack.responder.forward_allow = lambda ip: ip != PROD[0]
    reply = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN" and not reply.answer
    assert asked(upstream) == []  # nothing went upstream for a client that may not forward
    assert stack.autopath.misses["forward_denied"] == 1
    # Cluster names still autopath for it.
    reply = await stack.ask(PROD, "web.shop.prod.svc.cluster.local.")
    assert answer(reply)[1] == "web.shop.svc.cluster.local. 5 A 10.96.0.20"
    # Another pod of prod that forward.allow admits gets the external answer.
    reply = await stack.ask(PROD_2, "api.github.com.prod.svc.cluster.local.")
    assert answer(reply)[-1] == "api.github.com. 5 A 140.82.112.5"


async def test_view_that_blocks_a_candidate_keeps_autopath_out(stack: Stack, tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "list"
    path.write_text("blocked.example\n")
    blocks = BlockList.load("ads", str(path), "domains", "nxdomain")
    stack.responder.views = Views([View("pods", ["127.0.0.5/32"], None, [blocks])], stack.registry.zones, {})  # fmt: skip
    reply = await stack.ask(PROD, "blocked.example.prod.svc.cluster.local.")
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN" and not reply.answer
    assert stack.autopath.misses["policy"] == 1
    # The same client, a name its view does not block: autopathed.
    reply = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
    assert answer(reply)[-1] == "api.github.com. 5 A 140.82.112.5"
    # Another pod, in no view: autopathed to the name that client's lists do not hold.
    reply = await stack.ask(PROD_2, "blocked.example.prod.svc.cluster.local.")
    assert answer(reply)[-1] == "blocked.example. 5 A 192.0.2.90"


async def test_ttl_is_the_minimum_of_the_chain(upstream: DnsUpstream) -> None:
    """Upstream records live 60 s, the cluster's negative answers 30 s: every TTL is 30. With
    upstream at 10 s, 10."""
    stack = Stack(upstream, ttl=30)
    try:
        reply = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
        assert {rrset.ttl for rrset in reply.answer} == {30}
        upstream.ttl = 10
        reply = await stack.ask(PROD, "intranet.prod.svc.cluster.local.")
        assert {rrset.ttl for rrset in reply.answer} == {10}
        reply = await stack.ask(PROD, "web.shop.prod.svc.cluster.local.")
        assert {rrset.ttl for rrset in reply.answer} == {30}
    finally:
        await stack.close()


async def test_service_that_appears_is_seen_by_the_next_query(stack: Stack) -> None:
    name = "cache.shop.prod.svc.cluster.local."
    reply = await stack.ask(PROD, name)
    assert answer(reply) == [f"{name} 5 CNAME cache.shop.", "cache.shop. 5 A 192.0.2.50"]
    stack.registry.upsert(_service("shop", "cache", "10.96.0.50"))
    reply = await stack.ask(PROD, name)
    assert answer(reply) == [f"{name} 5 CNAME cache.shop.svc.cluster.local.",
                             "cache.shop.svc.cluster.local. 5 A 10.96.0.50"]  # fmt: skip
    # And the name itself, once it exists, is never short-cut.
    stack.registry.upsert(Namespace("cache"))
    stack.registry.upsert(_service("prod", "cache", "10.96.0.51"))
    reply = await stack.ask(PROD, "cache.prod.svc.cluster.local.")
    assert answer(reply) == ["cache.prod.svc.cluster.local. 5 A 10.96.0.51"]


async def test_pods_come_and_go(stack: Stack) -> None:
    name = "web.shop.prod.svc.cluster.local."
    assert (await stack.ask(STRANGER, name)).rcode() == dns.rcode.NXDOMAIN
    stack.registry.upsert(Pod("prod", "late", (STRANGER[0],)))  # a pod not seen before
    assert len((await stack.ask(STRANGER, name)).answer) == 2
    stack.registry.delete("Pod", ("prod", "late"))
    assert (await stack.ask(STRANGER, name)).rcode() == dns.rcode.NXDOMAIN
    # The shared IP: once the shop pod is gone, it is prod's alone.
    stack.registry.delete("Pod", ("shop", "node-agent"))
    assert len((await stack.ask(SHARED, name)).answer) == 2
    # A pod whose IP moves to another namespace's pod.
    stack.registry.upsert(Pod("prod", "client", ("127.0.0.55",)))
    stack.registry.upsert(Pod("shop", "newcomer", (PROD[0],)))
    assert (await stack.ask(PROD, name)).rcode() == dns.rcode.NXDOMAIN
    assert len((await stack.ask(PROD, "web.shop.svc.cluster.local.")).answer) == 1


async def test_edns_case_and_id_are_the_clients(stack: Stack) -> None:
    reply = await stack.ask(PROD, "Web.Shop.PROD.svc.cluster.local.", use_edns=0, payload=1232, id=999)  # fmt: skip
    assert reply.id == 999 and reply.edns == 0
    assert reply.question[0].name.to_text() == "Web.Shop.PROD.svc.cluster.local."
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.RD
    assert (
        answer(reply)[0] == "Web.Shop.PROD.svc.cluster.local. 5 CNAME web.shop.svc.cluster.local."
    )


async def test_too_big_for_udp_is_truncated_and_whole_over_tcp(upstream: DnsUpstream) -> None:
    upstream.records = {**UPSTREAM, ("many.example.", "A"): [f"192.0.2.{i}" for i in range(1, 40)]}
    stack = Stack(upstream)
    try:
        reply = await stack.ask(PROD, "many.example.prod.svc.cluster.local.")  # 512 bytes
        assert reply.flags & dns.flags.TC and not reply.answer
        data = dns.message.make_query("many.example.prod.svc.cluster.local.", "A").to_wire()
        replies: list[bytes] = []

        class Replier:
            def send_reply(self, response: bytes, peer: Any, query: Any = None) -> None:
                replies.append(response)

        got = stack.responder.respond(data, channel=2, peer=PROD, replier=Replier())  # TCP4
        assert isinstance(got, bytes)
        whole = dns.message.from_wire(got)
        assert len(answer(whole)) == 40 and not whole.flags & dns.flags.TC
    finally:
        await stack.close()


async def test_upstream_failure_falls_back_to_the_plain_nxdomain(stack: Stack, upstream: DnsUpstream) -> None:  # fmt: skip
    upstream.servfail = True
    reply = await stack.ask(PROD, "api.github.com.prod.svc.cluster.local.")
    assert dns.rcode.to_text(reply.rcode()) == "NXDOMAIN" and not reply.answer
    assert stack.autopath.misses["upstream_failed"] == 1


async def test_what_killer_mode_may_keep_of_an_autopath_reply(stack: Stack) -> None:
    """Killer mode keeps a reply when ``keep`` is in the future. An autopath reply answered at
    once is kept for the pods of its namespace (``kept`` names the namespace, every name the
    walk read, and whether it forwarded); the plain NXDOMAIN of a client of no namespace never,
    since a pod of that namespace must get autopathed."""
    responder, autopath = stack.responder, stack.autopath
    await stack.raw(PROD, "web.shop.prod.svc.cluster.local.")
    assert responder.keep == float("inf") and autopath.kept is not None
    _, label, read, forwarded, _, result, saved = autopath.kept
    assert result == "found" and saved >= 1
    assert label == b"\x04prod" and not forwarded
    assert read[0].startswith(b"\x03web\x04shop\x04prod") and b"\x03web\x04shop\x03svc" in read[1]
    await stack.raw(PROD, "nothing.prod.svc.cluster.local.")  # its last steps go upstream
    await stack.raw(PROD, "nothing.prod.svc.cluster.local.")  # walked to the end at once
    assert responder.keep > 0 and autopath.kept is not None and autopath.kept[1] == b"\x04prod"
    await stack.raw(STRANGER, "nothing.prod.svc.cluster.local.")
    assert responder.keep == 0.0 and autopath.kept is None
    await stack.raw(PROD, "api.github.com.prod.svc.cluster.local.")  # went upstream: deferred
    await stack.raw(PROD, "api.github.com.prod.svc.cluster.local.")  # now from the forward cache
    assert autopath.kept is not None and autopath.kept[3]  # forwarded: forward.allow on hits
    assert 0 < responder.keep < float("inf")  # until the forward cache's countdown second
    await stack.raw(PROD, "api.prod.svc.cluster.local.")
    assert responder.keep > 0  # a name that exists: the same for everyone
    await stack.raw(PROD, "nothing.cluster.local.")
    assert responder.keep > 0  # not under <ns>.svc: the same for everyone


def test_client_index_only_when_asked_for() -> None:
    zones = ZoneSet.build("cluster.local", (), 5)
    plain = Registry(zones, ttl=5)
    apply_all(plain, load_objects([FIXTURE]))
    assert plain.client_namespaces is None and len(plain.pods) == 0  # insecure: no pods held
    indexed = Registry(ZoneSet.build("cluster.local", (), 5), ttl=5, client_index=True)
    apply_all(indexed, load_objects([FIXTURE]))
    assert indexed.client_namespaces == {"127.0.0.5": b"\x04prod", "127.0.0.8": b"\x04prod",
                                         "127.0.0.6": b"\x04shop"}  # fmt: skip
    assert len(indexed.pods) == 5
    # Insecure mode renders no pod names for them; the answers are the plain registry's.
    assert indexed.answers.keys() == plain.answers.keys()


# --- configuration -------------------------------------------------------------------------


def test_config_keys_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "kdns.toml"
    path.write_text('[kubernetes]\nautopath = true\nautopath_search = ["corp.example", "lab."]\n')
    config = build_config(str(path), env={}, flags={})
    assert config.autopath and config.autopath_search == ("corp.example", "lab")
    assert build_config(env={"KDNS_AUTOPATH": "1"}).autopath
    assert build_config(flags={"autopath": True}).autopath
    assert not build_config().autopath and build_config().autopath_search is None
    empty = build_config(env={"KDNS_AUTOPATH_SEARCH": ""}, flags={"autopath_search": []})
    assert empty.autopath_search in (None, ())
    # The effective config reads back as it was.
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml())
    assert build_config(str(again)).autopath_search == ("corp.example", "lab")


def test_autopath_without_the_pod_watch_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        build_config(env={"KDNS_AUTOPATH": "true", "KDNS_PODS": "disabled"})
    assert str(err.value).startswith("config: KDNS_AUTOPATH: conflicts with KDNS_PODS: autopath needs the Pod watch")  # fmt: skip
    with pytest.raises(ConfigError):
        build_config(flags={"autopath": True, "kubernetes_enabled": False})
    for pods in ("insecure", "verified"):
        assert build_config(flags={"autopath": True, "pods": pods}).autopath


def test_search_domains_default_to_resolv_conf(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nsearch corp.example lab.example\n")
    config = build_config(flags={"autopath": True, "resolv_conf": str(resolv)})
    assert autopath_search(config) == ("corp.example", "lab.example")
    config = build_config(flags={"autopath": True, "resolv_conf": str(resolv), "autopath_search": []})  # fmt: skip
    assert autopath_search(config) == ()


def test_search_path_leaves_out_the_cluster_domains() -> None:
    """A resolv.conf of a pod in the cluster (dnsPolicy ClusterFirst) names the cluster's own
    search domains: they are the walk's first steps already, never host domains."""
    registry = Registry(ZoneSet.build("cluster.local", (), 5), ttl=5, client_index=True)
    search = ("kube-system.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example")
    autopath = Autopath(registry, search)
    assert autopath.search_path("prod") == [
        "prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
    ]  # fmt: skip


# --- the benchmark and the figures the docs quote ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_cluster_has_its_pods() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_autopath", ROOT / "benchmarks" / "autopath.py")  # fmt: skip
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = ROOT / "build-autopath.yaml"
    try:
        path.write_text(bench.objects_yaml())
        registry = Registry(ZoneSet.build("cluster.local", (), 5), ttl=5, client_index=True)
        apply_all(registry, load_objects([str(path)]))
    finally:
        path.unlink()
    assert registry.client_namespaces == {ip: b"\x05bench" for ip in bench.PODS}


def test_readme_figures_are_the_results_file() -> None:
    import json

    rows = {row["config"]: row for row in json.loads((ROOT / "benchmarks" / "results" / "autopath.json").read_text())}  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    docs = (ROOT / "docs" / "autopath.md").read_text()
    for config, row in rows.items():
        assert row["failed"] == 0
        line = f"| {config} | {row['lookups_per_second']:,.0f} | {row['p50_ms']:.1f} ms | {row['questions_per_lookup']:.0f} |"  # fmt: skip
        assert line in readme, line
        assert f"{config:22s} {row['lookups_per_second']:10.0f} {row['p50_ms']:7.2f}" in docs
    assert rows["standard + autopath"]["questions_per_lookup"] == 1.0
    assert rows["standard"]["questions_per_lookup"] == 5.0


async def test_killer_mode_keeps_a_walk_for_the_pods_of_its_namespace(upstream: DnsUpstream) -> None:  # fmt: skip
    """Issue: a repeated walk costs one dict lookup in killer mode too. The wire cache keeps an
    autopath reply for the pods of the namespace it was walked for: a pod of that namespace
    hits it (and it counts as an autopath answer); the same bytes from a client of no or another
    namespace get the plain NXDOMAIN; a name the walk read that comes to exist, or a change to
    the found Service, drops it before the next query (a cluster-zone change moves the zone's
    epoch, which the kept reply follows; names the walk read in other zones drop it by name)."""
    import socket

    from kdns.app import App

    config = build_config(None, {}, {"objects": [FIXTURE], "autopath": True, "autopath_search": ["corp.example"], "killer": True, "upstreams": [upstream.upstream("udp")], "listen": ["127.0.0.1:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off"})  # fmt: skip
    app = App(config)
    await app.start_source()
    port = (await app.listeners.bind(config.listen[0]))[0].port
    loop = asyncio.get_running_loop()
    query = dns.message.make_query("web.shop.prod.svc.cluster.local.", "A")
    query.id = 77
    wire = query.to_wire()

    def ask(source: str) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.sendto(wire, ("127.0.0.1", port))
            return sock.recvfrom(65535)[0]

    async def from_(peer: tuple[str, int]) -> dns.message.Message:
        return dns.message.from_wire(await loop.run_in_executor(None, ask, peer[0]))

    try:
        assert app.killer is not None and app.autopath is not None
        wirecache, stage = app.killer.wire, app.autopath
        first = await from_(PROD)
        assert answer(first)[0].endswith("CNAME web.shop.svc.cluster.local.")
        hits, answers = wirecache.hits, stage.answers
        again = await from_(PROD_2)  # another pod of prod: the kept reply, one dict lookup
        assert wirecache.hits == hits + 1 and stage.answers == answers + 1
        assert answer(again) == answer(first)
        for other in (STRANGER, SHOP):  # no namespace, another namespace: no shortcut
            plain = await from_(other)
            assert plain.rcode() == dns.rcode.NXDOMAIN and not plain.answer
        assert wirecache.hits == hits + 1
        # The found Service moves: the next query sees it.
        app.registry.upsert(_service("shop", "web", "10.96.0.99"))
        assert "10.96.0.99" in answer(await from_(PROD))[-1]
        await from_(PROD)  # kept again
        # A name the walk read before the found one comes to exist: it wins at once.
        # intranet: prod.svc (asked), svc.cluster.local, cluster.local, then corp.example.
        query = dns.message.make_query("intranet.prod.svc.cluster.local.", "A")
        query.id = 78
        wire = query.to_wire()
        for _ in range(3):  # upstream, then the forward cache, then the kept reply
            found = await from_(PROD)
        assert answer(found)[0].endswith("CNAME intranet.corp.example.")
        hits = wirecache.hits
        assert answer(await from_(PROD)) == answer(found) and wirecache.hits == hits + 1
        app.registry.upsert(Namespace("intranet"))  # intranet.svc.cluster.local now exists
        stopped = await from_(PROD)
        assert answer(stopped) == [
            "intranet.prod.svc.cluster.local. 5 CNAME intranet.svc.cluster.local."
        ], answer(stopped)
    finally:
        await app.listeners.close_all()
