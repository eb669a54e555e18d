"""Response cache for forwarded answers: CoreDNS's ``cache`` plugin, on wire bytes.

``put`` takes an upstream response as it arrived, parses it once and keeps the bytes; ``get``
serves them back with the client's ID and question spliced in and every TTL counted down by the
whole seconds the entry has spent in the cache (RFC 1035 3.2.1, RFC 2181 8). No DNS library
runs here.

What is cached (CoreDNS ``response.Typify`` + ``cache.key``):

- success: NOERROR with at least one answer record, for min(TTL of every record) seconds;
- denial: NXDOMAIN, or NOERROR without answers (NODATA), only with an SOA in the authority
  section (RFC 2308 5: a negative answer without SOA SHOULD NOT be cached), for
  min(every record's TTL, SOA MINIMUM) seconds (RFC 2308 3, 5);
- both clamped to [min TTL, cap] (CoreDNS: success cap 3600, denial cap 1800, min 5);
- never: SERVFAIL, REFUSED, FORMERR, NOTIMP..., truncated (TC) answers, answers whose question
  is not the key's, TSIG-signed answers, non-zero EDNS extended RCODE, anything that does not
  parse cleanly, and responses without a single TTL-bearing record.

The stored form drops the upstream's OPT record: EDNS is hop-by-hop (RFC 6891 6.1.1) and the
upstream's OPT carries its payload size and options such as a COOKIE bound to our query (RFC
7873), which must never reach another client. The caller passes its own OPT (``opt=``) to
``get`` when the client's query had one, as the server does for pre-rendered answers.

Flags are served as the upstream sent them (QR, AA, RD, RA, AD, CD, RCODE); the caller patches
what depends on the client's query (RD, and AD/CD per RFC 6840 5.7-5.9) and truncates to the
client's UDP payload size.

When TTLs start: an upstream states its TTLs at the moment it answers, which kdns cannot see;
it can only bound it. The forwarder passes ``put`` the time the question left for upstream
(``now=``), which is before the answer was made, so the countdown starts no later than the
TTL's true start and a served TTL never exceeds the true remaining time rounded up to the
second: ``TTL - floor(now - asked)`` = ceil(TTL - (now - asked)) >= ceil(true remaining).
(Counting from the answer's arrival, or from when the event loop got round to ``put``, would
overstate by the upstream's latency plus the loop's delay: enough to cross a second.) A reply
rendered for one second is current until ``_Entry.tick``, the end of that second, which is what
``last_tick`` tells killer mode's wire cache. Two exceptions, both configured: a TTL below
``min_ttl`` keeps its entry for ``min_ttl`` seconds, served with TTL 0 once its own TTL has run
out (never with a TTL above what remains), and serve-stale answers carry ``stale_ttl``.

Keys are ``cache_key(question, do, cd)``: the lowercased wire question (the registry's
``question_key`` format) plus one byte when the query had DO and/or CD set, so DNSSEC and
checking-disabled answers are separate entries (CoreDNS keys on DO the same way).
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable

from kdns.dns import names
from kdns.dns.records import NOERROR, NXDOMAIN, OPT, SOA

# CoreDNS plugin/cache defaults (cache.go, dnsutil): capacity 256 shards * 39 = 9984 per cache,
# success TTL cap 3600 s, denial cap 1800 s, min TTL 5 s for both; prefetch off, popularity
# window 1 m, prefetch in the last 10% of the TTL.
DEFAULT_CAPACITY = 9984
SUCCESS_TTL = 3600
DENIAL_TTL = 1800
MIN_TTL = 5
PREFETCH_DURATION = 60.0
PREFETCH_PERCENTAGE = 10
# TTL of a stale answer. RFC 8767 4 recommends 30 s ("a value greater than 0, with a
# recommended value of 30 seconds") so that clients keep it instead of asking again while
# the upstreams are down; CoreDNS serves 0. We follow the RFC; 0 gives CoreDNS's behaviour.
STALE_TTL = 30

TSIG = 250  # RFC 8945: a signed response is bound to one query and one key
_DO = 0x01  # key suffix bits
_CD = 0x02
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength (RFC 1035 4.1.3)
_U32 = struct.Struct("!I")

# The store is a plain dict plus our own expiry check, not cachetools. Measured on this machine
# (Python 3.11, 9984 entries): dict.get 40-60 ns; cachetools LRUCache.get 320 ns; TTLCache.get
# 2.1 us and TLRUCache.get 2.4 us (they expire on every access); OrderedDict.get 120 ns. TTLCache
# also has one TTL for all items, while every DNS answer has its own. Eviction order is kept
# in a deque beside the dict (FIFO: evicting with next(iter(dict)) costs ~10 us once deletions
# pile up at the front of the dict, popleft is O(1)). CoreDNS evicts at random within a shard,
# so first-in-first-out is no worse a policy, and it costs nothing on the hit path.
# Each entry also keeps its response pre-rendered for the current second (``_Entry.body``), so
# a hit is two dict lookups at most, one float comparison and one concatenation: ~0.3 us with
# the caller's ``now``, ~0.4 us reading time.monotonic itself (benchmarks/cache_hit.py).


def cache_key(question: bytes, do: bool = False, cd: bool = False) -> bytes:
    """The cache key: lowercased wire question (``registry.question_key``) + DO/CD byte if set."""
    if do or cd:
        return question + bytes(((_DO if do else 0) | (_CD if cd else 0),))
    return question


class Malformed(ValueError):
    """The response cannot be parsed well enough to be cached (names.BadName is one too)."""


class _Parsed:
    """What ``put`` needs from one response, gathered in a single walk."""

    __slots__ = ("rcode", "qend", "counts", "ttls", "soa_min", "opt_at", "minimum")

    def __init__(self) -> None:
        self.rcode = 0
        self.qend = 0
        self.counts = (0, 0, 0)
        # (offset of the TTL field, TTL, TTL capped by MINIMUM for authority SOAs) per record
        self.ttls: list[tuple[int, int, int]] = []
        self.soa_min = -1  # smallest SOA MINIMUM in the authority section; -1: no SOA
        self.opt_at = -1  # offset of the OPT record, always the last one; -1: none
        self.minimum = 0xFFFFFFFF  # smallest record TTL


def _soa_minimum(data: bytes, rdata: int, end: int) -> int:
    """The MINIMUM field of SOA rdata [rdata, end): MNAME, RNAME, then five 32-bit fields."""
    pos = names.name_end(data, rdata, end)
    pos = names.name_end(data, pos, end)
    if pos + 20 != end:
        raise Malformed("SOA rdata length")
    value: int = _U32.unpack_from(data, pos + 16)[0]
    return value


def _record(data: bytes, pos: int, index: int, parsed: _Parsed) -> int:
    """Walk one resource record at ``pos``; return the offset past it."""
    n = len(data)
    an, ns, ar = parsed.counts
    owner = pos
    pos = names.name_end(data, pos, n)
    if pos + 10 > n:
        raise Malformed("record header runs past the packet")
    rtype, _rclass, ttl, rdlength = _RR.unpack_from(data, pos)
    rdata = pos + 10
    end = rdata + rdlength
    if end > n:
        raise Malformed("rdata runs past the packet")
    if rtype == OPT:
        # RFC 6891 6.1.1: one OPT, root owner, additional section. Stripped from the stored
        # copy, so only accepted as the last record (nothing after it can point into it).
        if index < an + ns or parsed.opt_at >= 0 or data[owner] != 0 or index != an + ns + ar - 1:
            raise Malformed("misplaced OPT")
        if ttl >> 24:
            raise Malformed("extended RCODE set")  # BADVERS, BADCOOKIE...: errors
        parsed.opt_at = owner
        return end
    if rtype == TSIG:
        raise Malformed("TSIG-signed")
    if ttl & 0x80000000:
        ttl = 0  # RFC 2181 8: a TTL with the top bit set is treated as zero
    capped = ttl
    if rtype == SOA and an <= index < an + ns:
        minimum = _soa_minimum(data, rdata, end)
        if parsed.soa_min < 0 or minimum < parsed.soa_min:
            parsed.soa_min = minimum
        capped = min(ttl, minimum)  # RFC 2308 5: negative-answer SOA TTL is min(TTL, MINIMUM)
    parsed.ttls.append((pos + 4, ttl, capped))
    if ttl < parsed.minimum:
        parsed.minimum = ttl
    return end


def parse(data: bytes) -> _Parsed:
    """Walk a response once: header, question, every record; raise Malformed on anything odd."""
    if len(data) < 12:
        raise Malformed("short header")
    _id, flags, qdcount, an, ns, ar = _HEADER.unpack_from(data)
    if not flags & 0x8000 or flags & 0x7800:
        raise Malformed("not a response to a standard query")
    if flags & 0x0200:
        raise Malformed("truncated")  # CoreDNS cache.key: truncated answers are not stored
    if qdcount != 1:
        raise Malformed("QDCOUNT != 1")
    parsed = _Parsed()
    parsed.rcode = flags & 0x000F
    parsed.counts = (an, ns, ar)
    pos = parsed.qend = names.question_end(data)
    for index in range(an + ns + ar):
        pos = _record(data, pos, index, parsed)
    if pos != len(data):
        raise Malformed("trailing bytes")
    return parsed


def _classify(parsed: _Parsed) -> tuple[bool, int] | None:
    """(is_denial, TTL before clamping) per RFC 2308 / CoreDNS, or None: not cacheable."""
    if not parsed.ttls:
        return None  # no TTL-bearing record (OPT aside): nothing says how long it holds
    an = parsed.counts[0]
    if parsed.rcode == NOERROR and an:
        return False, parsed.minimum
    if parsed.rcode in (NOERROR, NXDOMAIN):
        if parsed.soa_min < 0:
            return None  # RFC 2308 5: no SOA, no negative caching (also: referrals)
        return True, min(parsed.minimum, parsed.soa_min)
    return None  # SERVFAIL, REFUSED, FORMERR, NOTIMP...: CoreDNS's "error" class


class _Entry:
    """One cached response, split around the question so the client's can be spliced in.

    ``body`` is the whole response after the ID as it should be served during the current
    second: the hit path is one float comparison (``now < tick``) and one concatenation.
    """

    __slots__ = (
        "key",
        "store",
        "stored",
        "expires",
        "tick",
        "duration",
        "head",
        "head_opt",
        "question",
        "fields",
        "rendered",
        "body",
        "stale",
        "hits",
        "last_hit",
        "prefetching",
    )

    def __init__(self, key: bytes, store: _Store, now: float, duration: int) -> None:
        self.key = key
        self.store = store
        self.stored = now
        self.expires = now + duration
        self.tick = now + 1  # when ``rendered`` is a second old (never after ``expires``)
        self.duration = duration
        self.head = b""  # flags + four counts (10 bytes), ARCOUNT without OPT
        self.head_opt = b""  # the same with ARCOUNT + 1, for a caller-supplied OPT
        self.question = b""  # the upstream's question, lowercased
        self.fields: tuple[tuple[int, int], ...] = ()  # (offset in rendered, stored TTL)
        self.rendered = b""  # the sections after the question, OPT stripped, TTLs counted down
        self.body = b""  # head + question + rendered
        self.stale = b""  # rendered with every TTL set to the stale TTL, made on first use
        self.hits = 0  # prefetch popularity (CoreDNS freq.Freq): hits with no gap > duration
        self.last_hit = float("-inf")
        self.prefetching = False

    def render(self, now: float) -> None:
        """Count the stored TTLs down by the whole seconds since stored, never below 0 (RFC
        2181 8), for the second ``now`` falls in."""
        elapsed = int(now - self.stored)
        if elapsed < 0:
            elapsed = 0  # a clock (or a caller's ``now``) behind the store time
        buf = bytearray(self.rendered)
        pack = _U32.pack_into
        for offset, ttl in self.fields:
            left = ttl - elapsed
            pack(buf, offset, left if left > 0 else 0)
        self.rendered = bytes(buf)
        self.body = self.head + self.question + self.rendered
        self.tick = self.stored + elapsed + 1

    def render_stale(self, ttl: int) -> bytes:
        if not self.stale:
            buf = bytearray(self.rendered)
            for offset, _ in self.fields:
                _U32.pack_into(buf, offset, ttl)
            self.stale = bytes(buf)
        return self.stale


class _Store:
    """One of the two caches (success, denial): a dict, a FIFO eviction queue, counters."""

    __slots__ = (
        "name",
        "capacity",
        "max_ttl",
        "min_ttl",
        "map",
        "order",
        "hits",
        "misses",
        "evictions",
        "prefetches",
        "stale_served",
    )

    def __init__(self, name: str, capacity: int, max_ttl: int, min_ttl: int) -> None:
        self.name = name
        self.capacity = capacity
        self.max_ttl = max_ttl
        self.min_ttl = min_ttl
        self.map: dict[bytes, _Entry] = {}
        self.order: deque[_Entry] = deque()
        # Plain ints for metrics (CoreDNS coredns_cache_*{type=success|denial}).
        self.hits = 0  # fresh answers served
        self.misses = 0  # lookups that found this cache's entry expired (cold misses: cache-wide)
        self.evictions = 0  # entries pushed out by capacity
        self.prefetches = 0  # refreshes signalled by should_prefetch
        self.stale_served = 0  # expired answers served by get_stale

    def __len__(self) -> int:
        return len(self.map)

    @property
    def entries(self) -> int:
        return len(self.map)

    def clamp(self, ttl: int) -> int:
        """CoreDNS computeTTL: the TTL bounded to [min TTL, cap]."""
        return max(self.min_ttl, min(ttl, self.max_ttl))

    def insert(self, entry: _Entry) -> None:
        key = entry.key
        old = self.map.pop(key, None)
        if old is None and len(self.map) >= self.capacity:
            self._evict()
        self.map[key] = entry
        self.order.append(entry)
        if len(self.order) > 2 * self.capacity + 64:
            # Replaced and expired entries leave dead slots behind; rebuild from the dict,
            # whose order is insertion order (we always pop before inserting).
            self.order = deque(self.map.values())

    def _evict(self) -> None:
        entries, order = self.map, self.order
        while order:
            victim = order.popleft()
            if entries.get(victim.key) is victim:
                del entries[victim.key]
                self.evictions += 1
                return

    def discard(self, key: bytes) -> None:
        self.map.pop(key, None)  # the queue's slot dies with it

    def counters(self) -> dict[str, int]:
        return {
            "entries": len(self.map),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "prefetches": self.prefetches,
            "stale_served": self.stale_served,
        }


class ResponseCache:
    """Success and denial caches for forwarded responses (CoreDNS ``cache``)."""

    def __init__(
        self,
        success_capacity: int = DEFAULT_CAPACITY,
        denial_capacity: int = DEFAULT_CAPACITY,
        success_ttl: int = SUCCESS_TTL,
        denial_ttl: int = DENIAL_TTL,
        min_ttl: int = MIN_TTL,
        min_denial_ttl: int = MIN_TTL,
        serve_stale: float = 0.0,
        prefetch: int = 0,
        prefetch_percentage: int = PREFETCH_PERCENTAGE,
        clock: Callable[[], float] = time.monotonic,
        *,
        prefetch_duration: float = PREFETCH_DURATION,
        stale_ttl: int = STALE_TTL,
    ) -> None:
        self.success = _Store("success", success_capacity, success_ttl, min_ttl)
        self.denial = _Store("denial", denial_capacity, denial_ttl, min_denial_ttl)
        self.serve_stale = serve_stale  # seconds past expiry an entry may be served (RFC 8767)
        self.stale_ttl = stale_ttl
        self.prefetch = prefetch  # CoreDNS prefetch AMOUNT; 0 = off
        self.prefetch_duration = prefetch_duration  # CoreDNS prefetch DURATION
        self.prefetch_percentage = prefetch_percentage  # CoreDNS prefetch PERCENTAGE
        self.clock = clock
        self.last_tick = 0.0  # render tick of the last hit: when its bytes stop being current
        self._success = self.success.map  # bound once: the hit path's first lookups
        self._denial = self.denial.map
        self.misses = 0  # cache-wide (CoreDNS coredns_cache_misses_total has no type label)
        self.drops = 0  # responses whose question is not the key's (coredns_cache_drops_total)
        self.uncacheable = 0  # errors, TC, no SOA, malformed...

    def __len__(self) -> int:
        return len(self._success) + len(self._denial)

    @property
    def hits(self) -> int:
        """Fresh answers served, both caches (counted per cache: one increment per hit)."""
        return self.success.hits + self.denial.hits

    # ------------------------------------------------------------------ write side

    def put(
        self,
        key: bytes,
        response: bytes,
        now: float | None = None,
        caps: tuple[int | None, int | None] | None = None,
    ) -> bool:
        """Store an upstream response under ``key``; False when it is not cacheable.

        ``now``: when the question was sent upstream (the clock's reading; default: now), the
        instant its TTLs count down from (see "When TTLs start" above). ``caps``: a forward
        zone's own (success, denial) TTL caps, below the cache's (CoreDNS: each server block's
        own ``cache``)."""
        try:
            parsed = parse(response)
        except ValueError:  # Malformed, or names.BadName from the name walkers
            self.uncacheable += 1
            return False
        question = response[12 : parsed.qend].lower()
        if key[: len(question)] != question or len(key) > len(question) + 1:
            self.drops += 1  # CoreDNS state.Match: the answer is not for this question
            return False
        kind = _classify(parsed)
        if kind is None:
            self.uncacheable += 1
            return False
        denial, ttl = kind
        store = self.denial if denial else self.success
        duration = store.clamp(ttl)
        cap = None if caps is None else caps[1 if denial else 0]
        if cap is not None:
            duration = min(duration, cap)
        if duration <= 0 or store.capacity <= 0:
            self.uncacheable += 1
            return False
        entry = _Entry(key, store, self.clock() if now is None else now, duration)
        _fill(entry, response, parsed, question, denial)
        self._replace(key, entry, store)
        return True

    def _replace(self, key: bytes, entry: _Entry, store: _Store) -> None:
        other = self.success if store is self.denial else self.denial
        old = store.map.get(key) or other.map.get(key)
        if old is not None:
            # A refresh keeps the popularity gathered so far (CoreDNS doPrefetch: Freq.Reset).
            entry.hits = old.hits
            entry.last_hit = old.last_hit
            other.discard(key)
        store.insert(entry)

    def discard(self, key: bytes) -> None:
        self.success.discard(key)
        self.denial.discard(key)

    def expires(self, key: bytes) -> float:
        """When the entry under ``key`` stops being fresh (clock time; 0 when absent)."""
        entry = self._success.get(key) or self._denial.get(key)
        return entry.expires if entry is not None else 0.0

    def clear(self) -> None:
        for store in (self.success, self.denial):
            store.map.clear()
            store.order.clear()

    # ------------------------------------------------------------------ read side (hot path)

    def get(
        self,
        key: bytes,
        qid: bytes,
        question: bytes | None = None,
        opt: bytes = b"",
        now: float | None = None,
    ) -> bytes | None:
        """A fresh cached response for ``key``, or None.

        ``qid`` is the client's 2-byte ID. ``question`` is the client's question bytes (same
        length as the stored one: they differ in letter case only), echoed so the answer
        carries the client's spelling; owner names compressed to it follow. ``opt`` is an OPT
        record to append (ARCOUNT is bumped), for clients that sent one.
        """
        entry = self._success.get(key)
        if entry is None:
            entry = self._denial.get(key)
            if entry is None:
                self.misses += 1
                return None
        if now is None:
            now = self.clock()
        if now >= entry.tick:  # a new second (TTLs to count down) or expired: the slow path
            if now >= entry.expires:
                self._expired(entry, now)
                return None
            entry.render(now)
        entry.store.hits += 1
        self.last_tick = entry.tick  # the reply holds until then (killer wire cache)
        if self.prefetch:
            _count_hit(entry, now, self.prefetch_duration)
        if opt:
            return b"".join((qid, entry.head_opt, question or entry.question, entry.rendered, opt))
        if question is None or question == entry.question:
            return qid + entry.body
        return qid + entry.head + question + entry.rendered

    def _expired(self, entry: _Entry, now: float) -> None:
        self.misses += 1
        entry.store.misses += 1
        if now >= entry.expires + self.serve_stale:
            entry.store.discard(entry.key)  # past any stale window: drop it now

    def get_stale(
        self,
        key: bytes,
        qid: bytes,
        question: bytes | None = None,
        opt: bytes = b"",
        now: float | None = None,
    ) -> bytes | None:
        """For when the upstreams fail (RFC 8767): the entry if fresh, else if expired no more
        than ``serve_stale`` seconds ago, with every TTL set to ``stale_ttl``; else None."""
        if self.serve_stale <= 0:
            return None
        entry = self._success.get(key) or self._denial.get(key)
        if entry is None:
            return None
        if now is None:
            now = self.clock()
        if now < entry.expires:
            return self.get(key, qid, question, opt, now)
        if now >= entry.expires + self.serve_stale:
            entry.store.discard(key)
            return None
        entry.store.stale_served += 1
        body = entry.render_stale(self.stale_ttl)
        head = entry.head_opt if opt else entry.head
        return b"".join((qid, head, question or entry.question, body, opt))

    # ------------------------------------------------------------------ prefetch

    def should_prefetch(self, key: bytes, now: float | None = None) -> bool:
        """True once for a popular entry in the last ``prefetch_percentage``% of its TTL.

        CoreDNS shouldPrefetch: popular is ``prefetch`` hits with no gap of
        ``prefetch_duration`` between them (counted by ``get``); the threshold is
        ceil(percentage% of the original TTL), so at least the last second. The caller
        refreshes in the background and ``put``s the answer, which replaces the entry.
        """
        if self.prefetch <= 0:
            return False
        entry = self._success.get(key) or self._denial.get(key)
        if entry is None or entry.prefetching:
            return False
        if now is None:
            now = self.clock()
        if now >= entry.expires or entry.hits < self.prefetch:
            return False
        left = entry.duration - int(now - entry.stored)
        threshold = -(-self.prefetch_percentage * entry.duration // 100)
        if left > threshold:
            return False
        entry.prefetching = True
        entry.store.prefetches += 1
        return True

    # ------------------------------------------------------------------ metrics

    def counters(self) -> dict[str, dict[str, int]]:
        """Plain ints for metrics, per cache; ``total`` holds the cache-wide counts."""
        return {
            "success": self.success.counters(),
            "denial": self.denial.counters(),
            "total": {
                "entries": len(self),
                "hits": self.hits,
                "misses": self.misses,
                "drops": self.drops,
                "uncacheable": self.uncacheable,
            },
        }


def _count_hit(entry: _Entry, now: float, window: float) -> None:
    """CoreDNS freq.Update: a hit after a gap longer than ``window`` restarts the count."""
    if now - entry.last_hit > window:
        entry.hits = 1
    else:
        entry.hits += 1
    entry.last_hit = now


def _fill(entry: _Entry, response: bytes, parsed: _Parsed, question: bytes, denial: bool) -> None:
    """Split the response around the question, strip OPT, cap and index every TTL field."""
    duration = entry.duration
    qend = parsed.qend
    end = parsed.opt_at if parsed.opt_at >= 0 else len(response)
    an, ns, ar = parsed.counts
    if parsed.opt_at >= 0:
        ar -= 1
    flags = response[2:4]
    entry.head = flags + struct.pack("!HHHH", 1, an, ns, ar)
    entry.head_opt = flags + struct.pack("!HHHH", 1, an, ns, ar + 1)
    entry.question = question
    tail = bytearray(response[qend:end])
    fields = []
    for offset, ttl, soa_capped in parsed.ttls:
        # Never claim more than the cache keeps the entry for (CoreDNS serves the capped TTL
        # too), and a negative answer's SOA no more than its MINIMUM (RFC 2308 5).
        ttl = min(soa_capped if denial else ttl, duration)
        _U32.pack_into(tail, offset - qend, ttl)
        fields.append((offset - qend, ttl))
    entry.rendered = bytes(tail)
    entry.body = entry.head + question + entry.rendered
    entry.fields = tuple(fields)
