"""Autopath (CoreDNS ``autopath @kubernetes``): a pod's search-path walk in one round trip.

A pod with ``ndots:5`` looking up ``api.github.com`` asks ``api.github.com.<ns>.svc.<zone>``
first, then ``.svc.<zone>``, ``.<zone>``, each host search domain and the bare name, each for A
and AAAA. When the first of those would be NXDOMAIN and the client is a pod kdns knows (its
source address is a pod IP; the namespace is that pod's), this stage walks the rest of the
client's search path itself, in the client's order, and answers the first name that exists:
NOERROR, a CNAME from the asked name to the found name, then the found name's records (NODATA
stops the walk too: the name exists). When nothing exists, the plain NXDOMAIN of the asked name,
so the client walks on by itself.

Where it sits (``kdns.server.wire.Responder``): only where a name of ours would be NXDOMAIN,
after policy and local data and before forwarding, so a name that exists is never short-cut and
a cluster name stays one dict lookup. Each candidate is answered as the client itself would be
answered for it: the ACL and the client's view are asked (either deciding otherwise: no autopath,
the plain NXDOMAIN), names outside our zones only for a client ``forward.allow`` admits, through
the forwarder (its cache first: a repeated walk costs a dict lookup per candidate; a miss goes
upstream on the forwarder's deferred path and the walk resumes when the answer comes, the event
loop never waits). Every TTL of the reply is capped at the minimum of the chain (the found
records and the negative TTLs of the names skipped on the way), since the answer stops being
right when any of them changes.

Replies depend on the client: its namespace (and forward.allow when a candidate went upstream).
A walk answered at once (every candidate from the registry or the forward cache) ends in
``kept``: what killer mode's wire cache needs to keep the reply for the pods of that namespace
alone (the namespace, every name the walk read, so a change to any of them drops it, and until
when the forward cache's answers hold), so a repeated walk costs one dict lookup there too. The
plain NXDOMAIN given to a client of no or another namespace is never kept: another pod of that
namespace must get autopathed.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from kdns.authority.registry import Registry
from kdns.dns import names
from kdns.dns.answer import FORWARD, TRANSFER, Answer, empty
from kdns.dns.records import CLASS_IN, NOERROR, NXDOMAIN, OPT, SOA
from kdns.server.meter import TCP4
from kdns.server.wire import ALLOW, DEFERRED, Edns, Query, Replier, Responder

log = logging.getLogger("kdns.autopath")

NDOTS = 5  # Kubernetes' pod resolv.conf (kubelet): options ndots:5
# Misses by reason (kdns_autopath_misses_total{reason}):
#   unknown_client   the source address is no pod kdns knows (or pods of several namespaces)
#   other_namespace  a pod asked a name under another namespace's search domain
#   not_found        no candidate of the walk exists
#   forward_denied   none of ours exists and forward.allow keeps the client from the rest
#   upstream_failed  none exists and an upstream failed (SERVFAIL, timeout) on the way
#   policy           the ACL or the client's view answers a candidate otherwise
#   unfit            a found reply autopath cannot carry (truncated, unparsable)
REASONS = (
    "unknown_client",
    "other_namespace",
    "not_found",
    "forward_denied",
    "upstream_failed",
    "policy",
    "unfit",
)

_RR = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_TTL = struct.Struct("!I")
_U16 = struct.Struct("!H")
_NO_TTL = 0x7FFFFFFF
# RR types whose RDATA holds names that may be compressed (RFC 3597 4: the RFC 1035 types;
# in practice also SRV, AFSDB, RT, KX, DNAME), as (fixed bytes before the first name, names).
_NAMES_IN_RDATA = {
    2: (0, 1),  # NS
    5: (0, 1),  # CNAME
    12: (0, 1),  # PTR
    39: (0, 1),  # DNAME
    15: (2, 1),  # MX
    18: (2, 1),  # AFSDB
    21: (2, 1),  # RT
    36: (2, 1),  # KX
    33: (6, 1),  # SRV
    6: (0, 2),  # SOA
    14: (0, 2),  # MINFO
    17: (0, 2),  # RP
}
_CNAME_HEAD = b"\xc0\x0c\x00\x05\x00\x01"  # owner: the question name; CNAME, IN
_EMPTY_NOERROR = empty(NOERROR, False)


class Autopath:
    """The stage: the search path it walks, and its counters (read by /metrics)."""

    def __init__(
        self, registry: Registry, search: tuple[str, ...] = (), ndots: int = NDOTS
    ) -> None:
        self.ndots = ndots
        self.search = search  # the host search domains kubelet appends to every pod's path
        self.answers = 0  # autopath replies sent
        self.saved = 0  # queries those replies saved the clients (walk steps not sent)
        self.misses = dict.fromkeys(REASONS, 0)
        # The last walk answered at once, for killer mode's wire cache: (query bytes, namespace
        # label, names read, whether a candidate was forwarded, until when the reply holds,
        # its outcome, the queries it saved): a hit on it counts as this walk would.
        self.kept: Kept | None = None
        self.attach(registry)

    def attach(self, registry: Registry) -> None:
        """(Re)connect to the registry (at start and after a reload rebuilt it)."""
        self.registry = registry
        cluster = registry.cluster.apex
        self._cluster = cluster
        self._svc = b"\x03svc" + cluster  # svc.<zone>
        hosts = []
        for domain in self.search:
            try:
                wire = names.to_wire(domain)
            except ValueError:
                continue  # resolv.conf said something that is no name
            if wire in (cluster, names.ROOT) or wire.endswith(self._svc) or wire in hosts:
                continue  # the cluster's own steps (a ClusterFirst resolv.conf) come first anyway
            hosts.append(wire)
        self._hosts = tuple(hosts)
        # The client's remaining walk after <ns>.svc.<zone>: what autopath saves it.
        self._rest = (self._svc, cluster, *self._hosts)

    def search_path(self, namespace: str) -> list[str]:
        """The search path of a pod in ``namespace`` (text, for logs and docs)."""
        return [
            f"{namespace}.svc.{self.registry.cluster.text}",
            names.to_text(self._svc).rstrip("."),
            self.registry.cluster.text,
            *(names.to_text(h).rstrip(".") for h in self._hosts),
        ]

    def count_hit(self, result: str, saved: int) -> None:
        """A reply killer mode's wire cache kept answered a pod again: count it as its walk."""
        if result == "found":
            self.answers += 1
            self.saved += saved
        else:
            self.misses[result] += 1

    def namespace_of(self, ip: str) -> bytes | None:
        """The namespace label (wire) of the pod at ``ip``; None when unknown or ambiguous."""
        clients = self.registry.client_namespaces
        return clients.get(ip) if clients is not None else None

    def counters(self) -> dict[str, Any]:
        return {"answers": self.answers, "saved": self.saved, "misses": dict(self.misses)}

    def walk(
        self,
        responder: Responder,
        data: bytes,
        name: bytes,
        qend: int,
        edns: Edns | None,
        channel: int,
        peer: Any,
        replier: Replier | None,
        negative: Answer,
        watch: Any,
    ) -> bytes | list[bytes] | None:
        """The reply to ``name`` (lowercased wire), whose answer is NXDOMAIN ``negative``:
        None when the name is not under any ``<ns>.svc.<zone>`` (the caller answers as usual,
        a reply every client gets); else an autopath reply, ``DEFERRED`` (delivered through
        ``replier`` once an upstream answers), or the plain NXDOMAIN, none of which is the
        same for every client."""
        svc = self._svc
        if not name.endswith(svc):
            return None
        cut = len(name) - len(svc)  # where svc.<zone> starts: the namespace label ends there
        last = pos = 0
        while pos < cut:
            last = pos
            pos += name[pos] + 1
        if pos != cut or last == 0:
            return None  # not on a label boundary, or <ns>.svc.<zone> itself
        tcp = channel >= TCP4
        qtype, qclass = struct.unpack_from("!HH", data, qend - 4)
        if qclass != CLASS_IN or qtype in (251, 252):  # IXFR, AXFR
            return responder.reply(data, qend, edns, tcp, negative)
        misses = self.misses
        clients = self.registry.client_namespaces
        label = clients.get(peer[0]) if peer and clients is not None else None
        if label is None:
            misses["unknown_client"] += 1
            return responder.reply(data, qend, edns, tcp, negative)
        if name[last:cut] != label:
            misses["other_namespace"] += 1
            return responder.reply(data, qend, edns, tcp, negative)
        base = name[:last]  # the name the client looked up, without the root label
        dots = -1
        pos = 0
        while pos < last:
            dots += 1
            pos += name[pos] + 1
        suffixes: tuple[bytes, ...] = self._rest
        if dots >= self.ndots:  # the stub tries such a name as is first
            suffixes = (names.ROOT, *suffixes)
        else:
            suffixes = (*suffixes, names.ROOT)
        query = Query(data, name, qtype, qend, edns, channel, responder)
        query.view = watch
        walk = _Walk(self, query, peer, replier, base, suffixes, dots >= self.ndots, negative)
        reply = walk.run()
        if reply is None:
            return DEFERRED
        if walk.result in _KEEPABLE and walk.until > 0 and responder.acl is None:
            self.kept = (data, label, (name, *walk.seen), walk.forwarded, walk.until, walk.result, walk.saved)  # fmt: skip
        return reply if watch is None else responder.inspected(watch, reply, query)


