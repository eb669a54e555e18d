"""Killer mode's prefetcher: learn what clients ask next, and have it ready before they ask.

Two successor models (their tables in kdns.killer.chains), learned online from each client's consecutive queries (by source
address), with counts that decay (halved every ``half_life`` seconds) and bounded tables:

- names: ``A`` is followed by ``B`` (name + type) for one client, for names it asks again and
  again. Keyed by the client: what one client asks next is never predicted for another;
- shapes: the suffix ``S1`` is followed by ``S2`` behind the same leading labels. A pod's
  ndots:5 search-path walk is one shape for every name: ``X.<ns>.svc.cluster.local`` ->
  ``X.svc.cluster.local`` -> ``X.cluster.local`` -> ``X.<node domain>`` -> ``X``, so a walk
  for a name never seen before is predicted from the first step. Shapes are shared by all
  clients, so only a step of a search walk kdns can check is learned: ``S2`` is a proper
  suffix of ``S1`` (labels dropped from the left, down to the bare stem) or one of the
  configured ``search_domains``. No client can teach that ``X.prod.svc.cluster.local`` is
  followed by ``X.evil.example`` and so have other pods' names sent under a domain of its own.

A walk goes on only after NXDOMAIN or NODATA, so successors are predicted only then. A
predicted name in our zones is rendered now (lazily rendered names; negative answers into the
registry's memo); a forwarded one is fetched when the forward cache does not hold it.

Names pods repeat (a client polling an API every 15 s) are also tracked per name: the gap
between asks (EWMA) and its jitter. When the next ask is due after the cached answer expires,
the answer is refreshed just before that ask, so it is answered from the cache. A refresh
replaces the query the client would have caused; refreshes nobody used count as wasted, and
the wasted ones may never exceed ``share`` of upstream queries.

Who may steer it (see ``admits`` and ``allows``): only answered queries (NOERROR, NXDOMAIN, or
deferred to an upstream) of clients the ``admits`` hook accepts (forward.allow, no view of
their own) are learned from, and a prefetch is made only on behalf of such a client, for a
name it may ask itself (``allows``: the ACL). Each prefetch, walk step or refresh, is charged
to the client whose query caused it: a client earns ``1 + CLIENT_EXTRA`` credit per query it
sends, pays 1 per query of its own that went upstream and 1 per prefetch made for it, and
banks at most ``CLIENT_BURST``. A prefetch needs a credit of 1, or else a credit of 0 and a
token of the shared ``LOAN_RATE`` allowance (a pod polling one name, whose every ask is a
miss until the first refresh, gets that refresh without first paying ten misses): a client
never owes more than one query, and all of them together owe at most ``LOAN_RATE`` a second.
So the upstream queries a client causes never exceed 1.1 times the queries it sent, plus one
(random names cost what standard mode costs, plus a tenth at most).

Bounds: every table and schedule holds a fixed number of entries (``counters`` reports
them); predictions per observed query are capped (``MAX_RENDERS`` in our zones,
``MAX_PREDICTIONS`` in all), and so are renders per tick; no predicted name is longer than
255 bytes or has a label over 63.

Nothing here runs per query: the transports append observations to a list, and a timer
processes a bounded number of them every ``tick`` seconds (the rest are dropped, counted).
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

from kdns.killer.chains import (  # noqa: F401 (imported from markov before)
    MAX_LABEL,
    MAX_WIRE,
    Client,
    Period,
    Successors,
    is_proper_suffix,
    shape_of,
    split_labels,
    valid_name,
)

NOERROR = 0
NXDOMAIN = 3
DEFERRED = -1  # the transport's rcode for a query sent to an upstream (answer not in yet)
LEARNED = frozenset((NOERROR, NXDOMAIN, DEFERRED))  # answered queries; REFUSED & co. are not
# Observations learned per client per tick (640 a second): a pod walks a handful of names a
# lookup; past this a client is flooding, and learning from it would cost everyone's CPU.
PER_CLIENT_TICK = 32
FETCH_DEADLINE = 5.0  # seconds a prefetch may take before it counts as gone (forward timeout 2)
MAX_PREDICTIONS = 8  # names predicted per observed query (a walk has 3-6 steps)
MAX_RENDERS = 4  # of which rendered in our zones (a pod's walk has 2-3 cluster steps)
RENDERS_PER_TICK = 256  # in-zone renders per tick, all clients (a few ms of resolver time)
CLIENT_EXTRA = 0.1  # upstream queries a client may cause beyond one per query it sends
CLIENT_BURST = 64.0  # credit a client may bank: a quiet client cannot save up for a flood
LOAN_RATE = 5.0  # prefetches a second lent to clients with no credit, all clients together
LOAN_BURST = 20.0
MAX_CLIENTS = 65536  # clients remembered (least recently seen forgotten first)
MAX_PENDING = 4096  # prefetched answers awaiting a client (oldest given up, counted wasted)
_QSUFFIX = struct.Struct("!HH")


Warm = Callable[[bytes, int], bool]  # (wire name, qtype) -> True when it went upstream
Expiry = Callable[[bytes, int], float]  # (wire name, qtype) -> when the cached answer expires
Admits = Callable[[bytes], bool]  # packed client address -> may be learned from / prefetched for
Allows = Callable[[bytes, bytes, int], bool]  # (client, wire name, qtype) -> it may ask that


class Prefetcher:
    def __init__(
        self,
        *,
        is_ours: Callable[[bytes], bool],
        render: Callable[[bytes, int], None],
        fetch: Warm,
        expiry: Expiry,
        upstream_queries: Callable[[], int],
        admits: Admits | None = None,
        allows: Allows | None = None,
        search_domains: tuple[bytes, ...] = (),
        threshold: float = 0.4,
        share: float = 0.5,
        concurrency: int = 16,
        tick: float = 0.05,
        per_tick: int = 256,  # observations learned per tick (5,120/s): the rest of a flood is dropped
        walk_gap: float = 2.0,
        max_names: int = 16384,
        max_clients: int = MAX_CLIENTS,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.is_ours = is_ours
        self.render = render
        self.fetch = fetch
        self.expiry = expiry
        self.upstream_queries = upstream_queries
        self.admits = admits  # None: every client (no forward.allow, no views)
        self.allows = allows  # None: every name (no ACL)
        # Lowercased wire names (root label included) a walk may step to from any suffix: the
        # node's resolv.conf search domains pods inherit behind the cluster's own.
        self.search_domains = frozenset(d.lower() for d in search_domains if valid_name(d))
        self.threshold = threshold
        self.share = share
        self.concurrency = concurrency
        self.tick = tick
        self.per_tick = per_tick
        self.walk_gap = walk_gap
        self.max_names = max_names
        self.max_clients = max_clients
        self.max_pending = max_pending
        self.clock = clock
        self.names = Successors()  # (client, question) -> questions that client asked next
        self.shapes = Successors(max_keys=1024)
        self.seen: list[tuple[bytes, bytes, int, bool]] = []  # the transports append here
        self._clients: OrderedDict[bytes, Client] = OrderedDict()  # least recently seen first
        # (client, forwarded question) -> its asks: each client repeats on its own clock (a
        # name several pods poll is asked at several phases; one refresh may serve them all).
        self._periods: OrderedDict[tuple[bytes, bytes], Period] = OrderedDict()
        # (when, client, question): at most one live entry per period (so max_names), and
        # rebuilt from the live ones when stale ones (superseded, forgotten) take it over
        # 2 x max_names entries. Before, it kept ~240 B per random name for up to an hour.
        self._due: list[tuple[float, bytes, bytes]] = []
        # prefetched question -> until when it is good (insertion order: oldest first)
        self._pending: OrderedDict[bytes, float] = OrderedDict()
        self._next_sweep = 0.0
        self._renders_left = RENDERS_PER_TICK
        self._loans = LOAN_BURST  # tokens of the shared allowance (see the module's doc)
        self._loaned_at = clock()
        self.in_flight = 0
        self.typical_gap = 0.0  # EWMA of repeating names' gaps (seconds; 0: none seen yet)
        # Counters (metrics).
        self.observed = 0
        self.dropped = 0
        self.ignored = 0  # not learned from: unanswered, or a client not admitted
        self.predictions = 0
        self.issued = 0
        self.used = 0
        self.wasted = 0
        self.skipped = 0  # wanted but over the concurrency, share or client budget limit
        self.over_budget = 0  # of which: the client had not earned it
        self.denied = 0  # predicted for a client that may not ask it (ACL, forward.allow)
        self.capped = 0  # predicted but over a per-query or per-tick cap

    # ------------------------------------------------------------------ observing

    def observe(self, client: bytes, query: bytes, rcode: int, forwarded: bool) -> None:
        """What a transport calls per query it wants learned (cheap: one append). Bounded:
        past what one tick takes (a stalled loop, a flood), observations are only counted."""
        seen = self.seen
        if len(seen) < self.per_tick:
            seen.append((client, query, rcode, forwarded))
        else:
            self.dropped += 1

    def run(self) -> None:
        """One tick: learn from what was seen, refresh what is due."""
        seen, self.seen = self.seen, []
        now = self.clock()
        self._renders_left = RENDERS_PER_TICK
        if len(seen) > self.per_tick:
            self.dropped += len(seen) - self.per_tick
            seen = seen[: self.per_tick]  # contiguous: consecutive queries stay pairs
        per_client: dict[bytes, int] = {}
        for client, query, rcode, forwarded in seen:
            count = per_client.get(client, 0)
            if count >= PER_CLIENT_TICK:
                self.dropped += 1  # one client's flood: learning from it costs the rest
                continue
            per_client[client] = count + 1
            if rcode not in LEARNED:
                self.ignored += 1  # REFUSED, SERVFAIL, FORMERR...: nothing was answered
                continue
            question = _question(query)
            if question is None:
                self.ignored += 1
                continue
            state = self._client(client)
            if state is None:
                self.ignored += 1
                continue
            self._learn(client, state, question, rcode, forwarded, now)
        self._refresh_due(now)
        if now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + 1.0

    def _client(self, client: bytes) -> Client | None:
        """The client's state when it is admitted (None: learn nothing from it)."""
        if self.admits is not None and not self.admits(client):
            return None
        clients = self._clients
        state = clients.get(client)
        if state is None:
            if len(clients) >= self.max_clients:
                clients.popitem(last=False)
            state = clients[client] = Client()
        else:
            clients.move_to_end(client)
        return state

    def _learn(self, client: bytes, state: Client, question: bytes, rcode: int, forwarded: bool, now: float) -> None:  # fmt: skip
        self.observed += 1
        # Its budget: one query sent earns 1.1 (banked up to the burst); one that went
        # upstream itself costs 1 of it.
        credit = min(CLIENT_BURST, state.credit + 1.0 + CLIENT_EXTRA)
        state.credit = credit - 1.0 if rcode == DEFERRED else credit
        last = state.last
        if last and last != question and now - state.when <= self.walk_gap:
            self.names.learn((client, last), question, now)
            if last[-4:] == question[-4:]:
                shape = shape_of(last[:-4], question[:-4])
                if shape is not None and self._is_step(shape[0], shape[1]):
                    self.shapes.learn(shape[0], shape[1], now)
        state.last, state.when = question, now
        if forwarded:
            self._asked(client, question, now)
        if rcode == NXDOMAIN:  # a walk goes on after NXDOMAIN
            self._warm_all(client, state, self.predict(question, now, client), now)

    def _is_step(self, before: bytes, after: bytes) -> bool:
        """A shape any client may teach: a search walk's step kdns can check."""
        return is_proper_suffix(before, after) or after in self.search_domains

    def predict(self, question: bytes, now: float, client: bytes = b"") -> list[bytes]:
        """Questions likely to follow ``question`` from ``client`` (its own successors, a
        walk's next steps), at most ``MAX_PREDICTIONS``, every one a valid name."""
        out: list[bytes] = []
        for successor in self.names.likely((client, question), self.threshold, now):
            if len(out) >= MAX_PREDICTIONS:
                break
            out.append(successor)
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
                    if len(out) >= MAX_PREDICTIONS:
                        self.capped += 1
                        break
                    predicted = stem + suffix
                    if len(predicted) > MAX_WIRE:
                        continue  # a search domain behind a long stem: not a name
                    out.append(predicted + qtype)
                    nxt += self.shapes.likely(suffix, self.threshold, now)
                if not nxt or len(out) >= MAX_PREDICTIONS:
                    break
                frontier = nxt
            break
        self.predictions += len(out)
        return out

    # ------------------------------------------------------------------ warming

    def _warm_all(self, client: bytes, state: Client, questions: list[bytes], now: float) -> None:  # fmt: skip
        renders = 0
        for question in questions:
            name, qtype = question[:-4], int.from_bytes(question[-4:-2], "big")
            if not valid_name(name):
                continue
            if self.allows is not None and not self.allows(client, name, qtype):
                self.denied += 1
                continue
            if self.is_ours(name):
                if renders >= MAX_RENDERS or self._renders_left <= 0:
                    self.capped += 1
                    continue
                renders += 1
                self._renders_left -= 1
                self.render(name, qtype)
                continue
            if self.expiry(name, qtype) > now + 1.0:
                continue  # already cached for longer than a walk takes
            self._fetch(state, question, name, qtype, now)

    def _fetch(self, state: Client, question: bytes, name: bytes, qtype: int, now: float) -> None:  # fmt: skip
        if question in self._pending:
            return
        if state.credit < 1.0 and (state.credit < 0.0 or not self._may_lend(now)):
            self.skipped += 1
            self.over_budget += 1
            return
        if self.in_flight >= self.concurrency or not self._within_share():
            self.skipped += 1
            return
        if self.fetch(name, qtype):
            if state.credit < 1.0:
                self._loans -= 1.0  # lent: the client owes it
            state.credit -= 1.0
            self.issued += 1
            self.in_flight += 1
            # Good until its answer says (see fetched); a deadline meanwhile, so a prefetch
            # whose answer never comes is not pending forever.
            pending = self._pending
            if len(pending) >= self.max_pending:
                pending.popitem(last=False)  # given up on: counted as wasted
                self.wasted += 1
            pending[question] = now + FETCH_DEADLINE

    def _may_lend(self, now: float) -> bool:
        """Whether the shared allowance holds a token for a client with no credit (refilled
        at ``LOAN_RATE`` a second, at most ``LOAN_BURST`` held)."""
        self._loans = min(LOAN_BURST, self._loans + max(0.0, now - self._loaned_at) * LOAN_RATE)
        self._loaned_at = now
        return self._loans >= 1.0

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
        periods = self._periods
        period = periods.get(key)
        if period is None:
            if len(periods) >= self.max_names:
                periods.popitem(last=False)
            period = periods[key] = Period(now)
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
        if len(self._due) > 2 * self.max_names:
            self._compact()

    def _compact(self) -> None:
        """Keep the schedule's live entries only (one per period still known)."""
        periods = self._periods
        live: dict[tuple[bytes, bytes], tuple[float, bytes, bytes]] = {}
        for entry in self._due:
            key = (entry[1], entry[2])
            period = periods.get(key)
            if period is not None and period.due == entry[0]:
                live[key] = entry
        self._due = list(live.values())
        heapq.heapify(self._due)

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
                self._refresh(client, question, name, qtype, now)
                self._schedule(period, key, now + 1.0)  # look again when that answer is in
                continue
            if now - period.last > 3 * period.gap + 5:
                continue  # the client stopped asking
            if expiry < period.next_ask() + period.lead():
                self._refresh(client, question, name, qtype, now)

    def _refresh(self, client: bytes, question: bytes, name: bytes, qtype: int, now: float) -> None:  # fmt: skip
        """A refresh on behalf of the client that polls the name: still admitted, still
        allowed to ask it, and within its budget."""
        state = self._clients.get(client)
        if state is None:
            return  # forgotten (a flood of sources): it has no credit left
        if (self.admits is not None and not self.admits(client)) or (
            self.allows is not None and not self.allows(client, name, qtype)
        ):
            self.denied += 1
            return
        self._fetch(state, question, name, qtype, now)

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
            "ignored": self.ignored,
            "predictions": self.predictions,
            "issued": self.issued,
            "used": self.used,
            "wasted": self.wasted,
            "skipped": self.skipped,
            "over_budget": self.over_budget,
            "denied": self.denied,
            "capped": self.capped,
            "precision": self.used / decided if decided else 0.0,
            # Table sizes, in entries (each bounded; see the constructor).
            "names": len(self.names),
            "shapes": len(self.shapes),
            "clients": len(self._clients),
            "periods": len(self._periods),
            "schedule": len(self._due),
            "pending": len(self._pending),
        }


def _question(query: bytes) -> bytes | None:
    """Lowercased wire qname + qtype + qclass of a query message, None when malformed (a
    compression pointer, a name over 255 bytes, a short question)."""
    pos = 12
    end = min(len(query), 12 + MAX_WIRE)
    while pos < end:
        length = query[pos]
        if length == 0:
            if pos + 5 > len(query):
                return None
            return query[12 : pos + 1].lower() + query[pos + 1 : pos + 5]
        if length > MAX_LABEL:
            return None
        pos += length + 1
    return None
