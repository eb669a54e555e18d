"""The per-query meter: exact totals from rows keyed by sizes, bounded cardinality."""

from __future__ import annotations

from kdns.server.meter import OTHER, TCP4, UDP4, Meter, size_bucket


def test_totals_are_exact_per_label_set() -> None:
    meter = Meter()
    for _ in range(3):
        meter.record(UDP4, b"\x00\x01", "cluster.local", 0, 0.00001, 50, 80)
    meter.record(UDP4, b"\x00\x01", "cluster.local", 0, 0.002, 60, 300)  # slow, bigger
    meter.record(TCP4, b"\x00\x01", "cluster.local", 3, 0.00001, 50, 110)
    totals = meter.totals()
    udp = totals[(UDP4, b"\x00\x01", "cluster.local", 0)]
    assert udp.count == 4
    assert udp.durations[0] == 3 and sum(udp.durations) == 4
    assert udp.request_sum == 3 * 50 + 60 and udp.response_sum == 3 * 80 + 300
    assert udp.response_sizes[size_bucket(80)] == 3 and udp.response_sizes[size_bucket(300)] == 1
    assert totals[(TCP4, b"\x00\x01", "cluster.local", 3)].count == 1


def test_uncommon_types_count_as_other_once() -> None:
    meter = Meter()
    for qtype in (b"\x01\x00", b"\x01\x01", b"\x01\x00"):
        meter.record(UDP4, qtype, ".", 5, 0.00001, 40, 40)
    totals = meter.totals()
    assert list(totals) == [(UDP4, OTHER, ".", 5)]
    assert totals[(UDP4, OTHER, ".", 5)].count == 3


def test_rows_are_bounded_whatever_clients_send() -> None:
    meter = Meter()
    for size in range(20, 20 + Meter.MAX_ROWS * 2):
        meter.record(UDP4, b"\x00\x01", ".", 0, 0.00001, size % 4000 + 17, 60)
    assert len(meter.rows) <= Meter.MAX_ROWS + 20  # past the cap, sizes share bucket rows
    assert sum(t.count for t in meter.totals().values()) == Meter.MAX_ROWS * 2
