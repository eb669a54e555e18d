"""Rewrite (CoreDNS's ``rewrite`` plugin): the question changed before local data looks it up.

Rules (``[[rewrite]]``, in order) rewrite the question's name (``exact``, ``prefix``,
``suffix``, ``substring`` or ``regex`` with ``{1}`` groups), type or class. A rule that matches
ends the list unless it says ``continue`` (CoreDNS's default is ``stop``). The rewritten question
is answered by the normal path -- the cluster registry, local zones, autopath, template,
forward -- and the reply is turned back into one for the client's question: its own question
bytes (letter case included), and, when the rule asks (``answer auto``, ``answer name``,
``answer value``; always for ``exact``), the response's names mapped back:

- ``answer auto``: for ``exact`` and ``regex`` a name equal to the rewritten name becomes the
  name asked; for ``prefix``, ``suffix`` and ``substring`` the reverse replacement (TO -> FROM);
- ``answer name FROM TO``: a regex on every owner name, replaced by TO (``{1}``: its groups);
- ``answer value FROM TO``: the same on the names inside CNAME, DNAME, NS, PTR, MX, SRV, SOA
  (and AFSDB, RT, KX, MINFO, RP) data.

Where it sits (``kdns.server.wire.Responder``): after policy (ACL, views and block lists see the
name asked), before local data. The rewritten question goes through the query path once more
(its policy stage included: a rule cannot lead around an ACL or a block list), with rewriting
off for that pass. A question no rule matches is remembered as such (``passes``): a cluster name
costs one set lookup once it has been asked. A rewritten name that is no legal name answers
SERVFAIL, as CoreDNS's "returns an error to the client".

Replies are rebuilt from the walked records: names uncompressed except those equal to the
question (a pointer to it), cut to the client's UDP size (TC) when they no longer fit. Killer
mode may keep them (they follow from the config and the rewritten name's answer): the entry is
also filed under the rewritten name (``alias``), so a registry change to that name drops it.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kdns.dns import names
from kdns.dns.answer import empty
from kdns.dns.records import AXFR, IXFR, OPT, SERVFAIL
from kdns.server.meter import TCP4
from kdns.server.wire import (
    DEFERRED,
    MAX_TCP,
    MIN_UDP,
    NOT_REWRITTEN,
    Edns,
    Query,
    Replier,
    Responder,
)

FIELDS = ("name", "type", "class")
MATCHES = ("exact", "prefix", "suffix", "substring", "regex")
CLASSES = {"IN": 1, "CH": 3, "CHAOS": 3, "HS": 4, "ANY": 255}
PASS = NOT_REWRITTEN  # no rule matched: the caller answers as usual
_MEMO_MAX = 65536
_SERVFAIL = empty(SERVFAIL, False)
_RR = struct.Struct("!HHIH")
_GROUP = re.compile(r"\{(\d+)\}")
# Record types whose data holds names (RFC 1035 and RFC 3597 4): fixed bytes first, names.
_NAMES_IN_RDATA = {2: (0, 1), 5: (0, 1), 12: (0, 1), 39: (0, 1), 15: (2, 1), 18: (2, 1),
                   21: (2, 1), 36: (2, 1), 33: (6, 1), 6: (0, 2), 14: (0, 2), 17: (0, 2)}  # fmt: skip


class RuleError(ValueError):
    """A rule kdns cannot take; ``key`` names the field (``.from``)."""

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key


class RewriteRule(NamedTuple):
    """One ``[[rewrite]]`` entry (CoreDNS: ``rewrite [continue|stop] FIELD [MATCH] FROM TO``)."""

    field: str  # name | type | class
    match: str  # name rules: exact | prefix | suffix | substring | regex
    source: str  # FROM
    target: str  # TO
    answer_auto: bool = False
    answer_name: tuple[tuple[str, str], ...] = ()
    answer_value: tuple[tuple[str, str], ...] = ()
    stop: bool = True

    def table(self) -> dict[str, object]:
        """The TOML table (check-config prints it)."""
        out: dict[str, object] = {"field": self.field}
        if self.field == "name":
            out["match"] = self.match
        out["from"] = self.source
        out["to"] = self.target
        if self.answer_auto:
            out["answer"] = "auto"
        if self.answer_name:
            out["answer_name"] = [list(pair) for pair in self.answer_name]
        if self.answer_value:
            out["answer_value"] = [list(pair) for pair in self.answer_value]
        if not self.stop:
            out["continue"] = True
        return out


def rule_from_table(value: object) -> RewriteRule:
    """A ``[[rewrite]]`` table, checked; raises ``RuleError``."""
    if not isinstance(value, Mapping):
        raise RuleError(f"expected a table {{field, match, from, to, answer, continue}}, got {value!r}")  # fmt: skip
    known = ("field", "match", "from", "to", "answer", "answer_name", "answer_value", "continue")
    for key in value:
        if key not in known:
            raise RuleError(f"unknown key (expected {', '.join(known)})", f".{key}")
    for key in ("from", "to"):
        if not isinstance(value.get(key), str) or not value[key]:
            raise RuleError(f"expected a non-empty string, got {value.get(key)!r}", f".{key}")
    field = value.get("field", "name")
    if field not in FIELDS:
        raise RuleError(f"expected one of {', '.join(FIELDS)}, got {field!r}", ".field")
    match = value.get("match", "exact")
    if match not in MATCHES or (field != "name" and "match" in value):
        raise RuleError(f"expected one of {', '.join(MATCHES)} (name rules only), got {match!r}", ".match")  # fmt: skip
    stop = value.get("continue", False)
    if not isinstance(stop, bool):
        raise RuleError(f"expected true or false, got {stop!r}", ".continue")
    answer = value.get("answer")
    if answer not in (None, "auto"):
        raise RuleError(f'expected "auto", got {answer!r}', ".answer")
    pairs = {key: _pairs(value.get(key, []), key) for key in ("answer_name", "answer_value")}
    if field != "name" and (answer or pairs["answer_name"] or pairs["answer_value"]):
        raise RuleError("answer rewrites go with name rules only", ".answer")
    rule = RewriteRule(str(field), str(match), value["from"], value["to"], answer == "auto",
                       pairs["answer_name"], pairs["answer_value"], not stop)  # fmt: skip
    _Compiled(rule)  # raises RuleError for a bad regex, type or class
    return rule


def _pairs(value: object, key: str) -> tuple[tuple[str, str], ...]:
    """``["FROM", "TO"]`` or ``[["FROM", "TO"], ...]``."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) and v for v in p)
        for p in value
    ):
        raise RuleError(f'expected ["FROM", "TO"] or a list of them, got {value!r}', f".{key}")
    for pattern, _ in value:
        _regex(pattern, f".{key}")
    return tuple((p[0], p[1]) for p in value)


