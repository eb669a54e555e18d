"""Prometheus exposition. The hot path only bumps plain integers (server.stats.Stats); this
collector turns them into metric families at scrape time, so a query pays no label lookup."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.dns.registry import Registry
from kdns.k8s.cluster import ClusterSource
from kdns.server.stats import Stats

Family = InfoMetricFamily | CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class _Collector(Collector):
    def __init__(
        self,
        stats: Stats,
        registry: Callable[[], Registry],
        cluster: Callable[[], ClusterSource | None],
    ) -> None:
        self.stats = stats
        self.registry = registry
        self.cluster = cluster

    def collect(self) -> Iterator[Family]:
        yield from self._dns()
        cluster = self.cluster()
        if cluster is not None:
            yield from _watch_families(cluster)

    def _dns(self) -> Iterator[Family]:
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
        for kind, count in self.registry().counts().items():
            if kind in ("names", "answers"):
                continue
            objects.add_metric([kind], count)
        names.add_metric([], self.registry().counts()["names"])
        yield objects
        yield names
        yield GaugeMetricFamily(
            "kdns_registry_synced",
            "1 once the first full sync completed",
            value=int(self.registry().synced),
        )


def _watch_families(cluster: ClusterSource) -> Iterator[Family]:
    events = CounterMetricFamily(
        "kdns_watch_events",
        "Watch events received, by resource and type",
        labels=["resource", "type"],
    )
    lists = CounterMetricFamily("kdns_watch_lists", "Full LISTs, by resource", labels=["resource"])
    relists = CounterMetricFamily(
        "kdns_watch_relists", "LISTs after 410 Gone (expired resourceVersion)", labels=["resource"]
    )
    restarts = CounterMetricFamily(
        "kdns_watch_restarts", "Watch restarts after errors, by resource", labels=["resource"]
    )
    for reflector in cluster.reflectors:
        kind = reflector.kind
        for event_type, count in reflector.stats.events.items():
            events.add_metric([kind, event_type], count)
        lists.add_metric([kind], reflector.stats.lists)
        relists.add_metric([kind], reflector.stats.relists)
        restarts.add_metric([kind], reflector.stats.restarts)
    yield from (events, lists, relists, restarts)
    hist = cluster.programming
    cumulative = 0
    buckets = []
    for bound, count in zip(hist.buckets, hist.counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", hist.count))
    yield HistogramMetricFamily(
        "kdns_dns_programming_duration_seconds",
        "Time from an EndpointSlice change (last-change-trigger-time) to its answer being served",
        buckets=buckets,
        sum_value=hist.total,
    )


class Metrics:
    def __init__(
        self,
        stats: Stats,
        registry: Callable[[], Registry],
        cluster: Callable[[], ClusterSource | None] = lambda: None,
    ) -> None:
        self.collectors = CollectorRegistry(auto_describe=False)
        self.collectors.register(_Collector(stats, registry, cluster))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.collectors), CONTENT_TYPE_LATEST
