"""Query ACL (kdns.policy.acl): the CoreDNS ``acl`` plugin, rules in order, first match wins.

Case ids cite the CoreDNS acl README (coredns.io/plugins/acl) for the behaviour they pin.
"""

from __future__ import annotations

from typing import Any

import pytest

from kdns.dns.names import to_wire
from kdns.dns.records import AAAA, AXFR, IXFR, MX, SRV, A
from kdns.policy import acl as acl_module
from kdns.policy.acl import ALLOW, BLOCK, DROP, FILTER, Acl, Rule, RuleError, parse_rules

SECONDARY = "192.0.2.53"

# README example "Block all DNS queries with record type A from 192.168.0.0/16" and friends,
# plus the setups an operator reaches for: zone transfers only to a secondary, queries only
# from the pod network.
POLICIES: dict[str, list[dict[str, Any]]] = {
    "axfr-only-to-secondary": [
        {"action": "allow", "net": [f"{SECONDARY}/32"], "type": ["AXFR", "IXFR"]},
        {"action": "block", "type": ["AXFR", "IXFR"]},
    ],
    "pod-cidr-only": [
        {"action": "allow", "net": ["10.244.0.0/16", "fd00:10:244::/56"]},
        {"action": "block"},
    ],
    "drop-bad-net": [{"action": "drop", "net": ["198.51.100.0/24"]}],
    "filter-aaaa": [{"action": "filter", "type": ["AAAA"]}],
    "zone-scoped": [
        {"action": "block", "zone": ["example.org"], "net": ["10.0.0.0/8"]},
        {"action": "filter", "zone": ["svc.cluster.local"], "type": ["MX"]},
    ],
    "first-match-allow": [
        {"action": "allow", "net": ["10.0.0.0/8"]},
        {"action": "block", "net": ["10.1.0.0/16"]},
    ],
    "first-match-block": [
        {"action": "block", "net": ["10.1.0.0/16"]},
        {"action": "allow", "net": ["10.0.0.0/8"]},
        {"action": "block"},
    ],
    "wildcards": [{"action": "block", "net": ["*"], "type": ["*"], "zone": ["."]}],
    "single-strings": [{"action": "block", "net": "10.0.0.1", "type": "a", "zone": "Example.ORG."}],
}

WEB = "web.default.svc.cluster.local"

CASES = [
    # (policy, client, qname, qtype, action)
    ("axfr-only-to-secondary", SECONDARY, "cluster.local", AXFR, ALLOW),
    ("axfr-only-to-secondary", SECONDARY, "cluster.local", IXFR, ALLOW),
    ("axfr-only-to-secondary", "192.0.2.54", "cluster.local", AXFR, BLOCK),
    ("axfr-only-to-secondary", "10.244.1.1", "in-addr.arpa", IXFR, BLOCK),
    ("axfr-only-to-secondary", "10.244.1.1", WEB, A, ALLOW),  # README: no match -> allow
    ("pod-cidr-only", "10.244.3.4", WEB, A, ALLOW),
    ("pod-cidr-only", "10.244.255.255", WEB, SRV, ALLOW),
    ("pod-cidr-only", "10.245.0.1", WEB, A, BLOCK),
    ("pod-cidr-only", "::1", WEB, AAAA, BLOCK),
    ("pod-cidr-only", "fd00:10:244:12::7", WEB, AAAA, ALLOW),
    ("pod-cidr-only", "::ffff:10.244.0.9", WEB, A, ALLOW),  # v4-mapped on a dual-stack socket
    ("pod-cidr-only", "not-an-address", WEB, A, BLOCK),  # matches no net, then the catch-all
    ("drop-bad-net", "198.51.100.77", WEB, A, DROP),
    ("drop-bad-net", "198.51.101.77", WEB, A, ALLOW),
    ("filter-aaaa", "10.0.0.1", WEB, AAAA, FILTER),
    ("filter-aaaa", "10.0.0.1", WEB, A, ALLOW),
    ("zone-scoped", "10.1.2.3", "www.example.org", A, BLOCK),
    ("zone-scoped", "10.1.2.3", "example.org", A, BLOCK),  # the apex itself
    ("zone-scoped", "10.1.2.3", "notexample.org", A, ALLOW),  # label boundary, not a suffix
    ("zone-scoped", "10.1.2.3", "example.org.evil", A, ALLOW),
    ("zone-scoped", "172.16.0.1", "www.example.org", A, ALLOW),  # outside the net
    ("zone-scoped", "172.16.0.1", WEB, MX, FILTER),
    ("zone-scoped", "172.16.0.1", "x.pod.cluster.local", MX, ALLOW),  # other subtree
    ("zone-scoped", "172.16.0.1", "WWW.Example.ORG", A, ALLOW),  # caller lowercases; see below
    ("first-match-allow", "10.1.2.3", WEB, A, ALLOW),
    ("first-match-block", "10.1.2.3", WEB, A, BLOCK),
    ("first-match-block", "10.2.2.3", WEB, A, ALLOW),
    ("first-match-block", "192.0.2.1", WEB, A, BLOCK),
    ("wildcards", "2001:db8::1", "anything.example", 65, BLOCK),
    ("single-strings", "10.0.0.1", "example.org", A, BLOCK),
    ("single-strings", "10.0.0.1", "example.org", AAAA, ALLOW),
    ("single-strings", "10.0.0.2", "example.org", A, ALLOW),
]


