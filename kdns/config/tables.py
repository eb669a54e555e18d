"""Kinds whose value is a TOML table (or its one-line text form): forward zones with their own
settings, ACL rules, [[zones]], [[rewrite]] / [[template]] rules; and the helpers that check a
table's keys and fields."""

from __future__ import annotations

import re
from typing import Any

from kdns.config.kinds import (
    _Bool,
    _Choice,
    _Int,
    _Kind,
    _List,
    _Name,
    _Path,
    _Seconds,
    _Zone,
)
from kdns.values import (
    LOCAL_ZONE_TTL,
    ForwardZone,
    LocalZoneSource,
    _Invalid,
    _normalise_upstream,
    _normalise_zone,
    _show,
)

# A forward zone's own settings (CoreDNS: each server block's forward and cache options), the
# kind each is checked with; aliases name the same key.
_ZONE_OPTIONS: dict[str, _Kind] = {
    "policy": _Choice("random", "round_robin", "sequential"),
    "tls_servername": _Name(),
    "tls_ca_file": _Path(),
    "force_tcp": _Bool(),
    "prefer_udp": _Bool(),
    "max_concurrent": _Int(1, 1_000_000),
    "max_fails": _Int(0, 100),
    "health_check": _Seconds(zero_ok=False),
    "success_ttl": _Int(1, 604800),
    "denial_ttl": _Int(1, 604800),
}
_ZONE_ALIASES = {"cache_success_ttl": "success_ttl", "cache_denial_ttl": "denial_ttl"}


class _ForwardZone(_Kind):
    """A split-horizon rule: ``ZONE=UPSTREAM[+UPSTREAM...][;KEY=VALUE...]`` (flags, env, TOML
    strings; KEY one of ``_ZONE_OPTIONS``) or a TOML table ``{name = "lan.example.com", upstreams = ["192.168.1.1"]}`` with, optionally,
    the zone's own settings (``_ZONE_OPTIONS``)."""

    expected = "ZONE=UPSTREAM[+UPSTREAM...][;KEY=VALUE...] or {name, upstreams, policy, tls_servername, tls_ca_file, force_tcp, prefer_udp, max_concurrent, max_fails, health_check, success_ttl, denial_ttl}"  # fmt: skip

    def check(self, value: object) -> tuple[str, tuple[str, ...]]:
        options: list[tuple[str, object]] = []
        if isinstance(value, ForwardZone):
            return value
        if isinstance(value, dict):
            if "name" not in value or "upstreams" not in value:
                self.fail(value)
            for key, item in value.items():
                if key in ("name", "upstreams"):
                    continue
                canonical = _ZONE_ALIASES.get(str(key), str(key))
                kind = _ZONE_OPTIONS.get(canonical)
                if kind is None:
                    raise _Invalid(f"unknown key (expected name, upstreams, {', '.join(_ZONE_OPTIONS)})", f".{key}")  # fmt: skip
                if any(k == canonical for k, _ in options):
                    raise _Invalid(f"given twice (also as {canonical})", f".{key}")
                options.append((canonical, _field(kind, item, key)))
            if dict(options).get("force_tcp") and dict(options).get("prefer_udp"):
                raise _Invalid("force_tcp and prefer_udp exclude each other", ".prefer_udp")
            zone, ups = value["name"], value["upstreams"]
            ups = [ups] if isinstance(ups, str) else ups
        elif isinstance(value, str) and "=" in value:
            # Flags and env: ZONE=UPSTREAM[+UPSTREAM...][;KEY=VALUE...], the table's settings
            # after semicolons (--forward-zone 'corp.example=10.0.0.1;policy=sequential').
            rule, *settings = value.split(";")
            zone, _, rest = rule.partition("=")
            ups = [u for u in rest.split("+") if u.strip()]
            table: dict[str, object] = {"name": zone, "upstreams": ups}
            for setting in filter(str.strip, settings):
                key, equals, text = (part.strip() for part in setting.partition("="))
                kind = _ZONE_OPTIONS.get(_ZONE_ALIASES.get(key, key))
                if kind is None or not equals:
                    raise _Invalid(f"expected KEY=VALUE with KEY one of {', '.join(_ZONE_OPTIONS)}, got {setting.strip()!r}")  # fmt: skip
                if key in table:
                    raise _Invalid(f"{key} given twice")
                table[key] = kind.from_text(text)
            if settings and ups:
                return self.check(table)
        else:
            self.fail(value)
        if not isinstance(zone, str) or not isinstance(ups, list) or not ups:
            self.fail(value)
        name = "." if zone.strip() == "." else _normalise_zone(zone)
        return ForwardZone(name, tuple(_normalise_upstream(str(u)) for u in ups), tuple(options))

    def render(self, value: tuple[str, tuple[str, ...]]) -> object:
        options = getattr(value, "options", ())
        if options:
            return {"name": value[0], "upstreams": list(value[1]), **dict(options)}
        return f"{value[0]}=" + "+".join(value[1])


class _AclRules(_Kind):
    """CoreDNS acl: ``[{action = "block", net = ["10.0.0.0/8"], type = ["AXFR"], zone = []}]``."""

    expected = "a list of rules {action, net, type, zone}"

    def check(self, value: object) -> tuple[Any, ...]:
        from kdns.policy.acl import RuleError, parse_rules  # late: kdns.dns needs no config

        if not isinstance(value, list):
            self.fail(value)
        try:
            parse_rules(value)
        except RuleError as exc:
            # Name the rule and field in the key: config: acl.rules[1].net: ...
            suffix = f"[{exc.index}]" + (f".{exc.field}" if exc.field else "")
            raise _Invalid(exc.problem, key_suffix=suffix) from None
        return tuple(dict(rule) for rule in value)

    def render(self, value: tuple[Any, ...]) -> list[object]:
        return list(value)


