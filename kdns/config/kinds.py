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
    HostPort,
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
