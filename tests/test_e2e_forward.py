"""End to end beyond the cluster zone: forwarding (UDP/TCP/DoT), split horizon, the VPN-sidecar
split mode, loop detection, the response cache, zone transfer, ACL and load balancing.

Every upstream is a loopback server started here (tests/dnsupstream.py) that records each query
it receives, so the leak cases can prove what reached which resolver. Nothing is ever sent to the
machine's own resolver.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.xfr
import dns.zone
import pytest

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns, fixed_port

CLUSTER = str(FIXTURES / "cluster.yaml")
PUBLIC = {
    ("www.example.com.", "A"): ["192.0.2.1"],
    ("multi.example.com.", "A"): ["192.0.2.10", "192.0.2.11"],
    ("lan.example.com.", "A"): ["203.0.113.99"],
}
LAN = {("nas.lan.example.com.", "A"): ["192.168.1.20"]}


def a_records(resp: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in resp.answer for r in rrset if rrset.rdtype == 1)


def loop_probe(name: str) -> bool:
    return name.endswith("kdns-loop-check.")


def forwarded(up: DnsUpstream) -> list[str]:
    """Names the upstream was asked, without health checks and kdns's loop probe."""
    return [name.lower() for name in up.names() if not loop_probe(name)]


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kdns.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def public() -> Iterator[DnsUpstream]:
    with DnsUpstream(PUBLIC, tls=True, ttl=60) as up:
        yield up


def test_forward_over_udp_preserves_id_and_case(public: DnsUpstream) -> None:
    """CoreDNS forward: the client's ID and letter case come back unchanged."""
    with Kdns("--objects", CLUSTER, "--upstream", public.upstream("udp")) as proc:
        q = dns.message.make_query("WwW.ExAmPlE.CoM", "A", id=4242)
        resp = dns.query.udp(q, LOOPBACK, port=proc.port, timeout=3)
        assert resp.id == 4242
        assert resp.question[0].name.to_text() == "WwW.ExAmPlE.CoM."
        assert a_records(resp) == ["192.0.2.1"]
        assert resp.flags & dns.flags.RD


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_forward_over_tcp_and_dot(public: DnsUpstream, tmp_path: Path, transport: str) -> None:
    """DNS over TLS (RFC 7858) verified against a CA made in the test; TCP alike."""
    conf = config_file(
        tmp_path,
        f'[forward]\nupstreams = ["{public.upstream(transport)}"]\ntls_ca_file = "{public.ca_file}"\n',
    )
    with Kdns("-c", conf, "--objects", CLUSTER) as proc:
        for tcp in (False, True):
            assert a_records(proc.query("www.example.com", "A", tcp=tcp)) == ["192.0.2.1"]
    assert {q.transport for q in public.queries if q.name == "www.example.com."} == {transport}


def test_dot_with_wrong_certificate_name_fails(public: DnsUpstream, tmp_path: Path) -> None:
    conf = config_file(
        tmp_path,
        f'[forward]\nupstreams = ["{public.upstream("tls", "other.test")}"]\n'
        f'tls_ca_file = "{public.ca_file}"\ntimeout = 1.0\n',
    )
    with Kdns("-c", conf, "--objects", CLUSTER) as proc:
        assert proc.query("www.example.com", "A").rcode() == dns.rcode.SERVFAIL


def test_truncated_udp_is_retried_over_tcp(public: DnsUpstream) -> None:
    public.truncate_udp = True
    with Kdns("--objects", CLUSTER, "--upstream", public.upstream("udp")) as proc:
        assert a_records(proc.query("multi.example.com", "A")) == ["192.0.2.10", "192.0.2.11"]
    assert {q.transport for q in public.queries if q.name == "multi.example.com."} == {"udp", "tcp"}


def test_failover_when_an_upstream_dies(public: DnsUpstream) -> None:
    """CoreDNS forward: a dead upstream fails over to the next one."""
    with DnsUpstream(PUBLIC) as dead:
        dead.drop = True
        args = ["--upstream", dead.upstream("udp"), "--upstream", public.upstream("udp")]
        with Kdns("--objects", CLUSTER, *args, "--forward-policy", "sequential") as proc:
            for _ in range(3):
                assert a_records(proc.query("www.example.com", "A", tcp=True)) == ["192.0.2.1"]
        assert "www.example.com." in dead.names()  # it was tried first


