"""The settings table: each setting once, with its ``Config`` field, TOML key, environment
variable, flag and kind (how it parses and validates, kdns.config.kinds); and the TOML
rendering of a ``Config`` from it (``kdns check-config`` prints that)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdns.config.effective import Config
from kdns.config.kinds import (
    _Address,
    _Bool,
    _Choice,
    _ClassName,
    _Fraction,
    _GatewayRef,
    _GatewayZone,
    _HostsEntry,
    _Int,
    _IpAddress,
    _Kind,
    _List,
    _Listen,
    _MetaFilter,
    _Name,
    _Path,
    _Resource,
    _Seconds,
    _ServiceRef,
    _Text,
    _Upstream,
    _Workers,
    _Zone,
    _ZoneOrRoot,
)
from kdns.config.lists import (
    _Allowlist,
    _Blocklist,
    _Networks,
    _View,
)
from kdns.config.tables import (
    _AclRules,
    _ForwardZone,
    _LocalZone,
    _Rules,
    _Tables,
)
from kdns.values import (
    toml_value,
)


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
    Setting("gateway_service_names", "gateway.service_names", _Bool()),
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
    # CoreDNS: a log plugin in one server block logs the queries of that block's zones only.
    Setting("log_zones", "log.zones", _List(_ZoneOrRoot(), empty_ok=False)),
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


def render_toml(config: Config) -> str:
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
