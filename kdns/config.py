"""The effective configuration: defaults < TOML file < KDNS_* environment < command-line flags.

Every setting is described once, in ``SETTINGS``: its ``Config`` field, its TOML key, its
environment variable, its flag and its kind (how to parse and validate it). Each layer is
validated on its own, so an error names the key the user actually wrote::

    config: kubernetes.ttl: expected an integer 0..3600, got "5"
    config: KDNS_TTL: expected an integer 0..3600, got "x"
    config: --ttl: expected an integer 0..3600, got 9999

``build_config`` is the only way in; ``Config.to_toml`` renders the result back as a TOML file
that parses to the same ``Config`` (``kdns check-config`` prints it).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

from kdns.dns.networks import PRIVATE  # plain data: forward.allow's default
from kdns.model import GATEWAY_RESOURCES  # plain data: gateway.resources' default

__all__ = [
    "Config",
    "ConfigError",
    "SETTINGS",
    "Setting",
    "Upstream",
    "build_config",
    "env_warnings",
    "format_hostport",
    "parse_hostport",
    "parse_upstream",
    "toml_string",
]

HostPort = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Config:
    """What kdns runs with. Build it with ``build_config``: the constructor does not validate."""

    # Host "" is "all addresses, both families" (":53"): 0.0.0.0 and [::] (IPv6-only) sockets.
    listen: tuple[HostPort, ...] = (("", 53),)
    cluster_domain: str = "cluster.local"
    external_zones: tuple[str, ...] = ()
    pods: str = "insecure"
    ttl: int = 5
    endpoint_pod_names: bool = False
    demo: bool = False
    objects: tuple[str, ...] = ()
    kubeconfig: str | None = None
    kubernetes_enabled: bool = True
    killer: bool = False
    upstreams: tuple[str, ...] = ()  # empty: the nameservers of /etc/resolv.conf
    forward: bool = True
    metrics_listen: HostPort | None = ("", 9153)
    health_listen: HostPort | None = ("", 8080)
    ready_listen: HostPort | None = ("", 8181)
    workers: int | str = 1  # processes on the DNS port, or "auto": one per CPU we may use
    log_level: str = "info"
    log_format: str = "text"
    query_log: bool = False
    startup_timeout: float = 5.0
    udp_size: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    tcp_max_connections_per_client: int = 100  # per client network (0: no limit)
    tcp_client_ipv4_prefix: int = 32  # what one "client" is, for that limit
    tcp_client_ipv6_prefix: int = 128
    tcp_write_timeout: float = 5.0  # close a client that leaves its answers unread this long
    freebind: bool = False  # IP_FREEBIND: bind listen addresses not (yet) on an interface
    dns_service: str = "kube-system/kube-dns"
    forward_zones: tuple[tuple[str, tuple[str, ...]], ...] = ()  # split horizon: zone -> upstreams
    forward_policy: str = "random"  # CoreDNS forward policy
    forward_max_fails: int = 2
    forward_max_concurrent: int = 1000
    forward_timeout: float = 2.0
    forward_health_check: float = 0.5
    tls_ca_file: str | None = None  # CA bundle for tls:// upstreams (default: system CAs)
    split: str = "off"  # sidecar split DNS: off | auto (in a pod) | on
    cluster_domains: tuple[str, ...] = ()  # extra cluster domains for split mode
    cluster_nameserver: str | None = None  # split mode: the cluster DNS (default: resolv.conf)
    resolv_conf: str = "/etc/resolv.conf"  # default upstreams; split mode's cluster settings
    cache: bool = True
    cache_success: int = 9984  # CoreDNS cache defaults
    cache_denial: int = 9984
    cache_success_ttl: int = 3600
    cache_denial_ttl: int = 1800
    cache_min_ttl: int = 5
    cache_serve_stale: float = 0.0
    cache_prefetch: int = 0
    transfer_allow: tuple[str, ...] = ()  # networks allowed AXFR/IXFR; default deny
    forward_allow: tuple[str, ...] = PRIVATE  # kdns.dns.networks  # who may have names forwarded
    killer_cache_entries: int = 50_000  # killer mode's wire cache bounds
    killer_cache_bytes: int = 32 << 20
    killer_prefetch: bool = True  # the Markov prefetcher (killer mode)
    killer_prefetch_threshold: float = 0.4  # a successor's least share of what followed
    killer_prefetch_share: float = 0.5  # speculative (unused) prefetches per upstream query
    killer_prefetch_concurrency: int = 16  # prefetches in flight at once
    acl: tuple[Any, ...] = ()  # CoreDNS acl rules, first match wins
    loadbalance: bool = True  # rotate A/AAAA order per answer (CoreDNS loadbalance)
    lameduck: float = 5.0  # seconds of answering with /ready failing after SIGTERM
    reload_interval: float = 30.0  # config file change poll (CoreDNS reload); 0 = off
    metrics_compat: str = "none"  # "coredns": also export CoreDNS metric names
    rrl: bool = False  # response rate limiting (BIND/Knot RRL), UDP only
    rrl_responses_per_second: int = 20
    rrl_slip: int = 2  # every Nth dropped response goes out truncated (0: never)
    rrl_ipv4_prefix: int = 24
    rrl_ipv6_prefix: int = 56
    rrl_exempt: tuple[str, ...] = ()  # networks never limited
    gateway_zones: tuple[str, ...] = ()  # zones answering Gateway API/Ingress/LB hostnames
    gateways: tuple[str, ...] = ()  # "ns/name" or "ns/*": only these Gateways' routes
    gateway_label: str | None = None  # "key=value" or "key" on routes, Ingresses, Services
    gateway_annotation: str | None = None
    gateway_resources: tuple[str, ...] = GATEWAY_RESOURCES  # kinds that publish hostnames
    # Local zones ([[zones]], --zone-file), views by client network ([[views]]) and the block
    # lists they apply ([[blocklists]]): TOML arrays of tables (kdns.dns.localzones, .views).
    local_zones: tuple[LocalZoneSource, ...] = ()
    views: tuple[ViewSource, ...] = ()
    blocklists: tuple[BlocklistSource, ...] = ()
    config_file: str | None = None

    def to_toml(self) -> str:
        """The effective configuration as a TOML file that ``build_config`` reads back as-is."""
        return _render_toml(self)


class ConfigError(Exception):
    """A bad setting. ``str()`` is one line: ``config: KEY: PROBLEM``."""

    def __init__(self, key: str, problem: str) -> None:
        # One line, always: the CLI prints it as the whole error report.
        self.key = key
        self.problem = " ".join(problem.split())
        super().__init__(f"config: {key}: {self.problem}")


class _Invalid(ValueError):
    """A value failed validation. The layer that read it adds the key (TOML, env or flag),
    plus ``key_suffix`` when the problem is inside the value (``acl.rules[1].net``)."""

    def __init__(self, problem: str, key_suffix: str = "") -> None:
        super().__init__(problem)
        self.key_suffix = key_suffix


# --- value syntax -----------------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOSTPORT_HELP = "HOST:PORT (HOST an IP address or localhost, IPv6 in brackets)"


def _show(value: object) -> str:
    """A value as the user would have written it, for ``got ...`` in error messages."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def _split_hostport(text: str) -> tuple[str, str | None]:
    """``"[::1]:53"`` -> ``("::1", "53")``; ``"1.2.3.4"`` -> ``("1.2.3.4", None)``."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not host or not bracket or (rest and not rest.startswith(":")):
            raise _Invalid(f"expected {_HOSTPORT_HELP}, got {_show(text)}")
        return host, (rest[1:] if rest else None)
    host, colon, port = text.rpartition(":")
    if not colon:
        return text, None
    if ":" in host:  # "::1:53" is ambiguous; insist on "[::1]:53"
        raise _Invalid(f"expected {_HOSTPORT_HELP}, got {_show(text)}")
    return host, port


def _parse_port(text: str, whole: str, lowest: int) -> int:
    if not _PORT.fullmatch(text) or not lowest <= int(text) <= 65535:
        raise _Invalid(f"expected a port {lowest}..65535, got {_show(whole)}")
    return int(text)


def _parse_ip(text: str, whole: str) -> str:
    try:
        return str(ipaddress.ip_address(text))  # canonical spelling, e.g. IPv6 compressed
    except ValueError:
        raise _Invalid(f"expected {_HOSTPORT_HELP}, got {_show(whole)}") from None


def parse_hostport(text: str) -> HostPort:
    """Parse a listen address: ``"1.2.3.4:53"``, ``"[::1]:53"``, ``":53"`` (all interfaces).

    ``":53"`` gives host ``""``: every address of both families, as CoreDNS's ``.:53`` (kdns
    binds 0.0.0.0 and [::] with IPV6_V6ONLY). ``"0.0.0.0:53"`` is IPv4 only, ``"[::]:53"``
    IPv6 only. Port 0 is allowed (an ephemeral port; tests use it). Raises ``ValueError``.
    """
    text = text.strip()
    host, port = _split_hostport(text)
    if port is None:
        raise _Invalid(f"expected {_HOSTPORT_HELP}, got {_show(text)}")
    if host == "":
        pass  # SDNS and CoreDNS spell "all interfaces" as ":53"; "" keeps it both families
    elif host.lower() == "localhost":
        host = "localhost"
    else:
        host = _parse_ip(host, text)
    return host, _parse_port(port, text, lowest=0)


def format_hostport(address: HostPort) -> str:
    """The inverse of ``parse_hostport``: ``("::1", 53)`` -> ``"[::1]:53"``, ``("", 53)`` ->
    ``":53"``."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _normalise_name(text: str) -> str:
    """Lowercase, strip one trailing dot, check RFC 1123 labels; raises ``_Invalid``."""
    name = text.strip().lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _Invalid(f"expected a DNS name like cluster.local, got {_show(text)}")
    return name