def test_cluster_names_never_reach_the_upstream(public: DnsUpstream) -> None:
    """Names in our own zones are answered here, existing or not: never sent upstream."""
    with Kdns("--objects", CLUSTER, "--upstream", public.upstream("udp")) as proc:
        for name in (
            "frontend.prod.svc.cluster.local",
            "nothere.prod.svc.cluster.local",
            "nothere.nowhere.svc.cluster.local",
            "cluster.local",
        ):
            proc.query(name, "A")
        proc.query("www.example.com", "A")
    assert forwarded(public) == ["www.example.com."]


def test_split_horizon_most_specific_zone_wins(public: DnsUpstream) -> None:
    """forward.zones: lan.example.com to the LAN resolver, everything else to the default."""
    with DnsUpstream(LAN) as lan:
        args = ["--forward-zone", f"lan.example.com={lan.upstream('udp')}"]
        with Kdns("--objects", CLUSTER, "--upstream", public.upstream("udp"), *args) as proc:
            assert a_records(proc.query("nas.lan.example.com", "A")) == ["192.168.1.20"]
            assert a_records(proc.query("www.example.com", "A")) == ["192.0.2.1"]
            assert a_records(proc.query("lan.example.com", "A")) == []  # the LAN zone's apex
        assert forwarded(lan) == ["nas.lan.example.com.", "lan.example.com."]
        assert forwarded(public) == ["www.example.com."]


def test_sidecar_split_mode_leaks_nothing(public: DnsUpstream, tmp_path: Path) -> None:
    """VPN sidecar (--split on): cluster domains (cluster.local, the pod's search domains,
    extras) go to the cluster nameserver over plain DNS; everything else to the secure
    upstream; neither ever sees the other's names."""
    cluster_records = {
        ("web.default.svc.cluster.local.", "A"): ["10.96.0.5"],
        ("db.corp.internal.", "A"): ["10.50.0.7"],
        ("git.extra.test.", "A"): ["10.60.0.8"],
    }
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local corp.internal\noptions ndots:5\n"
    )
    with DnsUpstream(cluster_records) as cluster_dns:
        env = {
            "KDNS_SPLIT": "on",
            "KDNS_CLUSTER_NAMESERVER": cluster_dns.upstream("udp"),  # the pod's original DNS
            "KDNS_CLUSTER_DOMAINS": "extra.test",
        }
        conf = config_file(
            tmp_path,
            f'[forward]\nupstreams = ["{public.upstream("tls")}"]\ntls_ca_file = "{public.ca_file}"\n',
        )
        # The pod's original resolv.conf: its search domains are cluster domains too.
        with Kdns("-c", conf, "--resolv-conf", str(resolv), env=env) as proc:
            assert a_records(proc.query("web.default.svc.cluster.local", "A")) == ["10.96.0.5"]
            assert a_records(proc.query("db.corp.internal", "A")) == ["10.50.0.7"]
            assert a_records(proc.query("git.extra.test", "A")) == ["10.60.0.8"]
            assert a_records(proc.query("www.example.com", "A")) == ["192.0.2.1"]
            proc.query("nope.svc.cluster.local", "A")
        cluster_names = forwarded(cluster_dns)
        public_names = forwarded(public)
    assert "www.example.com." not in cluster_names
    assert all(
        n.endswith(("cluster.local.", "corp.internal.", "extra.test.")) for n in cluster_names
    )
    assert public_names == ["www.example.com."]
    assert {q.transport for q in public.queries if not loop_probe(q.name) and q.name != "."} == {
        "tls"
    }


def test_split_mode_without_secure_upstream_refuses_to_start(tmp_path: Path) -> None:
    from tests.kdnsproc import run_kdns

    result = run_kdns("serve", "--split", "on", "--cluster-nameserver", "127.0.0.1:53")
    assert result.returncode == 1
    assert "split mode needs --upstream" in result.stderr


def test_forwarding_loop_is_detected_and_refused() -> None:
    """CoreDNS loop: an upstream that sends queries back to kdns (here: kdns itself) is found
    by a probe at start; kdns refuses to forward into it and says so."""
    port = fixed_port()
    with Kdns("--objects", CLUSTER, "--upstream", f"{LOOPBACK}:{port}", listen=False,
              env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}) as proc:  # fmt: skip
        deadline = time.monotonic() + 5
        while "forwarding loop detected" not in proc.log and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "forwarding loop detected" in proc.log
        started = time.monotonic()
        assert proc.query("www.example.com", "A").rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - started < 1.0  # refused at once, not bounced around


