"""DNS wire encoding of the few record types an authoritative Kubernetes zone serves.

Rendering happens when objects change, not per query. The answer section's owner name is always
the compression pointer 0xC00C (the question name at offset 12), so a stored answer fits any
query for that name whatever its letter case (RFC 1035 4.1.4). Other names (SRV targets,
additional-section owners) are written uncompressed: RFC 2782 forbids compressing SRV targets and
it keeps stored bytes independent of the question.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

# RR types (RFC 1035 3.2.2, RFC 3596, RFC 2782, RFC 6891)
A = 1
NS = 2
CNAME = 5
SOA = 6
PTR = 12
MX = 15
TXT = 16
AAAA = 28
SRV = 33
OPT = 41
IXFR = 251
AXFR = 252
ANY = 255

CLASS_IN = 1
CLASS_ANY = 255

# RCODEs (RFC 1035 4.1.1, RFC 6891 9)
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

TYPE_NAMES = {
    A: "A",
    NS: "NS",
    CNAME: "CNAME",
    SOA: "SOA",
    PTR: "PTR",
    MX: "MX",
    TXT: "TXT",
    AAAA: "AAAA",
    SRV: "SRV",
    OPT: "OPT",
    IXFR: "IXFR",
    AXFR: "AXFR",
    ANY: "ANY",
}

QNAME_POINTER = b"\xc0\x0c"
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength


def rdata_address(ip: str) -> tuple[int, bytes]:
    """(A or AAAA, packed address) for an IP literal."""
    addr = ipaddress.ip_address(ip)
    return (A if addr.version == 4 else AAAA), addr.packed


def rdata_srv(priority: int, weight: int, port: int, target: bytes) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + target


def rdata_txt(*strings: str) -> bytes:
    out = bytearray()
    for s in strings:
        raw = s.encode()
        for i in range(0, max(len(raw), 1), 255):  # character-strings hold 255 bytes each
            chunk = raw[i : i + 255]
            out.append(len(chunk))
            out += chunk
    return bytes(out)


def rdata_soa(
    mname: bytes,
    rname: bytes,
    serial: int,
    refresh: int,
    retry: int,
    expire: int,
    minimum: int,
) -> bytes:
    return (
        mname + rname + struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)
    )


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    """One resource record in wire form; ``owner`` is a wire name or a compression pointer."""
    return owner + _RR_FIXED.pack(rtype, CLASS_IN, ttl, len(rdata)) + rdata


def rrset(owner: bytes, rtype: int, ttl: int, rdatas: Iterable[bytes]) -> tuple[bytes, int]:
    """An RRset as (wire bytes, record count): the unit truncation keeps or drops whole."""
    parts = [rr(owner, rtype, ttl, rdata) for rdata in rdatas]
    return b"".join(parts), len(parts)


def rdata_target(rtype: int, rdata: bytes) -> bytes | None:
    """The domain name an RR points at, for additional-section processing (RFC 1035 3.3)."""
    if rtype == SRV:
        return rdata[6:]
    if rtype in (NS, CNAME, PTR):
        return rdata
    return None
