"""The derived-answer memo of the registry: answers the resolver computed from the name table
(NXDOMAIN/NODATA, computed pod names, ANY, wildcard synthesis), kept until a change could
alter them. The hot path reads ``derived`` right after ``answers``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from kdns.dns.answer import Answer
from kdns.dns.records import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, A

# Derived answers are kept for these query types (class IN), so a change drops a bounded set of
# keys per name; other types are computed per query (rare, and cheap).
MEMO_TYPES = frozenset((A, NS, CNAME, SOA, PTR, 15, TXT, AAAA, SRV, 35, 43, 48, 64, 65, 257, ANY))
MEMO_SUFFIXES = tuple(struct.pack("!HH", t, 1) for t in sorted(MEMO_TYPES))
MAX_DERIVED = 65536  # about 8.5 MiB when full (131 B per remembered question)


class DerivedMemo:
    """Mixin of the Registry: the memo of derived answers and the wildcard-synthesis index
    (state made in ``Registry.__init__``)."""

    derived: dict[bytes, Answer]
    derived_evictions: int
    # closest encloser -> names the resolver answered from the wildcard below it (kept in
    # ``derived``): a name made or gone under that encloser may change those answers.
    _synth: dict[bytes, set[bytes]]
    _synth_count: int
    _synth_lost: bool

    def remember(self, key: bytes, answer: Answer) -> None:
        """Keep an answer the resolver derived (``key`` as in ``answers``) until the state it
        was derived from changes. Bounded: when full it starts over (no per-hit bookkeeping)."""
        derived = self.derived
        if len(derived) >= MAX_DERIVED:
            self.derived_evictions += len(derived)
            derived.clear()
        derived[key] = answer

    def synthesized(self, encloser: bytes, name: bytes) -> None:
        """The resolver answered ``name`` from the wildcard below ``encloser`` (RFC 4592)."""
        if self._synth_count >= MAX_DERIVED:
            # Bounded: forget the index, and have the next change drop every derived answer
            # (and cached reply) rather than miss one.
            self._synth.clear()
            self._synth_count = 0
            self._synth_lost = True
        names_here = self._synth.setdefault(encloser, set())
        if name not in names_here:
            names_here.add(name)
            self._synth_count += 1

    def _synthesized_under(self, changed: Iterable[bytes]) -> set[bytes]:
        """Names answered from a wildcard whose closest encloser is a changed name or one of
        its ancestors (a name made or gone there may change which node encloses them): they
        are forgotten with the changed names. Drops those index entries."""
        synth = self._synth
        out: set[bytes] = set()
        shortest = min(map(len, synth))
        for name in changed:
            node = name
            while len(node) >= shortest:
                found = synth.pop(node, None)
                if found is not None:
                    self._synth_count -= len(found)
                    out |= found
                    if not synth:
                        return out
                node = node[node[0] + 1 :] if node[0] else node[:0]
        return out

    def _forget_derived(self, changed: Iterable[bytes], everything: bool) -> None:
        """Drop the derived answers a flush may have changed: every memoizable type of each
        changed name (records, dependents' glue, empty non-terminals made or gone), or all of
        them when a namespace came or went (computed pod names depend on it)."""
        derived = self.derived
        if everything:
            self.derived_evictions += len(derived)
            derived.clear()
            self._synth.clear()
            self._synth_count = 0
            return
        pop = derived.pop
        for name in changed:
            for suffix in MEMO_SUFFIXES:
                pop(name + suffix, None)
