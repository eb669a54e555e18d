"""Extended DNS Errors (RFC 8914) on what kdns refuses by policy for a client, read back with
dnspython: the ACL's ``filter`` (17 Filtered, as CoreDNS's acl plugin sends since
coredns/coredns#5532) and ``block`` (18 Prohibited: RFC 8914 4.19, "an authoritative server
... that receives a query from an 'unauthorized' client can annotate its REFUSED message with
this code"), forward.allow (18, as BIND's allow-recursion), a zone the client's view does not
serve (18), no forwarding at all (20 Not Authoritative, RFC 8914 4.21). Block lists keep 15.
Without EDNS there is no OPT and so no EDE (RFC 8914 2). Then the same through a real kdns
process over UDP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all
from kdns.policy.acl import Acl, parse_rules
from kdns.policy.views import View, Views
from kdns.server.wire import Responder
from tests.kdnsproc import LOOPBACK, Kdns

FIXTURES = Path(__file__).parent / "fixtures"
CLIENT = ("10.1.2.3", 40000)
OTHER = ("192.168.1.23", 40000)

RULES = [
    {"action": "filter", "type": ["ANY"]},
    {"action": "block", "net": ["10.1.2.0/24"], "zone": ["prod.svc.cluster.local"]},
    {"action": "drop", "net": ["10.9.9.9"]},
]


def responder(acl: list[dict[str, Any]] | None = None) -> Responder:
    zones = ZoneSet.build("cluster.local", (), 5)
    registry = Registry(zones, ttl=5)
    apply_all(registry, load_objects([str(FIXTURES / "cluster.yaml")]))
    registry.synced = True
    out = Responder(registry.answers, Resolver(registry, forward=True).resolve)
    out.derived = registry.derived
    if acl:
        out.acl = Acl(parse_rules(acl))
    return out


def ask(r: Responder, peer: Any, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    wire = r.respond(dns.message.make_query(name, rdtype, **kw).to_wire(), peer=peer)
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire)


def ede(message: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(o.code, o.text) for o in message.options if isinstance(o, dns.edns.EDEOption)]


def test_acl_filter_is_noerror_empty_with_ede_17_filtered() -> None:
    r = responder(RULES)
    reply = ask(r, OTHER, "kubernetes.default.svc.cluster.local", "ANY", use_edns=0)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []
    assert ede(reply) == [(dns.edns.EDECode.FILTERED, "filtered by acl")]
    # DO echoed beside the EDE.
    reply = ask(
        r, OTHER, "kubernetes.default.svc.cluster.local", "ANY", use_edns=0, want_dnssec=True
    )
    assert reply.ednsflags & dns.flags.DO
    assert ede(reply) == [(dns.edns.EDECode.FILTERED, "filtered by acl")]


def test_acl_block_is_refused_with_ede_18_prohibited() -> None:
    r = responder(RULES)
    reply = ask(r, CLIENT, "frontend.prod.svc.cluster.local", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply) == [(dns.edns.EDECode.PROHIBITED, "refused by acl")]
    # The same name from a client the rule does not name: answered, no EDE.
    reply = ask(r, OTHER, "frontend.prod.svc.cluster.local", use_edns=0)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer and ede(reply) == []


def test_no_edns_no_ede_and_drop_sends_nothing() -> None:
    r = responder(RULES)
    reply = ask(r, CLIENT, "frontend.prod.svc.cluster.local")
    assert reply.rcode() == dns.rcode.REFUSED and reply.edns < 0 and ede(reply) == []
    reply = ask(r, OTHER, "x.cluster.local", "ANY")
    assert reply.rcode() == dns.rcode.NOERROR and reply.edns < 0
    query = dns.message.make_query("kubernetes.default.svc.cluster.local", "A", use_edns=0)
    assert r.respond(query.to_wire(), peer=("10.9.9.9", 1)) is None


def test_forward_allow_refusal_is_18_and_no_forwarding_is_20() -> None:
    r = responder()
    # No forwarder at all: kdns is not a resolver for outside names (RFC 8914 4.21).
    reply = ask(r, OTHER, "example.org", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply) == [(dns.edns.EDECode.NOT_AUTHORITATIVE, None)]

    class Forwarder:  # never reached: the client may not forward
        def handle(self, *args: Any) -> bytes:
            raise AssertionError("forwarded for a client forward.allow keeps out")

    r.forwarder = Forwarder()  # type: ignore[assignment]
    r.forward_allow = lambda ip: ip.startswith("192.168.")
    reply = ask(r, CLIENT, "example.org", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply) == [(dns.edns.EDECode.PROHIBITED, "recursion not allowed for this client")]
    # kdns's own names are answered to that client all the same.
    reply = ask(r, CLIENT, "kubernetes.default.svc.cluster.local", use_edns=0)
    assert reply.rcode() == dns.rcode.NOERROR and ede(reply) == []


def test_a_zone_the_clients_view_does_not_serve_is_18() -> None:
    r = responder()
    # The LAN view serves only its own zone: cluster.local is not shown to it.
    zones = ZoneSet.build("cluster.local", (), 5)
    r.views = Views([View("lan", ["192.168.1.0/24"], ["home.example.com"], [])], zones, {})
    reply = ask(r, OTHER, "kubernetes.default.svc.cluster.local", use_edns=0)
    assert reply.rcode() == dns.rcode.REFUSED
    assert ede(reply) == [(dns.edns.EDECode.PROHIBITED, "zone not in this client's view")]


CONFIG = """\
[acl]
rules = [
  {{ action = "filter", type = ["ANY"] }},
  {{ action = "block", net = ["{lan}/32"], zone = ["cluster.local"] }},
]
"""


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_a_real_kdns_process_sends_the_ede_over_udp(tmp_path: Path, mode: str) -> None:
    config = tmp_path / "kdns.toml"
    config.write_text(CONFIG.format(lan="127.0.0.2"))
    extra = ["--killer"] if mode == "killer" else []
    with Kdns("--demo", "--config", str(config), *extra) as kdns:
        name = "kubernetes.default.svc.cluster.local"
        for _ in range(2):  # killer mode: the second round after its wire cache saw the name
            ok = dns.query.udp(dns.message.make_query(name, "A", use_edns=0), LOOPBACK, port=kdns.port, timeout=3)  # fmt: skip
            assert ok.rcode() == dns.rcode.NOERROR and ok.answer and ede(ok) == []
            query = dns.message.make_query(name, "A", use_edns=0)
            refused = dns.query.udp(query, LOOPBACK, port=kdns.port, timeout=3, source="127.0.0.2")
            assert refused.rcode() == dns.rcode.REFUSED
            assert ede(refused) == [(dns.edns.EDECode.PROHIBITED, "refused by acl")]
            query = dns.message.make_query(name, "ANY", use_edns=0)
            filtered = dns.query.udp(query, LOOPBACK, port=kdns.port, timeout=3)
            assert filtered.rcode() == dns.rcode.NOERROR and filtered.answer == []
            assert ede(filtered) == [(dns.edns.EDECode.FILTERED, "filtered by acl")]