class LocalZoneSource(NamedTuple):
    """One ``[[zones]]`` entry (or ``--zone-file ZONE=PATH``): a zone file or TOML records."""

    name: str
    file: str | None
    records: tuple[str, ...]  # zone-file lines relative to the zone ("www 300 A 192.0.2.1")
    ttl: int  # records without a TTL (and no $TTL), the synthesized SOA's minimum


class ViewSource(NamedTuple):
    """One ``[[views]]`` entry: clients in ``networks`` see ``zones`` (None: every zone of
    kdns) and get ``blocklists`` applied."""

    name: str
    networks: tuple[str, ...]
    zones: tuple[str, ...] | None
    blocklists: tuple[str, ...]


class BlocklistSource(NamedTuple):
    """One ``[[blocklists]]`` entry."""

    name: str
    file: str
    format: str  # "hosts" | "domains"
    answer: str  # "nxdomain" | "nodata" | "null"


LOCAL_ZONE_TTL = 300  # [[zones]] ttl's default (kdns.dns.localzones.DEFAULT_TTL)


class Upstream(NamedTuple):
    """One forwarder, as ``parse_upstream`` reads it."""

    transport: str  # "udp" (TCP on truncation, like any stub), "tcp" or "tls"
    host: str  # an IP address: a forwarder named by hostname would need DNS to find DNS
    port: int
    server_name: str | None  # TLS only: the name to verify the certificate against (SNI)


