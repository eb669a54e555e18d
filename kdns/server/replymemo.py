"""The standard path's reply memo: a pre-rendered answer's whole reply kept by the query's bytes
after its ID, so a repeated question skips the header checks, the name walk and the reply's
assembly (``Responder.respond`` looks here first).

Invalidation, in one sentence: an entry is served only while the answers dict (or the derived
memo) it came from still maps its key to the same Answer object holding the same body bytes, and
the settings a reply depends on (udp_size, loadbalance, the stages) start the memo afresh when
they are set (``Responder._memo_reset``). tests/test_reply_memo.py breaks when either goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdns.dns.answer import Answer
from kdns.server.edns import cookie_key

if TYPE_CHECKING:
    from kdns.server.wire import Responder

FOREVER = float("inf")  # Responder.keep for replies that change only when their data does
MEMO_MAX = 32768  # entries (about 550 B each: 18 MiB full)
RENEW_AFTER = 4 * MEMO_MAX  # new questions a full memo turns away before it starts afresh
_QTYPES: dict[bytes, bytes] = {}  # at most 65,536 two-byte keys
# The fields of an entry.
M_REGISTRY, M_KEY, M_ANSWER, M_BODY, M_REPLY, M_QTYPE, M_ROWS, M_METER = 0, 1, 2, 3, 4, 5, 6, 8


def remember(r: Responder, data: bytes, key: bytes, answer: Answer, registry: bool, response: bytes, qend: int) -> None:  # fmt: skip
    """Keep a pre-rendered answer's reply (``response``) by the query's bytes after its ID.

    Only replies the registry gives every client alike get here (no ACL, views, rewrite,
    autopath or template configured: ``Responder._memo_reset``; no rotation; UDP).

    Bounded: MEMO_MAX entries. A full memo keeps what it holds (a stale entry is replaced
    when its question comes again) and turns new questions away, counting them; after
    ``RENEW_AFTER`` of those it starts afresh, so names that became popular get in. Clients
    asking more distinct questions than it holds (a cycle over 60,000 names) thus keep the
    hits of the ones it holds, instead of paying an insert and a periodic clear per query."""
    memo = r._memo
    if memo is None:
        return
    memo_key = key_of(data, qend)
    if memo_key is None:
        return
    if len(memo) >= MEMO_MAX and memo_key not in memo:
        r.memo_refused += 1
        if r.memo_refused < RENEW_AFTER:
            return
        memo.clear()
        r.memo_refused = 0
    qtype = _QTYPES.setdefault(r.qtype, r.qtype)  # one bytes object per type, not per entry
    memo[memo_key] = [registry, key, answer, answer.body, response[2:], qtype, None, None, None]  # fmt: skip


def key_of(data: bytes, qend: int) -> bytes | None:
    """The memo key of a query: its bytes after the ID; a one-COOKIE query shares the key of
    the same query without it (kdns acts on no cookie and answers both alike: ``cookie_key``).
    Other options: None (never kept: they would make every entry one client's, and they are
    rare)."""
    if len(data) == qend + 11 or len(data) == qend:
        return data[2:]
    return cookie_key(data) if len(data) == qend + 23 else None


def holds(r: Responder, entry: list[Any]) -> bool:
    """Whether ``entry`` may be served: its dict still maps its key to the same Answer, and
    that Answer still holds the same body bytes (the invalidation story above)."""
    answer = entry[M_ANSWER]
    source = r.answers if entry[M_REGISTRY] else r.derived
    return answer.body is entry[M_BODY] and source.get(entry[M_KEY]) is answer


def recalled(r: Responder, data: bytes, entry: list[Any]) -> bytes:
    """A memo hit: the client's ID + the kept reply, counted as a dict answer is (the caller
    meters it, into the row the entry keeps: ``keep_row``)."""
    r.zone = entry[M_ANSWER].zone
    r.qtype = entry[M_QTYPE]
    r.keep = FOREVER
    if entry[M_REGISTRY]:
        r.stats.answer_hits += 1
    else:
        r.stats.derived_hits += 1
    return data[:2] + entry[M_REPLY]


def keep_row(entry: list[Any], channel: int, meter: Any, row: list[float]) -> None:
    """The meter row of ``entry``'s replies on ``channel`` (UDP4 or UDP6), kept with it."""
    entry[M_ROWS + channel] = row
    entry[M_METER] = meter
