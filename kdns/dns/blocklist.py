"""Block lists: the hosts-file and plain-domain lists ad-blocking users have, at 1M entries.

Storage: one 64-bit hash per listed name (Python's ``hash`` of the lowercased wire name, which
is stable within a process; each process of ``--workers`` loads its own lists), sorted in an
``array('Q')``, plus an index of where each 16-bit hash prefix starts. 1M names take 8 MiB
and 256 KiB of index; the text of the names is never kept. A lookup hashes each suffix of the
query name (``ads.tracker.example.com``, ``tracker.example.com``, ``example.com``, ``com``) and
bisects the few hashes sharing its prefix: O(labels), subdomains of a listed name included.
Two different names share a 64-bit hash with probability ~n/2^64 per lookup (5e-14 at 1M).

Formats:
- ``hosts``: ``0.0.0.0 ads.example.com [more names]`` (any address; ``127.0.0.1``, ``::``);
  the usual header names (``localhost``, ``broadcasthost``, ``ip6-*``) are never blocked.
- ``domains``: one name a line. Adblock-style ``||example.com^`` and a leading ``*.`` are
  read as the name (subdomains are blocked anyway).
``#`` starts a comment in both (and ``!`` a comment line in ``domains``); lines that are not
names are skipped and counted.
"""

from __future__ import annotations

import logging
import os
from array import array
from bisect import bisect_left

from kdns.dns.answer import Answer, empty
from kdns.dns.records import AAAA, NOERROR, NXDOMAIN, QNAME_POINTER, A, rr

log = logging.getLogger("kdns.blocklist")

MASK = 0xFFFFFFFFFFFFFFFF
PREFIX_SHIFT = 48  # the index is on the top 16 bits of each hash
BUCKETS = 1 << (64 - PREFIX_SHIFT)
BLOCKED_TTL = 2  # Pi-hole's blocked-answer TTL: unblocking shows within seconds
FORMATS = ("hosts", "domains")
ANSWERS = ("nxdomain", "nodata", "null")
_HOSTS_HEADER = frozenset(
    b"localhost localhost.localdomain local broadcasthost ip6-localhost ip6-loopback "
    b"ip6-localnet ip6-mcastprefix ip6-allnodes ip6-allrouters ip6-allhosts 0.0.0.0".split()
)
_LENGTHS = [bytes((n,)) for n in range(64)]


def wire_name(text: bytes) -> bytes | None:
    """``ads.example.com`` (lowercase ASCII) -> its wire form; None when it is not a name."""
    text = text.rstrip(b".")
    if not text or len(text) > 253:
        return None
    parts = []
    for label in text.split(b"."):
        if not 0 < len(label) < 64:
            return None
        parts.append(_LENGTHS[len(label)])
        parts.append(label)
    parts.append(b"\x00")
    return b"".join(parts)


def _names_of(line: bytes, fmt: str) -> list[bytes]:
    line = line.split(b"#", 1)[0]
    words = line.split()
    if not words:
        return []
    if fmt == "hosts":
        if len(words) < 2 or not _looks_like_ip(words[0]):
            return [b""]  # not a hosts line: counted as skipped
        return [w for w in words[1:] if w.lower() not in _HOSTS_HEADER]
    word = words[0]
    if word[:1] == b"!":
        return []
    if word[:2] == b"||":
        word = word[2:]
    if word[-1:] == b"^":
        word = word[:-1]
    if word[:2] == b"*.":
        word = word[2:]
    return [word]


def _looks_like_ip(word: bytes) -> bool:
    return b":" in word or (word[:1].isdigit() and word.replace(b".", b"").isdigit())


