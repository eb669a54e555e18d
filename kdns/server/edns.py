"""EDNS (RFC 6891) as the hot path reads it, and Extended DNS Errors (RFC 8914) as kdns writes
them: the client's OPT record parsed (a table of the option-less ones seen before makes the common
EDNS query one dict lookup), and an EDE option appended to a reply's OPT record."""

from __future__ import annotations

import struct

from kdns.dns import names
from kdns.dns.records import OPT

MIN_UDP = 512  # RFC 1035 4.2.1 without EDNS
_U16 = struct.Struct("!H")


class Edns:
    """What the client's OPT record said (RFC 6891 6.1.2)."""

    __slots__ = ("size", "version", "do")

    def __init__(self, size: int, version: int, do: bool) -> None:
        self.size = size
        self.version = version
        self.do = do


class Malformed(ValueError):
    """Records after the question that do not parse (names.BadName is one too)."""


def read_edns(data: bytes, pos: int, ancount: int, nscount: int, arcount: int) -> Edns | None:
    """Walk the records after the question and return the OPT record's contents, if any."""
    n = len(data)
    edns = None
    for index in range(ancount + nscount + arcount):
        start = pos
        pos = names.name_end(data, pos)
        if pos + 10 > n:
            raise Malformed("record header runs past the packet")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
        pos += 10 + rdlength
        if pos > n:
            raise Malformed("rdata runs past the packet")
        if rtype == OPT:
            # RFC 6891 6.1.1: one OPT, in the additional section, owned by the root.
            if index < ancount + nscount or edns is not None:
                raise Malformed("OPT outside the additional section or twice")
            if data[start] != 0:
                raise Malformed("OPT owner is not the root")
            _check_options(data, pos - rdlength, pos)
            edns = Edns(max(rclass, MIN_UDP), (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    return edns


def _check_options(data: bytes, pos: int, end: int) -> None:
    """RFC 6891 6.1.2: OPT RDATA is {code, length, value}*; an option must not overrun it."""
    while pos < end:
        if pos + 4 > end:
            raise Malformed("EDNS option header overruns the OPT RDATA")
        pos += 4 + ((data[pos + 2] << 8) | data[pos + 3])
        if pos > end:
            raise Malformed("EDNS option overruns the OPT RDATA")


# The OPT records clients send are few and repeat (dig, dnsperf -e, systemd-resolved and
# node-local caches each send the same bytes every time): the record without options, as its
# raw bytes, maps to its parsed form, so an EDNS query costs one more dict lookup, not a parse.
_EDNS_SEEN: dict[bytes, Edns] = {}
_EDNS_SEEN_MAX = 256
ONE_ADDITIONAL = b"\x00\x00\x00\x00\x00\x01"


def plain_opt(data: bytes, qend: int) -> Edns | None:
    """The OPT record of a query whose only extra record is an option-less OPT (the common
    EDNS query), from the table of those seen before; None when it is anything else."""
    edns = _EDNS_SEEN.get(data[qend:])
    if edns is None and len(data) == qend + 11 and data[qend + 9 : qend + 11] == b"\x00\x00":
        try:
            edns = read_edns(data, qend, 0, 0, 1)
        except ValueError:
            return None
        if edns is not None and len(_EDNS_SEEN) < _EDNS_SEEN_MAX:
            _EDNS_SEEN[data[qend:]] = edns
    return edns


# RFC 8914 Extended DNS Errors: option code 15, INFO-CODEs Blocked (15), Filtered (17),
# Prohibited (18), Not Authoritative (20).
_EDE_HEAD = b"\x00\x0f"
EDE_BLOCKED = 15
EDE_FILTERED = 17
EDE_PROHIBITED = 18
EDE_NOT_AUTHORITATIVE = 20


def with_ede(response: bytes, edns: Edns | None, code: int, text: str) -> bytes:
    """``response`` (built by ``Responder.reply``, whose OPT record ends it with an empty
    RDATA) with an EDE option of ``code`` and EXTRA-TEXT ``text``; unchanged without EDNS
    (RFC 8914 2: the option lives in the OPT record)."""
    if edns is None:
        return response
    extra = text.encode()[:200]
    option = _EDE_HEAD + _U16.pack(2 + len(extra)) + _U16.pack(code) + extra
    return response[:-2] + _U16.pack(len(option)) + option


COOKIE_OPTION = b"\x00\x0a\x00\x08"  # EDNS option code 10 (COOKIE), 8 bytes: a client cookie


def cookie_key(query: bytes) -> bytes | None:
    """The query's bytes after its ID as if it carried no client COOKIE: the key under which
    killer mode's wire cache and the reply memo find the commonest query with an option, an
    OPT record whose RDATA is one client COOKIE (RFC 7873 4.1: code 10, 8 bytes), sent last.
    None for any other query.

    Safe without a walk: an entry under the returned key was made from a query that ends in a
    record with RDLENGTH 0 (keys are stored without options); this query is that one with the
    same 12 bytes of RDATA added, which the standard path reads past (kdns acts on no COOKIE),
    so it deserves the same reply."""
    if query[-12:-8] == COOKIE_OPTION and query[-14:-12] == b"\x00\x0c":
        return query[2:-14] + b"\x00\x00"
    return None
