"""Zone transfers: the CoreDNS ``transfer`` plugin for the zones kdns serves.

AXFR (RFC 5936) over TCP: the zone's SOA, every RR of every name in the zone, the SOA again.
IXFR (RFC 1995) is answered from the same data: a client whose serial is current gets the lone
SOA (RFC 1995 2, CoreDNS kubernetes ``Transfer``), anyone else a full transfer in AXFR form,
which RFC 1995 4 allows ("the server may ... reply with a full zone transfer"). kdns keeps no
journal: Kubernetes state is the only history.

What a transfer holds is exactly what queries see: ``registry.records(name)`` for every name
whose most specific zone is the transferred one (names of a more specific zone we also serve are
left to that zone's transfer), lazy names included (``records`` merges their owners and skips the
lazy marker), empty non-terminals implied by their descendants. TTLs are the registry's: SOA
min(ttl, 300), the ``dns-version`` TXT 28800, everything else ``registry.ttl``.

Messages (RFC 5936 2.2): the client's ID, QR and AA set, RD copied, RCODE NOERROR, and the
client's question echoed in *every* message. RFC 5936 2.2.1 requires it in the first and allows
it in the rest; miekg/dns (``Transfer.Out`` calls ``SetReply`` per envelope), hence CoreDNS, sends
it in all of them, and doing the same lets each message point owner names at the zone apex in
the question (offset 12), so ``web.default.svc.cluster.local`` costs 2 bytes of suffix. RDATA
names stay uncompressed (RFC 2782 forbids compressing SRV targets; stored rdata is reused as is).
A message is cut before the RR that would take it past ``max_size`` (default 16 KiB; RFC 5936
2.2 lets the server pick, TCP allows up to 64 KiB).

The whole transfer is built in one synchronous call, so it is a consistent snapshot: the event
loop cannot apply a watch event half way through (RFC 5936 6: a transfer must reflect one
version of the zone).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from kdns.dns import names
from kdns.dns.records import (
    AXFR,
    CLASS_IN,
    FORMERR,
    IXFR,
    NOERROR,
    REFUSED,
    SERVFAIL,
    SOA,
    TXT,
)
from kdns.dns.registry import DNS_VERSION_TTL, Registry
from kdns.dns.zones import Zone

NOTAUTH = 9  # RFC 2136 / RFC 5936 2.2.1: not authoritative for the zone

DEFAULT_MAX_SIZE = 16384
_MIN_SIZE = 512
_MAX_SIZE = 65535  # RFC 1035 4.2.2: two-byte TCP length prefix
_HEADER = struct.Struct("!2sBBHHHH")  # id, flags1, flags2, qd, an, ns, ar
_RR_FIXED = struct.Struct("!HHIH")
_APEX_POINTER = b"\xc0\x0c"  # the question name, at offset 12 of every message

# (owner, type, ttl, rdata): one resource record before packing.
Record = tuple[bytes, int, int, bytes]


# ----------------------------------------------------------------------- zone contents


def zone_names(registry: Registry, zone: Zone) -> list[bytes]:
    """Names with records whose most specific zone is ``zone``, in canonical order.

    RFC 4034 6.1 order (labels compared right to left), so the apex comes first and a
    transfer's bytes depend on the zone's contents only, not on the order objects arrived.
    Walks ``registry._names`` (read only) until the Registry grows a public name iterator.
    """
    find = registry.zones.find
    apex = zone.apex
    inside = [
        name
        for name in registry._names  # read only; see zone_names()
        if name.endswith(apex) and find(name) is zone
    ]
    inside.sort(key=_canonical_key)
    return inside


def _canonical_key(name: bytes) -> tuple[bytes, ...]:
    labels = names.split(name)
    labels.reverse()
    return tuple(labels)


def zone_records(registry: Registry, zone: Zone) -> list[Record]:
    """Every RR of ``zone`` but its SOA: apex RRsets first, then names in canonical order."""
    dns_version = names.to_wire("dns-version." + registry.cluster.text)
    ttl = registry.ttl
    out: list[Record] = []
    for name in zone_names(registry, zone):
        for rtype, rdatas in registry.records(name).items():
            if rtype == SOA:
                continue  # sent first and last by the caller
            rr_ttl = DNS_VERSION_TTL if (rtype == TXT and name == dns_version) else ttl
            out.extend((name, rtype, rr_ttl, rdata) for rdata in rdatas)
    return out


def soa_record(registry: Registry, zone: Zone) -> Record:
    """The zone's SOA at its current serial, TTL min(ttl, 300) (CoreDNS backend_lookup.go)."""
    return (zone.apex, SOA, min(registry.ttl, 300), zone.soa_rdata)