class BlockList:
    """One loaded list: its name, where it came from, how blocked names are answered."""

    __slots__ = ("name", "path", "format", "answer", "hashes", "index", "entries", "skipped", "stamp", "_answers")  # fmt: skip

    def __init__(self, name: str, path: str, fmt: str, answer: str) -> None:
        self.name = name
        self.path = path
        self.format = fmt
        self.answer = answer
        self.hashes = array("Q")
        self.index = array("I", bytes(4 * (BUCKETS + 1)))
        self.entries = 0
        self.skipped = 0
        self.stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) when loaded
        self._answers = _answers(answer)

    @classmethod
    def load(cls, name: str, path: str, fmt: str, answer: str) -> BlockList:
        """Read and index ``path``; raises OSError when it cannot be read."""
        blocklist = cls(name, path, fmt, answer)
        stamp = file_stamp(path)
        hashes = array("Q")
        append = hashes.append
        skipped = 0
        with open(path, "rb") as handle:
            for line in handle:
                for word in _names_of(line, fmt):
                    wire = wire_name(word.lower())
                    if wire is None:
                        skipped += 1
                    else:
                        append(hash(wire) & MASK)
        blocklist._index(hashes)
        blocklist.skipped = skipped
        blocklist.stamp = stamp
        return blocklist

    def as_list(self, name: str, answer: str) -> BlockList:
        """The same loaded names under a list's ``name``, answered its way (several
        [[blocklists]] of one file share one index; an edit of ``answer`` reloads nothing)."""
        other = BlockList(name, self.path, self.format, answer)
        other.hashes, other.index = self.hashes, self.index
        other.entries, other.skipped, other.stamp = self.entries, self.skipped, self.stamp
        return other

    def _index(self, hashes: array[int]) -> None:
        """Sort by bucket (a counting sort on the 16-bit prefix, then each small bucket on its
        own): peak memory is two arrays, never a list of a million ints."""
        counts = [0] * (BUCKETS + 1)
        for h in hashes:
            counts[(h >> PREFIX_SHIFT) + 1] += 1
        total = 0
        for i in range(BUCKETS + 1):
            total += counts[i]
            counts[i] = total
        index = array("I", counts)
        ordered = array("Q", bytes(8 * len(hashes)))
        fill = counts[:BUCKETS]
        for h in hashes:
            bucket = h >> PREFIX_SHIFT
            ordered[fill[bucket]] = h
            fill[bucket] += 1
        del hashes
        for bucket in range(BUCKETS):
            lo, hi = index[bucket], index[bucket + 1]
            if hi - lo > 1:
                ordered[lo:hi] = array("Q", sorted(ordered[lo:hi]))
        self.hashes, self.index = ordered, index
        self.entries = len(ordered)

    def __contains__(self, wire: bytes) -> bool:
        """``wire`` itself is listed (not its parents; see ``kdns.dns.views``)."""
        return self.has_hash(hash(wire) & MASK)

    def has_hash(self, h: int) -> bool:
        bucket = h >> PREFIX_SHIFT
        index = self.index
        lo, hi = index[bucket], index[bucket + 1]
        if lo == hi:
            return False
        hashes = self.hashes
        at = bisect_left(hashes, h, lo, hi)
        return at < hi and hashes[at] == h

    def answer_for(self, qtype: int) -> Answer:
        """The reply for a blocked question of ``qtype``."""
        answers = self._answers
        return answers[1] if qtype == A else answers[2] if qtype == AAAA else answers[0]

    def memory(self) -> int:
        """Bytes of the index (hashes and prefix table)."""
        return self.hashes.itemsize * len(self.hashes) + self.index.itemsize * len(self.index)

    def __repr__(self) -> str:
        return f"BlockList({self.name!r}, {self.entries} names, {self.answer})"


def _answers(answer: str) -> tuple[Answer, Answer, Answer]:
    """(other types, A, AAAA) replies: NXDOMAIN, NODATA, or 0.0.0.0 / :: (``null``)."""
    if answer == "nxdomain":
        nx = empty(NXDOMAIN, False)
        return nx, nx, nx
    nodata = empty(NOERROR, False)
    if answer == "nodata":
        return nodata, nodata, nodata
    null_a = Answer(NOERROR, False, (((rr(QNAME_POINTER, A, BLOCKED_TTL, bytes(4)), 1),), (), ()))
    null_aaaa = Answer(
        NOERROR, False, (((rr(QNAME_POINTER, AAAA, BLOCKED_TTL, bytes(16)), 1),), (), ())
    )
    return nodata, null_a, null_aaaa


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of ``path`` following symlinks (a ConfigMap update swaps one)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
