"""Blocky's allowlist-only mode for kdns's views (kdns.policy.views rule 1a).

Blocky, docs/configuration.md ("Blocking and whitelisting"): "If a group has **only** allowlist
entries -> this means only domains from this list are allowed, all other domains will be
blocked." Its resolver (resolver/blocking_resolver.go): ``determineWhitelistOnlyGroups`` takes
the groups with allowlist links and no denylist; for a client in one, a name on an allowlist is
resolved, every other name answered by the block handler with the reason "BLOCKED (WHITELIST
ONLY)", whatever the question type; CNAMEs of an answer are checked against the denylists only.
In kdns a view is the client group: a view that names ``allowlists`` and no ``blocklists``.

Table cases through the real Responder on query bytes (the way the UDP and TCP servers call
it), the configuration's reading (build_views: decided by what is configured, not by what has
loaded, and by the schedules), ``kdns explain``, then a real kdns process over UDP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.config import build_config
from kdns.dns import names
from kdns.policy.blocklist import BlockList
from kdns.policy.listfetch import FetchSettings, Lists, build_views
from kdns.policy.views import ALLOWLIST_ONLY, View, Views
from kdns.server.wire import Responder
from tests.kdnsproc import LOOPBACK, Kdns
from tests.test_blocklist_answers import lan_registry

FIXTURES = Path(__file__).parent / "fixtures"
KIDS = ("192.168.2.7", 40000)
LAN = ("192.168.1.23", 40000)
POD = ("10.244.1.5", 40000)

SCHOOL = """\
# the kids' allowlist: plain names, wildcards, adblock and a regex (Blocky's formats)
school.example.org
*.wikipedia.org
||khanacademy.org^
/^homework[0-9]*\\.example\\.net$/
nas.home.example.com
"""
ADS = "0.0.0.0 ads.example.net\n"


def build(tmp: Path, more: str = "") -> Responder:
    school = tmp / "school.txt"
    school.write_text(SCHOOL + more)
    ads = tmp / "ads.hosts"
    ads.write_text(ADS)
    registry = lan_registry(["nas A 192.168.1.11", "tv A 192.168.1.12", "school CNAME tv"])
    responder = Responder(registry.answers, Resolver(registry, forward=True).resolve)
    responder.derived = registry.derived
    allow = BlockList.load("school", str(school), "auto", "nxdomain")
    block = BlockList.load("ads", str(ads), "hosts", "null")
    views = [
        View("kids", ["192.168.2.0/24"], None, [], [allow], only_allow=True),
        View("lan", ["192.168.1.0/24"], None, [block], [allow]),
    ]
    responder.views = Views(views, registry.zones, {})
    return responder


def ask(responder: Responder, peer: Any, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    wire = responder.respond(query.to_wire(), peer=peer)
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire)


def ede(message: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(o.code, o.text) for o in message.options if isinstance(o, dns.edns.EDEOption)]


# (client, name, type, rcode, answers, blocked): blocked answers are Blocky's zeroIP for A/AAAA
# (kdns's ``null``: NODATA for other types) with EDE 15 naming allowlist-only.
CASES = [
    # On an allowlist (a plain name and its subdomains, Blocky's reading of a plain name):
    # answered as usual, here from the local zone.
    (KIDS, "nas.home.example.com", "A", "NOERROR", ["192.168.1.11"], False),
    # On no allowlist: blocked, kdns's own names included ("all other domains").
    (KIDS, "tv.home.example.com", "A", "NOERROR", ["0.0.0.0"], True),
    (KIDS, "tv.home.example.com", "AAAA", "NOERROR", ["::"], True),
    (KIDS, "kubernetes.default.svc.cluster.local", "A", "NOERROR", ["0.0.0.0"], True),
    # Every question type, not A/AAAA alone (blocking_resolver.go handles every question).
    (KIDS, "tv.home.example.com", "TXT", "NOERROR", [], True),
    (KIDS, "example.org", "MX", "NOERROR", [], True),
    # The allowlist's syntaxes each allow: a wildcard (the name and below), ||d^, a regex.
    (KIDS, "wikipedia.org", "A", "REFUSED", [], False),  # allowed: no forwarder here
    (KIDS, "en.m.wikipedia.org", "A", "REFUSED", [], False),
    (KIDS, "www.khanacademy.org", "A", "REFUSED", [], False),
    (KIDS, "homework12.example.net", "A", "REFUSED", [], False),
    (KIDS, "homework12.example.net.evil.com", "A", "NOERROR", ["0.0.0.0"], True),
    (KIDS, "khanacademy.org.evil.com", "A", "NOERROR", ["0.0.0.0"], True),
    (KIDS, "notwikipedia.org", "A", "NOERROR", ["0.0.0.0"], True),
    # The LAN view names a block list too: the allowlist only unblocks there (not rule 1a).
    (LAN, "tv.home.example.com", "A", "NOERROR", ["192.168.1.12"], False),
    (LAN, "ads.example.net", "A", "NOERROR", ["0.0.0.0"], True),
    # A client in no view: nothing blocked.
    (POD, "tv.home.example.com", "A", "NOERROR", ["192.168.1.12"], False),
]


@pytest.mark.parametrize(("client", "qname", "qtype", "rcode", "want", "blocked"), CASES)
def test_allowlist_only_case(tmp_path: Path, client: Any, qname: str, qtype: str, rcode: str, want: list[str], blocked: bool) -> None:  # fmt: skip
    reply = ask(build(tmp_path), client, qname, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert sorted(r.to_text() for rrset in reply.answer for r in rrset) == want
    if blocked:
        listed = ALLOWLIST_ONLY if client is KIDS else "ads"
        assert ede(reply) == [(dns.edns.EDECode.BLOCKED, f"blocked by {listed}")]
    else:
        assert all(code != dns.edns.EDECode.BLOCKED for code, _ in ede(reply))


def test_allowed_names_cname_chain_is_not_judged_and_counts_name_the_mode(tmp_path: Path) -> None:
    """school.home.example.com is allowed and CNAMEs to tv (on no allowlist): Blocky checks
    the CNAMEs of an answer against denylists only, so the chain is answered whole."""
    responder = build(tmp_path, "school.home.example.com\n")
    reply = ask(responder, KIDS, "school.home.example.com")
    assert sorted(r.to_text() for rrset in reply.answer for r in rrset) == ["192.168.1.12", "tv.home.example.com."]  # fmt: skip
    ask(responder, KIDS, "tv.home.example.com")
    ask(responder, KIDS, "tv.home.example.com", "AAAA")
    assert responder.views is not None
    assert responder.views.counts == {("kids", ALLOWLIST_ONLY): 2}


def config_for(tmp: Path, view: str, schedule: str = "") -> Any:
    (tmp / "school.txt").write_text(SCHOOL)
    (tmp / "ads.hosts").write_text(ADS)
    path = tmp / "kdns.toml"
    path.write_text(
        f'[[blocklists]]\nname = "ads"\nfile = "{tmp / "ads.hosts"}"\n{schedule}'
        f'[[allowlists]]\nname = "school"\nfile = "{tmp / "school.txt"}"\n'
        f'[[allowlists]]\nname = "later"\nurl = "http://127.0.0.1:9/never.txt"\n'
        f'[[views]]\nname = "kids"\nnetworks = ["192.168.2.0/24"]\n{view}\n'
    )
    return build_config(str(path), {})


def verdict(config: Any, lists: Lists, name: str, now: float | None = None) -> str | None:
    views = build_views(config, lists, ZoneSet.build("cluster.local", (), 5), {}, now=now)
    found = views.views[0].blocked(names.to_wire(name).lower())
    return None if found is None else found.name


def test_the_mode_follows_the_configuration_not_what_has_loaded(tmp_path: Path) -> None:
    # allowlists and no blocklists: rule 1a.
    config = config_for(tmp_path, 'allowlists = ["school"]')
    lists = Lists(FetchSettings())
    lists.load_now(config)
    assert verdict(config, lists, "www.school.example.org") is None
    assert verdict(config, lists, "example.com") == ALLOWLIST_ONLY
    # An allowlist by URL not downloaded yet allows nothing: the view fails closed.
    config = config_for(tmp_path, 'allowlists = ["later"]')
    lists = Lists(FetchSettings())
    lists.load_now(config)
    assert verdict(config, lists, "www.school.example.org") == ALLOWLIST_ONLY
    # A block list beside the allowlist: ordinary blocking, the allowlist only unblocks.
    config = config_for(tmp_path, 'blocklists = ["ads"]\nallowlists = ["school"]')
    lists = Lists(FetchSettings())
    lists.load_now(config)
    assert verdict(config, lists, "example.com") is None
    assert verdict(config, lists, "ads.example.net") == "ads"
    # No lists at all: nothing blocked.
    config = config_for(tmp_path, "")
    lists = Lists(FetchSettings())
    lists.load_now(config)
    assert verdict(config, lists, "example.com") is None


def test_a_view_schedule_outside_its_hours_turns_the_mode_off(tmp_path: Path) -> None:
    schedule = '[views.schedule]\ntime_zone = "UTC"\nmon = ["08:00-12:00"]\n'
    config = config_for(tmp_path, 'allowlists = ["school"]\n' + schedule)
    lists = Lists(FetchSettings())
    lists.load_now(config)
    monday_9 = 1796634000.0  # 2026-12-07 09:00 UTC, a Monday
    assert verdict(config, lists, "example.com", now=monday_9) == ALLOWLIST_ONLY
    assert verdict(config, lists, "example.com", now=monday_9 + 4 * 3600) is None


def test_kdns_explain_names_the_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kdns.cli import main

    config_for(tmp_path, 'allowlists = ["school"]')
    path = str(tmp_path / "kdns.toml")
    assert main(["explain", "example.com", "--view", "kids", "-c", path], env={}) == 0
    assert "verdict: blocked by allowlist-only (on none of the view's allowlists)" in capsys.readouterr().out  # fmt: skip
    assert main(["explain", "en.wikipedia.org", "--view", "kids", "-c", path], env={}) == 0
    out = capsys.readouterr().out
    assert "allowlist school: block rule, name wikipedia.org" in out and "verdict: not blocked" in out  # fmt: skip


E2E = """\
[[zones]]
name = "home.example.com"
file = "{zone}"