_SCHEMES = {"": "udp", "dns": "udp", "udp": "udp", "tcp": "tcp", "tls": "tls"}
_UPSTREAM_HELP = "an upstream [udp://|tcp://|tls://]IP[:PORT][@TLS_NAME]"


def _upstream_parts(text: str) -> tuple[str, str, str, int | None, str | None]:
    """(scheme as written, transport, host, port if written, TLS name); raises ``_Invalid``."""
    scheme, sep, rest = text.strip().rpartition("://")
    scheme = scheme.lower()
    rest, at, server_name = rest.partition("@")
    if (sep and not scheme) or scheme not in _SCHEMES or (at and _SCHEMES[scheme] != "tls"):
        raise _Invalid(f"expected {_UPSTREAM_HELP}, got {_show(text)}")
    try:
        try:  # a bare IPv6 address needs no brackets when it has no port
            host, port = str(ipaddress.ip_address(rest)), None
        except ValueError:
            host_text, port_text = _split_hostport(rest)
            host = _parse_ip(host_text, text)
            port = None if port_text is None else _parse_port(port_text, text, lowest=1)
        name = _normalise_name(server_name) if at else None
    except _Invalid:
        raise _Invalid(f"expected {_UPSTREAM_HELP}, got {_show(text)}") from None
    return scheme, _SCHEMES[scheme], host, port, name


def parse_upstream(text: str) -> Upstream:
    """Parse ``1.1.1.1``, ``1.1.1.1:53``, ``[2606:4700::1111]:53``, ``udp://..``, ``tcp://..``,
    ``tls://1.1.1.1@cloudflare-dns.com``, ``tls://1.1.1.1:853@name``. Raises ``ValueError``.

    The port defaults to 53, or 853 for TLS. ``dns://`` (CoreDNS's spelling of plain DNS)
    means the same as no scheme.
    """
    _, transport, host, port, name = _upstream_parts(text)
    if port is None:
        port = 853 if transport == "tls" else 53
    return Upstream(transport, host, port, name)


def _normalise_upstream(text: str) -> str:
    """As written, in canonical spelling: lowercase scheme and name, canonical IP."""
    scheme, _, host, port, name = _upstream_parts(text)
    address = host if port is None else format_hostport((host, port))
    return (f"{scheme}://" if scheme else "") + address + (f"@{name}" if name else "")


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


