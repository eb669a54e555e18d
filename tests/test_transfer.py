"""Zone transfers (kdns.authority.transfer): RFC 5936 AXFR, RFC 1995 IXFR, CoreDNS ``transfer``.

Transfers are validated the way a secondary would: every message goes through dnspython's
``dns.xfr.Inbound`` (the state machine behind ``dns.query.inbound_xfr``), which rejects a
transfer whose first RR is not the SOA, whose closing SOA is missing or differs, or which has
records after the closing SOA.
"""

from __future__ import annotations

import struct

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.transfer import (
    NOTAUTH,
    TransferPolicy,
    ZoneTransfers,
    axfr_messages,
    respond_transfer,
    serial_up_to_date,
    transfer_messages,
    zone_names,
    zone_rrsets,
)
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.model import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Service,
    ServicePort,
)
from kdns.policy.acl import Acl, parse_rules
from kdns.server.meter import TCP4, UDP4
from kdns.server.wire import Responder

ANYONE = TransferPolicy(["*"])


# ----------------------------------------------------------------------- fixtures


def service(
    name: str,
    ip: str = "",
    ns: str = "default",
    *,
    ports: tuple[ServicePort, ...] = (),
    headless: bool = False,
    external_name: str = "",
    lb_ips: tuple[str, ...] = (),
) -> Service:
    kind = "ExternalName" if external_name else ("LoadBalancer" if lb_ips else "ClusterIP")
    ips = (ip,) if ip else ()
    return Service(ns, name, kind, ips, headless, external_name, ports, (), lb_ips, False)


def small_registry(external: tuple[str, ...] = ("example.org",)) -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", external, 5))
    with registry.batch():
        registry.upsert(Namespace("default"))
        registry.upsert(Namespace("kube-system"))
        registry.upsert(
            service("kube-dns", "10.96.0.10", "kube-system", ports=(ServicePort("dns", "UDP", 53),))
        )
        registry.upsert(
            service(
                "web",
                "10.96.0.20",
                ports=(ServicePort("http", "TCP", 80),),
                lb_ips=("203.0.113.7",),
            )
        )
        registry.upsert(service("db", headless=True, ports=(ServicePort("pg", "TCP", 5432),)))
        registry.upsert(
            EndpointSlice(
                "default",
                "db-abc",
                "db",
                "IPv4",
                (EndpointPort("pg", "TCP", 5432),),
                (
                    Endpoint(("10.244.1.5",), "db-0", True, "db-0"),
                    Endpoint(("10.244.1.6",), "", True, ""),
                    Endpoint(("10.244.1.7",), "", False, ""),  # not ready: not published
                ),
            )
        )
        registry.upsert(service("docs", external_name="docs.example.com"))
    registry.synced = True
    return registry


# Spec 1.1.0 records of the small fixture, as zone-file lines (absolute names). Endpoint names
# and their PTRs are lazy in the registry; a transfer carries them all the same.
CLUSTER_LOCAL = {
    "cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local.",
    'dns-version.cluster.local. 28800 IN TXT "1.1.0"',
    "ns.dns.cluster.local. 5 IN A 10.96.0.10",
    # kube-dns: ClusterIP, SRV on its named port.
    "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10",
    "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10",
    "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
    # web: ClusterIP + LoadBalancer.
    "web.default.svc.cluster.local. 5 IN A 10.96.0.20",
    "web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.",
    "_http._tcp.web.default.svc.cluster.local. 5 IN A 10.96.0.20",
    "_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local.",
    # db: headless, two ready endpoints (one with a hostname).
    "db.default.svc.cluster.local. 5 IN A 10.244.1.5",
    "db.default.svc.cluster.local. 5 IN A 10.244.1.6",
    "db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
    "db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-1-6.db.default.svc.cluster.local.",
    "_pg._tcp.db.default.svc.cluster.local. 5 IN A 10.244.1.5",
    "_pg._tcp.db.default.svc.cluster.local. 5 IN A 10.244.1.6",
    "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
    "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-1-6.db.default.svc.cluster.local.",
    "db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5",
    "db-0.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 db-0.db.default.svc.cluster.local.",
    "10-244-1-6.db.default.svc.cluster.local. 5 IN A 10.244.1.6",
    "10-244-1-6.db.default.svc.cluster.local. 5 IN SRV 0 100 5432 10-244-1-6.db.default.svc.cluster.local.",
    # docs: ExternalName.
    "docs.default.svc.cluster.local. 5 IN CNAME docs.example.com.",
}