def serial_of(zone: Zone) -> int:
    return int(zone.serial) & 0xFFFFFFFF


def serial_up_to_date(client: int, ours: int) -> bool:
    """``client`` is the same as or newer than ``ours`` in RFC 1982 serial arithmetic.

    The one undefined comparison (distance exactly 2**31) counts as "not newer": the client
    then gets a full transfer, which is always safe.
    """
    distance = (client - ours) & 0xFFFFFFFF
    return distance < 0x80000000


# ----------------------------------------------------------------------- packing


def _flags(rd: bool, aa: bool) -> int:
    return 0x80 | (0x04 if aa else 0) | (0x01 if rd else 0)


def _pack_messages(
    records: Iterable[Record],
    apex: bytes,
    query_id: bytes,
    question: bytes,
    max_size: int,
    rd: bool,
) -> list[bytes]:
    max_size = min(max(max_size, _MIN_SIZE), _MAX_SIZE)
    # Owners compress to the apex in the question when the question names the apex (as it
    # must, to get here); letter case is the client's, which DNS ignores (RFC 4343).
    compress = len(question) == len(apex) + 4 and question[: len(apex)].lower() == apex
    cut = len(apex)
    flags1 = _flags(rd, aa=True)
    base = 12 + len(question)
    messages: list[bytes] = []
    parts: list[bytes] = []
    size = base

    def flush() -> None:
        head = _HEADER.pack(query_id, flags1, NOERROR, 1, len(parts), 0, 0)
        messages.append(head + question + b"".join(parts))

    for owner, rtype, ttl, rdata in records:
        if compress:
            owner = owner[: len(owner) - cut] + _APEX_POINTER
        wire = owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata
        if parts and size + len(wire) > max_size:
            flush()
            parts = []
            size = base
        parts.append(wire)
        size += len(wire)
    if parts:
        flush()
    return messages


def axfr_messages(
    registry: Registry,
    zone_apex_wire: bytes,
    query_id: bytes,
    question: bytes,
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    rd: bool = False,
) -> list[bytes]:
    """The full transfer of a zone as DNS messages (without TCP length prefixes).

    ``zone_apex_wire``: the lowercased wire name of one of the registry's zone apexes
    (``KeyError`` otherwise); ``query_id``: the client's two ID bytes; ``question``: the
    client's question section as received (name + type + class), echoed in every message.
    """
    zone = registry.zones.by_apex[zone_apex_wire]
    soa = soa_record(registry, zone)
    records = [soa, *zone_records(registry, zone), soa]  # RFC 5936 2.2: SOA first and last
    return _pack_messages(records, zone.apex, query_id, question, max_size, rd)


def transfer_messages(
    registry: Registry,
    zone_apex_wire: bytes,
    query_id: bytes,
    question: bytes,
    client_serial: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    rd: bool = False,
) -> list[bytes]:
    """AXFR or IXFR (the type is read from ``question``) for a zone.

    IXFR with ``client_serial`` (the SOA serial from the query's authority section) the same as
    or newer than ours: one message holding our SOA (RFC 1995 2, "up to date"). Any other IXFR
    is answered as AXFR (RFC 1995 4), which an IXFR client recognises because the second RR is
    not the SOA (RFC 1995 4, dnspython ``dns.xfr.Inbound``).
    """
    qtype = struct.unpack_from("!H", question, len(question) - 4)[0]
    if qtype == IXFR and client_serial is not None:
        zone = registry.zones.by_apex[zone_apex_wire]
        if serial_up_to_date(client_serial, serial_of(zone)):
            soa = soa_record(registry, zone)
            return _pack_messages([soa], zone.apex, query_id, question, max_size, rd)
    return axfr_messages(registry, zone_apex_wire, query_id, question, max_size, rd=rd)


# ----------------------------------------------------------------------- policy


class TransferPolicy:
    """Who may transfer (CoreDNS ``transfer { to ... }``): default deny.

    ``allow`` holds networks (``10.0.0.0/8``), single addresses (``10.0.0.53``, a /32) or
    ``*`` (anyone, as CoreDNS ``to *``). IPv4-mapped IPv6 clients (``::ffff:10.0.0.53``, seen
    on dual-stack sockets) match IPv4 entries.
    """

    __slots__ = ("networks", "any")

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.any = False
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            text = str(entry).strip()
            if text == "*":
                self.any = True
                continue
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"transfer.allow: {text!r} is not a network or address") from None
        self.networks = tuple(nets)

    def allowed(self, client_ip: str) -> bool:
        if self.any:
            return True
        if not self.networks:
            return False
        address = _client_address(client_ip)
        if address is None:
            return False
        return any(address in net for net in self.networks)

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __repr__(self) -> str:
        allow = ["*"] if self.any else []
        allow += [str(n) for n in self.networks]
        return f"TransferPolicy({allow!r})"


