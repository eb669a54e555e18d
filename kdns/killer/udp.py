"""Killer mode's UDP transport: batched receive and send, the wire cache in front.

On Linux the socket is read with recvmmsg(2) and answered with sendmmsg(2) (through ctypes):
one system call for up to ``SLOTS`` datagrams each way, which is what a Python server spends
most of its time on otherwise. For each datagram the wire cache is asked first (one dict
lookup on the bytes after the ID); a hit is the client's ID + the stored reply. A miss goes
through the standard responder (kdns.server.wire), and its reply is stored when it can be.

Elsewhere (or when the C structures do not match this machine) datagrams are read with
non-blocking recvfrom in the same loop: the same logic, one system call per datagram.

The socket is registered with the event loop as a plain reader (no asyncio transport), so the
loop's other work (TCP, HTTP, watches, forwarding) runs between batches.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import mmap
import socket
import sys
import time
from time import perf_counter
from typing import Any

from kdns.killer.wirecache import (
    E_AT,
    E_EPOCH,
    E_META,
    E_NAME,
    E_REPLY,
    E_UNTIL,
    E_VIEW,
    E_WATCH,
    WireCache,
    without_options,
)
from kdns.server.meter import UDP4, UDP6
from kdns.server.querylog import log_query
from kdns.server.rrl import SEND, SLIP, slip_reply
from kdns.server.stats import Stats
from kdns.server.wire import ALLOW, DEFERRED, Query, Responder

log = logging.getLogger("kdns.killer")

SLOTS = 64  # datagrams per system call
# Bytes per receive slot: any datagram (a UDP payload is at most 65,507 bytes), so the batched
# path takes every query the standard path takes. The receive area is an anonymous mapping:
# pages are backed only once the kernel writes into them (a page or two per slot in use).
RECV_SLOT = 65536
SLOT = 4096  # bytes per reply slot (replies larger than this are sent alone)
NAME = 28  # bytes per address buffer (sockaddr_in6)
MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc() -> Any:
    """libc with recvmmsg/sendmmsg, when this is Linux on a 64-bit ABI we laid out above."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(_MMsgHdr) != 64:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.recvmmsg.restype = ctypes.c_int
        libc.sendmmsg.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class _Batch:
    """The C buffers of one socket: SLOTS receive and send slots sharing address buffers."""

    def __init__(self) -> None:
        self.recv_map = mmap.mmap(-1, SLOTS * RECV_SLOT)
        self.recv_buf = (ctypes.c_char * (SLOTS * RECV_SLOT)).from_buffer(self.recv_map)
        self.send_buf = ctypes.create_string_buffer(SLOTS * SLOT)
        self.names = ctypes.create_string_buffer(SLOTS * NAME)
        self.recv_iov = (_IoVec * SLOTS)()
        self.send_iov = (_IoVec * SLOTS)()
        self.recv_hdrs = (_MMsgHdr * SLOTS)()
        self.send_hdrs = (_MMsgHdr * SLOTS)()
        recv_base = ctypes.addressof(self.recv_buf)
        send_base = ctypes.addressof(self.send_buf)
        self.names_base = ctypes.addressof(self.names)
        for i in range(SLOTS):
            self.recv_iov[i].base = recv_base + i * RECV_SLOT
            self.recv_iov[i].len = RECV_SLOT
            self.send_iov[i].base = send_base + i * SLOT
            hdr = self.recv_hdrs[i].hdr
            hdr.name = self.names_base + i * NAME
            hdr.namelen = NAME
            hdr.iov = ctypes.addressof(self.recv_iov[i])
            hdr.iovlen = 1
            out = self.send_hdrs[i].hdr
            out.iov = ctypes.addressof(self.send_iov[i])
            out.iovlen = 1
        # Views to read and write the C structures as numbers, without ctypes attributes.
        self.recv = memoryview(self.recv_buf).cast("B")
        self.send = memoryview(self.send_buf).cast("B")
        self.name_view = memoryview(self.names).cast("B")
        self.recv_u32 = memoryview(self.recv_hdrs).cast("B").cast("I")  # len at i*16+14
        self.send_u32 = memoryview(self.send_hdrs).cast("B").cast("I")  # namelen at i*16+2
        self.send_u64 = memoryview(self.send_hdrs).cast("B").cast("Q")  # name at i*8
        self.send_iov_u64 = memoryview(self.send_iov).cast("B").cast("Q")  # len at i*2+1
        self.recv_ref = ctypes.byref(self.recv_hdrs)
        self.send_ref = ctypes.byref(self.send_hdrs)


