"""Block lists as Blocky and AdGuard Home users have them, at 1M rules.

Storage: one 64-bit hash per listed name (Python's ``hash`` of the lowercased wire name, which
is stable within a process and its forks: the parse child computes what lookups here compute;
each process of ``--workers`` indexes its lists itself), sorted in an
``array('Q')``, plus an index of where each 16-bit hash prefix starts. 1M names take 8 MiB
and 256 KiB of index; the text of the names is never kept. A lookup hashes each suffix of the
query name (``ads.tracker.example.com``, ``tracker.example.com``, ``example.com``, ``com``) and
bisects the few hashes sharing its prefix: O(labels), subdomains of a listed name included.
Two different names share a 64-bit hash with probability ~n/2^64 per lookup (5e-14 at 1M).
Exceptions and ``$important`` rules (few) are sets of the same hashes; pattern rules
(``/regex/``, adblock wildcards) are one linear-time automaton per kind (kdns.dns.patterns).
The syntax of each line is read by kdns.policy.listsyntax.
"""

from __future__ import annotations

import logging
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable

from kdns.dns import patterns as pattern_rules
from kdns.dns.answer import Answer, empty
from kdns.dns.records import AAAA, NOERROR, NXDOMAIN, QNAME_POINTER, A, rr
from kdns.policy.listsyntax import (
    BADFILTER,
    BLOCK,
    EXCEPTION,
    FORMATS,
    IMPORTANT,
    IMPORTANT_EXCEPTION,
    KIND_NAMES,
    Rule,
    iter_rules,
    parse_line,
    text_name,
    wire_name,
)

__all__ = ["BLOCK", "EXCEPTION", "FORMATS", "IMPORTANT", "IMPORTANT_EXCEPTION", "KIND_NAMES", "BlockList", "file_stamp", "iter_rules", "parse_line", "text_name", "wire_name"]  # fmt: skip

log = logging.getLogger("kdns.blocklist")

MASK = 0xFFFFFFFFFFFFFFFF
PREFIX_SHIFT = 48  # the index is on the top 16 bits of each hash
BUCKETS = 1 << (64 - PREFIX_SHIFT)
BLOCKED_TTL = 2  # Pi-hole's blocked-answer TTL: unblocking shows within seconds
ANSWERS = ("nxdomain", "nodata", "null")


