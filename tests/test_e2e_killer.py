"""Killer mode end to end: real ``kdns serve --killer`` processes queried over UDP and TCP.

- Byte for byte what standard mode sends: the exact same datagrams (fixed letter case, only
  the ID differs; without EDNS, with EDNS, DO and a 4096 buffer, a DNS COOKIE, padding), sent
  many at a time so the batched recvmmsg/sendmmsg path answers them, to a standard and a
  killer process serving the same objects, zone file, block list and config, before and after
  every kind of change (objects, zone records and SOA, block list, SIGHUP reloads of the TTL,
  ACL, views and forward.allow): whole replies after the ID must be equal.
- Forwarded answers in the wire cache count their TTLs down and never outlive them.
- The ACL and forward.allow hold for cached replies.
- The prefetcher learns a walk and fetches its external name before the client asks.
- Counts in /metrics stay exact while most answers come from the wire cache.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns, udp_blast

CLUSTER = FIXTURES / "cluster.yaml"


def _ask(port: int, name: str, rdtype: str, edns: int, tcp: bool) -> dns.message.Message:
    want_dnssec = edns == 2
    query = dns.message.make_query(
        name, rdtype, use_edns=0 if edns else False, want_dnssec=want_dnssec
    )
    query.flags |= dns.flags.CD if edns == 2 else 0
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, LOOPBACK, port=port, timeout=3)


# ------------------------------------------------------------------ the differential
#
# A standard and a killer process serve the same objects, zone file, block list and config.
# Every round sends both the exact same datagrams (only the 2 ID bytes differ from round to
# round), many at a time from one socket so killer mode reads them with recvmmsg and answers
# with sendmmsg, and compares each reply whole, after its ID: header, question, answer,
# authority, additional, OPT. Rounds run before and after each kind of change, twice each: the
# first round after a change replays keys the killer's wire cache filled before it, so a
# missing invalidation shows as a stale reply; the second compares the refilled cache.
#
# Normalised, and nothing else:
# - the SOA serial, which is per process (each starts its zones at its own clock second): a
#   serial equal to what the process serves for that zone right now (asked over TCP, which
#   is standard mode in both) reads as 0; any other serial is left, so a stale one differs;
# - TTLs of forwarded replies (AA clear in standard mode's reply: reverse names kdns does not
#   hold, names outside its zones) and of ExternalName chases, which count down from when each
#   process fetched them;
# - a server cookie (RFC 7873), should kdns send one: the 8 client cookie bytes must be echoed
#   as sent, the server part is per process.

UPSTREAM_RECORDS = {
    ("www.example.com.", "A"): ["192.0.2.1"],
    ("mail.example.com.", "A"): ["192.0.2.25"],
    ("ads.example.net.", "A"): ["192.0.2.66"],
    ("tracker.example.net.", "A"): ["192.0.2.67"],
}
ZONE = "home.example"
COOKIE = bytes.fromhex("0123456789abcdef")
# (label, make_query keywords): the same question asked the ways clients ask it.
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("plain", {"use_edns": False}),
    ("edns", {"use_edns": 0}),
    ("do-4096", {"use_edns": 0, "want_dnssec": True, "payload": 4096}),
    (
        "cookie",
        {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, COOKIE)]},
    ),
    ("padding", {"use_edns": 0, "pad": 128}),
)
CL = "svc.cluster.local"
# (name in the case the client sends, type): positive, NODATA, NXDOMAIN (search-path walk
# steps), SRV (with additional records), PTR, pod names, namespaces, wildcard, local zone,
# forwarded names and an ExternalName chase. Every name is asked before and after every change.
QUESTIONS: tuple[tuple[str, str], ...] = (
    (f"web.prod.{CL}", "A"),
    (f"WeB.PrOd.{CL}", "A"),  # a client's own case, echoed: its own key
    (f"web.prod.{CL}", "AAAA"),
    (f"web.prod.{CL}", "TXT"),
    (f"web.prod.{CL}", "ANY"),
    (f"_http._tcp.web.prod.{CL}", "SRV"),
    (f"db.prod.{CL}", "A"),
    (f"_pg._tcp.db.prod.{CL}", "SRV"),
    (f"db-0.db.prod.{CL}", "A"),
    (f"db-1.db.prod.{CL}", "A"),
    (f"db-2.db.prod.{CL}", "A"),
    (f"api.staging.{CL}", "A"),
    (f"_http._tcp.api.staging.{CL}", "SRV"),
    (f"newsvc.prod.{CL}", "A"),
    (f"newsvc.prod.{CL}.{CL}", "A"),
    (f"web.prod.{CL}.prod.{CL}", "A"),
    (f"web.prod.{CL}.{CL}", "A"),
    (f"web.prod.{CL}.cluster.local", "A"),
    (f"www.example.com.prod.{CL}", "A"),
    (f"www.example.com.{CL}", "A"),
    (f"www.example.com.{CL}", "AAAA"),
    ("www.example.com.cluster.local", "A"),
    (f"prod.{CL}", "A"),
    (f"scratch.{CL}", "A"),
    (f"x.scratch.{CL}", "A"),
    (f"newns.{CL}", "A"),
    ("10-1-1-10.prod.pod.cluster.local", "A"),
    ("10-1-1-11.prod.pod.cluster.local", "A"),
    ("10-1-1-12.prod.pod.cluster.local", "A"),
    ("10-1-9-9.newns.pod.cluster.local", "A"),
    ("10.1.0.10.in-addr.arpa", "PTR"),
    ("99.1.0.10.in-addr.arpa", "PTR"),
    ("30.3.0.10.in-addr.arpa", "PTR"),
    ("11.1.1.10.in-addr.arpa", "PTR"),
    ("11.2.1.10.in-addr.arpa", "PTR"),
    ("12.2.1.10.in-addr.arpa", "PTR"),
    ("cluster.local", "SOA"),
    ("cluster.local", "NS"),
    ("dns-version.cluster.local", "TXT"),
    (f"nas.{ZONE}", "A"),
    (f"NAS.{ZONE}", "A"),
    (f"nas.{ZONE}", "AAAA"),
    (f"printer.{ZONE}", "A"),
    (f"camera.{ZONE}", "A"),
    (f"www.{ZONE}", "A"),
    (f"foo.apps.{ZONE}", "A"),
    (f"foo.apps.{ZONE}", "TXT"),
    (f"special.apps.{ZONE}", "A"),
    (f"apps.{ZONE}", "A"),
    (f"missing.{ZONE}", "A"),
    (ZONE, "SOA"),
    (ZONE, "MX"),
    (ZONE, "NS"),
    ("www.example.com", "A"),
    ("ads.example.net", "A"),
    ("tracker.example.net", "A"),
    (f"mail.prod.{CL}", "A"),
)
# Names answered with forwarded data (TTLs counting down); steps may add more.
FORWARDED = frozenset({"www.example.com", "ads.example.net", "tracker.example.net", f"mail.prod.{CL}"})  # fmt: skip


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _svc(ns: str, name: str, ip: str | None, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"ports": ports, **spec}
    if ip is not None:
        body["clusterIP"] = ip
        body["clusterIPs"] = [ip]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def _slice(ns: str, name: str, service: str, port: dict[str, Any], endpoints: list[tuple[str, str, str | None]]) -> dict[str, Any]:  # fmt: skip
    """endpoints: (address, pod name, hostname or None)."""
    eps = []
    for address, pod, hostname in endpoints:
        ep: dict[str, Any] = {
            "addresses": [address],
            "conditions": {"ready": True},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": ns},
        }
        if hostname:
            ep["hostname"] = hostname
        eps.append(ep)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [port],
    }


def _pod(ns: str, name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


HTTP = {"name": "http", "port": 80, "protocol": "TCP"}
PG = {"name": "pg", "port": 5432, "protocol": "TCP"}


def _objects() -> dict[str, list[dict[str, Any]]]:
    """The cluster, one manifest file per kind (a step rewrites one file)."""
    return {
        "namespaces": [_ns("default"), _ns("prod"), _ns("staging"), _ns("scratch")],
        "services": [
            _svc("prod", "web", "10.0.1.10", [HTTP]),
            _svc("prod", "db", "None", [PG]),
            _svc("staging", "api", "10.0.3.30", [HTTP]),
            _svc("prod", "mail", None, [], type="ExternalName", externalName="mail.example.com"),
        ],
        "slices": [
            _slice(
                "prod",
                "web-x1",
                "web",
                HTTP,
                [("10.1.1.10", "web-a", None), ("10.1.1.11", "web-b", None)],
            ),
            _slice(
                "prod",
                "db-x1",
                "db",
                PG,
                [("10.1.2.10", "db-0", "db-0"), ("10.1.2.11", "db-1", "db-1")],
            ),
            _slice("staging", "api-x1", "api", HTTP, [("10.1.3.30", "api-a", None)]),
        ],
        "pods": [
            _pod("prod", "web-a", "10.1.1.10"),
            _pod("prod", "web-b", "10.1.1.11"),
            _pod("prod", "db-0", "10.1.2.10"),
            _pod("prod", "db-1", "10.1.2.11"),
            _pod("staging", "api-a", "10.1.3.30"),
        ],
    }


ZONE_SOA = "@ 3600 IN SOA ns admin 2024010101 7200 1800 86400 {negative}"
ZONE_RECORDS = """\
@       IN NS    ns
ns      IN A     192.168.1.2
nas     IN A     192.168.1.11
mail    IN A     192.168.1.12
@       IN MX    10 mail
printer IN A     192.168.1.20
www     IN CNAME nas
*.apps  IN A     192.168.1.58
"""
ZONE_RECORDS_EDITED = """\
@       IN NS    ns
ns      IN A     192.168.1.2
nas     IN A     192.168.1.13
mail    IN A     192.168.1.12
@       IN MX    20 mail
camera  IN A     192.168.1.30
www     IN CNAME nas
*.apps  IN A     192.168.1.58
special.apps IN A 192.168.1.59
"""


def _zone_text(records: str, negative: int) -> str:
    return f"$ORIGIN {ZONE}.\n$TTL 300\n{ZONE_SOA.format(negative=negative)}\n{records}"


def _config_text(
    base: Path,
    *,
    ttl: int = 5,
    allow: str = "127.0.0.0/8",
    acl: str = "",
    view_zones: str = "",
    views: bool = True,
) -> str:
    lists = f"""
