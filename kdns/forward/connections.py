"""Talking to one server: the exchange's wire checks (a fresh random ID, the reply matched by ID, QR
and question, RFC 5452 9.1; the client's ID and question restored) and pipelined TCP/TLS
streams (RFC 7766 6.2.1.1). kdns.forward.upstreams has the whole story."""

from __future__ import annotations

import asyncio
import random
import struct
from typing import TYPE_CHECKING, Any, cast

from kdns.dns import names

if TYPE_CHECKING:  # the stream's owner; kdns.forward.upstream imports this module
    from kdns.forward.upstream import Upstream

# CoreDNS plugin.TimeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16), 0.25 ms .. 8.192 s.
LATENCY_BUCKETS: tuple[float, ...] = tuple(0.00025 * 2**i for i in range(16))


_U16 = struct.Struct("!H")
_SPREAD_AT = 16  # queries in flight on a connection before another one is opened (pool allowing)
_RANDOM = random.SystemRandom()  # query IDs are a defence against spoofing: unpredictable ones
# `. IN NS` with RD set: CoreDNS's health check query (ID patched per probe).
_HEALTH_QUERY = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01"


class ForwardError(Exception):
    """No upstream answered this query (the caller answers SERVFAIL)."""


class Overloaded(ForwardError):
    """``max_concurrent`` queries are already in flight: rejected without trying (CoreDNS
    answers REFUSED; the caller chooses)."""


def question_end(wire: bytes) -> int:
    """Offset just past the single question of a query; ``ValueError`` if it is not one."""
    if len(wire) < 17 or wire[2] & 0x80 or wire[4:6] != b"\x00\x01":
        raise ValueError("not a query with one question")
    return names.question_end(wire)


def _question_key(message: bytes, qend: int) -> bytes:
    """The question as compared between query and reply: name lowercased, type and class as is.
    (Label lengths are at most 63, below ASCII 'A', so ``lower`` touches only letters.)"""
    return message[12 : qend - 4].lower() + message[qend - 4 : qend]


def _is_reply(reply: bytes, msg_id: bytes, key: bytes, qend: int) -> bool:
    """RFC 5452 9.1: our ID, a response, and our question. An error reply without a question
    (some servers send FORMERR/NOTIMP that way) passes on the ID alone."""
    if len(reply) < 12 or reply[:2] != msg_id or not reply[2] & 0x80:
        return False
    qdcount = reply[4:6]
    if qdcount == b"\x00\x01":
        return len(reply) >= qend and _question_key(reply, qend) == key
    return qdcount == b"\x00\x00" and reply[3] & 0x0F != 0


def _restore(wire: bytes, qend: int, reply: bytes) -> bytes:
    """The reply under the client's ID, with the client's own question bytes (same length as
    the upstream's, which matched them but for letter case)."""
    if reply[4:6] == b"\x00\x01":
        return wire[:2] + reply[2:12] + wire[12:qend] + reply[qend:]
    return wire[:2] + reply[2:]


def _new_id() -> bytes:
    return _U16.pack(_RANDOM.getrandbits(16))


def _time_out(future: asyncio.Future[bytes], message: str) -> None:
    if not future.done():
        future.set_exception(TimeoutError(message))


def _consume(task: asyncio.Future[Any]) -> None:
    """Done callback: mark a background failure as seen (nobody may be awaiting it)."""
    if not task.cancelled():
        task.exception()


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection to an upstream carrying pipelined queries (RFC 7766 6.2.1.1):
    each query gets an ID unique on the connection and waits for the reply with that ID, in
    whatever order the server answers."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.opening: asyncio.Task[None] | None = None  # connect (and TLS handshake)
        self.pending: dict[bytes, tuple[asyncio.Future[bytes], bytes, int]] = {}
        self.load = 0  # queries using this connection, including those waiting for it to open
        self.answered = 0
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                return
            reply = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            entry = self.pending.get(reply[:2])
            if entry is None or not _is_reply(reply, reply[:2], entry[1], entry[2]):
                self.upstream.stats.mismatched += 1  # late (timed out) or not ours
                continue
            if not entry[0].done():
                entry[0].set_result(reply)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost fails what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop()
        if not self.lost.done():
            self.lost.set_result(None)
        error = ConnectionResetError(f"connection closed by {self.upstream}: {exc or 'EOF'}")
        for future, _, _ in self.pending.values():
            if not future.done():
                future.set_exception(error)

    # use

    async def exchange(self, wire: bytes, qend: int) -> bytes:
        """Send the query under an ID free on this connection and wait for its reply (the
        caller bounds the wait)."""
        assert self.opening is not None
        if not self.opening.done():
            await asyncio.shield(self.opening)
        self.opening.result()  # raises the connect error
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError(f"connection to {self.upstream} closed")
        msg_id = _new_id()
        while msg_id in self.pending:
            msg_id = _new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = (future, _question_key(wire, qend), qend)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.transport.write(_U16.pack(len(wire)) + msg_id + wire[2:])
            reply = await future
            self.answered += 1
            return reply
        finally:
            del self.pending[msg_id]

    def release(self) -> None:
        """A query is done with this connection: start the idle clock when it was the last."""
        self.load -= 1
        self.arm_idle()

    def arm_idle(self) -> None:
        """Close after ``expire`` seconds unless a query comes (CoreDNS's ``expire``)."""
        if self.load == 0 and self.idle is None and not self.closed and self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(self.upstream.expire, self.close)

    def close(self) -> None:
        self._drop()
        if self.transport is not None:
            self.transport.close()

    def _drop(self) -> None:
        self.closed = True
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.upstream._forget(self)
