"""End to end: the real ``kdns serve --objects`` process, queried over UDP and TCP with dnspython.

Each case is one user-visible protocol behaviour (the RFC or miekg/CoreDNS behaviour named in
its docstring). The manifests are generated here so the cases state their own data.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.kdnsproc import LOOPBACK, Kdns, rrset_texts

BIG = 120  # endpoints in the big headless service: ~1.9 KB of A records, over 1232 and 512


def _manifests() -> list[dict]:
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {
                "clusterIP": "10.96.5.5",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "big", "namespace": "prod"},
            "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 9000}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "big-1",
                "namespace": "prod",
                "labels": {"kubernetes.io/service-name": "big"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "p", "port": 9000, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": [f"10.244.{i // 200}.{i % 200 + 1}"], "conditions": {"ready": True}}
                for i in range(BIG)
            ],
        },
    ]
    return docs


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(_manifests()))
    return path


@pytest.fixture(scope="module")
def server(manifest: Path) -> Iterator[Kdns]:
    with Kdns("--objects", str(manifest), "--external-zone", "example.org") as proc:
        yield proc


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_service_a_over_udp_and_tcp(server: Kdns, tcp: bool) -> None:
    """Spec 2.3.1: <svc>.<ns>.svc.<zone> A is the ClusterIP, over both transports (RFC 7766)."""
    resp = server.query("web.prod.svc.cluster.local", "A", tcp=tcp)
    assert resp.rcode() == dns.rcode.NOERROR
    assert resp.flags & dns.flags.AA
    assert not resp.flags & dns.flags.RA  # CoreDNS: RA never set on authoritative answers
    assert rrset_texts(resp) == ["web.prod.svc.cluster.local. 5 IN A 10.96.5.5"]


async def test_async_client_udp_and_tcp(server: Kdns) -> None:
    """dnspython's async client, the way an asyncio application would ask."""
    q = dns.message.make_query("_http._tcp.web.prod.svc.cluster.local", "SRV")
    udp = await dns.asyncquery.udp(q, LOOPBACK, port=server.port, timeout=3)
    tcp = await dns.asyncquery.tcp(q, LOOPBACK, port=server.port, timeout=3)
    for resp in (udp, tcp):
        assert rrset_texts(resp) == [
            "_http._tcp.web.prod.svc.cluster.local. 5 IN SRV 0 100 80 web.prod.svc.cluster.local."
        ]
        assert rrset_texts(resp, "additional") == ["web.prod.svc.cluster.local. 5 IN A 10.96.5.5"]


def test_answer_echoes_query_case(server: Kdns) -> None:
    """RFC 4343: the answer carries the question's letter case (owner names point to it)."""
    name = "WeB.PrOd.SvC.ClUsTeR.LoCaL."
    resp = server.query(name, "A")
    assert resp.question[0].name.to_text() == name
    assert resp.answer[0].name.to_text() == name
    assert resp.answer[0][0].to_text() == "10.96.5.5"


def test_nxdomain_has_soa_and_aa(server: Kdns) -> None:
    """RFC 2308 3: NXDOMAIN carries the zone SOA in authority; the SOA owner echoes the zone."""
    resp = server.query("nope.prod.svc.cluster.local", "A")
    assert resp.rcode() == dns.rcode.NXDOMAIN
    assert resp.flags & dns.flags.AA
    assert not resp.answer
    soa = resp.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "cluster.local."
    assert soa[0].mname.to_text() == "ns.dns.cluster.local."


def test_nodata_for_existing_name_of_other_type(server: Kdns) -> None:
    """RFC 2308 2.2: an existing name without the type is NOERROR, empty answer, SOA."""
    resp = server.query("web.prod.svc.cluster.local", "TXT")
    assert resp.rcode() == dns.rcode.NOERROR
    assert not resp.answer
    assert resp.authority[0].rdtype == dns.rdatatype.SOA


def test_out_of_zone_is_refused(server: Kdns) -> None:
    """No forwarding yet: names outside our zones get REFUSED, not NXDOMAIN."""
    resp = server.query("www.example.com", "A")
    assert resp.rcode() == dns.rcode.REFUSED
    assert not resp.flags & dns.flags.AA


def test_zone_transfer_refused(server: Kdns) -> None:
    """CoreDNS without a transfer allow list: AXFR/IXFR of our zones get REFUSED."""
    for rdtype in ("AXFR", "IXFR"):
        resp = server.query("cluster.local", rdtype, tcp=True)
        assert resp.rcode() == dns.rcode.REFUSED


def test_edns_opt_echoed(server: Kdns) -> None:
    """RFC 6891 7: a query with OPT gets an OPT back; DO is copied (RFC 3225 3)."""
    resp = server.query(
        "web.prod.svc.cluster.local", "A", use_edns=0, payload=4096, want_dnssec=True
    )
    assert resp.edns == 0
    assert resp.payload == 1232  # our advertised size (DNS flag day 2020)
    assert resp.ednsflags & dns.flags.DO
    plain = server.query("web.prod.svc.cluster.local", "A")
    assert plain.edns == -1  # no OPT when the query had none


def test_edns_with_options_still_answers(server: Kdns) -> None:
    """dig sends a COOKIE option by default; options we do not implement are ignored."""
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    resp = server.query("web.prod.svc.cluster.local", "A", use_edns=0, options=[cookie])
    assert resp.rcode() == dns.rcode.NOERROR and resp.edns == 0
    assert rrset_texts(resp) == ["web.prod.svc.cluster.local. 5 IN A 10.96.5.5"]


def test_edns_unknown_version_is_badvers(server: Kdns) -> None:
    """RFC 6891 6.1.3: EDNS version 1 -> BADVERS, with our OPT at version 0."""
    resp = server.query("web.prod.svc.cluster.local", "A", use_edns=1)
    assert resp.rcode() == dns.rcode.BADVERS
    assert resp.edns == 0