[[blocklists]]
name = "ads"
file = "{base / "ads.hosts"}"

[[views]]
name = "lan"
networks = ["127.0.0.0/8"]
blocklists = ["ads"]
{view_zones}
"""
    return f"""\
[server]
reload_interval = 1
loadbalance = false

[kubernetes]
pods = "verified"
ttl = {ttl}

[forward]
allow = ["{allow}"]

[acl]
rules = [{acl}]

[[zones]]
name = "{ZONE}"
file = "{base / "home.zone"}"
{lists if views else ""}"""


def _write(path: Path, text: str) -> None:
    """Replace ``path`` in one step (written beside it under another name, then renamed), so
    kdns never reads half a file; the scratch name is outside the objects directory."""
    scratch = path.parent.parent / f".{path.parent.name}-{path.name}.new"
    scratch.write_text(text)
    os.replace(scratch, path)


class Setup:
    """The files both processes serve, and the edits the steps make to them."""

    def __init__(self, base: Path, views: bool = True) -> None:
        self.base = base
        self.views = views  # [[views]] with a block list, or neither
        self.objects_dir = base / "objects"
        self.objects_dir.mkdir()
        self.objects = _objects()
        for kind in self.objects:
            self.write_objects(kind)
        self.zone = base / "home.zone"
        self.zone.write_text(_zone_text(ZONE_RECORDS, 60))
        self.hosts = base / "ads.hosts"
        self.hosts.write_text("0.0.0.0 tracker.example.net\n")
        self.config = base / "kdns.toml"
        self.config.write_text(_config_text(base, views=views))

    def write_objects(self, kind: str) -> None:
        _write(self.objects_dir / f"{kind}.yaml", yaml.safe_dump_all(self.objects[kind]))

    def args(self, upstream: str) -> tuple[str, ...]:
        return ("-c", str(self.config), "--objects", str(self.objects_dir), "--upstream", upstream)


def _name_at(wire: bytes, pos: int) -> tuple[str, int]:
    name, used = dns.name.from_wire(wire, pos)
    return name.to_text(omit_final_dot=True).lower(), pos + used


def _records(wire: bytes) -> list[tuple[str, int, int, int, int]]:
    """Every record of a reply: (owner, type, offset of its TTL, offset of its rdata, rdlength)."""
    counts = [int.from_bytes(wire[at : at + 2], "big") for at in (4, 6, 8, 10)]
    pos = 12
    for _ in range(counts[0]):
        pos = _name_at(wire, pos)[1] + 4
    out = []
    for _ in range(sum(counts[1:])):
        owner, pos = _name_at(wire, pos)
        rtype = int.from_bytes(wire[pos : pos + 2], "big")
        rdlength = int.from_bytes(wire[pos + 8 : pos + 10], "big")
        out.append((owner, rtype, pos + 4, pos + 10, rdlength))
        pos += 10 + rdlength
    if pos != len(wire):
        raise ValueError(f"{len(wire) - pos} bytes after the last record")
    return out


def _soa_owners(wire: bytes | None) -> set[str]:
    if wire is None:
        return set()
    try:
        return {owner for owner, rtype, *_ in _records(wire) if rtype == dns.rdatatype.SOA}
    except Exception:
        return set()


def _normalise(wire: bytes, serials: dict[str, int], countdown: bool) -> bytes:
    """The reply after its ID, with what legitimately differs between two processes zeroed
    (see the comment above QUESTIONS)."""
    out = bytearray(wire)
    try:
        records = _records(wire)
    except Exception as exc:  # not a message we can walk: compared as it is
        return b"unparsable: " + str(exc).encode() + b" " + wire[2:]
    for owner, rtype, ttl_at, rdata_at, rdlength in records:
        if rtype == dns.rdatatype.OPT:
            pos, end = rdata_at, rdata_at + rdlength
            while pos + 4 <= end:
                code = int.from_bytes(wire[pos : pos + 2], "big")
                length = int.from_bytes(wire[pos + 2 : pos + 4], "big")
                if code == 10 and length > 8:  # a server cookie after the client's 8 bytes
                    out[pos + 12 : pos + 4 + length] = bytes(length - 8)
                pos += 4 + length
            continue
        if countdown:
            out[ttl_at : ttl_at + 4] = bytes(4)
        if rtype == dns.rdatatype.SOA:
            pos = _name_at(wire, _name_at(wire, rdata_at)[1])[1]  # after mname and rname
            if int.from_bytes(wire[pos : pos + 4], "big") == serials.get(owner):
                out[pos : pos + 4] = bytes(4)
    return bytes(out[2:])


def _show(wire: bytes | None) -> str:
    if wire is None:
        return "(no reply)"
    try:
        return dns.message.from_wire(wire).to_text()
    except Exception as exc:
        return f"(unparsable: {exc}) {wire.hex()}"


class Differential:
    """Rounds of the same datagrams against both processes; mismatches kept for the report."""

    def __init__(self, standard: Kdns, killer: Kdns) -> None:
        self.standard, self.killer = standard, killer
        self.forwarded = set(FORWARDED)
        self.questions: list[tuple[str, str, str]] = []
        self.wires: list[bytes] = []
        for name, rdtype in QUESTIONS:
            for label, kw in VARIANTS:
                query = dns.message.make_query(name, rdtype, id=0, **kw)
                self.questions.append((name, rdtype, label))
                self.wires.append(query.to_wire())
        self.mismatches: list[str] = []
        self.first: dict[tuple[str, str, str], str] = {}  # question -> first failing round
        self.rounds = 0
        self.resent = 0
        self.hits: list[tuple[str, float]] = []
        self.previous: list[bytes | None] = []  # standard mode's replies, normalised
        self.changed: list[tuple[str, int]] = []  # (round, standard replies that changed)

    def _serials(self, proc: Kdns, zones: set[str]) -> dict[str, int]:
        """Each zone's serial as the process serves it now (TCP: standard mode in both)."""
        serials = {}
        for zone in zones:
            reply = proc.query(zone, "SOA", tcp=True)
            for rrset in reply.answer:
                if rrset.rdtype == dns.rdatatype.SOA and rrset.name.to_text(True).lower() == zone:
                    serials[zone] = rrset[0].serial
        return serials

    def round(self, label: str) -> None:
        self.rounds += 1
        hits_before = _cache_hits(self.killer)
        got_standard, resent_s = udp_blast(self.standard.port, self.wires)
        got_killer, resent_k = udp_blast(self.killer.port, self.wires)
        self.hits.append((label, _cache_hits(self.killer) - hits_before))
        self.resent += resent_s + resent_k
        zones: set[str] = set()
        for wire in (*got_standard, *got_killer):
            zones |= _soa_owners(wire)
        serials_s = self._serials(self.standard, zones)
        serials_k = self._serials(self.killer, zones)
        normalised: list[bytes | None] = []
        for question, a, b in zip(self.questions, got_standard, got_killer, strict=True):
            # Forwarded replies (no AA: not kdns's own data) count down in each process.
            countdown = question[0].lower() in self.forwarded or (
                a is not None and len(a) > 2 and not a[2] & 0x04
            )
            mine = None if a is None else _normalise(a, serials_s, countdown)
            normalised.append(mine)
            same = (
                mine is not None and b is not None and mine == _normalise(b, serials_k, countdown)
            )
            if not same:
                self.first.setdefault(question, label)
                self.mismatches.append(
                    f"--- after {label!r}: {question[0]} {question[1]} ({question[2]})\n"
                    f"standard:\n{_show(a)}\nkiller:\n{_show(b)}"
                )
        if self.previous:
            moved = sum(x != y for x, y in zip(self.previous, normalised, strict=True))
            self.changed.append((label, moved))
        self.previous = normalised

    def report(self) -> str:
        by_round: dict[str, list[str]] = {}
        for (name, rdtype, variant), label in self.first.items():
            by_round.setdefault(label, []).append(f"{name} {rdtype} ({variant})")
        lines = [f"{len(self.mismatches)} replies differ; first seen after:"]
        for label, questions in by_round.items():
            lines.append(f"  {label}: {len(questions)} questions: {', '.join(questions[:12])}")
        return "\n".join(lines) + "\n\n" + "\n\n".join(self.mismatches[:6])


