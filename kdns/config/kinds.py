"""Kinds: how one setting's value parses from text (env, flags), validates (TOML types) and
renders back to TOML. ``kdns.config.SETTINGS`` pairs each setting with one."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, NoReturn

from kdns.model import GATEWAY_RESOURCES  # plain data: gateway.resources' default
from kdns.values import (
    _LABEL,
    _UPSTREAM_HELP,
    LOCAL_ZONE_TTL,
    AllowlistSource,
    BlocklistSource,
    ForwardZone,
    HostPort,
    LocalZoneSource,
    Schedule,
    ViewSource,
    _Invalid,
    _normalise_name,
    _normalise_upstream,
    _normalise_zone,
    _show,
    format_hostport,
    parse_hostport,
)

# --- kinds: how one setting parses, validates and renders --------------------------------


class _Kind:
    expected = "a value"

    def from_text(self, text: str) -> object:
        """Env vars and flags are strings; make one into what a TOML file would hold."""
        return text

    def check(self, value: object) -> Any:
        """Validate and normalise a TOML-typed value; raise ``_Invalid``."""
        raise NotImplementedError

    def render(self, value: Any) -> object:
        """The TOML value for a ``Config`` value; ``None`` for "unset" (left out)."""
        return value

    def fail(self, value: object) -> NoReturn:
        raise _Invalid(f"expected {self.expected}, got {_show(value)}")


class _Bool(_Kind):
    expected = "true or false"
    _WORDS = {"1": True, "true": True, "yes": True, "on": True}
    _WORDS |= {"0": False, "false": False, "no": False, "off": False}

    def from_text(self, text: str) -> object:
        word = self._WORDS.get(text.strip().lower())
        if word is None:
            raise _Invalid(f"expected a boolean (1/0/true/false/yes/no/on/off), got {_show(text)}")
        return word

    def check(self, value: object) -> bool:
        # TOML has real booleans: "yes" in a file is a mistake worth reporting.
        if not isinstance(value, bool):
            self.fail(value)
        return value


class _Int(_Kind):
    def __init__(self, lowest: int, highest: int) -> None:
        self.lowest, self.highest = lowest, highest
        self.expected = f"an integer {lowest}..{highest}"

    def from_text(self, text: str) -> object:
        if not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text):
            self.fail(text)
        return int(text)

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value)
        if not self.lowest <= value <= self.highest:
            self.fail(value)
        return value


class _Workers(_Int):
    """``--workers``: a number of processes, or "auto" (one per CPU the cgroup quota and the
    CPU affinity allow; resolved at start by kdns.server.workers)."""

    def __init__(self) -> None:
        super().__init__(1, 64)
        self.expected = 'an integer 1..64 or "auto"'

    def from_text(self, text: str) -> object:
        return "auto" if text.strip().lower() == "auto" else super().from_text(text)

    def check(self, value: object) -> Any:  # int | "auto"
        return "auto" if value == "auto" else super().check(value)


class _Seconds(_Kind):
    def __init__(self, *, zero_ok: bool) -> None:
        self.zero_ok = zero_ok
        self.expected = "a number of seconds >= 0" if zero_ok else "a number of seconds > 0"

    def from_text(self, text: str) -> object:
        try:
            return float(text)
        except ValueError:
            self.fail(text)

    def check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(value)
        if not math.isfinite(value) or value < 0 or (value == 0 and not self.zero_ok):
            self.fail(value)
        return float(value)


class _Fraction(_Seconds):
    """A share, 0 to 1 (read like seconds: a decimal in flags, env and TOML)."""

    def __init__(self) -> None:
        super().__init__(zero_ok=True)
        self.expected = "a number from 0 to 1"

    def check(self, value: object) -> float:
        number = super().check(value)
        if number > 1:
            self.fail(value)
        return number


class _Choice(_Kind):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "|".join(choices)

    def check(self, value: object) -> str:
        # Case-insensitive: LOG_LEVEL=INFO is how many operators write it.
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            self.fail(value)
        return value.strip().lower()


class _Name(_Kind):
    expected = "a DNS name like cluster.local"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        return _normalise_name(value)


class _Path(_Kind):
    expected = "a path"

    def check(self, value: object) -> str:
        # Existence is checked when used: check-config may run on another machine.
        if not isinstance(value, str) or not value.strip():
            self.fail(value)
        return value


class _Address(_Kind):
    """HOST:PORT, or with ``off_ok`` the word ``off`` for "don't listen" (None)."""

    def __init__(self, *, off_ok: bool = False) -> None:
        self.off_ok = off_ok
        self.expected = "HOST:PORT or off" if off_ok else "HOST:PORT"

    def check(self, value: object) -> HostPort | None:
        if not isinstance(value, str):
            self.fail(value)
        if self.off_ok and value.strip().lower() == "off":
            return None
        return parse_hostport(value)

    def render(self, value: HostPort | None) -> str:
        return "off" if value is None else format_hostport(value)


class _Upstream(_Kind):
    expected = _UPSTREAM_HELP

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        return _normalise_upstream(value)


class _ServiceRef(_Kind):
    expected = "NAMESPACE/NAME of a Service"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        parts = value.strip().split("/")
        if len(parts) != 2 or not all(_LABEL.fullmatch(part) for part in parts):
            self.fail(value)
        return "/".join(parts)


class _Zone(_Name):
    """A zone kdns serves or forwards: any label DNS allows (``_acme-challenge`` too)."""

    expected = "a DNS name like home.example.com"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        return _normalise_zone(value)


class _ZoneOrRoot(_Zone):
    """A zone, or ``.`` for every name (``[hosts] zones``)."""

    expected = 'a DNS name like home.example.com, or "." for every name'

    def check(self, value: object) -> str:
        if isinstance(value, str) and value.strip() == ".":
            return "."
        return super().check(value)


class _Text(_Kind):
    expected = "a string"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        return value


class _HostsEntry(_Kind):
    """One hosts line, ``IP NAME [ALIAS...]`` (``[hosts] entries``)."""

    expected = 'a hosts line like "192.168.1.10 nas nas.home"'

    def check(self, value: object) -> str:
        from kdns.authority.hosts import HostsError, parse_lines  # late: kdns.dns needs no config

        if not isinstance(value, str):
            self.fail(value)
        try:
            if not parse_lines([value], "entry"):
                self.fail(value)
        except HostsError as exc:
            raise _Invalid(str(exc).removeprefix("entry:1: ")) from None
        return " ".join(value.split("#", 1)[0].split())


class _GatewayZone(_Zone):
    """A gateway zone: ``"home.example.com"``, or a table ``{name = "home.example.com"}``
    (``[[gateway.zones]]``)."""

    expected = 'a DNS name like home.example.com or {name = "..."}'

    def check(self, value: object) -> str:
        if isinstance(value, dict):
            if set(value) != {"name"}:
                self.fail(value)
            value = value["name"]
        return super().check(value)


class _GatewayRef(_Kind):
    expected = "NAMESPACE/NAME of a Gateway, or NAMESPACE/* for every Gateway of a namespace"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        parts = value.strip().split("/")
        if len(parts) != 2 or not _LABEL.fullmatch(parts[0]):
            self.fail(value)
        if parts[1] != "*" and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", parts[1]):
            self.fail(value)
        return "/".join(parts)


class _ClassName(_Kind):
    """A GatewayClass or IngressClass name (a Kubernetes object name)."""

    expected = "a class name like nginx-internal"

    def check(self, value: object) -> str:
        if not isinstance(value, str) or not re.fullmatch(
            r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", value.strip()
        ):
            self.fail(value)
        return value.strip()


class _IpAddress(_Kind):
    expected = "an IP address"

    def check(self, value: object) -> str:
        try:
            return str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            self.fail(value)


class _MetaFilter(_Kind):
    """A label or annotation filter: ``key=value`` (that value), or ``key`` (any value)."""

    expected = "KEY=VALUE or KEY (a label or annotation)"

    def check(self, value: object) -> str:
        if not isinstance(value, str):
            self.fail(value)
        key, eq, rest = value.strip().partition("=")
        if not re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", key):
            self.fail(value)
        if "=" in rest or any(c.isspace() for c in rest):
            self.fail(value)
        return f"{key}={rest}" if eq else key


class _Resource(_Kind):
    expected = "|".join(GATEWAY_RESOURCES)

    def check(self, value: object) -> str:
        by_lower = {kind.lower(): kind for kind in GATEWAY_RESOURCES}
        if not isinstance(value, str) or value.strip().lower() not in by_lower:
            self.fail(value)
        return by_lower[value.strip().lower()]


class _List(_Kind):
    """A list of ``item``. A single string is a one-item list (SDNS writes ``bind = ":53"``)."""

    def __init__(self, item: _Kind, *, empty_ok: bool = True) -> None:
        self.item, self.empty_ok = item, empty_ok
        self.expected = f"a list of {item.expected}"

    def from_text(self, text: str) -> object:
        # Environment variables repeat with commas: KDNS_LISTEN=127.0.0.1:53,[::1]:53
        return [part.strip() for part in text.split(",") if part.strip()]

    def check(self, value: object) -> tuple[Any, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            self.fail(value)
        checked = tuple(dict.fromkeys(self.item.check(v) for v in items))  # dedupe, keep order
        if not checked and not self.empty_ok:
            raise _Invalid(f"expected at least one {self.item.expected}, got []")
        return checked

    def render(self, value: tuple[Any, ...]) -> list[object]:
        return [self.item.render(v) for v in value]


class _Listen(_List):
    """DNS listen addresses. ``:53`` (host "") already covers 0.0.0.0:53 and [::]:53, so
    those are dropped beside it rather than fail to bind a second time."""

    def check(self, value: object) -> tuple[Any, ...]:
        addresses = super().check(value)
        every = {port for host, port in addresses if host == "" and port != 0}
        return tuple(a for a in addresses if not (a[0] in ("0.0.0.0", "::") and a[1] in every))


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
    """A split-horizon rule: ``ZONE=UPSTREAM[+UPSTREAM...]`` (flags, env, TOML strings) or a
    TOML table ``{name = "lan.example.com", upstreams = ["192.168.1.1"]}`` with, optionally,
    the zone's own settings (``_ZONE_OPTIONS``)."""

    expected = "ZONE=UPSTREAM[+UPSTREAM...] or {name, upstreams, policy, tls_servername, tls_ca_file, force_tcp, prefer_udp, max_concurrent, max_fails, health_check, success_ttl, denial_ttl}"  # fmt: skip

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
            zone, _, rest = value.partition("=")
            ups = [u for u in rest.split("+") if u.strip()]
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


