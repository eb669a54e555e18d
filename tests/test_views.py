"""Views by client network and block lists (kdns.policy.views, kdns.policy.blocklist).

Table cases ask the same names from a LAN address (in the ``lan`` view, with block lists and
only the home zone) and from a pod address (in no view: every zone, no block list), through the
real ``Responder`` on query bytes, the way the UDP and TCP servers call it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.authority.localzones import from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all
from kdns.policy.blocklist import BlockList, wire_name
from kdns.policy.views import View, Views
from kdns.server.wire import Responder

FIXTURES = Path(__file__).parent / "fixtures"
LAN = ("192.168.1.23", 40000)
KIDS = ("192.168.1.77", 40000)
POD = ("10.244.1.5", 40000)

HOSTS = """\
# StevenBlack-style hosts file
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
255.255.255.255 broadcasthost
::1 localhost ip6-localhost ip6-loopback
0.0.0.0 0.0.0.0

0.0.0.0 ads.example.net  # trailing comment
0.0.0.0 tracker.example.org metrics.example.org
127.0.0.1 Telemetry.Example.COM.
:: v6only.example.net
not-a-hosts-line
0.0.0.0 bad..name
0.0.0.0 tracker.home.example.com
"""
DOMAINS = """\
! adblock-style comment
# plain comment
games.example
||social.example^
*.video.example
toolong-label-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example
"""


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> tuple[BlockList, BlockList]:
    folder = tmp_path_factory.mktemp("lists")
    (folder / "hosts").write_text(HOSTS)
    (folder / "domains").write_text(DOMAINS)
    ads = BlockList.load("ads", str(folder / "hosts"), "hosts", "null")
    kids = BlockList.load("kids", str(folder / "domains"), "domains", "nxdomain")
    return ads, kids


def test_hosts_format(lists: tuple[BlockList, BlockList]) -> None:
    ads, _ = lists
    for name in ("ads.example.net", "tracker.example.org", "metrics.example.org",
                 "telemetry.example.com", "v6only.example.net", "tracker.home.example.com"):  # fmt: skip
        assert wire_name(name.encode()) in ads, name
    for name in ("localhost", "localhost.localdomain", "broadcasthost", "ip6-localhost"):
        assert wire_name(name.encode()) not in ads, name  # hosts-file headers never block
    assert ads.entries == 6 and ads.skipped == 2  # not-a-hosts-line, bad..name


def test_domains_format(lists: tuple[BlockList, BlockList]) -> None:
    _, kids = lists
    for name in ("games.example", "social.example", "video.example"):
        assert wire_name(name.encode()) in kids, name
    assert kids.entries == 3 and kids.skipped == 1  # the 64-byte label


def test_memory_is_eight_bytes_a_name(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_text("".join(f"host{i}.ads{i % 97}.example\n" for i in range(20000)))
    big = BlockList.load("big", str(path), "domains", "nxdomain")
    assert big.entries == 20000
    assert big.memory() == 8 * 20000 + 4 * 65537
    assert list(big.hashes) == sorted(big.hashes)
    assert wire_name(b"host19999.ads19999.example") not in big  # ads19999 % 97 != 19999
    assert wire_name(b"host123.ads26.example") in big


# --- the same names from a LAN address and from a pod address ----------------------------------


@pytest.fixture(scope="module")
def responder(lists: tuple[BlockList, BlockList]) -> Responder:
    ads, kids = lists
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("home.example.com", 300),))
    registry = Registry(zones, ttl=5)
    apply_all(registry, load_objects([str(FIXTURES / "cluster.yaml")]))
    registry.set_local(from_records("home.example.com", ["nas A 192.168.1.11", "* A 192.168.1.58"]))
    registry.synced = True
    resolver = Resolver(registry)
    responder = Responder(registry.answers, resolver.resolve)
    responder.derived = registry.derived
    views = [
        # Listed first, so a kid's device gets both lists; the LAN gets the ads list only.
        View(
            "kids",
            ["192.168.1.64/26"],
            ["home.example.com"],
            [kids.as_list("kids", "nxdomain"), ads.as_list("ads", "nodata")],
        ),  # fmt: skip
        View("lan", ["192.168.1.0/24", "fd00::/64"], ["home.example.com"], [ads]),
    ]
    responder.views = Views(views, registry.zones, {})
    return responder


def ask(responder: Responder, peer: Any, qname: str, qtype: str = "A") -> tuple[str, list[str]]:
    wire = responder.respond(dns.message.make_query(qname, qtype).to_wire(), peer=peer)
    assert isinstance(wire, bytes)
    reply = dns.message.from_wire(wire)
    return dns.rcode.to_text(reply.rcode()), sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in reply.answer
        for rdata in rrset
    )


CASES = [
    # (id, client, qname, qtype, rcode, answer)
    ("LAN: a listed name gets 0.0.0.0 (answer = null)", LAN, "ads.example.net.", "A", "NOERROR",
     ["ads.example.net. 2 A 0.0.0.0"]),
    ("LAN: AAAA gets ::", LAN, "ads.example.net.", "AAAA", "NOERROR", ["ads.example.net. 2 AAAA ::"]),
    ("LAN: other types NODATA", LAN, "ads.example.net.", "TXT", "NOERROR", []),
    ("LAN: subdomains of a listed name are blocked", LAN, "a.b.ads.example.net.", "A", "NOERROR",
     ["a.b.ads.example.net. 2 A 0.0.0.0"]),
    ("LAN: matching is on label boundaries", LAN, "badads.example.net.", "A", "REFUSED", []),
    ("LAN: blocking comes before local data", LAN, "tracker.home.example.com.", "A", "NOERROR",
     ["tracker.home.example.com. 2 A 0.0.0.0"]),
    ("LAN: the case of the question is kept", LAN, "ADS.Example.NET.", "A", "NOERROR",
     ["ADS.Example.NET. 2 A 0.0.0.0"]),
    ("LAN: its zones answer", LAN, "nas.home.example.com.", "A", "NOERROR",
     ["nas.home.example.com. 300 A 192.168.1.11"]),
    ("LAN: cluster.local is not in the view: outside its zones (REFUSED, no forwarder)", LAN,
     "kubernetes.default.svc.cluster.local.", "A", "REFUSED", []),
    ("LAN over IPv6", ("fd00::23", 1, 0, 0), "ads.example.net.", "A", "NOERROR",
     ["ads.example.net. 2 A 0.0.0.0"]),
    ("LAN over IPv4-mapped IPv6", ("::ffff:192.168.1.23", 1, 0, 0), "ads.example.net.", "A",
     "NOERROR", ["ads.example.net. 2 A 0.0.0.0"]),
    ("kids: the first view that matches; its own list answers NXDOMAIN", KIDS, "games.example.",
     "A", "NXDOMAIN", []),
    ("kids: the shared list answers the kids' way (nodata)", KIDS, "ads.example.net.", "A",
     "NOERROR", []),
    ("pod: no view, the listed name is not blocked (outside our zones: REFUSED here)", POD,
     "ads.example.net.", "A", "REFUSED", []),
    ("pod: local data, no blocking", POD, "tracker.home.example.com.", "A", "NOERROR",
     ["tracker.home.example.com. 300 A 192.168.1.58"]),
    ("pod: cluster names", POD, "kubernetes.default.svc.cluster.local.", "A", "NOERROR",
     ["kubernetes.default.svc.cluster.local. 5 A 10.0.0.1"]),
]  # fmt: skip


@pytest.mark.parametrize(("client", "qname", "qtype", "rcode", "want"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_view_case(responder: Responder, client: Any, qname: str, qtype: str, rcode: str, want: list[str]) -> None:  # fmt: skip
    assert ask(responder, client, qname, qtype) == (rcode, want)


def test_blocked_queries_are_counted_per_view_and_list(responder: Responder) -> None:
    views = responder.views
    assert isinstance(views, Views)
    before = dict(views.counts)
    ask(responder, LAN, "metrics.example.org.")
    ask(responder, KIDS, "social.example.")
    ask(responder, POD, "metrics.example.org.")
    after = views.counts
    assert after[("lan", "ads")] == before.get(("lan", "ads"), 0) + 1
    assert after[("kids", "kids")] == before.get(("kids", "kids"), 0) + 1


def test_forwarding_for_zones_outside_the_view(responder: Responder) -> None:
    """A zone not in the client's view goes where names outside kdns's zones go: to the
    forwarder, when the client may forward."""
    sent: list[bytes] = []

    class Forwarder:
        def handle(self, query: Any, replier: Any, peer: Any) -> bytes:
            sent.append(query.name)
            return query.error(2)

        def chase(self, query: Any, answer: Any, replier: Any, peer: Any) -> bytes | None:
            return None

    responder.forwarder = Forwarder()
    try:
        assert ask(responder, LAN, "kubernetes.default.svc.cluster.local.")[0] == "SERVFAIL"
        assert sent == [b"\nkubernetes\x07default\x03svc\x07cluster\x05local\x00"]
        responder.forward_allow = lambda ip: False
        assert ask(responder, LAN, "kubernetes.default.svc.cluster.local.")[0] == "REFUSED"
    finally:
        responder.forwarder = None
        responder.forward_allow = None


def test_view_cache_is_bounded() -> None:
    views = Views([View("lan", ["192.168.0.0/16"], None, [])], ZoneSet.build("c.l", (), 5), {})
    for i in range(70000):
        views.view_of(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
    assert len(views._by_ip) <= 65536
    assert views.view_of("192.168.3.4") is views.views[0]
    assert views.view_of_packed(bytes((192, 168, 3, 4))) is views.views[0]
    assert views.view_of_packed(bytes(16)) is None


# --- gateway class filters per view ----------------------------------------------------------------
#
# k8s_gateway answers from the GatewayClasses / IngressClasses it is told (gatewayClasses,
# ingressClasses), external-dns publishes the classes of its --gateway-class / --ingress-class:
# a split-horizon deployment runs one per audience. A [[views]] entry's own gateway_classes /
# ingress_classes does the same from one kdns: the LAN sees the internal controllers, the
# internet-facing view the external ones, clients in no view [gateway]'s (here: every class, so
# a route on both Gateways answers both addresses, as external-dns combines its parents').

GZONE = "home.example.com"
WAN = ("198.51.100.7", 40000)


def gateway_responder(**resolver: Any) -> tuple[Responder, Registry, list[Any]]:
    from kdns.authority.gateway import GatewaySettings
    from kdns.k8s.objects import slim
    from kdns.policy.views import gateway_answers
    from kdns.values import ViewSource
    from tests.k8sapi import gateway, httproute, ingress

    zones = ZoneSet.build("cluster.local", (), 5, gateway_zones=(GZONE,))
    registry = Registry(zones, ttl=5, gateway=GatewaySettings(zones=(GZONE,), ttl=60))
    both = [("infra", "public"), ("infra", "lan")]
    with registry.batch():
        for raw in (
            gateway(
                "infra", "public", ["203.0.113.1"], [("h", f"*.{GZONE}")], gateway_class="external"
            ),  # fmt: skip
            gateway(
                "infra", "lan", ["192.168.1.1"], [("h", f"*.{GZONE}")], gateway_class="internal"
            ),  # fmt: skip
            httproute("apps", "wiki", [f"wiki.{GZONE}"], both),
            httproute("apps", "blog", [f"blog.{GZONE}"], [("infra", "public")]),
            httproute("apps", "nas", [f"nas.{GZONE}"], [("infra", "lan")]),
            httproute("apps", "apps", [f"*.apps.{GZONE}"], [("infra", "public")]),
            httproute("apps", "deep", [f"deep.sub.apps.{GZONE}"], [("infra", "lan")]),
            ingress(
                "apps", "old", [f"old.{GZONE}"], ["203.0.113.9"], ingress_class="nginx-external"
            ),  # fmt: skip
        ):
            obj = slim(raw)
            assert obj is not None
            registry.upsert(obj)
    registry.synced = True
    found = Resolver(registry, **resolver)
    responder = Responder(registry.answers, found.resolve)
    responder.derived = registry.derived
    sources = [
        ViewSource(
            "lan", ("192.168.1.0/24",), None, (), (), None, ("internal",), ("nginx-internal",)
        ),  # fmt: skip
        ViewSource("wan", ("198.51.100.0/24",), None, (), (), None, ("external",), None),
        ViewSource("same", ("192.0.2.0/24",), None, (), (), None, None, None),  # [gateway]'s
    ]
    own = gateway_answers(sources, registry, found)
    views = [View(s.name, s.networks, s.zones, [], [], g) for s, g in zip(sources, own, strict=True)]  # fmt: skip
    responder.views = Views(views, registry.zones, {})
    return responder, registry, own


def test_view_class_filters_answer_each_audience_its_controllers() -> None:
    responder, registry, own = gateway_responder()
    assert own[2] is None  # a view with [gateway]'s filters: the registry's answers, no overlay
    wiki, blog, nas = (f"{n}.{GZONE}." for n in ("wiki", "blog", "nas"))
    # one route on both Gateways: each audience its own controller's address
    assert ask(responder, LAN, wiki) == ("NOERROR", [f"{wiki} 60 A 192.168.1.1"])
    assert ask(responder, WAN, wiki) == ("NOERROR", [f"{wiki} 60 A 203.0.113.1"])
    assert ask(responder, POD, wiki) == ("NOERROR", [f"{wiki} 60 A 192.168.1.1", f"{wiki} 60 A 203.0.113.1"])  # fmt: skip
    # a name whose only claims are filtered out is NXDOMAIN for that audience (SOA minimum:
    # [gateway] ttl), and answered for the others
    rcode, _ = ask(responder, LAN, blog)
    assert rcode == "NXDOMAIN"
    assert ask(responder, WAN, blog) == ("NOERROR", [f"{blog} 60 A 203.0.113.1"])
    assert ask(responder, WAN, nas)[0] == "NXDOMAIN"
    assert ask(responder, LAN, nas) == ("NOERROR", [f"{nas} 60 A 192.168.1.1"])
    assert ask(responder, LAN, nas, "TXT") == ("NOERROR", [])  # NODATA
    # Ingresses by ingressClassName
    assert ask(responder, LAN, f"old.{GZONE}.")[0] == "NXDOMAIN"
    assert ask(responder, WAN, f"old.{GZONE}.")[1] == [f"old.{GZONE}. 60 A 203.0.113.9"]
    # route wildcards (Gateway API: any depth) follow the filters too: the external *.apps
    # is no LAN name; deep.sub.apps (internal) stays, and sub.apps is a name with names below
    other = f"other.sub.apps.{GZONE}."
    assert ask(responder, WAN, other) == ("NOERROR", [f"{other} 60 A 203.0.113.1"])
    assert ask(responder, POD, other) == ("NOERROR", [f"{other} 60 A 203.0.113.1"])
    assert ask(responder, LAN, other)[0] == "NXDOMAIN"
    assert ask(responder, LAN, f"sub.apps.{GZONE}.") == ("NOERROR", [])
    assert ask(responder, LAN, f"deep.sub.apps.{GZONE}.")[1] == [f"deep.sub.apps.{GZONE}. 60 A 192.168.1.1"]  # fmt: skip
    # for the WAN, deep.sub.apps is claimed by nobody it sees: the external *.apps covers it
    deep = f"deep.sub.apps.{GZONE}."
    assert ask(responder, WAN, deep) == ("NOERROR", [f"{deep} 60 A 203.0.113.1"])


def test_view_class_filters_follow_changes_and_tell_the_watchers() -> None:
    # The WAN's answer moves while [gateway]'s (the registry's answers dict) does not: the
    # registry's flush still reports the name, so killer mode's wire cache drops its copy.
    from kdns.k8s.objects import slim
    from tests.k8sapi import gateway

    responder, registry, _ = gateway_responder()
    wiki = f"wiki.{GZONE}."
    told: list[set[bytes]] = []
    registry.watchers.append(lambda names_, zones_, everything: told.append(names_))
    assert ask(responder, WAN, wiki)[1] == [f"{wiki} 60 A 203.0.113.1"]
    key = names.to_wire(wiki)
    before = {k: v for k, v in registry.answers.items() if k.startswith(key)}
    # The public Gateway moves to a class the WAN view does not take: the WAN's wiki is gone,
    # [gateway]'s (every class: both Gateways' addresses) stays as it was.
    moved = slim(gateway("infra", "public", ["203.0.113.1"], [("h", f"*.{GZONE}")], gateway_class="retired"))  # fmt: skip
    assert moved is not None
    registry.upsert(moved)
    assert ask(responder, WAN, wiki)[0] == "NXDOMAIN"
    assert ask(responder, POD, wiki)[1] == [f"{wiki} 60 A 192.168.1.1", f"{wiki} 60 A 203.0.113.1"]
    assert any(key in names_ for names_ in told)
    assert {k: v for k, v in registry.answers.items() if k.startswith(key)} == before


def test_view_class_filters_fallthrough() -> None:
    # [gateway] fallthrough (k8s_gateway's `fallthrough`): a name nobody of the view's
    # classes claims goes to the zone's upstreams, as an unclaimed name does for everyone.
    from kdns.dns.answer import FORWARD

    _, registry, own = gateway_responder(forward=True, fallthrough=(GZONE,))
    lan = own[0]
    assert lan.answer(names.to_wire(f"blog.{GZONE}"), 1) is FORWARD
    assert lan.answer(names.to_wire(f"other.sub.apps.{GZONE}"), 1) is FORWARD
    assert lan.answer(names.to_wire(f"nas.{GZONE}"), 1) is None  # as [gateway]'s answer


def test_view_class_filters_config(tmp_path: Path) -> None:
    from kdns.config import ConfigError, build_config

    path = tmp_path / "kdns.toml"
    path.write_text(
        '[gateway]\nzones = ["home.example.com"]\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.1.0/24"]\n'
        'gateway_classes = ["eg-internal"]\ningress_classes = []\n'
    )
    (view,) = build_config(str(path), {}).views
    assert (view.gateway_classes, view.ingress_classes) == (("eg-internal",), ())
    path.write_text('[[views]]\nname = "lan"\nnetworks = ["192.168.1.0/24"]\ngateway_classes = ["x"]\n')  # fmt: skip
    with pytest.raises(ConfigError, match="class filters need \\[gateway\\] zones"):
        build_config(str(path), {})
