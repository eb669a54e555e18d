"""Process lifecycle: one Config in; start, sync, serve, lameduck, stop; reload in between.

start -> load or watch the cluster -> bind DNS (UDP+TCP per listen address) and HTTP -> serve.
SIGTERM/SIGINT: lameduck (keep answering, /ready 503) -> stop accepting -> finish TCP -> exit 0;
a second signal exits at once. SIGHUP, or a change of the config file's content: reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.authority.autopath import Autopath
from kdns.authority.hosts import Hosts, HostsError
from kdns.authority.localzones import LocalZoneError, ZoneData
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.transfer import TransferPolicy, ZoneTransfers
from kdns.config import Config, ConfigError, format_hostport
from kdns.dns.networks import Networks
from kdns.dns.resolvconf import read_resolv_conf
from kdns.k8s.client import ClusterConfigError, api_client
from kdns.k8s.sources import SourceError
from kdns.k8s.static import StaticSource, copy_objects, used_counts, used_kinds
from kdns.logs import setup_logging
from kdns.metrics import AutopathMetrics, BlockedQueries, BlockListMetrics, Metrics
from kdns.metrics import Sources as MetricSources
from kdns.metrics.pod import fold as fold_snapshot
from kdns.metrics.pod import parse_snapshot
from kdns.parts import (
    StartupError,
    build_chaos,
    build_forwarder,
    build_hosts,
    build_registry,
    build_rrl,
    fallthrough_zones,
    gateway_settings,
    load_local_zone,
    load_local_zones,
    zone_shape,
)
from kdns.policy.acl import Acl, parse_rules
from kdns.policy.blocklist import file_stamp
from kdns.policy.listfetch import FetchSettings, Lists, build_views, schedule_state
from kdns.policy.views import BlockCounts, Views
from kdns.rules.rewrite import Rewrite
from kdns.rules.template import Templates
from kdns.server import querylog, workers
from kdns.server.http import HttpEndpoints
from kdns.server.listeners import DnsListeners, ListenError
from kdns.server.meter import Meter
from kdns.server.rrl import Rrl
from kdns.server.sockets import set_freebind
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.wire import Responder
from kdns.server.workers import Pool, Seat

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    from kdns.k8s.cluster import ClusterSource
    from kdns.killer.mode import Killer  # only with --killer

log = logging.getLogger("kdns")

Reload = Callable[[], Config]

# Settings a reload cannot change in place: they pick the cluster source or the process shape.
RESTART_ONLY = (
    "demo",
    "objects",
    "kubeconfig",
    "kubernetes_enabled",
    "workers",
    "killer",
    "killer_cache_entries",
    "killer_cache_bytes",
    "killer_prefetch",
    "killer_prefetch_threshold",
    "killer_prefetch_share",
    "killer_prefetch_concurrency",
    "metrics_compat",  # the exporter is built once, at start
    "autopath",  # the Pod watch and the registry's client index are set up at start
    "startup_timeout",  # only the first sync waits on it
)
# Gateway zones and their filters: part of the registry's shape; with a cluster, they also pick
# which Gateway API / Ingress resources are watched (started or stopped on reload).
GATEWAY_SETTINGS = (
    "gateway_zones",
    "gateways",
    "gateway_label",
    "gateway_annotation",
    "gateway_resources",
    "gateway_classes",
    "ingress_classes",
    "gateway_require_accepted",
    "gateway_fallthrough",
    "gateway_ttl",
    "gateway_nameserver",
    "gateway_nameserver_addresses",
)
# Settings baked into the registry's rendered answers: a change re-renders into a new registry.
REGISTRY_SHAPE = (
    "cluster_domain",
    "external_zones",
    "pods",
    "endpoint_pod_names",
    "dns_service",
    *GATEWAY_SETTINGS,
)
# Settings of the forwarder (routes, upstream groups, cache): a change builds a new one.
FORWARDING = (
    "forward",
    "upstreams",
    "split",
    "cluster_domains",
    "cluster_nameserver",
    "resolv_conf",
    "tls_ca_file",
)
FORWARDING_PREFIXES = ("forward_", "cache")


def config_hash(config: Config) -> str:
    """A short, stable hash of an effective config (every setting, whatever its source)."""

    text = json.dumps(_plain(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    """``value`` as JSON data, the same in every process (sets sorted, no object ids). Not
    dataclasses.asdict: it rebuilds tuple subclasses from their items, which ForwardZone (a
    (name, upstreams) pair carrying its own options) cannot be built from."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    options = getattr(value, "options", None)
    if isinstance(value, tuple) and isinstance(options, tuple):  # ForwardZone
        return [_plain(tuple(value)), _plain(options)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(_plain(item), sort_keys=True) for item in value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


class _ConfigHash(Collector):
    """kdns_config_last_applied_hash_info{hash}: the config the process runs."""

    def __init__(self, current: Callable[[], str]) -> None:
        self.current = current

    def collect(self) -> Iterator[InfoMetricFamily]:
        yield InfoMetricFamily(
            "kdns_config_last_applied_hash",
            "The effective config last applied (at start or by a reload), as a hash",
            value={"hash": self.current()},
        )


class App:
    def __init__(self, config: Config, reload: Reload | None = None) -> None:
        self.config = config
        self.reload_config = reload
        # Local zones' data and the stamps of their files; block lists by (file, format), with
        # the stamp each file had when last looked at (reloaded when it moves).
        self._zone_data = load_local_zones(config)
        self._zone_stamps = {z.name: file_stamp(z.file) for z in config.local_zones if z.file}
        # Block lists and allowlists (files and URLs; kdns.policy.listfetch), and the state of
        # every schedule when the views were last built.
        self.lists = Lists(fetch_settings(config))
        self._schedules = schedule_state(config)
        self.blocked_counts: BlockCounts = {}  # (view, list) -> blocked queries, across reloads
        self.lists.load_now(config)
        self.registry = build_registry(config, self._zone_data)
        self.forwarder, self.split = build_forwarder(config)
        self.hosts = _start_hosts(config)  # [hosts] (kdns.authority.hosts); its file's stamp:
        self._hosts_stamp = file_stamp(config.hosts_file) if config.hosts_file else None
        self.resolver = self._resolver(self.registry)
        self.stats = Stats()
        # Metrics off (--metrics-listen off): no meter, so queries skip accounting entirely.
        self.meter = Meter() if config.metrics_listen is not None else None
        self.responder = Responder(
            self.registry.answers, self.resolver.resolve, config.udp_size, self.meter
        )
        self.responder.derived = self.registry.derived
        self._rrl_settings: dict[str, Any] | None = None
        self.responder.stats = self.stats
        self.tcp = TcpServer(
            self.responder,
            self.stats,
            idle_timeout=config.tcp_idle_timeout,
            max_connections=config.tcp_max_connections,
        )
        self._configure_tcp(config)
        set_freebind(config.freebind)  # server.freebind: every socket bound from here on
        self.listeners = DnsListeners(
            self.responder, self.stats, self.tcp, reuse_port=config.workers != 1
        )
        self.listeners.set_query_log(config.query_log)
        querylog.noting = config.query_log  # blocked replies name their list in the log
        querylog.set_classes(config.log_classes)  # [log] classes (CoreDNS log class)
        self.autopath = Autopath(self.registry, autopath_search(config)) if config.autopath else None  # fmt: skip
        self._configure_responder(config)
        server = "dns://" + format_hostport(config.listen[0]) if config.listen else "dns://:53"
        sources = MetricSources(
            self.stats,
            self.meter,
            lambda: self.registry,
            lambda: self.resolver,
            lambda: self.cluster,
            server,
            lambda: self.forwarder,
        )
        self.metrics = Metrics(sources, config.metrics_compat, self._worker_counts)
        self.metrics.collectors.register(BlockedQueries(lambda: self.blocked_counts))
        # The effective config last applied (at start, then by each reload that applied).
        self.config_hash = config_hash(config)
        self.metrics.collectors.register(_ConfigHash(lambda: self.config_hash))
        self.metrics.collectors.register(BlockListMetrics(lambda: self.lists.rows(self.config)))
        if self.autopath is not None:
            log.info(
                "autopath: on, for pods kdns knows by IP (watching Pods, pods %s); search path %s",
                config.pods,
                " ".join(self.autopath.search_path("<ns>")),
            )
            compat = config.metrics_compat == "coredns"
            self.metrics.collectors.register(AutopathMetrics(self.autopath.counters, server, compat))  # fmt: skip
        self.killer = self._killer(config)
        if self.killer is not None:
            wire = self.killer.wire
            sources.wire_hits = lambda: wire.hits
        self.http = HttpEndpoints(self.not_ready, self.render_metrics)
        self.source: StaticSource | None = None
        self.cluster: ClusterSource | None = None
        self.stopping = asyncio.Event()
        self.lameduck = False
        self.stop_signal: int | None = None  # the signal that started the shutdown
        self.exit_code = 0  # 1 after the worker spawner died (the pod should restart)
        self.pool: Pool | None = None  # --workers: the workers (in the first process)
        self.seat: Seat | None = None  # --workers: this process is a worker
        self._config_digest = self._file_digest()
        self._tasks: list[asyncio.Task[None]] = []
        # Held by whatever swaps new state in across awaits: a config reload, a zone file or
        # block list refresh, an objects-file reload (StaticSource.lock). One at a time, so a
        # registry rebuild never happens while the objects file is half applied into the old
        # registry (the rest of that edit would be lost), and two reloads never interleave.
        self._reload_lock = asyncio.Lock()

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

    # ------------------------------------------------------------------ readiness

    def not_ready(self) -> str | None:
        if self.lameduck:
            return "shutting down (lameduck)"
        if self.registry.synced:
            return None
        if self.cluster is not None:
            return "waiting for the first list of " + ", ".join(self.cluster.not_synced())
        return "waiting for the first full sync of cluster objects"

    # ------------------------------------------------------------------ sources

    async def start_source(self) -> None:
        config = self.config
        if self.split and not (config.demo or config.objects):
            # Sidecar split DNS: the cluster's own DNS answers cluster names; kdns only routes.
            self.registry.synced = True
            return
        if config.demo:
            self._start_static(StaticSource(self.registry, demo=True))
        elif config.objects:
            self._start_static(StaticSource(self.registry, paths=config.objects))
        elif not config.kubernetes_enabled:
            if self.forwarder is None and not config.local_zones:
                raise StartupError(
                    "nothing to serve: kubernetes.enabled is false, no --demo or --objects, "
                    "and no forwarding (--no-forward, or no upstreams)"
                )
            log.info(
                "kubernetes.enabled is false: %s, no cluster zones",
                "forwarding only" if self.forwarder is not None else "local zones only",
            )
            self.registry.synced = True  # nothing to wait for: /ready is 200 at once
        else:
            found = await api_client(config.kubeconfig)
            if found is None:
                # Demo data only when asked for: a /ready 200 on made-up Services would hide
                # a missing cluster.
                raise StartupError(
                    "no Kubernetes cluster found (not in a pod, no --kubeconfig, no KUBECONFIG, "
                    "no ~/.kube/config): point kdns at one with --kubeconfig FILE, serve "
                    "manifests with --objects PATH, or the built-in demo cluster with --demo"
                )
            from kdns.k8s.cluster import ClusterSource

            client, where = found
            log.info("watching the API server through %s", where)
            self.cluster = ClusterSource(
                self.registry,
                client,
                pods_mode=config.pods,
                gateway_kinds=gateway_settings(config).watched_kinds(),
                autopath=config.autopath,
            )
            # Until the first list completes every cluster name answers SERVFAIL, even ones
            # already known: the hot path starts with an empty answers dict (no extra check).
            self.responder.answers = {}
            self.cluster.start()
            self._spawn(self._startup_timeout())

    def _start_static(self, source: StaticSource) -> None:
        self.source = source
        source.lock = self._reload_lock  # its reloads and registry rebuilds take turns
        source.stats = self.stats  # empty reads kept out: kdns_objects_reloads_kept_total
        source.load()
        source.start()

    async def _startup_timeout(self) -> None:
        """CoreDNS: wait up to startup_timeout for the first sync, then serve what is known;
        names not known yet keep answering SERVFAIL (never NXDOMAIN) until synced."""
        assert self.cluster is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.cluster.synced.wait(), self.config.startup_timeout)
        if not self.cluster.synced.is_set():
            log.warning(
                "not synced after %.1fs (%s pending): serving what is known",
                self.config.startup_timeout,
                ", ".join(self.cluster.not_synced()),
            )
        self.responder.answers = self.registry.answers

    # ------------------------------------------------------------------ serving

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

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_stop(signum: int) -> None:
            self._signal_workers(signum)
            if self.stopping.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received: shutting down", signal.Signals(signum).name)
            self.stop_signal = signum
            self.stopping.set()

        def on_hup() -> None:
            self._signal_workers(signal.SIGHUP)
            self._spawn(self.reload("SIGHUP"))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, on_hup)

    def _signal_workers(self, signum: int) -> None:
        """The first process passes signals on to the workers (--workers)."""
        if self.pool is not None:
            self.pool.signal(signum)

    # ------------------------------------------------------------------ --workers

    @property
    def in_worker(self) -> bool:
        """A worker answers DNS only: HTTP is the first process's, even after a reload."""
        return self.seat is not None

    def _worker_counts(self) -> tuple[int, int] | None:
        if self.seat is not None:
            return None  # the first process counts the workers
        if self.pool is None:
            return 1, 0
        return self.pool.processes, self.pool.restarts

    async def render_metrics(self) -> tuple[bytes, str]:
        """/metrics: this process's numbers, with --workers summed with every worker's."""
        if self.pool is None:
            return self.metrics.render()
        others = await self.pool.snapshots(parse_snapshot)
        others.append(self.metrics.process_snapshot(self.pool.spawner))
        return self.metrics.render(others)

    def _spawner_lost(self, why: str) -> None:
        """--workers: the spawner died (its workers with it). Count it, then stop (lameduck
        first, /ready 503) and exit 1 so Kubernetes restarts the pod with every process."""
        self.stats.spawner_deaths += 1
        self.exit_code = 1
        self.stopping.set()

    def _start_workers(self) -> None:
        self.metrics.process.share = self.pool is not None or self.seat is not None
        if self.pool is not None:
            self.pool.fold = fold_snapshot
            self.pool.on_spawner_lost = self._spawner_lost
            self.pool.attach()
        if self.seat is not None:
            self._spawn(self.seat.serve(self.metrics.snapshot_bytes, self._parent_gone))

    def _parent_gone(self) -> None:
        """The first process closed our channel: it is gone (or stopping, and so are we)."""
        if not self.stopping.is_set():
            log.error("the first process is gone: exiting")
            os._exit(1)

    async def serve(self) -> int:
        self.install_signals()
        self._start_workers()
        log.info(
            "kdns %s starting (cluster domain %s, config %s)",
            __version__,
            self.config.cluster_domain,
            self.config_hash,
        )
        await self.start_source()
        for address in self.config.listen:
            await self.listeners.bind(address)
        if self.killer is not None:
            self.killer.start()
        await self.start_http()
        if self.forwarder is not None:
            self._spawn(self.forwarder.check_loops())
        if self.config.reload_interval > 0:
            self._spawn(self._watch_data_files())
        self._spawn(self._refresh_lists())
        if self.config.config_file and self.config.reload_interval > 0:
            self._spawn(self._watch_config_file())
        if self.seat is not None and self.seat.restarted:
            # Forked with the configuration of the pod's start: catch up with the file, as
            # the first process did on its reloads (restart-only settings stay as they were).
            await self.reload("worker restarted")
        kinds = (
            [r.kind for r in self.cluster.reflectors]
            if self.cluster is not None
            else used_kinds(
                self.config.pods,
                gateway_settings(self.config).watched_kinds(),
                self.config.autopath,
            )
        )
        log.info("serving %s", used_counts(self.registry.counts(), kinds))
        await self.stopping.wait()
        await self.shutdown()
        log.info("stopped")
        return self.exit_code

    def interactive_stop(self) -> bool:
        """Stopped by SIGINT (Ctrl-C) with a terminal on stdin, or serving the demo."""
        if self.stop_signal != signal.SIGINT:
            return False
        try:
            tty = sys.stdin is not None and sys.stdin.isatty()
        except (OSError, ValueError):
            tty = False
        return tty or self.config.demo

    async def shutdown(self) -> None:
        """Lameduck (CoreDNS health lameduck): keep answering while /ready fails, so the
        Service drops this endpoint before the sockets close; then stop accepting, let TCP
        connections finish, and release everything. Ctrl-C on an interactive run (a terminal,
        or --demo) skips the lameduck: nobody routes to it, and a restart must bind at once."""
        if self.config.lameduck > 0 and not self.interactive_stop():
            self.lameduck = True
            log.info("lameduck for %.1fs: answering, /ready reports 503", self.config.lameduck)
            await asyncio.sleep(self.config.lameduck)
        await self.listeners.close_all()
        if self.killer is not None:
            self.killer.stop()
        for task in self._tasks:
            task.cancel()
        if self.source is not None:
            await self.source.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.forwarder is not None:
            await self.forwarder.close()
        await self.http.stop()

    # ------------------------------------------------------------------ reload

    def _file_digest(self) -> bytes | None:
        if not self.config.config_file:
            return None
        try:
            with open(self.config.config_file, "rb") as handle:
                return hashlib.sha256(handle.read()).digest()
        except OSError:
            return None

    async def _watch_config_file(self) -> None:
        """CoreDNS reload: poll the file's content hash (a ConfigMap update swaps a symlink,
        so mtimes lie; the content does not)."""
        while True:
            await asyncio.sleep(self.config.reload_interval)
            digest = self._file_digest()
            if digest is not None and digest != self._config_digest:
                await self.reload("config file changed")

    async def reload(self, why: str) -> None:
        if self.reload_config is None:
            log.warning("reload (%s) ignored: started without a reloadable configuration", why)
            return
        async with self._reload_lock:
            self._config_digest = self._file_digest()
            try:
                new = self.reload_config()
            except ConfigError as exc:
                self._reject(why, exc)
                return
            try:
                await self._apply(new, why)
                await self._refresh_data_files(why)  # zone files and block lists that moved
            except Exception:
                log.exception("reload (%s) failed part-way; what was applied stays", why)

    def _reject(self, why: str, problem: object) -> None:
        """A reload refused whole: the running config stays as it was, counted
        (kdns_config_reloads_rejected_total) and logged with the reason."""
        self.stats.config_reloads_rejected += 1
        log.error("reload (%s) rejected, keeping the running config: %s", why, problem)

    async def apply(self, new: Config, why: str) -> None:
        """Run on ``new`` (a reloaded config), after any reload or objects-file apply under
        way has finished."""
        async with self._reload_lock:
            await self._apply(new, why)

    def _answers_changed(self) -> None:
        """Something standard mode answers from, other than the registry's data, was just
        swapped in: the forwarder, the resolver, a rebuilt registry, views and block lists, the
        ACL, forward.allow, any config setting. Killer mode's cached replies may all differ:
        they are dropped (and the killer rewired to the parts now in use) in the same step of
        the event loop as the swap, so no datagram read after it is answered from them.

        The registry's own data (cluster objects, local zone records and SOA, the TTL, serial
        moves) needs no call: each flush tells ``Registry.watchers`` exactly what changed."""
        if self.killer is not None:
            self.killer.attach(self.registry, self.resolver, self.forwarder)

    async def _apply(self, new: Config, why: str) -> None:
        old = self.config
        changed = [f for f in old.__dataclass_fields__ if getattr(old, f) != getattr(new, f)]
        if not changed:
            log.info("reload (%s): nothing changed", why)
            return
        kept = [f for f in changed if f in RESTART_ONLY]
        if kept:
            # Not applied: said so, and counted (kdns_config_reloads_restart_needed_total).
            self.stats.config_restart_needed += 1
            log.warning(
                "reload (%s): %s changed and needs a restart: not applied until kdns restarts",
                why,
                ", ".join(kept),
            )
            new = new.__class__(**{**{f: getattr(new, f) for f in new.__dataclass_fields__},
                                   **{f: getattr(old, f) for f in kept}})  # fmt: skip
        # The listen addresses before anything else, DNS then HTTP: a reload kdns cannot
        # listen for (":53" without the capability, an HTTP port taken) is refused whole, the
        # running config intact (DNS and HTTP back on the old addresses), instead of half
        # applied.
        http_moved = self._http_addresses(new) != self._http_addresses(old) and not self.in_worker
        if new.listen != old.listen:
            set_freebind(new.freebind)
            try:
                await self.listeners.sync(new.listen)
            except OSError as exc:  # "dns: cannot listen on ...: ..."
                await self._restore_listeners(old, dns=True, http=None)
                self._reject(why, exc)
                return
        if http_moved:
            bound = dict(self.http.bound)  # where ":0" addresses landed, to land there again
            await self.http.stop()
            try:
                await self.start_http(new)
            except OSError as exc:  # "metrics: cannot listen on ...: ..."
                await self._restore_listeners(old, dns=new.listen != old.listen, http=bound)
                self._reject(why, exc)
                return
        # First what takes time (files read in threads): nothing served changes yet.
        if (new.blocklists, new.allowlists, new.views) != (old.blocklists, old.allowlists, old.views) or fetch_settings(new) != fetch_settings(old):  # fmt: skip
            self.lists.settings = fetch_settings(new)
            await self.lists.load(new, why)
        hosts_changed = any(f.startswith(("hosts_", "chaos")) for f in changed)
        hosts = await self._load_hosts(new, why) if hosts_changed else self.hosts
        local_changed = new.local_zones != old.local_zones
        previous = self._zone_data
        zone_data = await self._reload_zone_data(new, why) if local_changed else previous
        # Then every swap in one step of the event loop, ending with the killer told: no
        # await from here to _answers_changed(), so no datagram is read in between.
        try:
            if hosts_changed:  # [hosts] / [chaos]: the resolver's own stages
                self.hosts = hosts
                self.resolver.hosts = hosts
                self.resolver.chaos = build_chaos(new)
                self.registry.derived.clear()  # negatives remembered before a name was listed
            if any(f.startswith(FORWARDING_PREFIXES) or f in FORWARDING for f in changed):
                self._swap_forwarder(new, why)
            self._zone_data = zone_data
            if any(f in REGISTRY_SHAPE for f in changed) or zone_shape(new) != zone_shape(old):
                self._swap_registry(new)
            else:
                if new.ttl != old.ttl:
                    self.registry.set_ttl(new.ttl)
                if local_changed:  # the same zones, other data: re-render what differs
                    for name, data in zone_data.items():
                        if data != previous.get(name):
                            self.registry.set_local(data)
            if new.log_level != old.log_level or new.log_format != old.log_format:
                setup_logging(new.log_level, new.log_format)
            self.listeners.set_query_log(new.query_log)
            querylog.noting = new.query_log
            querylog.set_classes(new.log_classes)
            self._configure_responder(new)
            self.responder.set_udp_size(new.udp_size)
            self._configure_tcp(new)
            self.config = new
        finally:  # even a swap that failed part-way: what was swapped in is what is served
            self._answers_changed()
        set_freebind(new.freebind)  # for addresses bound from now on
        self.config_hash = config_hash(self.config)
        log.info(
            "reloaded (%s): %s; config %s applied",
            why,
            ", ".join(f for f in changed if f not in kept) or "nothing",
            self.config_hash,
        )

    @staticmethod
    def _http_addresses(config: Config) -> tuple[tuple[str, int] | None, ...]:
        return (config.health_listen, config.ready_listen, config.metrics_listen)

    async def _restore_listeners(
        self, old: Config, *, dns: bool, http: dict[str, tuple[str, int]] | None
    ) -> None:
        """A refused reload: DNS and HTTP back on the running config's addresses (``http``:
        where each endpoint was bound, so a ":0" address gets its port back)."""
        if dns:
            with contextlib.suppress(OSError):
                await self.listeners.sync(old.listen)
            set_freebind(old.freebind)
        if http is not None:
            await self.http.stop()
            addresses = {}
            for endpoint, address in zip(("health", "ready", "metrics"), self._http_addresses(old), strict=True):  # fmt: skip
                if address is not None and address[1] == 0 and endpoint in http:
                    address = (address[0], http[endpoint][1])
                addresses[endpoint] = address
            try:
                await self.http.start(addresses)
            except OSError as exc:  # taken meanwhile: said, and retried by the next reload
                log.error("cannot serve HTTP on the running addresses again: %s", exc)

    def _swap_forwarder(self, config: Config, why: str) -> None:
        try:
            forwarder, split = build_forwarder(config)
        except StartupError as exc:
            log.error("reload (%s): forwarding unchanged: %s", why, exc)
            return
        old, self.forwarder, self.split = self.forwarder, forwarder, split
        self.resolver = self._resolver(self.registry, config)
        # Remembered answers came from the old routing (forward zones cut out of local zones).
        self.registry.derived.clear()
        self.responder.resolve = self.resolver.resolve
        self.responder.forwarder = forwarder
        if forwarder is not None:
            self._spawn(forwarder.check_loops())
        if old is not None:
            self._spawn(old.close())  # in-flight queries on the old one finish or time out

    def _swap_registry(self, config: Config) -> None:
        """Zones or naming changed: render every object into a fresh registry, then switch the
        readers over in one step (queries see the old answers or the new, never neither)."""
        gated = self.responder.answers is not self.registry.answers  # still before first sync
        fresh = build_registry(config, self._zone_data)
        copy_objects(self.registry, fresh)
        fresh.synced = self.registry.synced
        self.registry = fresh
        self.resolver = self._resolver(fresh, config)
        if not gated:
            self.responder.answers = fresh.answers
        self.responder.derived = fresh.derived
        self.responder.resolve = self.resolver.resolve
        for source in (self.source, self.cluster):
            if source is not None:
                source.set_registry(fresh)
        if self.cluster is not None:  # gateway zones turned on or off: watch what they need
            self.cluster.set_gateway_kinds(gateway_settings(config).watched_kinds())

    # ------------------------------------------------------------------ local zones, views

    def _views(self, config: Config) -> Views | None:
        """[[views]] with their loaded lists, as their schedules have them now; None (nothing
        on the hot path) without views."""
        self._schedules = schedule_state(config)
        views: Views | None = build_views(config, self.lists, self.registry.zones, self.blocked_counts, registry=self.registry, resolver=self.resolver)  # fmt: skip
        return views

    def _swap_views(self) -> None:
        """New lists or a schedule's turn: the views rebuilt and killer mode's cached replies
        dropped, in one step of the event loop (no await in between)."""
        self.responder.views = self._views(self.config)
        self._answers_changed()

    async def _refresh_lists(self) -> None:
        """Download the URL lists that are due and follow the schedules (checked every
        second; downloads and parsing run in threads, outside the reload lock, so a slow
        list server holds up neither DNS nor a reload)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                changed = await self.lists.refresh(urls=True)
                if changed or schedule_state(self.config) != self._schedules:
                    self._swap_views()
            except Exception:
                log.exception("refreshing block lists failed")

    async def _reload_zone_data(self, config: Config, why: str) -> dict[str, ZoneData]:
        """Every local zone's data for ``config``; a zone that fails keeps what it served (or
        serves only its SOA/NS when new), with one error line."""
        out = {}
        for zone in config.local_zones:
            try:
                out[zone.name] = await asyncio.to_thread(load_local_zone, zone)
            except LocalZoneError as exc:
                log.error("reload (%s): zone %s unchanged: %s", why, zone.name, exc)
                out[zone.name] = self._zone_data.get(zone.name) or ZoneData(zone.name)
            if zone.file:
                self._zone_stamps[zone.name] = file_stamp(zone.file)
        return out

    async def _watch_data_files(self) -> None:
        """Zone files and block lists are re-read when they change (polled like the config
        file, every server.reload_interval; (inode, mtime, size) compared, so a ConfigMap's
        symlink swap is seen)."""
        while True:
            await asyncio.sleep(self.config.reload_interval or 30.0)
            if self.config.reload_interval > 0:
                try:
                    await self.refresh_data_files("file changed")
                except Exception:
                    log.exception("reloading zone files or block lists failed")

    async def refresh_data_files(self, why: str) -> None:
        """Re-read the zone files and block lists whose files moved, one reload at a time."""
        async with self._reload_lock:
            await self._refresh_data_files(why)

    async def _load_hosts(self, config: Config, why: str) -> Hosts | None:
        """[hosts] for ``config``, read in a thread; a file that cannot be used keeps what was
        served, with one error line."""
        try:
            hosts = await asyncio.to_thread(build_hosts, config)
        except HostsError as exc:
            log.error("reload (%s): hosts unchanged: %s", why, exc)
            return self.hosts
        self._hosts_stamp = file_stamp(config.hosts_file) if config.hosts_file else None
        return hosts

    async def _refresh_hosts(self, why: str) -> None:
        """The hosts file moved: re-read it and swap the stage in, killer mode's cached replies
        dropped in the same step (no await between the swap and _answers_changed)."""
        path = self.config.hosts_file
        if path is None or file_stamp(path) == self._hosts_stamp:
            return
        hosts = await self._load_hosts(self.config, why)
        if hosts is self.hosts:
            return
        self.hosts = hosts
        self.resolver.hosts = hosts
        self.registry.derived.clear()
        self._answers_changed()
        log.info("hosts %s reloaded (%s): %d names", path, why, len(hosts or ()))

    async def _refresh_data_files(self, why: str) -> None:
        await self._refresh_hosts(why)
        for zone in self.config.local_zones:
            if zone.file is None:
                continue
            stamp = file_stamp(zone.file)
            if stamp == self._zone_stamps.get(zone.name):
                continue
            self._zone_stamps[zone.name] = stamp
            try:
                data = await asyncio.to_thread(load_local_zone, zone)
            except LocalZoneError as exc:
                log.error("zone %s (%s) unchanged: %s", zone.name, why, exc)
                continue
            if data == self._zone_data.get(zone.name) or zone not in self.config.local_zones:
                continue
            self._zone_data[zone.name] = data
            self.registry.set_local(data)  # its flush tells the watchers what moved
            log.info("zone %s reloaded (%s): %d records", zone.name, why, len(data))
        if await self.lists.refresh(urls=False):  # block list files that moved
            self._swap_views()  # replies cached before the lists moved


def _start_hosts(config: Config) -> Hosts | None:
    try:
        return build_hosts(config)
    except HostsError as exc:
        raise StartupError(f"hosts: {exc}") from None


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


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (several times faster here), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run(config: Config, reload: Reload | None = None) -> int:
    setup_logging(config.log_level, config.log_format)
    count = workers.resolve(config.workers)
    role: workers.Pool | workers.Seat | None = None
    if count > 1:
        if any(port == 0 for _, port in config.listen):
            print("kdns: --workers needs fixed listen ports (port 0 would differ per worker)",
                  file=sys.stderr)  # fmt: skip
            return 1
        role = workers.start(count)  # before any event loop: workers fork from a clean process
    try:
        app = App(config, reload)
        app.pool = role if isinstance(role, workers.Pool) else None
        app.seat = role if isinstance(role, workers.Seat) else None
        code = _run_loop(app.serve())
    except (SourceError, StartupError, ClusterConfigError, ListenError) as exc:
        print(f"kdns: {exc}", file=sys.stderr)  # one line: "dns: cannot listen on ...: ..."
        code = 1
    except OSError as exc:
        print(f"kdns: cannot listen: {exc}", file=sys.stderr)
        code = 1
    if isinstance(role, workers.Seat):
        os._exit(code)  # a worker never returns into the CLI of the process it was forked from
    if isinstance(role, workers.Pool):
        role.close(code)
    return code