def _cache_hits(proc: Kdns) -> float:
    """Replies killer mode sent from a cache: its wire cache's, and the reply memo's (which
    the UDP loop asks first in both modes: registry answers while no stage judges the
    client)."""
    _, text = proc.get("metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("kdns_killer_wirecache_hits_total ", 'kdns_cache_hits_total{cache="replies"}')):  # fmt: skip
            total += float(line.split()[-1])
    return total


def _count(proc: Kdns, text: str) -> int:
    return sum(text in line for line in list(proc.lines))


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not applied within {timeout:g}s: {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _pair(base: Path, views: bool = True) -> Iterator[tuple[Setup, Differential]]:
    setup = Setup(base, views)
    with (
        DnsUpstream(UPSTREAM_RECORDS, ttl=300) as up,
        Kdns(*setup.args(up.upstream("udp"))) as standard,
        Kdns(*setup.args(up.upstream("udp")), "--killer") as killer,
    ):
        diff = Differential(standard, killer)
        diff.round("start")
        diff.round("start, again")
        yield setup, diff


def _step(diff: Differential, label: str, change: Callable[[], None], applied: Callable[[Kdns], bool]) -> None:  # fmt: skip
    """Make one change, wait until both processes applied it, compare twice."""
    change()
    for proc in (diff.standard, diff.killer):
        who = "killer" if proc is diff.killer else "standard"
        _wait(f"{label} ({who})", lambda proc=proc: applied(proc))  # type: ignore[misc]
    diff.round(label)
    diff.round(f"{label}, again")


def _logged(diff: Differential, text: str) -> Callable[[Kdns], bool]:
    """'applied' once each process logged ``text`` once more than it had so far."""
    before = {id(p): _count(p, text) for p in (diff.standard, diff.killer)}
    return lambda proc: _count(proc, text) > before[id(proc)]


def _check(diff: Differential) -> None:
    # Every change was visible: it changed some of standard mode's replies (else its round
    # compared nothing new). (A repeated round may change some too: a forwarded name's first
    # reply carries the upstream's OPT payload size, later ones kdns's own.)
    for label, moved in diff.changed:
        if not label.endswith("again"):
            assert moved > 0, (label, diff.changed)
    # The caches answered: a repeated round is largely hits (otherwise nothing was
    # compared). A third, not a half: negative replies are stored on their second miss (the
    # repeated round stores them; the next step's first round replays them), and a step that
    # refuses names (forward.allow) has fewer cacheable replies.
    for label, hits in diff.hits:
        if label.endswith("again"):
            assert hits >= len(diff.wires) // 3, (label, hits, diff.hits)
    assert not diff.mismatches, diff.report()


def test_killer_replies_byte_for_byte_across_object_changes(tmp_path: Path) -> None:
    """Killer mode issue, Build 3: Service add/edit/delete, EndpointSlice edit, Pod change,
    Namespace add and remove, each followed by the same datagrams as before it."""
    with _pair(tmp_path) as (setup, diff):
        objects = setup.objects

        def edit(kind: str, change: Callable[[list[dict[str, Any]]], None]) -> Callable[[], None]:  # fmt: skip
            def run() -> None:
                change(objects[kind])
                setup.write_objects(kind)

            return run

        def by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
            return next(o for o in items if o["metadata"]["name"] == name)

        def move_web(items: list[dict[str, Any]]) -> None:
            spec = by_name(items, "web")["spec"]
            spec["clusterIP"], spec["clusterIPs"] = "10.0.1.99", ["10.0.1.99"]

        def move_db_1(items: list[dict[str, Any]]) -> None:
            endpoints = by_name(items, "db-x1")["endpoints"]
            endpoints[1]["addresses"] = ["10.1.2.12"]
            endpoints.append({**endpoints[0], "addresses": ["10.1.2.13"], "hostname": "db-2"})

        def move_web_b(items: list[dict[str, Any]]) -> None:
            status = by_name(items, "web-b")["status"]
            status["podIP"], status["podIPs"] = "10.1.1.12", [{"ip": "10.1.1.12"}]

        reloaded = "manifests changed: reloaded"
        steps: list[tuple[str, Callable[[], None]]] = [
            ("Service edit (ClusterIP)", edit("services", move_web)),
            (
                "Service add",
                edit("services", lambda s: s.append(_svc("prod", "newsvc", "10.0.1.50", [HTTP]))),
            ),
            ("Service delete", edit("services", lambda s: s.remove(by_name(s, "api")))),
            ("EndpointSlice edit", edit("slices", move_db_1)),
            ("Pod change (IP)", edit("pods", move_web_b)),
            ("Namespace add", edit("namespaces", lambda s: s.append(_ns("newns")))),
            ("Namespace remove", edit("namespaces", lambda s: s.remove(by_name(s, "scratch")))),
        ]
        for label, change in steps:
            _step(diff, label, change, _logged(diff, reloaded))
        _check(diff)


def test_killer_replies_byte_for_byte_across_zone_and_blocklist_reloads(tmp_path: Path) -> None:  # fmt: skip
    """Killer mode issue, Build 3: a local zone file's records edited, then only its SOA
    (negative TTL 60 -> 30), then the block list file; each followed by the same datagrams."""
    with _pair(tmp_path) as (setup, diff):
        reloaded = f"zone {ZONE} reloaded"
        _step(
            diff,
            "zone records edit",
            lambda: _write(setup.zone, _zone_text(ZONE_RECORDS_EDITED, 60)),
            _logged(diff, reloaded),
        )
        _step(
            diff,
            "zone SOA only (negative TTL 60 -> 30)",
            lambda: _write(setup.zone, _zone_text(ZONE_RECORDS_EDITED, 30)),
            _logged(diff, reloaded),
        )

        def blocked(proc: Kdns) -> bool:  # the new list is in force (TCP: standard mode)
            reply = proc.query("ads.example.net", "A", tcp=True)
            return any(rr.to_text() == "0.0.0.0" for rrset in reply.answer for rr in rrset)

        _step(
            diff,
            "block list reload",
            lambda: _write(setup.hosts, "0.0.0.0 ads.example.net\n0.0.0.0 nas.home.example\n"),
            blocked,
        )
        _check(diff)


@pytest.mark.parametrize("views", [True, False], ids=["with-views", "without-views"])
def test_killer_replies_byte_for_byte_across_config_reloads(tmp_path: Path, views: bool) -> None:
    """Killer mode issue, Build 3: SIGHUP reloads changing the TTL, the ACL, the views and
    forward.allow; each followed by the same datagrams. Also without [[views]]: a reload makes
    new View objects, which alone keeps cached replies from being served (a hit must be of
    the client's view), so only without views do the ACL and forward.allow steps show what
    the reload's own invalidation does."""
    with _pair(tmp_path, views) as (setup, diff):
        settings: dict[str, str | int | bool] = {"views": views}

        def reload(**change: str | int | bool) -> Callable[[], None]:
            def run() -> None:
                settings.update(change)
                setup.config.write_text(_config_text(setup.base, **settings))  # type: ignore[arg-type]
                for proc in (diff.standard, diff.killer):
                    assert proc.proc is not None
                    proc.proc.send_signal(signal.SIGHUP)

            return run

        reloaded = "reloaded ("
        _step(diff, "config: ttl 5 -> 7", reload(ttl=7), _logged(diff, reloaded))
        acl = f'{{action = "block", net = ["127.0.0.0/8"], zone = "staging.{CL}"}}'
        _step(diff, "config: acl blocks staging", reload(acl=acl), _logged(diff, reloaded))
        if views:  # the view stops serving the local zone: its names go to forwarding
            zones = 'zones = ["cluster.local", "in-addr.arpa"]'
            _step(
                diff,
                "config: view without the local zone",
                reload(view_zones=zones),
                _logged(diff, reloaded),
            )
        _step(
            diff,
            "config: forward.allow excludes us",
            reload(allow="10.0.0.0/8"),
            _logged(diff, reloaded),
        )
        _check(diff)


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
    with Kdns(
        "--objects", str(CLUSTER), "--no-forward", "--killer", "--metrics-compat", "coredns"
    ) as proc:
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
