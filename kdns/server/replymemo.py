"""The standard path's reply memo: a pre-rendered answer's whole reply kept by the query's bytes
after its ID, so a repeated question skips the header checks, the name walk and the reply's
assembly (``Responder.respond`` looks here first).

Invalidation, in one sentence: an entry is served only while the answers dict (or the derived
memo) it came from still maps its key to the same Answer object holding the same body bytes, and
the settings a reply depends on (udp_size, loadbalance, the stages) start the memo afresh when
they are set (``Responder._memo_reset``), as do swaps of what answers names other than through
the registry (hosts, the resolver, forwarding: ``Responder.forget_replies``).
tests/test_reply_memo.py and tests/test_hosts_chaos.py break when any of these goes.

The look is made once per change, not per hit: an entry keeps the stamp it was last checked
under (``stamp_of``), which moves whenever the registry publishes a change to what it answers
(``StampedAnswers``: derived answers included; a new registry's dict has a stamp of its own; a
dict without one, as before the first sync, has every hit looked up) or any Answer is refilled
in place (``Refills.mark``: a zone's shared negative answers when its SOA moves). While it has
not moved, a hit is the entry alone; the batched UDP loop checks a whole batch's entries so, in
C (``current``), and sends their kept replies from where they are (``M_IOV``).
tests/test_udp_memo.py breaks when a publish keeps the stamp or a refill keeps the mark.

A reply loadbalance rotates is kept too, with where its body lies (``M_TURNS``): each hit takes
the responder's next turn of the answer's records, and is looked up every time.
"""

from __future__ import annotations

import struct
from itertools import repeat
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

from kdns.dns.answer import Answer, Refills
from kdns.server.edns import cookie_key
from kdns.server.meter import FAST_DURATION
from kdns.server.mmsg import BYTES_DATA

if TYPE_CHECKING:
    from kdns.server.wire import Responder

FOREVER = float("inf")  # Responder.keep for replies that change only when their data does
MEMO_MAX = 32768  # entries (about 610 B each: 19 MiB full)
RENEW_AFTER = 4 * MEMO_MAX  # new questions a full memo turns away before it starts afresh
_QTYPES: dict[bytes, bytes] = {}  # at most 65,536 two-byte keys
# The fields of an entry: where its Answer came from (True: the answers dict, False: the derived
# memo), the key there, the Answer and its body when kept, the reply after the ID, the query type,
# the meter rows of UDP4 and UDP6, the meter they belong to, the bare query's size, the answers
# dict's stamp it was last checked under, the meter rows of the same query with a client COOKIE
# (its size is the bare one's + COOKIE_SIZE) on UDP4 and UDP6, the iovec of the reply after
# the ID (its address and length, packed: the batched UDP loop sends it from where it is), and,
# for a reply loadbalance rotates, where the body lies in the reply after the ID (else None).
M_REGISTRY, M_KEY, M_ANSWER, M_BODY, M_REPLY, M_QTYPE, M_ROWS, M_METER, M_SIZE, M_STAMP, M_COOKIE_ROWS, M_IOV, M_TURNS = 0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14  # fmt: skip
_IOV = struct.Struct("=QQ")
# The stamp of entries that are looked at on every hit (rotated replies; MISS): no stamp is it.
NEVER = object()
# What the batched loop takes for a question the memo does not hold: an entry no stamp matches.
MISS: list[Any] = [False, b"", None, None, b"", b"", None, None, None, 0, NEVER, None, None, _IOV.pack(0, 0), None]  # fmt: skip
COOKIE_SIZE = 12  # what one client COOKIE option adds to a query (RFC 7873 4.1: 4 + 8 bytes)
_ROW_SLOTS = (M_ROWS, M_ROWS + 1, M_COOKIE_ROWS, M_COOKIE_ROWS + 1)


