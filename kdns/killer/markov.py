"""Killer mode's prefetcher: learn what clients ask next, and have it ready before they ask.

Two successor models, learned online from each client's consecutive queries (by source
address), with counts that decay (halved every ``half_life`` seconds) and bounded tables:

- names: ``A`` is followed by ``B`` (name + type), for names asked again and again;
- shapes: the suffix ``S1`` is followed by ``S2`` behind the same leading labels. A pod's
  ndots:5 search-path walk is one shape for every name: ``X.<ns>.svc.cluster.local`` ->
  ``X.svc.cluster.local`` -> ``X.cluster.local`` -> ``X.<node domain>`` -> ``X``, so a walk
  for a name never seen before is predicted from the first step.

A walk goes on only after NXDOMAIN or NODATA, so successors are predicted only then. A
predicted name in our zones is rendered now (lazily rendered names; negative answers into the
registry's memo); a forwarded one is fetched when the forward cache does not hold it.

Names pods repeat (a client polling an API every 15 s) are also tracked per name: the gap
between asks (EWMA) and its jitter. When the next ask is due after the cached answer expires,
the answer is refreshed just before that ask, so it is answered from the cache. A refresh
replaces the query the client would have caused; refreshes nobody used count as wasted, and
the wasted ones may never exceed ``share`` of upstream queries.

Nothing here runs per query: the transports append observations to a list, and a timer
processes a bounded number of them every ``tick`` seconds (the rest are dropped, counted).
"""

from __future__ import annotations

import heapq
import struct
import time
from collections.abc import Callable
from typing import Any

NXDOMAIN = 3
FETCH_DEADLINE = 5.0  # seconds a prefetch may take before it counts as gone (forward timeout 2)
_QSUFFIX = struct.Struct("!HH")


class Successors:
    """Decayed counts of what follows what, bounded to ``max_keys`` predecessors (oldest
    updated dropped first) and ``max_next`` successors each (weakest dropped)."""

    def __init__(self, max_keys: int = 8192, max_next: int = 4, half_life: float = 600.0) -> None:
        self.max_keys = max_keys
        self.max_next = max_next
        self.half_life = half_life
        self._table: dict[Any, tuple[float, dict[Any, float]]] = {}  # key -> (stamp, counts)

    def __len__(self) -> int:
        return len(self._table)

    def _decayed(self, key: Any, now: float) -> dict[Any, float] | None:
        item = self._table.get(key)
        if item is None:
            return None
        stamp, counts = item
        age = now - stamp
        if age > 1.0:
            factor = 0.5 ** (age / self.half_life)
            for successor in counts:
                counts[successor] *= factor
            self._table[key] = (now, counts)
        return counts

    def learn(self, key: Any, successor: Any, now: float) -> None:
        counts = self._decayed(key, now)
        table = self._table
        if counts is None:
            if len(table) >= self.max_keys:
                del table[next(iter(table))]
            counts = {}
        else:
            del table[key]  # re-inserted last: the dict's order is the age order
        table[key] = (now, counts)
        counts[successor] = counts.get(successor, 0.0) + 1.0
        if len(counts) > self.max_next:
            del counts[min(counts, key=counts.__getitem__)]

    def likely(self, key: Any, threshold: float, now: float) -> list[Any]:
        """Successors whose share of the key's (decayed) count is at least ``threshold``."""
        counts = self._decayed(key, now)
        if not counts:
            return []
        total = sum(counts.values())
        if total < 1.0:
            return []  # decayed away: stale knowledge predicts nothing
        return [s for s, c in counts.items() if c / total >= threshold]


def split_labels(name: bytes) -> list[int]:
    """Offsets of each label of a lowercased wire name (the root excluded)."""
    offsets = []
    pos = 0
    while pos < len(name) and name[pos]:
        offsets.append(pos)
        pos += name[pos] + 1
    return offsets


