"""Domain names as lowercase wire bytes, and the name forms Kubernetes DNS uses.

Internally every name is its uncompressed wire form, lowercased: b"\\x03web\\x04shop\\x03svc..."
That is exactly the slice of a query packet the server looks up (after ``bytes.lower()``, which is
safe on a name: label lengths are at most 63, below ASCII 'A'), so no text conversion happens on
the query path.
"""

from __future__ import annotations

import ipaddress

ROOT = b"\x00"


class BadName(ValueError):
    """A name that cannot be encoded (label too long, name too long, empty label)."""


def to_wire(name: str) -> bytes:
    """Text name (with or without the trailing dot) to lowercase wire form."""
    name = name.strip().rstrip(".").lower()
    if not name:
        return ROOT
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        if not raw or len(raw) > 63:
            raise BadName(f"bad label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise BadName(f"name too long: {name!r}")
    return bytes(out)


def question_end(data: bytes) -> int:
    """Offset just past the single question of a message (12 + name + type + class).

    A lone question's name is plain labels (nothing before it to point at); anything else,
    or a name over 255 bytes, or a message too short, raises ``BadName``. The server's hot
    path (kdns.server.wire) inlines this same walk to save a call per query.
    """
    pos = 12
    n = len(data)
    while True:
        if pos >= n:
            raise BadName("question runs past the message")
        length = data[pos]
        if length == 0:
            break
        if length > 63:
            raise BadName("question name compressed or bad label")
        pos += length + 1
    if pos - 11 > 255 or pos + 5 > n:
        raise BadName("question too long or message too short")
    return pos + 5


def name_end(data: bytes, pos: int, limit: int | None = None) -> int:
    """Offset just past the (possibly compressed) name at ``pos``, validating all of it.

    The name must end by ``limit`` (default: the message's end). Compression pointers
    (RFC 1035 4.1.4) are followed to check the whole name: each must point strictly before
    the start of the piece it ends, which also rules out loops. Raises ``BadName``.
    """
    n = len(data)
    if limit is None:
        limit = n
    end = -1
    start = pos
    total = 1
    while True:
        if pos >= limit:
            raise BadName("name runs past its bounds")
        length = data[pos]
        if length == 0:
            return pos + 1 if end < 0 else end
        if length & 0xC0 == 0xC0:
            if pos + 2 > limit:
                raise BadName("pointer runs past its bounds")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= start:
                raise BadName("compression pointer not backwards")
            if end < 0:
                end = pos + 2
            start = pos = target
            limit = n
            continue
        if length > 63:
            raise BadName("bad label type")
        total += length + 1
        if total > 255:
            raise BadName("name too long")
        pos += length + 1


def to_text(wire: bytes) -> str:
    """Wire name back to text with the trailing dot (for logs and tests)."""
    labels = split(wire)
    return ".".join(label.decode("ascii", "replace") for label in labels) + "."


def split(wire: bytes) -> list[bytes]:
    """The labels of a wire name, leftmost first."""
    labels = []
    pos = 0
    while wire[pos]:
        n = wire[pos]
        labels.append(wire[pos + 1 : pos + 1 + n])
        pos += n + 1
    return labels


def join(labels: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + ROOT


def parent(wire: bytes) -> bytes:
    """The name one label up (the root's parent is the root)."""
    if wire == ROOT:
        return ROOT
    return wire[wire[0] + 1 :]


def is_subdomain(wire: bytes, zone: bytes) -> bool:
    """True when ``wire`` equals ``zone`` or lies below it, on label boundaries."""
    if not wire.endswith(zone):
        return False
    pos = 0
    cut = len(wire) - len(zone)
    while pos < cut:
        pos += wire[pos] + 1
    return pos == cut


def dashed_ip(ip: str) -> str:
    """CoreDNS endpoint/pod label for an IP: 10.0.0.1 -> 10-0-0-1, fd00::1 -> fd00--1."""
    return ip.replace(".", "-").replace(":", "-")


def parse_dashed_ip(label: str) -> str | None:
    """Inverse of :func:`dashed_ip` for pod names; None when the label is not an IP."""
    if label.count("-") == 3 and "--" not in label:  # CoreDNS findPods: else it is IPv6
        candidate = label.replace("-", ".")
    else:
        candidate = label.replace("-", ":")
    try:
        return ipaddress.ip_address(candidate).compressed
    except ValueError:
        return None


def reverse_name(ip: str) -> str:
    """PTR owner for an IP (RFC 1035 3.5 in-addr.arpa, RFC 3596 2.5 ip6.arpa)."""
    return ipaddress.ip_address(ip).reverse_pointer


def ip_from_reverse(labels: list[bytes]) -> str | None:
    """The IP a full reverse name (labels incl. in-addr/ip6 arpa) stands for, or None."""
    if len(labels) == 6 and labels[-2:] == [b"in-addr", b"arpa"]:
        try:
            return str(ipaddress.IPv4Address(".".join(x.decode() for x in reversed(labels[:4]))))
        except (ValueError, UnicodeDecodeError):
            return None
    if len(labels) == 34 and labels[-2:] == [b"ip6", b"arpa"]:
        nibbles = b"".join(reversed(labels[:32]))
        if len(nibbles) != 32:
            return None
        try:
            return ipaddress.IPv6Address(int(nibbles, 16)).compressed
        except ValueError:
            return None
    return None
