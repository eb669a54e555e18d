"""Killer mode end to end: real ``kdns serve --killer`` processes queried over UDP and TCP.

- Same meaning as standard mode: thousands of generated queries (existing and missing names,
  every type, mixed case, with and without EDNS, UDP and TCP, before and after object changes)
  against a standard and a killer process on the same objects: same rcode, flags and answers.
- Forwarded answers in the wire cache count their TTLs down and never outlive them.
- The ACL and forward.allow hold for cached replies.
- The prefetcher learns a walk and fetches its external name before the client asks.
- Counts in /metrics stay exact while most answers come from the wire cache.
"""

from __future__ import annotations

import random
import shutil
import socket
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns

CLUSTER = FIXTURES / "cluster.yaml"
TYPES = ("A", "AAAA", "SRV", "PTR", "TXT", "MX", "CNAME", "SOA", "NS", "ANY", "CAA", "HTTPS")


def _service_names(path: Path) -> list[str]:
    names: list[str] = []
    for doc in yaml.safe_load_all(path.read_text()):
        items = doc.get("items", [doc]) if doc else []
        for item in items:
            if item.get("kind") == "Service":
                meta = item["metadata"]
                names.append(f"{meta['name']}.{meta['namespace']}.svc.cluster.local")
    return names


def _questions(rng: random.Random, services: list[str], count: int) -> list[tuple[str, str]]:
    """Names pods ask: services, their ports and endpoints, search-path misses, pods, PTRs."""
    pool = []
    for svc in services:
        name, ns = svc.split(".")[:2]
        pool += [
            svc,
            f"_http._tcp.{svc}",
            f"{name}-0.{svc}",
            f"{svc}.{ns}.svc.cluster.local",  # ndots:5 walk steps
            f"{svc}.svc.cluster.local",
            f"{name}.svc.cluster.local",
            f"{ns}.svc.cluster.local",
            f"missing-{name}.{ns}.svc.cluster.local",
        ]
    pool += [
        "cluster.local",
        "dns-version.cluster.local",
        "10-1-2-3.prod.pod.cluster.local",
        "10-1-2-3.nonamespace.pod.cluster.local",
        "10.0.10.10.in-addr.arpa",
        "10.10.0.10.in-addr.arpa",
        "0.10.in-addr.arpa",
    ]
    out = []
    for _ in range(count):
        name = rng.choice(pool)
        name = "".join(c.upper() if rng.random() < 0.3 else c for c in name)  # mixed case
        out.append((name, rng.choice(TYPES)))
    return out


def _ask(port: int, name: str, rdtype: str, edns: int, tcp: bool) -> dns.message.Message:
    want_dnssec = edns == 2
    query = dns.message.make_query(
        name, rdtype, use_edns=0 if edns else False, want_dnssec=want_dnssec
    )
    query.flags |= dns.flags.CD if edns == 2 else 0
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, LOOPBACK, port=port, timeout=3)


def _meaning(message: dns.message.Message) -> tuple[object, ...]:
    """What must agree: rcode, flags (but never the ID), answer and authority as sets (the
    loadbalance rotation may order records differently), the OPT echo."""

    def section(rrsets: list[dns.rrset.RRset]) -> frozenset[str]:
        return frozenset(
            f"{rrset.name.to_text().lower()} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
            for rrset in rrsets
            for rdata in rrset
            if rrset.rdtype != dns.rdatatype.SOA  # the serial is per process
        ) | frozenset(
            f"{rrset.name.to_text().lower()} SOA"
            for rrset in rrsets
            if rrset.rdtype == dns.rdatatype.SOA
        )

    return (
        message.rcode(),
        message.flags,
        section(message.answer),
        section(message.authority),
        message.edns,
        message.ednsflags,
        message.question[0].name.to_text(),  # the client's case, echoed
    )


def _compare(standard: Kdns, killer: Kdns, questions: list[tuple[str, str]], rng: random.Random) -> int:  # fmt: skip
    mismatches = []
    for name, rdtype in questions:
        edns = rng.choice((0, 1, 2))
        tcp = rng.random() < 0.15
        a = _meaning(_ask(standard.port, name, rdtype, edns, tcp))
        b = _meaning(_ask(killer.port, name, rdtype, edns, tcp))
        if a != b:
            mismatches.append((name, rdtype, edns, tcp, a, b))
    assert not mismatches, mismatches[:3]
    return len(questions)


