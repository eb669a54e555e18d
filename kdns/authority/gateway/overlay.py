"""Gateway answers per audience: a ``[[views]]`` entry with class filters of its own
(``gateway_classes`` / ``ingress_classes``) answers gateway names under those filters. The table
keeps one ``Overlay`` per distinct filter set, holding only the names whose answer differs from
[gateway]'s; ``ViewAnswers`` answers a view's queries from it, and ``zone_overrides`` gives a
zone transfer (kdns.authority.transfer) the same names that view's queries are answered with.

Route wildcards (``*.apps.home.example.com``) follow the Gateway API rule, not RFC 4592: they
match names any number of labels below their suffix, even below a name that exists (the
resolver asks ``wildcard_for``); a more specific name or wildcard always wins.
"""

from __future__ import annotations

from typing import Any

from kdns.authority.gateway.claims import Claim, Classes
from kdns.authority.zones import LOCAL
from kdns.dns.records import AAAA, ANY, AXFR, CNAME, IXFR, NOERROR, A

Records = dict[int, list[bytes]]
WILDCARD = b"\x01*"


def wildcard_in(wildcards: set[bytes], name: bytes, apex: bytes) -> bytes | None:
    """The most specific of ``wildcards`` matching ``name`` by the Gateway API rule."""
    if not wildcards:
        return None
    node = name
    while len(node) > len(apex):
        node = node[node[0] + 1 :]
        candidate = WILDCARD + node
        if candidate in wildcards:
            return candidate
    return None


_ABSENT: Any = object()


class Overlay:
    """The gateway names of one set of class filters (a ``[[views]]`` entry's
    ``gateway_classes`` / ``ingress_classes``) that answer otherwise than under [gateway]'s:
    name -> the claim that wins it under these filters (None: nobody's claim survives them).
    Names not held here answer as the registry's; an empty overlay costs its view nothing."""

    __slots__ = ("classes", "ttl", "overrides", "wildcards")

    def __init__(self, classes: Classes, ttl: int | None) -> None:
        self.classes = classes
        self.ttl = ttl  # [gateway] ttl
        self.overrides: dict[bytes, Claim | None] = {}
        self.wildcards: set[bytes] = set()  # wildcard names with a winner under these filters

    def effective(self, claim: Claim | None) -> tuple[Any, int | None] | None:
        if claim is None:
            return None
        return claim.answer, (claim.ttl if claim.ttl >= 0 else self.ttl)

    def settle(self, name: bytes, winner: Claim | None, own: Claim | None) -> bool:
        """``winner``: [gateway]'s claim on ``name``; ``own``: these filters'. True when what
        this overlay answers for ``name`` may have moved."""
        if name.startswith(WILDCARD):
            if own is None:
                self.wildcards.discard(name)
            else:
                self.wildcards.add(name)
        before = self.overrides.get(name, _ABSENT)
        if self.effective(own) != self.effective(winner):
            self.overrides[name] = own
            return before is _ABSENT or before != own
        if before is _ABSENT:
            return False
        del self.overrides[name]
        return True

    def wildcard_for(self, name: bytes, apex: bytes) -> bytes | None:
        return wildcard_in(self.wildcards, name, apex)

    def __repr__(self) -> str:
        return f"Overlay({self.classes!r}, {len(self.overrides)} names)"


_MEMO_MAX = 16384  # answers a view's overlay remembers (then it starts over)
_NO_TRANSFER = frozenset((AXFR, IXFR))