IN_ADDR_ARPA = {
    "in-addr.arpa. 5 IN NS kube-dns.kube-system.svc.cluster.local.",
    "10.0.96.10.in-addr.arpa. 5 IN PTR kube-dns.kube-system.svc.cluster.local.",
    "20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local.",
    "5.1.244.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local.",
    "6.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-6.db.default.svc.cluster.local.",
}

EXAMPLE_ORG = {
    "example.org. 5 IN NS ns1.dns.example.org.",
    "web.default.example.org. 5 IN A 203.0.113.7",
    "web.default.example.org. 5 IN SRV 0 100 80 web.default.example.org.",
    "_http._tcp.web.default.example.org. 5 IN A 203.0.113.7",
    "_http._tcp.web.default.example.org. 5 IN SRV 0 100 80 web.default.example.org.",
}


def query(zone: str, rdtype: str = "AXFR", serial: int | None = None) -> dns.message.Message:
    q = dns.message.make_query(zone, rdtype)
    if serial is not None:  # RFC 1995 3: the client's SOA in the authority section
        soa = dns.rrset.from_text(
            zone + ".", 0, "IN", "SOA", f"ns.secondary. hostmaster.secondary. {serial} 0 0 0 0"
        )
        q.authority.append(soa)
    return q


def transfer(
    registry: Registry, zone: str, *, max_size: int = 16384, rdtype: str = "AXFR"
) -> list[bytes]:
    q = query(zone, rdtype)
    apex = names.to_wire(zone)
    question = q.to_wire()[12:]
    return axfr_messages(registry, apex, q.to_wire()[:2], question, max_size)


def inbound(
    wires: list[bytes], zone: str, rdtype: str = "AXFR", serial: int | None = None
) -> dns.zone.Zone:
    """Feed the messages to dnspython's secondary-side state machine; the received zone."""
    origin = dns.name.from_text(zone)
    received = dns.zone.Zone(origin, relativize=False)
    kind = dns.rdatatype.from_text(rdtype)
    with dns.xfr.Inbound(received, kind, serial) as xfr:
        done = False
        for wire in wires:
            assert not done, "RFC 5936 2.2: nothing after the closing SOA"
            message = dns.message.from_wire(
                wire,
                xfr=True,
                one_rr_per_rrset=True,  # absolute names, as the zone
            )
            done = xfr.process_message(message)
        assert done, "RFC 5936 2.2: the transfer ends with the SOA"
    return received


def zone_lines(received: dns.zone.Zone, *, with_soa: bool = False) -> set[str]:
    out = set()
    for name, rdataset in received.iterate_rdatasets():
        if rdataset.rdtype == dns.rdatatype.SOA and not with_soa:
            continue
        for rdata in rdataset:
            rtype = dns.rdatatype.to_text(rdataset.rdtype)
            out.add(f"{name} {rdataset.ttl} IN {rtype} {rdata.to_text()}")
    return out


def answers(wires: list[bytes]) -> list[dns.rrset.RRset]:
    """Every RR of the transfer in order, one RRset per RR, absolute names."""
    out: list[dns.rrset.RRset] = []
    for wire in wires:
        message = dns.message.from_wire(wire, xfr=True, one_rr_per_rrset=True)
        out.extend(message.answer)
    return out


# ----------------------------------------------------------------------- AXFR contents


@pytest.mark.parametrize(
    "zone, expected",
    [
        pytest.param("cluster.local", CLUSTER_LOCAL, id="rfc5936-cluster-zone-every-record"),
        pytest.param("in-addr.arpa", IN_ADDR_ARPA, id="rfc5936-reverse-zone-ptrs"),
        pytest.param("example.org", EXAMPLE_ORG, id="rfc5936-k8s_external-zone"),
    ],
)
def test_axfr_holds_exactly_the_zone(zone: str, expected: set[str]) -> None:
    registry = small_registry()
    received = inbound(transfer(registry, zone), zone)
    assert zone_lines(received) == expected


