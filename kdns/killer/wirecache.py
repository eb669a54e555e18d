"""Killer mode's wire cache: raw query bytes (after the ID) -> the reply bytes (after the ID).

A hit is one dict lookup, one comparison and one concatenation: no parsing, no lowercasing,
no DNS library. The key is everything the client sent after its ID (flags, counts, the question
in its own letter case, the OPT record), so the same bytes always deserve the same reply bytes,
for as long as the state they came from holds:

- registry answers (positive, NXDOMAIN, NODATA, computed pod names, ANY) hold until a registry
  flush says their name changed (``Registry.watchers``); negative answers also until their
  zone's SOA serial moves (their authority section carries it);
- forwarded and chased answers hold until the forward cache's next countdown second (TTLs are
  re-rendered at most once a second per entry, never longer than what remains).

An entry is a list, for speed: see the E_* indices. Hits are counted per entry and channel on
the hit path (one integer add) and summed into the meter when metrics are scraped, so the
request/response counters stay exact without per-query accounting. Eviction is FIFO by
insertion (the dict's own order), done on insertion only: the hit path never pays for it.
"""

from __future__ import annotations

from typing import Any

from kdns.server.meter import Meter

# Entry layout.
E_REPLY = 0  # reply bytes after the ID
E_UNTIL = 1  # monotonic deadline (inf for registry answers)
E_HITS = 2  # hits per channel: E_HITS + channel (UDP4, UDP6, TCP4, TCP6)
E_FOLDED = 6  # hits already summed into the meter, per channel (a list of 4)
E_META = 7  # (qtype bytes, zone label, rcode, request size, response size) for the meter
E_NAME = 8  # lowercased wire qname (for the ACL on hits and for invalidation)
E_WATCH = 9  # True: the prefetcher wants to see hits on this entry (forwarded names)
E_VIEW = 10  # the client view (kdns.dns.views) the reply was made for; set by the transport

ENTRY_OVERHEAD = 400  # bytes of Python objects per entry beyond key and reply (measured)
HIT_SECONDS = 2e-6  # nominal in-process time of a hit (not timed per query; see fold())


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


class WireCache:
    def __init__(self, max_entries: int = 50_000, max_bytes: int = 32 << 20) -> None:
        self.entries: dict[bytes, list[Any]] = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._by_name: dict[bytes, list[bytes]] = {}  # qname -> keys of registry answers
        self._negative: dict[str, set[bytes]] = {}  # zone -> keys of answers carrying its SOA
        self.inserts = 0
        self.misses = 0  # counted by the transport on its slow path
        self.evictions = 0
        self.invalidations = 0
        self.hits_gone = 0  # hits of entries no longer held
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

        ``zone`` is the zone that answered ("." for forwarded names): registry answers are
        indexed by name so a registry change finds them; replies without answers but with an
        authority section (NXDOMAIN, NODATA) are also indexed by zone for SOA serial moves.
        """
        rcode = reply[3] & 0x0F
        if rcode not in (0, 3) or len(query) < 17:
            return None  # errors and refusals are one-offs: never cached
        key = query[2:]
        name = qname_of(key)
        if not name:
            return None
        old = self.entries.pop(key, None)
        if old is not None:
            self._drop(key, old)
        tail = reply[2:]
        size = len(key) + len(tail) + ENTRY_OVERHEAD
        while self.entries and (
            len(self.entries) >= self.max_entries or self.bytes + size > self.max_bytes
        ):
            oldest = next(iter(self.entries))
            self._drop(oldest, self.entries.pop(oldest))
            self.evictions += 1
        meta = (qtype, zone, rcode, len(query), len(reply))
        entry: list[Any] = [tail, until, 0, 0, 0, 0, [0, 0, 0, 0], meta, name, watch, None]
        self.entries[key] = entry
        self.bytes += size
        self.inserts += 1
        if zone != ".":
            self._by_name.setdefault(name, []).append(key)
            if reply[6:8] == b"\x00\x00" and reply[8:10] != b"\x00\x00":
                self._negative.setdefault(zone, set()).add(key)
        return entry

    # ------------------------------------------------------------------ invalidation

    def registry_changed(self, names: set[bytes], zones: set[str], everything: bool) -> None:
        """Registry.watchers callback: drop exactly the entries the flush may have changed."""
        if everything:
            self.clear_zones()
            return
        entries = self.entries
        by_name = self._by_name
        for name in names:
            for key in by_name.pop(name, ()):
                entry = entries.pop(key, None)
                if entry is not None:
                    self._drop(key, entry, unindex=False)
                    negative = self._negative.get(entry[E_META][1])
                    if negative is not None:
                        negative.discard(key)
                    self.invalidations += 1
        for zone in zones:
            for key in self._negative.pop(zone, ()):
                entry = entries.pop(key, None)
                if entry is not None:
                    self._drop(key, entry)
                    self.invalidations += 1

    def clear_zones(self) -> None:
        """Drop every registry answer (forwarded ones stay: they follow their own TTLs)."""
        for keys in list(self._by_name.values()):
            for key in keys:
                entry = self.entries.pop(key, None)
                if entry is not None:
                    self._drop(key, entry, unindex=False)
                    self.invalidations += 1
        self._by_name.clear()
        self._negative.clear()

    def clear(self) -> None:
        for key in list(self.entries):
            self._drop(key, self.entries.pop(key), unindex=False)
            self.invalidations += 1
        self._by_name.clear()
        self._negative.clear()

    def _drop(self, key: bytes, entry: list[Any], unindex: bool = True) -> None:
        """Account for an entry leaving: its bytes, its unsummed hits, its indexes."""
        self.bytes -= len(key) + len(entry[E_REPLY]) + ENTRY_OVERHEAD
        self.hits_gone += entry[2] + entry[3] + entry[4] + entry[5]
        if self._meter is not None:
            self._fold_entry(self._meter, entry)
        if unindex:
            zone = entry[E_META][1]
            if zone != ".":
                keys = self._by_name.get(entry[E_NAME])
                if keys is not None:
                    try:
                        keys.remove(key)
                    except ValueError:
                        pass
                    if not keys:
                        del self._by_name[entry[E_NAME]]
                negative = self._negative.get(zone)
                if negative is not None:
                    negative.discard(key)

    # ------------------------------------------------------------------ metrics

    def attach(self, meter: Meter | None) -> None:
        """Sum hits into ``meter`` (at scrape time, and for entries as they leave)."""
        self._meter = meter
        if meter is not None:
            meter.folders.append(self.fold)

    def fold(self, meter: Meter) -> None:
        """Add every entry's new hits to the meter's rows: exact request/response counts and
        sizes; durations land in the first bucket with a nominal ``HIT_SECONDS`` each (a hit
        is not timed, and takes microseconds)."""
        for entry in list(self.entries.values()):
            self._fold_entry(meter, entry)

    def _fold_entry(self, meter: Meter, entry: list[Any]) -> None:
        folded = entry[E_FOLDED]
        qtype, zone, rcode, request, response = entry[E_META]
        for channel in range(4):
            new = entry[E_HITS + channel] - folded[channel]
            if new:
                folded[channel] += new
                meter.absorb(channel, qtype, zone, rcode, request, response, new, new * HIT_SECONDS)

    def counters(self) -> dict[str, int]:
        hits = 0
        for entry in self.entries.values():
            hits += entry[2] + entry[3] + entry[4] + entry[5]
        return {
            "entries": len(self.entries),
            "bytes": self.bytes,
            "hits": hits + self.hits_gone,
            "misses": self.misses,
            "inserts": self.inserts,
            "evictions": self.evictions,
            "invalidations": self.invalidations,
        }
