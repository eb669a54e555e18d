"""Process lifecycle: one Config in; start, sync, serve, lameduck, stop; reload in between.

start -> load or watch the cluster -> bind DNS (UDP+TCP per listen address) and HTTP -> serve.
SIGTERM/SIGINT: lameduck (keep answering, /ready 503) -> stop accepting -> finish TCP -> exit 0;
a second signal exits at once. SIGHUP, or a change of the config file's content: reload.

App builds its parts here; what it does with them lives in kdns.running, one concern a module
(wiring, sources, data files, reloading, serving).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from kdns.authority.autopath import Autopath
from kdns.authority.hosts import Hosts, HostsError
from kdns.config import Config, format_hostport
from kdns.k8s.client import ClusterConfigError
from kdns.k8s.sources import SourceError
from kdns.k8s.static import StaticSource
from kdns.logs import setup_logging
from kdns.metrics import AutopathMetrics, BlockedQueries, BlockListMetrics, Metrics
from kdns.metrics import Sources as MetricSources
from kdns.parts import (
    StartupError,
    build_forwarder,
    build_hosts,
    build_registry,
    load_local_zones,
)
from kdns.policy.blocklist import file_stamp
from kdns.policy.listfetch import Lists, schedule_state
from kdns.policy.views import BlockCounts

# Names other modules and tests import from kdns.app (they moved to kdns.running).
from kdns.running.reloading import (
    FORWARDING,
    FORWARDING_PREFIXES,
    GATEWAY_SETTINGS,
    REGISTRY_SHAPE,
    RESTART_ONLY,
    ConfigHash,
    config_hash,
)
from kdns.running.serving import Serving
from kdns.running.wiring import Reload, autopath_search, fetch_settings, log
from kdns.server import querylog, workers
from kdns.server.http import HttpEndpoints
from kdns.server.listeners import DnsListeners, ListenError
from kdns.server.meter import Meter
from kdns.server.sockets import set_freebind
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.wire import Responder
from kdns.server.workers import Pool, Seat

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    from kdns.k8s.cluster import ClusterSource

__all__ = [
    "FORWARDING",
    "FORWARDING_PREFIXES",
    "GATEWAY_SETTINGS",
    "REGISTRY_SHAPE",
    "RESTART_ONLY",
    "App",
    "Reload",
    "autopath_search",
    "config_hash",
    "fetch_settings",
    "run",
]


class App(Serving):
    """kdns in one process: its parts, built from ``config`` (kdns.running: what it does)."""

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
        querylog.set_zones(config.log_zones)  # [log] zones (a log in one server block)
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
        sources.memo_entries = lambda: len(self.responder.memo or ())
        sources.splice_entries = lambda: len(self.responder.splices or ())
        self.metrics = Metrics(sources, config.metrics_compat, self._worker_counts)
        self.metrics.collectors.register(BlockedQueries(lambda: self.blocked_counts))
        # The effective config last applied (at start, then by each reload that applied).
        self.config_hash = config_hash(config)
        self.metrics.collectors.register(ConfigHash(lambda: self.config_hash))
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


def _start_hosts(config: Config) -> Hosts | None:
    try:
        return build_hosts(config)
    except HostsError as exc:
        raise StartupError(f"hosts: {exc}") from None


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