class _Walk:
    """One client's walk, from the candidate after the asked name to the first that exists;
    synchronous until a candidate must go upstream, then resumed by its answer."""

    __slots__ = ("stage", "query", "peer", "replier", "base", "suffixes", "index", "dots_first", "negative", "floor", "denied", "failed", "asked", "seen", "until", "forwarded", "result", "saved")  # fmt: skip

    def __init__(self, stage: Autopath, query: Query, peer: Any, replier: Replier | None, base: bytes, suffixes: tuple[bytes, ...], dots_first: bool, negative: Answer) -> None:  # fmt: skip
        self.stage = stage
        self.query = query
        self.peer = peer
        self.replier = replier
        self.base = base
        self.suffixes = suffixes
        self.dots_first = dots_first
        self.index = 0
        self.negative = negative
        # The lowest TTL of the chain so far: the negative TTLs of the names skipped.
        self.floor = _negative_ttl(negative, _NO_TTL)
        self.denied = False  # an outside name was skipped: forward.allow refuses this client
        self.failed = False  # an upstream failed on a candidate
        self.asked: bytes = b""  # the candidate waiting for its upstream answer
        self.seen: list[bytes] = []  # the candidates read so far (killer mode files under them)
        self.until = float("inf")  # until when the answers read hold (the forward cache's)
        self.forwarded = False  # a candidate was answered by the forwarder
        self.result = ""  # "found", or the miss reason
        self.saved = 0  # queries the found reply saves the client

    def run(self) -> bytes | None:
        """Walk on: the final reply, or None while a candidate waits for its upstream."""
        suffixes = self.suffixes
        while self.index < len(suffixes):
            suffix = suffixes[self.index]
            self.index += 1
            candidate = self.base + suffix
            if len(candidate) > 255:
                continue
            self.seen.append(candidate)
            outcome = self._step(candidate)
            if outcome is _PENDING:
                return None
            if outcome is not None:
                return outcome
        if self.denied:
            reason = "forward_denied"
        elif self.failed:
            reason = "upstream_failed"
        else:
            reason = "not_found"
        return self._plain(reason)

    def _plain(self, reason: str) -> bytes:
        self.result = reason
        self.stage.misses[reason] += 1
        query = self.query
        return query.responder.reply(query.data, query.qend, query.edns, query.tcp, self.negative)

    def _step(self, candidate: bytes) -> Any:
        """One candidate: the reply when it exists, None to go on, ``_PENDING`` when it went
        upstream (``resume`` carries on)."""
        query = self.query
        responder = query.responder
        peer = self.peer
        qtype = query.qtype
        if responder.acl is not None:
            if responder.acl.decide(peer[0], candidate, qtype) != ALLOW:
                return self._plain("policy")
        if responder.views is not None:
            if responder.views.pick(peer, candidate, qtype) is not None:
                return self._plain("policy")  # blocked for this client, or not its zone
        suffix = query.data[query.qend - 4 : query.qend]
        key = candidate + suffix
        answer = responder.answers.get(key)
        if answer is None:
            answer = responder.derived.get(key)
            if answer is None:
                answer = responder.resolve(candidate, qtype, CLASS_IN, key)
        if answer is FORWARD:
            return self._forward(candidate)
        if answer is TRANSFER or answer.rcode != NOERROR:
            if answer.rcode == NXDOMAIN:
                self.floor = _negative_ttl(answer, self.floor)
            return None  # NXDOMAIN; SERVFAIL (not synced) or REFUSED: as CoreDNS, go on
        forwarder = responder.forwarder
        if answer.chase is not None and forwarder is not None and responder.may_forward(peer):
            # An ExternalName to an outside name: the forwarder appends its addresses.
            responder.keep = 0.0
            outcome = forwarder.chase(self._candidate(candidate), answer, self.replier, peer)
            if outcome is None:
                self.asked = candidate
                return _PENDING
            self._held(responder.keep)
            return self._judge(candidate, outcome)
        data = _question(query, candidate)
        return self._found(candidate, responder.reply(data, 12 + len(candidate) + 4, query.edns, True, answer))  # fmt: skip

    def _forward(self, candidate: bytes) -> Any:
        query = self.query
        responder = query.responder
        forwarder = responder.forwarder
        if forwarder is None:
            return None
        if not responder.may_forward(self.peer):
            self.denied = True  # this client would be REFUSED for it
            return None
        responder.keep = 0.0
        outcome = forwarder.handle(self._candidate(candidate), self.replier, self.peer)
        if outcome is None:
            self.asked = candidate
            return _PENDING
        self._held(responder.keep)
        return self._judge(candidate, outcome)

    def _held(self, keep: float) -> None:
        """A forwarded candidate answered from the forward cache, good until ``keep`` (0: an
        answer nobody may keep)."""
        self.forwarded = True
        self.until = min(self.until, keep)

    def _candidate(self, candidate: bytes) -> _Candidate:
        query = self.query
        data = _question(query, candidate)
        asked = _Candidate(data, candidate, query.qtype, 12 + len(candidate) + 4, query.edns, query.channel, query.responder)  # fmt: skip
        asked.walk = self
        return asked

    def _judge(self, candidate: bytes, response: bytes) -> bytes | None:
        """An upstream's (or the forward cache's) reply for ``candidate``."""
        if len(response) < 12:
            self.failed = True
            return None
        rcode = response[3] & 0x0F
        if rcode == NXDOMAIN:
            an, ns = struct.unpack_from("!HH", response, 6)
            start = _skip_question(response)
            if start is not None:
                self.floor = _min_ttl(response, start, an + ns, self.floor)
            return None
        if rcode != NOERROR:
            self.failed = True
            return None
        if response[2] & 0x02:  # too big for the client's UDP size: it asks again over TCP
            return self._truncated()
        return self._found(candidate, response)

    def _found(self, candidate: bytes, reply: bytes) -> bytes:
        stage = self.stage
        query = self.query
        spliced = _splice(query.data, query.qend, reply, len(candidate), self.floor)
        if spliced is None:
            return self._plain("unfit")
        if not query.tcp:
            limit = 512 if query.edns is None else min(query.edns.size, query.responder.udp_size)
            if len(spliced) > limit:
                return self._truncated()
        stage.answers += 1
        self.result = "found"
        # Queries the client no longer sends for this lookup and type: the steps after the
        # asked name up to the found one (every step when the name as is, tried first, is).
        suffix = candidate[len(self.base) :]
        remaining = stage._rest if self.dots_first else (*stage._rest, names.ROOT)
        self.saved = remaining.index(suffix) + 1 if suffix in remaining else len(remaining)
        stage.saved += self.saved
        return spliced

    def _truncated(self) -> bytes:
        """An empty reply with TC set: the client asks again over TCP, autopathed there."""
        query = self.query
        tc = query.responder.reply(query.data, query.qend, query.edns, False, _EMPTY_NOERROR)
        return tc[:2] + bytes((tc[2] | 0x02, tc[3])) + tc[4:]

    def resume(self, response: bytes) -> None:
        """The upstream answered the candidate the walk waited for: judge it, walk on, and
        deliver the final reply to the client."""
        query = self.query
        try:
            reply = self._judge(self.asked, response)
            if reply is None:
                reply = self.run()
                if reply is None:
                    return  # waiting for the next candidate's upstream
        except Exception:  # a bug here must cost this client its shortcut, not its answer
            log.exception("autopath walk for %s failed", names.to_text(query.name))
            reply = query.responder.reply(query.data, query.qend, query.edns, query.tcp, self.negative)  # fmt: skip
        if self.replier is not None:
            query.deliver(self.replier, reply, self.peer)


