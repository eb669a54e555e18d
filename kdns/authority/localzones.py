"""Local zones (``[[zones]]``, ``--zone-file``): authoritative data kdns holds itself.

A local zone's records come from the TOML (``records = ["www 300 A 192.168.1.10", ...]``, zone
file syntax, names relative to the zone) or from an RFC 1035 zone file (``$ORIGIN``, ``$TTL``,
relative names, ``@``, ``$INCLUDE``). Both are read by dnspython's zone reader: one parser, the
one BIND users' files were written for, never a hand-written one. dnspython is imported only
when a local zone is configured.

The result is ``ZoneData``: name -> type -> rdatas in canonical wire form (names lowercased, as
the registry holds every name), each RRset's TTL, and the apex SOA/NS when the data has them.
The registry serves it as the contribution of one owner, ("local", "", zone): answers are
pre-rendered like a Service's, and wildcards (``*.home.example.com``) follow RFC 4592 in the
resolver.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kdns.dns import names
from kdns.dns.records import CNAME, NS, SOA, rdata_address

# Types a local zone cannot serve correctly: DNSSEC records kdns does not sign or chain
# (RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY, DS, CDS, CDNSKEY) and DNAME (no name rewriting).
UNSERVED = {39: "DNAME", 43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3",
            51: "NSEC3PARAM", 59: "CDS", 60: "CDNSKEY"}  # fmt: skip
DEFAULT_TTL = 300  # records without a TTL, when neither the zone's ``ttl`` nor $TTL says
_WHERE = re.compile(r"^<string>:\d+: ")

Soa = tuple[bytes, bytes, int, int, int, int, int, int]  # mname, rname, serial, .., minimum, ttl


class LocalZoneError(ValueError):
    """Data a local zone cannot hold. ``index``: the offending entry of ``records`` (0-based),
    None for a zone file (the message names file and line)."""

    def __init__(self, problem: str, index: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.index = index


class ZoneData:
    """One local zone's records, ready for the registry."""

    __slots__ = ("name", "records", "ttls", "soa", "own_ns")

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[bytes, dict[int, list[bytes]]] = {}  # wire name -> type -> rdatas
        self.ttls: dict[bytes, dict[int, int]] = {}  # wire name -> type -> TTL
        self.soa: Soa | None = None
        self.own_ns = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ZoneData):
            return NotImplemented
        return (self.name, self.records, self.ttls, self.soa) == (
            other.name,
            other.records,
            other.ttls,
            other.soa,
        )

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return sum(len(rdatas) for types in self.records.values() for rdatas in types.values())

    def add(self, owner: bytes, rtype: int, ttl: int, rdata: bytes) -> None:
        types = self.records.setdefault(owner, {})
        if CNAME in types and rtype != CNAME or rtype == CNAME and set(types) - {CNAME}:
            raise LocalZoneError(
                f"{names.to_text(owner)}: a CNAME cannot share its name with other records "
                "(RFC 1034 3.6.2)"
            )
        rdatas = types.setdefault(rtype, [])
        if rtype == CNAME and rdatas and rdata not in rdatas:
            raise LocalZoneError(f"{names.to_text(owner)}: more than one CNAME")
        if rdata not in rdatas:
            rdatas.append(rdata)
        ttls = self.ttls.setdefault(owner, {})
        # RFC 2181 5.2: the TTLs of one RRset should agree; when they do not, the lowest wins.
        ttls[rtype] = min(ttls.get(rtype, ttl), ttl)


def load(name: str, file: str | None, records: Sequence[str], ttl: int) -> ZoneData:
    """A zone's data from its ``file`` or its ``records``; raises ``LocalZoneError``."""
    if file is not None:
        return from_file(name, file, ttl)
    return from_records(name, records, ttl)


def from_records(name: str, records: Sequence[str], ttl: int = DEFAULT_TTL) -> ZoneData:
    """Records as zone-file lines relative to the zone (``www 300 A 192.168.1.10``, ``@ MX 10
    mail``, ``* A 192.168.1.58``); an error names the record's index."""
    import dns.exception
    import dns.zone

    data = ZoneData(name)
    for index, line in enumerate(records):
        if not isinstance(line, str) or not line.strip():
            raise LocalZoneError(f"expected a record like 'www 300 A 192.168.1.10', got {line!r}", index)  # fmt: skip
        if line.lstrip().startswith("$") or "\n" in line:
            raise LocalZoneError("one record per string (no $ directives, no newlines)", index)
        try:
            zone = dns.zone.from_text(f"$TTL {ttl}\n{line}\n", origin=name, relativize=False, check_origin=False)  # fmt: skip
            if not zone.nodes:
                raise LocalZoneError(f"{line.split()[0]!r} is not a name in {name}", index)
            _absorb(data, zone, name)
        except LocalZoneError as exc:
            raise LocalZoneError(exc.problem, index) from None
        except (dns.exception.DNSException, ValueError, KeyError) as exc:
            problem = _WHERE.sub("", str(exc)) or type(exc).__name__
            raise LocalZoneError(f"{line.strip()!r}: {problem}", index) from None
    return data


