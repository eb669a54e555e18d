"""Zone transfers: the CoreDNS ``transfer`` plugin for the zones kdns serves.

AXFR (RFC 5936) over TCP: the zone's SOA, every RR of every name in the zone, the SOA again.
IXFR (RFC 1995) is answered from the same data: a client whose serial is current gets the lone
SOA (RFC 1995 2, CoreDNS kubernetes ``Transfer``), anyone else a full transfer in AXFR form,
which RFC 1995 4 allows ("the server may ... reply with a full zone transfer"). kdns keeps no
journal: Kubernetes state is the only history.

What a transfer holds is exactly what queries see: ``registry.records(name)`` for every name
whose most specific zone is the transferred one (names of a more specific zone we also serve are
left to that zone's transfer), lazy names included (``records`` merges their owners and skips the
lazy marker), empty non-terminals implied by their descendants. TTLs are the registry's
(``ttl_of``): SOA min(ttl, 300), the ``dns-version`` TXT 28800, a gateway name's own (``[gateway]
ttl``, a ``ttl`` annotation), a local zone's RRsets their own, everything else ``registry.ttl``.
A client in a ``[[views]]`` entry with gateway class filters of its own gets the gateway zone
as that view's queries see it: the names its overlay answers otherwise (another controller's
address, a name only its classes claim, a name none of them claims) as the view answers them
(kdns.authority.gateway.ViewAnswers).

Messages (RFC 5936 2.2): the client's ID, QR and AA set, RD copied, RCODE NOERROR, and the
client's question echoed in *every* message. RFC 5936 2.2.1 requires it in the first and allows
it in the rest; miekg/dns (``Transfer.Out`` calls ``SetReply`` per envelope), hence CoreDNS, sends
it in all of them. Each message's first owner name is written in full and the others point at
the apex inside it (RFC 1035 4.1.4), so ``web.default.svc.cluster.local`` costs 2 bytes of
suffix and names keep the zone's own (lowercase) spelling, whatever case the client asked in.
RDATA names stay uncompressed (RFC 2782 forbids compressing SRV targets; stored rdata is reused
as is).
A message is cut before the RR that would take it past ``max_size`` (default 16 KiB; RFC 5936
2.2 lets the server pick, TCP allows up to 64 KiB).

The whole transfer is built in one synchronous call, so it is a consistent snapshot: the event
loop cannot apply a watch event half way through (RFC 5936 6: a transfer must reflect one
version of the zone).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, Protocol

from kdns.authority.registry import Registry
from kdns.authority.zones import GATEWAY, Zone
from kdns.dns import names
from kdns.dns.networks import Networks
from kdns.dns.records import (
    AXFR,
    CLASS_IN,
    FORMERR,
    IXFR,
    NOERROR,
    REFUSED,
    SERVFAIL,
    SOA,
)

NOTAUTH = 9  # RFC 2136 / RFC 5936 2.2.1: not authoritative for the zone

DEFAULT_MAX_SIZE = 16384
_MIN_SIZE = 512
_MAX_SIZE = 65535  # RFC 1035 4.2.2: two-byte TCP length prefix
_HEADER = struct.Struct("!2sBBHHHH")  # id, flags1, flags2, qd, an, ns, ar
_RR_FIXED = struct.Struct("!HHIH")
_TYPE_CLASS_TTL = struct.Struct("!HHI")
_U16 = struct.Struct("!H")

# (owner, type, ttl, rdata): one resource record.
Record = tuple[bytes, int, int, bytes]
# (owner, type, ttl, rdatas): one RRset, the unit the packer walks.
RRset = tuple[bytes, int, int, list[bytes]]


# ----------------------------------------------------------------------- zone contents


def zone_names(registry: Registry, zone: Zone) -> list[bytes]:
    """Names with records whose most specific zone is ``zone``: the apex first, then every
    name in the order of its reversed wire bytes.

    That order puts a name before its descendants and siblings side by side (the reversed apex
    is a prefix of every reversed name below it), and makes a transfer's bytes depend on the
    zone's contents only, not on the order objects arrived. It is not quite RFC 4034 6.1
    canonical order (label contents compare reversed too), which nothing in a transfer needs,
    and it sorts in C: splitting 100k names into labels would stall the event loop.

    A name ends with the apex bytes only at a label boundary: registry names are built from
    Kubernetes names, IPs and ``_port._proto`` labels, which never hold a byte below 0x2d, so
    a label-length byte cannot appear inside a label. Names under a more specific zone we also
    serve (a k8s_external zone below the cluster domain) belong to that zone's transfer.

    """
    apex = zone.apex
    nested = [
        other.apex
        for other in registry.zones
        if other is not zone and names.is_subdomain(other.apex, apex)
    ]
    inside = [name for name in registry.names() if name.endswith(apex)]
    if nested:
        inside = [
            name
            for name in inside
            if not any(name.endswith(sub) and names.is_subdomain(name, sub) for sub in nested)
        ]
    inside.sort(key=_reversed)
    return inside


def _reversed(name: bytes) -> bytes:
    return name[::-1]


def zone_rrsets(registry: Registry, zone: Zone, view: Any = None) -> list[RRset]:
    """Every RRset of ``zone`` but its SOA, in ``zone_names`` order (apex first); ``view``: the
    client's view's gateway answers (kdns.authority.gateway.ViewAnswers), None for
    [gateway]'s."""
    ttl_of = registry.ttl_of
    records = registry.records
    inside = zone_names(registry, zone)
    if view is not None and zone.kind == GATEWAY:
        # Names only the view's classes claim join the zone; names it holds are its own.
        extra = [
            name
            for name in view.names_below(zone.apex)
            if not registry.has_records(name) and registry.zones.find(name) is zone
        ]
        if extra:
            inside = sorted(inside + extra, key=_reversed)
    else:
        view = None
    out: list[RRset] = []
    for name in inside:
        held = view.held(name) if view is not None else None
        rrsets, ttls = (records(name), None) if held is None else held
        for rtype, rdatas in rrsets.items():
            if rtype == SOA or not rdatas:
                continue  # sent first and last by the caller
            own = ttls.get(rtype) if ttls else None
            out.append((name, rtype, ttl_of(name, rtype) if own is None else own, rdatas))
    return out