def _regex(pattern: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RuleError(f"bad regular expression {pattern!r}: {exc}", key) from None


def _fqdn(text: str) -> str:
    text = text.strip().lower()
    return text if text.endswith(".") else text + "."


def _groups(template: str, groups: tuple[str, ...]) -> str:
    """``{0}``, ``{1}``... replaced by the match's groups (CoreDNS's regex replacement)."""
    return _GROUP.sub(lambda m: groups[int(m[1])] if int(m[1]) < len(groups) else m[0], template)


def _regex_map(pattern: re.Pattern[str], target: str) -> Callable[[str], str | None]:
    def apply(name: str) -> str | None:
        found = pattern.search(name)
        if found is None:
            return None
        return _fqdn(_groups(target, (found[0], *(g or "" for g in found.groups()))))

    return apply


def _type_number(text: str) -> int:
    import dns.rdatatype

    try:
        return int(dns.rdatatype.from_text(text.upper()))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise RuleError(f"unknown record type {text!r}") from None


class _Compiled:
    """A rule made ready: its request rewrite and what it does to the response."""

    __slots__ = ("rule", "stop", "_name", "_from_num", "_to_num")

    def __init__(self, rule: RewriteRule) -> None:
        self.rule = rule
        self.stop = rule.stop
        self._name: Callable[[str], str | None] | None = None
        self._from_num = self._to_num = 0
        source, target = rule.source, rule.target
        if rule.field == "type":
            self._from_num, self._to_num = _type_number(source), _type_number(target)
        elif rule.field == "class":
            try:
                self._from_num, self._to_num = CLASSES[source.upper()], CLASSES[target.upper()]
            except KeyError:
                raise RuleError(f"expected a class ({', '.join(CLASSES)})", ".from") from None
        elif rule.match == "exact":
            exact_from, exact_to = _fqdn(source), _fqdn(target)
            self._name = lambda name: exact_to if name == exact_from else None
        elif rule.match == "prefix":
            prefix_from, prefix_to = source.lower(), target.lower()
            self._name = lambda name: (
                prefix_to + name[len(prefix_from) :] if name.startswith(prefix_from) else None
            )
        elif rule.match == "suffix":
            suffix_from, suffix_to = _fqdn(source), _fqdn(target)
            self._name = lambda name: (
                name[: len(name) - len(suffix_from)] + suffix_to
                if name.endswith(suffix_from)
                else None
            )
        elif rule.match == "substring":
            sub_from, sub_to = source.lower(), target.lower()
            self._name = lambda name: name.replace(sub_from, sub_to) if sub_from in name else None
        else:
            self._name = _regex_map(_regex(source, ".from"), target)

    def request(self, name: str, qtype: int, qclass: int) -> tuple[str, int, int] | None:
        """The rewritten (name, type, class), or None when the rule does not match."""
        if self._name is not None:
            new = self._name(name)
            return None if new is None else (new, qtype, qclass)
        if self.rule.field == "type":
            return (name, self._to_num, qclass) if qtype == self._from_num else None
        return (name, qtype, self._to_num) if qclass == self._from_num else None

    def response(self, before: str, after: str) -> tuple[list[Callable[[str], str | None]], list[Callable[[str], str | None]]]:  # fmt: skip
        """(owner name maps, record data name maps) undoing this rule's rewrite of ``before``
        into ``after`` in a response."""
        rule = self.rule
        owners: list[Callable[[str], str | None]] = []
        values: list[Callable[[str], str | None]] = []
        if rule.field != "name":
            return owners, values
        if rule.match == "exact" or (rule.answer_auto and rule.match == "regex"):
            owners.append(lambda name: before if name == after else None)
        elif rule.answer_auto:
            if rule.match == "prefix":
                a, b = rule.target.lower(), rule.source.lower()
                owners.append(lambda name: b + name[len(a) :] if name.startswith(a) else None)
            elif rule.match == "suffix":
                c, d = _fqdn(rule.target), _fqdn(rule.source)
                owners.append(lambda name: name[: len(name) - len(c)] + d if name.endswith(c) else None)  # fmt: skip
            else:
                e, f = rule.target.lower(), rule.source.lower()
                owners.append(lambda name: name.replace(e, f) if e in name else None)
        owners += [_regex_map(re.compile(p), t) for p, t in rule.answer_name]
        values += [_regex_map(re.compile(p), t) for p, t in rule.answer_value]
        return owners, values


class _Plan:
    """What the rules make of one question: the new question bytes and the response maps."""

    __slots__ = ("question", "name", "owners", "values")

    def __init__(self, question: bytes, name: bytes, owners: list[Callable[[str], str | None]], values: list[Callable[[str], str | None]]) -> None:  # fmt: skip
        self.question = question  # rewritten name + type + class, wire
        self.name = name  # rewritten name, lowercased wire
        self.owners = owners
        self.values = values


_UNSEEN: Any = object()
_FAIL: Any = object()  # the rules made a name that is no legal name: SERVFAIL


class Rewrite:
    """The stage, built from the config's rules (a reload builds a new one)."""

    def __init__(self, rules: tuple[RewriteRule, ...] | list[RewriteRule]) -> None:
        self.rules = tuple(_Compiled(rule) for rule in rules)
        self.passes: set[bytes] = set()  # question keys no rule matches (the hot path asks)
        self._plans: dict[bytes, Any] = {}
        self.rewritten = 0  # questions rewritten (metrics, tests)
        # (query bytes, rewritten name) of the last rewritten reply: killer mode files the
        # cached reply under the rewritten name as well (kdns.killer.front).
        self.alias: tuple[bytes, bytes] | None = None
        self._inside = False

    def plan(self, key: bytes) -> Any:
        """The plan for question ``key`` (lowercased name + type + class): a ``_Plan``, None
        (no rule matches) or ``_FAIL``."""
        plan = self._plans.get(key, _UNSEEN)
        if plan is _UNSEEN:
            plan = self._make(key)
            if len(self._plans) >= _MEMO_MAX:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _make(self, key: bytes) -> Any:
        wire = key[:-4]
        qtype, qclass = struct.unpack_from("!HH", key, len(key) - 4)
        if qtype in (AXFR, IXFR):
            return None  # zone transfers are not rewritten
        labels = names.split(wire)
        if any(b"." in label or not label.isascii() for label in labels):
            return None  # a name text cannot carry faithfully: left alone
        name = names.to_text(wire) if labels else "."
        start = (name, qtype, qclass)
        owners: list[Callable[[str], str | None]] = []
        values: list[Callable[[str], str | None]] = []
        for rule in self.rules:
            new = rule.request(name, qtype, qclass)
            if new is None:
                continue
            o, v = rule.response(name, new[0])
            owners[:0], values[:0] = o, v  # undone in the reverse order of the rewrites
            name, qtype, qclass = new
            if rule.stop:
                break
        if (name, qtype, qclass) == start:
            return None
        try:
            new_wire = names.to_wire(name)
        except (names.BadName, UnicodeError):
            return _FAIL
        return _Plan(new_wire + struct.pack("!HH", qtype, qclass), new_wire, owners, values)

    def respond(self, responder: Responder, data: bytes, key: bytes, qend: int, edns: Edns | None, channel: int, peer: Any, replier: Replier | None) -> Any:  # fmt: skip
        """The client's reply when a rule rewrites its question, else ``PASS``. Called by the
        hot path for a question key not in ``passes``."""
        if self._inside:
            return PASS  # the rewritten question's own pass through the path
        plan = self.plan(key)
        if plan is None:
            if len(self.passes) >= _MEMO_MAX:
                self.passes.clear()
            self.passes.add(key)
            return PASS
        tcp = channel >= TCP4
        if plan is _FAIL:
            return responder.reply(data, qend, edns, tcp, _SERVFAIL)
        self.rewritten += 1
        asked = data[12:qend]
        rewritten = data[:12] + plan.question + data[qend:]
        inner = None
        if replier is not None:
            client = Query(data, key[:-4], (data[qend - 4] << 8) | data[qend - 3], qend, edns, channel, responder)  # fmt: skip
            inner = _Reverting(replier, plan, client, responder)
        self._inside = True
        try:
            out = responder._respond(rewritten, channel, peer, inner)
        finally:
            self._inside = False
        responder.qtype = data[qend - 4 : qend - 2]  # the meter counts the type asked
        if out is None or out is DEFERRED:
            return out
        limit = _limit(responder, edns, tcp)
        if out.__class__ is not bytes:  # several messages (a transfer): none are rewritten
            return responder.reply(data, qend, edns, tcp, _SERVFAIL)
        reply = revert(out, asked, plan, limit)
        if reply is None:
            responder.keep = 0.0
            return responder.reply(data, qend, edns, tcp, _SERVFAIL)
        if responder.acl is not None:
            responder.keep = 0.0  # the ACL also judged the rewritten name, per client
        self.alias = (data, plan.name)
        return reply


def _limit(responder: Responder, edns: Edns | None, tcp: bool) -> int:
    if tcp:
        return MAX_TCP
    return MIN_UDP if edns is None else min(edns.size, responder.udp_size)


class _Reverting:
    """The replier of a rewritten question answered later (forwarded): the reply is turned
    back into one for the client's question before it is sent (and logged as the client's)."""

    __slots__ = ("replier", "plan", "client", "responder")

    def __init__(self, replier: Replier, plan: _Plan, client: Query, responder: Responder) -> None:
        self.replier = replier
        self.plan = plan
        self.client = client
        self.responder = responder

    def send_reply(self, response: bytes, peer: Any, query: Query | None = None) -> None:
        client = self.client
        reply = revert(response, client.data[12 : client.qend], self.plan, _limit(self.responder, client.edns, client.tcp))  # fmt: skip
        if reply is None:
            reply = client.error(SERVFAIL)
        self.replier.send_reply(reply, peer, client)


def _read_name(msg: bytes, pos: int) -> tuple[bytes, int]:
    """The (possibly compressed) name at ``pos``, uncompressed, and the offset past it."""
    out = bytearray()
    end = -1
    hops = 0
    while True:
        length = msg[pos]
        if length >= 0xC0:
            if end < 0:
                end = pos + 2
            hops += 1
            if hops > 64:
                raise ValueError("compression loop")
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            continue
        if length > 63:
            raise ValueError("bad label")
        out += msg[pos : pos + length + 1]
        if len(out) > 255:
            raise ValueError("name too long")
        pos += length + 1
        if length == 0:
            return bytes(out), (pos if end < 0 else end)


def _mapped(wire: bytes, maps: list[Callable[[str], str | None]]) -> bytes:
    """``wire`` through each map in turn (text, lowercased: the last rule's undoing first, so
    a ``continue`` chain is undone whole), else as it was."""
    if not maps:
        return wire
    text = names.to_text(wire.lower()) if wire != names.ROOT else "."
    changed = False
    for apply in maps:
        new = apply(text)
        if new is not None:
            text, changed = new, True
    if not changed:
        return wire
    try:
        return names.to_wire(text)
    except (names.BadName, UnicodeError):
        return wire


def revert(msg: bytes, asked: bytes, plan: _Plan, limit: int) -> bytes | None:
    """The reply ``msg`` to the rewritten question as a reply to ``asked`` (the client's
    question bytes): the question replaced, owner and data names mapped back as the rules say,
    cut to ``limit`` bytes keeping whole records (TC when an answer or authority record goes).
    None when ``msg`` does not parse."""
    try:
        if len(msg) < 12:
            return None
        qd, an, ns, ar = struct.unpack_from("!HHHH", msg, 4)
        if qd == 0:
            return msg  # a header-only reply (FORMERR): nothing to turn back
        pos = names.name_end(msg, 12) + 4
        records: list[tuple[int, bytes, int]] = []  # (section, bytes, type)
        for index in range(an + ns + ar):
            owner, pos = _read_name(msg, pos)
            rtype, rclass, ttl, rdlength = _RR.unpack_from(msg, pos)
            start = pos + 10
            end = start + rdlength
            if end > len(msg):
                return None
            rdata = msg[start:end]
            layout = _NAMES_IN_RDATA.get(rtype)
            if layout is not None:
                at = start + layout[0]
                parts = [msg[start:at]]
                for _ in range(layout[1]):
                    target, at = _read_name(msg, at)
                    parts.append(_mapped(target, plan.values))
                if at > end:
                    return None
                parts.append(msg[at:end])
                rdata = b"".join(parts)
            if rtype == OPT:
                head = b"\x00"
            else:
                mapped = _mapped(owner, plan.owners)
                head = b"\xc0\x0c" if mapped.lower() == asked[:-4].lower() else mapped
            section = 0 if index < an else 1 if index < an + ns else 2
            records.append((section, head + _RR.pack(rtype, rclass, ttl, len(rdata)) + rdata, rtype))  # fmt: skip
            pos = end
    except (ValueError, IndexError, struct.error):
        return None
    flags = msg[2:4]
    room = limit - 12 - len(asked)
    opt = b"".join(r for s, r, t in records if t == OPT)
    room -= len(opt)
    kept: list[tuple[int, bytes]] = []
    truncated = False
    used = 0
    for section, record, rtype in records:
        if rtype == OPT:
            continue
        if used + len(record) > room:
            if section < 2:
                truncated = True
                break
            continue  # additional records that do not fit are left out silently
        kept.append((section, record))
        used += len(record)
    counts = [0, 0, 0]
    for section, _ in kept:
        counts[section] += 1
    if opt:
        counts[2] += 1
    if truncated:
        flags = bytes((flags[0] | 0x02, flags[1]))
    return (msg[:2] + flags + struct.pack("!HHHH", 1, *counts) + asked
            + b"".join(r for _, r in kept) + opt)  # fmt: skip
