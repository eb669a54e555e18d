"""Table-driven resolver tests, in the style of CoreDNS's ``test.Case`` tables.

Each case is (qname, qtype) -> (rcode, answer, authority, additional). The whole pipeline runs
in-process: manifest fixtures -> ``load_objects`` -> ``apply_all`` into a ``Registry`` ->
``Resolver`` -> ``Responder.respond`` on real query bytes; the reply is parsed with dnspython.
Records compare as sorted text lines (order inside an RRset does not matter), SOA serials as 0
(a dedicated test checks that the serial moves). Authority ``SOA`` is shorthand for the SOA of
the query's zone, its owner spelled the way the query spelled it.

Case ids cite where the expected behaviour comes from:
- "spec X.Y.Z": Kubernetes DNS-Based Service Discovery 1.1.0 (kubernetes/dns
  docs/specification.md);
- "CoreDNS ...": the ``kubernetes`` / ``k8s_external`` plugins (1.11-1.13), file or test named;
- "kdns deliberate (N)": a choice where kdns differs from CoreDNS on purpose:
  (1) existing names are NODATA for every type, never NXDOMAIN (RFC 8020);
  (2) SOA for a non-apex name that does not exist is NXDOMAIN (CoreDNS: NODATA);
  (3) retired: a headless service without ready endpoints is NXDOMAIN (spec 2.4.1);
  (4) ANY returns every RRset of the name (RFC 8482 permits; CoreDNS: NODATA);
  (5) extra labels before a pod name are NXDOMAIN (CoreDNS ignores them);
  (6) ExternalName answers CNAME for A/AAAA/CNAME/ANY, NODATA for other types;
  (7) a class other than IN is REFUSED;
  (8) empty non-terminals of the reverse tree are NODATA (CoreDNS: NXDOMAIN);
  (9) the reverse-zone apex NS names the cluster-zone DNS Service;
  (10) LoadBalancer ingress hostnames are not served;
  (11) the cluster apex NS is kube-dns.kube-system.svc.<zone> glued with its ClusterIP when
       that Service exists (as CoreDNS ns.go), else ns.dns.<zone>;
  (12) the SOA's MNAME is that same apex NS target (CoreDNS's SOA always says ns.dns.<zone>).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all
from kdns.model import Service, ServicePort
from kdns.server.wire import Responder

FIXTURES = Path(__file__).parent / "fixtures"
CLUSTER = str(FIXTURES / "cluster.yaml")
EXTRA = str(FIXTURES / "table" / "extra.yaml")  # kube-dns, in-zone ExternalName, edge cases

SOA = "SOA"  # authority shorthand: the SOA of the query's zone
ZONE_SOA = {
    "cluster.local.": "ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5",
    "in-addr.arpa.": "ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 0 7200 1800 86400 5",
    "ip6.arpa.": "ns.dns.ip6.arpa. hostmaster.ip6.arpa. 0 7200 1800 86400 5",
    "example.org.": "ns1.dns.example.org. hostmaster.dns.example.org. 0 7200 1800 86400 5",
}
# With the DNS Service known (the extra fixture), the SOA's MNAME is the apex NS target,
# kube-dns.kube-system.svc.<cluster zone>, in the cluster and reverse zones (kdns deliberate 12).
KUBE_DNS = "kube-dns.kube-system.svc.cluster.local."
EXTRA_SOA = {
    zone: (KUBE_DNS + rdata[rdata.index(" ") :] if not zone.startswith("example") else rdata)
    for zone, rdata in ZONE_SOA.items()
}


# --- harness ---------------------------------------------------------------------------------


class Case(NamedTuple):
    qname: str
    qtype: str
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] | str = ()
    additional: tuple[str, ...] | None = ()  # None: not checked
    aa: bool = True
    qclass: str = "IN"


def ok(
    id_: str,
    qname: str,
    qtype: str,
    answer: tuple[str, ...],
    extra: tuple[str, ...] | None = (),
    **kw: Any,
) -> Any:
    return pytest.param(Case(qname, qtype, "NOERROR", answer, (), extra, **kw), id=id_)


def nodata(id_: str, qname: str, qtype: str, **kw: Any) -> Any:
    return pytest.param(Case(qname, qtype, "NOERROR", (), SOA, **kw), id=id_)


def nxdomain(id_: str, qname: str, qtype: str, **kw: Any) -> Any:
    return pytest.param(Case(qname, qtype, "NXDOMAIN", (), SOA, **kw), id=id_)


def refused(id_: str, qname: str, qtype: str, qclass: str = "IN") -> Any:
    return pytest.param(Case(qname, qtype, "REFUSED", aa=False, qclass=qclass), id=id_)


def servfail(id_: str, qname: str, qtype: str) -> Any:
    return pytest.param(Case(qname, qtype, "SERVFAIL", aa=False), id=id_)


def build(
    *files: str, pods: str = "insecure", endpoint_pod_names: bool = False, synced: bool = True
) -> tuple[Registry, Responder]:
    zones = ZoneSet.build("cluster.local", ("example.org",), 5)
    registry = Registry(zones, ttl=5, pods=pods, endpoint_pod_names=endpoint_pod_names)
    if files:
        apply_all(registry, load_objects(list(files)))
    registry.synced = synced
    resolver = Resolver(registry)
    return registry, Responder(registry.answers, resolver.resolve)


def query(responder: Responder, qname: str, qtype: str, qclass: str = "IN") -> dns.message.Message:
    request = dns.message.make_query(qname, qtype, qclass, use_edns=0, payload=1232)
    wire = responder.respond(request.to_wire())
    assert wire is not None, "query dropped"
    reply = dns.message.from_wire(wire)
    assert reply.id == request.id
    assert not reply.flags & dns.flags.TC, "answer truncated"
    assert [q.to_text() for q in reply.question] == [q.to_text() for q in request.question]
    return reply


def lines(section: list[dns.rrset.RRset]) -> list[str]:
    """One text line per record, SOA serials zeroed, sorted."""
    out = []
    for rrset in section:
        rdclass = dns.rdataclass.to_text(rrset.rdclass)
        rdtype = dns.rdatatype.to_text(rrset.rdtype)
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.SOA:
                rdata = rdata.replace(serial=0)
            out.append(f"{rrset.name} {rrset.ttl} {rdclass} {rdtype} {rdata.to_text()}")
    return sorted(out)


def soa_line(qname: str, soas: dict[str, str] = ZONE_SOA) -> str:
    """The SOA RR of ``qname``'s zone, its owner in the query's letter case."""
    fqdn = qname if qname.endswith(".") else qname + "."
    for zone, rdata in soas.items():
        if fqdn.lower() == zone or fqdn.lower().endswith("." + zone):
            return f"{fqdn[len(fqdn) - len(zone) :]} 5 IN SOA {rdata}"
    raise AssertionError(f"{qname} is in none of our zones")


def check(responder: Responder, case: Case, soas: dict[str, str] = ZONE_SOA) -> None:
    reply = query(responder, case.qname, case.qtype, case.qclass)
    authority = [soa_line(case.qname, soas)] if case.authority == SOA else sorted(case.authority)
    got = {
        "rcode": dns.rcode.to_text(reply.rcode()),
        "aa": bool(reply.flags & dns.flags.AA),
        "answer": lines(reply.answer),
        "authority": lines(reply.authority),
    }
    want = {
        "rcode": case.rcode,
        "aa": case.aa,
        "answer": sorted(case.answer),
        "authority": authority,
    }
    if case.additional is not None:
        got["additional"] = lines(reply.additional)
        want["additional"] = sorted(case.additional)
    assert got == want


@pytest.fixture(scope="module")
def base() -> Responder:
    """cluster.yaml alone: no kube-dns Service, pods insecure."""
    return build(CLUSTER)[1]


@pytest.fixture(scope="module")
def full() -> Responder:
    """cluster.yaml + table/extra.yaml (kube-dns, in-zone ExternalName, edge cases)."""
    return build(CLUSTER, EXTRA)[1]


# --- ClusterIP services: spec 2.3 --------------------------------------------------------------

CLUSTER_IP = [
    ok(
        "spec 2.3.1 A on a ClusterIP service",
        "kubernetes.default.svc.cluster.local.",
        "A",
        ("kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.1",),
    ),
    ok(
        "spec 2.3.1 dual-stack A gives the IPv4 ClusterIP",
        "frontend.prod.svc.cluster.local.",
        "A",
        ("frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",),
    ),
    ok(
        "spec 2.3.1 dual-stack AAAA gives the IPv6 ClusterIP (CoreDNS handler_test svc-dual-stack)",
        "frontend.prod.svc.cluster.local.",
        "AAAA",
        ("frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",),
    ),
    nodata(
        "CoreDNS handler_test AAAA on an IPv4-only service is NODATA",
        "kubernetes.default.svc.cluster.local.",
        "AAAA",
    ),
    ok(
        "spec 2.3.1 a service with only spec.clusterIP",
        "legacy.staging.svc.cluster.local.",
        "A",
        ("legacy.staging.svc.cluster.local. 5 IN A 10.0.30.30",),
    ),
    ok(
        "spec 2.3.1 NodePort answers its ClusterIP",
        "prometheus.monitoring.svc.cluster.local.",
        "A",
        ("prometheus.monitoring.svc.cluster.local. 5 IN A 10.0.40.41",),
    ),
    ok(
        "spec 2.3.1 LoadBalancer answers its ClusterIP in the cluster zone, not external IPs",
        "ingress.prod.svc.cluster.local.",
        "A",
        ("ingress.prod.svc.cluster.local. 5 IN A 10.0.20.20",),
    ),
    nodata(
        "CoreDNS AAAA on an IPv4-only LoadBalancer in the cluster zone is NODATA",
        "ingress.prod.svc.cluster.local.",
        "AAAA",
    ),
    ok(
        "CoreDNS kubernetes.go endpoint names exist for ClusterIP services too (dashed IP)",
        "10-1-1-10.frontend.prod.svc.cluster.local.",
        "A",
        ("10-1-1-10.frontend.prod.svc.cluster.local. 5 IN A 10.1.1.10",),
    ),
    ok(
        "CoreDNS endpointHostname IPv6 endpoint label uses the compressed dashed form",
        "fd00-0-0-1--10.frontend.prod.svc.cluster.local.",
        "AAAA",
        ("fd00-0-0-1--10.frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:1::10",),
    ),
    ok(
        "CoreDNS endpointHostname endpoint without targetRef or hostname is its dashed IP",
        "172-18-0-2.kubernetes.default.svc.cluster.local.",
        "A",
        ("172-18-0-2.kubernetes.default.svc.cluster.local. 5 IN A 172.18.0.2",),
    ),
    nxdomain(
        "CoreDNS kubernetes.go unknown endpoint label under a ClusterIP service is NXDOMAIN",
        "bogus.frontend.prod.svc.cluster.local.",
        "A",
    ),
]


@pytest.mark.parametrize("case", CLUSTER_IP)
def test_cluster_ip(base: Responder, case: Case) -> None:
    check(base, case)


# --- headless services: spec 2.4.1 ----------------------------------------------------------

HEADLESS = [
    ok(
        "spec 2.4.1 headless A lists ready endpoints only",
        "cassandra.prod.svc.cluster.local.",
        "A",
        (
            "cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",
            "cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.11",
        ),
    ),
    nodata(
        "CoreDNS headless AAAA with IPv4-only endpoints is NODATA",
        "cassandra.prod.svc.cluster.local.",
        "AAAA",
    ),
    ok(
        "spec 2.4.1 endpoint hostname A",
        "cassandra-0.cassandra.prod.svc.cluster.local.",
        "A",
        ("cassandra-0.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",),
    ),
    nxdomain(
        "spec 2.4.1 not-ready endpoint hostname does not exist",
        "cassandra-2.cassandra.prod.svc.cluster.local.",
        "A",
    ),
    ok(
        "spec 2.1 ready: publishNotReadyAddresses publishes not-ready endpoints",
        "kafka.prod.svc.cluster.local.",
        "A",
        (
            "kafka.prod.svc.cluster.local. 5 IN A 10.1.2.20",
            "kafka.prod.svc.cluster.local. 5 IN A 10.1.2.21",
        ),
    ),
    ok(
        "spec 2.4.1 not-ready endpoint hostname under publishNotReadyAddresses",
        "kafka-1.kafka.prod.svc.cluster.local.",
        "A",
        ("kafka-1.kafka.prod.svc.cluster.local. 5 IN A 10.1.2.21",),
    ),
    ok(
        "CoreDNS object/endpoint.go endpoints of every slice are merged",
        "search.staging.svc.cluster.local.",
        "A",
        (
            "search.staging.svc.cluster.local. 5 IN A 10.1.3.10",
            "search.staging.svc.cluster.local. 5 IN A 10.1.3.11",
            "search.staging.svc.cluster.local. 5 IN A 10.1.3.12",
        ),
    ),
    ok(
        "spec 2.4.1 endpoint hostname from the second slice",
        "search-2.search.staging.svc.cluster.local.",
        "A",
        ("search-2.search.staging.svc.cluster.local. 5 IN A 10.1.3.12",),
    ),
    ok(
        "CoreDNS endpointsliceReady: conditions.ready unset counts as ready",
        "workers.prod.svc.cluster.local.",
        "A",
        (
            "workers.prod.svc.cluster.local. 5 IN A 10.1.2.30",
            "workers.prod.svc.cluster.local. 5 IN A 10.1.2.31",
        ),
    ),
    ok(
        "CoreDNS endpointHostname dashed IP label when the endpoint has no hostname",
        "10-1-2-31.workers.prod.svc.cluster.local.",
        "A",
        ("10-1-2-31.workers.prod.svc.cluster.local. 5 IN A 10.1.2.31",),
    ),
    nxdomain(
        "CoreDNS handler_test bogus endpoint of a headless service",
        "bogusendpoint.cassandra.prod.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS FQDN EndpointSlices are not served",
        "legacy-internal-example-org.legacy.staging.svc.cluster.local.",
        "A",
    ),
]


@pytest.mark.parametrize("case", HEADLESS)
def test_headless(base: Responder, case: Case) -> None:
    check(base, case)


# --- SRV: spec 2.3.2 / 2.4.2, CoreDNS backend_lookup.go SRV ----------------------------------

SRV = [
    ok(
        "spec 2.3.2 ClusterIP SRV targets the service on the service port, glue A",
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "SRV",
        (
            "_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 kubernetes.default.svc.cluster.local.",
        ),
        ("kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.1",),
    ),
    ok(
        "CoreDNS handler_test dual-stack SRV is one record of weight 50, glue A and AAAA",
        "_http._tcp.frontend.prod.svc.cluster.local.",
        "SRV",
        (
            "_http._tcp.frontend.prod.svc.cluster.local. 5 IN SRV 0 50 80 frontend.prod.svc.cluster.local.",
        ),
        (
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",
            "frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",
        ),
    ),
    ok(
        "spec 2.3.2 UDP port is _udp",
        "_syslog._udp.syslog.monitoring.svc.cluster.local.",
        "SRV",
        (
            "_syslog._udp.syslog.monitoring.svc.cluster.local. 5 IN SRV 0 100 514 syslog.monitoring.svc.cluster.local.",
        ),
        ("syslog.monitoring.svc.cluster.local. 5 IN A 10.0.40.40",),
    ),
    ok(
        "spec 2.3.2 NodePort SRV carries the service port, not the nodePort",
        "_web._tcp.prometheus.monitoring.svc.cluster.local.",
        "SRV",
        (
            "_web._tcp.prometheus.monitoring.svc.cluster.local. 5 IN SRV 0 100 9090 prometheus.monitoring.svc.cluster.local.",
        ),
        ("prometheus.monitoring.svc.cluster.local. 5 IN A 10.0.40.41",),
    ),
    ok(
        "CoreDNS bare SRV on the service lists every port, weight floor(100/N)",
        "ingress.prod.svc.cluster.local.",
        "SRV",
        (
            "ingress.prod.svc.cluster.local. 5 IN SRV 0 50 80 ingress.prod.svc.cluster.local.",
            "ingress.prod.svc.cluster.local. 5 IN SRV 0 50 443 ingress.prod.svc.cluster.local.",
        ),
        ("ingress.prod.svc.cluster.local. 5 IN A 10.0.20.20",),
    ),
    ok(
        "CoreDNS bare SRV includes unnamed ports",
        "legacy.staging.svc.cluster.local.",
        "SRV",
        (
            "legacy.staging.svc.cluster.local. 5 IN SRV 0 100 8080 legacy.staging.svc.cluster.local.",
        ),
        ("legacy.staging.svc.cluster.local. 5 IN A 10.0.30.30",),
    ),
    nxdomain(
        "spec 2.3.2 unnamed ports have no _port._proto SRV",
        "_8080._tcp.legacy.staging.svc.cluster.local.",
        "SRV",
    ),
    ok(
        "spec 2.4.2 headless SRV: one per ready endpoint, target its hostname, glue A",
        "_cql._tcp.cassandra.prod.svc.cluster.local.",
        "SRV",
        (
            "_cql._tcp.cassandra.prod.svc.cluster.local. 5 IN SRV 0 50 9042 cassandra-0.cassandra.prod.svc.cluster.local.",
            "_cql._tcp.cassandra.prod.svc.cluster.local. 5 IN SRV 0 50 9042 cassandra-1.cassandra.prod.svc.cluster.local.",
        ),
        (
            "cassandra-0.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",
            "cassandra-1.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.11",
        ),
    ),
    ok(
        "spec 2.4.2 headless bare SRV lists the same endpoints",
        "cassandra.prod.svc.cluster.local.",
        "SRV",
        (
            "cassandra.prod.svc.cluster.local. 5 IN SRV 0 50 9042 cassandra-0.cassandra.prod.svc.cluster.local.",
            "cassandra.prod.svc.cluster.local. 5 IN SRV 0 50 9042 cassandra-1.cassandra.prod.svc.cluster.local.",
        ),
        (
            "cassandra-0.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",
            "cassandra-1.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.11",
        ),
    ),
    ok(
        "spec 2.4.2 headless SRV with publishNotReadyAddresses includes not-ready endpoints",
        "_broker._tcp.kafka.prod.svc.cluster.local.",
        "SRV",
        (
            "_broker._tcp.kafka.prod.svc.cluster.local. 5 IN SRV 0 50 9092 kafka-0.kafka.prod.svc.cluster.local.",
            "_broker._tcp.kafka.prod.svc.cluster.local. 5 IN SRV 0 50 9092 kafka-1.kafka.prod.svc.cluster.local.",
        ),
        (
            "kafka-0.kafka.prod.svc.cluster.local. 5 IN A 10.1.2.20",
            "kafka-1.kafka.prod.svc.cluster.local. 5 IN A 10.1.2.21",
        ),
    ),
    ok(
        "spec 2.4.2 headless SRV targets dashed-IP names when endpoints have no hostname",
        "_metrics._tcp.workers.prod.svc.cluster.local.",
        "SRV",
        (
            "_metrics._tcp.workers.prod.svc.cluster.local. 5 IN SRV 0 50 9100 10-1-2-30.workers.prod.svc.cluster.local.",
            "_metrics._tcp.workers.prod.svc.cluster.local. 5 IN SRV 0 50 9100 10-1-2-31.workers.prod.svc.cluster.local.",
        ),
        (
            "10-1-2-30.workers.prod.svc.cluster.local. 5 IN A 10.1.2.30",
            "10-1-2-31.workers.prod.svc.cluster.local. 5 IN A 10.1.2.31",
        ),
    ),
    ok(
        "CoreDNS weight floor(100/3)=33 across endpoints of two slices",
        "_http._tcp.search.staging.svc.cluster.local.",
        "SRV",
        (
            "_http._tcp.search.staging.svc.cluster.local. 5 IN SRV 0 33 9200 search-0.search.staging.svc.cluster.local.",
            "_http._tcp.search.staging.svc.cluster.local. 5 IN SRV 0 33 9200 search-1.search.staging.svc.cluster.local.",
            "_http._tcp.search.staging.svc.cluster.local. 5 IN SRV 0 33 9200 search-2.search.staging.svc.cluster.local.",
        ),
        (
            "search-0.search.staging.svc.cluster.local. 5 IN A 10.1.3.10",
            "search-1.search.staging.svc.cluster.local. 5 IN A 10.1.3.11",
            "search-2.search.staging.svc.cluster.local. 5 IN A 10.1.3.12",
        ),
    ),
    ok(
        "CoreDNS SRV on an endpoint name targets itself",
        "cassandra-0.cassandra.prod.svc.cluster.local.",
        "SRV",
        (
            "cassandra-0.cassandra.prod.svc.cluster.local. 5 IN SRV 0 100 9042 cassandra-0.cassandra.prod.svc.cluster.local.",
        ),
        ("cassandra-0.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",),
    ),
    ok(
        "CoreDNS findServices A on _port._proto returns the ClusterIP",
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "A",
        ("_https._tcp.kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.1",),
    ),
    ok(
        "CoreDNS findServices AAAA on _port._proto returns the IPv6 ClusterIP",
        "_http._tcp.frontend.prod.svc.cluster.local.",
        "AAAA",
        ("_http._tcp.frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",),
    ),
    ok(
        "CoreDNS findServices A on a headless _port._proto returns the endpoints",
        "_cql._tcp.cassandra.prod.svc.cluster.local.",
        "A",
        (
            "_cql._tcp.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",
            "_cql._tcp.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.11",
        ),
    ),
    nodata(
        "CoreDNS TXT on an existing _port._proto name is NODATA",
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        "TXT",
    ),
    nxdomain(
        "CoreDNS matchPortAndProtocol protocol that does not match the port",
        "_http._udp.frontend.prod.svc.cluster.local.",
        "SRV",
    ),
    nxdomain(
        "CoreDNS port name that does not exist",
        "_grpc._tcp.frontend.prod.svc.cluster.local.",
        "SRV",
    ),
]


@pytest.mark.parametrize("case", SRV)
def test_srv(base: Responder, case: Case) -> None:
    check(base, case)


# --- ExternalName: spec 2.5 -----------------------------------------------------------------

EXTERNAL_NAME = [
    ok(
        "spec 2.5 A on ExternalName is the CNAME alone when the target is outside our zones",
        "mail.prod.svc.cluster.local.",
        "A",
        ("mail.prod.svc.cluster.local. 5 IN CNAME mail.example.com.",),
    ),
    ok(
        "spec 2.5 AAAA on ExternalName is the CNAME",
        "mail.prod.svc.cluster.local.",
        "AAAA",
        ("mail.prod.svc.cluster.local. 5 IN CNAME mail.example.com.",),
    ),
    ok(
        "spec 2.5 CNAME on ExternalName",
        "mail.prod.svc.cluster.local.",
        "CNAME",
        ("mail.prod.svc.cluster.local. 5 IN CNAME mail.example.com.",),
    ),
    ok(
        "kdns deliberate (6) ANY on ExternalName is the CNAME",
        "mail.prod.svc.cluster.local.",
        "ANY",
        ("mail.prod.svc.cluster.local. 5 IN CNAME mail.example.com.",),
    ),
    nodata(
        "kdns deliberate (6) SRV on ExternalName is NODATA (CoreDNS: SRV not implemented)",
        "mail.prod.svc.cluster.local.",
        "SRV",
    ),
    nodata(
        "kdns deliberate (6) TXT on ExternalName is NODATA (CoreDNS: TXT not chased)",
        "mail.prod.svc.cluster.local.",
        "TXT",
    ),
    nxdomain(
        "CoreDNS findServices ExternalName has no _port._proto names",
        "_http._tcp.mail.prod.svc.cluster.local.",
        "A",
    ),
]


@pytest.mark.parametrize("case", EXTERNAL_NAME)
def test_external_name(base: Responder, case: Case) -> None:
    check(base, case)


# --- PTR: spec 2.3.3 / 2.4.3 ----------------------------------------------------------------

PTR = [
    ok(
        "spec 2.3.3 PTR of a ClusterIP",
        "1.0.0.10.in-addr.arpa.",
        "PTR",
        ("1.0.0.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local.",),
    ),
    ok(
        "spec 2.3.3 PTR of a ClusterIP set by spec.clusterIP only",
        "30.30.0.10.in-addr.arpa.",
        "PTR",
        ("30.30.0.10.in-addr.arpa. 5 IN PTR legacy.staging.svc.cluster.local.",),
    ),
    ok(
        "spec 2.3.3 PTR of an IPv6 ClusterIP in ip6.arpa nibble form",
        "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        (
            "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR frontend.prod.svc.cluster.local.",
        ),
    ),
    ok(
        "spec 2.4.3 PTR of a ready endpoint names its hostname",
        "10.2.1.10.in-addr.arpa.",
        "PTR",
        ("10.2.1.10.in-addr.arpa. 5 IN PTR cassandra-0.cassandra.prod.svc.cluster.local.",),
    ),
    nxdomain(
        "spec 2.4.3 no PTR for a not-ready endpoint",
        "12.2.1.10.in-addr.arpa.",
        "PTR",
    ),
    ok(
        "spec 2.4.3 PTR of a not-ready endpoint under publishNotReadyAddresses",
        "21.2.1.10.in-addr.arpa.",
        "PTR",
        ("21.2.1.10.in-addr.arpa. 5 IN PTR kafka-1.kafka.prod.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS reverse.go PTR of a hostname-less endpoint is its dashed-IP name",
        "30.2.1.10.in-addr.arpa.",
        "PTR",
        ("30.2.1.10.in-addr.arpa. 5 IN PTR 10-1-2-30.workers.prod.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS reverse.go endpoint PTRs exist for ClusterIP services too",
        "10.1.1.10.in-addr.arpa.",
        "PTR",
        ("10.1.1.10.in-addr.arpa. 5 IN PTR 10-1-1-10.frontend.prod.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS reverse_test IPv6 endpoint PTR",
        "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        (
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR fd00-0-0-1--10.frontend.prod.svc.cluster.local.",
        ),
    ),
    ok(
        "spec 2.4.3 PTR of an endpoint in the second slice",
        "12.3.1.10.in-addr.arpa.",
        "PTR",
        ("12.3.1.10.in-addr.arpa. 5 IN PTR search-2.search.staging.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS reverse.go PTR of an endpoint without targetRef",
        "2.0.18.172.in-addr.arpa.",
        "PTR",
        ("2.0.18.172.in-addr.arpa. 5 IN PTR 172-18-0-2.kubernetes.default.svc.cluster.local.",),
    ),
    nxdomain(
        "CoreDNS reverse_test IP not in the cluster is NXDOMAIN with the in-addr.arpa SOA",
        "99.99.99.10.in-addr.arpa.",
        "PTR",
    ),
    nxdomain(
        "CoreDNS reverse_test unknown IPv6 is NXDOMAIN with the ip6.arpa SOA",
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
    ),
    nxdomain(
        "CoreDNS external.go externalIPs have no PTR in the reverse zones",
        "20.100.51.198.in-addr.arpa.",
        "PTR",
    ),
    nxdomain(
        "CoreDNS external.go LoadBalancer ingress IPs have no PTR in the reverse zones",
        "10.2.0.192.in-addr.arpa.",
        "PTR",
    ),
    nodata(
        "kdns deliberate (8) reverse empty non-terminal is NODATA",
        "2.1.10.in-addr.arpa.",
        "PTR",
    ),
    nodata(
        "kdns deliberate (8) reverse empty non-terminal one label under the apex",
        "10.in-addr.arpa.",
        "PTR",
    ),
    nodata(
        "kdns deliberate (8) ip6.arpa empty non-terminal is NODATA",
        "d.f.ip6.arpa.",
        "PTR",
    ),
    nxdomain(
        "CoreDNS reverse branch with nothing below it is NXDOMAIN",
        "11.in-addr.arpa.",
        "PTR",
    ),
    nxdomain(
        "CoreDNS reverse name with a label too many is NXDOMAIN",
        "x.1.0.0.10.in-addr.arpa.",
        "PTR",
    ),
    nodata(
        "kdns deliberate (1) A on an existing PTR name is NODATA",
        "1.0.0.10.in-addr.arpa.",
        "A",
    ),
    ok(
        "CoreDNS backend_lookup.go SOA at the reverse-zone apex",
        "in-addr.arpa.",
        "SOA",
        ("in-addr.arpa. 5 IN SOA " + ZONE_SOA["in-addr.arpa."],),
    ),
    ok(
        "CoreDNS backend_lookup.go SOA at the ip6.arpa apex",
        "ip6.arpa.",
        "SOA",
        ("ip6.arpa. 5 IN SOA " + ZONE_SOA["ip6.arpa."],),
    ),
    ok(
        "kdns deliberate (9) reverse apex NS without a DNS Service is ns.dns.<zone> (CoreDNS ns.go)",
        "in-addr.arpa.",
        "NS",
        ("in-addr.arpa. 5 IN NS ns.dns.in-addr.arpa.",),
    ),
]


@pytest.mark.parametrize("case", PTR)
def test_ptr(base: Responder, case: Case) -> None:
    check(base, case)


# --- pods: spec 2.6 + CoreDNS `pods insecure|verified|disabled` -----------------------------

PODS_INSECURE = [
    ok(
        "spec 2.6 pod A from its dashed IPv4 label",
        "10-1-1-10.prod.pod.cluster.local.",
        "A",
        ("10-1-1-10.prod.pod.cluster.local. 5 IN A 10.1.1.10",),
    ),
    ok(
        "CoreDNS pods insecure any IP-shaped label answers, pod or not",
        "10-9-9-9.prod.pod.cluster.local.",
        "A",
        ("10-9-9-9.prod.pod.cluster.local. 5 IN A 10.9.9.9",),
    ),
    ok(
        "CoreDNS pods insecure ignores pod phase (the IP of a Failed pod answers)",
        "10-1-4-99.monitoring.pod.cluster.local.",
        "A",
        ("10-1-4-99.monitoring.pod.cluster.local. 5 IN A 10.1.4.99",),
    ),
    ok(
        "CoreDNS findPods IPv6 dashed label with -- for ::",
        "fd00-0-0-1--5.staging.pod.cluster.local.",
        "AAAA",
        ("fd00-0-0-1--5.staging.pod.cluster.local. 5 IN AAAA fd00:0:0:1::5",),
    ),
    ok(
        "CoreDNS findPods three dashes with -- is IPv6, not IPv4",
        "2001-db8--1.prod.pod.cluster.local.",
        "AAAA",
        ("2001-db8--1.prod.pod.cluster.local. 5 IN AAAA 2001:db8::1",),
    ),
    ok(
        "CoreDNS findPods uncompressed IPv6 label answers, owner as asked",
        "2001-db8-0-0-0-0-0-1.prod.pod.cluster.local.",
        "AAAA",
        ("2001-db8-0-0-0-0-0-1.prod.pod.cluster.local. 5 IN AAAA 2001:db8::1",),
    ),
    nodata(
        "CoreDNS A on an IPv6 pod name is NODATA",
        "fd00-0-0-1--5.staging.pod.cluster.local.",
        "A",
    ),
    nodata(
        "CoreDNS AAAA on an IPv4 pod name is NODATA",
        "10-1-1-10.prod.pod.cluster.local.",
        "AAAA",
    ),
    nodata(
        "kdns deliberate (1) TXT on a pod name is NODATA",
        "10-1-1-10.prod.pod.cluster.local.",
        "TXT",
    ),
    ok(
        "kdns deliberate (4) ANY on a pod name returns its A",
        "10-1-1-10.prod.pod.cluster.local.",
        "ANY",
        ("10-1-1-10.prod.pod.cluster.local. 5 IN A 10.1.1.10",),
    ),
    ok(
        "spec 2.1 case-insensitive pod name, owner echoes the query case",
        "10-1-1-10.Prod.POD.Cluster.Local.",
        "A",
        ("10-1-1-10.Prod.POD.Cluster.Local. 5 IN A 10.1.1.10",),
    ),
    nxdomain(
        "CoreDNS handler_test non-IP pod label is NXDOMAIN",
        "blah.prod.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS net.ParseIP rejects leading zeros in IPv4",
        "010-1-1-10.prod.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS findPods five groups is not an IP",
        "1-2-3-4-5.prod.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS namespaceExposed pod name in a missing namespace is NXDOMAIN",
        "10-1-1-10.nope.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS namespaceExposed missing namespace under pod is NXDOMAIN",
        "nope.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "kdns deliberate (5) extra labels before a pod name are NXDOMAIN",
        "x.10-1-1-10.prod.pod.cluster.local.",
        "A",
    ),
    nodata(
        "CoreDNS findPods empty pod name in an existing namespace is NODATA",
        "prod.pod.cluster.local.",
        "A",
    ),
    nodata("CoreDNS parseRequest pod.<zone> is NODATA", "pod.cluster.local.", "A"),
]


@pytest.mark.parametrize("case", PODS_INSECURE)
def test_pods_insecure(base: Responder, case: Case) -> None:
    check(base, case)


PODS_VERIFIED = [
    ok(
        "CoreDNS pods verified IP of a running pod in the namespace",
        "10-1-1-10.prod.pod.cluster.local.",
        "A",
        ("10-1-1-10.prod.pod.cluster.local. 5 IN A 10.1.1.10",),
    ),
    ok(
        "CoreDNS pods verified second IP of a dual-stack pod (status.podIPs)",
        "fd00-0-0-1--10.prod.pod.cluster.local.",
        "AAAA",
        ("fd00-0-0-1--10.prod.pod.cluster.local. 5 IN AAAA fd00:0:0:1::10",),
    ),
    ok(
        "CoreDNS pods verified IPv6-only pod with status.podIP only",
        "fd00-0-0-1--5.staging.pod.cluster.local.",
        "AAAA",
        ("fd00-0-0-1--5.staging.pod.cluster.local. 5 IN AAAA fd00:0:0:1::5",),
    ),
    ok(
        "CoreDNS pods verified a running pod whose endpoint is not ready still answers",
        "10-1-2-12.prod.pod.cluster.local.",
        "A",
        ("10-1-2-12.prod.pod.cluster.local. 5 IN A 10.1.2.12",),
    ),
    ok(
        "CoreDNS pods verified hostNetwork pod answers the node IP in its namespace",
        "172-18-0-2.monitoring.pod.cluster.local.",
        "A",
        ("172-18-0-2.monitoring.pod.cluster.local. 5 IN A 172.18.0.2",),
    ),
    ok(
        "spec 2.1 case-insensitive verified pod name",
        "10-1-1-10.PROD.pod.cluster.local.",
        "A",
        ("10-1-1-10.PROD.pod.cluster.local. 5 IN A 10.1.1.10",),
    ),
    nxdomain(
        "CoreDNS pods verified IP-shaped label without a pod",
        "10-9-9-9.prod.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS controller.go podListFunc Failed pods never match",
        "10-1-4-99.monitoring.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS findPods a pod IP asked in another namespace",
        "10-1-1-10.staging.pod.cluster.local.",
        "A",
    ),
    nodata(
        "CoreDNS AAAA on a verified IPv4 pod name is NODATA",
        "10-1-1-10.prod.pod.cluster.local.",
        "AAAA",
    ),
    nodata(
        "CoreDNS findPods <ns>.pod.<zone> of an existing namespace is NODATA",
        "default.pod.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS pods verified non-IP label",
        "blah.prod.pod.cluster.local.",
        "A",
    ),
]


@pytest.mark.parametrize("case", PODS_VERIFIED)
def test_pods_verified(case: Case, verified: Responder) -> None:
    check(verified, case)


@pytest.fixture(scope="module")
def verified() -> Responder:
    return build(CLUSTER, pods="verified")[1]


PODS_DISABLED = [
    nxdomain("CoreDNS pods disabled pod name", "10-1-1-10.prod.pod.cluster.local.", "A"),
    nxdomain(
        "CoreDNS pods disabled IPv6 pod name", "fd00-0-0-1--5.staging.pod.cluster.local.", "AAAA"
    ),
    nxdomain("CoreDNS pods disabled <ns>.pod.<zone>", "prod.pod.cluster.local.", "A"),
    nxdomain(
        "kdns pods disabled pod.<zone> has nothing below it (CoreDNS: NODATA)",
        "pod.cluster.local.",
        "A",
    ),
    ok(
        "pods disabled leaves services alone",
        "kubernetes.default.svc.cluster.local.",
        "A",
        ("kubernetes.default.svc.cluster.local. 5 IN A 10.0.0.1",),
    ),
]


@pytest.fixture(scope="module")
def disabled() -> Responder:
    return build(CLUSTER, pods="disabled")[1]


@pytest.mark.parametrize("case", PODS_DISABLED)
def test_pods_disabled(case: Case, disabled: Responder) -> None:
    check(disabled, case)


# --- endpoint_pod_names ---------------------------------------------------------------------

ENDPOINT_POD_NAMES = [
    ok(
        "CoreDNS endpoint_pod_names pod name is the endpoint label",
        "workers-5d4f7-kx9vb.workers.prod.svc.cluster.local.",
        "A",
        ("workers-5d4f7-kx9vb.workers.prod.svc.cluster.local. 5 IN A 10.1.2.30",),
    ),
    nxdomain(
        "CoreDNS endpoint_pod_names the dashed-IP name is gone",
        "10-1-2-30.workers.prod.svc.cluster.local.",
        "A",
    ),
    ok(
        "CoreDNS endpoint_pod_names SRV targets pod names",
        "_metrics._tcp.workers.prod.svc.cluster.local.",
        "SRV",
        (
            "_metrics._tcp.workers.prod.svc.cluster.local. 5 IN SRV 0 50 9100 workers-5d4f7-kx9vb.workers.prod.svc.cluster.local.",
            "_metrics._tcp.workers.prod.svc.cluster.local. 5 IN SRV 0 50 9100 workers-5d4f7-lq2mt.workers.prod.svc.cluster.local.",
        ),
        (
            "workers-5d4f7-kx9vb.workers.prod.svc.cluster.local. 5 IN A 10.1.2.30",
            "workers-5d4f7-lq2mt.workers.prod.svc.cluster.local. 5 IN A 10.1.2.31",
        ),
    ),
    ok(
        "CoreDNS endpoint_pod_names PTR names the pod",
        "30.2.1.10.in-addr.arpa.",
        "PTR",
        ("30.2.1.10.in-addr.arpa. 5 IN PTR workers-5d4f7-kx9vb.workers.prod.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS endpointHostname an explicit hostname wins over the pod name",
        "cassandra-0.cassandra.prod.svc.cluster.local.",
        "A",
        ("cassandra-0.cassandra.prod.svc.cluster.local. 5 IN A 10.1.2.10",),
    ),
    ok(
        "CoreDNS endpointHostname no targetRef falls back to the dashed IP",
        "172-18-0-2.kubernetes.default.svc.cluster.local.",
        "A",
        ("172-18-0-2.kubernetes.default.svc.cluster.local. 5 IN A 172.18.0.2",),
    ),
    ok(
        "spec 2.4.1 one name, one record per IP: a dual-stack pod's AAAA",
        "frontend-7b9c6-a1b2c.frontend.prod.svc.cluster.local.",
        "AAAA",
        ("frontend-7b9c6-a1b2c.frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:1::10",),
    ),
    ok(
        "spec 2.4.1 one name, one record per IP: a dual-stack pod's A",
        "frontend-7b9c6-a1b2c.frontend.prod.svc.cluster.local.",
        "A",
        ("frontend-7b9c6-a1b2c.frontend.prod.svc.cluster.local. 5 IN A 10.1.1.10",),
    ),
]


@pytest.fixture(scope="module")
def pod_names() -> Responder:
    return build(CLUSTER, endpoint_pod_names=True)[1]


@pytest.mark.parametrize("case", ENDPOINT_POD_NAMES)
def test_endpoint_pod_names(case: Case, pod_names: Responder) -> None:
    check(pod_names, case)


# --- zone apex, schema version, structure, NXDOMAIN vs NODATA, case, class -------------------

APEX_AND_STRUCTURE = [
    ok(
        "spec 2.2 dns-version TXT 1.1.0 with TTL 28800 (CoreDNS kubernetes.go)",
        "dns-version.cluster.local.",
        "TXT",
        ('dns-version.cluster.local. 28800 IN TXT "1.1.0"',),
    ),
    ok(
        "spec 2.1 case-insensitive dns-version, owner echoes the query",
        "DNS-Version.Cluster.Local.",
        "TXT",
        ('DNS-Version.Cluster.Local. 28800 IN TXT "1.1.0"',),
    ),
    nodata(
        "kdns deliberate (1) A on dns-version is NODATA (CoreDNS: NXDOMAIN)",
        "dns-version.cluster.local.",
        "A",
    ),
    ok(
        "CoreDNS backend_lookup.go apex SOA",
        "cluster.local.",
        "SOA",
        ("cluster.local. 5 IN SOA " + ZONE_SOA["cluster.local."],),
    ),
    ok(
        "kdns deliberate (11) apex NS without a kube-dns Service is ns.dns.<zone>",
        "cluster.local.",
        "NS",
        ("cluster.local. 5 IN NS ns.dns.cluster.local.",),
    ),
    ok(
        "kdns deliberate (4) ANY at the apex returns SOA and NS",
        "cluster.local.",
        "ANY",
        (
            "cluster.local. 5 IN SOA " + ZONE_SOA["cluster.local."],
            "cluster.local. 5 IN NS ns.dns.cluster.local.",
        ),
    ),
    nodata("CoreDNS checkForApex A at the apex is NODATA", "cluster.local.", "A"),
    nodata(
        "kdns deliberate (1) TXT at the apex is NODATA (CoreDNS: NXDOMAIN)", "cluster.local.", "TXT"
    ),
    nodata("CoreDNS handler_test svc.<zone> is NODATA", "svc.cluster.local.", "A"),
    nodata(
        "kdns deliberate (1) TXT on svc.<zone> is NODATA (CoreDNS: NXDOMAIN)",
        "svc.cluster.local.",
        "TXT",
    ),
    nodata("CoreDNS findServices <ns>.svc.<zone> is NODATA", "prod.svc.cluster.local.", "A"),
    nodata(
        "kdns deliberate (1) TXT on <ns>.svc.<zone> is NODATA (CoreDNS: NXDOMAIN)",
        "prod.svc.cluster.local.",
        "TXT",
    ),
    nodata("CoreDNS handler_test NS on <ns>.svc.<zone> is NODATA", "prod.svc.cluster.local.", "NS"),
    nodata(
        "kdns deliberate (1) dns.<zone> empty non-terminal is NODATA (CoreDNS: NXDOMAIN)",
        "dns.cluster.local.",
        "A",
    ),
    nodata(
        "kdns ns.dns.<zone> without a DNS Service has no address (CoreDNS: its local IPs)",
        "ns.dns.cluster.local.",
        "A",
    ),
    nodata(
        "kdns deliberate (1) _proto empty non-terminal is NODATA (CoreDNS: NXDOMAIN)",
        "_tcp.frontend.prod.svc.cluster.local.",
        "A",
    ),
    nodata(
        "kdns deliberate (1) SRV on a _proto empty non-terminal is NODATA",
        "_tcp.frontend.prod.svc.cluster.local.",
        "SRV",
    ),
    nodata(
        "kdns deliberate (1) _udp exists under a service with a UDP port",
        "_udp.syslog.monitoring.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "RFC 8020 _tcp does not exist under a UDP-only service",
        "_tcp.syslog.monitoring.svc.cluster.local.",
        "A",
    ),
    nodata(
        "CoreDNS SOA below the apex of an existing name is NODATA",
        "frontend.prod.svc.cluster.local.",
        "SOA",
    ),
    nxdomain(
        "kdns deliberate (2) SOA for a name that does not exist is NXDOMAIN (CoreDNS: NODATA)",
        "foo.cluster.local.",
        "SOA",
    ),
    nodata("CoreDNS TXT on a service is NODATA", "frontend.prod.svc.cluster.local.", "TXT"),
    nodata(
        "CoreDNS reverse_test PTR on a service name is NODATA",
        "frontend.prod.svc.cluster.local.",
        "PTR",
    ),
    nodata("CoreDNS MX on a service is NODATA", "frontend.prod.svc.cluster.local.", "MX"),
    nodata("CoreDNS NS below the apex is NODATA", "frontend.prod.svc.cluster.local.", "NS"),
    ok(
        "kdns deliberate (4) ANY on a service returns every RRset (RFC 8482)",
        "frontend.prod.svc.cluster.local.",
        "ANY",
        (
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",
            "frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",
            "frontend.prod.svc.cluster.local. 5 IN SRV 0 50 80 frontend.prod.svc.cluster.local.",
        ),
        None,
    ),
    nxdomain("CoreDNS parseRequest unknown label under the zone", "foo.cluster.local.", "A"),
    nxdomain("CoreDNS namespaceExposed missing namespace", "nope.svc.cluster.local.", "A"),
    nxdomain(
        "CoreDNS namespaceExposed service under a missing namespace",
        "frontend.nope.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS namespaceExposed TXT under a missing namespace is NXDOMAIN too",
        "frontend.nope.svc.cluster.local.",
        "TXT",
    ),
    nxdomain("CoreDNS findServices missing service", "nope.prod.svc.cluster.local.", "A"),
    nxdomain(
        "CoreDNS parseRequest wildcards are not supported: * is a literal label",
        "*.prod.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "CoreDNS parseRequest too many labels under a service",
        "a.b.c.frontend.prod.svc.cluster.local.",
        "A",
    ),
    ok(
        "CoreDNS request.QName answers echo the query's letter case",
        "FrontEnd.Prod.SVC.Cluster.Local.",
        "A",
        ("FrontEnd.Prod.SVC.Cluster.Local. 5 IN A 10.0.10.10",),
    ),
    ok(
        "CoreDNS request.QName SRV owner echoes the case, target and glue are lowercase",
        "_HTTP._Tcp.FrontEnd.Prod.SVC.Cluster.Local.",
        "SRV",
        (
            "_HTTP._Tcp.FrontEnd.Prod.SVC.Cluster.Local. 5 IN SRV 0 50 80 frontend.prod.svc.cluster.local.",
        ),
        (
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",
            "frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",
        ),
    ),
    nxdomain(
        "CoreDNS NXDOMAIN SOA owner echoes the query's case of the zone",
        "Nope.Prod.SVC.Cluster.Local.",
        "A",
    ),
    ok(
        "RFC 1035 3.2.5 QCLASS * matches IN",
        "frontend.prod.svc.cluster.local.",
        "A",
        ("frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",),
        qclass="ANY",
    ),
    refused(
        "kdns deliberate (7) CHAOS class is REFUSED", "frontend.prod.svc.cluster.local.", "A", "CH"
    ),
    refused("kdns deliberate (7) CHAOS version.bind is REFUSED", "version.bind.", "TXT", "CH"),
    refused("kdns deliberate (7) HESIOD class is REFUSED", "cluster.local.", "SOA", "HS"),
    refused("out-of-zone name is REFUSED without AA (--no-forward)", "example.com.", "A"),
    refused("out-of-zone parent of the cluster zone is REFUSED", "local.", "SOA"),
    refused("zone match is on label boundaries", "xcluster.local.", "A"),
    refused("the root is not our zone", ".", "NS"),
]


@pytest.mark.parametrize("case", APEX_AND_STRUCTURE)
def test_apex_and_structure(base: Responder, case: Case) -> None:
    check(base, case)


# --- k8s_external: CoreDNS plugin/k8s_external ----------------------------------------------

K8S_EXTERNAL = [
    ok(
        "CoreDNS k8s_external A: spec.externalIPs then LoadBalancer ingress IPs",
        "ingress.prod.example.org.",
        "A",
        (
            "ingress.prod.example.org. 5 IN A 198.51.100.20",
            "ingress.prod.example.org. 5 IN A 192.0.2.10",
        ),
    ),
    ok(
        "CoreDNS k8s_external AAAA: IPv6 externalIP, normalised",
        "ingress.prod.example.org.",
        "AAAA",
        ("ingress.prod.example.org. 5 IN AAAA 2001:db8::14",),
    ),
    ok(
        "CoreDNS k8s_external bare SRV: every port, weight floor(100/(3 IPs x 2 ports))",
        "ingress.prod.example.org.",
        "SRV",
        (
            "ingress.prod.example.org. 5 IN SRV 0 16 80 ingress.prod.example.org.",
            "ingress.prod.example.org. 5 IN SRV 0 16 443 ingress.prod.example.org.",
        ),
        (
            "ingress.prod.example.org. 5 IN A 198.51.100.20",
            "ingress.prod.example.org. 5 IN A 192.0.2.10",
            "ingress.prod.example.org. 5 IN AAAA 2001:db8::14",
        ),
    ),
    ok(
        "CoreDNS k8s_external _port._proto SRV targets <svc>.<ns>.<zone> on the service port",
        "_https._tcp.ingress.prod.example.org.",
        "SRV",
        ("_https._tcp.ingress.prod.example.org. 5 IN SRV 0 33 443 ingress.prod.example.org.",),
        (
            "ingress.prod.example.org. 5 IN A 198.51.100.20",
            "ingress.prod.example.org. 5 IN A 192.0.2.10",
            "ingress.prod.example.org. 5 IN AAAA 2001:db8::14",
        ),
    ),
    ok(
        "CoreDNS k8s_external A on _port._proto returns the external IPs",
        "_http._tcp.ingress.prod.example.org.",
        "A",
        (
            "_http._tcp.ingress.prod.example.org. 5 IN A 198.51.100.20",
            "_http._tcp.ingress.prod.example.org. 5 IN A 192.0.2.10",
        ),
    ),
    ok(
        "CoreDNS k8s_external AAAA on _port._proto",
        "_https._tcp.ingress.prod.example.org.",
        "AAAA",
        ("_https._tcp.ingress.prod.example.org. 5 IN AAAA 2001:db8::14",),
    ),
    nxdomain(
        "CoreDNS k8s_external protocol that does not match",
        "_http._udp.ingress.prod.example.org.",
        "SRV",
    ),
    nodata(
        "CoreDNS k8s_external other types on an existing name are NODATA",
        "ingress.prod.example.org.",
        "TXT",
    ),
    nodata(
        "kdns deliberate (10) LoadBalancer ingress hostnames are not served (no CNAME)",
        "ingress.prod.example.org.",
        "CNAME",
    ),
    ok(
        "CoreDNS k8s_external answers echo the query's case",
        "Ingress.PROD.Example.Org.",
        "A",
        (
            "Ingress.PROD.Example.Org. 5 IN A 198.51.100.20",
            "Ingress.PROD.Example.Org. 5 IN A 192.0.2.10",
        ),
    ),
    nxdomain(
        "CoreDNS k8s_external a service without external IPs is NXDOMAIN",
        "frontend.prod.example.org.",
        "A",
    ),
    nxdomain(
        "CoreDNS k8s_external a NodePort without external IPs is NXDOMAIN",
        "prometheus.monitoring.example.org.",
        "A",
    ),
    nxdomain(
        "CoreDNS k8s_external an ExternalName service is NXDOMAIN",
        "mail.prod.example.org.",
        "A",
    ),
    nodata(
        "CoreDNS k8s_external <ns>.<zone> is NODATA",
        "prod.example.org.",
        "A",
    ),
    nodata(
        "kdns deliberate (1) _proto empty non-terminal in the external zone is NODATA",
        "_tcp.ingress.prod.example.org.",
        "A",
    ),
    nxdomain("CoreDNS k8s_external missing namespace", "nope.example.org.", "A"),
    nxdomain(
        "CoreDNS k8s_external service in a missing namespace", "ingress.nope.example.org.", "A"
    ),
    nxdomain(
        "kdns: no endpoint names in the external zone (CoreDNS without headless ignores the label)",
        "foo.ingress.prod.example.org.",
        "A",
    ),
    ok(
        "CoreDNS k8s_external apex.go SOA: ns1.dns.<zone>, hostmaster.dns.<zone>",
        "example.org.",
        "SOA",
        ("example.org. 5 IN SOA " + ZONE_SOA["example.org."],),
    ),
    ok(
        "CoreDNS k8s_external apex.go NS is ns1.dns.<zone>",
        "example.org.",
        "NS",
        ("example.org. 5 IN NS ns1.dns.example.org.",),
    ),
    nodata("CoreDNS k8s_external A at the apex is NODATA", "example.org.", "A"),
    nodata("CoreDNS k8s_external dns.<zone> is NODATA", "dns.example.org.", "A"),
    nodata(
        "kdns ns1.dns.<zone> without a DNS Service has no address (CoreDNS: its local IPs)",
        "ns1.dns.example.org.",
        "A",
    ),
]


@pytest.mark.parametrize("case", K8S_EXTERNAL)
def test_k8s_external(base: Responder, case: Case) -> None:
    check(base, case)


# --- extra fixture: kube-dns, in-zone ExternalName, dual-stack headless, slice skew ---------

EXTRA_CASES = [
    ok(
        "kdns deliberate (11) apex NS names kube-dns with its ClusterIP as glue (CoreDNS ns.go)",
        "cluster.local.",
        "NS",
        ("cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local.",),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "kdns deliberate (4) ANY at the apex with glue",
        "cluster.local.",
        "ANY",
        (
            "cluster.local. 5 IN SOA " + EXTRA_SOA["cluster.local."],
            "cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local.",
        ),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "CoreDNS isDefaultNS ns.dns.<zone> answers the DNS Service ClusterIP",
        "ns.dns.cluster.local.",
        "A",
        ("ns.dns.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "kdns deliberate (9) in-addr.arpa apex NS names the cluster DNS Service",
        "in-addr.arpa.",
        "NS",
        ("in-addr.arpa. 5 IN NS kube-dns.kube-system.svc.cluster.local.",),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "kdns deliberate (9) ip6.arpa apex NS names the cluster DNS Service",
        "ip6.arpa.",
        "NS",
        ("ip6.arpa. 5 IN NS kube-dns.kube-system.svc.cluster.local.",),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "CoreDNS k8s_external apex.go NS glue is the DNS Service's external IP",
        "example.org.",
        "NS",
        ("example.org. 5 IN NS ns1.dns.example.org.",),
        ("ns1.dns.example.org. 5 IN A 203.0.113.53",),
    ),
    ok(
        "CoreDNS k8s_external ns1.dns.<zone> A is the DNS Service's external IP",
        "ns1.dns.example.org.",
        "A",
        ("ns1.dns.example.org. 5 IN A 203.0.113.53",),
    ),
    ok(
        "CoreDNS SRV dedup by (target, port): two protocols on port 53 give one record, weight 50",
        "kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        (
            "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "spec 2.3.2 kube-dns _dns._udp SRV",
        "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
        "SRV",
        (
            "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        ("kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.10",),
    ),
    ok(
        "spec 2.3.3 PTR of the kube-dns ClusterIP",
        "10.0.0.10.in-addr.arpa.",
        "PTR",
        ("10.0.0.10.in-addr.arpa. 5 IN PTR kube-dns.kube-system.svc.cluster.local.",),
    ),
    nodata(
        "kdns deliberate (8) 0.1.10.in-addr.arpa is an empty non-terminal above 10.1.0.2",
        "0.1.10.in-addr.arpa.",
        "PTR",
    ),
    ok(
        "CoreDNS reverse.go PTR of the DNS pod endpoint",
        "2.0.1.10.in-addr.arpa.",
        "PTR",
        ("2.0.1.10.in-addr.arpa. 5 IN PTR 10-1-0-2.kube-dns.kube-system.svc.cluster.local.",),
    ),
    ok(
        "CoreDNS handler_test in-zone ExternalName: CNAME + the target's A",
        "alias.prod.svc.cluster.local.",
        "A",
        (
            "alias.prod.svc.cluster.local. 5 IN CNAME frontend.prod.svc.cluster.local.",
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",
        ),
    ),
    ok(
        "CoreDNS in-zone ExternalName: CNAME + the target's AAAA",
        "alias.prod.svc.cluster.local.",
        "AAAA",
        (
            "alias.prod.svc.cluster.local. 5 IN CNAME frontend.prod.svc.cluster.local.",
            "frontend.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:10::a",
        ),
    ),
    ok(
        "CoreDNS in-zone ExternalName owner echoes the query case, the chased target does not",
        "Alias.PROD.svc.cluster.local.",
        "A",
        (
            "Alias.PROD.svc.cluster.local. 5 IN CNAME frontend.prod.svc.cluster.local.",
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",
        ),
    ),
    ok(
        "spec 2.5 CNAME query on an in-zone ExternalName is not chased",
        "alias.prod.svc.cluster.local.",
        "CNAME",
        ("alias.prod.svc.cluster.local. 5 IN CNAME frontend.prod.svc.cluster.local.",),
    ),
    nodata(
        "kdns deliberate (6) SRV on an in-zone ExternalName is NODATA",
        "alias.prod.svc.cluster.local.",
        "SRV",
    ),
    nxdomain(
        "spec 2.4.1 headless without ready endpoints is NXDOMAIN (CoreDNS agrees)",
        "idle.prod.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "spec 2.4.1 SRV on headless without ready endpoints is NXDOMAIN",
        "idle.prod.svc.cluster.local.",
        "SRV",
    ),
    nxdomain(
        "spec 2.4.1 AAAA on headless without ready endpoints is NXDOMAIN",
        "idle.prod.svc.cluster.local.",
        "AAAA",
    ),
    nxdomain(
        "spec 2.4.1 a not-ready endpoint hostname does not exist",
        "idle-0.idle.prod.svc.cluster.local.",
        "A",
    ),
    nxdomain(
        "spec 2.4.2 no _port._proto SRV without ready endpoints",
        "_http._tcp.idle.prod.svc.cluster.local.",
        "SRV",
    ),
    nxdomain("spec 2.4.3 no PTR for a not-ready endpoint", "99.5.1.10.in-addr.arpa.", "PTR"),
    ok(
        "spec 2.4.1 dual-stack headless A",
        "db.prod.svc.cluster.local.",
        "A",
        ("db.prod.svc.cluster.local. 5 IN A 10.1.5.10",),
    ),
    ok(
        "spec 2.4.1 dual-stack headless AAAA",
        "db.prod.svc.cluster.local.",
        "AAAA",
        ("db.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:1::a10",),
    ),
    ok(
        "spec 2.4.1 one hostname with an IPv4 and an IPv6 endpoint: AAAA",
        "db-0.db.prod.svc.cluster.local.",
        "AAAA",
        ("db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:1::a10",),
    ),
    ok(
        "CoreDNS headless SRV: EndpointSlice port, weight over pre-dedup N=2, glue A and AAAA",
        "_pg._tcp.db.prod.svc.cluster.local.",
        "SRV",
        ("_pg._tcp.db.prod.svc.cluster.local. 5 IN SRV 0 50 5433 db-0.db.prod.svc.cluster.local.",),
        (
            "db-0.db.prod.svc.cluster.local. 5 IN A 10.1.5.10",
            "db-0.db.prod.svc.cluster.local. 5 IN AAAA fd00:0:0:1::a10",
        ),
    ),
    ok(
        "CoreDNS reverse_test double-ep: a pod behind two services has two PTRs",
        "10.5.1.10.in-addr.arpa.",
        "PTR",
        (
            "10.5.1.10.in-addr.arpa. 5 IN PTR db-0.db.prod.svc.cluster.local.",
            "10.5.1.10.in-addr.arpa. 5 IN PTR 10-1-5-10.db-read.prod.svc.cluster.local.",
        ),
    ),
    ok(
        "spec 2.4.3 IPv6 endpoint PTR names its hostname",
        "0.1.a.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        (
            "0.1.a.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR db-0.db.prod.svc.cluster.local.",
        ),
    ),
    ok(
        "CoreDNS backend_lookup.go A dedup: an IP in two slices answers once",
        "cache.staging.svc.cluster.local.",
        "A",
        ("cache.staging.svc.cluster.local. 5 IN A 10.1.3.20",),
    ),
    ok(
        "CoreDNS backend_lookup.go SRV weight counts entries before dedup (slice skew: N=2)",
        "_redis._tcp.cache.staging.svc.cluster.local.",
        "SRV",
        (
            "_redis._tcp.cache.staging.svc.cluster.local. 5 IN SRV 0 50 6379 cache-0.cache.staging.svc.cluster.local.",
        ),
        ("cache-0.cache.staging.svc.cluster.local. 5 IN A 10.1.3.20",),
    ),
    ok(
        "CoreDNS reverse_test EndpointSlice skew: one PTR",
        "20.3.1.10.in-addr.arpa.",
        "PTR",
        ("20.3.1.10.in-addr.arpa. 5 IN PTR cache-0.cache.staging.svc.cluster.local.",),
    ),
]


@pytest.mark.parametrize("case", EXTRA_CASES)
def test_extra_fixture(full: Responder, case: Case) -> None:
    check(full, case, EXTRA_SOA)


# --- before the first sync -------------------------------------------------------------------

UNSYNCED_EMPTY = [
    servfail(
        "design: service name before the first sync is SERVFAIL",
        "kubernetes.default.svc.cluster.local.",
        "A",
    ),
    servfail(
        "design: namespace before the first sync is SERVFAIL", "default.svc.cluster.local.", "A"
    ),
    servfail(
        "design: unknown name before the first sync is SERVFAIL, never NXDOMAIN",
        "nope.svc.cluster.local.",
        "A",
    ),
    servfail(
        "design: pod name before the first sync is SERVFAIL",
        "10-1-1-10.prod.pod.cluster.local.",
        "A",
    ),
    servfail("design: PTR before the first sync is SERVFAIL", "1.0.0.10.in-addr.arpa.", "PTR"),
    servfail(
        "design: external zone before the first sync is SERVFAIL", "ingress.prod.example.org.", "A"
    ),
    servfail(
        "design: apex TXT (not pre-rendered) before the first sync is SERVFAIL",
        "cluster.local.",
        "TXT",
    ),
    ok(
        "design: the pre-rendered apex SOA answers before the first sync",
        "cluster.local.",
        "SOA",
        ("cluster.local. 5 IN SOA " + ZONE_SOA["cluster.local."],),
    ),
    ok(
        "design: the pre-rendered dns-version answers before the first sync",
        "dns-version.cluster.local.",
        "TXT",
        ('dns-version.cluster.local. 28800 IN TXT "1.1.0"',),
    ),
    refused("design: out-of-zone is REFUSED before the first sync too", "example.com.", "A"),
]


@pytest.mark.parametrize("case", UNSYNCED_EMPTY)
def test_unsynced_empty(case: Case) -> None:
    check(build(synced=False)[1], case)


UNSYNCED_LOADED = [
    ok(
        "design: a pre-rendered answer is served while the sync is still running",
        "frontend.prod.svc.cluster.local.",
        "A",
        ("frontend.prod.svc.cluster.local. 5 IN A 10.0.10.10",),
    ),
    servfail(
        "design: a would-be NXDOMAIN is SERVFAIL until synced", "nope.prod.svc.cluster.local.", "A"
    ),
    servfail(
        "design: a would-be NODATA is SERVFAIL until synced",
        "frontend.prod.svc.cluster.local.",
        "TXT",
    ),
    servfail(
        "design: an insecure pod name is SERVFAIL until synced",
        "10-1-1-10.prod.pod.cluster.local.",
        "A",
    ),
]


@pytest.fixture(scope="module")
def unsynced_loaded() -> Responder:
    return build(CLUSTER, synced=False)[1]


@pytest.mark.parametrize("case", UNSYNCED_LOADED)
def test_unsynced_loaded(case: Case, unsynced_loaded: Responder) -> None:
    check(unsynced_loaded, case)


# --- changes: SOA serial, re-rendering of dependent answers -----------------------------------


def soa_serial(responder: Responder, zone: str) -> int:
    reply = query(responder, zone, "SOA")
    (rrset,) = reply.answer
    return int(rrset[0].serial)


def answer_lines(responder: Responder, qname: str, qtype: str) -> tuple[str, list[str]]:
    reply = query(responder, qname, qtype)
    return dns.rcode.to_text(reply.rcode()), lines(reply.answer)


def service(namespace: str, name: str, *cluster_ips: str) -> Service:
    return Service(
        namespace=namespace,
        name=name,
        type="ClusterIP",
        cluster_ips=cluster_ips,
        headless=False,
        external_name="",
        ports=(ServicePort("http", "TCP", 80),),
        external_ips=(),
        lb_ips=(),
        publish_not_ready=False,
    )


def test_soa_serial_moves_after_a_change() -> None:
    """CoreDNS kubernetes.go Serial: the SOA serial follows changes (RFC 1982: strictly up)."""
    registry, responder = build(CLUSTER)
    cluster0 = soa_serial(responder, "cluster.local.")
    reverse0 = soa_serial(responder, "in-addr.arpa.")
    assert answer_lines(responder, "newsvc.prod.svc.cluster.local.", "A") == ("NXDOMAIN", [])

    registry.upsert(service("prod", "newsvc", "10.0.50.50"))
    cluster1 = soa_serial(responder, "cluster.local.")
    assert cluster1 > cluster0
    assert soa_serial(responder, "in-addr.arpa.") > reverse0  # its PTR is new
    assert answer_lines(responder, "newsvc.prod.svc.cluster.local.", "A") == (
        "NOERROR",
        ["newsvc.prod.svc.cluster.local. 5 IN A 10.0.50.50"],
    )
    # Negative answers carry the new serial too.
    reply = query(responder, "gone.prod.svc.cluster.local.", "A")
    assert [rrset[0].serial for rrset in reply.authority] == [cluster1]

    registry.delete("Service", ("prod", "newsvc"))
    assert soa_serial(responder, "cluster.local.") > cluster1
    assert answer_lines(responder, "newsvc.prod.svc.cluster.local.", "A") == ("NXDOMAIN", [])
    assert answer_lines(responder, "50.50.0.10.in-addr.arpa.", "PTR") == ("NXDOMAIN", [])


def test_soa_mname_follows_the_apex_ns_as_the_dns_service_comes_and_goes() -> None:
    """kdns deliberate (12): the SOA's MNAME is the apex NS target, kube-dns.kube-system.svc.
    <zone> once that Service exists and ns.dns.<zone> when it goes, in SOA answers and in the
    authority of negative replies; each move reports the zones to the watchers (killer mode
    drops its copies of negative replies, whose SOA bytes changed)."""
    registry, responder = build(CLUSTER)
    told: list[set[str]] = []
    registry.watchers.append(lambda names, zones, everything: told.append(set(zones)))

    def mnames(qname: str, qtype: str) -> list[str]:
        reply = query(responder, qname, qtype)
        return [r.mname.to_text() for rrset in (*reply.answer, *reply.authority) for r in rrset]

    def apex_ns() -> list[str]:
        return [r.to_text() for rrset in query(responder, "cluster.local.", "NS").answer for r in rrset]  # fmt: skip

    assert mnames("cluster.local.", "SOA") == ["ns.dns.cluster.local."]
    assert apex_ns() == ["ns.dns.cluster.local."]
    assert mnames("nope.prod.svc.cluster.local.", "A") == ["ns.dns.cluster.local."]
    assert mnames("9.9.9.10.in-addr.arpa.", "PTR") == ["ns.dns.in-addr.arpa."]

    registry.upsert(service("kube-system", "kube-dns", "10.0.0.10"))
    assert apex_ns() == [KUBE_DNS]
    assert mnames("cluster.local.", "SOA") == [KUBE_DNS]
    assert mnames("nope.prod.svc.cluster.local.", "A") == [KUBE_DNS]
    assert mnames("9.9.9.10.in-addr.arpa.", "PTR") == [KUBE_DNS]
    assert mnames("example.org.", "SOA") == ["ns1.dns.example.org."]  # k8s_external: its own
    assert {"cluster.local", "in-addr.arpa", "ip6.arpa"} <= set().union(*told)

    told.clear()
    registry.delete("Service", ("kube-system", "kube-dns"))
    assert apex_ns() == ["ns.dns.cluster.local."]
    assert mnames("cluster.local.", "SOA") == ["ns.dns.cluster.local."]
    assert mnames("nope.prod.svc.cluster.local.", "A") == ["ns.dns.cluster.local."]
    assert {"cluster.local", "in-addr.arpa", "ip6.arpa"} <= set().union(*told)


def test_unchanged_upsert_keeps_the_serial() -> None:
    """An update that changes nothing DNS-visible moves nothing (no serial churn)."""
    registry, responder = build(CLUSTER)
    before = soa_serial(responder, "cluster.local.")
    assert registry.upsert(registry.services[("prod", "frontend")]) is False
    assert soa_serial(responder, "cluster.local.") == before


def test_in_zone_cname_follows_its_target() -> None:
    """CoreDNS chases in-zone ExternalName targets at query time; kdns pre-renders the chase,
    so a change to the target must re-render the alias."""
    registry, responder = build(CLUSTER, EXTRA)
    registry.upsert(service("prod", "frontend", "10.0.10.99"))
    assert answer_lines(responder, "alias.prod.svc.cluster.local.", "A") == (
        "NOERROR",
        [
            "alias.prod.svc.cluster.local. 5 IN CNAME frontend.prod.svc.cluster.local.",
            "frontend.prod.svc.cluster.local. 5 IN A 10.0.10.99",
        ],
    )


def test_apex_ns_glue_follows_the_dns_service() -> None:
    """kdns deliberate (11): the apex NS glue is kube-dns's ClusterIP, re-rendered when it changes;
    without the Service the NS falls back to ns.dns.<zone>."""
    registry, responder = build(CLUSTER, EXTRA)
    registry.upsert(service("kube-system", "kube-dns", "10.0.0.53"))
    reply = query(responder, "cluster.local.", "NS")
    assert lines(reply.additional) == ["kube-dns.kube-system.svc.cluster.local. 5 IN A 10.0.0.53"]
    registry.delete("Service", ("kube-system", "kube-dns"))
    reply = query(responder, "cluster.local.", "NS")
    assert lines(reply.answer) == ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    assert lines(reply.additional) == []