def _client_address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    return address


# ----------------------------------------------------------------------- a whole request


def error_message(query: bytes, qend: int, rcode: int) -> bytes:
    """An error reply echoing the question (RFC 5936 2.2.1: error responses copy it too)."""
    flags1 = _flags(bool(query[2] & 0x01), aa=False)
    question = query[12:qend]
    return _HEADER.pack(query[:2], flags1, rcode, 1 if question else 0, 0, 0, 0) + question


def _ixfr_serial(query: bytes, pos: int) -> int | None:
    """The serial of the SOA in an IXFR query's authority section (RFC 1995 3), else None."""
    ancount, nscount = struct.unpack_from("!HH", query, 6)
    if ancount != 0 or nscount != 1:
        return None
    n = len(query)
    hops = 0
    while True:  # the owner: the zone name, often a pointer to the question
        if pos >= n:
            return None
        length = query[pos]
        if length & 0xC0 == 0xC0:
            pos += 2
            break
        if length > 63:
            return None
        pos += length + 1
        if length == 0:
            break
        hops += 1
        if hops > 127:
            return None
    if pos + 10 > n:
        return None
    rtype, _rclass, _ttl, rdlength = _RR_FIXED.unpack_from(query, pos)
    end = pos + 10 + rdlength
    if rtype != SOA or end > n or rdlength < 22:
        return None
    # The serial is the first of the five 32-bit fields that end the RDATA, whatever the
    # (possibly compressed) MNAME and RNAME before them.
    return int(struct.unpack_from("!I", query, end - 20)[0])


def respond_transfer(
    registry: Registry,
    policy: TransferPolicy,
    query: bytes,
    client_ip: str,
    *,
    tcp: bool,
    max_size: int = DEFAULT_MAX_SIZE,
) -> list[bytes]:
    """Every reply message to an AXFR/IXFR query, as a TCP server would write them.

    The checks, in CoreDNS ``transfer`` ServeDNS order where it has one:
    - not TCP: REFUSED (CoreDNS transfer; RFC 5936 4.2: AXFR is TCP only);
    - client not allowed by ``policy``: REFUSED (RFC 5936 2.2.1, CoreDNS ``to``);
    - a class other than IN: REFUSED (we only hold IN data);
    - name not one of our zone apexes: NOTAUTH inside one of our zones (RFC 5936 2.2.1),
      REFUSED outside them (as the resolver answers names that are not ours);
    - IXFR without exactly one SOA in authority: FORMERR (RFC 1995 3 requires it; CoreDNS
      answers SERVFAIL, but the fault is the client's and SERVFAIL invites retries);
    - before the first full sync: SERVFAIL (DESIGN: never hand out a half-empty zone);
    - otherwise ``transfer_messages``.
    Malformed queries get FORMERR; a query shorter than a header gets nothing (``[]``).
    """
    n = len(query)
    if n < 12:
        return []
    pos = 12
    while True:
        if pos >= n:
            return [error_message(query, 12, FORMERR)]
        length = query[pos]
        if length == 0:
            break
        if length > 63:
            return [error_message(query, 12, FORMERR)]
        pos += length + 1
    qend = pos + 5
    if qend > n or query[4:6] != b"\x00\x01":
        return [error_message(query, 12, FORMERR)]
    qname = query[12 : pos + 1].lower()
    qtype, qclass = struct.unpack_from("!HH", query, pos + 1)
    if qtype not in (AXFR, IXFR):
        raise ValueError(f"not a zone transfer query (type {qtype})")
    if not tcp or not policy.allowed(client_ip) or qclass != CLASS_IN:
        return [error_message(query, qend, REFUSED)]
    if qname not in registry.zones.by_apex:
        inside = registry.zones.find(qname) is not None
        return [error_message(query, qend, NOTAUTH if inside else REFUSED)]
    client_serial = None
    if qtype == IXFR:
        client_serial = _ixfr_serial(query, qend)
        if client_serial is None:
            return [error_message(query, qend, FORMERR)]
    if not registry.synced:
        return [error_message(query, qend, SERVFAIL)]
    return transfer_messages(
        registry,
        qname,
        query[:2],
        query[12:qend],
        client_serial,
        max_size,
        rd=bool(query[2] & 0x01),
    )