class _View(_Kind):
    expected = "a table {name, networks, zones, blocklists, allowlists, schedule, gateway_classes, ingress_classes}"  # fmt: skip

    def check(self, value: object) -> ViewSource:
        table = _table(value, self, ("name", "networks"), ("zones", "blocklists", "allowlists", "schedule", "gateway_classes", "ingress_classes"))  # fmt: skip
        networks = _field(_Networks(), table["networks"], "networks")
        if not networks:
            raise _Invalid("expected at least one network, got []", ".networks")
        zones = table.get("zones")
        return ViewSource(
            _field(_EntryName(), table["name"], "name"),
            networks,
            None if zones is None else _field(_List(_Zone()), zones, "zones"),
            _field(_List(_EntryName()), table.get("blocklists", []), "blocklists"),
            _field(_List(_EntryName()), table.get("allowlists", []), "allowlists"),
            _field(_Schedule(), table["schedule"], "schedule") if "schedule" in table else None,
            *(
                _field(_List(_ClassName()), table[key], key) if key in table else None
                for key in ("gateway_classes", "ingress_classes")
            ),
        )

    def render(self, value: ViewSource) -> dict[str, object]:
        out: dict[str, object] = {"name": value.name, "networks": list(value.networks)}
        if value.zones is not None:
            out["zones"] = list(value.zones)
        out["blocklists"] = list(value.blocklists)
        if value.allowlists:
            out["allowlists"] = list(value.allowlists)
        if value.schedule is not None:
            out["schedule"] = _Schedule().render(value.schedule)
        for key in ("gateway_classes", "ingress_classes"):
            if getattr(value, key) is not None:
                out[key] = list(getattr(value, key))
        return out