class ViewAnswers:
    """A view's own answers for gateway zone names, under its class filters (kdns.policy.views
    asks it per query of the view's clients). None: the registry's answer is the view's too
    (every name the overlay does not hold, and every name outside gateway zones), so a view
    whose filters agree with [gateway]'s on every name costs one test.

    For a name the overlay holds: the records of its winning claim under the view's filters
    (with the name's other records: a local zone's), else -- nobody's claim survives the
    filters -- what an unclaimed name gets (a route wildcard the view's filters keep,
    fallthrough to the zone's upstreams, NODATA for a name with names below it, NXDOMAIN).
    For a name without records of its own: the most specific route wildcard under the view's
    filters when it differs from [gateway]'s. Answers are remembered until the registry
    changes."""

    __slots__ = ("overlay", "table", "registry", "resolver", "_memo", "_at")

    def __init__(self, overlay: Overlay, registry: Any, resolver: Any) -> None:
        self.overlay = overlay
        self.registry = registry  # kdns.authority.registry.Registry
        self.table: Any = registry.gateway  # GatewayTable
        self.resolver = resolver  # kdns.authority.resolver.Resolver: fallthrough and cuts
        self._memo: dict[bytes, Any] = {}
        self._at = (-1, -1)

    def answer(self, name: bytes, qtype: int) -> Any:
        if not self.overlay.overrides or not self.registry.synced:
            return None
        at = (self.registry.generation, self.table.moves)
        memo = self._memo
        if at != self._at:
            memo.clear()
            self._at = at
        key = name + bytes((qtype >> 8, qtype & 0xFF))
        found = memo.get(key, _ABSENT)
        if found is _ABSENT:
            found = self._resolve(name, qtype)
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = found
        return found

    def _resolve(self, name: bytes, qtype: int) -> Any:
        registry = self.registry
        zones = registry.zones
        zone = zones.find(name)
        if zone is None or zone.apex not in zones.gateway_apexes or qtype in _NO_TRANSFER:
            return None
        overlay = self.overlay
        overrides = overlay.overrides
        if name in overrides:
            own = overrides[name]
            records = self._merged(name, own)
            if records:
                return self._render(name, name, qtype, records, zone, own)
            exists = registry.has_descendants(name)
        else:
            if registry.has_records(name):
                return None  # its own records answer it, whoever's filters
            mine = overlay.wildcard_for(name, zone.apex)
            theirs = self.table.wildcard_for(name, zone.apex)
            if mine == theirs and (mine is None or mine not in overrides):
                return None
            exists = registry.exists(name)
        wildcard = overlay.wildcard_for(name, zone.apex)
        if wildcard is not None:
            own = overrides.get(wildcard, _ABSENT)
            if own is _ABSENT or own is None:  # [gateway]'s winner too: the registry's records
                return self._render(wildcard, name, qtype, registry.records(wildcard), zone, None)  # fmt: skip
            records = self._others(wildcard)
            for rtype, rdata in own.answer:
                records.setdefault(rtype, []).append(rdata)
            return self._render(wildcard, name, qtype, records, zone, own)
        return self.resolver.unclaimed(name, zone, exists)

    def held(self, name: bytes) -> tuple[Records, dict[int, int] | None] | None:
        """What this view answers for ``name`` itself when its overlay holds the name: its
        records and their TTLs of their own per type (None: the registry's TTLs). None when
        the registry's records are the view's. What a zone transfer to the view's clients
        holds for the name (kdns.authority.transfer), as its queries are answered."""
        own = self.overlay.overrides.get(name, _ABSENT)
        if own is _ABSENT:
            return None
        return self._merged(name, own), self._ttls(own)

    def names_below(self, apex: bytes) -> list[bytes]:
        """The names the overlay holds at or below ``apex`` (a view may claim names nobody
        claims under [gateway]'s filters)."""
        return [name for name in self.overlay.overrides if name.endswith(apex)]

    def _merged(self, name: bytes, own: Claim | None) -> Records:
        """``name``'s registry records with [gateway]'s winning claim's swapped for ``own``'s."""
        records = self._others(name)
        if own is not None:
            for rtype, rdata in own.answer:
                rdatas = records.setdefault(rtype, [])
                if rdata not in rdatas:
                    rdatas.append(rdata)
        return records

    def _ttls(self, own: Claim | None) -> dict[int, int] | None:
        if own is None:
            return None
        ttl = own.ttl if own.ttl >= 0 else self.overlay.ttl
        return None if ttl is None else {rtype: ttl for rtype, _ in own.answer}

    def _others(self, name: bytes) -> Records:
        """``name``'s registry records without [gateway]'s winning claim's."""
        records = self.registry.records(name)
        winner = self.table.winner(name)
        if winner is not None:
            for rtype, rdata in winner.answer:
                rdatas = records.get(rtype)
                if rdatas is not None and rdata in rdatas:
                    rdatas.remove(rdata)
                    if not rdatas:
                        del records[rtype]
        return records

    def _render(self, owner: bytes, name: bytes, qtype: int, records: Records, zone: Any, own: Claim | None) -> Any:  # fmt: skip
        """``owner``'s records as the answer to ``name`` (the answer's owner names point at
        the question, so a wildcard's answer fits any name below it), NODATA when it has no
        such type (a CNAME answers A and AAAA; in a local zone's apex, every type)."""
        if not (
            qtype == ANY
            or qtype in records
            or (CNAME in records and (qtype in (A, AAAA) or zone.kind == LOCAL))
        ):
            return zone.negative(name, NOERROR)
        return self.registry.render_answer(owner, qtype, records, self._ttls(own))
