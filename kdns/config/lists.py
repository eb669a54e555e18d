"""Kinds of the LAN-facing settings: [[views]], [[blocklists]] / [[allowlists]] (files and
URLs), durations and weekly schedules, client networks."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

from kdns.config.kinds import (
    _Bool,
    _Choice,
    _ClassName,
    _Kind,
    _List,
    _Path,
    _Zone,
)
from kdns.config.tables import _EntryName, _field, _table
from kdns.values import (
    AllowlistSource,
    BlocklistSource,
    Schedule,
    ViewSource,
    _Invalid,
    _show,
)


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
