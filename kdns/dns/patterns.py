"""Pattern rules of block lists (``/regex/`` and adblock wildcards), matched in linear time.

Block lists carry regular expressions (``/^ad[sxv]?[0-9]*[_.-]/``, Blocky and AdGuard Home's
``/.../`` lines) and adblock patterns with wildcards (``||ads.*.example^``, ``ads.*.``). Python's
``re`` backtracks: one pathological pattern (``/(a+)+$/``) against a 60-letter name runs for
minutes, and a client chooses the names. So these are compiled here, with ``re``'s own parser
(``re._parser``), into one Thompson NFA per list (every pattern of the list in one automaton)
and matched as a lazily built DFA, like RE2 and Go's regexp (which Blocky and AdGuard Home
use): a name costs one dict lookup per character once its transitions are known, and at
worst, the first time a transition is seen, a step over the NFA's states; never backtracking.

Supported: literals, ``.``, classes (``[a-z0-9_-]``, ``\\d``, ``\\w``, ``\\s``, POSIX
``[[:alnum:]]``), groups, alternation, ``* + ? {m,n}``, ``^`` and ``$``. Matching is
case-insensitive (names are lowercase) and unanchored unless anchored (``re.search``).
Not supported (the rule is skipped and counted): backreferences, lookaround, ``\\b``, and
patterns whose automaton would exceed ``MAX_STATES`` (``{1,1000}`` nested in a repeat...).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

# re's own parser (Python 3.11+: re._parser / re._constants; not in the typeshed stubs).
_p: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MAX_STATES = 4000  # NFA states one pattern may take (a hostname is at most 253 bytes)
MAX_DFA_STATES = 4096  # DFA states kept per automaton before the cache starts over
_MAX_NAME = 253

_POSIX = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "lower": "a-z",
    "upper": "A-Z",
    "space": r" \t\r\n\f\v",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_",
}
_POSIX_RE = re.compile(r"\[:(\w+):\]")


class Unsupported(ValueError):
    """A pattern this engine does not run (str: the reason, a metric label)."""


# NFA states: lists [kind, arg, next, next2]; kinds:
_CHAR, _SPLIT, _BEGIN, _END, _MATCH = range(5)


class _Builder:
    def __init__(self) -> None:
        self.states: list[list[object]] = []

    def new(self, kind: int, arg: object = None) -> int:
        self.states.append([kind, arg, -1, -1])
        return len(self.states) - 1


def _charset(items: list[tuple[object, object]]) -> frozenset[int]:
    """The bytes an ``IN`` node accepts, case-folded to lowercase."""
    chars: set[int] = set()
    negate = False
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            chars.add(av)  # type: ignore[arg-type]
        elif op is _c.RANGE:
            lo: int
            hi: int
            lo, hi = av  # type: ignore[misc]
            chars.update(range(lo, min(hi, 255) + 1))
        elif op is _c.CATEGORY:
            chars |= _category(av)
        else:
            raise Unsupported("regex-class")
    chars = {c for c in chars if c < 256}
    if negate:
        chars = set(range(256)) - chars
    return _fold(chars)


def _category(cat: object) -> set[int]:
    digits = set(range(48, 58))
    word = digits | set(range(65, 91)) | set(range(97, 123)) | {95}
    space = {9, 10, 11, 12, 13, 32}
    table = {
        _c.CATEGORY_DIGIT: digits,
        _c.CATEGORY_NOT_DIGIT: set(range(256)) - digits,
        _c.CATEGORY_WORD: word,
        _c.CATEGORY_NOT_WORD: set(range(256)) - word,
        _c.CATEGORY_SPACE: space,
        _c.CATEGORY_NOT_SPACE: set(range(256)) - space,
    }
    if cat not in table:
        raise Unsupported("regex-class")
    return table[cat]


def _fold(chars: set[int]) -> frozenset[int]:
    """Names are matched lowercase: an uppercase letter in a pattern stands for its lowercase."""
    return frozenset(c + 32 if 65 <= c <= 90 else c for c in chars)


_ANY = frozenset(range(256)) - {10}


def _compile(builder: _Builder, seq: Iterable[tuple[object, object]], out: int) -> int:
    """States for ``seq`` ending at ``out``; returns the entry state (built back to front)."""
    items = list(seq)
    nxt = out
    for op, av in reversed(items):
        nxt = _node(builder, op, av, nxt)
        if len(builder.states) > MAX_STATES:
            raise Unsupported("regex-too-large")
    return nxt


def _node(builder: _Builder, op: object, av: object, out: int) -> int:
    if op is _c.LITERAL:
        return _char(builder, _fold({av}), out)  # type: ignore[arg-type]
    if op is _c.NOT_LITERAL:
        return _char(builder, _fold(set(range(256)) - {av}), out)
    if op is _c.ANY:
        return _char(builder, _ANY, out)
    if op is _c.IN:
        return _char(builder, _charset(av), out)  # type: ignore[arg-type]
    if op is _c.SUBPATTERN:
        return _compile(builder, av[-1], out)  # type: ignore[index]
    if getattr(_c, "ATOMIC_GROUP", None) is op:
        return _compile(builder, av, out)  # type: ignore[arg-type]
    if op is _c.BRANCH:
        entries = [_compile(builder, branch, out) for branch in av[1]]  # type: ignore[index]
        entry = entries[-1]
        for other in reversed(entries[:-1]):
            split = builder.new(_SPLIT)
            builder.states[split][2] = other
            builder.states[split][3] = entry
            entry = split
        return entry
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)):
        low: int
        high: Any
        body: Any
        low, high, body = av  # type: ignore[misc]
        if high is _c.MAXREPEAT or high > _MAX_NAME:
            high = None
        low = min(low, _MAX_NAME + 1)
        entry = out
        if high is None:  # body* then low copies in front
            split = builder.new(_SPLIT)
            loop = _compile(builder, body, split)
            builder.states[split][2] = loop
            builder.states[split][3] = out
            entry = split
        else:
            for _ in range(high - low):  # optional copies: (body (body ...)?)?
                split = builder.new(_SPLIT)
                builder.states[split][2] = _compile(builder, body, entry)
                builder.states[split][3] = out
                entry = split
                if len(builder.states) > MAX_STATES:
                    raise Unsupported("regex-too-large")
        for _ in range(low):
            entry = _compile(builder, body, entry)
        return entry
    if op is _c.AT:
        if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
            state = builder.new(_BEGIN)
        elif av in (_c.AT_END, _c.AT_END_STRING):
            state = builder.new(_END)
        else:
            raise Unsupported("regex-boundary")
        builder.states[state][2] = out
        return state
    if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
        raise Unsupported("regex-backreference")
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        raise Unsupported("regex-lookaround")
    raise Unsupported("regex-syntax")


def _first_match(states: list[list[object]], members: Iterable[int]) -> int:
    """The lowest rule index among the MATCH states of ``members`` (-1: none)."""
    found = [states[s][1] for s in members if states[s][0] == _MATCH]
    return min(found) if found else -1  # type: ignore[type-var,return-value]


def _char(builder: _Builder, chars: frozenset[int], out: int) -> int:
    state = builder.new(_CHAR, chars)
    builder.states[state][2] = out
    return state


def parse_regex(text: str) -> list[tuple[object, object]]:
    """``re``'s parse of ``text`` (POSIX classes rewritten); Unsupported when it cannot be
    read or run here."""
    text = _POSIX_RE.sub(lambda m: _POSIX.get(m.group(1), m.group(0)), text)
    try:
        return list(_p.parse(text, 0))
    except (re.error, OverflowError, RecursionError, ValueError):
        raise Unsupported("regex-syntax") from None


def adblock_regex(pattern: str) -> str:
    """An adblock hostname pattern as a regex: ``||`` the name or a label start, ``|`` an
    anchor, ``*`` anything, ``^`` a separator (in a hostname: its end)."""
    out = []
    if pattern.startswith("||"):
        out.append(r"(?:^|\.)")
        pattern = pattern[2:]
    elif pattern.startswith("|"):
        out.append("^")
        pattern = pattern[1:]
    end = ""
    if pattern.endswith("|"):
        end = "$"
        pattern = pattern[:-1]
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "^":
            out.append("$")
        else:
            out.append(re.escape(ch))
    out.append(end)
    return "".join(out)


class Patterns:
    """Every pattern rule of one list (or one kind of rule of it) as one automaton."""

    __slots__ = ("rules", "_states", "_start", "_starts", "_dfa", "_ids", "_info", "_restart")

    def __init__(self) -> None:
        self.rules: list[str] = []  # the rule text of each pattern, by index (explain, metrics)
        self._states: list[list[object]] = []
        self._start: list[int] = []  # each rule's entry state
        self._dfa: dict[tuple[int, int], int] = {}
        self._ids: dict[frozenset[int], int] = {}
        self._info: list[tuple[frozenset[int], int, int]] = []  # (set, match, end_match)
        self._starts: tuple[int, int] = (-1, -1)
        self._restart: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, rule: str, parsed: list[tuple[object, object]]) -> None:
        """Add a parsed pattern (``parse_regex``); Unsupported when too large."""
        builder = _Builder()
        builder.states = self._states
        mark = len(self._states)
        try:
            match = builder.new(_MATCH, len(self.rules))
            entry = _compile(builder, parsed, match)
            if len(self._states) - mark > MAX_STATES:
                raise Unsupported("regex-too-large")
        except Unsupported:
            del self._states[mark:]
            raise
        except RecursionError:
            del self._states[mark:]
            raise Unsupported("regex-too-large") from None
        self._start.append(entry)
        self.rules.append(rule)
        self._starts = (-1, -1)  # the DFA is rebuilt at the next match

    def _reset(self) -> None:
        self._dfa.clear()
        self._ids.clear()
        self._info.clear()
        self._restart = self._closure(self._start, begin=False)
        first = self._intern(self._closure(self._start, begin=True))
        self._starts = (first, -1)

    def _closure(self, seeds: Iterable[int], begin: bool, end: bool = False) -> frozenset[int]:
        """States reachable without reading a character (``^`` passes only at the start;
        ``$`` only at the end of the name: ``end`` is the final check)."""
        states = self._states
        seen: set[int] = set()
        stack = list(seeds)
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            kind = states[s][0]
            if kind == _SPLIT:
                stack.append(states[s][2])  # type: ignore[arg-type]
                stack.append(states[s][3])  # type: ignore[arg-type]
            elif (kind == _BEGIN and begin) or (kind == _END and end):
                stack.append(states[s][2])  # type: ignore[arg-type]
        return frozenset(seen)

    def _intern(self, members: frozenset[int]) -> int:
        known = self._ids.get(members)
        if known is not None:
            return known
        if len(self._info) >= MAX_DFA_STATES:  # start over: bounded memory, same answers
            self._dfa.clear()
            self._ids.clear()
            self._info.clear()
            self._starts = (-1, -1)
        states = self._states
        match = _first_match(states, members)
        end_match = (
            match if match >= 0 else _first_match(states, self._closure(members, False, True))
        )
        index = len(self._info)
        self._ids[members] = index
        self._info.append((members, match, end_match))
        return index

    def match(self, text: bytes) -> int:
        """The index of a rule matching ``text`` (a lowercase name, no trailing dot), -1 for
        none. Cost: one dict lookup per byte for transitions seen before."""
        if not self.rules:
            return -1
        current = self._starts[0]
        info = self._info
        dfa = self._dfa
        if current < 0 or current >= len(info):  # new rules, or the cache started over
            self._reset()
            current = self._starts[0]
        hit = info[current][1]
        if hit >= 0:
            return hit
        for byte in text:
            nxt = dfa.get((current, byte))
            if nxt is None:
                nxt = self._step(current, byte)
                if nxt < 0:  # the cache started over mid-name: walk it again from the top
                    return self._slow(text)
            current = nxt
            hit = info[current][1]
            if hit >= 0:
                return hit
        return info[current][2]

    def _step(self, current: int, byte: int) -> int:
        states = self._states
        members, _, _ = self._info[current]
        moved: list[Any] = [
            states[s][2]
            for s in members
            if states[s][0] == _CHAR and byte in states[s][1]  # type: ignore[operator]
        ]
        closed = self._closure(moved, begin=False) | self._restart
        before = len(self._info)
        nxt = self._intern(closed)
        if len(self._info) < before:  # the cache was cleared: ``current`` is gone
            return -1
        self._dfa[(current, byte)] = nxt
        return nxt

    def _slow(self, text: bytes) -> int:
        """The same walk on NFA state sets, without the cache (after it started over)."""
        states = self._states
        current = self._closure(self._start, begin=True)
        for byte in text:
            found = _first_match(states, current)
            if found >= 0:
                return found
            moved: list[Any] = [
                states[s][2]
                for s in current
                if states[s][0] == _CHAR and byte in states[s][1]  # type: ignore[operator]
            ]
            current = self._closure(moved, begin=False) | self._restart
        return _first_match(states, self._closure(current, False, True))

    def memory(self) -> int:
        """A rough size of the automaton (NFA states; the DFA cache is bounded)."""
        return 120 * len(self._states)
