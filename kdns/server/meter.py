"""Per-query accounting, kept in plain Python ints and exported at scrape time.

One dict lookup per query: the key is (channel, qtype, zone, rcode), the value a flat list of
counters (count, duration sum, duration buckets, request-size buckets, response-size buckets).
No prometheus-client object is touched on the query path; kdns.metrics folds these rows into
metric families (by proto/family/type/zone, by rcode, histograms) when /metrics is scraped.
"""

from __future__ import annotations

import bisect
from typing import Any

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

# A row: three sums, then a sparse counter per (duration bucket, request-size bucket,
# response-size bucket) cell, so a query costs one increment however many histograms it
# feeds; the bucket counts of each histogram (and the query count) are summed at scrape time.
# Real traffic fills a handful of cells per row.
DURATION_SUM = 0
REQUEST_SIZE_SUM = 1
RESPONSE_SIZE_SUM = 2
CELLS = 3
N_DURATION = len(DURATION_BUCKETS) + 1
N_SIZE = len(SIZE_BUCKETS) + 1

Row = list[Any]  # [duration sum, request size sum, response size sum, {cell: count}]

_FAST_DURATION = DURATION_BUCKETS[0]


def type_name(qtype: bytes) -> str:
    if qtype == OTHER:
        return "other"
    return TYPE_NAMES.get(int.from_bytes(qtype, "big"), "other")


class Meter:
    __slots__ = ("rows",)

    MAX_ROWS = 4096  # beyond this (clients sending every qtype there is) new keys share "other"

    def __init__(self) -> None:
        self.rows: dict[tuple[int, bytes, str, int], Row] = {}

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
        row = self.rows.get((channel, qtype, zone, rcode))
        if row is None:
            row = self._new_row(channel, qtype, zone, rcode)
        row[DURATION_SUM] += seconds
        row[REQUEST_SIZE_SUM] += request_size
        row[RESPONSE_SIZE_SUM] += response_size
        # Nearly every answer takes microseconds and fits in 100-200 bytes: comparisons first,
        # bisect only for the rare slow or large one.
        d = 0 if seconds <= _FAST_DURATION else bisect.bisect_left(DURATION_BUCKETS, seconds)
        q = 1 if 0 < request_size <= 100 else bisect.bisect_left(SIZE_BUCKETS, request_size)
        if response_size <= 100:
            r = 1
        elif response_size <= 200:
            r = 2
        else:
            r = bisect.bisect_left(SIZE_BUCKETS, response_size)
        cells = row[CELLS]
        cell = (d * N_SIZE + q) * N_SIZE + r
        cells[cell] = cells.get(cell, 0) + 1

    def _new_row(self, channel: int, qtype: bytes, zone: str, rcode: int) -> Row:
        """The row for a key seen for the first time. Uncommon query types share the "other"
        row (bounded cardinality whatever clients send); the raw key then points at it, so
        the type is classified once, not per query."""
        shared = (channel, qtype if qtype in COMMON_TYPES else OTHER, zone, rcode)
        row = self.rows.get(shared)
        if row is None:
            row = self.rows[shared] = [0.0, 0, 0, {}]
        if len(self.rows) < self.MAX_ROWS:
            self.rows[(channel, qtype, zone, rcode)] = row
        return row

    @staticmethod
    def marginals(row: Row) -> tuple[int, list[int], list[int], list[int]]:
        """(count, duration buckets, request-size buckets, response-size buckets) of a row."""
        durations = [0] * N_DURATION
        requests = [0] * N_SIZE
        responses = [0] * N_SIZE
        for cell, value in list(row[CELLS].items()):
            d, rest = divmod(cell, N_SIZE * N_SIZE)
            q, r = divmod(rest, N_SIZE)
            durations[d] += value
            requests[q] += value
            responses[r] += value
        return sum(durations), durations, requests, responses

    def unique_rows(self) -> list[tuple[tuple[int, bytes, str, int], Row]]:
        """Each row once, under its classified key (aliases from raw qtypes skipped)."""
        return [
            (key, row)
            for key, row in list(self.rows.items())
            if key[1] in COMMON_TYPES or key[1] == OTHER
        ]
