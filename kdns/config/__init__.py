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
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from kdns.config.kinds import (
    _AclRules,
    _Address,
    _Allowlist,
    _Blocklist,
    _Bool,
    _Choice,
    _ClassName,
    _ForwardZone,
    _Fraction,
    _GatewayRef,
    _GatewayZone,
    _HostsEntry,
    _Int,
    _IpAddress,
    _Kind,
    _List,
    _Listen,
    _LocalZone,
    _MetaFilter,
    _Name,
    _Networks,
    _Path,
    _Resource,
    _Rules,
    _Seconds,
    _ServiceRef,
    _Tables,
    _Text,
    _Upstream,
    _View,
    _Workers,
    _Zone,
    _ZoneOrRoot,
)
from kdns.dns.networks import PRIVATE  # plain data: forward.allow's default
from kdns.model import GATEWAY_RESOURCES  # plain data: gateway.resources' default
from kdns.values import (
    AllowlistSource,
    BlocklistSource,
    HostPort,
    LocalZoneSource,
    Upstream,
    ViewSource,
    _Invalid,
    _show,
    format_hostport,
    parse_hostport,
    parse_upstream,
    toml_string,
    toml_value,
)

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
    "toml_value",
]


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
    autopath: bool = False  # CoreDNS autopath @kubernetes (needs the Pod watch)
    autopath_search: tuple[str, ...] | None = None  # host search domains; None: resolv.conf's
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
    log_classes: tuple[str, ...] = ("all",)  # [log] classes (CoreDNS log class)
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
    forward_prefer_udp: bool = False  # CoreDNS prefer_udp: TCP clients' queries go up over UDP
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
    gateway_classes: tuple[str, ...] = ()  # Gateways of these GatewayClasses only
    ingress_classes: tuple[str, ...] = ()  # Ingresses of these IngressClasses only
    gateway_require_accepted: bool = True  # a route's status must say its Gateway accepted it
    gateway_fallthrough: bool = False  # unclaimed gateway-zone names go upstream
    gateway_ttl: int | None = None  # gateway names' TTL (None: kubernetes.ttl)
    gateway_nameserver: str | None = None  # the gateway zones' NS name (ns.dns.<zone>)
    gateway_nameserver_addresses: tuple[str, ...] = ()  # its glue (default: dns_service's)
    # Local zones ([[zones]], --zone-file), views by client network ([[views]]) and the block
    # lists they apply ([[blocklists]]): TOML arrays of tables (kdns.authority.localzones, .views).
    local_zones: tuple[LocalZoneSource, ...] = ()
    views: tuple[ViewSource, ...] = ()
    blocklists: tuple[BlocklistSource, ...] = ()
    allowlists: tuple[AllowlistSource, ...] = ()  # [[allowlists]]: names views never block
    # [[rewrite]] and [[template]] (kdns.rules.rewrite.RewriteRule, kdns.rules.template.TemplateSource)
    rewrites: tuple[Any, ...] = ()
    templates: tuple[Any, ...] = ()
    # [blocking]: where downloaded lists are kept (the last good copy, used at start when the
    # source is down) and how they are fetched (kdns.policy.listfetch).
    blocking_cache_dir: str | None = None
    blocking_download_timeout: float = 60.0
    blocking_download_attempts: int = 3
    blocking_max_download_size: int = 64 << 20
    blocking_min_share: float = 0.5  # a download below this share of the last good one is refused
    hosts_files: tuple[LocalZoneSource, ...] = ()  # --hosts-file: folded into local_zones
    # [hosts]: CoreDNS's hosts plugin (kdns.authority.hosts), names in any zone; off with neither a
    # file nor entries. [chaos]: CoreDNS's chaos plugin (kdns.authority.chaos).
    hosts_file: str | None = None
    hosts_entries: tuple[str, ...] = ()
    hosts_zones: tuple[str, ...] = (".",)
    hosts_ttl: int = 3600
    hosts_fallthrough: bool = False
    hosts_no_reverse: bool = False
    chaos: bool = False
    chaos_version: str | None = None  # default "kdns-<version>"
    chaos_authors: tuple[str, ...] = ()
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


class _SearchDomains(_List):
    """``kubernetes.autopath_search``: unset means the search domains of ``forward.resolv_conf``
    (CoreDNS autopath @kubernetes reads its resolv.conf); ``[]`` means none."""

    def render(self, value: tuple[Any, ...] | None) -> list[object] | None:  # type: ignore[override]
        return None if value is None else super().render(value)


