"""First sights of search-path names: NXDOMAIN replies spliced from a sibling's, in the UDP loop.

A pod walking its search list asks names nobody asked before (``api.example.com.<ns>.svc.
cluster.local``, then ``...svc.cluster.local``, ...). The reply memo (kdns.server.replymemo)
holds repeated questions only, so each first sight took the whole standard path: header checks,
the name walk, two dict misses, the resolver, the reply's assembly. Yet once the resolver knows
a name's parent P as a negative parent (kdns.authority.resolver: every child of P that does not
exist is NXDOMAIN from the zone's SOA, which the zone shares between names of one length), the
reply to any other child of P of the same shape is the sibling's reply with the question swapped:

    client's ID + the sibling reply's flags and counts + the client's question + the sibling
    reply's body (the SOA, its owner a pointer into the question) and OPT record

A splice is kept by the query's bytes after its ID with its first label cut out: the flags and
counts, the first label's length, then everything after that label (the parent, type, class,
the OPT record; a one-COOKIE query by its bare query, as the memo keys it). Same key, same
parent, same name length, same type and EDNS: the same reply but for the question. Per use,
what the rule asks of the one name is asked anew: it does not exist (``exists``; unless the
parent itself does not exist, so has no child, which holds until the registry publishes a
change) and it is not in the derived memo (a name asked
before goes the standard path once more, is answered from the derived memo and so gets into
the reply memo: the splice takes first sights only, the memo repeats). A spliced reply puts
the name in the derived memo, as the resolver's rule does.

Invalidation, in one sentence: a splice is used only under the stamp it was checked under
(``replymemo.stamp_of``: moved by every change the registry publishes and every answer
refilled in place), and when the stamp moved it is checked again against the resolver
(``sibling_answer``: the rule still holds, no wildcard, the same shared Answer with the same
body); every setting the reply memo starts afresh on (stages, udp size, a new resolver, hosts,
forwarding) starts the splices afresh too (``ReplyForm._memo_reset``).
tests/test_splices.py fails when any of these goes.

Off with the memo (a stage that judges the client or rewrites the question, the query log);
UDP in batches only (TCP and the recvfrom path take the standard path). Bounded: MAX_SPLICES
keys, started afresh when full.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from kdns.dns.answer import Answer
from kdns.server.edns import cookie_key
from kdns.server.mmsg import BYTES_DATA
from kdns.server.replymemo import COOKIE_SIZE, M_ANSWER, M_QTYPE, M_SIZE, M_STAMP, meter_hits

if TYPE_CHECKING:
    from kdns.server.wire import Responder

MAX_SPLICES = 4096  # keys (about 570 B each: 2.3 MiB full)
NXDOMAIN = 3
# A splice's fields. It shares the reply memo entry's for the Answer, the query type, the meter
# rows, the bare query's size and the stamp (M_*: replymemo.meter_hits meters both alike);
# its own: the reply's bytes 2-12 (flags and counts), the reply after the question (the body
# and our OPT record), the body it was made of (a refill in place makes a new one), the bytes
# of the bare query after its question, the reply's size, the question's type and class, and
# whether the parent has no child at all (then no name of this shape exists: ``_childless``),
# and where the tail's bytes lie (the batched loop sends them from there: mmsg.BYTES_DATA).
S_HEAD, S_TAIL, S_BODY, S_AFTER, S_REPLY_SIZE, S_QTAIL, S_CHILDLESS, S_TAIL_AT = (
    0,
    1,
    3,
    4,
    13,
    14,
    15,
    16,
)
_QTYPE_CLASS = struct.Struct("!HH")


def key_of(data: bytes, cookie: bool) -> bytes:
    """A query's splice key (``data`` at least 13 bytes): its flags, counts and first label's
    length, then what follows the first label; ``cookie``: the query ends with one client
    COOKIE, keyed as its bare query (``edns.cookie_key``)."""
    rest = data[13 + data[12] :]
    if cookie:
        return data[2:13] + rest[:-14] + b"\x00\x00"
    return data[2:13] + rest


def splice(r: Responder, data: bytes, cookie: bool, stamp: object) -> list[Any] | None:
    """The splice that answers ``data`` (a query the reply memo did not hold, 13 bytes or
    more; ``cookie``: it ends with one client COOKIE), the name put in the derived memo; None
    when there is none, or the rule does not give this name the sibling's answer now. The
    reply is ``reply_of``: the UDP loop sends it in place (the query's ID and question with
    the splice's flags and counts written over the query's, then the splice's tail)."""
    rest = data[13 + data[12] :]  # key_of, inlined
    entry = r._splices.get(data[2:13] + (rest[:-14] + b"\x00\x00" if cookie else rest))  # type: ignore[union-attr]
    if entry is None:
        return None
    # question_end, inlined: the name, without the type and class
    name = data[12 : len(data) - entry[S_AFTER] - (COOKIE_SIZE + 4 if cookie else 4)].lower()
    key = name + entry[S_QTAIL]
    siblings = r.siblings
    if (
        (entry[M_STAMP] is not stamp and not _checked(r, entry, name, stamp))
        or key in r.derived
        or (not entry[S_CHILDLESS] and siblings.exists(name))  # type: ignore[union-attr]
    ):
        return None
    siblings.remember(key, entry[M_ANSWER])  # type: ignore[union-attr]
    return entry


def question_end(data: bytes, entry: list[Any], cookie: bool) -> int:
    """Where the question of ``data`` (a query of ``entry``'s shape) ends."""
    return len(data) - entry[S_AFTER] - (COOKIE_SIZE if cookie else 0)


def reply_of(data: bytes, entry: list[Any], cookie: bool) -> bytes:
    """The reply ``entry`` gives ``data``: the client's ID, the sibling reply's flags and
    counts, the client's question, the sibling reply's body and OPT record."""
    return data[:2] + entry[S_HEAD] + data[12 : question_end(data, entry, cookie)] + entry[S_TAIL]


def _checked(r: Responder, entry: list[Any], name: bytes, stamp: object) -> bool:
    """After the stamp moved: whether the rule still gives ``name`` (a name of the splice's
    shape) the splice's Answer with the same body; if so the splice is stamped ``stamp``."""
    qtype, qclass = _QTYPE_CLASS.unpack(entry[S_QTAIL])
    answer = r.siblings.sibling_answer(name, qtype, qclass)  # type: ignore[union-attr]
    if answer is None or answer is not entry[M_ANSWER] or answer.body is not entry[S_BODY]:
        return False
    entry[S_CHILDLESS] = _childless(r, name)
    entry[M_STAMP] = stamp
    return True


def _childless(r: Responder, name: bytes) -> bool:
    """Whether ``name``'s parent does not exist, so that no child of it does (a name with
    names below it exists: RFC 8020, the name table's empty non-terminals); true until the
    registry publishes a change, after which the splice is checked again."""
    return not r.siblings.exists(name[name[0] + 1 :])  # type: ignore[union-attr]


def learn(r: Responder, data: bytes, name: bytes, qend: int, answer: Answer, response: bytes, stamp: object) -> None:  # fmt: skip
    """The standard path answered ``data`` (UDP, a first sight: computed now) NXDOMAIN with
    ``answer``: when the negative-parent rule gives that Answer to every sibling of ``name``
    that does not exist, keep the reply's pieces by the query's splice key."""
    splices = r._splices
    siblings = r.siblings
    if splices is None or siblings is None or response[2] & 0x02 or not name[0]:
        return  # off, or truncated (a reply too large for the client's size is not spliced)
    size = len(data)
    after = size - qend
    cookie = False
    if after == 23:  # one client COOKIE: kept as the bare query (replymemo.key_of)
        cookie = cookie_key(data) is not None
        if not cookie:
            return
        after -= COOKIE_SIZE
        size -= COOKIE_SIZE
    elif after not in (0, 11):  # other options: never kept (as in the memo)
        return
    key = key_of(data, cookie)
    held = splices.get(key)
    if held is not None and held[M_STAMP] is stamp and held[M_ANSWER] is answer:
        return  # held already (a path that does not ask splices: recvfrom, the query log)
    qtype, qclass = _QTYPE_CLASS.unpack_from(data, qend - 4)
    if siblings.sibling_answer(name, qtype, qclass) is not answer:
        return
    if len(splices) >= MAX_SPLICES:
        r.stats.splice_evictions += len(splices)
        splices.clear()
    entry: list[Any] = [None] * 17
    entry[S_HEAD] = response[2:12]
    entry[S_TAIL] = tail = response[qend:]
    entry[S_TAIL_AT] = id(tail) + BYTES_DATA
    entry[M_ANSWER] = answer
    entry[S_BODY] = answer.body
    entry[S_AFTER] = after
    entry[M_QTYPE] = data[qend - 4 : qend - 2]
    entry[M_SIZE] = size
    entry[M_STAMP] = stamp
    entry[S_REPLY_SIZE] = len(response)
    entry[S_QTAIL] = data[qend - 4 : qend]
    entry[S_CHILDLESS] = _childless(r, name)
    splices[key] = entry


def row_key(entry: list[Any], channel: int, extra: int) -> tuple[Any, ...]:
    """The meter labels and sizes of a spliced reply (replymemo.meter_hits)."""
    return (channel, entry[M_QTYPE], entry[M_ANSWER].zone, NXDOMAIN, entry[M_SIZE] + extra, entry[S_REPLY_SIZE])  # fmt: skip


def record(r: Responder, plain: list[list[Any]], cookie: list[list[Any]], channel: int, seconds: float) -> None:  # fmt: skip
    """Spliced replies the batched UDP loop sent (their splices; ``cookie``: the queries
    carried a client COOKIE), each taking ``seconds`` from the read of its batch to the send:
    counted (as misses of the answers dict and the derived memo, which the standard path
    would have counted them as, and as splices) and metered."""
    r.stats.splice_hits += len(plain) + len(cookie)
    meter = r.meter
    if meter is not None:
        if plain:
            meter_hits(meter, plain, channel, seconds, False, row_key)
        if cookie:
            meter_hits(meter, cookie, channel, seconds, True, row_key)