def zone_records(registry: Registry, zone: Zone) -> list[Record]:
    """``zone_rrsets`` one record at a time: (owner, type, ttl, rdata)."""
    return [
        (owner, rtype, ttl, rdata)
        for owner, rtype, ttl, rdatas in zone_rrsets(registry, zone)
        for rdata in rdatas
    ]


def soa_rrset(registry: Registry, zone: Zone) -> RRset:
    """The zone's SOA at its current serial, TTL min(ttl, 300) (CoreDNS backend_lookup.go)."""
    return (zone.apex, SOA, registry.ttl_of(zone.apex, SOA), [zone.soa_rdata])


def serial_of(zone: Zone) -> int:
    return int(zone.serial) & 0xFFFFFFFF


def serial_up_to_date(client: int, ours: int) -> bool:
    """The client holds exactly our version, so an IXFR is answered with the lone SOA.

    A client *newer* than us (RFC 1982) is not up to date here: our serial is a per-process
    clock (another replica, or this one before a restart, may have counted further), so such
    a client gets a full transfer rather than being told to keep data it got elsewhere.
    """
    return (client & 0xFFFFFFFF) == (ours & 0xFFFFFFFF)


# ----------------------------------------------------------------------- packing


def _flags(rd: bool, aa: bool) -> int:
    return 0x80 | (0x04 if aa else 0) | (0x01 if rd else 0)


def _pack_messages(
    rrsets: Iterable[RRset],
    apex: bytes,
    query_id: bytes,
    question: bytes,
    max_size: int,
    rd: bool,
) -> list[bytes]:
    max_size = min(max(max_size, _MIN_SIZE), _MAX_SIZE)
    cut = len(apex)
    flags1 = _flags(rd, aa=True)
    base = 12 + len(question)
    messages: list[bytes] = []
    parts: list[bytes] = []
    size = base
    pointer = b""  # to the apex inside this message's first owner name
    u16 = _U16.pack

    for owner, rtype, ttl, rdatas in rrsets:
        fixed = _TYPE_CLASS_TTL.pack(rtype, CLASS_IN, ttl)
        prefix = owner[: len(owner) - cut]
        for rdata in rdatas:
            if parts:
                # Every owner is in the zone, so it ends with the apex: compress that suffix to
                # the apex as spelled in the message's first owner (the zone's own lowercase,
                # not the client's spelling in the question).
                wire = prefix + pointer + fixed + u16(len(rdata)) + rdata
                if size + len(wire) > max_size:
                    messages.append(
                        _HEADER.pack(query_id, flags1, NOERROR, 1, len(parts), 0, 0)
                        + question
                        + b"".join(parts)
                    )
                    parts = []
                    size = base
            if not parts:
                pointer = u16(0xC000 | (base + len(prefix)))
                wire = owner + fixed + u16(len(rdata)) + rdata
            parts.append(wire)
            size += len(wire)
    if parts:
        messages.append(
            _HEADER.pack(query_id, flags1, NOERROR, 1, len(parts), 0, 0)
            + question
            + b"".join(parts)
        )
    return messages


