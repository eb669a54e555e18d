"""Query in, response out, in wire bytes: the hot path shared by UDP and TCP.

No DNS library runs here. The 12-byte header decides first (miekg/dns's accept check: QR set ->
drop, opcode other than QUERY -> NOTIMP, QDCOUNT != 1 -> FORMERR), the question name is walked
once and lowercased into the lookup key, the EDNS OPT record (RFC 6891) is read when the
additional section holds one (kdns.server.edns), and the answer is the client's ID and flags + its own question
bytes + pre-rendered body. Anything malformed gets FORMERR (or silence when even the header is
short); nothing here raises on bad input.

Beside it: kdns.server.replymemo (a repeated question answered from its kept reply),
kdns.server.replyform (the reply's assembly and the settings it depends on),
kdns.server.policyreplies (what policy answers), kdns.server.query (``Query`` and the
protocols of the slower stages).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from time import perf_counter
from typing import Any

from kdns.dns.answer import FORWARD, TRANSFER, Answer
from kdns.dns.records import FORMERR, NOTIMP, REFUSED
from kdns.server import policyreplies, replymemo, splices
from kdns.server.edns import (  # noqa: F401 (EDE_* and with_ede: imported from here before)
    EDE_BLOCKED,
    EDE_FILTERED,
    EDE_NOT_AUTHORITATIVE,
    EDE_PROHIBITED,
    MIN_UDP,
    ONE_ADDITIONAL,
    Edns,
    Malformed,
    cookie_key,
    plain_opt,
    read_edns,
    with_ede,
)
from kdns.server.meter import FAST_DURATION, TCP4, UDP4, Meter
from kdns.server.policyreplies import (  # noqa: F401 (BLOCK: imported from here before)
    ALLOW,
    BLOCK,
    BLOCKED,
    DROP,
    FILTER,
    FILTERED,
    FORMERR_ANSWER,
    META_TYPES,
    REFUSED_ANSWER,
)
from kdns.server.query import (  # noqa: F401 (the protocols: imported from here before)
    DEFERRED,
    Autopathing,
    ClientViews,
    Filter,
    Forwarding,
    Query,
    Replier,
    Siblings,
    Transfers,
)
from kdns.server.replyform import MAX_TCP, ReplyForm, header_reply  # noqa: F401 (MAX_TCP)
from kdns.server.replymemo import FOREVER, M_COOKIE_ROWS, M_METER, M_ROWS, MEMO_MAX  # noqa: F401
from kdns.server.stats import Stats

Lookup = Callable[[bytes, int, int, bytes], Answer]  # name, qtype, qclass, question key


class Responder(ReplyForm):
    """Turns query bytes into response bytes against a lookup (registry dict + resolver).

    Optional parts, each None unless configured so the hot path pays nothing for them: the
    meter (metrics), the forwarder (names outside our zones), transfers (AXFR/IXFR over TCP),
    the ACL, views by client network (block lists, zones per view: one attribute test when
    there are none). ``loadbalance`` rotates multi-address answers (CoreDNS loadbalance).
    """

    __slots__ = (
        "answers",
        "derived",
        "stats",
        "_resolve",
        "siblings",
        "meter",
        "forwarder",
        "transfers",
        "forward_allow",
        "rrl",
        "zone",
        "qtype",
    )

    def __init__(
        self,
        answers: dict[bytes, Answer],
        resolve: Lookup,
        udp_size: int = 1232,
        meter: Meter | None = None,
    ) -> None:
        self.answers = answers
        self.derived: dict[bytes, Answer] = {}  # the registry's derived answers (see there)
        self.stats = Stats()  # the app passes its own, shared with the protocols
        self.siblings: Siblings | None = None
        self.meter = meter
        self.forwarder: Forwarding | None = None
        self.transfers: Transfers | None = None
        # The reply memo (see ``_remember``): on while no stage that judges the client or
        # rewrites the question is configured; the setters below turn it on and off.
        self._memo: dict[bytes, list[Any]] | None = {}
        # Whether the ACL or views judge each client (killer mode's hits check them then).
        self.per_client = False
        self._acl: Filter | None = None
        self._views: ClientViews | None = None  # [[views]]: kdns.policy.views.Views
        self.forward_allow: Callable[[str], bool] | None = None  # None: every client
        # CoreDNS autopath (kdns.authority.autopath.Autopath): asked where a name would be NXDOMAIN
        # only; None costs that path one attribute test and the rest nothing.
        self._autopath: Autopathing | None = None
        # CoreDNS rewrite (kdns.rules.rewrite.Rewrite, before local data) and template
        # (kdns.rules.template.Templates, after autopath, before forward): None costs the hot
        # path one attribute test; configured, a question no rule matches costs one set lookup.
        self._rewrite: Any = None
        self._template: Any = None
        # Response rate limiting (kdns.server.rrl.Rrl), applied by the UDP transport to what
        # this returns; None (the default) costs the hot path one attribute test.
        self.rrl: Any = None
        self._loadbalance = False
        self.zone = "."  # zone and qtype of the last answer, read by the meter
        self.qtype = b""
        # Until when (monotonic seconds) the same query bytes get the same reply bytes, for
        # killer mode's wire cache: FOREVER for registry answers (changes invalidate them),
        # the forward cache's next countdown for forwarded ones, 0 for one-off replies.
        self.keep = 0.0
        self._turn = 0
        self.set_udp_size(udp_size)
        self.resolve = resolve

    @property
    def resolve(self) -> Lookup:
        """The lookup of names the answers dict does not hold (a Resolver's ``resolve``)."""
        return self._resolve

    @resolve.setter
    def resolve(self, resolve: Lookup) -> None:
        # A new resolver (a reload's): the splices (kdns.server.splices) were its
        # predecessor's rule's, and start afresh; its own rule serves them when it has one.
        self._resolve = resolve
        owner = getattr(resolve, "__self__", None)
        self.siblings = owner if hasattr(owner, "sibling_answer") else None
        self._memo_reset()

    def respond(
        self,
        data: bytes,
        channel: int = UDP4,
        peer: Any = None,
        replier: Replier | None = None,
    ) -> bytes | list[bytes] | None:
        """The response to one query: bytes, several messages (a zone transfer over TCP),
        ``DEFERRED`` (answered later through ``replier`` once an upstream replies; counted
        and logged then) or None (dropped)."""
        memo = self._memo
        if memo is not None and channel < TCP4:
            meter = self.meter
            started = perf_counter() if meter is not None else 0.0
            entry = memo.get(data[2:])
            slot = M_ROWS + channel  # where the entry keeps this reply's meter row
            if entry is None and (cookie := cookie_key(data)) is not None:
                entry = memo.get(cookie)
                slot = M_COOKIE_ROWS + channel
            if entry is not None and replymemo.holds(self, entry):
                response = replymemo.recalled(self, data, entry)
                if meter is not None:
                    row = entry[slot]
                    if row is None or entry[M_METER] is not meter:
                        row = self._row(channel, data, response)
                        replymemo.keep_row(entry, slot, meter, row)
                    self._count(row, perf_counter() - started)
                return response
            self.stats.memo_misses += 1
        return self.respond_anew(data, channel, peer, replier)

    def respond_anew(
        self,
        data: bytes,
        channel: int = UDP4,
        peer: Any = None,
        replier: Replier | None = None,
    ) -> bytes | list[bytes] | None:
        """``respond`` without asking the reply memo (the batched UDP loop asked it)."""
        meter = self.meter
        if meter is None:
            return self._respond(data, channel, peer, replier)
        started = perf_counter()
        response = self._respond(data, channel, peer, replier)
        if response.__class__ is bytes:
            self._count(self._row(channel, data, response), perf_counter() - started)
        return response

    def _row(self, channel: int, data: bytes, response: bytes) -> list[float]:
        """The meter row of this reply's labels and sizes (``zone`` and ``qtype`` say them)."""
        meter = self.meter
        key = (channel, self.qtype, self.zone, response[3] & 0x0F, len(data), len(response))
        return meter.rows.get(key) or meter.new_row(*key)  # type: ignore[union-attr]

    def _count(self, row: list[float], seconds: float) -> None:
        """Meter.record inlined (the call alone cost a third of the accounting): a duration
        sum and a bucket count per row."""
        row[0] += seconds
        if seconds <= FAST_DURATION:
            row[1] += 1
        else:
            self.meter.slow(row, seconds)  # type: ignore[union-attr]

    def _respond(self, data: bytes, channel: int, peer: Any, replier: Replier | None) -> bytes | list[bytes] | None:  # fmt: skip
        tcp = channel >= TCP4
        # The meter's labels for replies that stop before the question is read (FORMERR, ...).
        self.zone = "."
        self.qtype = b""
        self.keep = 0.0
        n = len(data)
        if n < 12:
            return None  # not even a header to answer
        flags = data[2]
        if flags & 0x80:
            return None  # a response: never answer one (reflection loops)
        if flags & 0x78:
            return header_reply(data, NOTIMP)
        if data[4:6] != b"\x00\x01":
            return header_reply(data, FORMERR)
        # Walk the question name: plain labels only (no compression in a lone question).
        # This is names.question_end inlined: the hot path saves a call per query.
        pos = 12
        while True:
            if pos >= n:
                return header_reply(data, FORMERR)
            length = data[pos]
            if length == 0:
                break
            if length > 63:
                return header_reply(data, FORMERR)
            pos += length + 1
        qend = pos + 5
        if qend > n or pos - 11 > 255:
            return header_reply(data, FORMERR)
        name = data[12 : pos + 1].lower()
        edns = None
        counts = data[6:12]
        if counts != b"\x00\x00\x00\x00\x00\x00":
            # The common EDNS query (one option-less OPT) is one lookup; anything else walks.
            edns = plain_opt(data, qend) if counts == ONE_ADDITIONAL else None
            if edns is None:
                ancount, nscount, arcount = struct.unpack_from("!HHH", data, 6)
                if ancount > 1 or nscount > 1 or arcount > 2:  # miekg/dns defaultMsgAcceptFunc
                    return header_reply(data, FORMERR)
                try:
                    edns = read_edns(data, qend, ancount, nscount, arcount)
                except ValueError:  # Malformed, or names.BadName
                    return header_reply(data, FORMERR)
            if edns is not None and edns.version:
                return self._badvers(data, qend, edns)
        self.qtype = data[pos + 1 : pos + 3]  # for the meter
        if peer is PEER_LATER and (
            self._acl is not None or self._views is not None or self._rewrite is not None
        ):
            peer = _peer_now(replier)
        if self._acl is not None:
            action = self._acl.decide(
                peer[0] if peer else "", name, (data[pos + 1] << 8) | data[pos + 2]
            )
            if action != ALLOW:
                if action == DROP:
                    return None
                return policyreplies.denied(self, data, qend, edns, tcp, action)
        key = name + data[pos + 1 : qend]
        watch = None
        if self._views is not None:
            special = self._views.pick(peer, name, (data[pos + 1] << 8) | data[pos + 2])
            if special is not None:
                return policyreplies.viewed(
                    self, special, data, name, pos, qend, edns, channel, peer, replier
                )
            watch = self._views.watching  # a view with block lists: CNAME chains are inspected
        if self._rewrite is not None and key not in self._rewrite.passes:
            rewritten = self._rewrite.respond(self, data, key, qend, edns, channel, peer, replier)
            if rewritten is not NOT_REWRITTEN:
                return rewritten
        answer = self.answers.get(key)
        found = 1  # where the answer came from: 1 answers, 2 derived, 0 computed now
        if answer is not None:
            self.stats.answer_hits += 1
        else:
            # Second lookup: answers derived before from the same registry state (NXDOMAIN
            # and NODATA of search-path walks, computed pod names), as cheap as a positive.
            answer = self.derived.get(key)
            if answer is not None:
                self.stats.derived_hits += 1
                found = 2
            else:
                found = 0
                qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
                if qtype in META_TYPES:
                    # RFC 6895 3.1: OPT, TKEY and TSIG are meta-types, never asked for; type 0
                    # is reserved. Such a question is malformed (as BIND and Knot answer).
                    return self.reply(data, qend, edns, tcp, FORMERR_ANSWER)
                answer = self._resolve(name, qtype, qclass, key)
                if peer is PEER_LATER and (answer is FORWARD or answer is TRANSFER):
                    peer = _peer_now(replier)  # forward.allow, the forwarder, transfer ACLs
                if answer is FORWARD and self._template is not None:
                    templated = self._template.lookup(name, qtype, qclass, key, peer)
                    if templated is not None:
                        return self._templated(data, qend, edns, tcp, templated)
                if answer is FORWARD or answer is TRANSFER:
                    query = Query(data, name, qtype, qend, edns, channel, self)
                    if answer is TRANSFER:
                        return self._transfer(query, peer)
                    if self.forwarder is None or not self.may_forward(peer):
                        return policyreplies.not_forwarded(self, data, qend, edns, tcp)
                    else:
                        query.view = watch
                        response = self.forwarder.handle(query, replier, peer)
                        if response is None:
                            return DEFERRED
                        return response if watch is None else self.inspected(watch, response, query)  # fmt: skip
            if answer.rcode == 3 and self._autopath is not None:  # NXDOMAIN: the pod's walk?
                if peer is PEER_LATER:
                    peer = _peer_now(replier)
                autopath = self._autopath
                autopath.kept = None
                walked = autopath.walk(self, data, name, qend, edns, channel, peer, replier, answer, watch)  # fmt: skip
                if walked is not None:  # a reply for this namespace's pods at most
                    self.zone = answer.zone
                    kept = autopath.kept
                    self.keep = kept[4] if kept is not None else 0.0
                    return walked
            if self._template is not None and (answer.rcode == 3 or answer.rcode == 5):
                if peer is PEER_LATER:
                    peer = _peer_now(replier)
                qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
                templated = self._template.lookup(name, qtype, qclass, key, peer)
                if templated is not None:
                    return self._templated(data, qend, edns, tcp, templated)
        self.zone = answer.zone  # for the meter
        if answer.chase is None or self.forwarder is None:
            self.keep = FOREVER
            if watch is not None and answer.body.find(b"\x00\x05\x00\x01") >= 0:  # a CNAME
                return policyreplies.inspect_local(
                    self, watch, data, name, pos, qend, edns, channel, answer
                )
            response = self.reply(data, qend, edns, tcp, answer)
            if found and not tcp and self._memo is not None:
                if self.keep is FOREVER:
                    replymemo.remember(self, data, key, answer, found == 1, response, qend)
                elif answer.rotate and not response[2] & 0x02:  # rotated whole (loadbalance)
                    replymemo.remember(self, data, key, answer, found == 1, response, qend, True)  # fmt: skip
            elif answer.rcode == 3 and not tcp and self._splices is not None:  # a first sight
                splices.learn(self, data, name, qend, answer, response, replymemo.stamp_of(self))
            return response
        # An ExternalName chased upstream: the reply depends on the client (forward.allow) and
        # on upstream TTLs, so it is this reply's alone (never in the wire cache).
        if peer is PEER_LATER:
            peer = _peer_now(replier)
        if not self.may_forward(peer):
            if watch is not None:
                return policyreplies.inspect_local(
                    self, watch, data, name, pos, qend, edns, channel, answer
                )
            return self.reply(data, qend, edns, tcp, answer)
        qtype = (data[pos + 1] << 8) | data[pos + 2]
        query = Query(data, name, qtype, qend, edns, channel, self)
        query.view = watch
        response = self.forwarder.chase(query, answer, replier, peer)
        if response is None:
            return DEFERRED
        return response if watch is None else self.inspected(watch, response, query)

    def _templated(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer) -> bytes:  # fmt: skip
        """A template's answer: the same for every client unless a template reads the
        client's address, so killer mode may keep it (a reload drops it)."""
        self.zone = answer.zone
        self.keep = 0.0 if self.template.remote else FOREVER
        return self.reply(data, qend, edns, tcp, answer)

    def may_forward(self, peer: Any) -> bool:
        """forward.allow: forwarding is offered to these client networks only (BIND's
        allow-recursion); the rest get REFUSED for names outside our zones. No peer: an
        internal caller."""
        return self.forward_allow is None or not peer or self.forward_allow(peer[0])

    def _transfer(self, query: Query, peer: Any) -> bytes | list[bytes]:
        """AXFR/IXFR: over TCP only (RFC 5936 4.2), from allowed clients only; else REFUSED."""
        if query.tcp and self.transfers is not None:
            messages = self.transfers.messages(query, peer)
            if messages is not None:
                return messages
        return query.error(REFUSED)

    def inspected(self, view: Any, response: bytes, query: Query) -> bytes:
        """CNAME inspection for a view with block lists (kdns.server.policyreplies)."""
        return policyreplies.inspected(self, view, response, query)

    def blocked_reply(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer, text: str) -> bytes:  # fmt: skip
        """A block list's reply with EDE 15 (kdns.server.policyreplies)."""
        return policyreplies.blocked_reply(self, data, qend, edns, tcp, answer, text)


# What the rewrite stage returns for a question no rule rewrites: the path goes on.
NOT_REWRITTEN: Any = object()

# What the UDP loop passes as ``peer`` to ``respond``: the client's address is made into a
# tuple (half a microsecond) only when a stage needs it, asked of the replier
# (``current_peer``): policy, a name that is not pre-rendered, an ExternalName chase. A
# pre-rendered answer with no policy configured never needs it.
PEER_LATER: Any = type("PeerLater", (), {"__slots__": (), "__repr__": lambda self: "PEER_LATER"})()


def _peer_now(replier: Any) -> Any:
    """The client's address, asked of the UDP server that passed ``PEER_LATER`` (its
    ``current_peer``: the datagram of its batch being answered)."""
    return replier.current_peer()
