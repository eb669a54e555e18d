"""Query in, response out, in wire bytes: the hot path shared by UDP and TCP.

No DNS library runs here. The 12-byte header decides first (miekg/dns's accept check: QR set ->
drop, opcode other than QUERY -> NOTIMP, QDCOUNT != 1 -> FORMERR), the question name is walked
once and lowercased into the lookup key, the EDNS OPT record (RFC 6891) is read when the
additional section holds one, and the answer is the client's ID and flags + its own question
bytes + pre-rendered body. Anything malformed gets FORMERR (or silence when even the header is
short); nothing here raises on bad input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from kdns.dns import names
from kdns.dns.answer import FORWARD, TRANSFER, Answer, empty
from kdns.dns.records import BADVERS, FORMERR, NOERROR, NOTIMP, OPT, REFUSED
from kdns.server import querylog
from kdns.server.meter import FAST_DURATION, TCP4, UDP4, Meter
from kdns.server.stats import Stats

Lookup = Callable[[bytes, int, int, bytes], Answer]  # name, qtype, qclass, question key

MIN_UDP = 512  # RFC 1035 4.2.1 without EDNS
MAX_TCP = 65535  # RFC 1035 4.2.2: two-byte length prefix
_U16 = struct.Struct("!H")
_ZERO_COUNTS = b"\x00\x00\x00\x00\x00\x00\x00\x00"


class Edns:
    """What the client's OPT record said (RFC 6891 6.1.2)."""

    __slots__ = ("size", "version", "do")

    def __init__(self, size: int, version: int, do: bool) -> None:
        self.size = size
        self.version = version
        self.do = do


class Malformed(ValueError):
    """Records after the question that do not parse (names.BadName is one too)."""


