"""End to end: a zone transfer of a gateway zone holds what that client's queries are answered
with (RFC 5936 6: a transfer reflects the zone as served). A client in a ``[[views]]`` entry
with gateway class filters of its own gets its view's names (another controller's address for
a name both claim, a name only its classes claim, no name its classes do not claim); the TTLs
are the names' own (``[gateway] ttl``, a ``ttl`` annotation), as queries carry them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import dns.zone
import pytest

from tests.k8sapi import K8sApi, gateway, httproute
from tests.test_e2e_gateway import (
    EVERYTHING,
    EXTERNAL_IP,
    GRAFANA,
    INTERNAL_IP,
    VIEWS_TOML,
    ZONE,
    base_objects,
    start,
)
from tests.test_e2e_watch import eventually

TOML = (
    VIEWS_TOML
    + """
[transfer]
allow = ["127.0.0.0/8"]

[gateway]
ttl = 60
"""
)
WIKI = f"wiki.{ZONE}"
LAN, WAN, NOVIEW = "127.0.0.2", "127.0.0.3", "127.0.0.1"


@pytest.fixture
def api() -> Iterator[K8sApi]:
    objects = base_objects()
    objects.append(gateway("infra", "external", [EXTERNAL_IP], [("https", f"*.{ZONE}")], gateway_class="eg-external"))  # fmt: skip
    objects.append(httproute("apps", "wiki", [WIKI], [("infra", "internal"), ("infra", "external")]))  # fmt: skip
    ttl = httproute("apps", "short", [f"short.{ZONE}"], [("infra", "external")], annotations={"external-dns.alpha.kubernetes.io/ttl": "20"})  # fmt: skip
    objects.append(ttl)
    with K8sApi(objects, bookmark_interval=0.5, installed=EVERYTHING) as server:
        yield server


def axfr(port: int, source: str) -> dict[tuple[str, int], tuple[int, list[str]]]:
    """(name, type) -> (ttl, sorted rdata) of a transfer of the gateway zone from ``source``."""
    out: dict[tuple[str, int], tuple[int, list[str]]] = {}
    for message in dns.query.xfr(
        "127.0.0.1", ZONE, port=port, source=source, timeout=5, relativize=False
    ):
        for rrset in message.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                continue
            key = (rrset.name.to_text(), rrset.rdtype)
            ttl, rdatas = out.get(key, (rrset.ttl, []))
            out[key] = (ttl, sorted(rdatas + [r.to_text() for r in rrset]))
    return out


def asked(port: int, source: str, name: str, rdtype: int) -> tuple[int, list[str]]:
    query = dns.message.make_query(name, rdtype)
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3, source=source)
    found = [rrset for rrset in reply.answer if rrset.rdtype == rdtype]
    return (found[0].ttl, sorted(r.to_text() for r in found[0])) if found else (0, [])


def a_of(records: dict[tuple[str, int], tuple[int, list[str]]], name: str) -> list[str]:
    return records.get((name + ".", dns.rdatatype.A), (0, []))[1]


@pytest.mark.parametrize(
    "filters",
    [
        "",
        # [gateway]'s own filter keeps the external class: grafana (internal only) is no name
        # of the registry's, only of the LAN view's overlay, and still in the LAN's transfer.
        'gateway_classes = ["eg-external"]\n',
    ],
)
def test_axfr_per_view_holds_what_the_view_answers(api: K8sApi, tmp_path: Path, filters: str) -> None:  # fmt: skip
    with start(api, tmp_path, toml=TOML + filters) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        eventually(lambda: asked(proc.port, LAN, WIKI, dns.rdatatype.A)[1] == [INTERNAL_IP])
        lan, wan, anyone = (axfr(proc.port, s) for s in (LAN, WAN, NOVIEW))
        # The LAN view (class eg) sees the internal controller's names and addresses only.
        assert a_of(lan, WIKI) == [INTERNAL_IP] and a_of(wan, WIKI) == [EXTERNAL_IP]
        assert a_of(lan, GRAFANA) == [INTERNAL_IP] and a_of(wan, GRAFANA) == []
        assert a_of(lan, f"blog.{ZONE}") == [] and a_of(wan, f"blog.{ZONE}") == [EXTERNAL_IP]
        # Every RRset of each transfer is what that client's query for it returns, TTL
        # included, and the client's queries find nothing the transfer left out.
        for source, records in ((LAN, lan), (WAN, wan), (NOVIEW, anyone)):
            for (name, rdtype), (ttl, rdatas) in records.items():
                assert asked(proc.port, source, name, rdtype) == (ttl, rdatas), (source, name)
            for name in (WIKI, GRAFANA, f"blog.{ZONE}", f"short.{ZONE}"):
                if a_of(records, name) == []:
                    assert asked(proc.port, source, name, dns.rdatatype.A)[1] == [], (source, name)
        # [gateway] ttl = 60 on gateway names, a route's ttl annotation on its own.
        assert lan[(WIKI + ".", dns.rdatatype.A)][0] == 60
        assert wan[(f"short.{ZONE}.", dns.rdatatype.A)][0] == 20