def _wait_for(port: int, name: str, check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check(_ask(port, name, "A", 0, False)):  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not change in time")


def test_killer_means_what_standard_means(tmp_path: Path) -> None:
    """Killer mode issue: the differential test, before and after object changes."""
    objects = tmp_path / "cluster.yaml"
    shutil.copy(CLUSTER, objects)
    rng = random.Random(20261130)
    with (
        Kdns("--objects", str(objects), "--no-forward") as standard,
        Kdns("--objects", str(objects), "--no-forward", "--killer") as killer,
    ):
        services = _service_names(objects)
        questions = _questions(rng, services, 1500)
        # Twice: the second pass is answered from the wire cache.
        assert _compare(standard, killer, questions, rng) == 1500
        assert _compare(standard, killer, questions, rng) == 1500
        # Change objects: an address moves, a Service appears, one goes.
        text = objects.read_text().replace("10.0.10.10", "10.0.10.99")
        text += (
            "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: latecomer, namespace: prod}\n"
            "spec: {clusterIP: 10.0.77.7, clusterIPs: [10.0.77.7], ports: [{name: http, port: 80}]}\n"
        )
        objects.write_text(text)
        for proc in (standard, killer):
            _wait_for(proc.port, "latecomer.prod.svc.cluster.local", lambda m: bool(m.answer))
        services = _service_names(objects)
        questions = _questions(rng, services, 1000)
        assert _compare(standard, killer, questions, rng) == 1000
        assert _compare(standard, killer, questions, rng) == 1000
        status, text = killer.get("metrics")
        hits = [
            line
            for line in text.splitlines()
            if line.startswith("kdns_killer_wirecache_hits_total")
        ]
        assert hits and float(hits[0].split()[-1]) > 500


def test_forwarded_ttls_count_down_in_the_wire_cache() -> None:
    """Forwarded entries never carry a TTL longer than what remains (re-rendered at most
    once a second), and never outlive it."""
    with (
        DnsUpstream({("www.example.com.", "A"): ["192.0.2.1"]}, ttl=3) as up,
        Kdns("--objects", str(CLUSTER), "--upstream", up.upstream("udp"), "--killer") as proc,
    ):
        first = time.monotonic()
        seen: list[tuple[float, int]] = []
        while time.monotonic() - first < 5.5:
            reply = _ask(proc.port, "www.example.com", "A", 0, False)
            seen.append((time.monotonic() - first, reply.answer[0].ttl))
            time.sleep(0.05)
        fetches = [q for q in up.queries if q.name.lower() == "www.example.com."]
        # Refetched as the 3 s TTL runs out (by a client, or by the prefetcher just before):
        # a handful over 5.5 s, never one per query.
        assert 2 <= len(fetches) <= 4
        for _, ttl in seen:
            # A TTL counted down in whole seconds from the latest fetch: never above the
            # 3 s it was given, never more than what remains by a full second.
            assert 0 <= ttl <= 3
        ttls = [ttl for _, ttl in seen]
        assert len(set(ttls)) >= 3  # it did count down, not stay frozen


def _from(source: str, port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, LOOPBACK, port=port, timeout=3, source=source)


def _loopback_alias_works() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _loopback_alias_works(), reason="127.0.0.2 cannot be bound here")
def test_acl_and_forward_allow_hold_for_cached_replies(tmp_path: Path) -> None:
    """A reply cached for an allowed client never reaches one the ACL blocks, nor a client
    outside forward.allow for a forwarded name."""
    config = tmp_path / "kdns.toml"
    config.write_text(
        '[forward]\nallow = ["127.0.0.1/32"]\n\n'
        "[acl]\n"
        'rules = [{action = "block", net = ["127.0.0.2/32"], zone = "prod.svc.cluster.local"}]\n'
    )
    with (
        DnsUpstream({("www.example.com.", "A"): ["192.0.2.1"]}, ttl=60) as up,
        Kdns(
            "-c",
            str(config),
            "--objects",
            str(CLUSTER),
            "--upstream",
            up.upstream("udp"),
            "--killer",
        ) as proc,
    ):
        name = "frontend.prod.svc.cluster.local"
        for _ in range(3):
            assert _from("127.0.0.1", proc.port, name).answer
            assert _from("127.0.0.1", proc.port, "www.example.com").answer
        assert _from("127.0.0.2", proc.port, name).rcode() == dns.rcode.REFUSED
        assert _from("127.0.0.2", proc.port, "www.example.com").rcode() == dns.rcode.REFUSED
        # Still served to the allowed client from the cache.
        assert _from("127.0.0.1", proc.port, name).answer
        assert len([q for q in up.queries if q.name.lower() == "www.example.com."]) == 1


def test_prefetcher_fetches_a_walks_external_name_before_it_is_asked() -> None:
    """The prefetcher learns the search-path walk from one name and, for a new name's first
    step, asks the upstream for the final name before the client gets there."""
    records = {(f"api{i}.example.com.", "A"): [f"192.0.2.{i}"] for i in range(5)}
    search = ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "")
    with (
        DnsUpstream(records, ttl=60) as up,
        Kdns("--objects", str(CLUSTER), "--upstream", up.upstream("udp"), "--killer") as proc,
    ):

        def step(name: str) -> dns.message.Message:
            return _ask(proc.port, name, "A", 0, False)

        for i in range(2):  # learn the shape of the walk from whole walks
            for suffix in search:
                step(f"api{i}.example.com.{suffix}".rstrip("."))
        up.clear()
        assert step("api3.example.com.prod.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "api3.example.com." not in up.names():
            time.sleep(0.05)
        assert "api3.example.com." in up.names()  # fetched before the client asked for it
        started = time.monotonic()
        for suffix in search[1:]:
            reply = step(f"api3.example.com.{suffix}".rstrip("."))
        assert reply.answer and time.monotonic() - started < 1.0
        assert up.names().count("api3.example.com.") == 1  # the client's ask was a cache hit
        time.sleep(0.3)  # the prefetcher learns in ticks of 50 ms
        status, text = proc.get("metrics")
        used = [
            line
            for line in text.splitlines()
            if line.startswith('kdns_killer_prefetch_total{outcome="used"}')
        ]
        assert used and float(used[0].split()[-1]) >= 1


def test_counts_stay_exact_with_the_wire_cache() -> None:
    """Metrics in killer mode: every query counted once, hits included (summed at scrape)."""
    with Kdns("--objects", str(CLUSTER), "--no-forward", "--killer", "--metrics-compat", "coredns") as proc:  # fmt: skip
        sent = 0
        for i in range(300):
            name = ("frontend.prod.svc.cluster.local", "nope.prod.svc.cluster.local")[i % 2]
            _ask(proc.port, name, ("A", "AAAA")[i % 3 == 0], i % 2, i % 10 == 0)
            sent += 1
        status, text = proc.get("metrics")
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kdns_dns_requests_total{")
        )
        compat = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("coredns_dns_requests_total{")
        )
        durations = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kdns_dns_request_duration_seconds_count{")
        )
        assert total == compat == durations == sent