def test_axfr_soa_first_and_last_with_current_serial() -> None:
    """RFC 5936 2.2: the SOA starts and ends the transfer; the serial is the zone's current."""
    registry = small_registry()
    zone = registry.zones.by_apex[names.to_wire("cluster.local")]
    rrs = answers(transfer(registry, "cluster.local"))
    first, last = rrs[0], rrs[-1]
    for soa in (first, last):
        assert soa.rdtype == dns.rdatatype.SOA
        assert soa.name.to_text() == "cluster.local."
        assert soa[0].serial == zone.serial
        assert soa.ttl == 5  # CoreDNS: min(ttl, 300)
    assert first == last
    assert [r.rdtype for r in rrs].count(dns.rdatatype.SOA) == 2
    # The serial moves with the zone (registry bumps it) and the transfer follows.
    registry.upsert(service("new", "10.96.0.99"))
    assert zone.serial != first[0].serial
    assert answers(transfer(registry, "cluster.local"))[0][0].serial == zone.serial


def test_axfr_ns_at_apex_right_after_soa() -> None:
    """RFC 5936 2.2 / CoreDNS kubernetes Transfer: SOA, then the apex NS (+ glue in zone)."""
    registry = small_registry()
    rrs = answers(transfer(registry, "cluster.local"))
    assert rrs[1].rdtype == dns.rdatatype.NS and rrs[1].name.to_text() == "cluster.local."


def test_axfr_matches_what_queries_answer() -> None:
    """Every RRset in the transfer is what a query for that name and type returns."""
    registry = small_registry()
    responder = Responder(registry.answers, Resolver(registry).resolve)
    received = inbound(transfer(registry, "cluster.local"), "cluster.local")
    checked = 0
    for name, rdataset in received.iterate_rdatasets():
        q = dns.message.make_query(name, rdataset.rdtype)
        wire = responder.respond(q.to_wire())
        assert isinstance(wire, bytes)
        reply = dns.message.from_wire(wire)
        found = reply.find_rrset(reply.answer, name, dns.rdataclass.IN, rdataset.rdtype)
        assert set(found) == set(rdataset), name
        assert found.ttl == rdataset.ttl, name
        checked += 1
    assert checked > 10


def test_axfr_excludes_names_of_a_more_specific_zone() -> None:
    """A zone transfer holds its own names only: ext.cluster.local (a k8s_external zone
    under the cluster domain) is transferred on its own, not inside cluster.local."""
    registry = small_registry(external=("ext.cluster.local",))
    cluster = zone_lines(inbound(transfer(registry, "cluster.local"), "cluster.local"))
    external = zone_lines(inbound(transfer(registry, "ext.cluster.local"), "ext.cluster.local"))
    assert not any(".ext.cluster.local. " in line for line in cluster)
    assert "web.default.ext.cluster.local. 5 IN A 203.0.113.7" in external
    assert "ext.cluster.local. 5 IN NS ns1.dns.ext.cluster.local." in external
    # And no PTRs or external names leak into the cluster zone either.
    assert all(
        line.split()[0].endswith(".cluster.local.") or line.startswith("cluster.local.")
        for line in cluster
    )


def test_zone_order_is_hierarchical_and_history_independent() -> None:
    """The apex first, a name before its descendants, and the same order whatever order
    the objects arrived in (a secondary diffing two transfers sees real changes only)."""
    registry = small_registry()
    zone = registry.zones.by_apex[names.to_wire("cluster.local")]
    listed = zone_names(registry, zone)
    assert listed[0] == zone.apex
    position = {name: i for i, name in enumerate(listed)}
    for name in listed[1:]:
        parent = names.parent(name)
        while parent != names.ROOT:
            if parent in position:
                assert position[parent] < position[name], names.to_text(name)
            parent = names.parent(parent)

    reordered = Registry(ZoneSet.build("cluster.local", ("example.org",), 5))
    with reordered.batch():
        for kind in ("EndpointSlice", "Service", "Namespace"):
            for key in sorted(registry.keys(kind), reverse=True):
                obj = registry.current(kind, key)
                assert obj is not None
                reordered.upsert(obj)
    other = reordered.zones.by_apex[zone.apex]
    assert zone_rrsets(reordered, other) == zone_rrsets(registry, zone)