def shape_of(before: bytes, after: bytes) -> tuple[bytes, bytes, int] | None:
    """(suffix before, suffix after, stem length) when the two names share their leading
    labels and differ after them: ``x.a.b`` -> ``x.c`` is ``a.b.`` -> ``c.`` behind ``x``."""
    common = 0
    limit = min(len(before), len(after))
    while common < limit and before[common] and before[common] == after[common]:
        end = common + before[common] + 1
        if before[common:end] != after[common:end]:
            break
        common = end
    if common == 0 or before[common:] == after[common:]:
        return None
    return before[common:], after[common:], common


class Period:
    """When a name is asked again: EWMA of the gap between asks, and of its jitter."""

    __slots__ = ("last", "gap", "jitter", "asks", "due", "speculated")

    def __init__(self, now: float) -> None:
        self.last = now
        self.gap = 0.0
        self.jitter = 0.0
        self.asks = 1
        self.due = 0.0  # when a refresh is scheduled (0: none)
        self.speculated = False  # refreshed once at expiry on the strength of one ask

    def ask(self, now: float) -> None:
        gap = now - self.last
        if gap < 0.5:
            return  # the same burst (A and AAAA, retries): not a new ask
        if self.asks == 1:
            self.gap = gap
        else:
            self.jitter = 0.75 * self.jitter + 0.25 * abs(gap - self.gap)
            self.gap = 0.75 * self.gap + 0.25 * gap
        self.asks += 1
        self.last = now
        self.speculated = False

    def next_ask(self) -> float:
        return self.last + self.gap if self.asks >= 2 else 0.0

    def lead(self) -> float:
        """How long before the expected ask to refresh: a fifth of the gap or the jitter seen
        (with margin), at least a second, never more than half the gap. Early is cheap: the
        refreshed answer lives its whole TTL from then."""
        return min(max(1.0, 0.2 * self.gap, 3.0 * self.jitter + 0.25), 0.5 * self.gap)


Warm = Callable[[bytes, int], bool]  # (wire name, qtype) -> True when it went upstream
Expiry = Callable[[bytes, int], float]  # (wire name, qtype) -> when the cached answer expires


