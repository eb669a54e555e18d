"""What the collectors share: where they read from (``Sources``), the meter rows summed over
labels, bucket helpers, and the families of the cluster watch, the forwarder and the skipped
object values."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# /metrics is the text format CoreDNS serves (version=0.0.4, what generate_latest writes with
# its default escaping; prometheus_client >= 0.22 names it version=1.0.0 by default).
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from kdns import __version__
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.forward.upstreams import LATENCY_BUCKETS
from kdns.server.forwarding import Forwarder
from kdns.server.meter import (
    CHANNELS,
    Meter,
    type_name,
)
from kdns.server.querylog import RCODE_NAMES
from kdns.server.stats import Stats

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    from kdns.k8s.cluster import ClusterSource
    from kdns.k8s.reflector import Histogram


Family = InfoMetricFamily | CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


@dataclass
class Sources:
    """Where the collector reads from; getters, because a reload may swap the registry."""

    stats: Stats
    meter: Meter | None
    registry: Callable[[], Registry]
    resolver: Callable[[], Resolver]
    cluster: Callable[[], ClusterSource | None]
    server: str  # CoreDNS's server label, e.g. "dns://:53"
    forwarder: Callable[[], Forwarder | None] = lambda: None
    # Answers served from killer mode's wire cache (they never reach the answers dict).
    wire_hits: Callable[[], int] = lambda: 0
    # Replies the reply memo keeps (kdns.server.replymemo; 0 while it is off).
    memo_entries: Callable[[], int] = lambda: 0
    splice_entries: Callable[[], int] = lambda: 0


def _zone_label(zone: str) -> str:
    return zone if zone == "." else zone + "."


def _rcode_name(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, str(rcode))


def _buckets(bounds: Iterable[float], counts: list[float]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs from per-bucket counts (last one is +Inf)."""
    out = []
    total = 0.0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
    return out


class _Rows:
    """The meter's rows summed over the label sets a family needs."""

    def __init__(self, meter: Meter | None) -> None:
        self.requests: dict[tuple[str, str, str, str], float] = defaultdict(float)
        self.responses: dict[tuple[str, str, str], float] = defaultdict(float)
        self.durations: dict[tuple[str, str, str], list[float]] = {}
        self.request_sizes: dict[tuple[str, str], list[float]] = {}
        self.response_sizes: dict[tuple[str, str], list[float]] = {}
        if meter is None:
            return
        for (channel, qtype, zone, rcode), totals in meter.totals().items():
            proto, family = CHANNELS[channel]
            zone_label, type_label = _zone_label(zone), type_name(qtype)
            self.requests[(proto, family, type_label, zone_label)] += totals.count
            self.responses[(proto, zone_label, _rcode_name(rcode))] += totals.count
            # Each list: per-bucket counts, then the sum last.
            _accumulate(
                self.durations,
                (proto, zone_label, type_label),
                totals.durations,
                totals.duration_sum,
            )
            _accumulate(
                self.request_sizes, (proto, zone_label), totals.request_sizes, totals.request_sum
            )
            _accumulate(
                self.response_sizes, (proto, zone_label), totals.response_sizes, totals.response_sum
            )


def _sum_by(store: dict[Any, list[float]], label: Callable[[Any], str]) -> dict[str, list[float]]:
    """Histogram lists (buckets, then the sum) added up by a coarser label of their key."""
    out: dict[str, list[float]] = {}
    for key, counts in store.items():
        _accumulate(out, label(key), counts[:-1], counts[-1])
    return out


def _accumulate(
    store: dict[Any, list[float]], key: Any, buckets: list[int] | list[float], total: float
) -> None:
    into = store.setdefault(key, [0.0] * (len(buckets) + 1))
    for i, value in enumerate(buckets):
        into[i] += value
    into[-1] += total


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], bounds: Iterable[float], counts: list[float], total: float) -> None:  # fmt: skip
    family.add_metric(labels, _buckets(bounds, counts), sum_value=total)


def _build_info() -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "coredns_build_info",
        "A metric with a constant '1' value labeled by version, revision, and goversion",
        labels=["version", "revision", "goversion"],
    )
    family.add_metric([__version__, "kdns", "python"], 1)
    return family


def _cache_entries(server: str, entries: int) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "coredns_cache_entries",
        "The number of elements in the cache.",
        labels=["server", "type", "zones", "view"],
    )
    family.add_metric([server, "success", ".", ""], entries)
    family.add_metric([server, "denial", ".", ""], 0)
    return family


