"""Prometheus exposition. The hot path only bumps plain integers (server.stats.Stats); this
collector turns them into metric families at scrape time, so a query pays no label lookup."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.dns.registry import Registry
from kdns.server.stats import Stats


class _Collector(Collector):
    def __init__(self, stats: Stats, registry: Registry) -> None:
        self.stats = stats
        self.registry = registry

    def collect(self) -> Iterator[InfoMetricFamily | CounterMetricFamily | GaugeMetricFamily]:
        yield InfoMetricFamily(
            "kdns_build", "kdns build information", value={"version": __version__}
        )
        stats = self.stats
        requests = CounterMetricFamily(
            "kdns_dns_requests", "DNS queries received, by transport", labels=["proto"]
        )
        requests.add_metric(["udp"], stats.udp_queries)
        requests.add_metric(["tcp"], stats.tcp_queries)
        yield requests
        yield CounterMetricFamily(
            "kdns_tcp_connections", "TCP connections accepted", value=stats.tcp_connections
        )
        yield CounterMetricFamily(
            "kdns_tcp_connections_rejected",
            "TCP connections closed at once for exceeding tcp_max_connections",
            value=stats.tcp_rejected,
        )
        yield CounterMetricFamily(
            "kdns_internal_errors", "Queries that hit an internal error", value=stats.errors
        )
        objects = GaugeMetricFamily(
            "kdns_registry_objects", "Cluster objects held, by kind", labels=["kind"]
        )
        names = GaugeMetricFamily(
            "kdns_registry_names", "Names with records or empty non-terminals"
        )
        for kind, count in self.registry.counts().items():
            if kind in ("names", "answers"):
                continue
            objects.add_metric([kind], count)
        names.add_metric([], self.registry.counts()["names"])
        yield objects
        yield names
        yield GaugeMetricFamily(
            "kdns_registry_synced",
            "1 once the first full sync completed",
            value=int(self.registry.synced),
        )


class Metrics:
    def __init__(self, stats: Stats, registry: Registry) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(stats, registry))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
