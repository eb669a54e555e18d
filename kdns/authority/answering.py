"""Rendering one name's answer (answer section, in-zone CNAME chase, glue) into wire form, and
the TTL each RRset is served with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kdns.authority.frozen import Records
from kdns.authority.gateway import GatewayTable
from kdns.authority.zones import GATEWAY, ZoneSet
from kdns.dns.answer import Answer
from kdns.dns.records import (
    AAAA,
    ANY,
    CNAME,
    NOERROR,
    PTR,
    QNAME_POINTER,
    SOA,
    TXT,
    A,
    rdata_target,
    rrset,
)

DNS_VERSION_TTL = 28800  # CoreDNS kubernetes.go: the dns-version TXT has a fixed TTL
ADDRESS_TYPES = (A, AAAA)

# The most a rendered answer holds beyond the 12-byte header and the question: a TCP message is
# at most 65535 bytes (RFC 1035 4.2.2), so records past that can never be sent. ANY answers and
# additional sections (glue) stop there instead of rendering megabytes every reply would drop.
# A named RRset stays whole: a reply keeps what fits with TC, and loadbalance rotates all of it.
MAX_BODY = 65535 - 12 - 5


def _within(rdatas: list[bytes], overhead: int, room: int) -> list[bytes]:
    """The leading ``rdatas`` whose records (``overhead`` bytes each + rdata) fit ``room``."""
    for index, rdata in enumerate(rdatas):
        room -= overhead + len(rdata)
        if room < 0:
            return rdatas[:index]
    return rdatas


class AnswerRendering:
    """Mixin of the Registry: answers from merged records. Reads the registry's state (made in
    ``Registry.__init__``) and ``records`` (kdns.authority.nametable), declared here."""

    zones: ZoneSet
    ttl: int
    gateway: GatewayTable
    _dns_version: bytes
    _local_ttls: dict[bytes, dict[int, int]]
    _deps: dict[bytes, set[bytes]]  # name -> names whose additional section uses it
    _dep_targets: dict[bytes, tuple[bytes, ...]]  # the reverse, for pruning
    _glue: dict[bytes, Records] | None  # targets' records shared by one flush's names

    if TYPE_CHECKING:

        def records(self, name: bytes) -> Records: ...

    def ttl_of(self, name: bytes, rtype: int) -> int:
        """The TTL ``name``'s ``rtype`` RRset is served with (zone transfers)."""
        return self._ttl(name, rtype)

    def _ttl(self, name: bytes, rtype: int) -> int:
        if self._local_ttls:
            ttls = self._local_ttls.get(name)
            if ttls is not None and rtype in ttls:
                return ttls[rtype]
        if self.gateway.ttls:  # [gateway] ttl, or a claimant's ttl annotation
            ttl = self.gateway.ttls.get(name)
            if ttl is not None and rtype != SOA:
                return ttl
        if rtype == SOA:
            zone = self.zones.by_apex.get(name)
            if zone is not None and zone.kind == GATEWAY:
                return zone.soa_ttl()  # min([gateway] ttl, 300), as its negative answers
            return min(self.ttl, 300)  # CoreDNS backend_lookup.go SOA()
        if rtype == TXT and name == self._dns_version:
            return DNS_VERSION_TTL
        return self.ttl

    def render_answer(self, name: bytes, qtype: int, records: Records, ttls: Mapping[int, int] | None = None, deps: list[bytes] | None = None) -> Answer:  # fmt: skip
        """A positive answer for ``name``/``qtype`` from its merged records (``ttls``: TTLs of
        its own per type, for a view's gateway answers; kdns.authority.gateway.ViewAnswers).
        The in-zone names it reads (glue, a chased CNAME target) are registered as its
        dependencies, or added to ``deps`` when given, for an answer rendered ahead of its
        records' commit (kdns.authority.slices)."""
        if qtype == ANY:
            rtypes = list(records)
        elif qtype in records:
            rtypes = [qtype]
        else:
            rtypes = [CNAME]
        # Linear in the records rendered, and bounded: ANY (RFC 8482: any subset will do) and
        # the additional section stop at what a 64 KiB message can carry. A named RRset is
        # rendered whole: a reply that cannot carry all of it keeps what fits and sets TC.
        room = MAX_BODY
        answer: list[tuple[bytes, int]] = []
        used: dict[int, list[bytes]] = {}  # the rdatas that made it into the answer
        for t in rtypes:
            rdatas = records[t]
            if qtype == ANY:
                rdatas = _within(rdatas, 12, room)
                if not rdatas:
                    break
            room -= sum(12 + len(rdata) for rdata in rdatas)
            used[t] = rdatas
            ttl = ttls.get(t) if ttls else None
            answer.append(rrset(QNAME_POINTER, t, self._ttl(name, t) if ttl is None else ttl, rdatas))  # fmt: skip
        room = max(room, 0)  # what is left for glue
        additional = []
        chase = None
        seen: set[bytes] = set()
        targets: list[bytes] = []
        glue = self._glue
        for rtype, rdatas in used.items():
            if rtype == PTR:
                continue
            for rdata in rdatas:
                if room <= 0 and rtype != CNAME:
                    # The message is full: no later target can add glue, and a change to one
                    # cannot alter this answer unless an earlier one (a dependency) changes.
                    break
                target = rdata_target(rtype, rdata)
                if target is None or target in seen:
                    continue
                if rtype == CNAME and target == name:
                    continue  # a CNAME to itself: nothing to chase
                seen.add(target)
                if self.zones.find(target) is None:
                    if rtype == CNAME and qtype in ADDRESS_TYPES:
                        chase = target  # CoreDNS asks upstream for it (when forwarding)
                    continue
                if target != name:
                    if deps is None:
                        self._deps.setdefault(target, set()).add(name)
                    targets.append(target)
                found = glue.get(target) if glue is not None else None
                if found is None:
                    found = self.records(target)
                    if glue is not None:
                        glue[target] = found
                if rtype == CNAME:
                    # CoreDNS chases an in-zone ExternalName target: CNAME + the target's RRset.
                    if qtype in ADDRESS_TYPES and qtype in found:
                        answer.append(rrset(target, qtype, self._ttl(target, qtype), found[qtype]))  # fmt: skip
                    continue
                # RFC 1035 3.3.9 / RFC 2782: addresses of NS and SRV targets as glue.
                for glue_type in ADDRESS_TYPES:
                    if glue_type in found and room > 0:
                        extra = _within(found[glue_type], 10 + len(target), room)
                        if not extra:
                            room = 0  # full: no more glue
                            continue
                        room -= sum(10 + len(target) + len(rdata) for rdata in extra)
                        additional.append(rrset(target, glue_type, self._ttl(target, glue_type), extra))  # fmt: skip
        if targets and deps is not None:
            deps += targets
        elif targets:
            known = self._dep_targets.get(name, ())
            # ANY re-renders: never grow the index twice (and never quadratically).
            merged = tuple(dict.fromkeys((*known, *targets)))
            if len(merged) != len(known):
                self._dep_targets[name] = merged
        zone = self.zones.find(name)
        zone_text = zone.text if zone is not None else "."
        rendered = Answer(NOERROR, True, (tuple(answer), (), tuple(additional)), zone_text)
        rendered.chase = chase
        return rendered
