"""Rendering a huge owner in slices: ``flush_steps`` renders and commits a Service of
thousands of endpoints a slice at a time, so the queries served on the same loop wait for one
slice, not for the whole object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kdns.authority.frozen import ENTRY, LAZY_MARK, Frozen, shard_of, thaw
from kdns.authority.nametable import NameTable
from kdns.authority.owners import Contribution, Owner, Steps
from kdns.authority.zones import Zone
from kdns.dns.records import CNAME, NS, SRV, rdata_target

log = logging.getLogger("kdns.registry")

# An owner (a Service) with more names, or endpoints + ports, than this is rendered in slices
# by ``flush_steps`` (``flush`` renders everything at once, as before); a slice commits names
# worth about STEP_COST (one per name, one per 64 bytes of its records).
GRADUAL_NAMES = 512
STEP_COST = 512


class GradualFlush(NameTable):
    """The Registry's flush in slices (state made in ``Registry.__init__``)."""

    render_steps: int
    _batch: int

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Group changes like ``batch``, leaving them for ``flush_steps`` or
        ``flush_gradually`` (or the next flush) instead of rendering them at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1

    async def flush_gradually(self, budget: float = 0.005) -> None:
        """``flush_steps`` on the event loop: a yield to the loop whenever ``budget`` seconds
        of slices have run, so one huge object never stalls the queries served beside it."""
        clock = time.perf_counter
        started = clock()
        for _ in self.flush_steps():
            if clock() - started > budget:
                await asyncio.sleep(0)
                started = clock()

    def flush_steps(self) -> Iterator[None]:
        """``flush`` in slices, for a driver that lets queries in between (``flush_gradually``).

        Small owners are flushed at once, as by ``flush``. An owner of more than GRADUAL_NAMES
        names or endpoints (a Service with thousands of endpoints) is rendered in slices (the
        render itself yields every few hundred endpoints; nothing is visible until committed),
        then committed a slice of names at a time: each name's records, existence and every
        answer swap together, so between two slices a query sees each name's old answers or
        its new ones, never a mix. Lazy names (endpoint names, their PTRs) go first, then the
        names others point at, then the names that point (SRV, CNAME) with their glue. After
        every slice the watchers are told exactly the names it changed (before the driver
        yields, so before the next datagram is read); the zone's serial moves in the last.
        """
        if not self._dirty:
            return
        big = {owner for owner in self._dirty if self._is_big(owner)}
        self._dirty -= big
        self.flush()
        for owner in big:
            yield
            yield from self._apply_gradually(owner)

    def _is_big(self, owner: Owner) -> bool:
        if owner[0] != "svc":
            return False
        stored = self._contrib.get(self._owners.get(owner, owner))
        if isinstance(stored, dict) and len(stored) > GRADUAL_NAMES:
            return True
        weight = 0
        svc = self.services.get((owner[1], owner[2]))
        if svc is not None:
            weight += len(svc.ports)
        for key in self._slices_of.get((owner[1], owner[2]), ()):
            eps = self.slices[key]
            weight += len(eps.endpoints) + len(eps.ports)
        return weight > GRADUAL_NAMES

    def _apply_gradually(self, owner: Owner) -> Iterator[None]:
        """``_apply_owner`` in slices (see ``flush_steps``)."""
        owner = self._owners.get(owner, owner)
        token = object()
        self._gradual[owner] = token
        try:
            yield from self._apply_slices(owner, token)
        finally:
            if self._gradual.get(owner) is token:
                del self._gradual[owner]

    def _apply_slices(self, owner: Owner, token: object) -> Iterator[None]:
        steps: Steps = self._render_owner_steps(owner)
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    out: Contribution = done.value
                    break
                yield
                if self._gradual.get(owner) is not token:
                    return  # applied whole meanwhile
        except ValueError as exc:
            log.warning("cannot render %s %s/%s, keeping its previous answers: %s", *owner, exc)
            return
        new: dict[bytes, Frozen] = {}
        pack = ENTRY.pack
        for index, (name, records) in enumerate(out.items()):
            new[name] = b"".join(
                pack(rtype, len(rdata)) + rdata
                for rtype, rdatas in records.items()
                for rdata in rdatas  # fmt: skip
            )
            if index % 1024 == 1023:
                yield
                if self._gradual.get(owner) is not token:
                    return
        del out
        # The owner's stored names become a dict edited in place, a name at a time.
        stored = self._contrib.get(owner)
        if isinstance(stored, tuple):
            stored = dict((stored,))
        elif stored is None:
            stored = {}
        self._contrib[owner] = stored
        self._owners[owner] = owner
        old = stored.copy()
        lazy: list[bytes] = []
        eager: list[bytes] = []
        for index, name in enumerate((*new, *(name for name in old if name not in new))):
            if index % 4096 == 4095:
                yield  # nothing committed yet: readers see the old names
                if self._gradual.get(owner) is not token:
                    return
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            either = after if after is not None else before
            assert either is not None
            (lazy if either[:4] == LAZY_MARK else eager).append(name)
        # Eager names others point at (an SRV's target, with its glue) before those pointing.
        pointed: set[bytes] = set()
        for name in eager:
            for index, (rtype, rdata) in enumerate(thaw(new.get(name, b""))):
                if index % 4096 == 4095:
                    yield
                    if self._gradual.get(owner) is not token:
                        return
                if rtype in (SRV, CNAME, NS, 15):
                    target = rdata_target(rtype, rdata)
                    if target is not None and target != name:
                        pointed.add(target)
        eager.sort(key=lambda name: name not in pointed)
        pending = set(lazy)
        pending.update(eager)
        touched: set[Zone] = set()
        chunk: list[bytes] = []
        cost = 0
        for name in (*lazy, *eager):
            chunk.append(name)
            cost += 1 + (len(new.get(name, b"")) + len(old.get(name, b""))) // 64
            if cost >= STEP_COST:
                self._commit(owner, stored, new, chunk, pending, touched)
                chunk, cost = [], 0
                yield
                if self._gradual.get(owner) is not token:
                    return
        if chunk:
            self._commit(owner, stored, new, chunk, pending, touched)
        # Back to the compact storage of a small owner, then the serial of every zone moved.
        if len(stored) <= 1:
            del self._contrib[owner]
            if stored:
                self._contrib[owner] = next(iter(stored.items()))
            self._owners.pop(owner, None)
        for zone in touched:
            zone.bump()
            self._dirty.add(("zone", "", zone.text))
        self.flush()

    def _commit(
        self,
        owner: Owner,
        stored: dict[bytes, Frozen],
        new: dict[bytes, Frozen],
        chunk: list[bytes],
        pending: set[bytes],
        touched: set[Zone],
    ) -> None:
        """Swap in ``chunk``'s records (each name whole), render them and their dependents
        not still pending, and tell the watchers."""
        pending.difference_update(chunk)
        for name in chunk:
            after = new.get(name)
            if after is None:
                del stored[name]
                self._unlink(name, owner)
            else:
                linked = name in stored
                stored[name] = after
                if not linked:
                    self._link(name, owner)
        self.shard_generation[shard_of(owner)] += 1
        touched.update(z for z in map(self.zones.find, chunk) if z is not None)
        rendered = self._with_dependents(set(chunk))
        rendered -= pending
        self._render_names(rendered)
        self.render_steps += 1
        self._publish(rendered, set(), set(), False)
        self.generation += 1
