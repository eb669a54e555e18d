"""Views by client network (``[[views]]``): which zones answer and which block lists apply.

The first view whose ``networks`` hold the client's address is the client's view; a client in
no view sees every zone and no block list (pods: leave the pod CIDRs out of every view with
block lists, or give them a view of their own listed first). For a client in a view:

1. a name on one of the view's block lists (the name or a parent of it, or a pattern rule
   matching it) gets that list's answer: NXDOMAIN, NODATA, or 0.0.0.0 / :: for A / AAAA
   (NODATA for other types) -- before anything else, as Pi-hole does -- with an Extended DNS
   Error 15 (Blocked) naming the list when the query had EDNS. A name on one of the view's
   allowlists is never blocked; otherwise the strongest rule of any of the view's lists
   decides, as AdGuard Home merges its lists: ``@@...$important`` > ``$important`` >
   ``@@`` exceptions > blocking rules (the first list, in the view's order, with the
   strongest rule is the one named);
1a. allowlist only: a view that names allowlists and no block lists blocks every name that is
   not on its allowlists, kdns's own names included (Blocky: "If a group has **only**
   allowlist entries -> this means only domains from this list are allowed, all other
   domains will be blocked"; its resolver answers every question type so, with the reason
   "BLOCKED (WHITELIST ONLY)"). The answer is ``null`` (0.0.0.0 / ::, NODATA for other
   types: kdns's block list default), named ``allowlist-only`` in the EDE, the query log and
   the counters. An allowlist not loaded yet (its first download) allows nothing: the view
   fails closed, as Blocky's does. CNAME targets are checked against block lists only, as
   Blocky checks them against its denylists: an allowed name's CNAME chain is not judged;
1b. CNAME inspection: an answer (forwarded, local zone, ExternalName) whose CNAME chain
   passes through a name the view blocks gets that list's answer instead;
2. with ``zones`` set, a name whose most specific zone of kdns's is not listed is not served
   from that zone to this client: it goes to forwarding when the client may use forwarding
   (``forward.allow``), else REFUSED -- what a CoreDNS ``view`` server block without the zone
   does (the query falls to the ``.`` block);
2b. with ``gateway_classes`` / ``ingress_classes`` of its own, a gateway zone name whose answer
   under the view's class filters differs from [gateway]'s is answered from the view's
   overlay (kdns.authority.gateway.ViewAnswers): the LAN view sees the internal controllers'
   addresses, another the external ones, from one kdns;
3. otherwise the usual answers.

``Views`` sits on the hot path only when views are configured (``Responder.views``); a
client's view is found once per address (a bounded dict).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.dns.answer import FORWARD, Answer
from kdns.dns.networks import Networks
from kdns.policy.blocklist import (
    BLOCK,
    IMPORTANT,
    IMPORTANT_EXCEPTION,
    KIND_NAMES,
    MASK,
    BlockList,
    text_name,
)

_CACHE_MAX = 65536  # client addresses remembered (a flood of sources starts it over)
_VERDICTS_MAX = 16384  # names whose block verdict a view remembers (then it starts over)
_UNSEEN = object()

BlockCounts = dict[tuple[str, str], int]  # (view, list) -> blocked queries


# What an allowlist-only view answers for a name none of its allowlists holds (rule 1a).
ALLOWLIST_ONLY = "allowlist-only"


class View:
    __slots__ = ("name", "networks", "zones", "lists", "allow", "only_allow", "filters", "gateway", "_simple", "_keys", "_verdicts")  # fmt: skip

    def __init__(
        self,
        name: str,
        networks: Sequence[str],
        zones: Sequence[str] | None,
        lists: Sequence[BlockList],
        allow: Sequence[BlockList] = (),
        gateway: Any = None,
        only_allow: bool = False,
    ) -> None:
        self.name = name
        # Its gateway answers under class filters of its own (kdns.authority.gateway.ViewAnswers),
        # None when [gateway]'s are the view's.
        self.gateway = gateway
        self.networks = Networks(networks)
        # Apexes (wire) of the zones this view serves; None: every zone.
        self.zones = None if zones is None else frozenset(names.to_wire(z) for z in zones)
        self.lists = tuple(lists)
        self.allow = tuple(allow)  # [[allowlists]]: every rule of theirs unblocks
        # Allowlist only (rule 1a): the configuration names allowlists and no block lists (as
        # configured, not as loaded: an allowlist still downloading allows nothing).
        self.only_allow: BlockList | None = None
        if only_allow:
            self.only_allow = BlockList(ALLOWLIST_ONLY, "", "auto", "null")
        # Whether ``blocked`` is asked for this view's clients at all.
        self.filters = bool(self.lists) or self.only_allow is not None
        # Names only, no allowlist: a hash probe per label and list, nothing else.
        self._simple = not self.allow and all(lst.simple for lst in self.lists)
        self._keys = {id(lst): (name, lst.name) for lst in (*self.lists, self.only_allow) if lst is not None}  # fmt: skip
        # name -> verdict of the lists, for the names asked again and again (a LAN asks the
        # same few thousand): one dict lookup instead of a hash and probe per label. A view
        # is rebuilt when its lists change, so verdicts never outlive them.
        self._verdicts: dict[bytes, BlockList | None] = {}

    def blocked(self, name: bytes) -> BlockList | None:
        """The first list holding ``name`` or one of its parents (walked from the name up)."""
        verdicts = self._verdicts
        found = verdicts.get(name, _UNSEEN)
        if found is _UNSEEN:
            found = self._lookup(name)
            if len(verdicts) >= _VERDICTS_MAX:
                verdicts.clear()
            verdicts[name] = found
        return found  # type: ignore[return-value]

    def _lookup(self, name: bytes) -> BlockList | None:
        lists = self.lists
        pos = 0
        end = len(name) - 1
        if self.only_allow is not None:
            return None if self._allowed(name) else self.only_allow
        if self._simple:
            while pos < end:
                h = hash(name[pos:] if pos else name) & MASK
                for blocklist in lists:
                    if blocklist.has_hash(h):
                        return blocklist
                pos += name[pos] + 1
            return None
        suffixes = []
        while pos < end:
            suffixes.append(hash(name[pos:] if pos else name) & MASK)
            pos += name[pos] + 1
        text = text_name(name)
        for allowlist in self.allow:
            if allowlist.strongest(suffixes, text)[0]:
                return None
        best, chosen = 0, None
        for blocklist in lists:
            kind = blocklist.strongest(suffixes, text)[0]
            if kind > best:
                best, chosen = kind, blocklist
                if kind == IMPORTANT_EXCEPTION:
                    break
        return chosen if best in (BLOCK, IMPORTANT) else None

    def _allowed(self, name: bytes) -> bool:
        """Whether one of the view's allowlists holds ``name`` (the name, a parent of it, or
        a pattern rule matching it). The root is on no list."""
        suffixes = []
        pos, end = 0, len(name) - 1
        while pos < end:
            suffixes.append(hash(name[pos:] if pos else name) & MASK)
            pos += name[pos] + 1
        if not suffixes:
            return False
        text = text_name(name)
        return any(allowlist.strongest(suffixes, text)[0] for allowlist in self.allow)

    def explain(self, name: bytes) -> list[str]:
        """Every rule of the view's lists that matches ``name``, and the verdict, as lines
        (``kdns explain``): ``allowlist home: exception ||nas.example^`` ..."""
        suffixes = []
        pos, end = 0, len(name) - 1
        labels = []
        while pos < end:
            suffixes.append(hash(name[pos:]) & MASK)
            labels.append(names.to_text(name[pos:]).rstrip("."))
            pos += name[pos] + 1
        text = text_name(name)
        lines = []
        for role, group in (("allowlist", self.allow), ("blocklist", self.lists)):
            for blocklist in group:
                kind, what = blocklist.strongest(suffixes, text)
                if not kind:
                    continue
                matched = f"name {labels[what]}" if isinstance(what, int) else f"pattern {what}"
                lines.append(f"{role} {blocklist.name}: {KIND_NAMES[kind]} rule, {matched}")
        found = self._lookup(name)
        if found is not None and found is self.only_allow:
            lines.append(f"verdict: blocked by {ALLOWLIST_ONLY} (on none of the view's allowlists)")  # fmt: skip
            return lines
        lines.append(
            f"verdict: blocked by {found.name}" if found is not None else "verdict: not blocked"
        )
        return lines

    @staticmethod
    def explain_pattern(pattern: str, name: bytes) -> bool:
        """Whether a pattern rule (regex text) matches ``name`` (``kdns explain``)."""
        from kdns.dns import patterns

        automaton = patterns.Patterns()
        try:
            automaton.add(pattern, patterns.parse_regex(pattern))
        except patterns.Unsupported:
            return False
        return automaton.match(text_name(name)) >= 0

    def cname_blocked(self, response: bytes) -> tuple[BlockList, bytes] | None:
        """CNAME inspection: the list blocking a CNAME target in ``response``'s answer
        section (and that target), None when the chain passes through no blocked name. Block
        lists only: an allowlist-only view does not judge the targets (rule 1a)."""
        if not self.lists:
            return None
        for target in cname_targets(response):
            found = self.blocked(target)
            if found is not None:
                return found, target
        return None

    def __repr__(self) -> str:
        return f"View({self.name!r}, {self.networks!r}, {len(self.lists)} lists)"


class Views:
    """The configured views, in order; what the responder asks per query."""

    __slots__ = ("views", "zones", "counts", "last", "hit", "watching", "answered", "_by_ip", "_by_packed")  # fmt: skip

    def __init__(self, views: Sequence[View], zones: ZoneSet, counts: BlockCounts) -> None:
        self.views = tuple(views)
        self.zones = zones
        self.counts = counts  # shared across reloads: Prometheus counters never go back
        # The view of the last client ``pick`` saw: killer mode tags the reply it caches.
        self.last: View | None = None
        self.hit: BlockList | None = None  # the list that blocked the last blocked name
        # The last client's view when it has block lists: its answers are inspected (CNAMEs).
        self.watching: View | None = None
        # The last answer ``pick`` took from a view's own data (its gateway overlay): the
        # responder serves it as a registry answer, not as a block.
        self.answered: Answer | None = None
        self._by_ip: dict[str, View | None] = {}
        self._by_packed: dict[bytes, View | None] = {}

    def view_of(self, ip: str) -> View | None:
        view = self._by_ip.get(ip, _UNSEEN)
        if view is _UNSEEN:
            view = self._match(ip)
            if len(self._by_ip) >= _CACHE_MAX:
                self._by_ip.clear()
            self._by_ip[ip] = view
        return view  # type: ignore[return-value]

    def view_of_packed(self, packed: bytes) -> View | None:
        """The view of a client given as its packed address (killer mode's batches)."""
        view = self._by_packed.get(packed, _UNSEEN)
        if view is _UNSEEN:
            try:
                ip = str(ipaddress.ip_address(packed))
            except ValueError:
                ip = ""
            view = self._match(ip)
            if len(self._by_packed) >= _CACHE_MAX:
                self._by_packed.clear()
            self._by_packed[packed] = view
        return view  # type: ignore[return-value]

    def _match(self, ip: str) -> View | None:
        for view in self.views:
            if view.networks.allowed(ip):
                return view
        return None

    def pick(self, peer: Any, name: bytes, qtype: int) -> Answer | None:
        """None: answer as usual. A block list's answer, or ``FORWARD`` for a name of a zone
        this client's view does not serve."""
        view = self.view_of(peer[0]) if peer else None
        self.last = view
        if view is None:
            self.watching = None
            return None
        if view.filters:
            # CNAME chains are inspected for views with block lists (not allowlist-only ones).
            self.watching = view if view.lists else None
            blocklist = view.blocked(name)
            if blocklist is not None:
                self.hit = blocklist
                self.count(view, blocklist)
                return blocklist.answer_for(qtype)
        else:
            self.watching = None
        if view.zones is not None:
            zone = self.zones.find(name)
            if zone is not None and zone.apex not in view.zones:
                return FORWARD
        if view.gateway is not None:
            answer: Answer | None = view.gateway.answer(name, qtype)
            if answer is not None and answer is not FORWARD:
                self.answered = answer
            return answer
        return None

    def count(self, view: View, blocklist: BlockList) -> None:
        key = view._keys[id(blocklist)]
        self.counts[key] = self.counts.get(key, 0) + 1

    def lists(self) -> list[BlockList]:
        """Every list some view uses, once each."""
        seen: dict[int, BlockList] = {}
        for view in self.views:
            for blocklist in view.lists:
                seen.setdefault(id(blocklist), blocklist)
        return list(seen.values())

    def __repr__(self) -> str:
        return f"Views({list(self.views)!r})"


def gateway_answers(sources: Sequence[Any], registry: Any, resolver: Any) -> list[Any]:
    """Per ``[[views]]`` entry (config ViewSource), its gateway answers under its own class
    filters (kdns.authority.gateway.ViewAnswers), None where [gateway]'s filters are the view's
    (no registry: ``kdns explain``). The registry keeps an overlay per filter set in use."""
    if registry is None or not registry.gateway.enabled:
        return [None] * len(sources)
    from kdns.authority.gateway import ViewAnswers

    table = registry.gateway
    out, used = [], []
    for source in sources:
        classes = (
            table.filters[0] if source.gateway_classes is None else source.gateway_classes,
            table.filters[1] if source.ingress_classes is None else source.ingress_classes,
        )
        overlay = table.overlay(classes)
        if overlay is not None:
            used.append(classes)
        out.append(None if overlay is None else ViewAnswers(overlay, registry, resolver))
    table.retain(used)
    return out


_CNAME_IN = b"\x00\x05\x00\x01"


def cname_targets(message: bytes) -> list[bytes]:
    """The targets (lowercase wire names) of the CNAME records in a DNS message's answer
    section; [] for a message without any or one that does not parse."""
    if _CNAME_IN not in message or len(message) < 12:
        return []
    try:
        pos = names.question_end(message)
        ancount = (message[6] << 8) | message[7]
        targets = []
        for _ in range(ancount):
            pos = names.name_end(message, pos)
            rtype = (message[pos] << 8) | message[pos + 1]
            rdlength = (message[pos + 8] << 8) | message[pos + 9]
            if rtype == 5:
                targets.append(read_name(message, pos + 10))
            pos += 10 + rdlength
        return targets
    except (ValueError, IndexError):
        return []


def read_name(message: bytes, pos: int) -> bytes:
    """The (decompressed, lowercase) wire name at ``pos``; ValueError on a loop or overrun."""
    out = []
    jumps = 0
    while True:
        length = message[pos]
        if length >= 0xC0:
            jumps += 1
            if jumps > 64:
                raise ValueError("compression loop")
            pos = ((length & 0x3F) << 8) | message[pos + 1]
            continue
        if length == 0:
            out.append(b"\x00")
            name = b"".join(out).lower()
            if len(name) > 255:
                raise ValueError("name too long")
            return name
        out.append(message[pos : pos + 1 + length])
        pos += 1 + length