_LOG_CLASSES = ("success", "denial", "error", "all")  # CoreDNS log plugin's classes

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
    Setting("external_zones", "kubernetes.external_zones", _List(_Zone()), "external-zone"),
    Setting("pods", "kubernetes.pods", _PODS, "pods"),
    Setting("ttl", "kubernetes.ttl", _Int(0, 3600), "ttl"),
    Setting("endpoint_pod_names", "kubernetes.endpoint_pod_names", _Bool(), "endpoint-pod-names"),
    Setting("autopath", "kubernetes.autopath", _Bool(), "autopath"),
    Setting(
        "autopath_search", "kubernetes.autopath_search", _SearchDomains(_Name()), "autopath-search"
    ),
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
    Setting("forward_prefer_udp", "forward.prefer_udp", _Bool()),
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
    Setting("gateway_classes", "gateway.gateway_classes", _List(_ClassName())),
    Setting("ingress_classes", "gateway.ingress_classes", _List(_ClassName())),
    Setting("gateway_require_accepted", "gateway.require_accepted", _Bool()),
    Setting("gateway_fallthrough", "gateway.fallthrough", _Bool()),
    Setting("gateway_ttl", "gateway.ttl", _Int(0, 86400)),
    Setting("gateway_nameserver", "gateway.nameserver", _Zone()),
    Setting("gateway_nameserver_addresses", "gateway.nameserver_addresses", _List(_IpAddress())),
    Setting("metrics_listen", "metrics.listen", _SERVICE, "metrics-listen"),
    Setting("metrics_compat", "metrics.compat", _Choice("none", "coredns"), "metrics-compat"),
    Setting("health_listen", "health.listen", _SERVICE, "health-listen"),
    Setting("lameduck", "health.lameduck", _Seconds(zero_ok=True), "lameduck"),
    Setting("ready_listen", "ready.listen", _SERVICE, "ready-listen"),
    Setting("log_level", "log.level", _LEVELS, "log-level"),
    Setting("log_format", "log.format", _Choice("text", "json"), "log-format"),
    Setting("query_log", "log.query_log", _Bool(), "query-log"),
    Setting("log_classes", "log.classes", _List(_Choice(*_LOG_CLASSES), empty_ok=False)),
    Setting("hosts_file", "hosts.file", _Path()),
    Setting("hosts_entries", "hosts.entries", _List(_HostsEntry())),
    Setting("hosts_zones", "hosts.zones", _List(_ZoneOrRoot(), empty_ok=False)),
    Setting("hosts_ttl", "hosts.ttl", _Int(0, 2_147_483_647)),
    Setting("hosts_fallthrough", "hosts.fallthrough", _Bool()),
    Setting("hosts_no_reverse", "hosts.no_reverse", _Bool()),
    Setting("chaos", "chaos.enabled", _Bool()),
    Setting("chaos_version", "chaos.version", _Text()),
    Setting("chaos_authors", "chaos.authors", _List(_Text())),
    Setting("blocking_cache_dir", "blocking.cache_dir", _Path()),
    Setting("blocking_download_timeout", "blocking.download_timeout", _Seconds(zero_ok=False)),
    Setting("blocking_download_attempts", "blocking.download_attempts", _Int(1, 10)),
    Setting("blocking_max_download_size", "blocking.max_download_size", _Int(1024, 1 << 32)),
    Setting("blocking_min_share", "blocking.min_share", _Fraction()),
    # Arrays of tables, at the top level of the file: [[zones]], [[views]], [[blocklists]].
    Setting("local_zones", "zones", _Tables(_LocalZone()), "zone-file"),
    Setting("hosts_files", "hosts_files", _Tables(_LocalZone("hosts")), "hosts-file"),
    Setting("views", "views", _Tables(_View())),
    Setting("blocklists", "blocklists", _Tables(_Blocklist())),
    Setting("allowlists", "allowlists", _Tables(_Allowlist())),
    # CoreDNS's rewrite and template as stages of their own (kdns.rules.rewrite, .template).
    Setting("rewrites", "rewrite", _Rules("rewrite")),
    Setting("templates", "template", _Rules("template")),
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
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    if file is not None:
        layer: dict[str, str] = {}
        from_file = _file_layer(_read_toml(file), layer)
        layers.append((_relative_to(os.path.dirname(os.path.abspath(file)), from_file), layer))
    env_origins: dict[str, str] = {}
    flag_origins: dict[str, str] = {}
    layers.append((_env_layer(env, env_origins), env_origins))
    layers.append((_flag_layer(flags or {}, flag_origins), flag_origins))
    zones: list[tuple[str, str, Any]] = []  # (field, the key that gave it, zone), all layers
    for layer_values, layer_origins in layers:
        for field in _MERGED:
            if field in layer_values:
                key = layer_origins[field]
                zones += [(field, key, zone) for zone in layer_values.pop(field)]
                origins[field] = key
        values.update(layer_values)
        origins.update(layer_origins)
    if zones:
        values.update(_merge_zones(zones))
    if values.get("hosts_files"):  # --hosts-file ZONE=PATH is a [[zones]] format = "hosts"
        origins.setdefault("local_zones", origins["hosts_files"])
        values["local_zones"] = _Tables(_LocalZone()).check(
            [*values.get("local_zones", ()), *values.pop("hosts_files")]
        )
    _check_conflicts(values, origins)
    return Config(**values, config_file=file)