def test_cache_hit_ttl_countdown_and_denial(tmp_path: Path) -> None:
    """CoreDNS cache: the second ask is answered from the cache with the TTL counted down;
    NXDOMAIN is cached too (RFC 2308)."""
    with DnsUpstream(PUBLIC, ttl=60) as up:
        with Kdns("--objects", CLUSTER, "--upstream", up.upstream("udp")) as proc:
            first = proc.query("www.example.com", "A")
            time.sleep(2.1)
            second = proc.query("www.example.com", "A")
            assert a_records(second) == ["192.0.2.1"]
            assert first.answer[0].ttl - second.answer[0].ttl >= 2
            for _ in range(2):
                assert proc.query("missing.example.com", "A").rcode() == dns.rcode.NXDOMAIN
        assert forwarded(up).count("www.example.com.") == 1
        assert forwarded(up).count("missing.example.com.") == 1


def test_cache_expiry_then_serve_stale(tmp_path: Path) -> None:
    """serve_stale (RFC 8767): after expiry, while the upstream fails, the stale answer is
    served; after the upstream recovers, fresh answers again."""
    conf = config_file(
        tmp_path, "[cache]\nmin_ttl = 1\nserve_stale = 60\n[forward]\ntimeout = 0.5\n"
    )
    with DnsUpstream(PUBLIC, ttl=1) as up:
        with Kdns("-c", conf, "--objects", CLUSTER, "--upstream", up.upstream("udp")) as proc:
            assert a_records(proc.query("www.example.com", "A")) == ["192.0.2.1"]
            time.sleep(1.5)  # expired
            up.drop = True
            stale = proc.query("www.example.com", "A")
            assert a_records(stale) == ["192.0.2.1"]
            assert stale.answer[0].ttl == 30  # RFC 8767 4: stale TTL 30 s
            up.drop = False


def test_zone_transfer_allowed_and_refused(tmp_path: Path) -> None:
    """transfer: AXFR over TCP from an allowed network (SOA first and last); REFUSED from any
    other (here another loopback source address); default deny."""
    conf = config_file(tmp_path, '[transfer]\nallow = ["127.0.0.1/32"]\n')
    with Kdns("-c", conf, "--objects", CLUSTER, "--no-forward") as proc:
        zone = dns.zone.Zone("cluster.local.")
        dns.query.inbound_xfr(LOOPBACK, zone, port=proc.port, timeout=5)
        soa = zone.get_rdataset("@", "SOA")
        assert soa is not None
        assert zone.get_rdataset("frontend.prod.svc", "A") is not None
        assert zone.get_rdataset("@", "NS") is not None
        with pytest.raises(dns.xfr.TransferError):
            other = dns.zone.Zone("cluster.local.")
            dns.query.inbound_xfr(LOOPBACK, other, port=proc.port, timeout=5, source="127.0.0.2")
    with Kdns("--objects", CLUSTER, "--no-forward") as proc:  # no allow list: nobody
        with pytest.raises(dns.xfr.TransferError):
            dns.query.inbound_xfr(
                LOOPBACK, dns.zone.Zone("cluster.local."), port=proc.port, timeout=5
            )


def test_acl_rules(tmp_path: Path) -> None:
    """acl: first match wins; block -> REFUSED, drop -> no answer; others allowed."""
    conf = config_file(
        tmp_path,
        "[acl]\nrules = [\n"
        '  {action = "block", net = ["127.0.0.3/32"]},\n'
        '  {action = "drop", net = ["127.0.0.4/32"]},\n'
        '  {action = "block", type = ["TXT"], zone = ["cluster.local"]},\n'
        "]\n",
    )
    name = "frontend.prod.svc.cluster.local"
    with Kdns("-c", conf, "--objects", CLUSTER, "--no-forward") as proc:
        q = dns.message.make_query(name, "A")
        ok = dns.query.udp(q, LOOPBACK, port=proc.port, timeout=2)
        assert ok.answer
        blocked = dns.query.udp(q, LOOPBACK, port=proc.port, timeout=2, source="127.0.0.3")
        assert blocked.rcode() == dns.rcode.REFUSED
        with pytest.raises(dns.exception.Timeout):
            dns.query.udp(q, LOOPBACK, port=proc.port, timeout=0.5, source="127.0.0.4")
        assert proc.query(name, "TXT").rcode() == dns.rcode.REFUSED


def test_multi_address_answers_rotate() -> None:
    """CoreDNS loadbalance: the order of A records turns from one answer to the next."""
    with Kdns("--demo", "--no-forward") as proc:
        firsts = {
            proc.query("db.data.svc.cluster.local", "A").answer[0][0].to_text() for _ in range(6)
        }
    assert firsts == {"10.244.2.20", "10.244.2.21"}


