"""Killer mode in front of one UDP socket's standard path (kdns.server.udp.Front).

``hit``: the wire cache asked first, by the query's bytes after its ID without EDNS options (one
dict lookup; a one-cookie query finds its key without a walk); a live entry (before its deadline,
in its zone's epoch) that the standard path would give this client too (ACL, forward.allow,
view) is the client's ID + the stored reply. ``store``: what the standard path answered, kept
when it can be and shown to the prefetcher. ``done``: the batch's hits are recorded with the
time the batch took from read to send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdns.killer.markov import Prefetcher
from kdns.killer.wirecache import (
    E_AT,
    E_EPOCH,
    E_META,
    E_NAME,
    E_NS,
    E_REPLY,
    E_UNTIL,
    E_VIEW,
    E_WATCH,
    WireCache,
    without_options,
)
from kdns.server.mmsg import Batch
from kdns.server.replymemo import MEMO_MAX, memo_keys
from kdns.server.udp import UdpServer
from kdns.server.wire import ALLOW, DEFERRED


class WireFront:
    def __init__(
        self,
        udp: UdpServer,
        wire: WireCache,
        prefetcher: Prefetcher | None,
        forward_allowed: Callable[[str], bool] | None,
    ) -> None:
        self.udp = udp
        self.wire = wire
        self.responder = udp.responder
        self.channel = udp.channel
        self.prefetcher = prefetcher
        self.forward_allowed = forward_allowed  # client ip -> bool, or None (everyone)
        self.allowed: dict[bytes, bool] = {}  # forward.allow decisions by packed address
        self._hits: list[list[Any]] = []

    def hit(self, data: bytes, now: float, batch: Batch | None, i: int, peer: Any) -> bytes | None:
        entries = self.wire.entries
        if data[-12:-8] == b"\x00\x0a\x00\x08" and data[-14:-12] == b"\x00\x0c":
            entry = entries.get(data[2:-14] + b"\x00\x00")  # edns.cookie_key, inlined (hits)
        else:
            entry = entries.get(data[2:])
            if (
                entry is None
                and data[11:12] not in (b"\x00", b"")
                and (data[-2:] != b"\x00\x00" or data[-11:-8] != b"\x00\x00\x29")
            ):  # not ends_in_bare_opt (inlined): options other than one cookie, walked
                key = without_options(data)
                if key is not None:
                    entry = entries.get(key)
        if entry is None or entry[E_UNTIL] <= now or entry[E_EPOCH][0] != entry[E_AT]:
            return None
        if entry[E_NS] is not None and not self._same_namespace(batch, i, peer, entry[E_NS]):
            return None
        # ACL and views judge every hit; forward.allow only a forwarded name's (by default it
        # is on, for the private ranges, and a cluster name's hit must not pay for it).
        if (
            self.responder.per_client
            or (self.forward_allowed is not None and entry[E_META][1] == ".")
        ) and not self._may_hit(batch, i, peer, entry):
            return None
        self._hits.append(entry)
        if entry[E_WATCH] and self.prefetcher is not None:
            self._observe(batch, i, peer, data, entry[E_META][2], True)
        return data[:2] + entry[E_REPLY]

    def store(self, data: bytes, response: Any, now: float, batch: Batch | None, i: int, peer: Any) -> None:  # fmt: skip
        wire = self.wire
        wire.misses += 1
        learns = self.prefetcher is not None
        if type(response) is not bytes:
            if response is DEFERRED and learns:
                self._observe(batch, i, peer, data, -1, True)
            return
        responder = self.responder
        forwarded = responder.zone == "."
        alias = None
        rewrite = responder.rewrite
        if rewrite is not None and rewrite.alias is not None:
            # A rewritten question's reply: filed under the rewritten name too, so a registry
            # change to that name drops it; not a forwarded name of the client's to prefetch.
            if rewrite.alias[0] is data:
                alias = rewrite.alias[1]
                forwarded = False
            rewrite.alias = None
        walked = None
        autopath = responder.autopath
        if autopath is not None and autopath.kept is not None:
            if autopath.kept[0] is data:
                walked = autopath.kept
            autopath.kept = None
        memo = responder.memo
        if responder.keep > now and (
            forwarded or memo is None or len(memo) >= MEMO_MAX or not memo_keys(data)
        ):
            # Registry answers are the reply memo's while it is on and has room (the UDP loop
            # asks it first: kdns.server.replymemo); the wire cache keeps the rest, queries
            # with EDNS options the memo does not key among them (padding, client subnet).
            entry = wire.insert(data, response, responder.keep, responder.zone, responder.qtype, forwarded)  # fmt: skip
            views = responder.views
            if entry is not None and views is not None:
                entry[E_VIEW] = views.last  # the view this reply was made for
            if entry is not None and alias is not None:
                wire.alias(entry, alias)
            if entry is not None and walked is not None:
                # An autopath reply: for pods of its namespace only, dropped when any name the
                # walk read changes, or the zone's SOA (its TTLs carry negative TTLs) moves.
                entry[E_NS] = (walked[1], walked[3], walked[5], walked[6])
                wire.follow(entry, responder.zone)
                for read in walked[2]:
                    if read != entry[E_NAME]:
                        wire.alias(entry, read)
        if learns:
            self._observe(batch, i, peer, data, response[3] & 0x0F, forwarded)

    def spliced(self, data: bytes, batch: Batch, i: int) -> None:
        """A first sight the UDP loop answered NXDOMAIN from a sibling's reply: shown to the
        prefetcher as a miss would be (a search-path walk's first step is what predicts
        the external name at its end)."""
        if self.prefetcher is not None:
            self._observe(batch, i, None, data, 3, False)

    def _observe(self, batch: Batch | None, i: int, peer: Any, data: bytes, rcode: int, forwarded: bool) -> None:  # fmt: skip
        """Show the prefetcher a query; the sender's address is read only when this tick still
        has room for it (under a flood of misses most are only counted: Prefetcher.observe)."""
        prefetcher = self.prefetcher
        if prefetcher is None:
            return
        if len(prefetcher.seen) < prefetcher.per_tick:
            prefetcher.observe(self.udp.client(batch, i, peer), data, rcode, forwarded)
        else:
            prefetcher.dropped += 1

    def done(self, seconds: float) -> None:
        hits = self._hits
        if hits:
            self._hits = []
            self.wire.record_hits(hits, self.channel, seconds)

    def _same_namespace(self, batch: Batch | None, i: int, peer: Any, tag: tuple[bytes, bool, str, int]) -> bool:  # fmt: skip
        """An autopath reply goes only to a pod of the namespace it was walked for (and, when a
        candidate was forwarded, one forward.allow admits); it counts as its walk did."""
        autopath = self.responder.autopath
        ip = self.udp.peer(batch, i, peer)[0]
        if autopath is None or autopath.namespace_of(ip) != tag[0]:
            return False
        if tag[1] and self.forward_allowed is not None and not self.forward_allowed(ip):
            return False
        autopath.count_hit(tag[2], tag[3])
        return True

    def _may_hit(self, batch: Batch | None, i: int, peer: Any, entry: list[Any]) -> bool:
        """ACL, forward.allow and views hold for cached replies too: a hit is served only to a
        client the standard path would have given the same reply (one of the same view)."""
        responder = self.responder
        views = responder.views
        client = self.udp.client(batch, i, peer)
        if views is not None and views.view_of_packed(client) is not entry[E_VIEW]:
            return False
        if responder.acl is not None:
            qtype = entry[E_META][0]
            ip = self.udp.peer(batch, i, peer)[0]
            if responder.acl.decide(ip, entry[E_NAME], (qtype[0] << 8) | qtype[1]) != ALLOW:
                return False
        if entry[E_META][1] == "." and self.forward_allowed is not None:
            allowed = self.allowed.get(client)
            if allowed is None:
                if len(self.allowed) > 65536:
                    self.allowed.clear()
                ip = self.udp.peer(batch, i, peer)[0]
                allowed = self.allowed[client] = bool(self.forward_allowed(ip))
            return allowed
        return True