[[allowlists]]
name = "school"
file = "{school}"

[[views]]
name = "kids"
networks = ["127.0.0.2/32"]
allowlists = ["school"]
"""
ZONE = """\
$ORIGIN home.example.com.
$TTL 300
@     SOA ns1 hostmaster 1 3600 600 86400 60
@     NS  ns1
ns1   A   192.168.1.2
nas   A   192.168.1.11
tv    A   192.168.1.12
"""


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_a_real_kdns_process_blocks_what_the_allowlist_does_not_hold(tmp_path: Path, mode: str) -> None:  # fmt: skip
    (tmp_path / "home.zone").write_text(ZONE)
    (tmp_path / "school.txt").write_text(SCHOOL)
    config = tmp_path / "kdns.toml"
    config.write_text(E2E.format(zone=tmp_path / "home.zone", school=tmp_path / "school.txt"))
    extra = ["--killer"] if mode == "killer" else []

    def udp(kdns: Kdns, name: str, source: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A", use_edns=0)
        return dns.query.udp(query, LOOPBACK, port=kdns.port, timeout=3, source=source)

    with Kdns("--demo", "--config", str(config), *extra) as kdns:
        for _ in range(3):  # repeats: killer mode answers them from its wire cache
            kid = udp(kdns, "nas.home.example.com", "127.0.0.2")
            assert [r.to_text() for rrset in kid.answer for r in rrset] == ["192.168.1.11"]
            kid = udp(kdns, "tv.home.example.com", "127.0.0.2")
            assert [r.to_text() for rrset in kid.answer for r in rrset] == ["0.0.0.0"]
            assert ede(kid) == [(dns.edns.EDECode.BLOCKED, "blocked by allowlist-only")]
            # The same name from a client in no view (127.0.0.1): answered.
            other = udp(kdns, "tv.home.example.com", LOOPBACK)
            assert [r.to_text() for rrset in other.answer for r in rrset] == ["192.168.1.12"]
        status, body = kdns.get("metrics")
        assert status == 200
        assert 'kdns_blocked_queries_total{list="allowlist-only",view="kids"} 3.0' in body
