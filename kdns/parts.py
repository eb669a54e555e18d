"""The parts an App is built from, each from a Config: the registry (zones, local zones,
Gateway settings), the forwarder (routes, upstream groups, cache), response rate limiting,
block lists. Kept apart from the lifecycle (kdns.app) so what a setting builds is easy to find.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kdns.authority.chaos import Chaos
from kdns.authority.gateway import GatewaySettings
from kdns.authority.hosts import Hosts, parse_lines
from kdns.authority.hosts import read_file as read_hosts_file
from kdns.authority.localzones import LocalZoneError, ZoneData, load_hosts
from kdns.authority.localzones import load as load_zone
from kdns.authority.registry import Registry
from kdns.authority.zones import ZoneSet
from kdns.config import Config
from kdns.dns.resolvconf import read_resolv_conf
from kdns.forward.cache import ResponseCache
from kdns.forward.upstreams import ForwardGroup
from kdns.k8s.client import in_cluster
from kdns.policy.blocklist import BlockList
from kdns.server.forwarding import Forwarder, Route, RoutePlanError, plan_routes
from kdns.values import LocalZoneSource

log = logging.getLogger("kdns")


class StartupError(Exception):
    """Cannot start; str() is the one line printed before exiting 1."""


def build_rrl(config: Config) -> dict[str, Any] | None:
    """Response rate limiting's settings (kdns.server.rrl.Rrl keywords), None when off."""
    if not config.rrl:
        return None
    return {
        "responses_per_second": config.rrl_responses_per_second,
        "slip": config.rrl_slip,
        "ipv4_prefix": config.rrl_ipv4_prefix,
        "ipv6_prefix": config.rrl_ipv6_prefix,
        "exempt": config.rrl_exempt,
    }


def gateway_settings(config: Config) -> GatewaySettings:
    return GatewaySettings(
        zones=config.gateway_zones,
        gateways=config.gateways,
        label=config.gateway_label or "",
        annotation=config.gateway_annotation or "",
        resources=config.gateway_resources,
        gateway_classes=config.gateway_classes,
        ingress_classes=config.ingress_classes,
        require_accepted=config.gateway_require_accepted,
        fallthrough=config.gateway_fallthrough,
        service_names=config.gateway_service_names,
        ttl=config.gateway_ttl,
        nameserver=config.gateway_nameserver or "",
        nameserver_addresses=config.gateway_nameserver_addresses,
    )


def fallthrough_zones(config: Config) -> tuple[str, ...]:
    """Zones whose names without records are forwarded ([gateway] fallthrough, [[zones]]
    fallthrough) instead of answered NXDOMAIN."""
    zones = [zone.name for zone in config.local_zones if zone.fallthrough]
    if config.gateway_fallthrough:
        zones += config.gateway_zones
    return tuple(dict.fromkeys(zones))


def load_local_zone(zone: LocalZoneSource) -> ZoneData:
    """One [[zones]] entry's data: a zone file, a hosts file (format = "hosts") or TOML
    records; raises LocalZoneError."""
    if zone.format == "hosts" and zone.file is not None:
        return load_hosts(zone.name, zone.file, zone.ttl)
    return load_zone(zone.name, zone.file, zone.records, zone.ttl)


def load_local_zones(config: Config) -> dict[str, ZoneData]:
    """Every [[zones]] entry's data (parsed zone file or TOML records); StartupError naming the
    zone when one cannot be served."""
    out = {}
    for index, zone in enumerate(config.local_zones):
        try:
            out[zone.name] = load_local_zone(zone)
        except LocalZoneError as exc:
            raise StartupError(f"zones[{index}] ({zone.name}): {exc}") from None
    return out


def build_registry(config: Config, local: dict[str, ZoneData] | None = None) -> Registry:
    """The registry for ``config``, local zones filled from ``local`` (loaded when None)."""
    zones = ZoneSet.build(
        config.cluster_domain,
        config.external_zones,
        config.ttl,
        gateway_zones=config.gateway_zones,
        local_zones=tuple((zone.name, zone.ttl) for zone in config.local_zones),
        gateway_ttl=config.gateway_ttl,
    )
    registry = Registry(
        zones,
        ttl=config.ttl,
        pods=config.pods,
        endpoint_pod_names=config.endpoint_pod_names,
        dns_service=config.dns_service,
        gateway=gateway_settings(config),
        client_index=config.autopath,  # autopath: client IP -> namespace
    )
    if local is None:
        local = load_local_zones(config)
    for zone in config.local_zones:
        data = local.get(zone.name)
        if data is not None:
            registry.set_local(data)
    return registry