def _histogram_of(hist: Histogram, family: HistogramMetricFamily, labels: list[str]) -> None:
    _add_histogram(family, labels, hist.buckets, [float(c) for c in hist.counts], hist.total)


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
        for event_type, count in sorted(reflector.stats.events.items()):
            events.add_metric([kind, event_type], count)
        lists.add_metric([kind], reflector.stats.lists)
        relists.add_metric([kind], reflector.stats.relists)
        restarts.add_metric([kind], reflector.stats.restarts)
    yield from (events, lists, relists, restarts)
    programming = _histogram(
        "kdns_dns_programming_duration_seconds",
        "Time from an EndpointSlice change (last-change-trigger-time) to its answer being served",
        ["service_kind"],
    )
    for kind, hist in sorted(cluster.programming.items()):
        _histogram_of(hist, programming, [kind])
    yield programming


def _forward_families(forwarder: Forwarder, prefix: str) -> Iterator[Family]:
    """Per-upstream counters (CoreDNS forward: requests, health, latency) and the router's."""
    labels = ["to"]
    requests = CounterMetricFamily(f"{prefix}_requests", "Queries sent upstream", labels=labels)
    failures = CounterMetricFamily(
        f"{prefix}_failures", "Upstream attempts without a usable reply", labels=labels
    )
    health = CounterMetricFamily(
        f"{prefix}_healthcheck_failures", "Failed upstream health checks", labels=labels
    )
    up = GaugeMetricFamily(
        f"{prefix}_upstream_healthy", "1 while an upstream is not marked down", labels=labels
    )
    duration = _histogram(f"{prefix}_request_duration_seconds", "Upstream round trip", labels)
    responses = CounterMetricFamily(
        f"{prefix}_responses", "Upstream replies, by rcode", labels=["to", "rcode"]
    )
    rejects = broken = 0
    # Several forward zones may send to the same upstream (a router for the LAN zone and its
    # reverse zone): each route has its own Upstream object, but one address is one series
    # (Prometheus rejects a scrape with duplicates), so their numbers are summed per ``to``.
    by_to: dict[str, list[Any]] = {}
    for route in forwarder.routes.values():
        rejects += route.group.stats.overloaded
        broken += route.group.stats.all_down
        for upstream in route.group.upstreams:
            by_to.setdefault(str(upstream), []).append(upstream)
    for to, same in by_to.items():
        label = [to]
        stats = [upstream.stats for upstream in same]
        requests.add_metric(label, sum(s.requests for s in stats))
        for rcode in range(max(len(s.rcodes) for s in stats)):
            count = sum(s.rcodes[rcode] for s in stats if rcode < len(s.rcodes))
            if count:
                responses.add_metric([to, _rcode_name(rcode)], count)
        failures.add_metric(label, sum(s.failures for s in stats))
        health.add_metric(label, sum(s.health_check_failures for s in stats))
        up.add_metric(label, 0 if any(upstream.down for upstream in same) else 1)
        buckets = [float(sum(col)) for col in zip(*(s.latency_buckets for s in stats), strict=True)]
        _add_histogram(duration, label, LATENCY_BUCKETS, buckets, sum(s.latency_sum for s in stats))
    yield from (requests, failures, health, up, duration, responses)
    yield CounterMetricFamily(
        f"{prefix}_max_concurrent_rejects", "Queries refused by max_concurrent", value=rejects
    )
    yield CounterMetricFamily(
        f"{prefix}_healthcheck_broken",
        "Queries forwarded while every upstream was marked down (all were tried)",
        value=broken,
    )
    if prefix != "kdns_forward":
        return
    router = forwarder.stats
    for name, value, doc in (
        ("cache_hits", router.cache_hits, "Forwarded names answered from the cache"),
        ("stale_served", router.stale_served, "Expired answers served while upstreams failed"),
        ("servfail", router.servfail, "Forwarded queries answered SERVFAIL"),
        ("prefetches", router.prefetches, "Popular cache entries refreshed before expiry"),
        ("loops_detected", router.loops_detected, "Upstream groups forwarding back to kdns"),
    ):
        yield CounterMetricFamily(f"kdns_forward_{name}", doc, value=value)


def _skipped_values_family() -> Iterator[Family]:
    """Values of cluster objects that DNS could not use (kdns.k8s.objects.SKIPPED)."""
    from kdns.k8s.objects import SKIPPED  # late: a plain module, but keep metrics light

    family = CounterMetricFamily(
        "kdns_objects_skipped_values",
        "Values of cluster objects skipped at ingest (bad IPs, ...), by kind and field",
        labels=["kind", "field"],
    )
    for (kind, field), count in sorted(SKIPPED.items()):
        family.add_metric([kind, field], count)
    yield family
