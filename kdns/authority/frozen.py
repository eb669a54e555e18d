"""How the name table stores records, and the keys it is read by.

One owner's records for one name are kept as one bytes object of (type, length, rdata) entries
(``freeze`` / ``thaw``): a single bytes costs a fraction of a dict of lists, compares fast for
the change check, and there is one per name in the cluster. The hot-path dict is keyed by the
question as it appears on the wire (``question_key``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator

from kdns.authority.owners import LAZY, Contribution, Owner

Records = dict[int, list[bytes]]  # rtype -> rdatas, in insertion order, no duplicates
Frozen = bytes  # see the module docstring
ENTRY = struct.Struct("!HH")

SHARDS = 64
_QSUFFIX = struct.Struct("!HH")


def question_key(name: bytes, qtype: int, qclass: int = 1) -> bytes:
    """The hot-path dict key: the question section as it appears on the wire, name lowercased."""
    return name + _QSUFFIX.pack(qtype, qclass)


def shard_of(owner: Owner) -> int:
    return zlib.crc32(f"{owner[1]}/{owner[2]}".encode()) % SHARDS


QTYPES: dict[tuple[int, ...], tuple[int, ...]] = {}  # interned: few distinct type sets

LAZY_MARK = ENTRY.pack(LAZY, 0)
# Pseudo record type carrying a local zone name's TTLs (type, TTL pairs): part of the local
# owner's contribution so a TTL-only edit re-renders the name; never served. Types from here
# up are pseudo types.
TTLS = 0xFFFE
TTL_PAIR = struct.Struct("!HI")
WILDCARD = b"\x01*"  # the leftmost label of a wildcard name (RFC 4592)


def freeze(out: Contribution) -> dict[bytes, Frozen]:
    pack = ENTRY.pack
    return {
        name: b"".join(
            pack(rtype, len(rdata)) + rdata for rtype, rdatas in records.items() for rdata in rdatas
        )
        for name, records in out.items()
    }


def thaw(frozen: Frozen) -> Iterator[tuple[int, bytes]]:
    pos, end = 0, len(frozen)
    unpack = ENTRY.unpack_from
    while pos < end:
        rtype, length = unpack(frozen, pos)
        pos += 4
        yield rtype, frozen[pos : pos + length]
        pos += length


# Owner kinds whose names can never be wildcards (Services, pods, namespaces, zone apexes):
# their changes skip the wildcard scan.
NO_WILDCARDS = frozenset(("svc", "pod", "ns", "zone"))


def wildcards_in(changed: Iterable[bytes]) -> Iterator[bytes]:
    """Wildcard names among ``changed`` and their ancestors (``a.*.x`` makes ``*.x`` exist)."""
    for name in changed:
        if WILDCARD not in name:
            continue
        node = name
        while node[0]:
            if node.startswith(WILDCARD):
                yield node
            node = node[node[0] + 1 :]
