"""A response minus its header and question: what the registry pre-renders per (name, type).

The server builds a reply as the client's ID + flags, the counts, the client's own question bytes
and ``Answer.body`` (+ an OPT record when the query had one). Because every owner name in the
answer section is the pointer 0xC00C, the same bytes fit every spelling of the name.
"""

from __future__ import annotations

import functools
import struct

from kdns.dns.records import NOERROR

_COUNTS = struct.Struct("!HHH")
_A_TYPE = b"\x00\x01"
_AAAA_TYPE = b"\x00\x1c"

# (wire bytes, record count) per RRset; three sections: answer, authority, additional.
RRset = tuple[bytes, int]
Sections = tuple[tuple[RRset, ...], tuple[RRset, ...], tuple[RRset, ...]]

# Bodies up to this size always fit the 512-byte minimum with any question and an OPT record
# (12 header + 259 question + 11 OPT + 200 < 512), so their RRsets need not be kept apart
# for truncation. Saves memory on the common small answer.
_SMALL_BODY = 200


@functools.lru_cache(maxsize=1024)
def _counts(an: int, ns: int, ar: int) -> bytes:
    """Packed section counts, shared: most answers have the same few (1, 0, 0)."""
    return _COUNTS.pack(an, ns, ar)


class Answer:
    """Pre-rendered response body for one (name, type), or a one-off negative answer."""

    __slots__ = (
        "rcode",
        "aa",
        "zone",
        "counts",
        "counts_edns",
        "body",
        "sections",
        "rotate",
        "_rrset_len",
        "chase",
    )

    def __init__(self, rcode: int, aa: bool, sections: Sections, zone: str = ".") -> None:
        self.rcode = rcode
        self.aa = aa
        self.zone = zone  # the zone that answered ("." outside ours): a metrics label
        an, ns, ar = (sum(count for _, count in section) for section in sections)
        self.counts = _counts(an, ns, ar)
        self.counts_edns = _counts(an, ns, ar + 1)
        self.body = b"".join(data for section in sections for data, _ in section)
        self.sections: Sections | None = sections if len(self.body) > _SMALL_BODY else None
        # CoreDNS loadbalance: an answer that is one A or AAAA RRset of several records can be
        # served rotated. Records are fixed size (pointer owner + 10 + 4 or 16), so a rotation
        # is two slices. ``rotate`` is the record size (0: not rotatable).
        self.rotate = 0
        self._rrset_len = 0
        # An ExternalName CNAME to a name outside our zones: the forwarder appends the
        # target's addresses (CoreDNS kubernetes: upstream lookup of external names).
        self.chase: bytes | None = None
        if len(sections[0]) == 1 and sections[0][0][1] > 1:
            data, count = sections[0][0]
            size = {_A_TYPE: 16, _AAAA_TYPE: 28}.get(data[2:4], 0)
            if size and len(data) == size * count:
                self.rotate = size
                self._rrset_len = len(data)

    def refill(self, sections: Sections) -> None:
        """New records, same object: holders of this answer serve the new bytes at once (and
        holders of copies of its bytes are told by ``Refills.mark``)."""
        self.__init__(self.rcode, self.aa, sections, self.zone)  # type: ignore[misc]
        Refills.mark = object()

    def rotated(self, turn: int) -> bytes:
        """The body with the address RRset rotated ``turn`` records to the left."""
        length, size = self._rrset_len, self.rotate
        cut = (turn % (length // size)) * size
        body = self.body
        return body[cut:length] + body[:cut] + body[length:]

    @property
    def ancount(self) -> int:
        return int(_COUNTS.unpack(self.counts)[0])

    def fit(self, room: int, edns: bool, turn: int | None = None) -> tuple[bytes, bytes, bool]:
        """(counts, body, truncated) within ``room`` bytes, keeping every whole record that fits.

        As CoreDNS (miekg/dns ``Msg.Truncate``) and RFC 2181 9: an answer or authority RRset
        that does not fit keeps its leading records and sets TC (a client that never retries
        over TCP, such as older musl, still gets addresses); nothing after it is kept.
        Additional-section RRsets that do not fit are dropped whole and silently. ``turn``
        rotates a rotatable address RRset first (loadbalance), so truncated replies still
        spread clients over every address.
        """
        if len(self.body) <= room and turn is None:
            return (self.counts_edns if edns else self.counts), self.body, False
        kept: list[list[RRset]] = [[], [], []]
        used = 0
        truncated = False
        sections = self.sections or (((self.body, self.ancount),), (), ())
        if turn is not None and self.rotate:
            first = self.rotated(turn)[: self._rrset_len], sections[0][0][1]
            sections = ((first,), sections[1], sections[2])
        for index, section in enumerate(sections):
            for data, count in section:
                if used + len(data) > room:
                    if index < 2:
                        truncated = True
                        part, n = _leading(data, count, room - used)
                        if n:
                            kept[index].append((part, n))
                    break
                kept[index].append((data, count))
                used += len(data)
            if truncated:
                break
        an, ns, ar = (sum(count for _, count in section) for section in kept)
        counts = _COUNTS.pack(an, ns, ar + (1 if edns else 0))
        return counts, b"".join(data for section in kept for data, _ in section), truncated


def _leading(data: bytes, count: int, room: int) -> tuple[bytes, int]:
    """The leading whole records of an RRset's wire bytes that fit in ``room`` bytes."""
    pos = n = 0
    size = len(data)
    while n < count and pos < size:
        end = pos
        while True:  # the owner name: labels, ending in a root label or a pointer
            length = data[end]
            if length >= 0xC0:
                end += 2
                break
            end += 1 + length
            if length == 0:
                break
        end += 10 + ((data[end + 8] << 8) | data[end + 9])
        if end > room:
            break
        pos = end
        n += 1
    return data[:pos], n


def empty(rcode: int, aa: bool, zone: str = ".") -> Answer:
    """An answer with no records (REFUSED, SERVFAIL, or a NODATA without SOA)."""
    return Answer(rcode, aa, ((), (), ()), zone)


NOERROR_EMPTY = empty(NOERROR, True)

# Sentinels the resolver returns for questions answered elsewhere: names outside our zones
# (the forwarder) and zone transfers (the transfer handler, TCP only). Compared by identity.
FORWARD = empty(NOERROR, False)
TRANSFER = empty(NOERROR, False)


class Refills:
    """``mark``: an object replaced whenever any Answer is refilled in place (a zone's shared
    negative answers when its SOA moves), so a holder of a copy of an answer's bytes (the reply
    memo) can tell by identity that some answer's bytes may have changed since it looked."""

    mark = object()


class StampedAnswers(dict[bytes, "Answer"]):
    """A dict of answers (the registry's pre-rendered answers) carrying a ``stamp``: an object that
    the registry replaces each time it publishes a change to what it answers (a flush, a
    slice of one), so a reader can tell "nothing has changed since I last
    looked" by identity. A new registry's dict has a stamp no older one had."""

    __slots__ = ("stamp",)

    def __init__(self) -> None:
        super().__init__()
        self.stamp = object()