def build_forwarder(config: Config) -> tuple[Forwarder | None, bool]:
    """The forwarder for names outside our zones (None: --no-forward or nowhere to send) and
    whether split (sidecar) mode is on. Raises StartupError for a plan that cannot work."""
    if not config.forward:
        return None, False
    resolv = read_resolv_conf(config.resolv_conf)
    try:
        plan = plan_routes(
            upstreams=config.upstreams,
            forward_zones=config.forward_zones,
            split=config.split,
            in_pod=in_cluster(),
            cluster_domain=config.cluster_domain,
            cluster_domains=config.cluster_domains,
            cluster_nameserver=config.cluster_nameserver,
            resolv_nameservers=resolv.nameservers,
            resolv_search=resolv.search,
        )
    except RoutePlanError as exc:
        raise StartupError(f"forward: {exc}") from None
    if not plan.routes:
        log.warning("forwarding: no upstreams (none given, none in %s)", config.resolv_conf)
        return None, plan.split
    routes = [_route(config, entry) for entry in plan.routes]
    cache = None
    if config.cache:
        cache = ResponseCache(
            success_capacity=config.cache_success,
            denial_capacity=config.cache_denial,
            success_ttl=config.cache_success_ttl,
            denial_ttl=config.cache_denial_ttl,
            min_ttl=config.cache_min_ttl,
            min_denial_ttl=config.cache_min_ttl,
            serve_stale=config.cache_serve_stale,
            prefetch=config.cache_prefetch,
        )
    for route in routes:
        log.info("forwarding %s to %s", route.zone, ", ".join(map(str, route.group.upstreams)))
    if plan.split:
        log.info("split mode: %s go to the cluster nameserver", ", ".join(plan.cluster_domains))
    return Forwarder(routes, cache), plan.split


def _route(config: Config, entry: tuple[str, tuple[str, ...]]) -> Route:
    """One forward route: the [forward] settings, overridden by a [forward] zones entry's own
    (policy, tls_servername, tls_ca_file, force_tcp, prefer_udp, max_concurrent, max_fails,
    health_check, and the cache's success_ttl/denial_ttl caps for its answers)."""
    zone, upstreams = entry
    own: dict[str, Any] = dict(getattr(entry, "options", ()))
    group = ForwardGroup(
        upstreams,
        policy=own.get("policy", config.forward_policy),
        max_concurrent=own.get("max_concurrent", config.forward_max_concurrent),
        timeout=config.forward_timeout,
        max_fails=own.get("max_fails", config.forward_max_fails),
        health_check=own.get("health_check", config.forward_health_check),
        tls_ca_file=own.get("tls_ca_file", config.tls_ca_file),
        force_tcp=own.get("force_tcp", False),
        prefer_udp=own.get("prefer_udp", config.forward_prefer_udp),
        tls_servername=own.get("tls_servername"),
    )
    success, denial = own.get("success_ttl"), own.get("denial_ttl")
    caps = None if success is None and denial is None else (success, denial)
    return Route(zone, group, caps=caps)


def build_hosts(config: Config) -> Hosts | None:
    """The [hosts] stage (kdns.authority.hosts): inline entries, then the file's; None when neither
    is given. Raises HostsError (naming file and line) when the file cannot be used."""
    if config.hosts_file is None and not config.hosts_entries:
        return None
    entries = parse_lines(config.hosts_entries, "hosts.entries")
    if config.hosts_file is not None and not os.path.exists(config.hosts_file):
        # CoreDNS hosts: "File does not exist" is a warning, and the file is read once it
        # appears (k3s's NodeHosts before its ConfigMap key is mounted); kdns does the same.
        log.warning("hosts: %s does not exist (yet): read once it appears", config.hosts_file)
    elif config.hosts_file is not None:
        entries += read_hosts_file(config.hosts_file)
    return Hosts(
        entries,
        zones=config.hosts_zones,
        ttl=config.hosts_ttl,
        fallthrough=config.hosts_fallthrough,
        no_reverse=config.hosts_no_reverse,
    )


def build_chaos(config: Config) -> Chaos | None:
    """The [chaos] stage (kdns.authority.chaos): CH TXT version.bind, hostname.bind; None when off."""
    if not config.chaos:
        return None
    from kdns import __version__

    return Chaos(config.chaos_version or f"kdns-{__version__}", config.chaos_authors)


def load_list(file: str, fmt: str) -> BlockList:
    """A block list file, read and indexed (OSError when it cannot be read), logged with its
    rules and the lines skipped by reason."""
    from kdns.policy.listfetch import describe

    blocklist = BlockList.load(file, file, fmt, "nxdomain")
    log.info("block list %s: %s", file, describe(blocklist))
    return blocklist


def zone_shape(config: Config) -> list[tuple[str, int]]:
    """What of [[zones]] the ZoneSet is built from: names and default TTLs (SOA minimum)."""
    return [(zone.name, zone.ttl) for zone in config.local_zones]