def test_axfr_header_and_question() -> None:
    """RFC 5936 2.2.1: client's ID, QR + AA, NOERROR, RD copied; the question is echoed (here
    in every message, as miekg/dns Transfer.Out does)."""
    registry = small_registry()
    q = query("Cluster.Local")  # the client's letter case is echoed
    q.flags |= dns.flags.RD
    wire = q.to_wire()
    replies = respond_transfer(registry, ANYONE, wire, "10.0.0.1", tcp=True, max_size=512)
    assert len(replies) > 1
    for reply_wire in replies:
        assert reply_wire[:2] == wire[:2]
        assert len(reply_wire) <= 512
        reply = dns.message.from_wire(reply_wire, xfr=True)
        assert reply.flags & dns.flags.QR and reply.flags & dns.flags.AA
        assert reply.flags & dns.flags.RD
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply_wire[12 : 12 + len(wire) - 12] == wire[12:]  # question bytes, as sent
    # Owners point at the question name, so they take its case; names compare equal anyway.
    received = inbound(replies, "cluster.local")
    assert zone_lines(received) == CLUSTER_LOCAL


# ----------------------------------------------------------------------- splitting


def big_registry(count: int) -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    with registry.batch():
        for i in range(count):
            registry.upsert(
                service(
                    f"svc-{i}",
                    f"10.96.{i // 250}.{i % 250 + 1}",
                    f"ns-{i % 7}",
                    ports=(ServicePort("http", "TCP", 80),),
                )
            )
    registry.synced = True
    return registry


@pytest.fixture(scope="module")
def big() -> Registry:
    return big_registry(500)


@pytest.mark.parametrize(
    "max_size",
    [
        pytest.param(512, id="rfc5936-split-512"),
        pytest.param(16384, id="rfc5936-split-16k"),
        pytest.param(65535, id="rfc1035-tcp-64k"),
    ],
)
def test_big_zone_splits_into_valid_messages(big: Registry, max_size: int) -> None:
    """RFC 5936 2.2: a transfer may take many messages; each stays under the size asked,
    and the secondary still receives one complete, consistent zone."""
    wires = transfer(big, "cluster.local", max_size=max_size)
    assert all(len(w) <= max_size for w in wires)
    if max_size < 65535:
        assert len(wires) > 1
    lines = zone_lines(inbound(wires, "cluster.local"))
    # Per service: A + SRV on the name, A + SRV on the port name; + apex NS + dns-version TXT.
    expected = {
        "cluster.local. 5 IN NS ns.dns.cluster.local.",
        'dns-version.cluster.local. 28800 IN TXT "1.1.0"',
    }
    for i in range(500):
        name = f"svc-{i}.ns-{i % 7}.svc.cluster.local."
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        expected |= {
            f"{name} 5 IN A {ip}",
            f"{name} 5 IN SRV 0 100 80 {name}",
            f"_http._tcp.{name} 5 IN A {ip}",
            f"_http._tcp.{name} 5 IN SRV 0 100 80 {name}",
        }
    assert lines == expected
    reverse = zone_lines(inbound(transfer(big, "in-addr.arpa", max_size=max_size), "in-addr.arpa"))
    assert len(reverse) == 500 + 1  # a PTR per ClusterIP + the apex NS


def test_messages_echo_question_and_id_after_split() -> None:
    registry = big_registry(200)
    wires = transfer(registry, "cluster.local", max_size=1024)
    first_id = wires[0][:2]
    for wire in wires:
        assert wire[:2] == first_id
        assert struct.unpack("!H", wire[4:6])[0] == 1
        assert struct.unpack("!H", wire[6:8])[0] >= 1  # never an empty message


# ----------------------------------------------------------------------- IXFR


def test_ixfr_up_to_date_gets_single_soa() -> None:
    """RFC 1995 2 / CoreDNS kubernetes Transfer: a client at our serial gets one SOA."""
    registry = small_registry()
    zone = registry.zones.by_apex[names.to_wire("cluster.local")]
    q = query("cluster.local", "IXFR", zone.serial)
    replies = respond_transfer(registry, ANYONE, q.to_wire(), "10.0.0.1", tcp=True)
    assert len(replies) == 1
    rrs = answers(replies)
    assert len(rrs) == 1 and rrs[0].rdtype == dns.rdatatype.SOA
    assert rrs[0][0].serial == zone.serial
    inbound(replies, "cluster.local", "IXFR", zone.serial)  # dnspython: done, up to date


