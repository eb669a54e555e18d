"""Value syntax shared by the settings (a leaf: it imports nothing of kdns, so the lower layers
can take these plain values without importing the config): host:port, upstreams, DNS names,
[[zones]]/[[views]]/[[blocklists]] entries, and the error a value raises (the layer reading
it adds the key)."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

HostPort = tuple[str, int]


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


# Any label DNS carries (RFC 2181 11), as zone names hold them: letters, digits, '-' and '_'
# anywhere (_acme-challenge, _tcp), nothing that needs escaping in a zone file.
_ZONE_LABEL = re.compile(r"[a-z0-9_-]{1,63}")


def _normalise_zone(text: str) -> str:
    """A zone name (forward, local or gateway zone): like ``_normalise_name``, but labels may
    hold '_' and start or end with '-' (``_acme-challenge.one.home.example.com``)."""
    name = text.strip().lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_ZONE_LABEL.fullmatch(label) for label in labels):
        raise _Invalid(f"expected a DNS name like home.example.com, got {_show(text)}")
    return name


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
    fallthrough: bool = False  # names without records go to the zone's upstreams
    format: str = "zone"  # the file's format: "zone" (RFC 1035) or "hosts" (/etc/hosts)


class Schedule(NamedTuple):
    """When a view or a list blocks (``schedule = {time_zone, mon = "08:00-17:00", ...}``):
    per weekday (0 = Monday) the minute ranges [start, end) it applies; ``pause``: the ranges
    are when blocking pauses instead (AdGuard Home's schedules)."""

    time_zone: str
    days: tuple[tuple[tuple[int, int], ...], ...]  # 7 entries, Monday first
    pause: bool = False


class ViewSource(NamedTuple):
    """One ``[[views]]`` entry: clients in ``networks`` see ``zones`` (None: every zone of
    kdns) and get ``blocklists`` applied, except what ``allowlists`` hold."""

    name: str
    networks: tuple[str, ...]
    zones: tuple[str, ...] | None
    blocklists: tuple[str, ...]
    allowlists: tuple[str, ...] = ()
    schedule: Schedule | None = None
    # [gateway] gateway_classes / ingress_classes for this view's clients (None: [gateway]'s;
    # (): any class): the gateway zones' names answered from those classes only.
    gateway_classes: tuple[str, ...] | None = None
    ingress_classes: tuple[str, ...] | None = None


class BlocklistSource(NamedTuple):
    """One ``[[blocklists]]`` entry (``file`` or ``url``)."""

    name: str
    file: str | None
    format: str  # "auto" | "hosts" | "domains" | "adblock"
    answer: str  # "nxdomain" | "nodata" | "null"
    url: str | None = None
    refresh: float = 86400.0  # seconds between downloads of ``url`` (0: at start only)
    schedule: Schedule | None = None


class AllowlistSource(NamedTuple):
    """One ``[[allowlists]]`` entry (``file`` or ``url``): names a view never blocks."""

    name: str
    file: str | None
    format: str
    url: str | None = None
    refresh: float = 86400.0


LOCAL_ZONE_TTL = 300  # [[zones]] ttl's default (kdns.authority.localzones.DEFAULT_TTL)


class ForwardZone(tuple[str, tuple[str, ...]]):
    """One ``[forward] zones`` entry. It unpacks as ``(name, upstreams)``, as entries always
    have; ``options`` are its own settings as sorted ``(key, value)`` pairs (``policy``,
    ``tls_servername``, ``tls_ca_file``, ``force_tcp``, ``prefer_udp``, ``max_concurrent``,
    ``max_fails``, ``health_check``, ``success_ttl``, ``denial_ttl``), as each CoreDNS server
    block has its own ``forward`` and ``cache``. Without options it equals the plain pair."""

    options: tuple[tuple[str, object], ...]

    def __new__(
        cls, name: str, upstreams: tuple[str, ...], options: tuple[tuple[str, object], ...] = ()
    ) -> ForwardZone:
        self = super().__new__(cls, (name, upstreams))
        self.options = tuple(sorted(options))
        return self

    def option(self, key: str, default: object = None) -> object:
        return dict(self.options).get(key, default)

    def __reduce__(self) -> tuple[object, ...]:
        return (ForwardZone, (self[0], self[1], self.options))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ForwardZone):
            return tuple.__eq__(self, other) and self.options == other.options
        if isinstance(other, tuple):
            return not self.options and tuple.__eq__(self, other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return tuple.__hash__(self) if not self.options else hash((tuple(self), self.options))

    def __repr__(self) -> str:
        extra = f", {dict(self.options)!r}" if self.options else ""
        return f"ForwardZone({self[0]!r}, {self[1]!r}{extra})"


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


def toml_value(value: object) -> str:
    """A TOML value: boolean, number, string, array or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # finite by validation; Python's repr is valid TOML
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (ACL rules)
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")
