"""Rendering a huge owner in slices: ``flush_steps`` renders and commits a Service of
thousands of endpoints a slice at a time, so the queries served on the same loop wait for one
slice, not for the whole object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from itertools import chain

from kdns.authority.answering import ADDRESS_TYPES
from kdns.authority.frozen import (
    ENTRY,
    LAZY_MARK,
    QTYPES,
    TTLS,
    Frozen,
    Records,
    question_key,
    shard_of,
    thaw,
)
from kdns.authority.nametable import NameTable
from kdns.authority.owners import LAZY, Contribution, Owner, Steps
from kdns.authority.zones import Zone
from kdns.dns.answer import Answer
from kdns.dns.records import CNAME, NS, SRV, rdata_target

log = logging.getLogger("kdns.registry")

# An owner (a Service) with more names, or endpoints + ports, than this is rendered in slices
# by ``flush_steps`` (``flush`` renders everything at once, as before); a commit takes names
# worth about STEP_COST (one per name, one per 64 bytes of its records): about 1 ms of
# rendering (512 was 5 ms for the port names of a Service of 1,000 named ports).
GRADUAL_NAMES = 512
STEP_COST = 128
# Names frozen, compared or scanned between two yields while preparing a commit: each is a
# microsecond or two, so a yield costs nothing next to them and the driver (``Pacer``) cuts
# its slices at its budget, not at whatever a coarser step happened to cost.
EVERY = 256
# A name whose records take more than this (a few hundred records) has its answers rendered
# ahead of its commit, in slices (``_render_ahead``): rendered in the commit, the A and SRV
# answers of a 10,000-endpoint headless Service's own name were one 9 ms step.
AHEAD_BYTES = 16 * 1024
Ahead = tuple[dict[int, Answer], list[bytes]]  # a name's answers by type, the names they read


# Work done between two pauses of a ``Pacer``. A query that arrives during a slice waits for
# the rest of it, so the budget (plus the longest step, ~3 ms) bounds what a render adds to a
# query's wait; each pause costs the loop two passes, tens of microseconds. Smaller is better
# for the tail until the pauses start to cost: benchmarks/slice_budget.py, one run of abuse.py's
# reloads: probe p99 3.52 / 4.04 / 4.25 / 4.51 ms at 0.5 / 1 / 2 / 5 ms, the reloads as long
# (benchmarks/results/slice_budget.json). The parse in a thread, not the slices, is most of
# what is left (kdns.k8s.background).
SLICE_BUDGET = 0.001


class Pacer:
    """Runs steps of work on the event loop in slices of ``budget`` seconds, with a pause
    between slices in which the loop serves everything that arrived meanwhile.

    The pause is two passes of the loop, not one: a task that yields is queued to run again
    *before* the callbacks of the sockets that became readable while it ran (asyncio reads
    them in the next pass, after the ready queue it already holds), so with one pass the next
    slice would start before a datagram that arrived during this one is read, and that
    datagram would wait for two slices. One ``Pacer`` shared by consecutive pieces of work
    (the objects of a reload) keeps its slices to the budget across them."""

    __slots__ = ("budget", "started")

    def __init__(self, budget: float = SLICE_BUDGET) -> None:
        self.budget = budget
        self.started = time.perf_counter()

    def due(self) -> bool:
        """The current slice has run its budget."""
        return time.perf_counter() - self.started > self.budget

    async def pause(self) -> None:
        await asyncio.sleep(0)  # queued behind this pass's ready callbacks...
        await asyncio.sleep(0)  # ...then behind the sockets the loop found readable
        self.started = time.perf_counter()

    async def run(self, steps: Iterator[None]) -> None:
        """Drive ``steps`` to the end, pausing whenever a slice is due (after the last step
        too: the work after the last yield counts)."""
        for _ in steps:
            if time.perf_counter() - self.started > self.budget:
                await self.pause()
        if time.perf_counter() - self.started > self.budget:
            await self.pause()


class GradualFlush(NameTable):
    """The Registry's flush in slices (state made in ``Registry.__init__``)."""

    render_steps: int
    _batch: int

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Group changes like ``batch``, leaving them for ``flush_steps`` (or the next
        flush) instead of rendering them at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1

    def flush_steps(self) -> Iterator[None]:
        """``flush`` in slices, for a driver that lets queries in between (``Pacer.run``).

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
        count = 0
        for name in list(out):
            # Popped as frozen: the render's dicts are freed a slice at a time too (freeing
            # 20,000 names' dicts at once was a 5 ms step of its own). Counted in records,
            # not names: a headless Service's own name holds an A and an SRV per endpoint.
            records = out.pop(name)
            parts = []
            for rtype, rdatas in records.items():
                for rdata in rdatas:
                    parts.append(pack(rtype, len(rdata)) + rdata)
                    count += 1
                    if count % EVERY == 0:
                        yield
                        if self._gradual.get(owner) is not token:
                            return
            new[name] = b"".join(parts)
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
        pending: set[bytes] = set()  # changed names not committed yet
        gone = (name for name in old if name not in new)
        for index, name in enumerate(chain(new, gone)):  # lazily: 40,000 names took 2 ms
            if index % EVERY == EVERY - 1:
                yield  # nothing committed yet: readers see the old names
                if self._gradual.get(owner) is not token:
                    return
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            either = after if after is not None else before
            assert either is not None
            (lazy if either[:4] == LAZY_MARK else eager).append(name)
            pending.add(name)
        # Eager names others point at (an SRV's target, with its glue) before those pointing.
        pointed: set[bytes] = set()
        for name in eager:
            for index, (rtype, rdata) in enumerate(thaw(new.get(name, b""))):
                if index % EVERY == EVERY - 1:
                    yield
                    if self._gradual.get(owner) is not token:
                        return
                if rtype in (SRV, CNAME, NS, 15):
                    target = rdata_target(rtype, rdata)
                    if target is not None and target != name:
                        pointed.add(target)
        eager.sort(key=lambda name: name not in pointed)
        touched: set[Zone] = set()
        chunk: list[bytes] = []
        cost = 0
        for name in chain(lazy, eager):
            after = new.get(name)
            if after is not None and len(after) > AHEAD_BYTES and self._names.get(name, owner) == owner:  # fmt: skip
                # A name of thousands of records (a headless Service's own name: an A and an
                # SRV per endpoint): its answers are rendered ahead, in slices, then swapped in
                # with its records in a short commit of its own.
                if chunk:
                    self._commit(owner, stored, new, chunk, pending, touched)
                    chunk, cost = [], 0
                    yield
                    if self._gradual.get(owner) is not token:
                        return
                generation = self.generation
                ready = yield from self._render_ahead(owner, token, name, after)
                if self._gradual.get(owner) is not token:
                    return
                # Anything else committed meanwhile may have moved its glue: rendered anew.
                usable = ready if self.generation == generation else None
                self._commit(owner, stored, new, [name], pending, touched, usable)
                yield
                if self._gradual.get(owner) is not token:
                    return
                continue
            chunk.append(name)
            cost += 1 + (len(after or b"") + len(old.get(name, b""))) // 64
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

    def _render_ahead(
        self, owner: Owner, token: object, name: bytes, frozen: Frozen
    ) -> Generator[None, None, Ahead | None]:
        """The answers ``name`` will have once ``frozen`` (its one owner's records) is
        committed, rendered in slices (``_render_name`` in steps); None: none to render (a
        lazy name) or the job was overtaken."""
        records: Records = {}
        for index, (rtype, rdata) in enumerate(thaw(frozen)):
            if index % EVERY == EVERY - 1:
                yield
                if self._gradual.get(owner) is not token:
                    return None
            if rtype == LAZY:
                return None  # rendered by materialize() on its first query
            if rtype < TTLS:
                records.setdefault(rtype, []).append(rdata)
        qtypes = list(records)
        if CNAME in records:
            qtypes += [t for t in ADDRESS_TYPES if t not in records]
        answers: dict[int, Answer] = {}
        deps: list[bytes] = []
        for qtype in qtypes:
            yield
            if self._gradual.get(owner) is not token:
                return None
            answers[qtype] = self.render_answer(name, qtype, records, deps=deps)
        return answers, deps

    def _install(self, name: bytes, ahead: Ahead) -> None:
        """Swap in answers rendered ahead (``_render_name``'s end, with their dependencies)."""
        answers, deps = ahead
        self._forget_deps(name)
        table = self.answers
        for qtype in self._rendered.pop(name, ()):
            table.pop(question_key(name, qtype), None)
        for qtype, answer in answers.items():
            table[question_key(name, qtype)] = answer
        if answers:
            key = tuple(answers)
            self._rendered[name] = QTYPES.setdefault(key, key)
        targets = tuple(dict.fromkeys(deps))
        for target in targets:
            self._deps.setdefault(target, set()).add(name)
        if targets:
            self._dep_targets[name] = targets

    def _commit(
        self,
        owner: Owner,
        stored: dict[bytes, Frozen],
        new: dict[bytes, Frozen],
        chunk: list[bytes],
        pending: set[bytes],
        touched: set[Zone],
        ahead: Ahead | None = None,
    ) -> None:
        """Swap in ``chunk``'s records (each name whole), render them and their dependents
        not still pending (``ahead``: the one name of ``chunk``'s answers, rendered before),
        and tell the watchers."""
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
        if ahead is not None:
            self._install(chunk[0], ahead)
            self._render_names(rendered - {chunk[0]})
        else:
            self._render_names(rendered)
        self.render_steps += 1
        self._publish(rendered, set(), set(), False)
        self.generation += 1