class BlockList:
    """One loaded list: its name, where it came from, how blocked names are answered.

    ``hashes``/``index``: the names blocked with their subdomains (most of any list);
    ``exceptions``, ``important``, ``important_exceptions``: hashes of the names of those
    rules; ``patterns``: an automaton per kind for regex and wildcard rules (None: none)."""

    __slots__ = ("name", "path", "format", "answer", "hashes", "index", "entries", "skipped", "skipped_by", "stamp", "exceptions", "important", "important_exceptions", "patterns", "_answers")  # fmt: skip

    def __init__(self, name: str, path: str, fmt: str, answer: str) -> None:
        self.name = name
        self.path = path
        self.format = fmt
        self.answer = answer
        self.hashes = array("Q")
        self.index = array("I", bytes(4 * (BUCKETS + 1)))
        self.entries = 0  # rules in use (names, exceptions, important, patterns)
        self.skipped = 0  # lines skipped (``skipped_by``: by reason)
        self.skipped_by: dict[str, int] = {}
        self.stamp: tuple[int, int, int] | None = None  # (inode, mtime, size) when loaded
        self.exceptions: frozenset[int] = frozenset()
        self.important: frozenset[int] = frozenset()
        self.important_exceptions: frozenset[int] = frozenset()
        # kind -> automaton of that kind's pattern rules
        self.patterns: dict[int, pattern_rules.Patterns] | None = None
        self._answers = _answers(answer)

    @classmethod
    def load(cls, name: str, path: str, fmt: str, answer: str) -> BlockList:
        """Read and index ``path``; raises OSError when it cannot be read."""
        stamp = file_stamp(path)
        with open(path, "rb") as handle:
            blocklist = cls.parse(name, path, fmt, answer, handle)
        blocklist.stamp = stamp
        return blocklist

    @classmethod
    def parse(cls, name: str, path: str, fmt: str, answer: str, lines: Iterable[bytes]) -> BlockList:  # fmt: skip
        """Index the rules of ``lines`` (a file's lines, or a download's)."""
        blocklist = cls(name, path, fmt, answer)
        hashes = array("Q")
        append = hashes.append
        skipped: dict[str, int] = {}
        sets: dict[int, set[int]] = {EXCEPTION: set(), IMPORTANT: set(), IMPORTANT_EXCEPTION: set()}  # fmt: skip
        found: dict[int, list[Rule]] = {}  # pattern rules by kind
        bad: set[str] = set()
        for _, got in iter_rules(lines, fmt):
            if isinstance(got, str):
                skipped[got] = skipped.get(got, 0) + 1
                continue
            for rule in got:
                if rule.name is not None:
                    if rule.kind == BLOCK:
                        append(hash(rule.name) & MASK)
                    else:
                        sets[rule.kind].add(hash(rule.name) & MASK)
                elif rule.kind == BADFILTER:
                    bad.add(rule.text)
                else:
                    found.setdefault(rule.kind, []).append(rule)
        if bad:
            dropped = blocklist._badfilter(bad, hashes, sets, found, fmt, skipped)
            hashes = array("Q", (h for h in hashes if h not in dropped)) if dropped else hashes
        for kind, rules in found.items():
            automaton = pattern_rules.Patterns()
            for rule in rules:
                try:
                    automaton.add(rule.text, pattern_rules.parse_regex(rule.pattern or ""))
                except pattern_rules.Unsupported as exc:
                    skipped[str(exc)] = skipped.get(str(exc), 0) + 1
            if len(automaton):
                if blocklist.patterns is None:
                    blocklist.patterns = {}
                blocklist.patterns[kind] = automaton
        blocklist._index(hashes)
        blocklist.exceptions = frozenset(sets[EXCEPTION])
        blocklist.important = frozenset(sets[IMPORTANT])
        blocklist.important_exceptions = frozenset(sets[IMPORTANT_EXCEPTION])
        blocklist.skipped_by = skipped
        blocklist.skipped = sum(skipped.values())
        blocklist.entries = (
            len(blocklist.hashes) + sum(len(v) for v in sets.values())
            + sum(len(p) for p in (blocklist.patterns or {}).values())
        )  # fmt: skip
        return blocklist

    def _badfilter(self, bad: set[str], hashes: array[int], sets: dict[int, set[int]], found: dict[int, list[Rule]], fmt: str, skipped: dict[str, int]) -> set[int]:  # fmt: skip
        """Apply ``$badfilter`` rules: drop the rules they name. The hashes of disabled name
        rules are returned (dropped from ``hashes`` by the caller)."""
        dropped: set[int] = set()
        disabled = 0
        for text in bad:
            got = parse_line(text.encode(), fmt)
            if isinstance(got, str):
                continue
            for rule in got:
                if rule.name is not None:
                    h = hash(rule.name) & MASK
                    if rule.kind == BLOCK:
                        dropped.add(h)
                    elif h in sets[rule.kind]:
                        sets[rule.kind].discard(h)
                        disabled += 1
                elif rule.kind in found:
                    before = len(found[rule.kind])
                    found[rule.kind] = [r for r in found[rule.kind] if r.text != rule.text]
                    disabled += before - len(found[rule.kind])
        disabled += sum(1 for h in hashes if h in dropped) if dropped else 0
        if disabled:
            skipped["disabled-by-badfilter"] = disabled
        return dropped

    def as_list(self, name: str, answer: str) -> BlockList:
        """The same loaded rules under a list's ``name``, answered its way (several
        [[blocklists]] of one source share one index; an edit of ``answer`` reloads nothing)."""
        other = BlockList(name, self.path, self.format, answer)
        for slot in ("hashes", "index", "entries", "skipped", "skipped_by", "stamp", "exceptions", "important", "important_exceptions", "patterns"):  # fmt: skip
            setattr(other, slot, getattr(self, slot))
        return other

    def _index(self, hashes: array[int]) -> None:
        """Sort by bucket (a counting sort on the 16-bit prefix, then each small bucket on its
        own): peak memory is two arrays, never a list of a million ints."""
        counts = [0] * (BUCKETS + 1)
        for h in hashes:
            counts[(h >> PREFIX_SHIFT) + 1] += 1
        total = 0
        for i in range(BUCKETS + 1):
            total += counts[i]
            counts[i] = total
        index = array("I", counts)
        ordered = array("Q", bytes(8 * len(hashes)))
        fill = counts[:BUCKETS]
        for h in hashes:
            bucket = h >> PREFIX_SHIFT
            ordered[fill[bucket]] = h
            fill[bucket] += 1
        del hashes
        for bucket in range(BUCKETS):
            lo, hi = index[bucket], index[bucket + 1]
            if hi - lo > 1:
                ordered[lo:hi] = array("Q", sorted(ordered[lo:hi]))
        self.hashes, self.index = ordered, index

    def __contains__(self, wire: bytes) -> bool:
        """``wire`` itself is listed (not its parents; see ``kdns.policy.views``)."""
        return self.has_hash(hash(wire) & MASK)

    def has_hash(self, h: int) -> bool:
        bucket = h >> PREFIX_SHIFT
        index = self.index
        lo, hi = index[bucket], index[bucket + 1]
        if lo == hi:
            return False
        hashes = self.hashes
        at = bisect_left(hashes, h, lo, hi)
        return at < hi and hashes[at] == h

    @property
    def simple(self) -> bool:
        """Only names to block (no exceptions, important or pattern rules): the fast path."""
        return not (self.exceptions or self.important or self.important_exceptions or self.patterns)  # fmt: skip

    def strongest(self, suffixes: list[int], text: bytes) -> tuple[int, str | int | None]:
        """The strongest rule kind matching a name (0: none) and what matched: the index of
        the suffix whose hash is listed, or the pattern rule's text. ``suffixes``: the hashes
        of the name and each parent; ``text``: the name as patterns match it."""
        patterns = self.patterns
        for kind, found in ((IMPORTANT_EXCEPTION, self.important_exceptions), (IMPORTANT, self.important), (EXCEPTION, self.exceptions)):  # fmt: skip
            if found:
                for at, h in enumerate(suffixes):
                    if h in found:
                        return kind, at
            if patterns is not None and kind in patterns:
                hit = patterns[kind].match(text)
                if hit >= 0:
                    return kind, patterns[kind].rules[hit]
        for at, h in enumerate(suffixes):
            if self.has_hash(h):
                return BLOCK, at
        if patterns is not None and BLOCK in patterns:
            hit = patterns[BLOCK].match(text)
            if hit >= 0:
                return BLOCK, patterns[BLOCK].rules[hit]
        return 0, None

    def answer_for(self, qtype: int) -> Answer:
        """The reply for a blocked question of ``qtype``."""
        answers = self._answers
        return answers[1] if qtype == A else answers[2] if qtype == AAAA else answers[0]

    def memory(self) -> int:
        """Bytes of the index (hashes and prefix table; sets and automata roughly)."""
        size = self.hashes.itemsize * len(self.hashes) + self.index.itemsize * len(self.index)
        size += 60 * (len(self.exceptions) + len(self.important) + len(self.important_exceptions))  # fmt: skip
        return size + sum(p.memory() for p in (self.patterns or {}).values())

    def __repr__(self) -> str:
        return f"BlockList({self.name!r}, {self.entries} rules, {self.answer})"


def _answers(answer: str) -> tuple[Answer, Answer, Answer]:
    """(other types, A, AAAA) replies: NXDOMAIN, NODATA, or 0.0.0.0 / :: (``null``)."""
    if answer == "nxdomain":
        nx = empty(NXDOMAIN, False)
        return nx, nx, nx
    nodata = empty(NOERROR, False)
    if answer == "nodata":
        return nodata, nodata, nodata
    null_a = Answer(NOERROR, False, (((rr(QNAME_POINTER, A, BLOCKED_TTL, bytes(4)), 1),), (), ()))
    null_aaaa = Answer(
        NOERROR, False, (((rr(QNAME_POINTER, AAAA, BLOCKED_TTL, bytes(16)), 1),), (), ())
    )
    return nodata, null_a, null_aaaa


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """(inode, mtime ns, size) of ``path`` following symlinks (a ConfigMap update swaps one)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)