class _GatewayZone(_Name):
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


class _ForwardZone(_Kind):
    """A split-horizon rule: ``ZONE=UPSTREAM[+UPSTREAM...]`` (flags, env, TOML strings) or a
    TOML table ``{name = "lan.example.com", upstreams = ["192.168.1.1"]}``."""

    expected = "ZONE=UPSTREAM[+UPSTREAM...] or {name, upstreams}"

    def check(self, value: object) -> tuple[str, tuple[str, ...]]:
        if isinstance(value, dict):
            if (
                set(value) - {"name", "upstreams"}
                or "name" not in value
                or "upstreams" not in value
            ):
                self.fail(value)
            zone, ups = value["name"], value["upstreams"]
            ups = [ups] if isinstance(ups, str) else ups
        elif isinstance(value, str) and "=" in value:
            zone, _, rest = value.partition("=")
            ups = [u for u in rest.split("+") if u.strip()]
        else:
            self.fail(value)
        if not isinstance(zone, str) or not isinstance(ups, list) or not ups:
            self.fail(value)
        name = "." if zone.strip() == "." else _normalise_name(zone)
        return name, tuple(_normalise_upstream(str(u)) for u in ups)

    def render(self, value: tuple[str, tuple[str, ...]]) -> str:
        return f"{value[0]}=" + "+".join(value[1])


class _AclRules(_Kind):
    """CoreDNS acl: ``[{action = "block", net = ["10.0.0.0/8"], type = ["AXFR"], zone = []}]``."""

    expected = "a list of rules {action, net, type, zone}"

    def check(self, value: object) -> tuple[Any, ...]:
        from kdns.dns.acl import RuleError, parse_rules  # late: kdns.dns needs no config

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

    expected = "ZONE=PATH or a table {name, file or records, ttl}"

    def check(self, value: object) -> LocalZoneSource:
        if isinstance(value, str):
            zone, eq, path = value.partition("=")
            if not eq or not path.strip():
                self.fail(value)
            return LocalZoneSource(_normalise_name(zone), path.strip(), (), LOCAL_ZONE_TTL)
        table = _table(value, self, ("name",), ("file", "records", "ttl"))
        name = _field(_Name(), table["name"], "name")
        ttl = _field(_Int(0, 2_147_483_647), table.get("ttl", LOCAL_ZONE_TTL), "ttl")
        if ("file" in table) == ("records" in table):
            raise _Invalid("expected either file (a zone file) or records (a list), not both or neither")  # fmt: skip
        if "file" in table:
            return LocalZoneSource(name, _field(_Path(), table["file"], "file"), (), ttl)
        records = table["records"]
        if not isinstance(records, list):
            raise _Invalid(f"expected a list of records like \"www 300 A 192.168.1.10\", got {_show(records)}", ".records")  # fmt: skip
        from kdns.dns.localzones import LocalZoneError, from_records  # late: dnspython

        try:
            from_records(name, records, ttl)
        except LocalZoneError as exc:
            where = ".records" if exc.index is None else f".records[{exc.index}]"
            raise _Invalid(exc.problem, where) from None
        return LocalZoneSource(name, None, tuple(records), ttl)

    def render(self, value: LocalZoneSource) -> dict[str, object]:
        out: dict[str, object] = {"name": value.name}
        if value.file is not None:
            out["file"] = value.file
        else:
            out["records"] = list(value.records)
        out["ttl"] = value.ttl
        return out


class _View(_Kind):
    expected = "a table {name, networks, zones, blocklists}"

    def check(self, value: object) -> ViewSource:
        table = _table(value, self, ("name", "networks"), ("zones", "blocklists"))
        networks = _field(_Networks(), table["networks"], "networks")
        if not networks:
            raise _Invalid("expected at least one network, got []", ".networks")
        zones = table.get("zones")
        return ViewSource(
            _field(_EntryName(), table["name"], "name"),
            networks,
            None if zones is None else _field(_List(_Name()), zones, "zones"),
            _field(_List(_EntryName()), table.get("blocklists", []), "blocklists"),
        )

    def render(self, value: ViewSource) -> dict[str, object]:
        out: dict[str, object] = {"name": value.name, "networks": list(value.networks)}
        if value.zones is not None:
            out["zones"] = list(value.zones)
        out["blocklists"] = list(value.blocklists)
        return out