def test_truncation_without_edns_then_tcp_retry(server: Kdns) -> None:
    """RFC 1035 4.2.1 + RFC 2181 9: an answer over 512 bytes gets TC and keeps the whole
    records that fit (as CoreDNS: clients that never retry over TCP still get addresses); the
    client retries over TCP and gets every record."""
    name = "big.prod.svc.cluster.local"
    udp = server.query(name, "A")
    assert udp.flags & dns.flags.TC
    assert 0 < len(udp.answer[0]) < BIG  # the records that fit in 512 bytes
    q = dns.message.make_query(name, "A")
    resp, used_tcp = dns.query.udp_with_fallback(q, LOOPBACK, port=server.port, timeout=3)
    assert used_tcp
    assert len(resp.answer[0]) == BIG
    assert not resp.flags & dns.flags.TC


def test_truncation_caps_at_client_edns_size(server: Kdns) -> None:
    """RFC 6891 6.2.5: the client's payload size caps the UDP answer (and ours, 1232)."""
    name = "big.prod.svc.cluster.local"
    small = server.query(name, "A", use_edns=0, payload=1232)
    assert small.flags & dns.flags.TC and small.edns == 0
    wire_len = len(small.to_wire())
    assert wire_len <= 1232
    srv = server.query("_p._tcp.big.prod.svc.cluster.local", "SRV", use_edns=0, payload=1232)
    # SRV answer over 1232 bytes: TC. The additional glue is never a reason for TC on its own.
    assert srv.flags & dns.flags.TC


def test_tcp_several_queries_on_one_connection(server: Kdns) -> None:
    """RFC 7766 6.2.1: pipelined queries on one connection, all answered."""
    names = [
        "web.prod.svc.cluster.local",
        "nope.prod.svc.cluster.local",
        "big.prod.svc.cluster.local",
    ]
    with socket.create_connection((LOOPBACK, server.port), timeout=3) as sock:
        wire = b""
        for i, name in enumerate(names):
            q = dns.message.make_query(name, "A", id=1000 + i).to_wire()
            wire += struct.pack("!H", len(q)) + q
        sock.sendall(wire)  # all three in one segment
        answers = {}
        for _ in names:
            resp, _ = dns.query.receive_tcp(sock, expiration=None)
            answers[resp.id] = resp
    assert answers[1000].answer and answers[1001].rcode() == dns.rcode.NXDOMAIN
    assert len(answers[1002].answer[0]) == BIG


def _query_bytes(name: str = "web.prod.svc.cluster.local", qid: int = 0x4242) -> bytes:
    return dns.message.make_query(name, "A", id=qid).to_wire()


MALFORMED = {
    # name: (bytes, expected rcode or None when the packet must be dropped)
    "short-header": (b"\x12\x34\x01", None),
    "response-bit-set": (b"\x42\x42\x81\x00" + _query_bytes()[4:], None),
    "qdcount-2": (b"\x42\x42\x01\x00\x00\x02" + _query_bytes()[6:], dns.rcode.FORMERR),
    "qdcount-0": (b"\x42\x42\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", dns.rcode.FORMERR),
    "truncated-question": (_query_bytes()[:20], dns.rcode.FORMERR),
    "pointer-in-question": (
        b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        dns.rcode.FORMERR,
    ),
    "bad-label-type": (
        b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x41abc\x00\x00\x01\x00\x01",
        dns.rcode.FORMERR,
    ),
    "arcount-lies": (_query_bytes()[:10] + b"\x00\x01" + _query_bytes()[12:], dns.rcode.FORMERR),
    "opcode-notify": (b"\x42\x42\x21\x00" + _query_bytes()[4:], dns.rcode.NOTIMP),
    "opcode-update": (b"\x42\x42\x29\x00" + _query_bytes()[4:], dns.rcode.NOTIMP),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_packets_get_formerr_or_dropped(server: Kdns, case: str) -> None:
    """miekg/dns accept check and RFC 1035 4.1.1: bad input -> FORMERR/NOTIMP or silence,
    and the server keeps answering everyone else."""
    payload, expected = MALFORMED[case]
    reply = server.send_raw_udp(payload, timeout=0.5 if expected is None else 2)
    if expected is None:
        assert reply is None
    else:
        assert reply is not None and reply[:2] == payload[:2]  # ID echoed
        assert reply[2] & 0x80  # QR
        assert reply[3] & 0x0F == expected
    resp = server.query("web.prod.svc.cluster.local", "A")
    assert resp.answer, "server stopped answering after a malformed packet"


def test_garbage_over_tcp_does_not_hurt_others(server: Kdns) -> None:
    with socket.create_connection((LOOPBACK, server.port), timeout=3) as sock:
        sock.sendall(b"\x00\x05hello\x00\x02\xff\xff")
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)  # whatever comes back, or EOF
    assert server.query("web.prod.svc.cluster.local", "A", tcp=True).answer


def test_health_ready_and_metrics(server: Kdns) -> None:
    """/health and /ready answer 200 once synced (CoreDNS health/ready); /metrics parses."""
    from prometheus_client.parser import text_string_to_metric_families

    assert server.get("health")[0] == 200
    assert server.get("ready") == (200, "OK\n")
    status, body = server.get("metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert "kdns_dns_requests" in families
    udp = [s.value for s in families["kdns_dns_requests"].samples if s.labels.get("proto") == "udp"]
    assert udp and udp[0] > 0


def test_sigterm_exits_zero(manifest: Path) -> None:
    with Kdns("--objects", str(manifest)) as proc:
        assert proc.query("web.prod.svc.cluster.local", "A").answer
        assert proc.stop() == 0