def remember(r: Responder, data: bytes, key: bytes, answer: Answer, registry: bool, response: bytes, qend: int, rotated: bool = False) -> None:  # fmt: skip
    """Keep a pre-rendered answer's reply (``response``) by the query's bytes after its ID.

    Only replies the registry gives every client alike get here (no ACL, views, rewrite,
    autopath or template configured: ``Responder._memo_reset``; UDP). A reply loadbalance
    rotated (``rotated``: untruncated) is kept with where its body lies, and every hit on it
    takes the next turn of the answer's records (``reply_of``), as the standard path would;
    it is looked up on every hit (its stamp is ``NEVER``), so the batched UDP loop answers it
    one by one.

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
        r.stats.memo_evictions += len(memo)
        memo.clear()
        r.memo_refused = 0
    qtype = _QTYPES.setdefault(r.qtype, r.qtype)  # one bytes object per type, not per entry
    reply = response[2:]
    iov = _IOV.pack(id(reply) + BYTES_DATA, len(reply))
    turns = (qend - 2, qend - 2 + len(answer.body)) if rotated else None
    stamp = NEVER if rotated else stamp_of(r)
    memo[memo_key] = [registry, key, answer, answer.body, reply, qtype, None, None, None, len(memo_key) + 2, stamp, None, None, iov, turns]  # fmt: skip


def key_of(data: bytes, qend: int) -> bytes | None:
    """The memo key of a query: its bytes after the ID; a one-COOKIE query shares the key of
    the same query without it (kdns acts on no cookie and answers both alike: ``cookie_key``).
    Other options: None (never kept: they would make every entry one client's, and they are
    rare)."""
    if len(data) == qend + 11 or len(data) == qend:
        return data[2:]
    return cookie_key(data) if len(data) == qend + 23 else None


def memo_keys(query: bytes) -> bool:
    """Whether the memo keeps replies to queries like ``query`` (``key_of`` without the
    question's end): no additional record, one option-less OPT record, or one client COOKIE."""
    tail = query[-11:]
    return (
        query[10:12] == b"\x00\x00"
        or (tail[:3] == b"\x00\x00\x29" and tail[-2:] == b"\x00\x00")
        or cookie_key(query) is not None
    )


def holds(r: Responder, entry: list[Any]) -> bool:
    """Whether ``entry`` may be served: its dict still maps its key to the same Answer, which
    still holds the same body bytes; looked at only when the stamp moved since the entry was
    last checked (the invalidation story above)."""
    stamp = stamp_of(r)
    return entry[M_STAMP] is stamp or checked(r, entry, stamp)


def current(entries: list[Any], stamp: object) -> list[bool]:
    """For each entry of a batch (``MISS`` where the memo had none): whether it was checked
    under ``stamp``, the current one, and so may be served without a look (``holds`` for a
    batch, minus the lookups, which the caller makes for the others one by one)."""
    return list(map(is_, map(_STAMP, entries), repeat(stamp)))


def iovecs(entries: list[Any]) -> memoryview:
    """The (address, length) pairs of the entries' replies after the ID, as 64-bit numbers
    (``MISS``: zeros)."""
    return memoryview(b"".join(map(_IOVEC, entries))).cast("Q")


def checked(r: Responder, entry: list[Any], stamp: object) -> bool:
    """After the stamp moved: whether ``entry``'s dict still maps its key to its Answer and
    that Answer still holds the body the entry's reply was made of; if so it is stamped
    ``stamp`` (the current one), and not looked at again until the stamp moves."""
    if entry is MISS:
        return False
    source = r.answers if entry[M_REGISTRY] else r.derived
    answer = source.get(entry[M_KEY])
    if answer is None or answer is not entry[M_ANSWER] or answer.body is not entry[M_BODY]:
        return False
    if entry[M_TURNS] is None:
        entry[M_STAMP] = stamp
    return True


def stamp_of(r: Responder) -> object:
    """The stamp entries are checked under: one object while neither the answers dict's stamp
    (``StampedAnswers``: replaced by every published change) nor ``Refills.mark`` (replaced
    by every answer refilled in place) moved. A plain dict has no stamp, and then every check
    looks the key up (a new object each time, which no entry holds)."""
    stamp = getattr(r.answers, "stamp", None)
    if stamp is None:
        return object()
    now = _STAMPS
    if now[0] is not stamp or now[1] is not Refills.mark:
        now[:] = [stamp, Refills.mark, object()]
    return now[2]


# The last (answers dict's stamp, refill mark) seen and the stamp they make together. Two
# registries in turn (tests) only cost lookups: each turn makes a stamp no entry holds.
_STAMPS: list[Any] = [None, None, None]


def recalled(r: Responder, data: bytes, entry: list[Any]) -> bytes:
    """A memo hit: the client's ID + the kept reply, counted as a dict answer is (the caller
    meters it, into the row the entry keeps: ``keep_row``)."""
    r.zone = entry[M_ANSWER].zone
    r.qtype = entry[M_QTYPE]
    r.keep = FOREVER if entry[M_TURNS] is None else 0.0  # a rotation is this reply's alone
    r.stats.memo_hits += 1
    if entry[M_REGISTRY]:
        r.stats.answer_hits += 1
    else:
        r.stats.derived_hits += 1
    return reply_of(r, data, entry)


def reply_of(r: Responder, data: bytes, entry: list[Any]) -> bytes:
    """The reply a hit on ``entry`` sends: the client's ID + the kept reply, or, for a reply
    loadbalance rotates, with the answer's records at the responder's next turn."""
    turns = entry[M_TURNS]
    if turns is None:
        return data[:2] + entry[M_REPLY]
    start, end = turns
    reply = entry[M_REPLY]
    return data[:2] + reply[:start] + entry[M_ANSWER].rotated(r.next_turn()) + reply[end:]


def keep_row(entry: list[Any], slot: int, meter: Any, row: list[float]) -> None:
    """Keep ``row`` in ``entry``'s ``slot`` (M_ROWS or M_COOKIE_ROWS + the channel); a new
    meter (a reload's) lets go of the rows of the old one, in every slot."""
    if entry[M_METER] is not meter:
        for other in _ROW_SLOTS:
            entry[other] = None
        entry[M_METER] = meter
    entry[slot] = row


def record_hits(r: Responder, hits: list[list[Any]], channel: int, seconds: float, cookie: bool = False) -> None:  # fmt: skip
    """Memo hits the batched UDP loop answered (``hits``, their entries) on ``channel``, each
    taking ``seconds`` from the read of its batch to the send of its reply (as killer mode's
    wire cache records its hits): counted as dict answers are, and metered (``cookie``: the
    queries carried a client COOKIE, and are that much larger)."""
    registry_hits = sum(map(_FROM_REGISTRY, hits))
    stats = r.stats
    stats.memo_hits += len(hits)
    stats.answer_hits += registry_hits
    stats.derived_hits += len(hits) - registry_hits
    if r.meter is not None:
        meter_hits(r.meter, hits, channel, seconds, cookie, row_key)


def row_key(entry: list[Any], channel: int, extra: int) -> tuple[Any, ...]:
    """The meter labels and sizes of a memo entry's reply (``extra``: what a client COOKIE
    adds to the query's size)."""
    reply = entry[M_REPLY]
    return (channel, entry[M_QTYPE], entry[M_ANSWER].zone, reply[1] & 0x0F, entry[M_SIZE] + extra, len(reply) + 2)  # fmt: skip


def meter_hits(meter: Any, hits: list[list[Any]], channel: int, seconds: float, cookie: bool, key_of_row: Any) -> None:  # fmt: skip
    """Meter replies the batched UDP loop sent without the standard path (memo hits, and
    kdns.server.splices' replies, whose entries keep their rows in the same fields), each
    into the row its entry keeps (``key_of_row`` makes it the first time)."""
    slot = (M_COOKIE_ROWS if cookie else M_ROWS) + channel
    extra = COOKIE_SIZE if cookie else 0
    fast = seconds <= FAST_DURATION
    for entry in hits:
        row = entry[slot]
        if row is None or entry[M_METER] is not meter:
            key = key_of_row(entry, channel, extra)
            row = meter.rows.get(key) or meter.new_row(*key)
            keep_row(entry, slot, meter, row)
        row[0] += seconds
        if fast:
            row[1] += 1
        else:
            meter.slow(row, seconds)


_FROM_REGISTRY = itemgetter(M_REGISTRY)
_STAMP = itemgetter(M_STAMP)
_IOVEC = itemgetter(M_IOV)