class _Blocklist(_Kind):
    expected = (
        'a table {name, file, format = "hosts"|"domains", answer = "nxdomain"|"nodata"|"null"}'
    )

    def check(self, value: object) -> BlocklistSource:
        table = _table(value, self, ("name", "file"), ("format", "answer"))
        return BlocklistSource(
            _field(_EntryName(), table["name"], "name"),
            _field(_Path(), table["file"], "file"),
            _field(_Choice("hosts", "domains"), table.get("format", "hosts"), "format"),
            _field(_Choice("nxdomain", "nodata", "null"), table.get("answer", "null"), "answer"),
        )

    def render(self, value: BlocklistSource) -> dict[str, object]:
        return value._asdict()


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


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its ``Config`` field, TOML key, flag and env var, and how it parses."""

    field: str  # Config attribute; also the argparse dest of its flag
    toml: str  # "section.key"
    kind: _Kind
    cli: str | None = None  # flag name without "--"; the env var is KDNS_ + it in caps

    @property
    def section(self) -> str:
        return self.toml.partition(".")[0]

    @property
    def key(self) -> str:
        return self.toml.partition(".")[2]

    @property
    def flag(self) -> str | None:
        return None if self.cli is None else f"--{self.cli}"

    @property
    def env(self) -> str | None:
        return None if self.cli is None else "KDNS_" + self.cli.upper().replace("-", "_")

    @property
    def switch(self) -> bool:
        """An on/off setting: its flag takes no value."""
        return isinstance(self.kind, _Bool)

    @property
    def repeated(self) -> bool:
        """A list setting: each flag occurrence adds one item."""
        return isinstance(self.kind, _List)

    @property
    def negated(self) -> bool:
        """``--no-forward`` / ``KDNS_NO_FORWARD=1`` set ``forward = False``."""
        return self.cli is not None and self.cli.startswith("no-")


_LISTEN = _Listen(_Address(), empty_ok=False)
_SERVICE = _Address(off_ok=True)
_PODS = _Choice("disabled", "insecure", "verified")
_LEVELS = _Choice("debug", "info", "warning", "error")
_STARTUP = _Seconds(zero_ok=True)

# Order here is the order of ``to_toml``'s output.
SETTINGS: tuple[Setting, ...] = (
    Setting("listen", "server.listen", _LISTEN, "listen"),
    Setting("workers", "server.workers", _Workers(), "workers"),
    Setting("udp_size", "server.udp_size", _Int(512, 65535), "udp-size"),
    Setting("tcp_idle_timeout", "server.tcp_idle_timeout", _Seconds(zero_ok=False)),
    Setting("tcp_max_connections", "server.tcp_max_connections", _Int(1, 1_000_000)),
    Setting(
        "tcp_max_connections_per_client",
        "server.tcp_max_connections_per_client",
        _Int(0, 1_000_000),
    ),
    Setting("tcp_client_ipv4_prefix", "server.tcp_client_ipv4_prefix", _Int(0, 32)),
    Setting("tcp_client_ipv6_prefix", "server.tcp_client_ipv6_prefix", _Int(0, 128)),
    Setting("tcp_write_timeout", "server.tcp_write_timeout", _Seconds(zero_ok=False)),
    Setting("freebind", "server.freebind", _Bool(), "freebind"),
    Setting("reload_interval", "server.reload_interval", _Seconds(zero_ok=True), "reload-interval"),
    Setting("kubernetes_enabled", "kubernetes.enabled", _Bool()),
    Setting("cluster_domain", "kubernetes.cluster_domain", _Name(), "cluster-domain"),
    Setting("external_zones", "kubernetes.external_zones", _List(_Name()), "external-zone"),
    Setting("pods", "kubernetes.pods", _PODS, "pods"),
    Setting("ttl", "kubernetes.ttl", _Int(0, 3600), "ttl"),
    Setting("endpoint_pod_names", "kubernetes.endpoint_pod_names", _Bool(), "endpoint-pod-names"),
    Setting("killer", "kubernetes.killer_mode", _Bool(), "killer"),
    Setting("kubeconfig", "kubernetes.kubeconfig", _Path(), "kubeconfig"),
    Setting("demo", "kubernetes.demo", _Bool(), "demo"),
    Setting("objects", "kubernetes.objects", _List(_Path()), "objects"),
    Setting("startup_timeout", "kubernetes.startup_timeout", _STARTUP, "startup-timeout"),
    Setting("dns_service", "kubernetes.dns_service", _ServiceRef()),
    Setting("forward", "forward.enabled", _Bool(), "no-forward"),
    Setting("upstreams", "forward.upstreams", _List(_Upstream()), "upstream"),
    Setting("forward_zones", "forward.zones", _List(_ForwardZone()), "forward-zone"),
    Setting(
        "forward_policy",
        "forward.policy",
        _Choice("random", "round_robin", "sequential"),
        "forward-policy",
    ),
    Setting("forward_max_fails", "forward.max_fails", _Int(0, 100)),
    Setting("forward_max_concurrent", "forward.max_concurrent", _Int(1, 1_000_000)),
    Setting("forward_timeout", "forward.timeout", _Seconds(zero_ok=False)),
    Setting("forward_health_check", "forward.health_check", _Seconds(zero_ok=False)),
    Setting("tls_ca_file", "forward.tls_ca_file", _Path()),
    Setting("split", "forward.split", _Choice("off", "auto", "on"), "split"),
    Setting("cluster_domains", "forward.cluster_domains", _List(_Name()), "cluster-domains"),
    Setting("cluster_nameserver", "forward.cluster_nameserver", _Upstream(), "cluster-nameserver"),
    Setting("resolv_conf", "forward.resolv_conf", _Path(), "resolv-conf"),
    Setting("cache", "cache.enabled", _Bool()),
    Setting("cache_success", "cache.success_capacity", _Int(0, 10_000_000)),
    Setting("cache_denial", "cache.denial_capacity", _Int(0, 10_000_000)),
    Setting("cache_success_ttl", "cache.success_ttl", _Int(1, 604800)),
    Setting("cache_denial_ttl", "cache.denial_ttl", _Int(1, 604800)),
    Setting("cache_min_ttl", "cache.min_ttl", _Int(0, 3600)),
    Setting("cache_serve_stale", "cache.serve_stale", _Seconds(zero_ok=True)),
    Setting("cache_prefetch", "cache.prefetch", _Int(0, 1000)),
    Setting("transfer_allow", "transfer.allow", _Networks()),
    Setting("forward_allow", "forward.allow", _Networks()),
    Setting("killer_cache_entries", "killer.cache_entries", _Int(0, 10_000_000)),
    Setting("killer_cache_bytes", "killer.cache_bytes", _Int(1 << 20, 1 << 36)),
    Setting("killer_prefetch", "killer.prefetch", _Bool()),
    Setting("killer_prefetch_threshold", "killer.prefetch_threshold", _Fraction()),
    Setting("killer_prefetch_share", "killer.prefetch_share", _Fraction()),
    Setting("killer_prefetch_concurrency", "killer.prefetch_concurrency", _Int(1, 1000)),
    Setting("acl", "acl.rules", _AclRules()),
    Setting("loadbalance", "server.loadbalance", _Bool()),
    Setting("rrl", "rrl.enabled", _Bool()),
    Setting("rrl_responses_per_second", "rrl.responses_per_second", _Int(1, 1_000_000)),
    Setting("rrl_slip", "rrl.slip", _Int(0, 10)),
    Setting("rrl_ipv4_prefix", "rrl.ipv4_prefix", _Int(8, 32)),
    Setting("rrl_ipv6_prefix", "rrl.ipv6_prefix", _Int(16, 128)),
    Setting("rrl_exempt", "rrl.exempt", _Networks()),
    Setting("gateway_zones", "gateway.zones", _List(_GatewayZone()), "gateway-zone"),
    Setting("gateways", "gateway.gateways", _List(_GatewayRef())),
    Setting("gateway_label", "gateway.label", _MetaFilter()),
    Setting("gateway_annotation", "gateway.annotation", _MetaFilter()),
    Setting("gateway_resources", "gateway.resources", _List(_Resource(), empty_ok=False)),
    Setting("metrics_listen", "metrics.listen", _SERVICE, "metrics-listen"),
    Setting("metrics_compat", "metrics.compat", _Choice("none", "coredns"), "metrics-compat"),
    Setting("health_listen", "health.listen", _SERVICE, "health-listen"),
    Setting("lameduck", "health.lameduck", _Seconds(zero_ok=True), "lameduck"),
    Setting("ready_listen", "ready.listen", _SERVICE, "ready-listen"),
    Setting("log_level", "log.level", _LEVELS, "log-level"),
    Setting("log_format", "log.format", _Choice("text", "json"), "log-format"),
    Setting("query_log", "log.query_log", _Bool(), "query-log"),
    # Arrays of tables, at the top level of the file: [[zones]], [[views]], [[blocklists]].
    Setting("local_zones", "zones", _Tables(_LocalZone()), "zone-file"),
    Setting("views", "views", _Tables(_View())),
    Setting("blocklists", "blocklists", _Tables(_Blocklist())),
)

# SDNS's top-level keys, accepted so an SDNS config file works unchanged.
TOML_ALIASES: Mapping[str, str] = {"bind": "server.listen", "loglevel": "log.level"}

CONFIG_ENV = "KDNS_CONFIG"

_BY_FIELD = {s.field: s for s in SETTINGS}
_BY_TOML = {s.toml: s for s in SETTINGS}
_SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS if "." in s.toml))
_ARRAYS = tuple(s.toml for s in SETTINGS if "." not in s.toml)  # [[zones]], [[views]], ...


# --- the layers ----------------------------------------------------------------------------


def build_config(
    file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """The effective configuration: defaults < TOML ``file`` < KDNS_* ``env`` < ``flags``.

    ``file`` None falls back to ``env["KDNS_CONFIG"]``. ``env`` None means no environment (pass
    ``os.environ`` explicitly). ``flags`` maps ``Config`` field names to a string (parsed like
    an env var), a list of strings for repeatable settings (one item each) or a typed value;
    ``None`` values mean "not given". Raises ``ConfigError``.
    """
    env = env or {}
    if file is None:
        file = env.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # field -> the key that set it last, for conflict messages
    if file is not None:
        values.update(_file_layer(_read_toml(file), origins))
    values.update(_env_layer(env, origins))
    values.update(_flag_layer(flags or {}, origins))
    _check_conflicts(values, origins)
    return Config(**values, config_file=file)


def _check_conflicts(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """Settings that contradict each other, whichever layers they come from (a file's
    ``kubernetes.demo = true`` and ``--objects`` conflict too); the error names both keys."""

    def conflict(first: str, second: str, why: str) -> NoReturn:
        raise ConfigError(origins[first], f"conflicts with {origins[second]}: {why}")

    if values.get("demo") and values.get("objects"):
        conflict("demo", "objects", "serve the demo cluster or manifest files, not both")
    taken = {values.get("cluster_domain", "cluster.local"), *values.get("external_zones", ())}
    for zone in values.get("gateway_zones", ()):
        if zone in taken:
            raise ConfigError(
                origins["gateway_zones"],
                f"{zone} is already the cluster domain or an external zone; "
                "gateway hostnames need a zone of their own",
            )
    _check_local_zones(values, origins)
    if values.get("forward") is False:
        for field in ("upstreams", "forward_zones"):
            if values.get(field):
                conflict("forward", field, "forwarding is off, so no upstream would be asked")


def _check_local_zones(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """[[zones]], [[views]] and [[blocklists]] against each other and the other zones."""
    local = values.get("local_zones", ())
    cluster_domain = values.get("cluster_domain", "cluster.local")
    taken = {cluster_domain, *values.get("external_zones", ()), "in-addr.arpa", "ip6.arpa"}
    forwarded = {zone for zone, _ in values.get("forward_zones", ())}
    for index, zone in enumerate(local):
        key = origins.get("local_zones", "zones")
        if zone.name in taken:
            raise ConfigError(
                f"{key}[{index}].name",
                f"{zone.name} is already the cluster domain, an external or a reverse zone",
            )
        if zone.name in forwarded:
            raise ConfigError(
                f"{key}[{index}].name",
                f"{zone.name} is also in {origins['forward_zones']}: a zone is served or "
                "forwarded, not both (forward a zone below it instead)",
            )
    # Zones a view may name: every zone kdns serves (gateway zones included).
    served = taken | {zone.name for zone in local} | set(values.get("gateway_zones", ()))
    lists = {blocklist.name for blocklist in values.get("blocklists", ())}
    for index, view in enumerate(values.get("views", ())):
        key = origins.get("views", "views")
        for at, zone_name in enumerate(view.zones or ()):
            if zone_name not in served:
                raise ConfigError(
                    f"{key}[{index}].zones[{at}]",
                    f"{zone_name} is not a zone kdns serves (cluster domain, external, reverse, "
                    "[[zones]] or gateway zones)",
                )
        for at, list_name in enumerate(view.blocklists):
            if list_name not in lists:
                raise ConfigError(
                    f"{key}[{index}].blocklists[{at}]", f"no [[blocklists]] named {list_name!r}"
                )


# Kubernetes injects service-link variables into pods for a Service named "kdns" (or
# "kdns-metrics", ...): KDNS_SERVICE_HOST, KDNS_SERVICE_PORT_DNS, KDNS_PORT_53_UDP_PROTO, ...
_SERVICE_LINK = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_\w+)?$|_PORT$|_PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?$"
)


def env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line per ``KDNS_*`` variable that is not a kdns setting (most likely a typo, which
    would otherwise be silently ignored), naming the closest known one. Not errors: unknown
    variables never stop kdns. Kubernetes service-link variables are left alone."""
    known = [s.env for s in SETTINGS if s.env is not None] + [CONFIG_ENV]
    suffixes = [name.removeprefix("KDNS_") for name in known]  # the shared prefix is no clue
    lines = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith("KDNS_") or name in known or _SERVICE_LINK.search(upper):
            continue
        close = difflib.get_close_matches(upper.removeprefix("KDNS_"), suffixes, n=1, cutoff=0.6)
        hint = f" (did you mean KDNS_{close[0]}?)" if close else ""
        lines.append(f"{name} is not a kdns setting{hint}; ignored")
    return lines