@pytest.mark.parametrize(
    "policy, client, qname, qtype, expected",
    [
        pytest.param(*case, id=f"coredns-acl-{case[0]}-{case[1]}-{case[2]}-{case[3]}")
        for case in CASES
    ],
)
def test_decide(policy: str, client: str, qname: str, qtype: int, expected: str) -> None:
    acl = Acl(parse_rules(POLICIES[policy]))
    # The caller passes the question name as wire bytes, already lowercased (the server's
    # lookup key is); a name that is not lowercased matches no zone, as the API says.
    wire = _raw_wire(qname)
    assert acl.decide(client, wire, qtype) == expected
    assert acl.decide(client, wire, qtype) == expected  # again, from the client cache


def _raw_wire(name: str) -> bytes:
    """Wire form keeping the letter case (``to_wire`` lowercases)."""
    return b"".join(bytes((len(x),)) + x.encode() for x in name.split(".")) + b"\x00"


def test_no_rules_is_falsy_and_allows() -> None:
    """README: "The default action is allow". The server skips an empty Acl altogether."""
    empty = Acl(parse_rules([]))
    assert not empty and len(empty) == 0
    assert empty.decide("10.0.0.1", to_wire(WEB), A) == ALLOW
    assert Acl(parse_rules([{"action": "block"}]))


def test_unmatched_rules_fall_through_to_allow() -> None:
    acl = Acl(parse_rules([{"action": "block", "type": ["MX"]}, {"action": "drop", "zone": ["x"]}]))
    assert acl.decide("10.0.0.1", to_wire(WEB), A) == ALLOW


def test_client_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acl_module, "_CLIENT_CACHE_MAX", 8)
    acl = Acl(parse_rules(POLICIES["pod-cidr-only"]))
    for i in range(50):
        assert acl.decide(f"10.244.0.{i}", to_wire(WEB), A) == ALLOW
        assert len(acl._clients) <= 8


def test_parsed_rule_shape_and_round_trip() -> None:
    rules = parse_rules(
        [
            {
                "action": "BLOCK",
                "net": ["10.0.0.1/8", "10.0.0.0/8"],
                "type": ["a", "TYPE65", 1234],
                "zone": ["Cluster.Local."],
            }
        ]
    )
    (rule,) = rules
    assert rule.action == BLOCK
    assert [str(n) for n in rule.nets] == ["10.0.0.0/8"]  # host bits dropped, duplicates merged
    assert rule.qtypes == {A, 65, 1234}
    assert rule.zones == (to_wire("cluster.local"),)
    assert rule.to_dict() == {
        "action": "block",
        "net": ["10.0.0.0/8"],
        "type": ["A", "HTTPS", "TYPE1234"],
        "zone": ["cluster.local"],
    }
    assert parse_rules([rule.to_dict()]) == rules


def test_rule_rejects_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        Rule("deny")


@pytest.mark.parametrize(
    "raw, message",
    [
        pytest.param(
            [{"net": ["10.0.0.0/8"]}], r"^rules\[0\]\.action: missing", id="action-missing"
        ),
        pytest.param(
            [{"action": "deny"}],
            r"^rules\[0\]\.action: expected one of allow, block, filter, drop, got 'deny'",
            id="coredns-acl-action-unknown",
        ),
        pytest.param(
            [{"action": "allow"}, {"action": "block"}, {"action": "block", "net": ["10.0.0.0/33"]}],
            r"^rules\[2\]\.net: '10\.0\.0\.0/33' is not a network",
            id="net-bad-prefix",
        ),
        pytest.param(
            [{"action": "block", "net": ["pods"]}],
            r"^rules\[0\]\.net: 'pods'",
            id="net-not-an-address",
        ),
        pytest.param(
            [{"action": "block", "net": {"a": 1}}],
            r"^rules\[0\]\.net: expected a list",
            id="net-not-a-list",
        ),
        pytest.param(
            [{"action": "block", "type": ["AXFER"]}],
            r"^rules\[0\]\.type: unknown query type 'AXFER'",
            id="coredns-acl-type-unknown",
        ),
        pytest.param(
            [{"action": "block", "type": [70000]}],
            r"^rules\[0\]\.type: .*out of range",
            id="type-out-of-range",
        ),
        pytest.param(
            [{"action": "block", "type": [True]}],
            r"^rules\[0\]\.type: expected a query type",
            id="type-bool",
        ),
        pytest.param(
            [{"action": "block", "zone": ["a..b"]}],
            r"^rules\[0\]\.zone: 'a\.\.b' is not a DNS name",
            id="zone-empty-label",
        ),
        pytest.param(
            [{"action": "block", "zone": ["x" * 64 + ".org"]}],
            r"^rules\[0\]\.zone: ",
            id="zone-label-too-long",
        ),
        pytest.param(
            [{"action": "block", "zone": [5]}],
            r"^rules\[0\]\.zone: expected a DNS name",
            id="zone-not-a-string",
        ),
        pytest.param(
            [{"action": "block", "nets": ["10.0.0.0/8"]}],
            r"^rules\[0\]\.nets: unknown key",
            id="unknown-key",
        ),
        pytest.param(["block"], r"^rules\[0\]: expected a table", id="rule-not-a-table"),
    ],
)
def test_bad_rules(raw: list[Any], message: str) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        parse_rules(raw)
    assert isinstance(caught.value, ValueError)  # the config layer catches ValueError
    assert caught.value.index == int(message.split("[")[1].split("\\]")[0])
