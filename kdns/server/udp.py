"""DNS over UDP, in batches, for both modes: one loop reads, answers and sends.

On Linux the socket is read with recvmmsg(2) and answered with sendmmsg(2) (kdns.server.mmsg):
one system call for up to 64 datagrams each way, where a datagram at a time (an asyncio
datagram protocol) spends most of a Python server's time in system calls and callbacks.
Elsewhere the same loop reads with non-blocking recvfrom, one datagram per call.

Each datagram meets, in order: the reply memo (kdns.server.replymemo, batched path, both modes:
a hit is the client's ID + the kept reply), the ``front`` (killer mode's wire cache, when on:
the same for what the memo does not hold), then the standard path (``Responder.respond_anew``:
pre-rendered answers, the resolver, forwarding), then RRL; replies of a batch leave together,
and the memo's hits are metered once they left. Nothing here
creates a task, logs or builds label dicts per query (docs/architecture.md, the hot path). One
bad datagram, or a bug that raises, costs that datagram only: it is counted and the batch goes
on.

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
from time import perf_counter
from typing import Any, Protocol

from kdns.server import replymemo
from kdns.server.edns import COOKIE_OPTION
from kdns.server.meter import UDP4, UDP6
from kdns.server.mmsg import LIBC, MSG_DONTWAIT, NAME, RECV_SLOT, SLOT, SLOTS, Batch
from kdns.server.querylog import log_query
from kdns.server.replymemo import M_ANSWER, M_BODY, M_REPLY, M_STAMP
from kdns.server.rrl import SEND, SLIP, slip_reply
from kdns.server.stats import Stats
from kdns.server.wire import DEFERRED, PEER_LATER, Query, Responder

log = logging.getLogger("kdns.udp")

WAKE_BATCHES = 16  # full batches per wake-up at most: let the loop's other work breathe


class Front(Protocol):
    """What sits in front of the standard path (killer mode's wire cache), per socket."""

    def hit(self, data: bytes, now: float, batch: Batch | None, i: int, peer: Any) -> bytes | None:
        """The whole reply for ``data`` when the front holds it (a hit), else None."""

    def store(self, data: bytes, response: Any, now: float, batch: Batch | None, i: int, peer: Any) -> None:  # fmt: skip
        """What the standard path answered (bytes, DEFERRED or None), to keep or learn from."""

    def done(self, seconds: float) -> None:
        """The replies of a batch left, ``seconds`` after it was read (its hits took that)."""


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
            # Reply k of a batch goes to the sender of datagram k unless an earlier datagram
            # of the batch got no reply: addresses are pointed at once here, and per reply
            # only after such a gap (``_answer_batch`` puts them back when it made one).
            batch = self._batch
            for k in range(SLOTS):
                batch.send_u64[k * 8] = batch.names_base + k * NAME
                batch.send_u32[k * 16 + 2] = 28 if self.v6 else 16
        self._at = 0  # the batch slot being answered (current_peer)
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
        logged = self.query_log
        hit = front.hit if front is not None and not logged else None
        now = time.monotonic() if front is not None else 0.0
        rrl = responder.rrl
        recv, send, recv_u32 = batch.recv_map, batch.send, batch.recv_u32
        send_u64, send_iov = batch.send_u64, batch.send_iov_u64
        names_base = batch.names_base
        # The reply memo (kdns.server.replymemo), asked here before anything else, in both
        # modes: a repeated question is the client's ID + its kept reply, and its metering
        # waits for the batch's send (``record_hits``), as killer mode's hits do. It holds
        # registry answers only, and is off while a stage judges the client, so killer mode's
        # front sees what it holds alone (forwarded names, queries with EDNS options other
        # than one client COOKIE, policy's replies).
        # ``replymemo.holds`` inline: the stamp is read once per batch (nothing changes the
        # registry while a batch is answered).
        memo = responder.memo if not logged else None
        memo_get = memo.get if memo is not None else None
        stamp = replymemo.stamp_of(responder)
        memo_hits: list[Any] = []
        cookie_hits: list[Any] = []
        missed = 0
        # What a datagram the memo did not answer goes to (it was asked already).
        respond = responder.respond_anew if memo is not None else responder.respond
        # The standard path called directly when nothing else wants the datagram (no front,
        # no query log): one call per datagram less.
        direct = front is None and not logged
        channel = self.channel
        out_count = 0
        for i in range(count):
            start = i * RECV_SLOT
            data = recv[start : start + recv_u32[i * 16 + 14]]
            try:  # one bad datagram (or a bug) costs that datagram only, never the batch
                entry = memo_get(data[2:]) if memo_get is not None else None
                hits = memo_hits
                if (
                    entry is None
                    and memo_get is not None
                    and data[-12:-8] == COOKIE_OPTION
                    and data[-14:-12] == b"\x00\x0c"
                ):  # one client COOKIE, sent last: the bare query's entry (edns.cookie_key)
                    entry = memo_get(data[2:-14] + b"\x00\x00")
                    hits = cookie_hits
                if (
                    entry is not None
                    and entry[M_ANSWER].body is entry[M_BODY]
                    and (entry[M_STAMP] is stamp or replymemo.checked(responder, entry, stamp))
                ):
                    reply = data[:2] + entry[M_REPLY]
                    hits.append(entry)
                else:
                    if memo_get is not None:
                        missed += 1
                    if direct:
                        self._at = i
                        reply = respond(data, channel, PEER_LATER, self)
                        if type(reply) is not bytes:
                            continue  # dropped, or DEFERRED: sent by send_reply when it comes
                    else:
                        reply = hit(data, now, batch, i, None) if hit is not None else None
                        if reply is None:
                            reply = self._answer(data, now, batch, i, None, respond)
                            if front is not None:  # misses take time: later hits check anew
                                now = time.monotonic()
                            if reply is None:
                                continue
                if rrl is not None:
                    reply = self._rate_limit(rrl, reply, batch.peer(i, self.v6))
                    if reply is None:
                        continue
            except Exception:
                self._internal_error()
                continue
            size = len(reply)
            if size > SLOT:
                self._send_alone(reply, batch.peer(i, self.v6))
                continue
            at = out_count * SLOT
            send[at : at + size] = reply
            send_iov[out_count * 2 + 1] = size
            if out_count != i:
                send_u64[out_count * 8] = names_base + i * NAME
            out_count += 1
        self.stats.udp_queries += count
        if missed:
            responder.stats.memo_misses += missed
        start = 0
        while start < out_count:
            # sendmmsg stops at the first message that fails (a spoofed source port 0, a
            # destination a firewall rejects): skip that one and send the rest, so one bad
            # datagram costs its own reply only. A full socket buffer drops what is left.
            sent = LIBC.sendmmsg(
                self.fd, ctypes.byref(batch.send_hdrs, start * 64), out_count - start, MSG_DONTWAIT
            )
            if sent > 0:
                start += sent
                continue
            if sent < 0 and ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.stats.udp_send_errors += out_count - start
                break
            self.stats.udp_send_errors += 1
            start += 1
        if out_count != count:  # a gap moved addresses: point them back for the next batch
            for k in range(out_count):
                send_u64[k * 8] = names_base + k * NAME
        if memo_hits or cookie_hits or front is not None:
            seconds = perf_counter() - started
            if memo_hits:
                replymemo.record_hits(responder, memo_hits, channel, seconds)
            if cookie_hits:
                replymemo.record_hits(responder, cookie_hits, channel, seconds, cookie=True)
            if front is not None:
                front.done(seconds)

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