def test_ixfr_old_serial_falls_back_to_axfr() -> None:
    """RFC 1995 4: the server may answer an IXFR with a full transfer (AXFR format)."""
    registry = small_registry()
    zone = registry.zones.by_apex[names.to_wire("cluster.local")]
    old = (zone.serial - 10) & 0xFFFFFFFF
    q = query("cluster.local", "IXFR", old)
    replies = respond_transfer(registry, ANYONE, q.to_wire(), "10.0.0.1", tcp=True)
    received = inbound(replies, "cluster.local", "IXFR", old)
    assert zone_lines(received) == CLUSTER_LOCAL
    soa = received.get_rdataset("cluster.local.", "SOA")
    assert soa is not None and soa[0].serial == zone.serial


def test_transfer_messages_ixfr_without_serial_is_axfr() -> None:
    registry = small_registry()
    q = query("cluster.local", "IXFR")
    wire = q.to_wire()
    replies = transfer_messages(registry, names.to_wire("cluster.local"), wire[:2], wire[12:])
    rrs = answers(replies)
    assert rrs[0].rdtype == rrs[-1].rdtype == dns.rdatatype.SOA and len(rrs) > 2


@pytest.mark.parametrize(
    "client, ours, up_to_date",
    [
        pytest.param(5, 5, True, id="equal-serial-is-up-to-date"),
        # Newer than ours: another replica's or a previous process's count, not ours (RFC 1995
        # 4 allows a full transfer at any time; a stale secondary is the worse outcome).
        pytest.param(6, 5, False, id="newer-gets-full-transfer"),
        pytest.param(4, 5, False, id="older-gets-full-transfer"),
        pytest.param(1, 0xFFFFFFFF, False, id="wrapped-newer-gets-full-transfer"),
        pytest.param(0xFFFFFFFF, 1, False, id="wrapped-older-gets-full-transfer"),
    ],
)
def test_serial_arithmetic(client: int, ours: int, up_to_date: bool) -> None:
    assert serial_up_to_date(client, ours) is up_to_date


# ----------------------------------------------------------------------- refusals


def rcode_of(replies: list[bytes]) -> int:
    assert len(replies) == 1
    reply = dns.message.from_wire(replies[0])
    return reply.rcode()


# (case id, qname, qtype, over TCP, client, policy, synced, expected rcode)
REFUSALS = [
    ("coredns-transfer-udp-refused", "cluster.local", "AXFR", False, "10.0.0.1", ANYONE, True,
     dns.rcode.REFUSED),
    ("rfc5936-2.2.1-default-deny-refused", "cluster.local", "AXFR", True, "10.0.0.1",
     TransferPolicy(), True, dns.rcode.REFUSED),
    ("coredns-transfer-to-other-host-refused", "cluster.local", "AXFR", True, "10.0.0.9",
     TransferPolicy(["10.0.0.1"]), True, dns.rcode.REFUSED),
    ("rfc5936-2.2.1-not-a-zone-apex-notauth", "web.default.svc.cluster.local", "AXFR", True,
     "10.0.0.1", ANYONE, True, NOTAUTH),
    ("not-our-zone-refused", "example.com", "AXFR", True, "10.0.0.1", ANYONE, True,
     dns.rcode.REFUSED),
    ("design-not-synced-servfail", "cluster.local", "AXFR", True, "10.0.0.1", ANYONE, False,
     dns.rcode.SERVFAIL),
    ("rfc1995-3-ixfr-without-soa-formerr", "cluster.local", "IXFR", True, "10.0.0.1", ANYONE,
     True, dns.rcode.FORMERR),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, rdtype, tcp, client, policy, synced, expected",
    [pytest.param(*case[1:], id=case[0]) for case in REFUSALS],
)
def test_transfer_refusals(
    name: str,
    rdtype: str,
    tcp: bool,
    client: str,
    policy: TransferPolicy,
    synced: bool,
    expected: int,
) -> None:
    registry = small_registry()
    registry.synced = synced
    q = query(name, rdtype)
    wire = q.to_wire()
    replies = respond_transfer(registry, policy, wire, client, tcp=tcp)
    assert rcode_of(replies) == expected
    reply = dns.message.from_wire(replies[0])
    assert reply.id == q.id
    assert not reply.answer
    assert reply.question == q.question  # RFC 5936 2.2.1: error responses copy the question


def test_transfer_allowed_from_listed_secondary() -> None:
    registry = small_registry()
    policy = TransferPolicy(["192.0.2.53/32"])
    wire = query("cluster.local").to_wire()
    replies = respond_transfer(registry, policy, wire, "192.0.2.53", tcp=True)
    assert zone_lines(inbound(replies, "cluster.local")) == CLUSTER_LOCAL


