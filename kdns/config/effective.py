"""``Config``, the frozen effective configuration, and ``ConfigError``, the one-line error
every layer raises. ``kdns.config.build_config`` is the only way to a validated ``Config``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdns.dns.networks import PRIVATE  # plain data: forward.allow's default
from kdns.model import GATEWAY_RESOURCES  # plain data: gateway.resources' default
from kdns.values import (
    AllowlistSource,
    BlocklistSource,
    HostPort,
    LocalZoneSource,
    ViewSource,
)


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
    log_zones: tuple[str, ...] = (".",)  # [log] zones: the query log's names (CoreDNS log NAMES)
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
    gateway_service_names: bool = False  # LoadBalancer Services as <name>.<namespace>.<zone>
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
        from kdns.config.settings import render_toml  # the table imports the kinds

        return render_toml(self)


class ConfigError(Exception):
    """A bad setting. ``str()`` is one line: ``config: KEY: PROBLEM``."""

    def __init__(self, key: str, problem: str) -> None:
        # One line, always: the CLI prints it as the whole error report.
        self.key = key
        self.problem = " ".join(problem.split())
        super().__init__(f"config: {key}: {self.problem}")
