"""Local zones ([[zones]], --zone-file): loading, serving, errors, reload in place.

Zone files are read by dnspython's zone reader (kdns.authority.localzones); these cases pin what
kdns makes of a BIND-style file ($ORIGIN, $TTL, relative names, @, a multi-line SOA) and of
TOML records, and how a local zone sits beside the cluster zone and forward zones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.authority.localzones import LocalZoneError, from_file, from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.transfer import soa_rrset, zone_rrsets
from kdns.authority.zones import ZoneSet
from kdns.config import ConfigError, LocalZoneSource, build_config
from kdns.dns import names
from kdns.dns.answer import FORWARD
from kdns.dns.records import AAAA, MX, NS, TXT, A
from kdns.server.wire import Responder

BIND_FILE = """\
; home.example.com, as BIND would read it
$TTL 1h
$ORIGIN home.example.com.
@       IN SOA  ns1 hostmaster (
                2024060101 ; serial
                3600       ; refresh
                600        ; retry
                1209600    ; expire
                120 )      ; minimum
        IN NS   ns1
        IN MX   10 mail
ns1         A     192.168.1.2
mail   300  A     192.168.1.3
            AAAA  fd00::3
nas         CNAME mail
@           TXT   "v=spf1 mx -all"
_http._tcp  SRV   0 5 80 nas
@           CAA   0 issue "letsencrypt.org"
*           A     192.168.1.58
$ORIGIN lab.home.example.com.
pi          A     192.168.2.10
$TTL 60
printer     A     192.168.2.20
12.1.168.192.in-addr.arpa. PTR nas.home.example.com.
"""


def serve(*zones: tuple[str, Any], forward: bool = False, cuts: tuple[str, ...] = (),
          synced: bool = True, authoritative: bool = True) -> tuple[Registry, Responder]:  # fmt: skip
    zoneset = ZoneSet.build(
        "cluster.local", (), 5, local_zones=tuple((name, 300) for name, _ in zones)
    )
    registry = Registry(zoneset, ttl=5)
    for _, data in zones:
        registry.set_local(data)
    registry.synced = synced
    resolver = Resolver(registry, forward=forward, cuts=cuts, authoritative=authoritative)
    responder = Responder(registry.answers, resolver.resolve)
    responder.derived = registry.derived
    return registry, responder


def ask(responder: Responder, qname: str, qtype: str = "A") -> dns.message.Message:
    wire = responder.respond(dns.message.make_query(qname, qtype).to_wire())
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire)


def answer(responder: Responder, qname: str, qtype: str = "A") -> list[str]:
    return sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for rrset in ask(responder, qname, qtype).answer
        for rdata in rrset
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Responder]:
    path = tmp_path_factory.mktemp("zones") / "home.zone"
    path.write_text(BIND_FILE)
    return serve(("home.example.com", from_file("home.example.com", str(path))))


# --- a BIND-style zone file ---------------------------------------------------------------------

FILE_CASES = [
    ("relative name, $TTL 1h", "ns1.home.example.com.", "A",
     ["ns1.home.example.com. 3600 A 192.168.1.2"]),
    ("explicit TTL wins over $TTL", "mail.home.example.com.", "A",
     ["mail.home.example.com. 300 A 192.168.1.3"]),
    ("a line without owner continues the previous name", "mail.home.example.com.", "AAAA",
     ["mail.home.example.com. 3600 AAAA fd00::3"]),
    ("@ is the origin; MX target relative", "home.example.com.", "MX",
     ["home.example.com. 3600 MX 10 mail.home.example.com."]),
    ("apex NS from the file (not synthesized)", "home.example.com.", "NS",
     ["home.example.com. 3600 NS ns1.home.example.com."]),
    ("CNAME chased in zone", "nas.home.example.com.", "A",
     ["mail.home.example.com. 300 A 192.168.1.3", "nas.home.example.com. 3600 CNAME mail.home.example.com."]),
    ("a local CNAME answers every type (RFC 1034 3.6.2)", "nas.home.example.com.", "TXT",
     ["nas.home.example.com. 3600 CNAME mail.home.example.com."]),
    ("TXT", "home.example.com.", "TXT", ['home.example.com. 3600 TXT "v=spf1 mx -all"']),
    ("SRV", "_http._tcp.home.example.com.", "SRV",
     ["_http._tcp.home.example.com. 3600 SRV 0 5 80 nas.home.example.com."]),
    ("CAA", "home.example.com.", "CAA", ['home.example.com. 3600 CAA 0 issue "letsencrypt.org"']),
    ("$ORIGIN moves relative names below", "pi.lab.home.example.com.", "A",
     ["pi.lab.home.example.com. 3600 A 192.168.2.10"]),
    ("a second $TTL applies from there on", "printer.lab.home.example.com.", "A",
     ["printer.lab.home.example.com. 60 A 192.168.2.20"]),
    ("the wildcard answers unknown names", "tv.home.example.com.", "A",
     ["tv.home.example.com. 3600 A 192.168.1.58"]),
]  # fmt: skip


@pytest.mark.parametrize(("qname", "qtype", "want"), [c[1:] for c in FILE_CASES],
                         ids=[c[0] for c in FILE_CASES])  # fmt: skip
def test_bind_file(home: tuple[Registry, Responder], qname: str, qtype: str, want: list[str]) -> None:  # fmt: skip
    assert answer(home[1], qname, qtype) == want


def test_bind_file_soa(home: tuple[Registry, Responder]) -> None:
    """The file's SOA fields and TTL; the serial starts from the file's and only moves up
    (kdns bumps it on every change of the zone's data, loading included)."""
    (soa,) = ask(home[1], "home.example.com.", "SOA").answer
    assert soa.ttl == 3600
    rdata = soa[0]
    assert (rdata.mname.to_text(), rdata.rname.to_text()) == ("ns1.home.example.com.", "hostmaster.home.example.com.")  # fmt: skip
    assert (rdata.refresh, rdata.retry, rdata.expire, rdata.minimum) == (3600, 600, 1209600, 120)
    assert 2024060101 <= rdata.serial < 2024060101 + 10


def test_bind_file_negative_answers(home: tuple[Registry, Responder]) -> None:
    """NODATA below the wildcard's reach (lab exists), SOA TTL min(SOA TTL, MINIMUM)."""
    reply = ask(home[1], "nothing.lab.home.example.com.")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert [rrset.ttl for rrset in reply.authority] == [120]
    reply = ask(home[1], "ns1.home.example.com.", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


def test_out_of_zone_records_are_dropped(home: tuple[Registry, Responder]) -> None:
    """A name outside the zone in a zone file is ignored (dnspython; BIND: "ignoring out-of-zone
    data"): the PTR under in-addr.arpa is not served by this zone."""
    registry, _ = home
    assert not registry.exists(names.to_wire("12.1.168.192.in-addr.arpa"))


def test_zone_transfer_carries_each_rrset_ttl(home: tuple[Registry, Responder]) -> None:
    registry, _ = home
    zone = registry.zones.find(names.to_wire("home.example.com"))
    assert zone is not None
    ttls = {(names.to_text(n), t): ttl for n, t, ttl, _ in zone_rrsets(registry, zone)}
    assert ttls[("mail.home.example.com.", A)] == 300
    assert ttls[("printer.lab.home.example.com.", A)] == 60
    assert ttls[("home.example.com.", NS)] == 3600
    assert soa_rrset(registry, zone)[2] == 3600


# --- TOML records ----------------------------------------------------------------------------------


def test_toml_records_relative_names_and_ttls() -> None:
    data = from_records(
        "home.example.com",
        ["www A 192.168.1.10", "www AAAA fd00::10", "@ 60 MX 10 www", '@ TXT "a b"', "* A 192.168.1.58"],
        ttl=120,
    )  # fmt: skip
    www = names.to_wire("www.home.example.com")
    assert set(data.records[www]) == {A, AAAA}
    assert data.ttls[www] == {A: 120, AAAA: 120}
    assert data.ttls[names.to_wire("home.example.com")] == {MX: 60, TXT: 120}
    assert data.soa is None and not data.own_ns


@pytest.mark.parametrize(
    ("records", "index", "message"),
    [
        (["www A 192.168.1.10", "www A 1.2.3"], 1, "'www A 1.2.3'"),
        (["www A 192.168.1.10", "www CNAME other"], 1, "CNAME cannot share"),
        (["sub NS ns1.example.net."], 0, "delegation"),
        (["@ DS 12345 8 2 " + "ab" * 32], 0, "DS records are not served"),
        (["x.example.org. A 192.0.2.1"], 0, "not a name in home.example.com"),
        (["$INCLUDE /etc/passwd"], 0, "no $ directives"),
        (["x TYPE999 \\# 0", 5], 1, "expected a record"),
    ],
)
def test_toml_record_errors_name_the_record(records: list[Any], index: int, message: str) -> None:
    with pytest.raises(LocalZoneError) as caught:
        from_records("home.example.com", records)
    assert caught.value.index == index and message in str(caught.value)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    def load(text: str) -> None:
        path = tmp_path / "kdns.toml"
        path.write_text(text)
        build_config(str(path), {})

    with pytest.raises(ConfigError, match=r"^config: zones\[0\]\.records\[1\]: 'bad A x'"):
        load('[[zones]]\nname = "home.example.com"\nrecords = ["www A 192.0.2.1", "bad A x"]\n')
    with pytest.raises(ConfigError, match=r"^config: zones\[0\]: expected either file"):
        load('[[zones]]\nname = "home.example.com"\n')
    with pytest.raises(ConfigError, match=r"^config: zones\[1\]\.name: home.example.com given twice"):  # fmt: skip
        load('[[zones]]\nname = "home.example.com"\nfile = "a"\n'
             '[[zones]]\nname = "home.example.com"\nfile = "b"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"^config: zones\[0\]\.name: cluster.local is already"):
        load('[[zones]]\nname = "cluster.local"\nfile = "a"\n')
    with pytest.raises(ConfigError, match=r"^config: zones\[0\]\.colour: unknown key"):
        load('[[zones]]\nname = "home.example.com"\nfile = "a"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match=r"also in forward.zones"):
        load('[forward]\nzones = ["home.example.com=192.168.1.1"]\n'
             '[[zones]]\nname = "home.example.com"\nfile = "a"\n')  # fmt: skip


def test_zone_file_flag_and_env() -> None:
    config = build_config(None, {"KDNS_ZONE_FILE": "a.example=/a.zone,b.example=/b.zone"})
    assert config.local_zones == (
        LocalZoneSource("a.example", "/a.zone", (), 300),
        LocalZoneSource("b.example", "/b.zone", (), 300),
    )
    config = build_config(None, {}, {"local_zones": ["home.example.com=/etc/kdns/home.zone"]})
    assert config.local_zones[0].file == "/etc/kdns/home.zone"
    with pytest.raises(ConfigError, match="^config: --zone-file"):
        build_config(None, {}, {"local_zones": ["home.example.com"]})


def test_zone_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.zone"
    path.write_text("$ORIGIN home.example.com.\nwww A 192.0.2.1\nbad AA 192.0.2.3\n")
    with pytest.raises(LocalZoneError, match=rf"^{path}:3: unknown rdatatype 'AA'"):
        from_file("home.example.com", str(path))
    with pytest.raises(LocalZoneError, match="cannot read"):
        from_file("home.example.com", str(tmp_path / "missing.zone"))


# --- beside other zones, forwarding and the cluster's sync ---------------------------------------


def test_forward_zone_inside_a_local_zone_is_forwarded() -> None:
    """forward.zones lan.home.example.com -> the router: names there (wildcard included) are
    forwarded; names with local records there answer locally."""
    data = from_records("home.example.com", ["* A 192.168.1.58", "fixed.lan A 192.168.1.9"])
    registry, _ = serve(("home.example.com", data))
    resolver = Resolver(registry, forward=True, cuts=("lan.home.example.com", "example.org"))
    assert resolver.resolve(names.to_wire("tv.lan.home.example.com"), 1) is FORWARD
    assert resolver.resolve(names.to_wire("lan.home.example.com"), 1) is FORWARD
    fixed = resolver.resolve(names.to_wire("fixed.lan.home.example.com"), 28)
    assert fixed is not FORWARD and fixed.rcode == 0  # NODATA from the local record's name
    assert resolver.resolve(names.to_wire("tv.home.example.com"), 1).ancount == 1


def test_local_zones_answer_before_the_cluster_sync() -> None:
    """Cluster names are SERVFAIL until the first sync; a local zone's data is all there."""
    data = from_records("home.example.com", ["www A 192.168.1.10"])
    registry, _ = serve(("home.example.com", data), synced=False)
    resolver = Resolver(registry)
    assert resolver.resolve(names.to_wire("www.home.example.com"), 1).ancount == 1
    assert resolver.resolve(names.to_wire("x.home.example.com"), 1).rcode == 3
    assert resolver.resolve(names.to_wire("x.svc.cluster.local"), 1).rcode == 2
    assert not registry.derived  # nothing remembered from before the sync


def test_forward_only_mode_still_serves_local_zones() -> None:
    """kubernetes.enabled = false: no cluster zones, but the local zone is authoritative."""
    data = from_records("home.example.com", ["www A 192.168.1.10"])
    registry, _ = serve(("home.example.com", data), forward=True, authoritative=False)
    resolver = Resolver(registry, forward=True, authoritative=False)
    assert resolver.resolve(names.to_wire("nope.home.example.com"), 1).rcode == 3
    assert resolver.resolve(names.to_wire("x.svc.cluster.local"), 1) is FORWARD


def test_set_local_re_renders_only_what_changed() -> None:
    data = from_records("home.example.com", ["www A 192.168.1.10", "nas A 192.168.1.11"])
    registry, responder = serve(("home.example.com", data))
    told: list[set[bytes]] = []
    registry.watchers.append(lambda changed, zones, everything: told.append(changed))
    registry.set_local(from_records("home.example.com", ["www A 192.168.1.10", "nas 60 A 192.168.1.11"]))  # fmt: skip
    nas = names.to_wire("nas.home.example.com")
    assert nas in told[-1] and names.to_wire("www.home.example.com") not in told[-1]
    assert answer(responder, "nas.home.example.com.") == ["nas.home.example.com. 60 A 192.168.1.11"]  # fmt: skip
    serial = ask(responder, "home.example.com.", "SOA").answer[0][0].serial
    registry.set_local(from_records("home.example.com", ["www A 192.168.1.10"]))
    assert ask(responder, "nas.home.example.com.").rcode() == dns.rcode.NXDOMAIN
    assert ask(responder, "home.example.com.", "SOA").answer[0][0].serial > serial
