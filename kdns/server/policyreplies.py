"""The replies policy gives: ACL refusals and filters, block lists' answers with their Extended
DNS Errors, CNAME inspection for a view with block lists, and a view's own answers or refusals.
``Responder._respond`` calls these where a policy stage decided; none is on the path of a name
no policy touches."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from kdns.dns import names
from kdns.dns.answer import FORWARD, Answer, empty
from kdns.dns.records import FORMERR, NOERROR, OPT, REFUSED
from kdns.server import querylog
from kdns.server.edns import (
    EDE_BLOCKED,
    EDE_FILTERED,
    EDE_NOT_AUTHORITATIVE,
    EDE_PROHIBITED,
    Edns,
    with_ede,
)
from kdns.server.meter import TCP4
from kdns.server.query import DEFERRED, Query, Replier
from kdns.server.replymemo import FOREVER

if TYPE_CHECKING:
    from kdns.server.wire import Responder

# ACL actions (kdns.policy.acl) and the answers they give (CoreDNS acl: block -> REFUSED,
# filter -> NOERROR with nothing, drop -> no reply).
ALLOW, BLOCK, FILTER, DROP = "allow", "block", "filter", "drop"
BLOCKED = empty(REFUSED, False)
FILTERED = empty(NOERROR, False)
REFUSED_ANSWER = empty(REFUSED, False)
FORMERR_ANSWER = empty(FORMERR, False)
META_TYPES = frozenset((0, OPT, 249, 250))  # reserved, OPT, TKEY, TSIG


def inspect_local(r: Responder, view: Any, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, answer: Answer) -> bytes:  # fmt: skip
    """A registry answer with a CNAME (local zone, ExternalName) for a client whose view
    has block lists: blocked when the chain passes through a name the view blocks."""
    query = Query(data, name, (data[pos + 1] << 8) | data[pos + 2], qend, edns, channel, r)  # fmt: skip
    return inspected(r, view, r.reply(data, qend, edns, query.tcp, answer), query)


def inspected(r: Responder, view: Any, response: bytes, query: Query) -> bytes:
    """``response``, or the blocked reply of the view's list when its CNAME chain passes
    through a name the view blocks (CNAME inspection, as AdGuard Home and Blocky do)."""
    hit = view.cname_blocked(response)
    if hit is None:
        return response
    blocklist, target = hit
    r.keep = 0.0  # never kept by killer mode's wire cache (lists change on their own)
    if r.views is not None:
        r.views.count(view, blocklist)
    text = f"blocked by {blocklist.name} (CNAME {names.to_text(target)})"
    return blocked_reply(r, query.data, query.qend, query.edns, query.tcp, blocklist.answer_for(query.qtype), text)  # fmt: skip


def blocked_reply(r: Responder, data: bytes, qend: int, edns: Edns | None, tcp: bool, answer: Answer, text: str) -> bytes:  # fmt: skip
    """A block list's reply; with EDNS, its OPT carries Extended DNS Error 15 (Blocked,
    RFC 8914) whose EXTRA-TEXT names the list."""
    response = with_ede(r.reply(data, qend, edns, tcp, answer), edns, EDE_BLOCKED, text)
    if querylog.noting:
        querylog.note_blocked(response, text.split()[2] if text.startswith("blocked by ") else "?")  # fmt: skip
    return response


def denied(r: Responder, data: bytes, qend: int, edns: Edns | None, tcp: bool, action: str) -> bytes:  # fmt: skip
    """An ACL's ``block`` (REFUSED) or ``filter`` (NOERROR, nothing), with an Extended DNS
    Error when the query had EDNS. RFC 8914 tells the three policy codes apart: 15 Blocked
    is a domain on the operator's block list (kdns's block lists), 17 Filtered a name
    filtered by the policy that applies to this client, 18 Prohibited a query refused to an
    unauthorised client ("annotate its REFUSED message"). ``filter`` answers an empty
    NOERROR to the clients and names the rule picks: 17, as CoreDNS's acl plugin sends
    (coredns/coredns#5532). ``block`` refuses the client: 18, where CoreDNS sends 15; 15
    would name a block list, and kdns keeps it for its block lists."""
    if action == FILTER:
        return with_ede(r.reply(data, qend, edns, tcp, FILTERED), edns, EDE_FILTERED, "filtered by acl")  # fmt: skip
    return with_ede(r.reply(data, qend, edns, tcp, BLOCKED), edns, EDE_PROHIBITED, "refused by acl")  # fmt: skip


def not_forwarded(r: Responder, data: bytes, qend: int, edns: Edns | None, tcp: bool) -> bytes:
    """REFUSED for a name outside kdns's zones that is not forwarded for this client (a
    template did not answer it either): forward.allow keeps the client out (EDE 18
    Prohibited, as BIND's allow-recursion), or there is no forwarding at all (EDE 20 Not
    Authoritative: RFC 8914 4.21, "not configured for recursion")."""
    r.zone = REFUSED_ANSWER.zone
    r.keep = FOREVER
    refused = r.reply(data, qend, edns, tcp, REFUSED_ANSWER)
    if r.forwarder is None:
        return with_ede(refused, edns, EDE_NOT_AUTHORITATIVE, "")
    return with_ede(refused, edns, EDE_PROHIBITED, "recursion not allowed for this client")  # fmt: skip


def viewed(r: Responder, special: Answer, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None) -> bytes | list[bytes] | None:  # fmt: skip
    """The client's view decided: a block list's answer (never kept by killer mode's wire
    cache: the lists change on their own), or ``FORWARD`` for a name of a zone the view
    does not serve (forwarded when the client may forward, else REFUSED)."""
    tcp = channel >= TCP4
    if special is not FORWARD:
        if r.views is not None and special is r.views.answered:
            return own(r, special, data, name, pos, qend, edns, channel, peer, replier)
        hit = r.views.hit if r.views is not None else None
        text = f"blocked by {hit.name}" if hit is not None else "blocked"
        return blocked_reply(r, data, qend, edns, tcp, special, text)
    qtype, qclass = struct.unpack_from("!HH", data, pos + 1)
    if qtype in META_TYPES:
        return r.reply(data, qend, edns, tcp, FORMERR_ANSWER)
    if (
        qclass not in (1, 255)
        or qtype in (251, 252)  # IXFR, AXFR of a zone this client does not see
        or r.forwarder is None
        or not r.may_forward(peer)
    ):
        # The client's view hides this zone from it: refused by policy (EDE 18).
        refused = r.reply(data, qend, edns, tcp, REFUSED_ANSWER)
        return with_ede(refused, edns, EDE_PROHIBITED, "zone not in this client's view")
    response = r.forwarder.handle(Query(data, name, qtype, qend, edns, channel, r), replier, peer)  # fmt: skip
    return DEFERRED if response is None else response


def own(r: Responder, answer: Answer, data: bytes, name: bytes, pos: int, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None) -> bytes | list[bytes] | None:  # fmt: skip
    """An answer of the client's view's own data (its gateway class filters): served as
    a registry answer is (kept by killer mode's wire cache, tagged with the view; CNAME
    inspection; an external CNAME target chased)."""
    tcp = channel >= TCP4
    r.zone = answer.zone
    watch = r.views.watching if r.views is not None else None
    if answer.chase is None or r.forwarder is None or not r.may_forward(peer):
        r.keep = FOREVER if answer.chase is None or r.forwarder is None else 0.0
        if watch is not None and answer.body.find(b"\x00\x05\x00\x01") >= 0:
            return inspect_local(r, watch, data, name, pos, qend, edns, channel, answer)
        return r.reply(data, qend, edns, tcp, answer)
    query = Query(data, name, (data[pos + 1] << 8) | data[pos + 2], qend, edns, channel, r)  # fmt: skip
    query.view = watch
    response = r.forwarder.chase(query, answer, replier, peer)
    if response is None:
        return DEFERRED
    return response if watch is None else inspected(r, watch, response, query)
