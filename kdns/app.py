"""Process lifecycle: build the pieces from one Config, load the cluster, serve, stop.

start -> load/sync objects -> bind DNS (UDP+TCP per --listen) and HTTP -> serve until SIGTERM or
SIGINT -> stop accepting -> close. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any

from kdns import __version__
from kdns.config import Config, format_hostport
from kdns.dns.registry import Registry
from kdns.dns.resolver import Resolver
from kdns.dns.zones import ZoneSet
from kdns.k8s.client import ClusterConfigError, api_client
from kdns.k8s.cluster import ClusterSource
from kdns.k8s.sources import SourceError
from kdns.k8s.static import StaticSource
from kdns.metrics import Metrics
from kdns.server.http import HttpEndpoints
from kdns.server.stats import Stats
from kdns.server.tcp import TcpServer
from kdns.server.udp import UdpProtocol
from kdns.server.wire import Responder

log = logging.getLogger("kdns")


class StartupError(Exception):
    """Cannot start; str() is the one line printed before exiting 1."""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.zones = ZoneSet.build(config.cluster_domain, config.external_zones, config.ttl)
        self.registry = Registry(
            self.zones,
            ttl=config.ttl,
            pods=config.pods,
            endpoint_pod_names=config.endpoint_pod_names,
            dns_service=config.dns_service,
        )
        self.resolver = Resolver(self.registry)
        self.stats = Stats()
        self.responder = Responder(self.registry.answers, self.resolver.resolve, config.udp_size)
        self.tcp = TcpServer(
            self.responder,
            self.stats,
            idle_timeout=config.tcp_idle_timeout,
            max_connections=config.tcp_max_connections,
        )
        self.metrics = Metrics(self.stats, self.registry, lambda: self.cluster)
        self.http = HttpEndpoints(self.not_ready, self.metrics.render)
        self.transports: list[asyncio.BaseTransport] = []
        self.servers: list[asyncio.Server] = []
        self.source: StaticSource | None = None
        self.cluster: ClusterSource | None = None
        self.stopping = asyncio.Event()

    def not_ready(self) -> str | None:
        if self.registry.synced:
            return None
        if self.cluster is not None:
            return "waiting for the first list of " + ", ".join(self.cluster.not_synced())
        return "waiting for the first full sync of cluster objects"

    async def start_source(self) -> None:
        config = self.config
        if config.demo:
            self._start_static(StaticSource(self.registry, demo=True))
        elif config.objects:
            self._start_static(StaticSource(self.registry, paths=config.objects))
        elif not config.kubernetes_enabled:
            raise StartupError(
                "nothing to serve: kubernetes.enabled is false and no --demo or --objects"
            )
        else:
            found = await api_client(config.kubeconfig)
            if found is None:
                log.warning(
                    "NO KUBERNETES CLUSTER FOUND (not in a pod, no --kubeconfig, no KUBECONFIG, "
                    "no ~/.kube/config): SERVING THE BUILT-IN DEMO CLUSTER. Point kdns at a "
                    "cluster with --kubeconfig FILE, or run it in a pod with a service account."
                )
                self._start_static(StaticSource(self.registry, demo=True))
                return
            client, where = found
            log.info("watching the API server through %s", where)
            self.cluster = ClusterSource(self.registry, client, pods_mode=config.pods)
            # Until the first list completes every cluster name answers SERVFAIL, even ones
            # already known: the hot path starts with an empty answers dict (no extra check).
            self.responder.answers = {}
            self.cluster.start()
            asyncio.get_running_loop().create_task(self._startup_timeout())

    def _start_static(self, source: StaticSource) -> None:
        self.source = source
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

    async def start_dns(self) -> None:
        loop = asyncio.get_running_loop()
        reuse_port = self.config.workers > 1
        for host, port in self.config.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(self.responder, self.stats),
                local_addr=(host, port),
                family=family,
                reuse_port=reuse_port or None,
            )
            bound_port = transport.get_extra_info("sockname")[1]  # the real port when 0 was asked
            self.transports.append(transport)
            server = await loop.create_server(
                self.tcp.protocol,
                host,
                bound_port,
                family=family,
                reuse_address=True,
                reuse_port=reuse_port or None,
                backlog=1024,
            )
            self.servers.append(server)
            log.info("dns listening on udp+tcp %s", format_hostport((host, bound_port)))

    async def start_http(self) -> None:
        await self.http.start(
            {
                "health": self.config.health_listen,
                "ready": self.config.ready_listen,
                "metrics": self.config.metrics_listen,
            }
        )

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if self.stopping.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received: shutting down", signal.Signals(signum).name)
            self.stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)

    async def serve(self) -> int:
        self.install_signals()
        log.info("kdns %s starting (cluster domain %s)", __version__, self.config.cluster_domain)
        await self.start_source()
        await self.start_dns()
        await self.start_http()
        log.info("serving %s", self.registry.counts())
        await self.stopping.wait()
        await self.stop()
        log.info("stopped")
        return 0

    async def stop(self) -> None:
        if self.source is not None:
            await self.source.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        for server in self.servers:
            server.close()
        for transport in self.transports:
            transport.close()
        self.tcp.close_idle()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        await self.http.stop()


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (several times faster here), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def run(config: Config) -> int:
    setup_logging(config)
    try:
        return _run_loop(_main(config))
    except (SourceError, StartupError, ClusterConfigError) as exc:
        print(f"kdns: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kdns: cannot listen: {exc}", file=sys.stderr)
        return 1


async def _main(config: Config) -> int:
    return await App(config).serve()
