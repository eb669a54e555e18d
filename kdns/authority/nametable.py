"""The name table: every name's owners and records, empty non-terminals, and the pre-rendered
answers; ``flush`` applies the owners a change touched and re-renders exactly the names whose
records moved (and the names whose glue or chased CNAME target they are).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from kdns.authority.answering import ADDRESS_TYPES, AnswerRendering
from kdns.authority.frozen import (
    LAZY_MARK,
    NO_WILDCARDS,
    QTYPES,
    TTLS,
    WILDCARD,
    Frozen,
    Records,
    freeze,
    question_key,
    shard_of,
    thaw,
    wildcards_in,
)
from kdns.authority.memo import DerivedMemo
from kdns.authority.owners import Owner, OwnerRendering
from kdns.authority.zones import Zone
from kdns.dns import names
from kdns.dns.answer import Answer, StampedAnswers
from kdns.dns.records import CNAME

log = logging.getLogger("kdns.registry")


class NameTable(OwnerRendering, AnswerRendering, DerivedMemo):
    """The Registry's name table (state made in ``Registry.__init__``)."""

    answers: StampedAnswers
    generation: int
    shard_generation: list[int]
    on_change: Callable[[float], None] | None
    watchers: list[Callable[[set[bytes], set[str], bool], None]]
    wildcards: set[bytes]
    _rendered: dict[bytes, tuple[int, ...]]
    _names: dict[bytes, Owner | list[Owner]]
    _ents: Counter[bytes]
    _contrib: dict[Owner, dict[bytes, Frozen] | tuple[bytes, Frozen]]
    _owners: dict[Owner, Owner]
    _dirty: set[Owner]
    _existence: list[bytes]
    _namespaces_moved: bool
    _gradual: dict[Owner, object]

    def exists(self, name: bytes) -> bool:
        """True for names with records and for empty non-terminals (RFC 8020: not NXDOMAIN)."""
        return name in self._names or name in self._ents

    def records(self, name: bytes) -> Records:
        """The merged records of a name across every owner contributing to it."""
        entry = self._names.get(name)
        if entry is None:
            return {}
        merged: Records = {}
        if not isinstance(entry, list):
            # One owner: its records are unique already (de-duplicated when rendered).
            for rtype, rdata in thaw(self._frozen(entry, name)):
                if rtype < TTLS:  # not LAZY or TTLS
                    merged.setdefault(rtype, []).append(rdata)
            return merged
        seen: set[tuple[int, bytes]] = set()  # linear in the records, however many owners
        for owner in sorted(entry):  # history-independent order
            for rtype, rdata in thaw(self._frozen(owner, name)):
                if rtype >= TTLS or (rtype, rdata) in seen:
                    continue
                seen.add((rtype, rdata))
                merged.setdefault(rtype, []).append(rdata)
        return merged

    def names(self) -> Iterator[bytes]:
        """Every name that has records (empty non-terminals excluded), for zone transfers."""
        return iter(list(self._names))

    def is_lazy(self, name: bytes) -> bool:
        """Every owner of the name marked it lazy (one eager owner renders it eagerly)."""
        entry = self._names.get(name)
        if entry is None:
            return False
        owners = entry if isinstance(entry, list) else (entry,)
        return all(self._frozen(owner, name)[:4] == LAZY_MARK for owner in owners)

    def _frozen(self, owner: Owner, name: bytes) -> Frozen:
        contribution = self._contrib[owner]
        if isinstance(contribution, tuple):
            return contribution[1]
        return contribution[name]

    def materialize(self, name: bytes, qtype: int) -> Answer | None:
        """Render, keep and return the answer of a lazy name (None: no such RRset here)."""
        records = self.records(name)
        if qtype not in records and not (CNAME in records and qtype in ADDRESS_TYPES):
            return None
        answer = self.render_answer(name, qtype, records)
        self.answers[question_key(name, qtype)] = answer
        rendered = self._rendered.get(name, ()) + (qtype,)
        self._rendered[name] = QTYPES.setdefault(rendered, rendered)
        return answer

    def has_records(self, name: bytes) -> bool:
        """The name has records (not only an empty non-terminal)."""
        return name in self._names

    def has_descendants(self, name: bytes) -> bool:
        """Names exist below ``name`` (it exists without records of its own: RFC 8020)."""
        return name in self._ents

    def flush(self) -> None:
        """Render the answers of every owner changed since the last flush."""
        if not self._dirty:
            return
        dirty_names: set[bytes] = set()
        touched: set[Zone] = set()
        bumped: set[str] = set()
        wild: set[bytes] = set()  # wildcard names whose records or existence may have moved
        while self._dirty:
            owners, self._dirty = self._dirty, set()
            for owner in owners:
                changed = self._apply_owner(owner)
                if changed:
                    self.shard_generation[shard_of(owner)] += 1
                    dirty_names.update(changed)
                    if owner[0] not in NO_WILDCARDS:
                        wild.update(wildcards_in(changed))
                    if owner[0] != "zone":
                        touched.update(z for z in map(self.zones.find, changed) if z is not None)
            # A zone whose data changed gets a new SOA serial, which re-renders its apex.
            for zone in touched:
                zone.bump()
                bumped.add(zone.text)
                self._dirty.add(("zone", "", zone.text))
            touched = set()
        rendered = self._with_dependents(dirty_names)
        self._render_names(rendered)
        self._publish(rendered, wild, bumped, bool(dirty_names))

    def _render_names(self, rendered: Iterable[bytes]) -> None:
        self._glue = {}  # records of additional-section targets, shared by this flush's names
        try:
            for name in rendered:
                self._render_name(name)
        finally:
            self._glue = None

    def _publish(
        self, rendered: set[bytes], wild: set[bytes], bumped: set[str], changed: bool
    ) -> None:
        """After names were re-rendered: wildcards, derived answers and the watchers."""
        self.answers.stamp = object()  # what the registry answers may have changed
        # Every zone whose negative answers' SOA moved (its serial, or a local zone's SOA
        # fields from its data, or a TTL reload): refilled in place for the resolver,
        # reported to the watchers, whose copies of those replies carry the old SOA.
        for zone in self.zones:
            if zone.soa_moved:
                zone.soa_moved = False
                bumped.add(zone.text)
        for name in wild:
            if self.exists(name):
                self.wildcards.add(name)
            else:
                self.wildcards.discard(name)
        affected = rendered.union(self._existence)
        moved = self.gateway.take_moved() if self.gateway.overlays else ()
        if moved:  # names a view's class filters answer otherwise moved (kdns.authority.gateway)
            affected |= moved
            self._synth_lost |= any(name.startswith(WILDCARD) for name in moved)
        # A wildcard made, changed or gone changes the answers of names nobody listed (every
        # name it covers): drop every derived answer, as for a namespace. A name made or gone
        # under the closest encloser of names answered from a wildcard drops exactly those.
        everything = self._namespaces_moved or bool(wild) or self._synth_lost
        if everything:
            self._synth_lost = False
            self._synth.clear()
            self._synth_count = 0
        elif self._synth:
            affected |= self._synthesized_under(affected)
        if self.derived:
            self._forget_derived(affected, everything)
        self._existence.clear()
        self._namespaces_moved = False
        for watcher in self.watchers:
            watcher(affected, bumped, everything)
        if changed:
            self.generation += 1
            if self.on_change is not None:
                self.on_change(time.monotonic())

    def _apply_owner(self, owner: Owner) -> list[bytes]:
        """Swap in the owner's new contribution; return the names whose records changed."""
        owner = self._owners.get(owner, owner)
        self._gradual.pop(owner, None)  # a job rendering it in slices is overtaken
        try:
            new = freeze(self._render_owner(owner))
        except ValueError as exc:
            # One object the API accepted but DNS cannot carry (an externalName label over 63
            # bytes, a non-ASCII name) must not stop every other owner in the batch: keep
            # what this owner answered before, and say which object it is.
            log.warning("cannot render %s %s/%s, keeping its previous answers: %s", *owner, exc)
            return []
        stored = self._contrib.pop(owner, {})
        old = dict((stored,)) if isinstance(stored, tuple) else stored
        if len(new) > 1:
            self._contrib[owner] = new
            self._owners.setdefault(owner, owner)  # one tuple shared by the owner's names
        else:
            if new:
                self._contrib[owner] = next(iter(new.items()))
            # One name (a pod) or none: no tuple to share, no entry (~50 bytes per pod).
            self._owners.pop(owner, None)
        changed = []
        for name in old.keys() | new.keys():
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            changed.append(name)
            if before is None:
                self._link(name, owner)
            elif after is None:
                self._unlink(name, owner)
        return changed

    def _link(self, name: bytes, owner: Owner) -> None:
        entry = self._names.get(name)
        if entry is None:
            self._names[name] = owner
            self._adjust_ents(name, +1)
        elif isinstance(entry, list):
            entry.append(owner)
        else:
            self._names[name] = [entry, owner]

    def _unlink(self, name: bytes, owner: Owner) -> None:
        entry = self._names.get(name)
        if isinstance(entry, list):
            entry.remove(owner)
            if len(entry) == 1:
                self._names[name] = entry[0]
        elif entry is not None:
            del self._names[name]
            self._adjust_ents(name, -1)

    def _adjust_ents(self, name: bytes, delta: int) -> None:
        zone = self.zones.find(name)
        if zone is None:
            return
        node = names.parent(name)
        while len(node) > len(zone.apex):
            count = self._ents[node] + delta
            if count <= 0:
                del self._ents[node]
                self._existence.append(node)
            else:
                self._ents[node] = count
                if count == delta:
                    self._existence.append(node)  # a new empty non-terminal
            node = names.parent(node)

    def _with_dependents(self, dirty: set[bytes]) -> set[bytes]:
        out = set(dirty)
        for name in dirty:
            out.update(self._deps.get(name, ()))
        return out

    def _forget_deps(self, name: bytes) -> None:
        """Drop ``name`` from the dependents of the targets its last answers used."""
        for target in self._dep_targets.pop(name, ()):
            dependents = self._deps.get(target)
            if dependents is not None:
                dependents.discard(name)
                if not dependents:
                    del self._deps[target]

    def _render_name(self, name: bytes) -> None:
        self._forget_deps(name)
        answers = self.answers
        for qtype in self._rendered.pop(name, ()):
            answers.pop(question_key(name, qtype), None)
        if self.is_lazy(name):
            return  # rendered by materialize() on its first query
        records = self.records(name)
        if not records:
            return  # absent, or exists without data: the resolver answers NODATA/NXDOMAIN
        qtypes = list(records)
        if CNAME in records:
            # RFC 1034 3.6.2: a CNAME answers every type; A and AAAA are by far the most asked.
            qtypes += [t for t in ADDRESS_TYPES if t not in records]
        # ANY is rare (RFC 8482): the resolver renders it on demand rather than for every name.
        for qtype in qtypes:
            answers[question_key(name, qtype)] = self.render_answer(name, qtype, records)
        key = tuple(qtypes)
        self._rendered[name] = QTYPES.setdefault(key, key)