def read_edns(data: bytes, pos: int, ancount: int, nscount: int, arcount: int) -> Edns | None:
    """Walk the records after the question and return the OPT record's contents, if any."""
    n = len(data)
    edns = None
    for index in range(ancount + nscount + arcount):
        start = pos
        pos = names.name_end(data, pos)
        if pos + 10 > n:
            raise Malformed("record header runs past the packet")
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, pos)
        pos += 10 + rdlength
        if pos > n:
            raise Malformed("rdata runs past the packet")
        if rtype == OPT:
            # RFC 6891 6.1.1: one OPT, in the additional section, owned by the root.
            if index < ancount + nscount or edns is not None:
                raise Malformed("OPT outside the additional section or twice")
            if data[start] != 0:
                raise Malformed("OPT owner is not the root")
            _check_options(data, pos - rdlength, pos)
            edns = Edns(max(rclass, MIN_UDP), (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    return edns


def _check_options(data: bytes, pos: int, end: int) -> None:
    """RFC 6891 6.1.2: OPT RDATA is {code, length, value}*; an option must not overrun it."""
    while pos < end:
        if pos + 4 > end:
            raise Malformed("EDNS option header overruns the OPT RDATA")
        pos += 4 + ((data[pos + 2] << 8) | data[pos + 3])
        if pos > end:
            raise Malformed("EDNS option overruns the OPT RDATA")


# The OPT records clients send are few and repeat (dig, dnsperf -e, systemd-resolved and
# node-local caches each send the same bytes every time): the record without options, as its
# raw bytes, maps to its parsed form, so an EDNS query costs one more dict lookup, not a parse.
_EDNS_SEEN: dict[bytes, Edns] = {}
_EDNS_SEEN_MAX = 256
_ONE_ADDITIONAL = b"\x00\x00\x00\x00\x00\x01"


def _plain_opt(data: bytes, qend: int) -> Edns | None:
    """The OPT record of a query whose only extra record is an option-less OPT (the common
    EDNS query), from the table of those seen before; None when it is anything else."""
    edns = _EDNS_SEEN.get(data[qend:])
    if edns is None and len(data) == qend + 11 and data[qend + 9 : qend + 11] == b"\x00\x00":
        try:
            edns = read_edns(data, qend, 0, 0, 1)
        except ValueError:
            return None
        if edns is not None and len(_EDNS_SEEN) < _EDNS_SEEN_MAX:
            _EDNS_SEEN[data[qend:]] = edns
    return edns


class Replier(Protocol):
    """Where a deferred (forwarded) answer goes: the UDP protocol or the TCP connection."""

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None: ...


class Forwarding(Protocol):
    """The forwarder, seen from the hot path (kdns.server.forwarding.Forwarder)."""

    def handle(self, query: Query, replier: Replier | None, peer: Any) -> bytes | None: ...

    def chase(
        self, query: Query, answer: Answer, replier: Replier | None, peer: Any
    ) -> bytes | None: ...


class Autopathing(Protocol):
    """The autopath stage, seen from the hot path (kdns.authority.autopath.Autopath)."""

    # The last walk answered at once: (query bytes, namespace label, names read, forwarded,
    # until when it holds, outcome, queries saved), for killer mode's wire cache; None when
    # it may not be kept.
    kept: tuple[bytes, bytes, tuple[bytes, ...], bool, float, str, int] | None

    def namespace_of(self, ip: str) -> bytes | None: ...

    def count_hit(self, result: str, saved: int) -> None: ...

    def walk(self, responder: Responder, data: bytes, name: bytes, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None, negative: Answer, watch: Any) -> bytes | list[bytes] | None: ...  # fmt: skip


class Transfers(Protocol):
    def messages(self, query: Query, peer: Any) -> list[bytes] | None: ...


class Filter(Protocol):
    def decide(self, client_ip: str, qname: bytes, qtype: int) -> str: ...


class ClientViews(Protocol):
    """Views by client network (kdns.policy.views.Views), seen from the hot path."""

    last: Any  # the view of the client ``pick`` saw last (killer mode tags cached replies)
    hit: Any  # the block list that answered the last name ``pick`` blocked (EDE text)
    watching: Any  # the last client's view when it has block lists (CNAME inspection)
    answered: Any  # the last answer ``pick`` took from a view's own data (gateway classes)

    def pick(self, peer: Any, name: bytes, qtype: int) -> Answer | None: ...

    def view_of_packed(self, packed: bytes) -> Any: ...

    def count(self, view: Any, blocklist: Any) -> None: ...


class Query:
    """A parsed question, handed to the slower paths (forwarding, transfer)."""

    __slots__ = ("data", "name", "qtype", "qend", "edns", "tcp", "channel", "started", "responder", "view")  # fmt: skip

    def __init__(self, data: bytes, name: bytes, qtype: int, qend: int, edns: Edns | None, channel: int, responder: Responder) -> None:  # fmt: skip
        self.data = data
        self.name = name  # lowercased wire name
        self.qtype = qtype
        self.qend = qend  # offset just past the question
        self.edns = edns
        self.channel = channel
        self.tcp = channel >= TCP4
        self.started = perf_counter()  # microseconds after arrival: the slow paths start here
        self.responder = responder
        self.view: Any = None  # the client's view, when its answers are inspected (CNAMEs)

    def deliver(self, replier: Replier, response: bytes, peer: Any) -> None:
        """Send a reply that comes later (forwarded, chased) and account for it as the hot
        path accounts for the rest: the meter (rcode, sizes, duration from arrival) and the
        query log both see it when it is sent."""
        if self.view is not None:  # CNAME inspection for a view with block lists
            response = self.responder.inspected(self.view, response, self)
        replier.send_reply(response, peer, self)
        meter = self.responder.meter
        if meter is not None:
            meter.record(
                self.channel,
                self.data[self.qend - 4 : self.qend - 2],
                ".",
                response[3] & 0x0F,
                perf_counter() - self.started,
                len(self.data),
                len(response),
            )

    @property
    def key(self) -> bytes:
        """The lookup key: lowercased name + qtype + qclass (as the registry's answers dict)."""
        return self.name + self.data[self.qend - 4 : self.qend]

    def opt(self) -> bytes:
        """Our OPT record for the reply when the query had one (else nothing)."""
        if self.edns is None:
            return b""
        return self.responder.opt_record(self.edns.do)

    def error(self, rcode: int) -> bytes:
        """An empty reply with ``rcode`` (SERVFAIL when upstreams fail), OPT echoed."""
        return self.responder.reply(self.data, self.qend, self.edns, self.tcp, empty(rcode, False))


class Responder:
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
        "resolve",
        "udp_size",
        "meter",
        "forwarder",
        "transfers",
        "_acl",
        "_views",
        "forward_allow",
        "_autopath",
        "_rewrite",
        "_template",
        "rrl",
        "_loadbalance",
        "_memo",
        "per_client",
        "zone",
        "qtype",
        "keep",
        "_turn",
        "_opt",
        "_opt_do",
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
        self.resolve = resolve
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

    def _memo_reset(self) -> None:
        plain = (
            self._acl is None
            and self._views is None
            and self._autopath is None
            and self._rewrite is None
            and self._template is None
        )
        self._memo = {} if plain else None
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
            entry = memo.get(data[2:])
            if entry is not None:
                answer = entry[M_ANSWER]
                source = self.answers if entry[M_REGISTRY] else self.derived
                if answer.body is entry[M_BODY] and source.get(entry[M_KEY]) is answer:
                    return self._recalled(data, channel, entry)
        meter = self.meter
        if meter is None:
            return self._respond(data, channel, peer, replier)
        started = perf_counter()
        response = self._respond(data, channel, peer, replier)
        if response.__class__ is bytes:
            # Meter.record inlined (the call alone cost a third of the accounting): one row
            # per exact label set and sizes, a duration sum and a bucket count.
            seconds = perf_counter() - started
            key = (channel, self.qtype, self.zone, response[3] & 0x0F, len(data), len(response))
            row = meter.rows.get(key)
            if row is None:
                row = meter.new_row(*key)
            row[0] += seconds
            if seconds <= FAST_DURATION:
                row[1] += 1
            else:
                meter.slow(row, seconds)
        return response

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
            return _header_reply(data, NOTIMP)
        if data[4:6] != b"\x00\x01":
            return _header_reply(data, FORMERR)
        # Walk the question name: plain labels only (no compression in a lone question).
        # This is names.question_end inlined: the hot path saves a call per query.
        pos = 12
        while True:
            if pos >= n:
                return _header_reply(data, FORMERR)
            length = data[pos]
            if length == 0:
                break
            if length > 63:
                return _header_reply(data, FORMERR)
            pos += length + 1
        qend = pos + 5
        if qend > n or pos - 11 > 255:
            return _header_reply(data, FORMERR)
        name = data[12 : pos + 1].lower()
        edns = None
        counts = data[6:12]
        if counts != b"\x00\x00\x00\x00\x00\x00":
            # The common EDNS query (one option-less OPT) is one lookup; anything else walks.
            edns = _plain_opt(data, qend) if counts == _ONE_ADDITIONAL else None
            if edns is None:
                ancount, nscount, arcount = struct.unpack_from("!HHH", data, 6)
                if ancount > 1 or nscount > 1 or arcount > 2:  # miekg/dns defaultMsgAcceptFunc
                    return _header_reply(data, FORMERR)
                try:
                    edns = read_edns(data, qend, ancount, nscount, arcount)
                except ValueError:  # Malformed, or names.BadName
                    return _header_reply(data, FORMERR)
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
                return self._denied(data, qend, edns, tcp, action)
        key = name + data[pos + 1 : qend]
        watch = None
        if self._views is not None:
            special = self._views.pick(peer, name, (data[pos + 1] << 8) | data[pos + 2])
            if special is not None:
                return self._viewed(special, data, name, pos, qend, edns, channel, peer, replier)
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
                answer = self.resolve(name, qtype, qclass, key)
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
                    if self.forwarder is None or not self._may_forward(peer):
                        return self._not_forwarded(data, qend, edns, tcp)
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
                return self._inspect_local(watch, data, name, pos, qend, edns, channel, answer)
            response = self.reply(data, qend, edns, tcp, answer)
            if found and not tcp and self._memo is not None and self.keep is FOREVER:
                self._remember(data, key, answer, found == 1, response, qend)
            return response
        # An ExternalName chased upstream: the reply depends on the client (forward.allow) and
        # on upstream TTLs, so it is this reply's alone (never in the wire cache).
        if peer is PEER_LATER:
            peer = _peer_now(replier)
        if not self._may_forward(peer):
            if watch is not None:
                return self._inspect_local(watch, data, name, pos, qend, edns, channel, answer)
            return self.reply(data, qend, edns, tcp, answer)
        qtype = (data[pos + 1] << 8) | data[pos + 2]
        query = Query(data, name, qtype, qend, edns, channel, self)
        query.view = watch
        response = self.forwarder.chase(query, answer, replier, peer)
        if response is None:
            return DEFERRED
        return response if watch is None else self.inspected(watch, response, query)

    # ---------------------------------------------------------- the reply memo

    def _remember(self, data: bytes, key: bytes, answer: Answer, registry: bool, response: bytes, qend: int) -> None:  # fmt: skip
        """Keep a pre-rendered answer's reply by the query's bytes after its ID, so the same
        question (flags, EDNS size and DO bit included) is answered next time without the
        header checks, the name walk and the reply's assembly.

        Invalidation: an entry is served only while the answers dict (or the derived memo) it
        came from still maps its key to the same Answer object holding the same body bytes;
        everything else in the reply is a function of the query bytes and of settings whose
        setters start the memo afresh (udp_size, loadbalance, the stages). Only replies the
        registry gives every client alike get here (no ACL, views, rewrite, autopath or
        template configured; no rotation; UDP), and only queries without EDNS options (a
        client cookie would make every entry one client's). Bounded: MEMO_MAX entries, then
        it starts afresh, so a flood of names costs an insert each and nothing more."""
        if len(data) > qend + 11:
            return  # EDNS options (a cookie): this client's bytes alone
        memo = self._memo
        if memo is None:
            return
        if len(memo) >= MEMO_MAX:
            memo.clear()
        memo[data[2:]] = [registry, key, answer, answer.body, response[2:], self.qtype, None, None, None]  # fmt: skip

    def _recalled(self, data: bytes, channel: int, entry: list[Any]) -> bytes:
        """A memo hit: the client's ID + the kept reply, counted as a dict answer is, and
        metered into the row kept with the entry (one per UDP channel)."""
        started = perf_counter()
        response = data[:2] + entry[M_REPLY]
        self.zone = entry[M_ANSWER].zone
        self.qtype = entry[M_QTYPE]
        self.keep = FOREVER
        if entry[M_REGISTRY]:
            self.stats.answer_hits += 1
        else:
            self.stats.derived_hits += 1
        meter = self.meter
        if meter is not None:
            row = entry[M_ROWS + channel]
            if row is None or entry[M_METER] is not meter:
                row = meter.rows.get(
                    (channel, self.qtype, self.zone, response[3] & 0x0F, len(data), len(response))
                ) or meter.new_row(channel, self.qtype, self.zone, response[3] & 0x0F, len(data), len(response))  # fmt: skip
                entry[M_ROWS + channel] = row
                entry[M_METER] = meter
            seconds = perf_counter() - started
            row[0] += seconds
            if seconds <= FAST_DURATION:
                row[1] += 1
            else:
                meter.slow(row, seconds)
        return response

    def _templated(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer) -> bytes:  # fmt: skip
        """A template's answer: the same for every client unless a template reads the
        client's address, so killer mode may keep it (a reload drops it)."""
        self.zone = answer.zone
        self.keep = 0.0 if self.template.remote else FOREVER
        return self.reply(data, qend, edns, tcp, answer)

    # ---------------------------------------------------------- block answers, EDE, CNAMEs

    def _inspect_local(self, view: Any, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, answer: Answer) -> bytes:  # fmt: skip
        """A registry answer with a CNAME (local zone, ExternalName) for a client whose view
        has block lists: blocked when the chain passes through a name the view blocks."""
        query = Query(data, name, (data[pos + 1] << 8) | data[pos + 2], qend, edns, channel, self)  # fmt: skip
        return self.inspected(view, self.reply(data, qend, edns, query.tcp, answer), query)

    def inspected(self, view: Any, response: bytes, query: Query) -> bytes:
        """``response``, or the blocked reply of the view's list when its CNAME chain passes
        through a name the view blocks (CNAME inspection, as AdGuard Home and Blocky do)."""
        hit = view.cname_blocked(response)
        if hit is None:
            return response
        blocklist, target = hit
        self.keep = 0.0  # never kept by killer mode's wire cache (lists change on their own)
        if self.views is not None:
            self.views.count(view, blocklist)
        text = f"blocked by {blocklist.name} (CNAME {names.to_text(target)})"
        return self.blocked_reply(query.data, query.qend, query.edns, query.tcp, blocklist.answer_for(query.qtype), text)  # fmt: skip

    def blocked_reply(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer, text: str) -> bytes:  # fmt: skip
        """A block list's reply; with EDNS, its OPT carries Extended DNS Error 15 (Blocked,
        RFC 8914) whose EXTRA-TEXT names the list."""
        response = with_ede(self.reply(data, qend, edns, tcp, answer), edns, EDE_BLOCKED, text)
        if querylog.noting:
            querylog.note_blocked(response, text.split()[2] if text.startswith("blocked by ") else "?")  # fmt: skip
        return response

    def _denied(self, data: bytes, qend: int, edns: Edns | None, tcp: bool, action: str) -> bytes:  # fmt: skip
        """An ACL's ``block`` (REFUSED) or ``filter`` (NOERROR, nothing), with an Extended DNS
        Error when the query had EDNS. RFC 8914 tells the three policy codes apart: 15 Blocked
        is a domain on the operator's block list (kdns's block lists), 17 Filtered a name
        filtered by the policy that applies to this client, 18 Prohibited a query refused to an
        unauthorised client ("annotate its REFUSED message"). ``filter`` answers an empty
        NOERROR to the clients and names the rule picks: 17, as CoreDNS's acl plugin sends
        (coredns/coredns#5532). ``block`` refuses the client: 18, where CoreDNS sends 15; 15
        would name a block list, and kdns keeps it for its block lists."""
        if action == FILTER:
            return with_ede(self.reply(data, qend, edns, tcp, FILTERED), edns, EDE_FILTERED, "filtered by acl")  # fmt: skip
        return with_ede(self.reply(data, qend, edns, tcp, BLOCKED), edns, EDE_PROHIBITED, "refused by acl")  # fmt: skip

    def _not_forwarded(self, data: bytes, qend: int, edns: Edns | None, tcp: bool) -> bytes:
        """REFUSED for a name outside kdns's zones that is not forwarded for this client (a
        template did not answer it either): forward.allow keeps the client out (EDE 18
        Prohibited, as BIND's allow-recursion), or there is no forwarding at all (EDE 20 Not
        Authoritative: RFC 8914 4.21, "not configured for recursion")."""
        self.zone = REFUSED_ANSWER.zone
        self.keep = FOREVER
        refused = self.reply(data, qend, edns, tcp, REFUSED_ANSWER)
        if self.forwarder is None:
            return with_ede(refused, edns, EDE_NOT_AUTHORITATIVE, "")
        return with_ede(refused, edns, EDE_PROHIBITED, "recursion not allowed for this client")  # fmt: skip

    def _viewed(self, special: Answer, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None) -> bytes | list[bytes] | None:  # fmt: skip
        """The client's view decided: a block list's answer (never kept by killer mode's wire
        cache: the lists change on their own), or ``FORWARD`` for a name of a zone the view
        does not serve (forwarded when the client may forward, else REFUSED)."""
        tcp = channel >= TCP4
        if special is not FORWARD:
            if self.views is not None and special is self.views.answered:
                return self._own(special, data, name, pos, qend, edns, channel, peer, replier)
            hit = self.views.hit if self.views is not None else None
            text = f"blocked by {hit.name}" if hit is not None else "blocked"
            return self.blocked_reply(data, qend, edns, tcp, special, text)
        qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
        if qtype in META_TYPES:
            return self.reply(data, qend, edns, tcp, FORMERR_ANSWER)
        if (
            qclass not in (1, 255)
            or qtype in (251, 252)  # IXFR, AXFR of a zone this client does not see
            or self.forwarder is None
            or not self._may_forward(peer)
        ):
            # The client's view hides this zone from it: refused by policy (EDE 18).
            refused = self.reply(data, qend, edns, tcp, REFUSED_ANSWER)
            return with_ede(refused, edns, EDE_PROHIBITED, "zone not in this client's view")
        response = self.forwarder.handle(Query(data, name, qtype, qend, edns, channel, self), replier, peer)  # fmt: skip
        return DEFERRED if response is None else response

    def _own(self, answer: Answer, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None) -> bytes | list[bytes] | None:  # fmt: skip
        """An answer of the client's view's own data (its gateway class filters): served as
        a registry answer is (kept by killer mode's wire cache, tagged with the view; CNAME
        inspection; an external CNAME target chased)."""
        tcp = channel >= TCP4
        self.zone = answer.zone
        watch = self.views.watching if self.views is not None else None
        if answer.chase is None or self.forwarder is None or not self._may_forward(peer):
            self.keep = FOREVER if answer.chase is None or self.forwarder is None else 0.0
            if watch is not None and answer.body.find(b"\x00\x05\x00\x01") >= 0:
                return self._inspect_local(watch, data, name, pos, qend, edns, channel, answer)
            return self.reply(data, qend, edns, tcp, answer)
        query = Query(data, name, (data[pos + 1] << 8) | data[pos + 2], qend, edns, channel, self)  # fmt: skip
        query.view = watch
        response = self.forwarder.chase(query, answer, replier, peer)
        if response is None:
            return DEFERRED
        return response if watch is None else self.inspected(watch, response, query)

    def _may_forward(self, peer: Any) -> bool:
        """forward.allow: forwarding is offered to these client networks only (BIND's
        allow-recursion); the rest get REFUSED for names outside our zones. No peer: an
        internal caller."""
        return self.forward_allow is None or not peer or self.forward_allow(peer[0])

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
                self._turn += 1
                body = answer.rotated(self._turn)
                self.keep = 0.0  # a rotation is this reply's alone
            counts = answer.counts_edns if edns else answer.counts
            return head + b"\x00\x01" + counts + question + body + opt
        turn = None
        if self._loadbalance and answer.rotate:  # truncated replies rotate too (item 4)
            self._turn += 1
            turn = self._turn
            self.keep = 0.0  # a rotation is this reply's alone
        counts, body, truncated = answer.fit(room, edns is not None, turn)
        if truncated:
            head = head[:2] + bytes((head[2] | 0x02, head[3]))  # TC: retry over TCP
        return head + b"\x00\x01" + counts + question + body + opt

    def _transfer(self, query: Query, peer: Any) -> bytes | list[bytes]:
        """AXFR/IXFR: over TCP only (RFC 5936 4.2), from allowed clients only; else REFUSED."""
        if query.tcp and self.transfers is not None:
            messages = self.transfers.messages(query, peer)
            if messages is not None:
                return messages
        return query.error(REFUSED)

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


FOREVER = float("inf")
# The reply memo (Responder._remember): its bound, and the fields of an entry.
MEMO_MAX = 16384
M_REGISTRY, M_KEY, M_ANSWER, M_BODY, M_REPLY, M_QTYPE, M_ROWS, M_METER = 0, 1, 2, 3, 4, 5, 6, 8
# What the rewrite stage returns for a question no rule rewrites: the path goes on.
NOT_REWRITTEN: Any = object()

# RFC 8914 Extended DNS Errors: option code 15, INFO-CODEs Blocked (15), Filtered (17),
# Prohibited (18), Not Authoritative (20).
_EDE_HEAD = b"\x00\x0f"
EDE_BLOCKED = 15
EDE_FILTERED = 17
EDE_PROHIBITED = 18
EDE_NOT_AUTHORITATIVE = 20


def with_ede(response: bytes, edns: Edns | None, code: int, text: str) -> bytes:
    """``response`` (built by ``Responder.reply``, whose OPT record ends it with an empty
    RDATA) with an EDE option of ``code`` and EXTRA-TEXT ``text``; unchanged without EDNS
    (RFC 8914 2: the option lives in the OPT record)."""
    if edns is None:
        return response
    extra = text.encode()[:200]
    option = _EDE_HEAD + _U16.pack(2 + len(extra)) + _U16.pack(code) + extra
    return response[:-2] + _U16.pack(len(option)) + option


# What the UDP loop passes as ``peer`` to ``respond``: the client's address is made into a
# tuple (half a microsecond) only when a stage needs it, asked of the replier
# (``current_peer``): policy, a name that is not pre-rendered, an ExternalName chase. A
# pre-rendered answer with no policy configured never needs it.
PEER_LATER: Any = type("PeerLater", (), {"__slots__": (), "__repr__": lambda self: "PEER_LATER"})()

# What ``respond`` returns for a query answered later through its replier (forwarding): no
# message now. An empty list, so TCP's "several messages" path writes nothing for it.
DEFERRED: list[bytes] = []

# ACL actions (kdns.policy.acl) and the answers they give (CoreDNS acl: block -> REFUSED,
# filter -> NOERROR with nothing, drop -> no reply).
ALLOW, BLOCK, FILTER, DROP = "allow", "block", "filter", "drop"
BLOCKED = empty(REFUSED, False)
FILTERED = empty(NOERROR, False)
REFUSED_ANSWER = empty(REFUSED, False)
FORMERR_ANSWER = empty(FORMERR, False)
META_TYPES = frozenset((0, OPT, 249, 250))  # reserved, OPT, TKEY, TSIG


def _peer_now(replier: Any) -> Any:
    """The client's address, asked of the UDP server that passed ``PEER_LATER`` (its
    ``current_peer``: the datagram of its batch being answered)."""
    return replier.current_peer()


def _header_reply(data: bytes, rcode: int) -> bytes:
    """A bare reply (no sections) echoing ID, opcode and RD: for FORMERR and NOTIMP."""
    return data[:2] + bytes((0x80 | (data[2] & 0x79), rcode)) + _ZERO_COUNTS[:8]
