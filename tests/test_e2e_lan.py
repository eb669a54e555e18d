"""End to end: a real ``kdns serve`` with a local zone (zone file, wildcard), a block list and a
view for "LAN" clients, asked over UDP and TCP from two loopback addresses: 127.0.0.2 plays a
LAN device (in the view), 127.0.0.1 a pod (in no view). Both standard and killer mode: the
wire cache must never hand one view's reply to the other. Zone file and block list edits
apply without a restart; blocked queries are counted per view and list.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.kdnsproc import LOOPBACK, Kdns

LAN_SOURCE = "127.0.0.2"
ZONE = """\
$ORIGIN home.example.com.
$TTL 300
@     SOA ns1 hostmaster 1 3600 600 86400 60
@     NS  ns1
ns1   A   192.168.1.2
nas   A   192.168.1.11
*     A   192.168.1.58
"""
HOSTS = "0.0.0.0 tracker.home.example.com\n0.0.0.0 ads.example.net\n"
CONFIG = """\
[server]
reload_interval = 0.2

[[zones]]
name = "home.example.com"
file = "{zone}"

[[blocklists]]
name = "ads"
file = "{hosts}"
format = "hosts"
answer = "null"

[[views]]
name = "lan"
networks = ["{lan}/32"]
zones = ["home.example.com"]
blocklists = ["ads"]
"""


def ask(kdns: Kdns, name: str, source: str, rdtype: str = "A", tcp: bool = False) -> tuple[str, list[str]]:  # fmt: skip
    query = dns.message.make_query(name, rdtype)
    if tcp:
        reply = dns.query.tcp(query, LOOPBACK, port=kdns.port, timeout=3, source=source)
    else:
        reply = dns.query.udp(query, LOOPBACK, port=kdns.port, timeout=3, source=source)
    return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for rrset in reply.answer for r in rrset)  # fmt: skip


def eventually(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("not within the deadline")
        time.sleep(0.1)


@pytest.fixture(params=["standard", "killer"])
def lan(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Kdns, Path, Path]]:
    zone, hosts = tmp_path / "home.zone", tmp_path / "ads.hosts"
    zone.write_text(ZONE)
    hosts.write_text(HOSTS)
    config = tmp_path / "kdns.toml"
    config.write_text(CONFIG.format(zone=zone, hosts=hosts, lan=LAN_SOURCE))
    extra = ["--killer"] if request.param == "killer" else []
    with Kdns("--demo", "--config", str(config), *extra) as kdns:
        yield kdns, zone, hosts


def test_the_same_name_from_a_lan_address_and_from_a_pod_address(lan: tuple[Kdns, Path, Path]) -> None:  # fmt: skip
    kdns, _, _ = lan
    pod, device = LOOPBACK, LAN_SOURCE
    for _ in range(3):  # repeated: killer mode answers the repeats from its wire cache
        assert ask(kdns, "tracker.home.example.com", pod) == ("NOERROR", ["192.168.1.58"])
        assert ask(kdns, "tracker.home.example.com", device) == ("NOERROR", ["0.0.0.0"])
        assert ask(kdns, "Tracker.Home.Example.Com", device, "AAAA") == ("NOERROR", ["::"])
        assert ask(kdns, "nas.home.example.com", device) == ("NOERROR", ["192.168.1.11"])
        assert ask(kdns, "x.y.home.example.com", device) == ("NOERROR", ["192.168.1.58"])
        assert ask(kdns, "web.shop.svc.cluster.local", pod)[0] == "NOERROR"
        # cluster.local is not in the LAN view: outside its zones, and no forwarder here.
        assert ask(kdns, "web.shop.svc.cluster.local", device) == ("REFUSED", [])
    assert ask(kdns, "tracker.home.example.com", device, tcp=True) == ("NOERROR", ["0.0.0.0"])
    assert ask(kdns, "tracker.home.example.com", pod, tcp=True) == ("NOERROR", ["192.168.1.58"])
    status, body = kdns.get("metrics")
    assert status == 200
    match = re.search(r'^kdns_blocked_queries_total\{list="ads",view="lan"\} (\S+)$', body, re.M)
    assert match and float(match[1]) == 7.0, body[-2000:]


def test_zone_file_and_block_list_edits_apply_live(lan: tuple[Kdns, Path, Path]) -> None:
    kdns, zone, hosts = lan
    assert ask(kdns, "printer.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.58"])
    assert ask(kdns, "ads.example.net", LAN_SOURCE) == ("NOERROR", ["0.0.0.0"])
    assert ask(kdns, "nas.home.example.com", LAN_SOURCE) == ("NOERROR", ["192.168.1.11"])
    zone.write_text(ZONE + "printer A 192.168.1.40\n")
    eventually(lambda: ask(kdns, "printer.home.example.com", LOOPBACK)[1] == ["192.168.1.40"])
    hosts.write_text(HOSTS + "0.0.0.0 nas.home.example.com\n")
    eventually(lambda: ask(kdns, "nas.home.example.com", LAN_SOURCE)[1] == ["0.0.0.0"])
    assert ask(kdns, "nas.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.11"])
    zone.write_text("this is not a zone file\n")  # a broken edit keeps what was served
    eventually(lambda: "zone home.example.com (file changed) unchanged" in kdns.log)
    assert ask(kdns, "printer.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.40"])


def test_local_zones_alone_without_a_cluster_or_forwarding(tmp_path: Path) -> None:
    # Issue 20, wrong today 10: kubernetes.enabled = false with [[zones]] and --no-forward
    # refused to start ("nothing to serve") although local zones are something to serve.
    config = tmp_path / "kdns.toml"
    config.write_text(
        '[kubernetes]\nenabled = false\n\n[[zones]]\nname = "home.example.com"\n'
        'records = ["nas A 192.168.1.11"]\n'
    )
    with Kdns("--config", str(config), "--no-forward") as kdns:
        assert ask(kdns, "nas.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.11"])
        assert ask(kdns, "example.net", LOOPBACK)[0] == "REFUSED"


def test_split_brain_fallthrough_answers_dns01_from_the_public_zone(tmp_path: Path) -> None:
    # k8s_gateway's fallthrough: a name of the LAN zone that nothing of kdns claims goes to the
    # zone's upstreams (a [forward] zones entry of the same name), so cert-manager's DNS-01
    # self-check of _acme-challenge.<host> TXT sees the public record; claimed names and the
    # zone's own records stay kdns's.
    from tests.dnsupstream import DnsUpstream

    public = {
        ("_acme-challenge.grafana.home.example.com.", "TXT"): ['"token-123"'],
        ("blog.home.example.com.", "A"): ["203.0.113.80"],
    }
    with DnsUpstream(public) as upstream:
        config = tmp_path / "kdns.toml"
        config.write_text(
            '[gateway]\nzones = ["home.example.com"]\nfallthrough = true\n\n'
            f'[forward]\nzones = ["home.example.com={upstream.upstream()}"]\n\n'
            '[[zones]]\nname = "home.example.com"\nrecords = ["nas A 192.168.1.11"]\n'
        )
        with Kdns("--demo", "--config", str(config)) as kdns:
            txt = ask(kdns, "_acme-challenge.grafana.home.example.com", LOOPBACK, "TXT")
            assert txt == ("NOERROR", ['"token-123"'])
            assert ask(kdns, "blog.home.example.com", LOOPBACK) == ("NOERROR", ["203.0.113.80"])
            assert ask(kdns, "grafana.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.240"])  # fmt: skip
            assert ask(kdns, "nas.home.example.com", LOOPBACK) == ("NOERROR", ["192.168.1.11"])
            asked = upstream.names()
            assert "grafana.home.example.com." not in asked and "nas.home.example.com." not in asked  # fmt: skip
