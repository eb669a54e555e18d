"""Per-query accounting, kept in plain Python numbers and exported at scrape time.

One dict lookup and two additions per query (see ``Meter.record``). No prometheus-client
object is touched on the query path; kdns.metrics folds the rows into metric families (by
proto/family/type/zone, by rcode, histograms) when /metrics is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from kdns.dns.records import TYPE_NAMES

# Channels: transport and address family of the listener a query came in on.
UDP4, UDP6, TCP4, TCP6 = 0, 1, 2, 3
CHANNELS = {UDP4: ("udp", "1"), UDP6: ("udp", "2"), TCP4: ("tcp", "1"), TCP6: ("tcp", "2")}

# CoreDNS plugin/metrics/vars: request duration buckets, 0.25 ms doubling (prometheus
# ExponentialBuckets(0.00025, 2, 16)), and its size buckets.
DURATION_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)

# Types CoreDNS's metrics name; any other type is counted as "other" (bounded cardinality
# whatever clients send).
COMMON_TYPES = frozenset(
    t.to_bytes(2, "big")
    for t in (1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 46, 48, 64, 65, 251, 252, 255)
)
OTHER = b"\xff\xff"
FAST_DURATION = DURATION_BUCKETS[0]  # nearly every answer: the first bucket


def type_name(qtype: bytes) -> str:
    if qtype == OTHER:
        return "other"
    return TYPE_NAMES.get(int.from_bytes(qtype, "big"), "other")


# A row is keyed by the query's labels *and* its exact request and response sizes (which
# repeat: the same names are asked the same way), and holds the duration sum and duration
# bucket counts. A query then costs one dict lookup and two additions; the size histograms
# and sums come out exactly at scrape time (size x count per row).
N_DURATION = len(DURATION_BUCKETS) + 1
N_SIZE = len(SIZE_BUCKETS) + 1

Key = tuple[int, bytes, str, int, int, int]  # channel, qtype, zone, rcode, request, response
Row = list[float]  # [duration sum, duration bucket counts...]


def size_bucket(size: int) -> int:
    return 1 if 0 < size <= 100 else bisect.bisect_left(SIZE_BUCKETS, size)


class Totals:
    """One label set's numbers, summed over its rows (for the metrics collector)."""

    __slots__ = ("count", "durations", "duration_sum", "request_sizes", "request_sum",
                 "response_sizes", "response_sum")  # fmt: skip

    def __init__(self) -> None:
        self.count = 0
        self.durations = [0] * N_DURATION
        self.duration_sum = 0.0
        self.request_sizes = [0] * N_SIZE
        self.request_sum = 0
        self.response_sizes = [0] * N_SIZE
        self.response_sum = 0


class Meter:
    __slots__ = ("rows", "folders")

    # Past this many distinct keys (a flood of odd types and sizes) new ones share rows with
    # sizes rounded up to their histogram bucket: bounded memory, sums then approximate.
    MAX_ROWS = 8192

    def __init__(self) -> None:
        self.rows: dict[Key, Row] = {}
        # Called before the rows are read: counts kept elsewhere (killer mode's wire cache
        # counts hits per entry) are added in with ``absorb`` then.
        self.folders: list[Callable[[Meter], None]] = []

    def record(
        self,
        channel: int,
        qtype: bytes,
        zone: str,
        rcode: int,
        seconds: float,
        request_size: int,
        response_size: int,
    ) -> None:
        row = self.rows.get((channel, qtype, zone, rcode, request_size, response_size))
        if row is None:
            row = self.new_row(channel, qtype, zone, rcode, request_size, response_size)
        row[0] += seconds
        # Nearly every answer takes microseconds: a comparison, bisect only when slow.
        if seconds <= FAST_DURATION:
            row[1] += 1
        else:
            self.slow(row, seconds)

    @staticmethod
    def slow(row: Row, seconds: float) -> None:
        """Count a duration past the first bucket (the caller added it to the sum)."""
        row[1 + bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1

    def absorb(
        self,
        channel: int,
        qtype: bytes,
        zone: str,
        rcode: int,
        request_size: int,
        response_size: int,
        count: int,
        seconds: float,
    ) -> None:
        """Add ``count`` queries answered in under the first duration bucket each (together
        ``seconds``), as ``record`` would have one by one."""
        row = self.rows.get((channel, qtype, zone, rcode, request_size, response_size))
        if row is None:
            row = self.new_row(channel, qtype, zone, rcode, request_size, response_size)
        row[0] += seconds
        row[1] += count

    def new_row(self, channel: int, qtype: bytes, zone: str, rcode: int, request: int, response: int) -> Row:  # fmt: skip
        """The row for a key seen for the first time. Uncommon query types share the "other"
        label (the raw key then points at that row, so a type is classified once, not per
        query)."""
        full = len(self.rows) >= self.MAX_ROWS
        if full:
            request = _bound(request)
            response = _bound(response)
        shared = (
            channel,
            qtype if qtype in COMMON_TYPES else OTHER,
            zone,
            rcode,
            request,
            response,
        )
        row = self.rows.get(shared)
        if row is None:
            row = self.rows[shared] = [0.0] + [0] * N_DURATION
        if not full:
            self.rows[(channel, qtype, zone, rcode, request, response)] = row
        return row

    def totals(self) -> dict[tuple[int, bytes, str, int], Totals]:
        """(channel, qtype, zone, rcode) -> its totals, every row counted once."""
        for fold in self.folders:
            fold(self)
        out: dict[tuple[int, bytes, str, int], Totals] = {}
        for (channel, qtype, zone, rcode, request, response), row in list(self.rows.items()):
            if qtype not in COMMON_TYPES and qtype != OTHER:
                continue  # an alias of an "other" row
            count = int(sum(row[1:]))
            if not count:
                continue
            totals = out.get((channel, qtype, zone, rcode))
            if totals is None:
                totals = out[(channel, qtype, zone, rcode)] = Totals()
            totals.count += count
            totals.duration_sum += row[0]
            for index in range(N_DURATION):
                totals.durations[index] += int(row[1 + index])
            totals.request_sizes[size_bucket(request)] += count
            totals.request_sum += request * count
            totals.response_sizes[size_bucket(response)] += count
            totals.response_sum += response * count
        return out


def _bound(size: int) -> int:
    index = size_bucket(size)
    return int(SIZE_BUCKETS[index]) if index < len(SIZE_BUCKETS) else 65535