def from_file(name: str, path: str, ttl: int = DEFAULT_TTL) -> ZoneData:
    """An RFC 1035 zone file whose origin is the zone (``$ORIGIN`` may move it below)."""
    import dns.exception
    import dns.zone

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise LocalZoneError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise LocalZoneError(f"{path}: not UTF-8 text ({exc.reason})") from None
    shift = 0
    if not re.search(r"^\$TTL\b", text, re.M):
        text = f"$TTL {ttl}\n{text}"  # no $TTL of its own: the zone's ``ttl``
        shift = 1
    data = ZoneData(name)
    try:
        zone = dns.zone.from_text(
            text, origin=name, relativize=False, check_origin=False, filename=path
        )
        _absorb(data, zone, name)
    except LocalZoneError as exc:
        raise LocalZoneError(f"{path}: {exc.problem}") from None
    except (dns.exception.DNSException, ValueError, KeyError) as exc:
        message = str(exc)
        if message.startswith(f"{path}:"):  # "PATH:LINE: problem", the line as in the file
            line, _, rest = message[len(path) + 1 :].partition(":")
            if line.isdigit():
                message = f"{path}:{int(line) - shift}:{rest}"
        else:
            message = f"{path}: {message or type(exc).__name__}"
        raise LocalZoneError(message) from None
    return data


def _absorb(data: ZoneData, zone: Any, name: str) -> None:
    """Every RRset of a parsed dnspython zone into ``data``."""
    apex = names.to_wire(name)
    for owner_name, node in zone.nodes.items():
        owner = owner_name.canonicalize().to_wire()
        for rdataset in node.rdatasets:
            rtype = int(rdataset.rdtype)
            where = names.to_text(owner)
            if int(rdataset.rdclass) != 1:
                raise LocalZoneError(f"{where}: only class IN is served")
            if rtype in UNSERVED:
                raise LocalZoneError(f"{where}: {UNSERVED[rtype]} records are not served")
            if rtype in (SOA, NS) and owner != apex:
                what = "a delegation (NS below the apex)" if rtype == NS else "an SOA below the apex"  # fmt: skip
                raise LocalZoneError(f"{where}: {what} is not supported")
            if rtype == SOA:
                soa = rdataset[0]
                data.soa = (
                    soa.mname.canonicalize().to_wire(),
                    soa.rname.canonicalize().to_wire(),
                    int(soa.serial),
                    int(soa.refresh),
                    int(soa.retry),
                    int(soa.expire),
                    int(soa.minimum),
                    int(rdataset.ttl),
                )
                continue
            if rtype == NS:
                data.own_ns = True
            for rdata in rdataset:
                data.add(owner, rtype, int(rdataset.ttl), rdata.to_wire(canonicalize=True))


def load_hosts(name: str, path: str, ttl: int = DEFAULT_TTL) -> ZoneData:
    """A hosts file (``/etc/hosts`` syntax, as CoreDNS's ``hosts`` plugin and Pi-hole's custom
    lists read it): ``IP NAME [ALIAS...]`` per line, ``#`` comments. Each name gets an A or
    AAAA record with the zone's ``ttl``; a name without a dot is relative to the zone, names
    outside the zone are skipped (as CoreDNS's hosts plugin ignores names outside its zones).
    A line that is not ``IP NAME...`` is an error naming the file and line."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise LocalZoneError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise LocalZoneError(f"{path}: not UTF-8 text ({exc.reason})") from None
    apex = names.to_wire(name)
    data = ZoneData(name)
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            rtype, packed = rdata_address(fields[0].split("%", 1)[0])
        except ValueError:
            raise LocalZoneError(f"{path}:{number}: {fields[0]!r} is not an IP address") from None
        if len(fields) < 2:
            raise LocalZoneError(f"{path}:{number}: expected 'IP NAME [ALIAS...]'")
        for host in fields[1:]:
            text = host.lower().rstrip(".")
            try:
                owner = names.to_wire(text if "." in text else f"{text}.{name}")
            except ValueError:
                raise LocalZoneError(f"{path}:{number}: {host!r} is not a DNS name") from None
            if names.is_subdomain(owner, apex):
                data.add(owner, rtype, ttl, packed)
    return data
