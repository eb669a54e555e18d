"""What killer mode's prefetcher learns with, as plain tables: successor counts that decay
(``Successors``), the shape of a search-path step (``shape_of``), the names it may predict
(``valid_name``), the rhythm of a name asked again and again (``Period``) and what it keeps per
client (``Client``). Bounded each; kdns.killer.markov decides what to learn and to fetch."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_WIRE = 255  # RFC 1035 2.3.4: a name's wire length, root label included
MAX_LABEL = 63


class Successors:
    """Decayed counts of what follows what, bounded to ``max_keys`` predecessors (least
    recently updated dropped first) and ``max_next`` successors each (weakest dropped)."""

    def __init__(self, max_keys: int = 8192, max_next: int = 4, half_life: float = 600.0) -> None:
        self.max_keys = max_keys
        self.max_next = max_next
        self.half_life = half_life
        # key -> (stamp, counts); the order is the update order (an OrderedDict: dropping
        # the oldest is O(1), where a dict's next(iter()) walks the holes deletions leave).
        self._table: OrderedDict[Any, tuple[float, dict[Any, float]]] = OrderedDict()

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
                table.popitem(last=False)
            counts = {}
        else:
            table.move_to_end(key)
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


def is_proper_suffix(before: bytes, after: bytes) -> bool:
    """``after`` is ``before`` with one or more labels dropped from the left (the root, the
    bare stem's suffix, included)."""
    pos = 0
    end = len(before)
    while pos < end and before[pos]:
        pos += before[pos] + 1
        if before[pos:] == after:
            return True
    return False


def valid_name(name: bytes) -> bool:
    """A wire name that can go on the wire: at most 255 bytes, no label over 63, ends at the
    root exactly where its labels say."""
    if len(name) > MAX_WIRE:
        return False
    pos = 0
    end = len(name)
    while pos < end:
        length = name[pos]
        if length == 0:
            return pos == end - 1
        if length > MAX_LABEL:
            return False
        pos += length + 1
    return False


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


class Client:
    """What the prefetcher keeps per client: its last question (pairs for the models) and
    its credit of upstream queries (see the module's doc)."""

    __slots__ = ("last", "when", "credit")

    def __init__(self) -> None:
        self.last = b""
        self.when = 0.0
        self.credit = 0.0  # earned by queries sent, never given: a new address starts at 0