def test_external_name_target_is_looked_up_upstream() -> None:
    """Spec 2.5 + CoreDNS: an ExternalName answers its CNAME, and kdns appends the target's
    addresses from upstream (a pod's stub resolver does not chase a CNAME itself); the
    second ask comes from the cache."""
    with DnsUpstream({("mail.example.com.", "A"): ["192.0.2.25"]}) as up:
        with Kdns("--objects", CLUSTER, "--upstream", up.upstream("udp")) as proc:
            for _ in range(2):
                resp = proc.query("Mail.Prod.svc.cluster.local", "A")
                assert resp.rcode() == dns.rcode.NOERROR
                cname, address = resp.answer  # the CNAME first, then the target's RRset
                assert (
                    cname.to_text() == "Mail.Prod.svc.cluster.local. 5 IN CNAME mail.example.com."
                )
                assert address.name.to_text() == "mail.example.com."
                assert [r.to_text() for r in address] == ["192.0.2.25"]
        assert forwarded(up).count("mail.example.com.") == 1


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        label_text, value = line[len(name) + 1 :].rsplit("} ", 1)
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def test_forwarded_queries_are_counted_and_logged(public: DnsUpstream) -> None:
    """Operator issue 2: forwarded and chased ExternalName queries count in requests,
    responses and durations (kdns_* and coredns_*) when their reply is sent, and the query log
    shows their rcode, not "dropped"."""
    with Kdns(
        "--objects",
        CLUSTER,
        "--upstream",
        public.upstream("udp"),
        "--metrics-compat",
        "coredns",
        "--query-log",
    ) as proc:
        for _ in range(3):
            resp = dns.query.udp(dns.message.make_query("www.example.com", "A"), LOOPBACK, port=proc.port, timeout=3)  # fmt: skip
            assert a_records(resp) == ["192.0.2.1"]
        resp = dns.query.tcp(dns.message.make_query("nowhere.example.com", "A"), LOOPBACK, port=proc.port, timeout=3)  # fmt: skip
        assert resp.rcode() == dns.rcode.NXDOMAIN
        cluster = dns.query.udp(dns.message.make_query("kubernetes.default.svc.cluster.local", "A"), LOOPBACK, port=proc.port, timeout=3)  # fmt: skip
        assert cluster.rcode() == dns.rcode.NOERROR
        status, text = proc.get("metrics")
        assert status == 200
        # 3 UDP (1 forwarded + 2 from the forward cache) + 1 TCP NXDOMAIN + 1 cluster name.
        assert _metric(text, "kdns_dns_requests_total") == 5
        assert _metric(text, "coredns_dns_requests_total") == 5
        assert _metric(text, "kdns_dns_responses_total", rcode="NXDOMAIN") == 1
        assert _metric(text, "coredns_dns_responses_total", rcode="NXDOMAIN") == 1
        assert _metric(text, "kdns_dns_responses_total", rcode="NOERROR") == 4
        assert _metric(text, "kdns_dns_request_duration_seconds_count") == 5
        assert _metric(text, "coredns_dns_request_duration_seconds_count") == 5
        proc.stop()
        time.sleep(0.5)
        log = proc.log
        assert "dropped" not in log
        assert log.count("www.example.com. A NOERROR") == 3
        assert "nowhere.example.com. A NXDOMAIN" in log


def test_forward_allow_refuses_other_clients(public: DnsUpstream, tmp_path: Path) -> None:
    """Hardening 9: forwarding is offered to forward.allow networks only; other clients get
    REFUSED for names outside our zones (never sent upstream) and answers for our own names.
    One log line at start says who may forward."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    config = config_file(tmp_path, '[forward]\nallow = ["127.0.0.1/32"]\n')
    with Kdns("-c", config, "--objects", CLUSTER, "--upstream", public.upstream("udp")) as proc:
        outside = dns.message.make_query("www.example.com", "A")
        refused = dns.query.udp(outside, LOOPBACK, port=proc.port, timeout=3, source="127.0.0.2")
        assert refused.rcode() == dns.rcode.REFUSED
        assert "www.example.com." not in forwarded(public)
        ours = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        answer = dns.query.udp(ours, LOOPBACK, port=proc.port, timeout=3, source="127.0.0.2")
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer
        allowed = dns.query.udp(outside, LOOPBACK, port=proc.port, timeout=3)
        assert a_records(allowed) == ["192.0.2.1"]
        assert "forwarding offered to 127.0.0.1/32" in proc.log