def axfr_messages(
    registry: Registry,
    zone_apex_wire: bytes,
    query_id: bytes,
    question: bytes,
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    rd: bool = False,
    view: Any = None,
) -> list[bytes]:
    """The full transfer of a zone as DNS messages (without TCP length prefixes).

    ``zone_apex_wire``: the lowercased wire name of one of the registry's zone apexes
    (``KeyError`` otherwise); ``query_id``: the client's two ID bytes; ``question``: the
    client's question section as received (name + type + class), echoed in every message;
    ``view``: the client's view's gateway answers (``zone_rrsets``).
    """
    zone = registry.zones.by_apex[zone_apex_wire]
    soa = soa_rrset(registry, zone)
    rrsets = [soa, *zone_rrsets(registry, zone, view), soa]  # RFC 5936 2.2: SOA first and last
    return _pack_messages(rrsets, zone.apex, query_id, question, max_size, rd)


def transfer_messages(
    registry: Registry,
    zone_apex_wire: bytes,
    query_id: bytes,
    question: bytes,
    client_serial: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    rd: bool = False,
    view: Any = None,
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
            soa = soa_rrset(registry, zone)
            return _pack_messages([soa], zone.apex, query_id, question, max_size, rd)
    return axfr_messages(registry, zone_apex_wire, query_id, question, max_size, rd=rd, view=view)


# ----------------------------------------------------------------------- policy


class TransferPolicy(Networks):
    """Who may transfer (CoreDNS ``transfer { to ... }``): default deny (see Networks)."""

    label = "transfer.allow"


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
    view: Any = None,
) -> list[bytes]:
    """Every reply message to an AXFR/IXFR query, as a TCP server would write them
    (``view``: the client's view's gateway answers, ``zone_rrsets``).

    The checks, in CoreDNS ``transfer`` ServeDNS order where it has one:
    - not TCP: REFUSED (CoreDNS transfer; RFC 5936 4.2: AXFR is TCP only);
    - client not allowed by ``policy``: REFUSED (RFC 5936 2.2.1, CoreDNS ``to``);
    - a class other than IN: REFUSED (we only hold IN data);
    - name not one of our zone apexes: NOTAUTH inside one of our zones (RFC 5936 2.2.1),
      REFUSED outside them (as the resolver answers names that are not ours);
    - IXFR without exactly one SOA in authority: FORMERR (RFC 1995 3 requires it; CoreDNS
      answers SERVFAIL, but the fault is the client's and SERVFAIL invites retries);
    - before the first full sync: SERVFAIL (never hand out a half-empty zone);
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
        view=view,
    )


class _Query(Protocol):
    """What ``ZoneTransfers`` reads of the server's parsed query (kdns.server.wire.Query)."""

    @property
    def data(self) -> bytes: ...

    @property
    def tcp(self) -> bool: ...

    @property
    def responder(self) -> Any: ...


class ZoneTransfers:
    """The server's transfer hook (``kdns.server.wire.Transfers``): registry + policy.

    ``messages`` returns every reply message, errors included (a REFUSED for a client the
    policy does not list, NOTAUTH, SERVFAIL before sync...), or None for a query too short to
    answer, which the responder turns into its own REFUSED.
    """

    __slots__ = ("registry", "policy", "max_size")

    def __init__(
        self, registry: Registry, policy: TransferPolicy, max_size: int = DEFAULT_MAX_SIZE
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.max_size = max_size

    def messages(self, query: _Query, peer: Any) -> list[bytes] | None:
        client = str(peer[0]) if peer else ""
        replies = respond_transfer(
            self.registry,
            self.policy,
            query.data,
            client,
            tcp=query.tcp,
            max_size=self.max_size,
            view=_view_answers(query, client),
        )
        return replies or None


def _view_answers(query: _Query, client: str) -> Any:
    """The gateway answers of the client's ``[[views]]`` entry, when its class filters are its
    own (kdns.policy.views.View.gateway); None: [gateway]'s, as for a client in no view."""
    views = getattr(query.responder, "views", None)
    if views is None or not client:
        return None
    view = views.view_of(client)
    return None if view is None else view.gateway