_LIST_FORMATS = _Choice("auto", "hosts", "domains", "adblock")


class _Blocklist(_Kind):
    expected = 'a table {name, file or url, format = "auto"|"hosts"|"domains"|"adblock", answer = "nxdomain"|"nodata"|"null", refresh, schedule}'  # fmt: skip
    allow = False  # [[allowlists]]: no answer, no schedule

    def check(self, value: object) -> Any:
        optional = ("file", "url", "format", "refresh") + (() if self.allow else ("answer", "schedule"))  # fmt: skip
        table = _table(value, self, ("name",), optional)
        if ("file" in table) == ("url" in table):
            raise _Invalid("expected either file (a path) or url (http:// or https://), not both or neither")  # fmt: skip
        name = _field(_EntryName(), table["name"], "name")
        file = _field(_Path(), table["file"], "file") if "file" in table else None
        url = _field(_Url(), table["url"], "url") if "url" in table else None
        fmt = _field(_LIST_FORMATS, table.get("format", "auto"), "format")
        refresh = _field(_Duration(), table.get("refresh", 86400), "refresh")
        if self.allow:
            return AllowlistSource(name, file, fmt, url, refresh)
        schedule = _field(_Schedule(), table["schedule"], "schedule") if "schedule" in table else None  # fmt: skip
        answer = _field(_Choice("nxdomain", "nodata", "null"), table.get("answer", "null"), "answer")  # fmt: skip
        return BlocklistSource(name, file, fmt, answer, url, refresh, schedule)

    def render(self, value: Any) -> dict[str, object]:
        out: dict[str, object] = {"name": value.name}
        if value.file is not None:
            out["file"] = value.file
        else:
            out["url"] = value.url
            out["refresh"] = _Duration().render(value.refresh)
        out["format"] = value.format
        if not self.allow:
            out["answer"] = value.answer
            if value.schedule is not None:
                out["schedule"] = _Schedule().render(value.schedule)
        return out


