"""How a reply is formed apart from the data it carries: our OPT record and UDP payload size,
truncation, loadbalance's rotation, BADVERS and bare header replies; and the stages set from
outside (ACL, views, autopath, rewrite, template), each of which starts the reply memo afresh
when set (kdns.server.replymemo: a memo hit skips every stage before local data).

``Responder`` (kdns.server.wire: the query path) is a ``ReplyForm``.
"""

from __future__ import annotations

import struct
from typing import Any

from kdns.dns.answer import Answer
from kdns.dns.records import BADVERS
from kdns.server.edns import MIN_UDP, Edns
from kdns.server.query import Autopathing, ClientViews, Filter

MAX_TCP = 65535  # RFC 1035 4.2.2: two-byte length prefix
_U16 = struct.Struct("!H")
_ZERO_COUNTS = b"\x00\x00\x00\x00\x00\x00\x00\x00"


class ReplyForm:
    """Settings a reply depends on besides the data, and the assembly that applies them."""

    __slots__ = (
        "udp_size",
        "_acl",
        "_views",
        "_autopath",
        "_rewrite",
        "_template",
        "_loadbalance",
        "_memo",
        "_splices",
        "memo_refused",
        "per_client",
        "keep",
        "_turn",
        "_opt",
        "_opt_do",
    )
    udp_size: int
    _acl: Filter | None
    _views: ClientViews | None
    _autopath: Autopathing | None
    _rewrite: Any
    _template: Any
    _loadbalance: bool
    _memo: dict[bytes, list[Any]] | None
    _splices: dict[bytes, list[Any]] | None
    memo_refused: int
    per_client: bool
    keep: float
    _turn: int
    _opt: bytes
    _opt_do: bytes

    # The stages set from outside (kdns.running.wiring on start and reload). Setting one
    # starts the reply memo afresh, or turns it off while a stage that judges the client or
    # rewrites the question is on: a memo hit skips every stage before local data.

    @property
    def acl(self) -> Filter | None:
        return self._acl

    @acl.setter
    def acl(self, value: Filter | None) -> None:
        self._acl = value
        self._memo_reset()

    @property
    def views(self) -> ClientViews | None:
        return self._views

    @views.setter
    def views(self, value: ClientViews | None) -> None:
        self._views = value
        self._memo_reset()

    @property
    def autopath(self) -> Autopathing | None:
        return self._autopath

    @autopath.setter
    def autopath(self, value: Autopathing | None) -> None:
        self._autopath = value
        self._memo_reset()

    @property
    def rewrite(self) -> Any:
        return self._rewrite

    @rewrite.setter
    def rewrite(self, value: Any) -> None:
        self._rewrite = value
        self._memo_reset()

    @property
    def template(self) -> Any:
        return self._template

    @template.setter
    def template(self, value: Any) -> None:
        self._template = value
        self._memo_reset()

    @property
    def loadbalance(self) -> bool:
        return self._loadbalance

    @loadbalance.setter
    def loadbalance(self, value: bool) -> None:
        self._loadbalance = value
        self._memo_reset()

    @property
    def memo(self) -> dict[bytes, list[Any]] | None:
        """The reply memo (kdns.server.replymemo), None while it is off."""
        return self._memo

    @property
    def splices(self) -> dict[bytes, list[Any]] | None:
        """First sights' NXDOMAIN splices (kdns.server.splices), None while the memo is off."""
        return self._splices

    def forget_replies(self) -> None:
        """Start the reply memo afresh: what answers a name changed other than through the
        registry's published changes (a new resolver, hosts, forwarding: kdns.running)."""
        self._memo_reset()

    def _memo_reset(self) -> None:
        plain = (
            self._acl is None
            and self._views is None
            and self._autopath is None
            and self._rewrite is None
            and self._template is None
        )
        self._memo = {} if plain else None
        self._splices = {} if plain else None  # kdns.server.splices: with the memo, or not
        self.memo_refused = 0  # new questions turned away by the full memo (replymemo)
        self.per_client = self._acl is not None or self._views is not None

    def set_udp_size(self, udp_size: int) -> None:
        self._memo_reset()  # replies carry our OPT record, which says the size
        self.udp_size = udp_size
        # Our OPT record: root owner, type 41, class = our UDP payload size, TTL carries
        # extended rcode 0, version 0 and the DO bit echoed (RFC 3225 3).
        size = _U16.pack(udp_size)
        self._opt = b"\x00\x00\x29" + size + b"\x00\x00\x00\x00\x00\x00"
        self._opt_do = b"\x00\x00\x29" + size + b"\x00\x00\x80\x00\x00\x00"

    def opt_record(self, do: bool) -> bytes:
        return self._opt_do if do else self._opt

    def next_turn(self) -> int:
        """loadbalance's next rotation: one counter for every rotated reply, so successive
        replies of a name start with each of its addresses in turn."""
        self._turn += 1
        return self._turn

    def reply(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer) -> bytes:
        """Client header and question + the answer's body (+ OPT), truncated to fit."""
        head = data[:2] + bytes(
            (0x80 | (0x04 if answer.aa else 0) | (data[2] & 0x01), (data[3] & 0x10) | answer.rcode)
        )
        question = data[12:qend]
        if edns is None:
            limit = MAX_TCP if tcp else MIN_UDP
            opt = b""
        else:
            limit = MAX_TCP if tcp else min(edns.size, self.udp_size)
            opt = self._opt_do if edns.do else self._opt
        room = limit - 12 - len(question) - len(opt)
        body = answer.body
        if len(body) <= room:
            if self._loadbalance and answer.rotate:
                body = answer.rotated(self.next_turn())
                self.keep = 0.0  # a rotation is this reply's alone
            counts = answer.counts_edns if edns else answer.counts
            return head + b"\x00\x01" + counts + question + body + opt
        turn = None
        if self._loadbalance and answer.rotate:  # truncated replies rotate too (item 4)
            turn = self.next_turn()
            self.keep = 0.0  # a rotation is this reply's alone
        counts, body, truncated = answer.fit(room, edns is not None, turn)
        if truncated:
            head = head[:2] + bytes((head[2] | 0x02, head[3]))  # TC: retry over TCP
        return head + b"\x00\x01" + counts + question + body + opt

    def _badvers(self, data: bytes, qend: int, edns: Edns) -> bytes:
        # RFC 6891 6.1.3: unknown EDNS version -> BADVERS (extended rcode 1, header rcode 0),
        # with our OPT advertising version 0.
        head = data[:2] + bytes((0x80 | (data[2] & 0x01), data[3] & 0x10))
        opt = (
            b"\x00\x00\x29"
            + _U16.pack(self.udp_size)
            + bytes((BADVERS >> 4, 0))
            + b"\x00\x00\x00\x00"
        )
        return head + b"\x00\x01\x00\x00\x00\x00\x00\x01" + data[12:qend] + opt


def header_reply(data: bytes, rcode: int) -> bytes:
    """A bare reply (no sections) echoing ID, opcode and RD: for FORMERR and NOTIMP."""
    return data[:2] + bytes((0x80 | (data[2] & 0x79), rcode)) + _ZERO_COUNTS[:8]
