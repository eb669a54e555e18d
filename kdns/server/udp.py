"""DNS over UDP, in batches, for both modes: one loop reads, answers and sends.

On Linux the socket is read with recvmmsg(2) and answered with sendmmsg(2) (kdns.server.mmsg):
one system call for up to 64 datagrams each way, where a datagram at a time (an asyncio
datagram protocol) spends most of a Python server's time in system calls and callbacks.
Elsewhere the same loop reads with non-blocking recvfrom, one datagram per call.

Each datagram meets, in order: the reply memo (kdns.server.replymemo, batched path, both modes),
the ``front`` (killer mode's wire cache, when on: the same for what the memo does not hold),
then the standard path (``Responder.respond_anew``: pre-rendered answers, the resolver,
forwarding), then RRL; replies of a batch leave together, and the memo's hits are metered once
they left. Nothing here creates a task, logs or builds label dicts per query
(docs/architecture.md, the hot path). One bad datagram, or a bug that raises, costs that
datagram only: it is counted and the batch goes on.

The memo is asked for the whole batch at once, in C (``map`` over the receive slots: the keys,
the lookups, the stamp checks; one-COOKIE queries by their bare query's entry), and a hit is
sent from where its bytes already are: the client's ID where the kernel wrote it and the kept
reply where the memo holds it, as a message's two iovecs (kdns.server.mmsg). What the memo did
not answer is taken one by one and sent whole. The look over the batch is skipped while the
last batch had less than a quarter answered from the memo (a flood of names never asked
before would pay it twice), and the COOKIE pass while the last batch had no cookies.

The socket is registered with the event loop as a plain reader (no asyncio transport), so the
loop's other work (TCP, HTTP, watches, forwarding) runs between batches.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import socket
import time
from array import array
from itertools import compress, filterfalse, repeat
from operator import add, and_, eq, ge, getitem, gt, mul, not_, sub
from time import perf_counter
from typing import Any, Protocol

from kdns.server import replymemo, splices
from kdns.server.edns import COOKIE_OPTION
from kdns.server.meter import UDP4, UDP6
from kdns.server.mmsg import BYTES_DATA, LIBC, MSG_DONTWAIT, RECV_SLOT, SLOTS, Batch
from kdns.server.querylog import log_query
from kdns.server.replymemo import COOKIE_SIZE, M_STAMP, MISS
from kdns.server.rrl import SEND, SLIP, slip_reply
from kdns.server.splices import S_AFTER, S_HEAD, S_TAIL, S_TAIL_AT
from kdns.server.stats import Stats
from kdns.server.wire import DEFERRED, PEER_LATER, Query, Responder

log = logging.getLogger("kdns.udp")

WAKE_BATCHES = 16  # full batches per wake-up at most: let the loop's other work breathe
STARTS = [i * RECV_SLOT for i in range(SLOTS)]  # where datagram i starts in the receive area
KEY_STARTS = [start + 2 for start in STARTS]  # and its bytes after the ID (a reply memo key)
# A query's last 14 bytes when it ends with one client COOKIE: the OPT record's RDLENGTH (12),
# then the option's code (10) and length (8); the 8 bytes of the cookie follow.
COOKIE_TAIL = b"\x00\x0c" + COOKIE_OPTION
MIN_COOKIE_QUERY = 12 + 1 + 4 + 11 + 12  # header, root name, type and class, OPT, the option
NO_RDATA = (b"", b"\x00\x00")  # what a key ends with: nothing more, or a cut COOKIE's RDLENGTH 0


class Front(Protocol):
    """What sits in front of the standard path (killer mode's wire cache), per socket."""

    def hit(self, data: bytes, now: float, batch: Batch | None, i: int, peer: Any) -> bytes | None:
        """The whole reply for ``data`` when the front holds it (a hit), else None."""

    def store(self, data: bytes, response: Any, now: float, batch: Batch | None, i: int, peer: Any) -> None:  # fmt: skip
        """What the standard path answered (bytes, DEFERRED or None), to keep or learn from."""

    def done(self, seconds: float) -> None:
        """The replies of a batch left, ``seconds`` after it was read (its hits took that)."""

    def spliced(self, data: bytes, batch: Batch, i: int) -> None:
        """A first sight answered NXDOMAIN by a splice (kdns.server.splices), to learn from."""


class UdpServer:
    """One UDP socket: reads, answers (front, then the standard path) and replies in batches;
    also the replier of forwarded answers that arrive later."""

    def __init__(self, sock: socket.socket, responder: Responder, stats: Stats) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.v6 = sock.family == socket.AF_INET6
        self.channel = UDP6 if self.v6 else UDP4
        self.responder = responder
        self.stats = stats
        self.front: Front | None = None
        self.query_log = False  # flipped live on reload; every query then takes the logged path
        self._closed = False
        self._batch = Batch() if LIBC is not None else None
        if self._batch is not None:
            for k in range(SLOTS):  # the address length of this socket's family
                self._batch.send_u32[k * 16 + 2] = 28 if self.v6 else 16
        self._at = 0  # the batch slot being answered (current_peer)
        # Whether the next batch asks the reply memo over the whole batch at once (the last
        # had a quarter or more answered from it), and looks for one-COOKIE queries so too
        # (the last had some).
        self._look_ahead = True
        self._cookies = False
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    # Listener interface (kdns.server.listeners): close(), is_closing() and query_log.

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            asyncio.get_running_loop().remove_reader(self.fd)
            self.sock.close()

    def is_closing(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ the hot path

    def _readable(self) -> None:
        batch = self._batch
        if batch is None:
            self._readable_plain()
            return
        for _ in range(WAKE_BATCHES):
            count = LIBC.recvmmsg(self.fd, batch.recv_ref, SLOTS, MSG_DONTWAIT, None)
            if count <= 0:
                return
            self._answer_batch(batch, count)
            if count < SLOTS:
                return

    def _answer_batch(self, batch: Batch, count: int) -> None:
        started = perf_counter()
        responder = self.responder
        front = self.front
        recv: Any = batch.recv_map
        lengths = batch.recv_u32[14 : count * 16 : 16].tolist()
        send_iov = batch.send_iov_u64
        # The reply memo (kdns.server.replymemo), asked here before anything else, in both
        # modes, for the whole batch at once: a repeated question is the client's ID + its
        # kept reply, sent as two iovecs (the ID where the kernel wrote it, the reply where
        # the memo keeps it), and its metering waits for the batch's send (``record_hits``),
        # as killer mode's hits do. It holds registry answers only, and is off while a stage
        # judges the client, so killer mode's front sees what it holds alone (forwarded
        # names, queries with EDNS options other than one client COOKIE, policy's replies).
        memo = responder.memo if not self.query_log else None
        entries: list[list[Any]] | None = None
        stamp = replymemo.stamp_of(responder)  # nothing publishes while a batch is answered
        rest: list[int] = list(range(count))
        hits: list[list[Any]] = []
        cookie_hits: list[list[Any]] = []
        # While the memo answers few of them (a flood of names never asked before), the
        # datagrams are looked up one by one as they are answered: the look over the whole
        # batch would be paid twice.
        if memo is not None and self._look_ahead:
            ends = list(map(add, STARTS, lengths))
            cookied: list[bool] | None = None
            if self._cookies:
                # One-COOKIE queries by their bare query's key (``edns.cookie_key``: kdns acts
                # on no cookie and answers both alike), in the same pass: their bytes up to the
                # OPT record's RDLENGTH, and an RDLENGTH of 0.
                tails = map(slice, map(sub, ends, repeat(14)), map(sub, ends, repeat(8)))
                cookied = list(
                    map(and_, map(eq, map(getitem, repeat(recv), tails), repeat(COOKIE_TAIL)),
                        map(ge, lengths, repeat(MIN_COOKIE_QUERY)))
                )  # fmt: skip
                cut = map(sub, ends, map(mul, cookied, repeat(14)))
                keys: Any = map(
                    add,
                    map(getitem, repeat(recv), map(slice, KEY_STARTS, cut)),
                    map(getitem, repeat(NO_RDATA), cookied),
                )
            else:
                keys = map(getitem, repeat(recv), map(slice, KEY_STARTS, ends))
            found: list[list[Any]] = list(map(memo.get, keys, repeat(MISS)))
            good = replymemo.current(found, stamp)
            if responder.rrl is None:  # RRL judges every reply: then all go one by one
                rest = list(compress(rest, map(not_, good)))
                if cookied is None or True not in cookied:
                    hits = list(compress(found, good)) if rest else found
                    self._cookies = False  # none in this batch: the next looks for none
                else:
                    hits = list(compress(found, map(gt, good, cookied)))  # good, no cookie
                    cookie_hits = list(compress(found, map(and_, good, cookied)))
            kept = replymemo.iovecs(found)
            send_iov[2 : 4 * count : 4] = kept[0::2]
            send_iov[3 : 4 * count : 4] = kept[1::2]
            entries = found
        self.stats.udp_queries += count
        if not rest:  # every datagram a memo hit (the common case under load)
            self._send(batch, count)
            seconds = perf_counter() - started
            if hits:
                replymemo.record_hits(responder, hits, self.channel, seconds)
            if cookie_hits:
                replymemo.record_hits(responder, cookie_hits, self.channel, seconds, cookie=True)
            if front is not None:
                front.done(seconds)
            return
        # The others one by one; their replies are sent whole (the message's first iovec).
        replies: list[bytes] = []  # sent from where they are: kept alive until sendmmsg returns
        spliced: list[list[Any]] = []  # kdns.server.splices' replies: plain, with a COOKIE
        cookie_spliced: list[list[Any]] = []
        gaps = self._answer_rest(batch, rest, lengths, entries, memo, stamp, hits, cookie_hits, replies, spliced, cookie_spliced)  # fmt: skip
        self._look_ahead = memo is not None and 4 * (len(hits) + len(cookie_hits)) >= count
        out_count = count - len(gaps)
        send_u64 = batch.send_u64
        if gaps:  # messages after a datagram with no reply take the next ones' address and iovecs
            sent = list(filterfalse(set(gaps).__contains__, range(gaps[0], count)))
            end = 8 * out_count
            send_u64[8 * gaps[0] : end : 8] = array("Q", map(batch.name_of.__getitem__, sent))
            send_u64[8 * gaps[0] + 2 : end : 8] = array("Q", map(batch.iov_of.__getitem__, sent))
        self._send(batch, out_count)
        # The whole replies' first iovecs back to the IDs.
        send_iov[0 : 4 * count : 4] = batch.ids[: 2 * count : 2]
        send_iov[1 : 4 * count : 4] = batch.ids[1 : 2 * count : 2]
        if gaps:
            send_u64[8 * gaps[0] : end : 8] = batch.name_of[gaps[0] : out_count]
            send_u64[8 * gaps[0] + 2 : end : 8] = batch.iov_of[gaps[0] : out_count]
        if hits or cookie_hits or spliced or cookie_spliced or front is not None:
            seconds = perf_counter() - started
            if hits:
                replymemo.record_hits(responder, hits, self.channel, seconds)
            if cookie_hits:
                replymemo.record_hits(responder, cookie_hits, self.channel, seconds, cookie=True)
            if spliced or cookie_spliced:
                splices.record(responder, spliced, cookie_spliced, self.channel, seconds)
            if front is not None:
                front.done(seconds)

    def _answer_rest(self, batch: Batch, rest: list[int], lengths: list[int], entries: list[Any] | None, memo: dict[bytes, list[Any]] | None, stamp: object, hits: list[Any], cookie_hits: list[Any], replies: list[bytes], spliced: list[Any], cookie_spliced: list[Any]) -> list[int]:  # fmt: skip
        """Answer the datagrams ``rest`` of a batch one by one (``entries``: the reply memo's
        for the whole batch, MISS where it had none; None when it was not asked, then each
        asks ``memo``, unless that is off too): each reply is set as its message's first
        iovec, whole, and kept in ``replies``; the memo's hits found here are added to
        ``hits`` (``cookie_hits``), the splices' (kdns.server.splices: first sights of
        NXDOMAIN names, between the memo and the rest) to ``spliced`` (``cookie_spliced``).
        Returns the datagrams given no reply."""
        responder = self.responder
        front = self.front
        logged = self.query_log
        hit = front.hit if front is not None and not logged else None
        now = time.monotonic() if front is not None else 0.0
        rrl = responder.rrl
        recv, send_iov = batch.recv_map, batch.send_iov_u64
        memo_get = memo.get if memo is not None else None
        siblings = responder.splices if memo is not None else None  # off with the memo
        splice = splices.splice
        missed = 0
        # What a datagram the memo did not answer goes to (it was asked already).
        respond = responder.respond_anew if memo is not None else responder.respond
        # The standard path called directly when nothing else wants the datagram (no front,
        # no query log): one call per datagram less.
        direct = front is None and not logged
        channel = self.channel
        gaps = []
        reply: Any
        for i in rest:
            start = i * RECV_SLOT
            data = recv[start : start + lengths[i]]
            try:  # one bad datagram (or a bug) costs that datagram only, never the batch
                if entries is not None:
                    entry = entries[i]
                else:
                    entry = memo_get(data[2:], MISS) if memo_get is not None else MISS
                found = hits
                cookie = False
                if (
                    entry is MISS
                    and memo_get is not None
                    and data[-12:-8] == COOKIE_OPTION
                    and data[-14:-12] == b"\x00\x0c"
                ):  # one client COOKIE, sent last: the bare query's entry (edns.cookie_key)
                    self._cookies = True  # the next batches look for them over the batch
                    entry = memo_get(data[2:-14] + b"\x00\x00", MISS)
                    found = cookie_hits
                    cookie = True
                if entry is not MISS and (
                    entry[M_STAMP] is stamp or replymemo.checked(responder, entry, stamp)
                ):
                    reply = replymemo.reply_of(responder, data, entry)
                    found.append(entry)
                else:
                    if memo_get is not None:
                        missed += 1
                    # A first sight of a NXDOMAIN name: spliced from a sibling's reply, in
                    # place: the reply's flags and counts written over the query's, which
                    # leaves as the first iovec (ID, header, question), the sibling's SOA and
                    # OPT record as the second, from where the splice holds them.
                    reply = None
                    if siblings and lengths[i] > 12:
                        sibling = splice(responder, data, cookie, stamp)
                        if sibling is not None:
                            if front is not None:
                                front.spliced(data, batch, i)  # the prefetcher learns walks
                            (cookie_spliced if cookie else spliced).append(sibling)  # kept alive
                            if rrl is None:  # ``start``: where datagram i lies (above)
                                recv[start + 2 : start + 12] = sibling[S_HEAD]
                                # splices.question_end, inlined (a call per first sight less)
                                send_iov[4 * i + 1] = lengths[i] - sibling[S_AFTER] - (COOKIE_SIZE if cookie else 0)  # fmt: skip
                                send_iov[4 * i + 2] = sibling[S_TAIL_AT]
                                send_iov[4 * i + 3] = len(sibling[S_TAIL])
                                continue
                            reply = splices.reply_of(data, sibling, cookie)
                    if reply is None and direct:
                        self._at = i
                        reply = respond(data, channel, PEER_LATER, self)
                        if type(reply) is not bytes:
                            gaps.append(i)  # dropped, or DEFERRED: sent by send_reply later
                            continue
                    elif reply is None:
                        reply = hit(data, now, batch, i, None) if hit is not None else None
                        if reply is None:
                            reply = self._answer(data, now, batch, i, None, respond)
                            if front is not None:  # misses take time: later hits check anew
                                now = time.monotonic()
                            if reply is None:
                                gaps.append(i)
                                continue
                if rrl is not None:
                    reply = self._rate_limit(rrl, reply, batch.peer(i, self.v6))
                    if reply is None:
                        gaps.append(i)
                        continue
            except Exception:
                self._internal_error()
                gaps.append(i)
                continue
            send_iov[4 * i] = id(reply) + BYTES_DATA
            send_iov[4 * i + 1] = len(reply)
            send_iov[4 * i + 3] = 0
            replies.append(reply)
        if missed:
            responder.stats.memo_misses += missed
            if siblings is not None:  # memo misses no splice answered (none held, or refused)
                responder.stats.splice_misses += missed - len(spliced) - len(cookie_spliced)
        return gaps

    def _send(self, batch: Batch, count: int) -> None:
        """sendmmsg the first ``count`` messages of the batch.

        sendmmsg stops at the first message that fails (a spoofed source port 0, a destination
        a firewall rejects, a reply too large for a datagram): skip that one and send the rest,
        so one bad datagram costs its own reply only. A full socket buffer drops what is left."""
        start = 0
        while start < count:
            sent = LIBC.sendmmsg(
                self.fd, ctypes.byref(batch.send_hdrs, start * 64), count - start, MSG_DONTWAIT
            )
            if sent > 0:
                start += sent
                continue
            if sent < 0 and ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.stats.udp_send_errors += count - start
                break
            self.stats.udp_send_errors += 1
            start += 1

    def _answer(self, data: bytes, now: float, batch: Batch | None, i: int, peer: Any, respond: Any = None) -> bytes | None:  # fmt: skip
        """The standard path for one query (``respond``: Responder.respond, or respond_anew
        when the reply memo was asked already): the reply to send now, or None (dropped, or
        DEFERRED: a forwarded answer that ``send_reply`` sends when it comes)."""
        if peer is None:  # a batch: the address becomes a tuple only when a stage needs it
            if self.query_log:
                peer = batch.peer(i, self.v6)  # type: ignore[union-attr]
            else:
                self._at = i
        started = perf_counter() if self.query_log else 0.0
        try:
            response = (respond or self.responder.respond)(
                data, self.channel, PEER_LATER if peer is None else peer, self
            )
        except Exception:
            self._internal_error()
            return None
        if started and response is not DEFERRED:
            log_query("udp", peer, data, response, perf_counter() - started)  # type: ignore[arg-type]
        if self.front is not None:
            self.front.store(data, response, now, batch, i, peer)  # peer None: from batch[i]
        # Never several messages over UDP (zone transfers are TCP only).
        return response if type(response) is bytes else None

    def _rate_limit(self, rrl: Any, reply: bytes, peer: Any) -> bytes | None:
        """RRL (kdns.server.rrl) holds for every reply, front hits included: the reply, its
        truncated slip, or None (dropped)."""
        action = rrl.check(peer[0], reply, time.monotonic())
        if action == SEND:
            return reply
        if action == SLIP:
            self.stats.rrl_slipped += 1
            return slip_reply(reply)
        self.stats.rrl_dropped += 1
        return None

    # ------------------------------------------------------------------ without recvmmsg

    def _readable_plain(self) -> None:
        front = self.front
        rrl = self.responder.rrl
        for _ in range(SLOTS):
            try:
                data, peer = self.sock.recvfrom(RECV_SLOT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.udp_send_errors += 1  # ICMP errors surface here
                continue
            started = perf_counter()
            now = time.monotonic() if front is not None else 0.0
            self.stats.udp_queries += 1
            try:  # one bad datagram (or a bug) costs that datagram only
                reply = None
                if front is not None and not self.query_log:
                    reply = front.hit(data, now, None, 0, peer)
                if reply is None:
                    reply = self._answer(data, now, None, 0, peer)
                    if reply is None:
                        continue
                if rrl is not None:
                    reply = self._rate_limit(rrl, reply, peer)
                    if reply is None:
                        continue
            except Exception:
                self._internal_error()
                continue
            self._send_alone(reply, peer)
            if front is not None:
                front.done(perf_counter() - started)

    # ------------------------------------------------------------------ addresses

    def client(self, batch: Batch | None, i: int, peer: Any) -> bytes:
        """Who sent datagram ``i`` (or ``peer``), as packed address bytes."""
        if batch is None:  # a scoped IPv6 address ("fe80::1%eth0") loses its scope here
            family = socket.AF_INET6 if self.v6 else socket.AF_INET
            return socket.inet_pton(family, peer[0].split("%", 1)[0])
        return batch.client(i, self.v6)

    def current_peer(self) -> Any:
        """The address of the batch's datagram being answered (``PEER_LATER``)."""
        return self._batch.peer(self._at, self.v6)  # type: ignore[union-attr]

    def peer(self, batch: Batch | None, i: int, peer: Any) -> Any:
        """Who sent datagram ``i`` (or ``peer``), as an address tuple."""
        return peer if peer is not None else batch.peer(i, self.v6)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ replier

    def _send_alone(self, reply: bytes, peer: Any) -> None:
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            self.stats.udp_send_errors += 1

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
        """A forwarded answer arriving later (kdns.server.forwarding)."""
        if not self._closed:
            rrl = self.responder.rrl
            limited = response if rrl is None else self._rate_limit(rrl, response, peer)
            if limited is not None:
                self._send_alone(limited, peer)
        if self.query_log and query is not None:
            log_query("udp", peer, query.data, response, perf_counter() - query.started)

    def _internal_error(self) -> None:
        self.stats.errors += 1
        if self.stats.errors < 10 or self.stats.errors % 10000 == 0:
            log.exception("internal error answering a UDP query (%d so far)", self.stats.errors)