class KillerUdp:
    """One UDP socket served in killer mode; also its own replier for forwarded answers."""

    def __init__(
        self,
        sock: socket.socket,
        wire: WireCache,
        responder: Responder,
        stats: Stats,
        observe: Any = None,
        forward_allowed: Any = None,
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.v6 = sock.family == socket.AF_INET6
        self.channel = UDP6 if self.v6 else UDP4
        self.wire = wire
        self.responder = responder
        self.stats = stats
        self.observe = observe  # Prefetcher.observe, or None
        self.forward_allowed = forward_allowed  # client ip -> bool, or None (everyone)
        self._allowed: dict[bytes, bool] = {}
        self._query_log = False
        self._closed = False
        self._batch = _Batch() if _LIBC is not None else None
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    # Listener interface (kdns.server.listeners): close() and query_log.

    @property
    def query_log(self) -> bool:
        return self._query_log

    @query_log.setter
    def query_log(self, on: bool) -> None:
        self._query_log = on  # every query then takes the logged (standard) path

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
        for _ in range(16):  # at most 16 full batches per wake-up: let the loop breathe
            count = _LIBC.recvmmsg(self.fd, batch.recv_ref, SLOTS, MSG_DONTWAIT, None)
            if count <= 0:
                return
            self._answer_batch(batch, count)
            if count < SLOTS:
                return

    def _answer_batch(self, batch: _Batch, count: int) -> None:
        started = perf_counter()
        now = time.monotonic()
        lookup = self._lookup if not self._query_log else _nothing
        recv, send, recv_u32 = batch.recv, batch.send, batch.recv_u32
        send_u32, send_u64, send_iov = batch.send_u32, batch.send_u64, batch.send_iov_u64
        guarded = (
            self.responder.acl is not None
            or self.forward_allowed is not None
            or self.responder.views is not None
        )
        rrl = self.responder.rrl
        names_base = batch.names_base
        namelen = 28 if self.v6 else 16
        out_count = 0
        hits: list[list[Any]] = []
        for i in range(count):
            start = i * RECV_SLOT
            data = recv[start : start + recv_u32[i * 16 + 14]].tobytes()
            try:  # one bad datagram (or a bug) costs that datagram only, never the batch
                entry = lookup(data)
                if (
                    entry is not None
                    and entry[E_UNTIL] > now
                    and entry[E_EPOCH][0] == entry[E_AT]
                    and (not guarded or self._may_hit(batch, i, entry))
                ):
                    reply = data[:2] + entry[E_REPLY]
                    hits.append(entry)
                    if entry[E_WATCH] and self.observe is not None:
                        self.observe(self._client(batch, i), data, entry[E_META][2], True)
                else:
                    answer = self._miss(data, batch, i, now)
                    now = time.monotonic()  # misses take the time: later hits check deadlines anew
                    if answer is None:
                        continue
                    reply = answer
                if rrl is not None:
                    limited = self._rate_limit(rrl, reply, batch, i, now)
                    if limited is None:
                        continue
                    reply = limited
            except Exception:
                self._internal_error()
                continue
            size = len(reply)
            if size > SLOT:
                self._send_alone(reply, self._peer(batch, i))
                continue
            at = out_count * SLOT
            send[at : at + size] = reply
            send_iov[out_count * 2 + 1] = size
            send_u64[out_count * 8] = names_base + i * NAME
            send_u32[out_count * 16 + 2] = namelen
            out_count += 1
        self.stats.udp_queries += count
        start = 0
        while start < out_count:
            # sendmmsg stops at the first message that fails (a spoofed source port 0, a
            # destination a firewall rejects): skip that one and send the rest, so one bad
            # datagram costs its own reply only. A full socket buffer drops what is left.
            sent = _LIBC.sendmmsg(
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
        if hits:
            # Each hit took what its batch took from read to send: what the client saw of us.
            self.wire.record_hits(hits, self.channel, perf_counter() - started)

    def _lookup(self, data: bytes) -> list[Any] | None:
        """The wire-cache entry for a query: by its bytes without EDNS options (they never
        change a reply; a query with options is never stored under its own bytes), the common
        one-cookie shape found without a walk."""
        entries = self.wire.entries
        if data[-12:-8] == b"\x00\x0a\x00\x08" and data[-14:-12] == b"\x00\x0c":
            return entries.get(data[2:-14] + b"\x00\x00")  # wirecache.cookie_key, inlined
        entry = entries.get(data[2:])
        if entry is None and data[11:12] not in (b"\x00", b""):
            key = without_options(data)
            if key is not None:
                entry = entries.get(key)
        return entry

    def _miss(self, data: bytes, batch: _Batch | None, i: int, now: float, peer: Any = None) -> bytes | None:  # fmt: skip
        """The standard path for one query, its reply stored in the wire cache when it can be."""
        if peer is None:
            peer = self._peer(batch, i)
        wire = self.wire
        wire.misses += 1
        started = time.perf_counter() if self._query_log else 0.0
        responder = self.responder
        try:
            response = responder.respond(data, self.channel, peer, self)
        except Exception:
            self._internal_error()
            return None
        if started and response is not DEFERRED:
            log_query("udp", peer, data, response, time.perf_counter() - started)  # type: ignore[arg-type]
        if type(response) is not bytes:
            if response is DEFERRED and self.observe is not None:
                self.observe(self._client(batch, i, peer), data, -1, True)
            return None
        forwarded = responder.zone == "."
        if responder.keep > now:
            entry = wire.insert(data, response, responder.keep, responder.zone, responder.qtype, forwarded)  # fmt: skip
            views = responder.views
            if entry is not None and views is not None:
                entry[E_VIEW] = views.last  # the view this reply was made for
        if self.observe is not None:
            self.observe(self._client(batch, i, peer), data, response[3] & 0x0F, forwarded)
        return response

    def _may_hit(self, batch: _Batch | None, i: int, entry: list[Any], peer: Any = None) -> bool:
        """ACL, forward.allow and views hold for cached replies too: a hit is served only to a
        client the standard path would have given the same reply (one of the same view)."""
        responder = self.responder
        views = responder.views
        if views is not None and views.view_of_packed(self._client(batch, i, peer)) is not entry[E_VIEW]:  # fmt: skip
            return False
        if responder.acl is not None:
            if peer is None:
                peer = self._peer(batch, i)
            qtype = entry[E_META][0]
            decision = responder.acl.decide(peer[0], entry[E_NAME], (qtype[0] << 8) | qtype[1])
            if decision != ALLOW:
                return False
        if entry[E_META][1] == "." and self.forward_allowed is not None:
            client = self._client(batch, i, peer)
            allowed = self._allowed.get(client)
            if allowed is None:
                if len(self._allowed) > 65536:
                    self._allowed.clear()
                ip = peer[0] if peer is not None else self._peer(batch, i)[0]
                allowed = self._allowed[client] = bool(self.forward_allowed(ip))
            return allowed
        return True

    def _rate_limit(self, rrl: Any, reply: bytes, batch: _Batch | None, i: int, now: float, peer: Any = None) -> bytes | None:  # fmt: skip
        """RRL (kdns.server.rrl) holds for every reply, wire-cache hits included: the reply,
        its truncated slip, or None (dropped)."""
        if peer is None:
            peer = self._peer(batch, i)
        action = rrl.check(peer[0], reply, now)
        if action == SEND:
            return reply
        if action == SLIP:
            self.stats.rrl_slipped += 1
            return slip_reply(reply)
        self.stats.rrl_dropped += 1
        return None

    # ------------------------------------------------------------------ addresses

    def _peer(self, batch: _Batch | None, i: int) -> Any:
        assert batch is not None
        at = i * NAME
        view = batch.name_view
        port = (view[at + 2] << 8) | view[at + 3]
        if self.v6:
            ip = socket.inet_ntop(socket.AF_INET6, view[at + 8 : at + 24].tobytes())
            flow = int.from_bytes(view[at + 4 : at + 8], "big")
            scope = int.from_bytes(view[at + 24 : at + 28], sys.byteorder)
            return (ip, port, flow, scope)
        return (socket.inet_ntop(socket.AF_INET, view[at + 4 : at + 8].tobytes()), port)

    def _client(self, batch: _Batch | None, i: int, peer: Any = None) -> bytes:
        """The client's address as bytes (who asked, for the prefetcher and forward.allow)."""
        if batch is None:  # a scoped IPv6 address ("fe80::1%eth0") loses its scope here
            family = socket.AF_INET6 if self.v6 else socket.AF_INET
            return socket.inet_pton(family, peer[0].split("%", 1)[0])
        at = i * NAME
        view = batch.name_view
        return view[at + 8 : at + 24].tobytes() if self.v6 else view[at + 4 : at + 8].tobytes()

    # ------------------------------------------------------------------ without recvmmsg

    def _readable_plain(self) -> None:
        lookup = self._lookup if not self._query_log else _nothing
        guarded = (
            self.responder.acl is not None
            or self.forward_allowed is not None
            or self.responder.views is not None
        )
        for _ in range(SLOTS):
            try:
                data, peer = self.sock.recvfrom(RECV_SLOT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.stats.udp_send_errors += 1  # ICMP errors surface here
                continue
            started = perf_counter()
            now = time.monotonic()
            self.stats.udp_queries += 1
            hit = None
            try:  # one bad datagram (or a bug) costs that datagram only
                entry = lookup(data)
                if (
                    entry is not None
                    and entry[E_UNTIL] > now
                    and entry[E_EPOCH][0] == entry[E_AT]
                    and (not guarded or self._may_hit(None, 0, entry, peer))
                ):
                    reply = data[:2] + entry[E_REPLY]
                    hit = entry
                    if entry[E_WATCH] and self.observe is not None:
                        self.observe(self._client(None, 0, peer), data, entry[E_META][2], True)
                else:
                    answer = self._miss(data, None, 0, now, peer)
                    if answer is None:
                        continue
                    reply = answer
                if self.responder.rrl is not None:
                    limited = self._rate_limit(self.responder.rrl, reply, None, 0, now, peer)
                    if limited is None:
                        continue
                    reply = limited
            except Exception:
                self._internal_error()
                continue
            self._send_alone(reply, peer)
            if hit is not None:
                self.wire.record_hits([hit], self.channel, perf_counter() - started)

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
            limited = response if rrl is None else self._rate_limit(rrl, response, None, 0, time.monotonic(), peer)  # fmt: skip
            if limited is not None:
                self._send_alone(limited, peer)
        if self._query_log and query is not None:
            log_query("udp", peer, query.data, response, time.perf_counter() - query.started)

    def _internal_error(self) -> None:
        self.stats.errors += 1
        if self.stats.errors < 10 or self.stats.errors % 10000 == 0:
            log.exception("internal error answering a UDP query (%d so far)", self.stats.errors)


def _nothing(data: bytes) -> None:
    """The wire-cache lookup while every query must be logged: always a miss."""
    return None


def batched() -> bool:
    """Whether this machine serves killer-mode UDP with recvmmsg/sendmmsg."""
    return _LIBC is not None
