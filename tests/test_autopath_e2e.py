"""Autopath end to end: a real ``kdns serve --autopath`` (standard and killer mode) with an
objects file whose pods have loopback IPs (tests/fixtures/autopath.yaml: 127.0.0.5 is a pod
of ``prod``), a loopback upstream (tests/dnsupstream.py), and dnspython's stub resolver as the
pod's: the kubelet's search list and ``ndots:5``, its socket bound to the pod's address.

Every query the stub sends is counted (``dns.query.udp`` wrapped), so each case shows how many
questions one lookup costs: the whole walk without autopath, one with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.resolver
import pytest

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import LOOPBACK, Kdns

FIXTURE = str(Path(__file__).parent / "fixtures" / "autopath.yaml")
POD = "127.0.0.5"  # prod/client
STRANGER = "127.0.0.9"  # no pod
SEARCH = ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example")
UPSTREAM = {
    ("api.github.com.", "A"): ["140.82.112.5"],
    ("intranet.corp.example.", "A"): ["10.1.2.3"],
}
WALK = len(SEARCH) + 1  # questions per type a lookup of an outside name costs without autopath


@pytest.fixture
def upstream() -> Iterator[DnsUpstream]:
    with DnsUpstream(UPSTREAM, ttl=60) as up:
        yield up


class Stub:
    """A pod's stub resolver: search list, ndots:5, bound to ``source``; counts its queries."""

    def __init__(self, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port = port
        self.sent: list[str] = []
        real = dns.query.udp

        def counted(q: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent.append(q.question[0].name.to_text())
            return real(q, *args, **kwargs)

        monkeypatch.setattr(dns.query, "udp", counted)

    def lookup(self, name: str, source: str, qtype: str = "A") -> tuple[list[str], str, int]:
        """(addresses, the name they belong to, questions sent) for one lookup."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [LOOPBACK]
        resolver.port = self.port
        resolver.search = [dns.name.from_text(domain) for domain in SEARCH]
        resolver.ndots = 5
        resolver.use_search_by_default = True
        resolver.cache = None
        before = len(self.sent)
        answer = resolver.resolve(name, qtype, source=source, lifetime=5)
        addresses = sorted(rdata.to_text() for rdata in answer)
        return addresses, answer.canonical_name.to_text(), len(self.sent) - before


def serve(up: DnsUpstream, *extra: str) -> Kdns:
    return Kdns(
        "--objects",
        FIXTURE,
        "--upstream",
        up.upstream("udp"),
        "--autopath-search",
        "corp.example",
        *extra,
    )


def upstream_asked(up: DnsUpstream) -> list[str]:
    return [name.lower() for name in up.names() if not name.endswith("kdns-loop-check.")]


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_one_question_per_lookup_instead_of_the_walk(
    upstream: DnsUpstream, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    extra = ["--autopath"] + (["--killer"] if mode == "killer" else [])
    with serve(upstream, *extra) as proc:
        assert "autopath: on" in proc.log
        stub = Stub(proc.port, monkeypatch)
        # An outside name: one question, the CNAME followed to the upstream's address.
        assert stub.lookup("api.github.com", POD) == (["140.82.112.5"], "api.github.com.", 1)
        assert upstream_asked(upstream) == ["api.github.com.corp.example.", "api.github.com."]
        # Again: still one question, and nothing more upstream (the forward cache answers).
        for _ in range(3):
            assert stub.lookup("api.github.com", POD) == (["140.82.112.5"], "api.github.com.", 1)
        assert len(upstream_asked(upstream)) == 2
        # A node search domain, a Service of another namespace, a Service of its own.
        assert stub.lookup("intranet", POD) == (["10.1.2.3"], "intranet.corp.example.", 1)
        assert stub.lookup("web.shop", POD) == (["10.96.0.20"], "web.shop.svc.cluster.local.", 1)
        assert stub.lookup("api", POD) == (["10.96.0.30"], "api.prod.svc.cluster.local.", 1)
        # A client that is no pod walks the whole path, and still gets its answer.
        assert stub.lookup("api.github.com", STRANGER) == (["140.82.112.5"], "api.github.com.", WALK)  # fmt: skip
        # After the stranger's walk (its NXDOMAINs asked twice: killer mode would keep them),
        # the pod is still autopathed: nothing it gets came from the stranger's replies.
        assert stub.lookup("api.github.com", STRANGER)[2] == WALK
        assert stub.lookup("api.github.com", POD) == (["140.82.112.5"], "api.github.com.", 1)
        status, body = proc.get("metrics")
        assert status == 200
        assert "kdns_autopath_answers_total 7.0" in body
        # Each of the stranger's walks: api.github.com.prod.svc and api.github.com.svc (a name
        # under namespace "com", as far as anyone can tell).
        assert 'kdns_autopath_misses_total{reason="unknown_client"} 4.0' in body


def test_without_autopath_the_pod_walks(upstream: DnsUpstream, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with serve(upstream) as proc:
        stub = Stub(proc.port, monkeypatch)
        assert stub.lookup("api.github.com", POD) == (["140.82.112.5"], "api.github.com.", WALK)
        assert stub.lookup("web.shop", POD)[2] == 2
        assert "kdns_autopath" not in proc.get("metrics")[1]


def test_a_service_that_appears_is_seen_at_once_in_killer_mode(
    upstream: DnsUpstream, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An autopath reply to an outside name, asked again and again (killer mode would keep a
    reply by now), then a Service of that name appears: the next lookup finds the Service."""
    objects = tmp_path / "cluster.yaml"
    objects.write_text(Path(FIXTURE).read_text())
    upstream.records = {**UPSTREAM, ("cache.shop.", "A"): ["192.0.2.50"]}
    with Kdns("--objects", str(objects), "--upstream", upstream.upstream("udp"),
              "--autopath", "--autopath-search", "corp.example", "--killer") as proc:  # fmt: skip
        stub = Stub(proc.port, monkeypatch)
        for _ in range(3):
            assert stub.lookup("cache.shop", POD) == (["192.0.2.50"], "cache.shop.", 1)
        objects.write_text(
            Path(FIXTURE).read_text()
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: cache, namespace: shop}\n"
            + "spec: {clusterIP: 10.96.0.50, clusterIPs: [10.96.0.50]}\n"
        )
        started = time.monotonic()
        while time.monotonic() - started < 30:
            if stub.lookup("cache.shop", POD)[0] == ["10.96.0.50"]:
                break
            time.sleep(0.2)
        assert stub.lookup("cache.shop", POD) == (["10.96.0.50"], "cache.shop.svc.cluster.local.", 1)  # fmt: skip