def _validate(setting: Setting, key: str, value: object, *, text: bool) -> Any:
    kind = setting.kind
    try:
        return kind.check(kind.from_text(value) if text and isinstance(value, str) else value)
    except _Invalid as exc:
        raise ConfigError(key + exc.key_suffix, str(exc)) from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"invalid TOML: {exc}") from None


def _file_layer(doc: Mapping[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    written: dict[str, str] = {}  # canonical "section.key" -> the name the file used
    values: dict[str, Any] = {}
    for name, path, value in _file_entries(doc):
        if path in written:
            raise ConfigError(name, f"given twice, also as {written[path]}")
        written[path] = name
        setting = _BY_TOML[path]
        values[setting.field] = _validate(setting, name, value, text=False)
        origins[setting.field] = name
    return values


def _file_entries(doc: Mapping[str, Any]) -> list[tuple[str, str, object]]:
    """(name as written, canonical path, value) for every key; unknown keys are errors."""
    entries: list[tuple[str, str, object]] = []
    for top, value in doc.items():
        if top in TOML_ALIASES:
            entries.append((top, TOML_ALIASES[top], value))
        elif top in _ARRAYS:
            if not isinstance(value, list):
                raise ConfigError(top, f"expected an array of tables [[{top}]], got {_show(value)}")  # fmt: skip
            entries.append((top, top, value))
        elif top in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(top, f"expected a table [{top}], got {_show(value)}")
            for key, item in value.items():
                path = f"{top}.{key}"
                if path not in _BY_TOML:
                    raise ConfigError(path, "unknown key")
                entries.append((path, path, item))
        else:
            raise ConfigError(top, "unknown key")
    return entries


def _env_layer(env: Mapping[str, str], origins: dict[str, str]) -> dict[str, Any]:
    # Only our names are read. Kubernetes injects KDNS_SERVICE_HOST, KDNS_PORT, ... into pods
    # when a Service is named "kdns", so unknown KDNS_* variables must not be errors.
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env is None or not env.get(setting.env, "").strip():
            continue  # unset or empty: manifests often template "" for "not set"
        value = _validate(setting, setting.env, env[setting.env], text=True)
        values[setting.field] = (not value) if setting.negated else value
        origins[setting.field] = setting.env
    return values


def _flag_layer(flags: Mapping[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, value in flags.items():
        setting = _BY_FIELD.get(field)
        if setting is None:
            raise ValueError(f"build_config: unknown flag field {field!r}")
        if value is not None:
            key = setting.flag or field
            values[field] = _validate(setting, key, value, text=True)
            origins[field] = key
    return values


# --- rendering -------------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string. (json.dumps is close but lets DEL through and splits surrogates.)"""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # finite by validation; Python's repr is valid TOML
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (ACL rules)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def _render_toml(config: Config) -> str:
    lines = ["# kdns effective configuration"]
    if config.config_file:
        lines.append(f"# read from {config.config_file}, then KDNS_* environment, then flags")
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        for setting in SETTINGS:
            if setting.section != section:
                continue
            value = setting.kind.render(getattr(config, setting.field))
            if value is None:  # TOML has no null: leave the key out, which means the default
                lines.append(f"# {setting.key} is not set (the built-in default applies)")
            else:
                lines.append(f"{setting.key} = {_toml_value(value)}")
    for array in _ARRAYS:  # after every [section]: a top-level key there would join the last
        setting = _BY_TOML[array]
        tables: list[dict[str, object]] = setting.kind.render(getattr(config, setting.field))  # type: ignore[assignment]
        if not tables:
            lines += ["", f"# no [[{array}]]"]
        for table in tables:
            lines += ["", f"[[{array}]]"]
            lines += [f"{key} = {_toml_value(item)}" for key, item in table.items()]
    return "\n".join(lines) + "\n"
