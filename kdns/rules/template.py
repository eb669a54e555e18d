"""Template (CoreDNS's ``template`` plugin): answers made from a pattern, or an rcode.

Each ``[[template]]`` entry has a class and a type (``ANY`` matches every one; a question of
type or class ANY matches every template), zones (default ``.``), regexes matched against the
lowercased question name with its trailing dot (default ``.*``; the first that matches wins),
resource records to answer (``answer``, ``authority``, ``additional``: zone-file lines built
from a Go-template subset) and an ``rcode`` (default NOERROR). As the plugin's README says: a
question in a template's zone whose regexes all miss answers SERVFAIL, unless the template has
``fallthrough`` (every zone, or only the zones it lists), when the next template is tried and
then the rest of the query path.

The Go-template subset: ``{{ .Name }}``, ``{{ .Zone }}``, ``{{ .Class }}``, ``{{ .Type }}``,
``{{ .Remote }}`` (the client's address), ``{{ index .Match N }}``, ``{{ .Group.NAME }}``,
``{{ index .Group "N" }}`` and ``{{ parseInt X BASE BITS }}`` of any of those. Anything else is
refused when the config is read, not when a query comes.

Where it sits (``kdns.server.wire.Responder``): after local data and autopath, before forward.
It is asked for a question local data would forward, refuse (outside our zones) or answer
NXDOMAIN; a name of ours that exists keeps its records (CoreDNS, where ``template`` runs before
``kubernetes``, would let a template shadow it). Answers are remembered per question (unless a
template reads ``.Remote``), so a templated name costs a dict lookup after its first query;
killer mode keeps them (they change only with the config, and a reload drops them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kdns.dns import names
from kdns.dns.answer import Answer, empty
from kdns.dns.records import QNAME_POINTER, SERVFAIL

_MEMO_MAX = 65536
_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')
_FIELDS = ("Name", "Zone", "Class", "Type", "Remote")
RCODES = {"NOERROR": 0, "SUCCESS": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3,
          "NOTIMP": 4, "NOTIMPL": 4, "REFUSED": 5}  # fmt: skip
CLASSES = {"IN": 1, "CH": 3, "CHAOS": 3, "HS": 4, "ANY": 255}
_SERVFAIL = empty(SERVFAIL, False)


class TemplateError(ValueError):
    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.key = key


class TemplateSource(NamedTuple):
    """One ``[[template]]`` entry (CoreDNS: ``template CLASS TYPE [ZONE...] { ... }``)."""

    qclass: str = "IN"
    qtype: str = "ANY"
    zones: tuple[str, ...] = (".",)
    match: tuple[str, ...] = (".*",)
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    rcode: str = "NOERROR"
    fallthrough: bool = False
    fallthrough_zones: tuple[str, ...] = ()  # fallthrough for these zones only (empty: all)

    def table(self) -> dict[str, object]:
        out: dict[str, object] = {"class": self.qclass, "type": self.qtype, "zones": list(self.zones)}  # fmt: skip
        out["match"] = list(self.match)
        for key in ("answer", "authority", "additional"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        out["rcode"] = self.rcode
        if self.fallthrough:
            out["fallthrough"] = list(self.fallthrough_zones) or True
        return out


def _strings(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TemplateError(f"expected a list of strings, got {value!r}", f".{key}")
    return tuple(value)


def _zone(text: str, key: str) -> str:
    text = text.strip().lower().rstrip(".")
    if not text:
        return "."
    try:
        names.to_wire(text)
    except (names.BadName, UnicodeError) as exc:
        raise TemplateError(str(exc), key) from None
    return text


def template_from_table(value: object) -> TemplateSource:
    """A ``[[template]]`` table, checked (regexes, record templates); raises ``TemplateError``."""
    if not isinstance(value, Mapping):
        raise TemplateError(f"expected a table {{class, type, zones, match, answer, rcode, fallthrough}}, got {value!r}")  # fmt: skip
    known = ("class", "type", "zones", "match", "answer", "authority", "additional", "rcode", "fallthrough")  # fmt: skip
    for key in value:
        if key not in known:
            raise TemplateError(f"unknown key (expected {', '.join(known)})", f".{key}")
    qclass = value.get("class", "IN")
    if not isinstance(qclass, str) or qclass.upper() not in CLASSES:
        raise TemplateError(f"expected one of {', '.join(CLASSES)}, got {qclass!r}", ".class")
    qtype = value.get("type", "ANY")
    if not isinstance(qtype, str):
        raise TemplateError(f"expected a record type, got {qtype!r}", ".type")
    _type_number(qtype)
    zones = tuple(_zone(z, ".zones") for z in _strings(value.get("zones", ["."]), "zones"))
    rcode = value.get("rcode", "NOERROR")
    if not isinstance(rcode, str) or rcode.upper() not in RCODES:
        raise TemplateError(f"expected one of {', '.join(RCODES)}, got {rcode!r}", ".rcode")
    fall = value.get("fallthrough", False)
    fall_zones: tuple[str, ...] = ()
    if isinstance(fall, list):
        fall_zones = tuple(_zone(z, ".fallthrough") for z in _strings(fall, "fallthrough"))
        fall = True
    elif not isinstance(fall, bool):
        raise TemplateError(f"expected true, false or a list of zones, got {fall!r}", ".fallthrough")  # fmt: skip
    source = TemplateSource(
        qclass.upper(),
        qtype.upper(),
        zones,
        _strings(value.get("match", [".*"]), "match"),
        _strings(value.get("answer", []), "answer"),
        _strings(value.get("authority", []), "authority"),
        _strings(value.get("additional", []), "additional"),
        rcode.upper(),
        fall,
        fall_zones,
    )
    _Compiled(source)  # raises TemplateError for what cannot be compiled
    return source


def _type_number(text: str) -> int:
    import dns.rdatatype

    try:
        return int(dns.rdatatype.from_text(text.upper()))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise TemplateError(f"unknown record type {text!r}", ".type") from None


class _Data:
    """What a template is rendered from (CoreDNS's templateData)."""

    __slots__ = ("Name", "Zone", "Class", "Type", "Remote", "Match", "Group")

    def __init__(self, name: str, zone: str, qclass: str, qtype: str, remote: str, found: re.Match[str]) -> None:  # fmt: skip
        self.Name = name
        self.Zone = zone
        self.Class = qclass
        self.Type = qtype
        self.Remote = remote
        self.Match = [found[0], *(g or "" for g in found.groups())]
        self.Group = {str(i): m for i, m in enumerate(self.Match)}
        self.Group.update({k: v or "" for k, v in found.groupdict().items()})


Piece = Callable[[_Data], str]


def _compile_text(text: str, key: str) -> tuple[list[Piece], bool]:
    """A Go-template string -> its pieces, and whether it reads ``.Remote``."""
    pieces: list[Piece] = []
    remote = False
    pos = 0
    literals: list[str] = []
    for found in _ACTION.finditer(text):
        literal = text[pos : found.start()]
        if found[1]:
            literal = literal.rstrip()
        literals.append(literal)
        pieces.append(_const(literal))
        value_piece, reads = _expression(found[2], key)
        remote = remote or reads
        pieces.append(value_piece)
        pos = found.end()
        if found[3]:
            while pos < len(text) and text[pos].isspace():
                pos += 1
    pieces.append(_const(text[pos:]))
    if "{{" in "".join(literals) + text[pos:]:
        raise TemplateError(f"unclosed {{{{ in {text!r}", key)
    return pieces, remote


def _const(text: str) -> Piece:
    return lambda data: text


def _expression(action: str, key: str) -> tuple[Piece, bool]:
    tokens = _TOKEN.findall(action)
    if not tokens:
        raise TemplateError("empty {{ }}", key)
    if tokens[0] == "parseInt":
        if len(tokens) != 4 or not tokens[2].isdigit() or not tokens[3].isdigit():
            raise TemplateError(f"expected parseInt VALUE BASE BITS, got {{{{ {action} }}}}", key)
        inner, reads = _value(tokens[1:2], action, key)
        base, bits = int(tokens[2]), int(tokens[3])

        def parse(data: _Data) -> str:
            number = int(inner(data), base)
            if number >= 1 << bits:
                raise ValueError(f"{number} does not fit {bits} bits")
            return str(number)

        return parse, reads
    return _value(tokens, action, key)


def _value(tokens: list[str], action: str, key: str) -> tuple[Piece, bool]:
    unsupported = TemplateError(
        f"{{{{ {action} }}}} is not supported (kdns renders .Name, .Zone, .Class, .Type, "
        '.Remote, index .Match N, .Group.NAME, index .Group "NAME", parseInt)',
        key,
    )
    if len(tokens) == 1:
        token = tokens[0]
        if token.startswith(".") and token[1:] in _FIELDS:
            field = token[1:]
            return (lambda data: str(getattr(data, field))), field == "Remote"
        if token.startswith(".Group.") and len(token) > 7:
            group = token[7:]
            return (lambda data: data.Group.get(group, "<no value>")), False
        raise unsupported
    if len(tokens) == 3 and tokens[0] == "index" and tokens[1] in (".Match", ".Group"):
        arg = tokens[2]
        if tokens[1] == ".Match" and arg.isdigit():
            n = int(arg)
            return (lambda data: data.Match[n] if n < len(data.Match) else ""), False
        if tokens[1] == ".Group" and len(arg) >= 2 and arg[0] == arg[-1] == '"':
            group = arg[1:-1]
            return (lambda data: data.Group.get(group, "<no value>")), False
    raise unsupported


class _Record:
    """A record template: rendered per question, parsed as a zone-file line."""

    __slots__ = ("pieces", "text")

    def __init__(self, text: str, key: str) -> None:
        self.text = text
        self.pieces, _ = _compile_text(text, key)

    def render(self, data: _Data) -> str:
        return "".join(piece(data) for piece in self.pieces)


def _record_wire(line: str, qname_text: str) -> bytes:
    """A zone-file line (``NAME [TTL] [CLASS] TYPE RDATA``, as miekg/dns NewRR reads it) as
    wire bytes; an owner equal to the question is a pointer to it."""
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    fields = line.split()
    if len(fields) < 3:
        raise ValueError(f"not a record: {line!r}")
    owner = fields[0]
    rest = fields[1:]
    ttl = 3600
    rdclass = dns.rdataclass.IN
    for _ in range(2):
        if rest and rest[0].isdigit():
            ttl = int(rest.pop(0))
        elif rest and rest[0].upper() in ("IN", "CH", "HS", "CHAOS", "ANY"):
            rdclass = dns.rdataclass.from_text(rest.pop(0).upper())
    if not rest:
        raise ValueError(f"no type in {line!r}")
    rdtype = dns.rdatatype.from_text(rest[0].upper())
    text = line.split(None, len(fields) - len(rest) + 1)[-1] if len(rest) > 1 else ""
    rdata = dns.rdata.from_text(rdclass, rdtype, text, origin=dns.name.root)
    body = rdata.to_wire(origin=dns.name.root) or b""
    owner_text = owner.lower() if owner.endswith(".") else owner.lower() + "."
    head = QNAME_POINTER if owner_text == qname_text else names.to_wire(owner)
    return head + int(rdtype).to_bytes(2, "big") + int(rdclass).to_bytes(2, "big") + ttl.to_bytes(4, "big") + len(body).to_bytes(2, "big") + body  # fmt: skip


class _Compiled:
    __slots__ = ("source", "qclass", "qtype", "zones", "regexes", "sections", "rcode", "fall", "fall_zones", "remote")  # fmt: skip

    def __init__(self, source: TemplateSource) -> None:
        self.source = source
        self.qclass = CLASSES[source.qclass]
        self.qtype = _type_number(source.qtype)
        self.zones = [names.to_wire(z) if z != "." else names.ROOT for z in source.zones]
        self.regexes = []
        for pattern in source.match:
            try:
                self.regexes.append(re.compile(pattern))
            except re.error as exc:
                raise TemplateError(f"bad regular expression {pattern!r}: {exc}", ".match") from None  # fmt: skip
        self.remote = False
        sections = []
        for key in ("answer", "authority", "additional"):
            records = [_Record(text, f".{key}") for text in getattr(source, key)]
            self.remote = self.remote or any("Remote" in r.text for r in records)
            sections.append(records)
        self.sections = sections
        self.rcode = RCODES[source.rcode]
        self.fall = source.fallthrough
        self.fall_zones = [names.to_wire(z) if z != "." else names.ROOT for z in source.fallthrough_zones]  # fmt: skip

    def zone_of(self, name: bytes, zones: list[bytes]) -> bytes | None:
        best = None
        for zone in zones:
            if (zone == names.ROOT or names.is_subdomain(name, zone)) and (best is None or len(zone) > len(best)):  # fmt: skip
                best = zone
        return best


class Templates:
    """The stage: every ``[[template]]`` entry in order, and the answers made so far."""

    def __init__(self, sources: tuple[TemplateSource, ...] | list[TemplateSource]) -> None:
        self.templates = [_Compiled(s) for s in sources]
        self.zones = [z for t in self.templates for z in t.zones]
        self.remote = any(t.remote for t in self.templates)  # replies depend on the client
        self._memo: dict[bytes, Answer | None] = {}
        self.matches = 0  # questions a template answered (metrics, tests)
        self.failures = 0  # records a template could not render or parse

    def lookup(self, name: bytes, qtype: int, qclass: int, key: bytes, peer: Any) -> Answer | None:
        """The templated answer for a question (``name`` lowercased wire), None when no
        template takes it (the path goes on)."""
        memo = self._memo
        answer = memo.get(key, _NOT_SEEN)
        if answer is not _NOT_SEEN:
            if answer is not None:
                self.matches += 1
            return answer
        answer = self._answer(name, qtype, qclass, peer)
        if not self.remote:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = answer
        return answer

    def _answer(self, name: bytes, qtype: int, qclass: int, peer: Any) -> Answer | None:
        first = self.templates[0] if self.templates else None
        if first is None or first.zone_of(name, self.zones) is None:
            return None
        text = names.to_text(name) if name != names.ROOT else "."
        for template in self.templates:
            zone = template.zone_of(name, template.zones)
            if zone is None:
                continue
            if template.qclass != 255 and qclass != 255 and qclass != template.qclass:
                continue
            if template.qtype != 255 and qtype != 255 and qtype != template.qtype:
                continue
            for regex in template.regexes:
                found = regex.search(text)
                if found is None:
                    continue
                self.matches += 1
                return self._render(template, text, zone, qtype, qclass, peer, found)
            if not template.fall or (
                template.fall_zones and template.zone_of(name, template.fall_zones) is None
            ):
                return _SERVFAIL
        return None

    def _render(self, template: _Compiled, text: str, zone: bytes, qtype: int, qclass: int, peer: Any, found: re.Match[str]) -> Answer:  # fmt: skip
        import dns.rdataclass
        import dns.rdatatype

        zone_text = names.to_text(zone) if zone != names.ROOT else "."
        data = _Data(text, zone_text, dns.rdataclass.to_text(dns.rdataclass.RdataClass.make(qclass)), dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype)), peer[0] if peer else "", found)  # fmt: skip
        sections = []
        for records in template.sections:
            rrsets = []
            for record in records:
                try:
                    rrsets.append((_record_wire(record.render(data), text), 1))
                except Exception:  # noqa: BLE001 - a bad record is CoreDNS's SERVFAIL
                    self.failures += 1
                    return _SERVFAIL
            sections.append(tuple(rrsets))
        label = zone_text.rstrip(".") or "."
        return Answer(template.rcode, True, (sections[0], sections[1], sections[2]), label)


_NOT_SEEN: Any = object()
