"""Block lists as Blocky and AdGuard Home users have them, at 1M rules.

Storage: one 64-bit hash per listed name (Python's ``hash`` of the lowercased wire name, which
is stable within a process; each process of ``--workers`` loads its own lists), sorted in an
``array('Q')``, plus an index of where each 16-bit hash prefix starts. 1M names take 8 MiB
and 256 KiB of index; the text of the names is never kept. A lookup hashes each suffix of the
query name (``ads.tracker.example.com``, ``tracker.example.com``, ``example.com``, ``com``) and
bisects the few hashes sharing its prefix: O(labels), subdomains of a listed name included.
Two different names share a 64-bit hash with probability ~n/2^64 per lookup (5e-14 at 1M).
Exceptions and ``$important`` rules (few) are sets of the same hashes; pattern rules
(``/regex/``, adblock wildcards) are one linear-time automaton per kind (kdns.dns.patterns).

Each line is read by its own syntax (``format = "auto"``, the default: what AdGuard Home and
Blocky do), or only as the ``format`` says:

- hosts (``0.0.0.0 ads.example.com [more names]``, any address): the names and their
  subdomains, answered with the list's answer whatever the line's address (Blocky's reading:
  ``203.0.113.5 tracker.example`` blocks; AdGuard Home would answer 203.0.113.5); the usual
  header names (``localhost``, ``broadcasthost``, ``ip6-*``) never block;
- a plain name (``ads.example.com``) or a wildcard (``*.ads.example.com``): the name and its
  subdomains (Blocky's reading; AdGuard Home blocks a plain name only, not its subdomains);
- adblock (``format = "adblock"`` or ``auto``): ``||example.com^`` the name and subdomains;
  ``@@||example.com^`` an exception (unblocks, in every list of the view); ``$important``
  wins over exceptions (and ``@@...$important`` over it); ``$badfilter`` disables the rule it
  names; ``|example.com^`` the name only; wildcards (``||ads.*.example^``, ``ads.*.``) match
  as AdGuard Home matches them; rules with any other modifier (``$third-party``,
  ``$client=``, ``$dnstype=``, ``$denyallow=``, ``$dnsrewrite=``...) are skipped and counted
  by modifier, as AdGuard Home ignores modifiers it does not know; cosmetic (``##``), URL
  path and IP rules are skipped and counted;
- regex (``/^ad[sxv]?[0-9]*[_.-]/``, Blocky and AdGuard Home): names matching it, in linear
  time; backreferences and lookaround are skipped and counted.

``!`` and ``#`` start comment lines (``#`` after a space also ends a hosts or name line).
Every line that is not a comment and not used is counted, by reason (``skipped_by``).
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

log = logging.getLogger("kdns.blocklist")

MASK = 0xFFFFFFFFFFFFFFFF
PREFIX_SHIFT = 48  # the index is on the top 16 bits of each hash
BUCKETS = 1 << (64 - PREFIX_SHIFT)
BLOCKED_TTL = 2  # Pi-hole's blocked-answer TTL: unblocking shows within seconds
FORMATS = ("auto", "hosts", "domains", "adblock")
ANSWERS = ("nxdomain", "nodata", "null")
_HOSTS_HEADER = frozenset(
    b"localhost localhost.localdomain local broadcasthost ip6-localhost ip6-loopback "
    b"ip6-localnet ip6-mcastprefix ip6-allnodes ip6-allrouters ip6-allhosts 0.0.0.0".split()
)
_LENGTHS = [bytes((n,)) for n in range(64)]
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_.")
_PATTERN_BYTES = _NAME_BYTES | frozenset(b"*|^")

# Rule kinds, weakest first: a view's verdict on a name is its strongest match in any list.
BLOCK, EXCEPTION, IMPORTANT, IMPORTANT_EXCEPTION = 1, 2, 3, 4
KIND_NAMES = {BLOCK: "block", EXCEPTION: "exception", IMPORTANT: "important", IMPORTANT_EXCEPTION: "important exception"}  # fmt: skip


def wire_name(text: bytes) -> bytes | None:
    """``ads.example.com`` (lowercase ASCII) -> its wire form; None when it is not a name
    (empty or long labels, characters other than letters, digits, ``-`` and ``_``)."""
    text = text.rstrip(b".")
    if not text or len(text) > 253 or not _NAME_BYTES.issuperset(text):
        return None
    parts = []
    for label in text.split(b"."):
        if not 0 < len(label) < 64:
            return None
        parts.append(_LENGTHS[len(label)])
        parts.append(label)
    parts.append(b"\x00")
    return b"".join(parts)


def text_name(wire: bytes) -> bytes:
    """A wire name as lowercase text without the trailing dot (what patterns match)."""
    out = []
    pos = 0
    while wire[pos]:
        out.append(wire[pos + 1 : pos + 1 + wire[pos]])
        pos += wire[pos] + 1
    return b".".join(out).lower()


def _looks_like_ip(word: bytes) -> bool:
    """An address as hosts files write it (``0.0.0.0``, ``::``, ``fe80::1%eth0`` with a zone
    index, which Blocky drops). Whatever the address, a hosts line of a block list blocks its
    names with the list's answer, as Blocky reads it (AdGuard Home would answer a real
    address: a list downloaded from elsewhere does not get to point names at addresses)."""
    word = word.split(b"%", 1)[0]
    return b":" in word or (word[:1].isdigit() and word.replace(b".", b"").isdigit())


class Rule:
    """One line's meaning: ``kind`` (BLOCK...), and either ``name`` (a wire name: it and its
    subdomains) or ``pattern`` (a regex text), ``text`` the rule as written."""

    __slots__ = ("kind", "name", "pattern", "text")

    def __init__(self, kind: int, name: bytes | None, pattern: str | None, text: str) -> None:
        self.kind, self.name, self.pattern, self.text = kind, name, pattern, text

    def __repr__(self) -> str:
        return f"Rule({KIND_NAMES[self.kind]}, {self.text!r})"


def parse_line(line: bytes, fmt: str) -> list[Rule] | str:
    """The rules of one list line, or the reason it is skipped ([] for comments and blanks)."""
    line = line.strip()
    if not line or line[:1] in (b"!", b"#") or line[:1] == b"[" and line[-1:] == b"]":
        return []  # comments, blank lines, "[Adblock Plus 2.0]"
    if b"##" in line or b"#@#" in line or b"#$#" in line or b"#%#" in line or b"#?#" in line:
        return "cosmetic"
    text = line.decode("utf-8", "replace")
    if line[:1] == b"/" or line[:3] == b"@@/":
        if fmt == "hosts":
            return "not-hosts-line"
        return _regex_rule(text)
    if b" #" in line or b"\t#" in line:
        line = line.split(b"#", 1)[0].strip()
    words = line.split()
    if len(words) > 1 or _looks_like_ip(words[0]):
        if not _looks_like_ip(words[0]):
            return "not-hosts-line" if fmt == "hosts" else "invalid-name"
        if len(words) == 1:
            return "not-hosts-line" if fmt == "hosts" else "ip-rule"
        if fmt == "domains":
            return "hosts-syntax"
        rules = []
        for word in words[1:]:
            lowered = word.lower()
            if lowered in _HOSTS_HEADER:
                continue
            wire = wire_name(lowered)
            if wire is None:
                return "invalid-name"
            rules.append(Rule(BLOCK, wire, None, word.decode("utf-8", "replace")))
        return rules
    if fmt == "hosts":
        return "not-hosts-line"
    word = words[0].lower()
    if fmt == "domains":
        plain = word[2:-1] if word[:2] == b"||" and word[-1:] == b"^" else word
        if plain[:2] == b"*.":
            plain = plain[2:]
        wire = wire_name(plain)
        if wire is None:
            return "adblock-syntax" if any(c in word for c in b"@|^$") else "invalid-name"
        return [Rule(BLOCK, wire, None, text)]
    return _adblock_rule(word, text)


def _regex_rule(text: str) -> list[Rule] | str:
    kind = BLOCK
    body = text
    if body.startswith("@@"):
        kind, body = EXCEPTION, body[2:]
    modifiers: list[str] = []
    if not body.endswith("/"):
        cut = body.rfind("/$")
        if cut <= 0:
            return "regex-syntax"
        modifiers = body[cut + 2 :].split(",")
        body = body[: cut + 1]
    kind, reason = _modifiers(kind, modifiers)
    if reason:
        return reason
    regex = body[1:-1]
    if not regex:
        return "regex-syntax"
    try:
        pattern_rules.parse_regex(regex)
    except pattern_rules.Unsupported as exc:
        return str(exc)
    return [Rule(kind, None, regex, text)]


def _modifiers(kind: int, modifiers: list[str]) -> tuple[int, str]:
    """The kind with ``$important``; a skip reason for any other modifier."""
    for modifier in modifiers:
        key = modifier.strip().lower().partition("=")[0]
        if key == "important":
            kind = IMPORTANT_EXCEPTION if kind == EXCEPTION else IMPORTANT
        elif key == "badfilter":
            continue  # handled by the loader
        else:
            return kind, f"modifier:{key.lstrip('~') or 'empty'}"
    return kind, ""


def _adblock_rule(word: bytes, text: str) -> list[Rule] | str:
    kind = BLOCK
    if word[:2] == b"@@":
        kind, word = EXCEPTION, word[2:]
    modifiers: list[str] = []
    if b"$" in word:
        word, _, mods = word.partition(b"$")
        modifiers = mods.decode("utf-8", "replace").split(",")
    kind, reason = _modifiers(kind, modifiers)
    if reason:
        return reason
    for scheme in (b"://", b"http://", b"https://"):
        if word.startswith(scheme) or word.startswith(b"||" + scheme):
            return "url-path"
    if b"/" in word or b"?" in word or b"=" in word:
        return "url-path"
    if not word:
        return "invalid-name"
    if (
        word[:2] == b"||"
        and word[-1:] == b"^"
        or word[:2] == b"*."
        or b"|" not in word
        and b"^" not in word
        and b"*" not in word
    ):
        plain = word[2:-1] if word[:2] == b"||" and word[-1:] == b"^" else word
        if plain[:2] == b"*.":
            plain = plain[2:]
        if _looks_like_ip(plain):
            return "ip-rule"
        wire = wire_name(plain)
        if wire is not None:
            return [Rule(kind, wire, None, text)]
    if not _PATTERN_BYTES.issuperset(word):
        return "invalid-name"
    core = word.strip(b"|^*.")
    if core and _looks_like_ip(core):
        return "ip-rule"
    if not core:
        return "pattern-matches-everything" if kind in (BLOCK, IMPORTANT) else "invalid-name"
    return [Rule(kind, None, pattern_rules.adblock_regex(word.decode()), text)]


def iter_rules(lines: Iterable[bytes], fmt: str) -> Iterable[tuple[int, list[Rule] | str]]:
    """(line number, the line's rules or its skip reason) for every line that is not a
    comment; ``$badfilter`` lines come out as rules of their own kind (``BADFILTER``)."""
    for number, line in enumerate(lines, 1):
        if b"badfilter" in line and fmt in ("auto", "adblock"):
            base = _without_badfilter(line.strip().decode("utf-8", "replace"))
            if base is not None:
                yield number, [Rule(BADFILTER, None, None, base)]
                continue
        got = parse_line(line, fmt)
        if got:
            yield number, got


BADFILTER = 0  # a ``$badfilter`` rule: ``text`` is the rule it disables


def _without_badfilter(text: str) -> str | None:
    """``||ads.example^$important,badfilter`` -> ``||ads.example^$important``."""
    body, dollar, mods = text.rpartition("$")
    if not dollar:
        return None
    kept = [m for m in mods.split(",") if m.strip().lower() != "badfilter"]
    if len(kept) == len(mods.split(",")):
        return None
    return body + ("$" + ",".join(kept) if kept else "")


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
