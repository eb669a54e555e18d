"""How App's parts are wired to each other from a Config, at start and again on each reload:
the resolver and its stages, the responder's optional parts (ACL, views, rewrite, template,
RRL, autopath), TCP limits, killer mode; and the background tasks' bookkeeping.

``Wiring`` also declares every part App holds (App.__init__ in kdns.app builds them), so the
other pieces of App (kdns.running: sources, data files, reloading, serving) are typed against
one list of parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from kdns.authority.autopath import Autopath
from kdns.authority.hosts import Hosts
from kdns.authority.localzones import ZoneData
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.transfer import TransferPolicy, ZoneTransfers
from kdns.config import Config
from kdns.dns.networks import Networks
from kdns.dns.resolvconf import read_resolv_conf
from kdns.k8s.static import StaticSource
from kdns.metrics import Metrics
from kdns.parts import (
    build_chaos,
    build_rrl,
    fallthrough_zones,
)
from kdns.policy.acl import Acl, parse_rules
from kdns.policy.listfetch import FetchSettings, Lists, build_views, schedule_state
from kdns.policy.views import BlockCounts, Views
from kdns.rules.rewrite import Rewrite
from kdns.rules.template import Templates
from kdns.server.forwarding import Forwarder
from kdns.server.http import HttpEndpoints
from kdns.server.listeners import DnsListeners
from kdns.server.meter import Meter
from kdns.server.rrl import Rrl
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.wire import Responder
from kdns.server.workers import Pool, Seat

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    from kdns.k8s.cluster import ClusterSource
    from kdns.killer.mode import Killer  # only with --killer

log = logging.getLogger("kdns")

Reload = Callable[[], Config]


class Wiring:
    """App's parts (built in kdns.app.App.__init__) and their wiring from a Config."""

    config: Config
    reload_config: Reload | None
    _zone_data: dict[str, ZoneData]
    _zone_stamps: dict[str, Any]
    lists: Lists
    _schedules: tuple[bool, ...]
    blocked_counts: BlockCounts
    registry: Registry
    forwarder: Forwarder | None
    split: bool
    hosts: Hosts | None
    _hosts_stamp: Any
    resolver: Resolver
    stats: Stats
    meter: Meter | None
    responder: Responder
    _rrl_settings: dict[str, Any] | None
    tcp: TcpServer
    listeners: DnsListeners
    autopath: Autopath | None
    metrics: Metrics
    config_hash: str
    killer: Killer | None
    http: HttpEndpoints
    source: StaticSource | None
    cluster: ClusterSource | None
    stopping: asyncio.Event
    lameduck: bool
    stop_signal: int | None
    exit_code: int
    pool: Pool | None
    seat: Seat | None
    _config_digest: bytes | None
    _tasks: list[asyncio.Task[None]]
    _reload_lock: asyncio.Lock

    def _killer(self, config: Config) -> Killer | None:
        """Killer mode (--killer): the wire cache in front of UDP, and the prefetcher."""
        if not config.killer:
            return None
        from kdns.killer.mode import Killer, Settings

        killer = Killer(
            Settings(
                cache_entries=config.killer_cache_entries,
                cache_bytes=config.killer_cache_bytes,
                prefetch=config.killer_prefetch,
                threshold=config.killer_prefetch_threshold,
                share=config.killer_prefetch_share,
                concurrency=config.killer_prefetch_concurrency,
                resolv_conf=config.resolv_conf,
            ),
            self.responder,
            self.stats,
            self.meter,
        )
        killer.attach(self.registry, self.resolver, self.forwarder)
        self.listeners.udp_front = killer.udp_front
        self.metrics.collectors.register(killer.collector())
        return killer

    def _resolver(self, registry: Registry, config: Config | None = None) -> Resolver:
        config = config or self.config
        resolver = Resolver(
            registry,
            forward=self.forwarder is not None,
            authoritative=not (self.split or self.forward_only),
            cuts=tuple(zone for zone, _ in config.forward_zones),
            fallthrough=fallthrough_zones(config),
        )
        resolver.hosts = self.hosts
        resolver.chaos = build_chaos(config)
        previous = getattr(self, "resolver", None)
        if previous is not None:  # Prometheus counters never go backwards across a reload
            resolver.carry_counters(previous)
        return resolver

    def _configure_responder(self, config: Config) -> None:
        """The responder's optional parts, from the config (at start and on reload)."""
        responder = self.responder
        responder.forwarder = self.forwarder
        responder.acl = Acl(parse_rules(config.acl)) if config.acl else None
        allow = Networks(config.forward_allow)
        responder.forward_allow = None if allow.any else allow.allowed
        if self.forwarder is not None:
            log.info(
                "forwarding offered to %s; other clients get REFUSED outside our zones",
                "every client" if allow.any else ", ".join(config.forward_allow) or "nobody",
            )
        policy = TransferPolicy(config.transfer_allow)
        responder.transfers = ZoneTransfers(self.registry, policy) if policy else None
        responder.loadbalance = config.loadbalance
        responder.views = self._views(config)
        if self.autopath is not None:  # the registry may be new, the search domains too
            self.autopath.search = autopath_search(config)
            self.autopath.attach(self.registry)
        responder.autopath = self.autopath
        # [[rewrite]] and [[template]]: built anew on each reload (their memos go with them);
        # the reload's _answers_changed() drops killer mode's replies in the same step.
        responder.rewrite = Rewrite(config.rewrites) if config.rewrites else None
        responder.template = Templates(config.templates) if config.templates else None
        rrl = build_rrl(config)
        if rrl != self._rrl_settings:  # a reload that leaves [rrl] alone keeps its accounts
            self._rrl_settings = rrl
            responder.rrl = None if rrl is None else Rrl(**rrl)

    def _configure_tcp(self, config: Config) -> None:
        self.tcp.idle_timeout = config.tcp_idle_timeout
        self.tcp.max_connections = config.tcp_max_connections
        self.tcp.max_per_client = config.tcp_max_connections_per_client
        self.tcp.set_client_prefixes(config.tcp_client_ipv4_prefix, config.tcp_client_ipv6_prefix)
        self.tcp.write_timeout = config.tcp_write_timeout

    @property
    def forward_only(self) -> bool:
        """kubernetes.enabled = false and no demo or manifests: a plain forwarder (CoreDNS
        without its kubernetes plugin), claiming no cluster zone. Restart-only settings."""
        config = self.config
        return not (config.kubernetes_enabled or config.demo or config.objects)

    @property
    def in_worker(self) -> bool:
        """A worker answers DNS only: HTTP is the first process's, even after a reload."""
        return self.seat is not None

    async def start_http(self, config: Config | None = None) -> None:
        if self.in_worker:
            return
        config = config or self.config
        await self.http.start(
            {
                "health": config.health_listen,
                "ready": config.ready_listen,
                "metrics": config.metrics_listen,
            }
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Background tasks never fail silently, and finished ones are let go."""
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _answers_changed(self) -> None:
        """Something standard mode answers from, other than the registry's data, was just
        swapped in: the forwarder, the resolver, a rebuilt registry, views and block lists, the
        ACL, forward.allow, any config setting. Killer mode's cached replies may all differ:
        they are dropped (and the killer rewired to the parts now in use) in the same step of
        the event loop as the swap, so no datagram read after it is answered from them.

        The registry's own data (cluster objects, local zone records and SOA, the TTL, serial
        moves) needs no call: each flush tells ``Registry.watchers`` exactly what changed.

        The reply memo starts afresh too: its entries are trusted while the registry publishes
        no change, and these swaps (hosts, the resolver, forwarding) clear the derived memo
        without one."""
        self.responder.forget_replies()
        if self.killer is not None:
            self.killer.attach(self.registry, self.resolver, self.forwarder)

    def _views(self, config: Config) -> Views | None:
        """[[views]] with their loaded lists, as their schedules have them now; None (nothing
        on the hot path) without views."""
        self._schedules = schedule_state(config)
        views: Views | None = build_views(config, self.lists, self.registry.zones, self.blocked_counts, registry=self.registry, resolver=self.resolver)  # fmt: skip
        return views


def autopath_search(config: Config) -> tuple[str, ...]:
    """The host search domains autopath walks after the cluster's: ``autopath_search``, or
    when unset those of ``forward.resolv_conf`` (CoreDNS autopath @kubernetes reads its own
    resolv.conf: in a pod with dnsPolicy Default, the node's)."""
    if config.autopath_search is not None:
        return config.autopath_search
    return tuple(read_resolv_conf(config.resolv_conf).search)


def fetch_settings(config: Config) -> FetchSettings:
    """How URL lists are downloaded and kept ([blocking])."""
    return FetchSettings(
        cache_dir=config.blocking_cache_dir,
        timeout=config.blocking_download_timeout,
        attempts=config.blocking_download_attempts,
        max_size=config.blocking_max_download_size,
        min_share=config.blocking_min_share,
    )
