"""Forwarding as CoreDNS's forward plugin does it, per zone: the client's transport, and each
``[forward] zones`` entry's own settings (a CoreDNS server block's own forward and cache).

CoreDNS forward README: "force_tcp, use TCP even when the request comes in over UDP";
"prefer_udp, try first using UDP even when the request comes in over TCP"; without either, the
request goes upstream over the protocol it came in on. Every upstream is a loopback server of
the test's own (tests/dnsupstream.py) that records the transport of each query it receives.
"""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns

CLUSTER = str(FIXTURES / "cluster.yaml")
RECORDS = {
    ("www.example.com.", "A"): ["192.0.2.1"],
    ("host.lan.test.", "A"): ["192.168.1.20"],
    ("host.tls.test.", "A"): ["192.168.2.20"],
}


def transports(up: DnsUpstream, name: str) -> list[str]:
    return [q.transport for q in up.queries if q.name.lower() == name]


def conf(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kdns.toml"
    path.write_text(text)
    return str(path)


def a_ttls(resp: dns.message.Message) -> list[int]:
    return [rrset.ttl for rrset in resp.answer if rrset.rdtype == 1]


def test_a_tcp_query_is_forwarded_over_tcp_and_a_udp_one_over_udp(tmp_path: Path) -> None:
    """forward README: the upstream is asked over the client's transport."""
    with DnsUpstream(RECORDS) as up:
        with Kdns("--objects", CLUSTER, "--upstream", up.upstream("udp")) as proc:
            assert proc.query("www.example.com", tcp=True).rcode() == dns.rcode.NOERROR
            assert transports(up, "www.example.com.") == ["tcp"]
            proc.query("host.lan.test")
            assert transports(up, "host.lan.test.") == ["udp"]


def test_zone_settings_prefer_udp_force_tcp_and_cache_ttls(tmp_path: Path) -> None:
    """Per zone, as per CoreDNS server block: prefer_udp sends TCP clients' queries over UDP,
    force_tcp sends UDP clients' over TCP; the zone's success TTL caps its cached answers
    (cache README: `success CAPACITY [TTL]`, "TTL the maximum TTL") while other zones keep
    the [cache] cap."""
    with DnsUpstream(RECORDS, ttl=300) as up:
        path = conf(
            tmp_path,
            "[forward]\n"
            f'upstreams = ["{up.upstream("udp")}"]\n'
            "zones = [\n"
            f'  {{name = "lan.test", upstreams = ["{up.upstream("udp")}"], prefer_udp = true,'
            " success_ttl = 7, denial_ttl = 5},\n"
            f'  {{name = "tls.test", upstreams = ["{up.upstream("udp")}"], force_tcp = true}},\n'
            "]\n",
        )
        with Kdns("-c", path, "--objects", CLUSTER) as proc:
            proc.query("host.lan.test", tcp=True)
            assert transports(up, "host.lan.test.") == ["udp"]
            proc.query("host.tls.test")
            assert transports(up, "host.tls.test.") == ["tcp"]
            cached = proc.query("host.lan.test")  # from the cache, under the zone's cap
            assert a_ttls(cached) and max(a_ttls(cached)) <= 7
            proc.query("www.example.com")
            other = proc.query("www.example.com")  # the [cache] default cap (3600)
            assert a_ttls(other) and min(a_ttls(other)) > 7


def test_tls_ca_file_is_the_zones_own(tmp_path: Path) -> None:
    """One zone's CA bundle verifies that zone's TLS upstreams only: the default route, with
    no CA of its own, checks against the system CAs and so cannot reach the test's server."""
    with DnsUpstream(RECORDS, tls=True) as up:
        path = conf(
            tmp_path,
            "[forward]\n"
            f'upstreams = ["{up.upstream("tls")}"]\n'
            f'zones = [{{name = "tls.test", upstreams = ["tls://127.0.0.1:{up.tls_port}"], '
            f'tls_servername = "{up.tls_name}", tls_ca_file = "{up.ca_file}"}}]\n',
        )
        with Kdns("-c", path, "--objects", CLUSTER) as proc:
            ok = proc.query("host.tls.test")
            assert ok.rcode() == dns.rcode.NOERROR
            assert [r.to_text() for rrset in ok.answer for r in rrset] == ["192.168.2.20"]
            q = dns.message.make_query("www.example.com", "A")
            failed = dns.query.udp(q, LOOPBACK, port=proc.port, timeout=5)
            assert failed.rcode() == dns.rcode.SERVFAIL


def test_a_stub_domain_inside_the_cluster_domain_is_forwarded(tmp_path: Path) -> None:
    """kube-dns stubDomains and CoreDNS's more specific server block (`my.cluster.local:53 {
    forward . 10.150.0.1 }` beside `cluster.local:53 { kubernetes ... }`): names under the
    stub domain go to its upstream. Names under svc.<zone> and pod.<zone> are the cluster's
    and stay kdns's even when a forward zone names them; the rest of the zone keeps NXDOMAIN."""
    records = {
        ("db.my.cluster.local.", "A"): ["10.150.0.7"],
        ("ghost.prod.svc.cluster.local.", "A"): ["192.0.2.66"],
    }
    with DnsUpstream(records) as up:
        stub = up.upstream("udp")
        path = conf(
            tmp_path,
            f'[forward]\nzones = ["my.cluster.local={stub}", "prod.svc.cluster.local={stub}"]\n',
        )
        with Kdns("-c", path, "--objects", CLUSTER) as proc:
            resp = proc.query("db.my.cluster.local")
            assert resp.rcode() == dns.rcode.NOERROR
            assert [rr.to_text() for rrset in resp.answer for rr in rrset] == ["10.150.0.7"]
            assert proc.query("ghost.prod.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
            assert proc.query("nothing.cluster.local").rcode() == dns.rcode.NXDOMAIN
            frontend = proc.query("frontend.prod.svc.cluster.local")
            assert frontend.rcode() == dns.rcode.NOERROR and frontend.answer
        asked = [q.name.lower() for q in up.queries if not q.name.endswith("kdns-loop-check.")]
        assert asked == ["db.my.cluster.local."]
