"""The standard path's reply memo: a pre-rendered answer's whole reply kept by the query's bytes
after its ID, so a repeated question skips the header checks, the name walk and the reply's
assembly (``Responder.respond`` looks here first).

Invalidation, in one sentence: an entry is served only while the answers dict (or the derived
memo) it came from still maps its key to the same Answer object holding the same body bytes, and
the settings a reply depends on (udp_size, loadbalance, the stages) start the memo afresh when
they are set (``Responder._memo_reset``). tests/test_reply_memo.py breaks when either goes.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

from kdns.dns.answer import Answer
from kdns.server.meter import FAST_DURATION

if TYPE_CHECKING:
    from kdns.server.wire import Responder

FOREVER = float("inf")  # Responder.keep for replies that change only when their data does
MEMO_MAX = 16384  # entries; then the memo starts afresh
# The fields of an entry.
M_REGISTRY, M_KEY, M_ANSWER, M_BODY, M_REPLY, M_QTYPE, M_ROWS, M_METER = 0, 1, 2, 3, 4, 5, 6, 8


def remember(r: Responder, data: bytes, key: bytes, answer: Answer, registry: bool, response: bytes, qend: int) -> None:  # fmt: skip
    """Keep a pre-rendered answer's reply (``response``) by the query's bytes after its ID.

    Only replies the registry gives every client alike get here (no ACL, views, rewrite,
    autopath or template configured: ``Responder._memo_reset``; no rotation; UDP), and only
    queries without EDNS options (a client cookie would make every entry one client's).
    Bounded: MEMO_MAX entries, then it starts afresh, so a flood of names costs an insert
    each and nothing more."""
    if len(data) > qend + 11:
        return  # EDNS options (a cookie): this client's bytes alone
    memo = r._memo
    if memo is None:
        return
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[data[2:]] = [registry, key, answer, answer.body, response[2:], r.qtype, None, None, None]  # fmt: skip


def recalled(r: Responder, data: bytes, channel: int, entry: list[Any]) -> bytes:
    """A memo hit: the client's ID + the kept reply, counted as a dict answer is, and
    metered into the row kept with the entry (one per UDP channel)."""
    started = perf_counter()
    response = data[:2] + entry[M_REPLY]
    r.zone = entry[M_ANSWER].zone
    r.qtype = entry[M_QTYPE]
    r.keep = FOREVER
    if entry[M_REGISTRY]:
        r.stats.answer_hits += 1
    else:
        r.stats.derived_hits += 1
    meter = r.meter
    if meter is not None:
        row = entry[M_ROWS + channel]
        if row is None or entry[M_METER] is not meter:
            row = meter.rows.get(
                (channel, r.qtype, r.zone, response[3] & 0x0F, len(data), len(response))
            ) or meter.new_row(channel, r.qtype, r.zone, response[3] & 0x0F, len(data), len(response))  # fmt: skip
            entry[M_ROWS + channel] = row
            entry[M_METER] = meter
        seconds = perf_counter() - started
        row[0] += seconds
        if seconds <= FAST_DURATION:
            row[1] += 1
        else:
            meter.slow(row, seconds)
    return response