class _Tables(_List):
    """A TOML array of tables (``[[zones]]``), each checked by ``item``; an error names the
    entry and its key, counted from 0 as ``acl.rules`` does: ``zones[1].records[3]``."""

    def check(self, value: object) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str | dict) else value
        if not isinstance(items, list | tuple):
            self.fail(value)
        out = []
        for index, item in enumerate(items):
            try:
                out.append(self.item.check(item))
            except _Invalid as exc:
                raise _Invalid(str(exc), f"[{index}]{exc.key_suffix}") from None
        seen: set[str] = set()
        for index, entry in enumerate(out):
            if entry.name in seen:
                raise _Invalid(f"{entry.name} given twice", f"[{index}].name")
            seen.add(entry.name)
        return tuple(out)


def _table(value: object, kind: _Kind, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """The keys of one table of an array of tables, unknown and missing ones reported."""
    if not isinstance(value, dict):
        kind.fail(value)
    for key in value:
        if key not in required and key not in optional:
            raise _Invalid(f"unknown key (expected {', '.join(required + optional)})", f".{key}")
    for key in required:
        if key not in value:
            raise _Invalid("missing", f".{key}")
    return value


def _field(kind: _Kind, value: object, key: str) -> Any:
    """``kind.check(value)`` with ``.key`` added to the error's key."""
    try:
        return kind.check(value)
    except _Invalid as exc:
        raise _Invalid(str(exc), f".{key}{exc.key_suffix}") from None


_ENTRY_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})?")


class _EntryName(_Kind):
    expected = "a name of letters, digits, '-', '_' and '.'"

    def check(self, value: object) -> str:
        if not isinstance(value, str) or not _ENTRY_NAME.fullmatch(value):
            self.fail(value)
        return value


class _LocalZone(_Kind):
    """``ZONE=PATH`` (flags, env) or a table ``{name, file}`` / ``{name, records}`` (+ ``ttl``)."""

    expected = "ZONE=PATH or a table {name, file or records, ttl, fallthrough, format}"

    def __init__(self, file_format: str = "zone") -> None:
        self.file_format = file_format  # of ZONE=PATH (--zone-file: zone, --hosts-file: hosts)

    def check(self, value: object) -> LocalZoneSource:
        if isinstance(value, LocalZoneSource):
            return value
        if isinstance(value, str):
            zone, eq, path = value.partition("=")
            if not eq or not path.strip():
                self.fail(value)
            return LocalZoneSource(
                _normalise_zone(zone), path.strip(), (), LOCAL_ZONE_TTL, False, self.file_format
            )
        optional = ("file", "records", "ttl", "fallthrough", "format")
        table = _table(value, self, ("name",), optional)
        name = _field(_Zone(), table["name"], "name")
        ttl = _field(_Int(0, 2_147_483_647), table.get("ttl", LOCAL_ZONE_TTL), "ttl")
        fallthrough = _field(_Bool(), table.get("fallthrough", False), "fallthrough")
        file_format = _field(_Choice("zone", "hosts"), table.get("format", "zone"), "format")
        if ("file" in table) == ("records" in table):
            raise _Invalid("expected either file (a zone file) or records (a list), not both or neither")  # fmt: skip
        if "file" in table:
            path = _field(_Path(), table["file"], "file")
            return LocalZoneSource(name, path, (), ttl, fallthrough, file_format)
        if file_format != "zone":
            raise _Invalid('format = "hosts" reads a file: give file, not records', ".format")
        records = table["records"]
        if not isinstance(records, list):
            raise _Invalid(f"expected a list of records like \"www 300 A 192.168.1.10\", got {_show(records)}", ".records")  # fmt: skip
        from kdns.authority.localzones import LocalZoneError, from_records  # late: dnspython

        try:
            from_records(name, records, ttl)
        except LocalZoneError as exc:
            where = ".records" if exc.index is None else f".records[{exc.index}]"
            raise _Invalid(exc.problem, where) from None
        return LocalZoneSource(name, None, tuple(records), ttl, fallthrough)

    def render(self, value: LocalZoneSource) -> dict[str, object]:
        out: dict[str, object] = {"name": value.name}
        if value.file is not None:
            out["file"] = value.file
        else:
            out["records"] = list(value.records)
        out["ttl"] = value.ttl
        if value.fallthrough:
            out["fallthrough"] = True
        if value.format != "zone":
            out["format"] = value.format
        return out


class _Rules(_Kind):
    """``[[rewrite]]`` / ``[[template]]``: an array of tables, in order (no names), each checked
    by its stage's own reader (kdns.rules.rewrite, kdns.rules.template: imported when used)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.expected = f"an array of [[{stage}]] tables"

    def check(self, value: object) -> tuple[Any, ...]:
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, list | tuple):
            self.fail(value)
        if self.stage == "rewrite":
            from kdns.rules.rewrite import RewriteRule, RuleError, rule_from_table

            read: Any = rule_from_table
            made: Any = RewriteRule
            errors: Any = RuleError
        else:
            from kdns.rules.template import TemplateError, TemplateSource, template_from_table

            read, made, errors = template_from_table, TemplateSource, TemplateError
        out = []
        for index, item in enumerate(items):
            if isinstance(item, made):
                out.append(item)
                continue
            try:
                out.append(read(item))
            except errors as exc:
                raise _Invalid(exc.problem, f"[{index}]{exc.key}") from None
        return tuple(out)

    def render(self, value: tuple[Any, ...]) -> list[object]:
        return [item.table() for item in value]