_PENDING = object()
_KEEPABLE = ("found", "not_found")  # outcomes the same for every pod of the namespace
Kept = tuple[bytes, bytes, tuple[bytes, ...], bool, float, str, int]


class _Candidate(Query):
    """A candidate asked through the forwarder: its reply goes back to the walk, not to a
    client (nothing metered or logged for it; the client's reply is, when it is sent)."""

    __slots__ = ("walk",)

    walk: _Walk

    def deliver(self, replier: Replier, response: bytes, peer: Any) -> None:
        self.walk.resume(response)


def _question(query: Query, candidate: bytes) -> bytes:
    """The client's query with ``candidate`` as its question name (header, type, class and
    EDNS record kept)."""
    data = query.data
    return data[:12] + candidate + data[query.qend - 4 :]


def _skip_question(msg: bytes) -> int | None:
    """The offset just past a one-question message's question (None: malformed)."""
    try:
        return names.name_end(msg, 12) + 4
    except ValueError:
        return None


def _name_end(msg: bytes | bytearray, pos: int) -> int:
    """The offset past the (possibly compressed) name at ``pos``; ValueError when it runs out."""
    n = len(msg)
    while True:
        if pos >= n:
            raise ValueError("name runs past the message")
        length = msg[pos]
        if length >= 0xC0:
            return pos + 2
        if length > 63:
            raise ValueError("bad label")
        pos += length + 1
        if length == 0:
            return pos


