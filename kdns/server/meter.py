"""Per-query accounting, kept in plain Python ints and exported at scrape time.

One dict lookup per query: the key is (channel, qtype, zone, rcode), the value a flat list of
counters (count, duration sum, duration buckets, request-size buckets, response-size buckets).
No prometheus-client object is touched on the query path; kdns.metrics folds these rows into
metric families (by proto/family/type/zone, by rcode, histograms) when /metrics is scraped.
"""

from __future__ import annotations

import bisect

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

COUNT = 0
DURATION_SUM = 1
REQUEST_SIZE_SUM = 2
RESPONSE_SIZE_SUM = 3
DURATION = 4
REQUEST_SIZE = DURATION + len(DURATION_BUCKETS) + 1
RESPONSE_SIZE = REQUEST_SIZE + len(SIZE_BUCKETS) + 1
ROW = RESPONSE_SIZE + len(SIZE_BUCKETS) + 1

_FAST_DURATION = DURATION_BUCKETS[0]


def type_name(qtype: bytes) -> str:
    if qtype == OTHER:
        return "other"
    return TYPE_NAMES.get(int.from_bytes(qtype, "big"), "other")


class Meter:
    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: dict[tuple[int, bytes, str, int], list[float]] = {}

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
        if qtype not in COMMON_TYPES:
            qtype = OTHER
        key = (channel, qtype, zone, rcode)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0] * ROW
        row[COUNT] += 1
        row[DURATION_SUM] += seconds
        row[REQUEST_SIZE_SUM] += request_size
        row[RESPONSE_SIZE_SUM] += response_size
        # Nearly every answer takes microseconds: skip the bisect for the first bucket.
        row[
            DURATION
            + (0 if seconds <= _FAST_DURATION else bisect.bisect_left(DURATION_BUCKETS, seconds))
        ] += 1
        row[
            REQUEST_SIZE
            + (1 if 0 < request_size <= 100 else bisect.bisect_left(SIZE_BUCKETS, request_size))
        ] += 1
        row[RESPONSE_SIZE + bisect.bisect_left(SIZE_BUCKETS, response_size)] += 1