class Prefetcher:
    def __init__(
        self,
        *,
        is_ours: Callable[[bytes], bool],
        render: Callable[[bytes, int], None],
        fetch: Warm,
        expiry: Expiry,
        upstream_queries: Callable[[], int],
        threshold: float = 0.4,
        share: float = 0.5,
        concurrency: int = 16,
        tick: float = 0.05,
        per_tick: int = 512,
        walk_gap: float = 2.0,
        max_names: int = 16384,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.is_ours = is_ours
        self.render = render
        self.fetch = fetch
        self.expiry = expiry
        self.upstream_queries = upstream_queries
        self.threshold = threshold
        self.share = share
        self.concurrency = concurrency
        self.tick = tick
        self.per_tick = per_tick
        self.walk_gap = walk_gap
        self.max_names = max_names
        self.clock = clock
        self.names = Successors()
        self.shapes = Successors(max_keys=1024)
        self.seen: list[tuple[bytes, bytes, int, bool]] = []  # the transports append here
        self._last: dict[bytes, tuple[bytes, float]] = {}  # client -> (question, when)
        # (client, forwarded question) -> its asks: each client repeats on its own clock (a
        # name several pods poll is asked at several phases; one refresh may serve them all).
        self._periods: dict[tuple[bytes, bytes], Period] = {}
        self._due: list[tuple[float, bytes, bytes]] = []  # (when, client, question)
        self._pending: dict[bytes, float] = {}  # prefetched question -> until when it is good
        self.in_flight = 0
        self.typical_gap = 0.0  # EWMA of repeating names' gaps (seconds; 0: none seen yet)
        # Counters (metrics).
        self.observed = 0
        self.dropped = 0
        self.predictions = 0
        self.issued = 0
        self.used = 0
        self.wasted = 0
        self.skipped = 0  # wanted but over the concurrency or share limit

    # ------------------------------------------------------------------ observing

    def observe(self, client: bytes, query: bytes, rcode: int, forwarded: bool) -> None:
        """What a transport calls per query it wants learned (cheap: one append)."""
        self.seen.append((client, query, rcode, forwarded))

    def run(self) -> None:
        """One tick: learn from what was seen, refresh what is due."""
        seen, self.seen = self.seen, []
        now = self.clock()
        if len(seen) > self.per_tick:
            self.dropped += len(seen) - self.per_tick
            seen = seen[: self.per_tick]  # contiguous: consecutive queries stay pairs
        for client, query, rcode, forwarded in seen:
            question = _question(query)
            if question is not None:
                self._learn(client, question, rcode, forwarded, now)
        self._refresh_due(now)
        self._sweep(now)

    def _learn(self, client: bytes, question: bytes, rcode: int, forwarded: bool, now: float) -> None:  # fmt: skip
        self.observed += 1
        last = self._last.get(client)
        if last is not None and last[0] != question and now - last[1] <= self.walk_gap:
            self.names.learn(last[0], question, now)
            shape = shape_of(last[0][:-4], question[:-4])
            if shape is not None and last[0][-4:] == question[-4:]:
                self.shapes.learn(shape[0], shape[1], now)
        if len(self._last) >= 65536 and client not in self._last:
            self._last.clear()  # bounded: a flood of sources restarts the per-client memory
        self._last[client] = (question, now)
        if forwarded:
            self._asked(client, question, now)
        if rcode == NXDOMAIN:  # a walk goes on after NXDOMAIN
            for successor in self.predict(question, now):
                self._warm(successor, now)

    def predict(self, question: bytes, now: float) -> list[bytes]:
        """Questions likely to follow ``question`` (a walk's next steps included)."""
        out = list(self.names.likely(question, self.threshold, now))
        name, qtype = question[:-4], question[-4:]
        offsets = split_labels(name)
        for offset in offsets[1:]:  # longest suffix first; the stem is never empty
            suffixes = self.shapes.likely(name[offset:], self.threshold, now)
            if not suffixes:
                continue
            stem = name[:offset]
            seen_suffixes = {name[offset:]}
            frontier = suffixes
            for _ in range(6):  # follow the walk: each predicted suffix predicts the next
                nxt: list[bytes] = []
                for suffix in frontier:
                    if suffix in seen_suffixes:
                        continue
                    seen_suffixes.add(suffix)
                    out.append(stem + suffix + qtype)
                    nxt += self.shapes.likely(suffix, self.threshold, now)
                if not nxt:
                    break
                frontier = nxt
            break
        self.predictions += len(out)
        return out

    # ------------------------------------------------------------------ warming

    def _warm(self, question: bytes, now: float) -> None:
        name, qtype = question[:-4], int.from_bytes(question[-4:-2], "big")
        if self.is_ours(name):
            self.render(name, qtype)
            return
        if self.expiry(name, qtype) > now + 1.0:
            return  # already cached for longer than a walk takes
        self._fetch(question, name, qtype, now)

    def _fetch(self, question: bytes, name: bytes, qtype: int, now: float) -> None:
        if question in self._pending:
            return
        if self.in_flight >= self.concurrency or not self._within_share():
            self.skipped += 1
            return
        if self.fetch(name, qtype):
            self.issued += 1
            self.in_flight += 1
            # Good until its answer says (see fetched); a deadline meanwhile, so a prefetch
            # whose answer never comes is not pending forever.
            self._pending[question] = now + FETCH_DEADLINE

    def fetched(self, name: bytes, qtype: int, until: float) -> None:
        """The forwarder's callback when a prefetch ends: its answer is cached until
        ``until``, or nothing was cached (0: failed, or not cacheable) and it is wasted."""
        self.in_flight = max(0, self.in_flight - 1)
        question = name + _QSUFFIX.pack(qtype, 1)
        if question not in self._pending:
            return
        if until:
            self._pending[question] = until
        else:
            del self._pending[question]
            self.wasted += 1

    def _within_share(self) -> bool:
        """Speculative upstream queries that turn out unused stay within ``share`` of all
        upstream queries: those already wasted, plus those still pending weighted by the
        share of past prefetches that went unused (half, before there is any history)."""
        decided = self.used + self.wasted
        miss_rate = self.wasted / decided if decided >= 20 else 0.5
        pending = len(self._pending)
        expected_waste = self.wasted + pending * miss_rate
        return expected_waste < 8 or expected_waste <= self.share * max(1, self.upstream_queries())

    # ------------------------------------------------------------------ repeats

    def _asked(self, client: bytes, question: bytes, now: float) -> None:
        if self._pending.pop(question, None) is not None:
            self.used += 1
        key = (client, question)
        period = self._periods.get(key)
        if period is None:
            if len(self._periods) >= self.max_names:
                del self._periods[next(iter(self._periods))]
            period = self._periods[key] = Period(now)
            # Asked once: look again when its answer is cached, to refresh it as it expires
            # (names pods ask are mostly asked again; within the share of upstream queries).
            self._schedule(period, key, now + 1.0)
            return
        period.ask(now)
        if period.asks >= 2:
            # What repeating names' gaps look like: how long to keep a once-asked name warm.
            gap = period.gap
            self.typical_gap = gap if not self.typical_gap else 0.9 * self.typical_gap + 0.1 * gap
        expected = period.next_ask()
        if not expected:
            return
        name, qtype = question[:-4], int.from_bytes(question[-4:-2], "big")
        if self.expiry(name, qtype) >= expected + period.lead():
            return  # still cached when it is asked next
        self._schedule(period, key, max(now, expected - period.lead()))

    def _schedule(self, period: Period, key: tuple[bytes, bytes], when: float) -> None:
        period.due = when
        heapq.heappush(self._due, (when, *key))

    def _refresh_due(self, now: float) -> None:
        due = self._due
        while due and due[0][0] <= now:
            when, client, question = heapq.heappop(due)
            key = (client, question)
            period = self._periods.get(key)
            if period is None or period.due != when:
                continue  # superseded or forgotten
            period.due = 0.0
            name, qtype = question[:-4], int.from_bytes(question[-4:-2], "big")
            expiry = self.expiry(name, qtype)
            if period.asks < 2:
                # Asked once so far: keep the answer fresh, refreshing just before it expires,
                # until the gap other repeating names show has passed (once, when none has
                # been seen yet): a name asked again within it is then answered from cache.
                if not expiry:
                    continue  # nothing cacheable came back
                if expiry > now + 0.75:
                    self._schedule(period, key, expiry - 0.5)
                    continue
                horizon = self.typical_gap * 1.25 + 1.0 if self.typical_gap else 0.0
                if period.speculated and now - period.last > horizon:
                    continue  # not asked again within a typical gap: let it expire
                period.speculated = True
                self._fetch(question, name, qtype, now)
                self._schedule(period, key, now + 1.0)  # look again when that answer is in
                continue
            if now - period.last > 3 * period.gap + 5:
                continue  # the client stopped asking
            if expiry < period.next_ask() + period.lead():
                self._fetch(question, name, qtype, now)

    def _sweep(self, now: float) -> None:
        """Prefetched answers that expired before any client asked: wasted."""
        if not self._pending:
            return
        for question, until in list(self._pending.items()):
            if until <= now:
                del self._pending[question]
                self.wasted += 1

    def counters(self) -> dict[str, float]:
        decided = self.used + self.wasted
        return {
            "observed": self.observed,
            "dropped": self.dropped,
            "predictions": self.predictions,
            "issued": self.issued,
            "used": self.used,
            "wasted": self.wasted,
            "skipped": self.skipped,
            "precision": self.used / decided if decided else 0.0,
            "names": len(self.names),
            "shapes": len(self.shapes),
        }


def _question(query: bytes) -> bytes | None:
    """Lowercased wire qname + qtype + qclass of a query message, None when malformed."""
    pos = 12
    end = len(query)
    while pos < end:
        length = query[pos]
        if length == 0:
            if pos + 5 > end:
                return None
            return query[12 : pos + 1].lower() + query[pos + 1 : pos + 5]
        if length > 63:
            return None
        pos += length + 1
    return None