def _negative_ttl(answer: Answer, floor: int) -> int:
    """``floor`` lowered to the TTLs of a pre-rendered negative answer's records."""
    an, ns, _ = struct.unpack("!HHH", answer.counts)
    return _min_ttl(answer.body, 0, an + ns, floor)


def _min_ttl(msg: bytes, pos: int, count: int, floor: int) -> int:
    """``floor`` lowered to the TTLs of ``count`` records from ``pos`` (an SOA's negative TTL
    is its MINIMUM when lower, RFC 2308 5); a malformed record ends the count."""
    try:
        for _ in range(count):
            pos = _name_end(msg, pos)
            rtype, _, ttl, rdlength = _RR.unpack_from(msg, pos)
            pos += 10 + rdlength
            if rtype == OPT:
                continue
            if rtype == SOA and rdlength >= 20:
                ttl = min(ttl, _TTL.unpack_from(msg, pos - 4)[0])
            floor = min(floor, ttl)
    except (ValueError, struct.error):
        pass
    return floor


def _splice(data: bytes, qend: int, reply: bytes, length: int, floor: int) -> bytes | None:
    """The client's reply: its header and question, a CNAME from the asked name to the found
    name, then every record of ``reply`` (a message whose question is the found name, of
    ``length`` bytes): compression pointers moved to where the names now are, every TTL capped
    at the chain's minimum. None when ``reply`` does not parse."""
    if len(reply) < 12 + length + 4 or reply[4:6] != b"\x00\x01":
        return None
    an, ns, ar = struct.unpack_from("!HHH", reply, 6)
    old_rest = 12 + length + 4  # where the records start in ``reply``
    target = 12 + (qend - 12) + 12  # where the found name (the CNAME's target) goes
    new_rest = target + length
    shift = new_rest - old_rest
    body = bytearray(reply[old_rest:])
    ttls: list[int] = []  # offsets (in ``body``) of the TTL fields to cap

    def fix(pos: int) -> int:
        """Move the pointer of the name at ``pos`` (of ``body``); the offset past the name."""
        while True:
            if pos >= len(body):
                raise ValueError("name runs past the message")
            octet = body[pos]
            if octet >= 0xC0:
                old = ((octet & 0x3F) << 8) | body[pos + 1]
                if 12 <= old < 12 + length:
                    new = target + old - 12  # into the found name: now the CNAME's target
                elif old >= old_rest:
                    new = old + shift
                else:
                    raise ValueError("pointer into the header or the question's type")
                if new > 0x3FFF:
                    raise ValueError("pointer out of reach")
                body[pos : pos + 2] = _U16.pack(0xC000 | new)
                return pos + 2
            if octet > 63:
                raise ValueError("bad label")
            pos += octet + 1
            if octet == 0:
                return pos

    lowest = floor
    try:
        pos = 0
        for index in range(an + ns + ar):
            pos = fix(pos)
            rtype, _, ttl, rdlength = _RR.unpack_from(body, pos)
            start = pos + 10
            end = start + rdlength
            if end > len(body):
                return None
            if rtype != OPT:
                ttls.append(pos + 4)
                if index < an or (an == 0 and index < ns):  # the answer; NODATA: its SOA
                    if rtype == SOA and rdlength >= 20:
                        ttl = min(ttl, _TTL.unpack_from(body, end - 4)[0])
                    lowest = min(lowest, ttl)
            layout = _NAMES_IN_RDATA.get(rtype)
            if layout is not None:
                at = start + layout[0]
                for _ in range(layout[1]):
                    at = fix(at)
                if at > end:
                    return None
            pos = end
    except (ValueError, struct.error, IndexError):
        return None
    if lowest == _NO_TTL:
        lowest = 0
    for at in ttls:
        if _TTL.unpack_from(body, at)[0] > lowest:
            body[at : at + 4] = _TTL.pack(lowest)
    found = reply[12 : 12 + length].lower()
    head = data[:2] + bytes(
        (0x80 | (reply[2] & 0x04) | (data[2] & 0x01), (reply[3] & 0x80) | (data[3] & 0x10))
    )
    cname = _CNAME_HEAD + _TTL.pack(lowest) + _U16.pack(length) + found
    counts = struct.pack("!HHHH", 1, an + 1, ns, ar)
    return head + counts + data[12:qend] + cname + bytes(body)