def test_malformed_transfer_queries() -> None:
    registry = small_registry()
    assert respond_transfer(registry, ANYONE, b"\x00\x01", "10.0.0.1", tcp=True) == []
    truncated = query("cluster.local").to_wire()[:20]
    assert rcode_of(respond_transfer(registry, ANYONE, truncated, "10.0.0.1", tcp=True)) == (
        dns.rcode.FORMERR
    )
    with pytest.raises(ValueError, match="not a zone transfer"):
        respond_transfer(registry, ANYONE, query("cluster.local", "A").to_wire(), "x", tcp=True)


# ----------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    "allow, client, expected",
    [
        pytest.param([], "10.0.0.1", False, id="coredns-transfer-default-deny"),
        pytest.param([], "::1", False, id="coredns-transfer-default-deny-v6"),
        pytest.param(["*"], "198.51.100.7", True, id="coredns-transfer-to-star"),
        pytest.param(["10.0.0.0/8"], "10.200.3.4", True, id="cidr-inside"),
        pytest.param(["10.0.0.0/8"], "11.0.0.1", False, id="cidr-outside"),
        pytest.param(["192.0.2.53"], "192.0.2.53", True, id="coredns-transfer-to-host"),
        pytest.param(["192.0.2.53"], "192.0.2.54", False, id="host-is-a-slash-32"),
        pytest.param(["10.0.0.0/8"], "::ffff:10.1.1.1", True, id="v4-mapped-client"),
        pytest.param(["fd00::/8"], "fd00::53", True, id="v6-cidr"),
        pytest.param(["fd00::/8"], "10.0.0.1", False, id="v6-cidr-v4-client"),
        pytest.param(["fe80::/10"], "fe80::1%eth0", True, id="v6-scoped-client"),
        pytest.param(["10.0.0.0/8"], "not-an-ip", False, id="unparseable-client"),
        pytest.param(["10.0.0.1/8"], "10.9.9.9", True, id="host-bits-ignored-as-config"),
    ],
)
def test_transfer_policy(allow: list[str], client: str, expected: bool) -> None:
    assert TransferPolicy(allow).allowed(client) is expected


def test_transfer_policy_bad_entry() -> None:
    with pytest.raises(ValueError, match="transfer.allow: '10.0.0.0/33'"):
        TransferPolicy(["10.0.0.0/33"])
    assert not TransferPolicy()
    assert TransferPolicy(["*"])


# ----------------------------------------------------------------------- through the server


def test_responder_hooks_transfer_and_acl() -> None:
    """The server path: the resolver hands AXFR at an apex to ``ZoneTransfers`` (TCP only),
    and an acl rule blocks AXFR for everyone but the secondary (CoreDNS acl README example)."""
    registry = small_registry()
    responder = Responder(registry.answers, Resolver(registry).resolve)
    responder.transfers = ZoneTransfers(registry, TransferPolicy([SECONDARY_NET]))
    wire = query("cluster.local").to_wire()

    replies = responder.respond(wire, TCP4, ("192.0.2.53", 40000))
    assert isinstance(replies, list)
    assert zone_lines(inbound(replies, "cluster.local")) == CLUSTER_LOCAL

    over_udp = responder.respond(wire, UDP4, ("192.0.2.53", 40000))
    assert isinstance(over_udp, bytes)
    assert dns.message.from_wire(over_udp).rcode() == dns.rcode.REFUSED

    stranger = responder.respond(wire, TCP4, ("10.0.0.1", 40000))
    assert isinstance(stranger, list | bytes)
    first = stranger[0] if isinstance(stranger, list) else stranger
    assert dns.message.from_wire(first).rcode() == dns.rcode.REFUSED

    responder.acl = Acl(
        parse_rules(
            [
                {"action": "allow", "net": [SECONDARY_NET], "type": ["AXFR", "IXFR"]},
                {"action": "drop", "type": ["AXFR", "IXFR"]},
            ]
        )
    )
    assert responder.respond(wire, TCP4, ("10.0.0.1", 40000)) is None  # dropped
    assert isinstance(responder.respond(wire, TCP4, ("192.0.2.53", 40000)), list)


SECONDARY_NET = "192.0.2.53/32"
