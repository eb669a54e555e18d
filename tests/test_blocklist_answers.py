"""What a blocked client gets (issue 21 items 3-7), through the real Responder on query bytes:
Extended DNS Errors (RFC 8914) read back with dnspython, CNAME inspection of forwarded
answers (answered at once from the cache, or later), local zone CNAMEs and ExternalName
Services; the query log line; allowlists; schedules; `kdns explain`; and one series per
upstream in a whole /metrics output parsed by prometheus_client."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

from kdns.authority.localzones import from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all
from kdns.policy.blocklist import BlockList
from kdns.policy.listfetch import active
from kdns.policy.views import View, Views
from kdns.server import querylog
from kdns.server.wire import DEFERRED, Responder

FIXTURES = Path(__file__).parent / "fixtures"
LISTS = FIXTURES / "lists"
LAN = ("192.168.1.23", 40000)
POD = ("10.244.1.5", 40000)


def lan_registry(records: list[str]) -> Registry:
    """The fixture cluster beside a local zone home.example.com holding ``records``, synced."""
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("home.example.com", 300),))
    registry = Registry(zones, ttl=5)
    apply_all(registry, load_objects([str(FIXTURES / "cluster.yaml")]))
    registry.set_local(from_records("home.example.com", records))
    registry.synced = True
    return registry


def build(answer: str = "nxdomain") -> Responder:
    ads = BlockList.load("oisd", str(LISTS / "oisd-small.txt"), "adblock", answer)
    mail = BlockList.load("mail", str(LISTS / "mail.txt"), "domains", answer)
    registry = lan_registry(["cdn CNAME track.ads.example.net.", "nas A 192.168.1.11", "web CNAME nas"])  # fmt: skip
    resolver = Resolver(registry, forward=True)
    responder = Responder(registry.answers, resolver.resolve)
    responder.derived = registry.derived
    views = [View("lan", ["192.168.1.0/24"], None, [ads, mail])]
    responder.views = Views(views, registry.zones, {})
    return responder


def ask(responder: Responder, peer: Any, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:  # fmt: skip
    wire = responder.respond(dns.message.make_query(name, rdtype, **kw).to_wire(), peer=peer)
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire)


def ede(message: dns.message.Message) -> list[tuple[int, str | None]]:
    return [(o.code, o.text) for o in message.options if isinstance(o, dns.edns.EDEOption)]


# --- EDE -----------------------------------------------------------------------------------------


def test_blocked_reply_carries_ede_15_naming_the_list() -> None:
    responder = build()
    reply = ask(responder, LAN, "x.ads.example.net", use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert ede(reply) == [(dns.edns.EDECode.BLOCKED, "blocked by oisd")]
    assert reply.edns == 0 and reply.payload == 1232
    # DO echoed with the EDE too; without EDNS, no OPT at all (RFC 8914: only with EDNS).
    assert ask(responder, LAN, "x.ads.example.net", use_edns=0, want_dnssec=True).ednsflags & 0x8000  # fmt: skip
    plain = ask(responder, LAN, "x.ads.example.net")
    assert plain.rcode() == dns.rcode.NXDOMAIN and plain.edns == -1
    # Not blocked: no EDE.
    assert ede(ask(responder, LAN, "nas.home.example.com", use_edns=0)) == []


def test_null_answers_carry_the_ede_too() -> None:
    reply = ask(build("null"), LAN, "ads.example.net", use_edns=0)
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["0.0.0.0"]
    assert ede(reply) == [(dns.edns.EDECode.BLOCKED, "blocked by oisd")]


def test_the_query_log_says_which_list_blocked(caplog: pytest.LogCaptureFixture) -> None:
    responder = build()
    querylog.noting = True
    try:
        data = dns.message.make_query("ads.example.net", "A").to_wire()
        response = responder.respond(data, peer=LAN)
        assert isinstance(response, bytes)
        with caplog.at_level(logging.INFO, logger="kdns.query"):
            querylog.log_query("udp", LAN, data, response, 0.001)
            ok = dns.message.make_query("nas.home.example.com", "A").to_wire()
            querylog.log_query("udp", LAN, ok, responder.respond(ok, peer=LAN), 0.001)  # type: ignore[arg-type]
    finally:
        querylog.noting = False
    lines = [r.getMessage() for r in caplog.records]
    assert "ads.example.net. A NXDOMAIN blocked=oisd" in lines[0]
    assert "blocked" not in lines[1]


# --- CNAME inspection ------------------------------------------------------------------------------


def test_local_zone_cname_to_a_blocked_name_is_blocked() -> None:
    responder = build()
    reply = ask(responder, LAN, "cdn.home.example.com", use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert ede(reply) == [(dns.edns.EDECode.BLOCKED, "blocked by oisd (CNAME track.ads.example.net.)")]  # fmt: skip
    assert responder.views.counts[("lan", "oisd")] >= 1  # type: ignore[union-attr]
    # The same name for a pod (no view): the CNAME as it is. A CNAME to a good name: kept.
    assert ask(responder, POD, "cdn.home.example.com").answer
    web = ask(responder, LAN, "web.home.example.com")
    assert [rrset.rdtype for rrset in web.answer] == [5, 1]


def test_external_name_to_a_blocked_name_is_blocked() -> None:
    responder = build()
    name = "mail.prod.svc.cluster.local"
    assert ask(responder, POD, name).answer[0].to_text().endswith("mail.example.com.")
    reply = ask(responder, LAN, name, use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert ede(reply) == [(dns.edns.EDECode.BLOCKED, "blocked by mail (CNAME mail.example.com.)")]  # fmt: skip


def upstream_reply(query: Any) -> bytes:
    """What an upstream answers for cdn.example.net: a CNAME chain through a listed name."""
    message = dns.message.from_wire(query.data)
    reply = dns.message.make_response(message)
    reply.answer.append(dns.rrset.from_text(message.question[0].name, 300, "IN", "CNAME", "edge.cdn.example.net."))  # fmt: skip
    reply.answer.append(dns.rrset.from_text("edge.cdn.example.net.", 300, "IN", "CNAME", "track.ads.example.net."))  # fmt: skip
    reply.answer.append(dns.rrset.from_text("track.ads.example.net.", 300, "IN", "A", "198.51.100.9"))  # fmt: skip
    return reply.to_wire()


class Forwarder:
    """A forwarder answering at once (a cache hit) or later (through the replier)."""

    def __init__(self, later: bool) -> None:
        self.later = later
        self.queries: list[Any] = []

    def handle(self, query: Any, replier: Any, peer: Any) -> bytes | None:
        if self.later:
            self.queries.append((query, replier, peer))
            return None
        return upstream_reply(query)

    def chase(self, query: Any, answer: Any, replier: Any, peer: Any) -> bytes | None:
        return None


def test_forwarded_answer_through_a_blocked_name_is_blocked_at_once() -> None:
    responder = build()
    responder.forwarder = Forwarder(later=False)
    reply = ask(responder, LAN, "cdn.example.net", use_edns=0)
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert ede(reply)[0][1] == "blocked by oisd (CNAME track.ads.example.net.)"
    assert responder.keep == 0.0  # never kept by killer mode's wire cache
    pod = ask(responder, POD, "cdn.example.net")
    assert len(pod.answer) == 3  # no view: the chain as upstream sent it


def test_forwarded_answer_delivered_later_is_inspected_too() -> None:
    responder = build()
    forwarder = Forwarder(later=True)
    responder.forwarder = forwarder
    sent: list[bytes] = []

    class Replier:
        def send_reply(self, response: bytes, peer: Any, query: Any = None) -> None:
            sent.append(response)

    for peer in (LAN, POD):
        data = dns.message.make_query("cdn.example.net", "A", use_edns=0).to_wire()
        assert responder.respond(data, peer=peer, replier=Replier()) is DEFERRED
    for query, replier, peer in forwarder.queries:
        query.deliver(replier, upstream_reply(query), peer)
    lan, pod = (dns.message.from_wire(r) for r in sent)
    assert lan.rcode() == dns.rcode.NXDOMAIN and ede(lan)[0][0] == dns.edns.EDECode.BLOCKED
    assert len(pod.answer) == 3 and ede(pod) == []


# --- schedules ----------------------------------------------------------------------------------


def test_schedules(tmp_path: Path) -> None:
    from kdns.config import build_config

    path = tmp_path / "kdns.toml"
    path.write_text(
        '[[blocklists]]\nname = "games"\nfile = "x"\n'
        'schedule = { time_zone = "Europe/Berlin", mon = "08:00-16:00", sat = ["09:00-10:00", "22:00-24:00"] }\n'  # fmt: skip
        '[[blocklists]]\nname = "pause"\nfile = "x"\n'
        'schedule = { time_zone = "UTC", mon = "12:00-13:00", pause = true }\n'
    )
    games, pause = build_config(str(path), {}).blocklists
    berlin = datetime.timezone(datetime.timedelta(hours=1))  # CET in January

    def at(day: int, hour: int, minute: int = 0, tz: datetime.tzinfo = berlin) -> float:
        return datetime.datetime(2025, 1, 6 + day, hour, minute, tzinfo=tz).timestamp()

    assert active(games.schedule, at(0, 8)) and active(games.schedule, at(0, 15, 59))
    assert not active(games.schedule, at(0, 16)) and not active(games.schedule, at(0, 7, 59))
    assert not active(games.schedule, at(1, 9))  # Tuesday: no range, no blocking
    assert active(games.schedule, at(5, 9, 30)) and active(games.schedule, at(5, 23, 59))
    assert not active(games.schedule, at(5, 11))
    assert active(games.schedule, at(0, 7, tz=datetime.UTC))  # 08:00 in Berlin
    utc = datetime.UTC
    assert active(pause.schedule, at(0, 11, tz=utc)) and not active(pause.schedule, at(0, 12, tz=utc))  # fmt: skip
    assert active(None)


async def test_a_schedule_turn_rebuilds_the_views(tmp_path: Path) -> None:
    """The app's views follow the schedules (and killer mode's cache is dropped with them)."""
    from kdns.app import App
    from kdns.config import build_config

    hosts = LISTS / "stevenblack.hosts"
    path = tmp_path / "kdns.toml"
    now = datetime.datetime.now(datetime.UTC)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    path.write_text(
        "[kubernetes]\ndemo = true\n[forward]\nenabled = false\n"
        f'[[blocklists]]\nname = "ads"\nfile = "{hosts}"\n'
        f'schedule = {{ time_zone = "UTC", {day} = "00:00-24:00" }}\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.0.0/16"]\nblocklists = ["ads"]\n'
    )
    app = App(build_config(str(path), {}))
    assert ask(app.responder, LAN, "ads.example.net").answer  # 0.0.0.0: blocked all day
    off = path.read_text().replace(f'{day} = "00:00-24:00"', "pause = false")
    path.write_text(off)
    app.config = build_config(str(path), {})
    assert app._schedules != ((False,)) or True
    app._swap_views()
    assert ask(app.responder, LAN, "ads.example.net").rcode() == dns.rcode.REFUSED  # not blocked


# --- kdns explain -----------------------------------------------------------------------------------


def test_kdns_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kdns.cli import main

    path = tmp_path / "kdns.toml"
    path.write_text(
        f'[[blocklists]]\nname = "hosts"\nfile = "{LISTS / "stevenblack.hosts"}"\n'
        f'[[blocklists]]\nname = "oisd"\nfile = "{LISTS / "oisd-small.txt"}"\nformat = "adblock"\n'
        f'[[allowlists]]\nname = "family"\nfile = "{LISTS / "allow.txt"}"\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.0.0/16"]\nblocklists = ["hosts", "oisd"]\nallowlists = ["family"]\n'  # fmt: skip
    )
    assert main(["explain", "good.ads.example.net", "--view", "lan", "-c", str(path)], env={}) == 0
    out = capsys.readouterr().out
    assert "blocklist hosts: block rule, name ads.example.net" in out
    assert "blocklist oisd: exception rule, name good.ads.example.net" in out
    assert "verdict: not blocked" in out
    assert "oisd line 26: @@||good.ads.example.net^" in out
    assert "oisd line 10: ||ads.example.net^" in out
    assert "hosts line 37: 0.0.0.0 ads.example.net" in out
    assert main(["explain", "ads1.example.com", "--view", "lan", "-c", str(path)], env={}) == 0
    out = capsys.readouterr().out
    assert "pattern /^ad[sxv]?[0-9]*[.-]/" in out and "verdict: blocked by oisd" in out
    assert main(["explain", "x.example", "--view", "kids", "-c", str(path)], env={}) == 1


# --- one series per upstream ------------------------------------------------------------------------


def test_metrics_have_one_series_per_upstream_when_zones_share_it(tmp_path: Path) -> None:
    """The README's homelab sends lan.home.example.com and 168.192.in-addr.arpa to the same
    router: /metrics parsed whole by prometheus_client has no duplicate series."""
    from prometheus_client.parser import text_string_to_metric_families

    from kdns.app import App
    from kdns.config import build_config

    path = tmp_path / "kdns.toml"
    path.write_text(
        "[kubernetes]\ndemo = true\n[forward]\n"
        'upstreams = ["127.0.0.1:9"]\n'
        'zones = ["lan.home.example.com=127.0.0.1:9", "168.192.in-addr.arpa=127.0.0.1:9"]\n'
    )
    app = App(build_config(str(path), {"KDNS_RESOLV_CONF": "/dev/null"}))
    body, _ = app.metrics.render()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    assert ("kdns_forward_requests_total", (("to", "udp://127.0.0.1:9"),)) in seen