class _Allowlist(_Blocklist):
    expected = 'a table {name, file or url, format = "auto"|"hosts"|"domains"|"adblock", refresh}'
    allow = True


class _Url(_Kind):
    expected = "an http:// or https:// URL"

    def check(self, value: object) -> str:
        if not isinstance(value, str) or not re.fullmatch(
            r"https?://[^\s/]+(/\S*)?", value.strip()
        ):
            self.fail(value)
        return value.strip()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Duration(_Kind):
    """A duration: "1h", "30m", "1h30m", "90s", "2d", or a number of seconds (0: never)."""

    expected = 'a duration like "1h", "30m" or "1h30m" (or seconds)'

    def from_text(self, text: str) -> object:
        return text

    def check(self, value: object) -> float:
        if isinstance(value, bool):
            self.fail(value)
        if isinstance(value, int | float):
            if not math.isfinite(value) or value < 0:
                self.fail(value)
            return float(value)
        if not isinstance(value, str):
            self.fail(value)
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            self.fail(value)
        return float(sum(float(n) * _UNITS[u] for n, u in parts))

    def render(self, value: float) -> object:
        seconds = int(value)
        if seconds != value or seconds == 0:
            return value
        out = ""
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds >= size:
                out += f"{seconds // size}{unit}"
                seconds %= size
        return out


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")


class _Schedule(_Kind):
    """``{time_zone = "Europe/Berlin", mon = "08:00-17:00", sat = ["09:00-12:00", ...],
    pause = false}``: when a view or list blocks (``pause = true``: when it does not)."""

    expected = 'a table {time_zone, mon..sun = "HH:MM-HH:MM" or a list of them, pause}'

    def check(self, value: object) -> Schedule:
        table = _table(value, self, (), ("time_zone", "pause", *_DAYS))
        zone = table.get("time_zone", "Local")
        if not isinstance(zone, str) or not zone.strip():
            raise _Invalid(f"expected a time zone like Europe/Berlin, got {_show(zone)}", ".time_zone")  # fmt: skip
        if zone != "Local":
            try:
                import zoneinfo

                zoneinfo.ZoneInfo(zone)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                raise _Invalid(f"unknown time zone {_show(zone)}", ".time_zone") from None
        days = []
        for day in _DAYS:
            spec = table.get(day, [])
            items = [spec] if isinstance(spec, str) else spec
            if not isinstance(items, list):
                raise _Invalid(f'expected "HH:MM-HH:MM" or a list of them, got {_show(spec)}', f".{day}")  # fmt: skip
            ranges = []
            for item in items:
                match = _RANGE.fullmatch(str(item).strip())
                start = end = -1
                if match:
                    h1, m1, h2, m2 = (int(g) for g in match.groups())
                    start, end = h1 * 60 + m1, h2 * 60 + m2
                if not match or m1 > 59 or m2 > 59 or start > 1440 or end > 1440 or start >= end:
                    raise _Invalid(f'expected "HH:MM-HH:MM" (start before end, up to 24:00), got {_show(item)}', f".{day}")  # fmt: skip
                ranges.append((start, end))
            days.append(tuple(sorted(ranges)))
        pause = _field(_Bool(), table.get("pause", False), "pause")
        return Schedule(zone, tuple(days), pause)

    def render(self, value: Schedule) -> dict[str, object]:
        out: dict[str, object] = {"time_zone": value.time_zone}
        for day, ranges in zip(_DAYS, value.days, strict=True):
            if ranges:
                out[day] = [
                    f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in ranges
                ]
        if value.pause:
            out["pause"] = True
        return out


class _Networks(_Kind):
    expected = "a list of networks like 10.0.0.0/8"

    def check(self, value: object) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            self.fail(value)
        out = []
        for item in items:
            text = str(item).strip()
            if text == "*":  # CoreDNS transfer `to *`: any client
                out += ["0.0.0.0/0", "::/0"]
                continue
            try:
                out.append(str(ipaddress.ip_network(text, strict=False)))
            except ValueError:
                self.fail(item)
        return tuple(dict.fromkeys(out))

    def from_text(self, text: str) -> object:
        return [part.strip() for part in text.split(",") if part.strip()]

    def render(self, value: tuple[str, ...]) -> list[object]:
        return list(value)


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
