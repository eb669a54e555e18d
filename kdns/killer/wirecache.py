"""Killer mode's wire cache: query bytes (after the ID, EDNS options left out) -> the reply bytes
(after the ID).

A hit is one dict lookup, two comparisons and one concatenation: no parsing, no lowercasing, no
DNS library. The key is what the client sent after its ID (flags, counts, the question in its
own letter case, the OPT record) *without* the OPT record's options: kdns acts on no EDNS option
(COOKIE, PADDING, keepalive, client subnet, NSID and unknown ones are read past and never change
a reply, in either mode), so a query carrying a DNS COOKIE (as ``dig`` and current resolvers
send) hits the entry the same query without options made. The same key always deserves the same
reply bytes, for as long as the state they came from holds. The invalidation story, one input
at a time:

- registry answers (positive, NXDOMAIN, NODATA, computed pod names, ANY) hold until a registry
  flush names them (``Registry.watchers`` -> ``registry_changed``); a flush that says
  "everything" (a namespace or wildcard came or went, a config reload) drops every entry;
- replies with an authority section (negative answers carry the zone's SOA and its serial) also
  hold only while their zone's epoch is the one they were made in: a serial move bumps the
  epoch, one integer, so a zone with 45,000 cached negative answers is invalidated in O(1) and
  the stale entries are replaced when next asked (or evicted);
- forwarded and chased answers hold until the forward cache's next countdown second, and are
  indexed by name too, so a name that becomes ours (a PTR for an address kdns now serves) drops
  them at once.

Admission: a negative reply (no answer records: NXDOMAIN, NODATA) is stored the second time its
key misses within the last ``DOORKEEPER`` distinct negative misses, not the first. A search-path
walk for a name asked once (most of them, and every name of a random-name flood) then costs the
standard path's derived memo and no entry; a name asked again is held from its second ask.

Bounds: ``max_entries`` and ``max_bytes`` (each entry's bytes counted as allocated, measured in
tests/test_killer.py), FIFO eviction in O(1) (a deque of entries in insertion order, never a
scan of the dict), and at most ``MAX_VARIANTS`` keys per name, so a client that varies flags,
buffer sizes or letter case cannot crowd out other names.

An entry is a list, for speed: see the E_* indices. Hits are counted per batch by the transport
and recorded with their real duration (the batch's time from read to send) into the meter rows
the entry points at: exact counts and honest latency without per-query label work.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from kdns.server.edns import cookie_key  # noqa: F401 (imported from here before)
from kdns.server.meter import FAST_DURATION, Meter

# Entry layout.
E_REPLY = 0  # reply bytes after the ID
E_UNTIL = 1  # monotonic deadline (inf for registry answers)
E_EPOCH = 2  # the zone's epoch cell (a list of one int) for replies with authority, else FIXED
E_AT = 3  # the epoch the reply was made in: served only while E_EPOCH[0] == E_AT
E_META = 4  # (qtype bytes, zone label, rcode, request size, response size) for the meter
E_NAME = 5  # lowercased wire qname (for the ACL on hits and for invalidation)
E_WATCH = 6  # True: the prefetcher wants to see hits on this entry (forwarded names)
E_VIEW = 7  # the client view (kdns.policy.views) the reply was made for; set by the transport
E_KEY = 8  # the entry's own key (eviction finds it from the FIFO)
E_ROWS = 9  # meter rows, per UDP channel (E_ROWS + channel): found on the first hit
# An autopath reply (kdns.authority.autopath): (namespace label, forwarded, outcome, queries saved) —
# served only to a pod of that namespace (and forward.allow's when a candidate went upstream),
# counted as its walk; None for the rest.
E_NS = 11

# What one entry costs beyond its key, reply and name bytes: the list (12 slots), the meta
# tuple, the dict slot, the per-name index and the FIFO slot. Measured with tracemalloc in
# tests/test_killer.py::test_byte_accounting_matches_what_is_allocated.
ENTRY_OVERHEAD = 560
MAX_VARIANTS = 16  # keys per name (types, flags, buffer sizes, letter cases)
DOORKEEPER = 65536  # negative keys seen once, remembered (as hashes) until this many
FIXED = [0]  # the epoch cell of entries no serial move can change


def qname_of(key: bytes) -> bytes:
    """The lowercased wire qname of a cache key (the query after its ID); b"" if malformed."""
    pos = 10
    end = len(key)
    while pos < end:
        length = key[pos]
        if length == 0:
            return key[10 : pos + 1].lower()
        if length > 63:
            return b""
        pos += length + 1
    return b""


def ends_in_bare_opt(query: bytes) -> bool:
    """Whether the message ends in what looks like an OPT record without options (root owner,
    type 41, RDLENGTH 0): the common EDNS query, whose key is its own bytes after the ID, so
    ``without_options`` need not walk it. A look-alike that is not one only loses a cache hit
    (its key is then its own bytes, as for any query ``without_options`` turns down)."""
    return query[-11:-8] == b"\x00\x00\x29" and query[-2:] == b"\x00\x00"


def without_options(query: bytes) -> bytes | None:
    """The cache key of a query (a whole message) whose only extra record is an OPT record
    with options: the bytes after the ID with the options left out (RDLENGTH 0). None when the
    query has no options to leave out, or is not that shape (its key is then its own bytes), or
    its options do not parse (RFC 6891 6.1.2: the standard path answers FORMERR)."""
    if query[6:12] != b"\x00\x00\x00\x00\x00\x01":
        return None
    pos = 12
    end = len(query)
    while pos < end:
        length = query[pos]
        if length == 0:
            break
        if length > 63:
            return None
        pos += length + 1
    opt = pos + 5  # past the root label, qtype and qclass
    if opt + 11 >= end or query[opt : opt + 3] != b"\x00\x00\x29":
        return None
    rdlength = (query[opt + 9] << 8) | query[opt + 10]
    if opt + 11 + rdlength != end:
        return None
    at = opt + 11
    while at < end:
        if at + 4 > end:
            return None
        at += 4 + ((query[at + 2] << 8) | query[at + 3])
    if at != end:
        return None
    return query[2 : opt + 9] + b"\x00\x00"


class WireCache:
    def __init__(self, max_entries: int = 50_000, max_bytes: int = 32 << 20) -> None:
        self.entries: dict[bytes, list[Any]] = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._fifo: deque[list[Any]] = deque()  # entries in insertion order (some gone)
        self._by_name: dict[bytes, list[bytes]] = {}  # qname -> keys of its entries
        self._epochs: dict[str, list[int]] = {}  # zone -> its epoch cell (bumped on serial moves)
        self._seen_once: set[int] = set()  # hashes of negative keys that missed once
        self.inserts = 0
        self.deferred = 0  # negative replies not stored on their first miss (admission)
        self.hits = 0  # counted by the transport, per batch
        self.misses = 0  # counted by the transport on its slow path
        self.evictions = 0
        self.invalidations = 0
        self._meter: Meter | None = None

    def __len__(self) -> int:
        return len(self.entries)

    # ------------------------------------------------------------------ filling

    def insert(
        self,
        query: bytes,
        reply: bytes,
        until: float,
        zone: str,
        qtype: bytes,
        watch: bool = False,
    ) -> list[Any] | None:
        """Remember ``reply`` for ``query`` (both whole messages) until ``until``.

        ``zone`` is the zone that answered ("." for forwarded names). Every entry is indexed by
        name (a registry change names what it changed); replies with an authority section also
        follow their zone's epoch (serial moves).
        """
        rcode = reply[3] & 0x0F
        if rcode not in (0, 3) or len(query) < 17:
            return None  # errors and refusals are one-offs: never cached
        key = without_options(query) if query[11] and not ends_in_bare_opt(query) else None
        if key is None:
            key = query[2:]
        if reply[6:8] == b"\x00\x00":  # negative: admitted on its second miss
            seen = self._seen_once
            digest = hash(key)
            if digest not in seen:
                if len(seen) >= DOORKEEPER:
                    seen.clear()
                seen.add(digest)
                self.deferred += 1
                return None
            seen.discard(digest)
        name = qname_of(key)
        if not name:
            return None
        entries = self.entries
        old = entries.pop(key, None)
        if old is not None:
            if old[E_EPOCH][0] != old[E_AT]:
                self.invalidations += 1  # a stale reply (its zone's serial moved) replaced
            self._drop(key, old)
        tail = reply[2:]
        size = len(key) + len(tail) + len(name) + ENTRY_OVERHEAD
        variants = self._by_name.get(name)
        if variants is not None and len(variants) >= MAX_VARIANTS:
            variants[:] = [k for k in variants if k in entries]  # aliases may leave keys gone
            if len(variants) >= MAX_VARIANTS:
                self._evict(variants[0])
        while entries and (len(entries) >= self.max_entries or self.bytes + size > self.max_bytes):
            self._evict_oldest()
        if zone != "." and reply[8:10] != b"\x00\x00":
            epoch = self._epochs.get(zone)
            if epoch is None:
                epoch = self._epochs[zone] = [0]
        else:
            epoch = FIXED
        meta = (qtype, zone, rcode, len(query), len(reply))
        entry: list[Any] = [
            tail,
            until,
            epoch,
            epoch[0],
            meta,
            name,
            watch,
            None,
            key,
            None,
            None,
            None,
        ]
        entries[key] = entry
        self._fifo.append(entry)
        self.bytes += size
        self.inserts += 1
        self._by_name.setdefault(name, []).append(key)
        return entry

    def alias(self, entry: list[Any], name: bytes) -> None:
        """File ``entry`` under ``name`` as well (a rewritten question's reply: the rewritten
        name's registry changes drop it). Keys of entries gone are pruned as the list grows."""
        keys = self._by_name.setdefault(name, [])
        if len(keys) >= MAX_VARIANTS:
            entries = self.entries
            keys[:] = [k for k in keys if k in entries][-MAX_VARIANTS + 1 :]
        keys.append(entry[E_KEY])

    def follow(self, entry: list[Any], zone: str) -> None:
        """Have ``entry`` follow ``zone``'s epoch although it has no authority section (an
        autopath reply's TTLs come from the negative TTLs of the names it skipped)."""
        epoch = self._epochs.get(zone)
        if epoch is None:
            epoch = self._epochs[zone] = [0]
        entry[E_EPOCH] = epoch
        entry[E_AT] = epoch[0]

    def _evict_oldest(self) -> None:
        fifo, entries = self._fifo, self.entries
        while fifo:
            entry = fifo.popleft()
            if entries.get(entry[E_KEY]) is entry:
                self._evict(entry[E_KEY])
                return

    def _evict(self, key: bytes) -> None:
        entry = self.entries.pop(key)
        self._drop(key, entry)
        self.evictions += 1

    # ------------------------------------------------------------------ invalidation

    def registry_changed(self, names: set[bytes], zones: set[str], everything: bool) -> None:
        """Registry.watchers callback: drop exactly the entries the flush may have changed,
        before the next datagram is read (the flush runs on the loop that reads them)."""
        if everything:
            self.clear()
            return
        entries = self.entries
        by_name = self._by_name
        for name in names:
            for key in by_name.pop(name, ()):
                entry = entries.pop(key, None)
                if entry is not None:
                    # An entry filed here as an alias (a rewrite) leaves its own name's list.
                    self._drop(key, entry, unindex=entry[E_NAME] != name)
                    self.invalidations += 1
        for zone in zones:
            epoch = self._epochs.get(zone)
            if epoch is not None:
                epoch[0] += 1

    def clear(self) -> None:
        """Drop every entry (a reload, or a change whose reach nobody listed)."""
        self.invalidations += len(self.entries)
        self.entries.clear()
        self._fifo.clear()
        self._by_name.clear()
        for epoch in self._epochs.values():
            epoch[0] += 1  # entries still held by a running batch are stale too
        self.bytes = 0

    def _drop(self, key: bytes, entry: list[Any], unindex: bool = True) -> None:
        """Account for an entry leaving: its bytes and its place in the name index. (Its FIFO
        slot goes when eviction reaches it; the deque is compacted when they pile up.)"""
        self.bytes -= len(key) + len(entry[E_REPLY]) + len(entry[E_NAME]) + ENTRY_OVERHEAD
        if unindex:
            keys = self._by_name.get(entry[E_NAME])
            if keys is not None:
                try:
                    keys.remove(key)
                except ValueError:
                    pass
                if not keys:
                    del self._by_name[entry[E_NAME]]
        fifo = self._fifo
        if len(fifo) > 2 * len(self.entries) + 1024:
            entries = self.entries
            self._fifo = deque(e for e in fifo if entries.get(e[E_KEY]) is e)

    # ------------------------------------------------------------------ metrics

    def attach(self, meter: Meter | None) -> None:
        """Record hits into ``meter``'s rows (exact counts, real durations)."""
        self._meter = meter

    def record_hits(self, hits: list[list[Any]], channel: int, seconds: float) -> None:
        """``hits`` (entries) were answered on ``channel`` (UDP4 or UDP6), each taking
        ``seconds`` from the read of its batch to the send of its reply."""
        self.hits += len(hits)
        meter = self._meter
        if meter is None:
            return
        slot = E_ROWS + channel
        fast = seconds <= FAST_DURATION
        for entry in hits:
            row = entry[slot]
            if row is None:
                qtype, zone, rcode, request, response = entry[E_META]
                key = (channel, qtype, zone, rcode, request, response)
                row = meter.rows.get(key) or meter.new_row(*key)
                entry[slot] = row
            row[0] += seconds
            if fast:
                row[1] += 1
            else:
                meter.slow(row, seconds)

    def counters(self) -> dict[str, int]:
        return {
            "entries": len(self.entries),
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "inserts": self.inserts,
            "deferred": self.deferred,
            "evictions": self.evictions,
            "invalidations": self.invalidations,
        }