# [[zones]] of the file, KDNS_ZONE_FILE / KDNS_HOSTS_FILE and --zone-file / --hosts-file add up
# (a flag adds a zone to the file's, it does not replace them); one zone given twice is an error.
_MERGED = ("local_zones", "hosts_files")


def _merge_zones(zones: list[tuple[str, str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    out: dict[str, list[Any]] = {field: [] for field in _MERGED}
    for field, key, zone in zones:
        if zone.name in seen:
            raise ConfigError(key, f"zone {zone.name} is already defined by {seen[zone.name]}")
        seen[zone.name] = key
        out[field].append(zone)
    return {field: tuple(items) for field, items in out.items() if items}


def _relative_to(base: str, values: dict[str, Any]) -> dict[str, Any]:
    """A config file's relative paths name files beside it (as nginx, CoreDNS and systemd
    read theirs), whatever the working directory: every path setting and every table's
    ``file`` is made absolute against the file's directory."""

    def fix(path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))

    out = dict(values)
    for field, value in values.items():
        kind = _BY_FIELD[field].kind
        if isinstance(kind, _Path) and isinstance(value, str):
            out[field] = fix(value)
        elif isinstance(kind, _List) and isinstance(kind.item, _Path):
            out[field] = tuple(fix(item) for item in value)
        elif isinstance(value, tuple) and value and all(hasattr(v, "_replace") for v in value):
            out[field] = tuple(
                v._replace(file=fix(v.file)) if isinstance(getattr(v, "file", None), str) else v
                for v in value
            )
    return out


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
    # A forward zone named like a gateway zone names where the gateway zone's unclaimed names
    # go ([gateway] fallthrough); without fallthrough it would never be asked.
    local_fallthrough = {z.name for z in values.get("local_zones", ()) if z.fallthrough}
    for zone, _ in values.get("forward_zones", ()):
        if zone in values.get("gateway_zones", ()) and not values.get("gateway_fallthrough"):
            if zone in local_fallthrough:
                continue
            raise ConfigError(
                origins["forward_zones"],
                f"{zone} is also a gateway zone, so it would never be forwarded: set [gateway] "
                "fallthrough = true to send its unclaimed names there, or forward a zone below it",
            )
    _check_local_zones(values, origins)
    if values.get("autopath") and values.get("pods") == "disabled":
        conflict("autopath", "pods", "autopath needs the Pod watch (a client's namespace is that of the pod with its IP); set kubernetes.pods to insecure or verified")  # fmt: skip
    if values.get("autopath") and values.get("kubernetes_enabled") is False:
        conflict("autopath", "kubernetes_enabled", "autopath walks the cluster's search path")
    if values.get("forward") is False:
        for field in ("upstreams", "forward_zones"):
            if values.get(field):
                conflict("forward", field, "forwarding is off, so no upstream would be asked")


def _gateway_fallthrough(values: Mapping[str, Any], zone: str) -> bool:
    return bool(values.get("gateway_fallthrough")) and zone in values.get("gateway_zones", ())


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
        if zone.name in forwarded and not (zone.fallthrough or _gateway_fallthrough(values, zone.name)):  # fmt: skip
            raise ConfigError(
                f"{key}[{index}].name",
                f"{zone.name} is also in {origins['forward_zones']}: a zone is served or "
                "forwarded, not both (set fallthrough = true on the zone to send its names "
                "without records there, or forward a zone below it)",
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
        if (view.gateway_classes is not None or view.ingress_classes is not None) and not values.get("gateway_zones"):  # fmt: skip
            field = "gateway_classes" if view.gateway_classes is not None else "ingress_classes"
            raise ConfigError(f"{key}[{index}].{field}", "class filters need [gateway] zones")
        for at, list_name in enumerate(view.blocklists):
            if list_name not in lists:
                raise ConfigError(
                    f"{key}[{index}].blocklists[{at}]", f"no [[blocklists]] named {list_name!r}"
                )
        allowed = {allowlist.name for allowlist in values.get("allowlists", ())}
        for at, list_name in enumerate(view.allowlists):
            if list_name not in allowed:
                raise ConfigError(
                    f"{key}[{index}].allowlists[{at}]", f"no [[allowlists]] named {list_name!r}"
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
                lines.append(f"{setting.key} = {toml_value(value)}")
    for array in _ARRAYS:  # after every [section]: a top-level key there would join the last
        setting = _BY_TOML[array]
        tables: list[dict[str, object]] = setting.kind.render(getattr(config, setting.field))  # type: ignore[assignment]
        if not tables:
            lines += ["", f"# no [[{array}]]"]
        for table in tables:
            lines += ["", f"[[{array}]]"]
            lines += [f"{key} = {toml_value(item)}" for key, item in table.items()]
    return "\n".join(lines) + "\n"
