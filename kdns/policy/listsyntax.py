"""The syntax of block lists and allowlists: each line read into rules (kdns.policy.blocklist
indexes them).

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

from collections.abc import Iterable

from kdns.dns import patterns as pattern_rules

FORMATS = ("auto", "hosts", "domains", "adblock")
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
