"""Prometheus exposition, built at scrape time from plain counters.

The query path only bumps ints (server.meter.Meter rows, server.stats.Stats); this collector
folds them into metric families when /metrics is scraped, so a query never touches a
prometheus-client object or a label dict.

Names: ``kdns_*`` always; with ``--metrics-compat coredns`` also CoreDNS's names and labels
(``coredns_dns_requests_total{server,zone,view,proto,family,type}`` and friends) so existing
CoreDNS dashboards and alerts keep working.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# /metrics is the text format CoreDNS serves (version=0.0.4, what generate_latest writes with
# its default escaping; prometheus_client >= 0.22 names it version=1.0.0 by default).
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.forward.upstreams import LATENCY_BUCKETS
from kdns.metrics.pod import (
    Snapshot,
    WorkerCounts,
    _Families,
    _MemoryLimit,
    _Process,
    _WorkersCollector,
    merge,
    snapshot,
)
from kdns.model import KINDS
from kdns.server.forwarding import Forwarder
from kdns.server.meter import (
    CHANNELS,
    DURATION_BUCKETS,
    SIZE_BUCKETS,
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


class _Collector(Collector):
    def __init__(self, sources: Sources, compat: bool) -> None:
        self.sources = sources
        self.compat = compat

    def collect(self) -> Iterator[Family]:
        rows = _Rows(self.sources.meter)
        yield from self._kdns(rows)
        if self.compat:
            yield from self._coredns(rows)

    # ------------------------------------------------------------------ kdns_*

    def _kdns(self, rows: _Rows) -> Iterator[Family]:
        src = self.sources
        yield InfoMetricFamily(
            "kdns_build", "kdns build information", value={"version": __version__}
        )
        requests = CounterMetricFamily(
            "kdns_dns_requests", "DNS queries answered", labels=["proto", "family", "type", "zone"]
        )
        for labels, value in sorted(rows.requests.items()):
            requests.add_metric(list(labels), value)
        yield requests
        responses = CounterMetricFamily(
            "kdns_dns_responses", "DNS responses sent, by rcode", labels=["proto", "zone", "rcode"]
        )
        for response_labels, value in sorted(rows.responses.items()):
            responses.add_metric(list(response_labels), value)
        yield responses
        duration = _histogram(
            "kdns_dns_request_duration_seconds",
            "Time to answer a query (parse to packed response)",
            ["proto", "zone", "type"],
        )
        for duration_labels, counts in sorted(rows.durations.items()):
            _add_histogram(
                duration, list(duration_labels), DURATION_BUCKETS, counts[:-1], counts[-1]
            )
        yield duration
        for name, store in (("request", rows.request_sizes), ("response", rows.response_sizes)):
            sizes = _histogram(
                f"kdns_dns_{name}_size_bytes", f"Size of DNS {name}s", ["proto", "zone"]
            )
            for size_labels, size_counts in sorted(store.items()):
                _add_histogram(
                    sizes, list(size_labels), SIZE_BUCKETS, size_counts[:-1], size_counts[-1]
                )
            yield sizes
        stats = src.stats
        yield CounterMetricFamily(
            "kdns_tcp_connections", "TCP connections accepted", value=stats.tcp_connections
        )
        yield CounterMetricFamily(
            "kdns_tcp_connections_rejected",
            "TCP connections closed at once for exceeding tcp_max_connections",
            value=stats.tcp_rejected,
        )
        yield CounterMetricFamily(
            "kdns_tcp_idle_timeouts", "TCP connections closed idle", value=stats.tcp_timeouts
        )
        yield CounterMetricFamily(
            "kdns_internal_errors", "Queries that hit an internal error", value=stats.errors
        )
        yield CounterMetricFamily(
            "kdns_tcp_write_timeouts",
            "TCP connections closed for leaving their answers unread (tcp_write_timeout)",
            value=stats.tcp_write_timeouts,
        )
        yield CounterMetricFamily(
            "kdns_objects_reloads_kept",
            "--objects reloads that read no objects (an empty file) and kept the last good ones",
            value=stats.objects_kept,
        )
        yield CounterMetricFamily(
            "kdns_config_reloads_rejected",
            "Config reloads refused whole: the running config stays as it was",
            value=stats.config_reloads_rejected,
        )
        yield CounterMetricFamily(
            "kdns_config_reloads_restart_needed",
            "Config reloads that changed settings only a restart applies (not applied)",
            value=stats.config_restart_needed,
        )
        yield CounterMetricFamily(
            "kdns_worker_spawner_deaths",
            "Worker spawner deaths (OOM killer, ...): kdns then stops so the pod restarts whole",
            value=stats.spawner_deaths,
        )
        yield CounterMetricFamily(
            "kdns_tcp_connections_evicted",
            "Idle TCP connections closed to make room for a new one (tcp_max_connections)",
            value=stats.tcp_evicted,
        )
        rrl = CounterMetricFamily(
            "kdns_rrl_responses",
            "UDP responses withheld by response rate limiting: dropped or sent truncated (slip)",
            labels=["action"],
        )
        rrl.add_metric(["drop"], stats.rrl_dropped)
        rrl.add_metric(["slip"], stats.rrl_slipped)
        yield rrl
        yield from _skipped_values_family()
        yield from self._registry()
        yield from self._caches()
        cluster = src.cluster()
        if cluster is not None:
            yield from _watch_families(cluster)
        forwarder = src.forwarder()
        if forwarder is not None:
            yield from _forward_families(forwarder, "kdns_forward")

    def _registry(self) -> Iterator[Family]:
        registry = self.sources.registry()
        counts = registry.counts()
        objects = GaugeMetricFamily(
            "kdns_registry_objects", "Cluster objects held, by kind", labels=["kind"]
        )
        for kind in KINDS:  # the Gateway API kinds and Ingress too (0 while not watched)
            objects.add_metric([kind], counts.get(kind, 0))
        yield objects
        yield GaugeMetricFamily(
            "kdns_registry_names",
            "Names with records or empty non-terminals",
            value=counts["names"],
        )
        yield GaugeMetricFamily(
            "kdns_registry_synced",
            "1 once the first full sync completed",
            value=int(registry.synced),
        )
        yield GaugeMetricFamily(
            "kdns_registry_generation", "Registry changes applied so far", value=registry.generation
        )

    def _cache_numbers(self) -> dict[str, tuple[int, int, int, int]]:
        """cache -> (entries, hits, misses, evictions)."""
        registry, resolver = self.sources.registry(), self.sources.resolver()
        stats = self.sources.stats
        numbers = {
            # The pre-rendered answers: a hit is a query answered from the dict (counted where
            # it happens: never a malformed, refused or forwarded query); a miss is one that
            # went on to the derived memo or the resolver.
            "answers": (
                len(registry.answers),
                stats.answer_hits,
                resolver.misses + stats.derived_hits,
                0,
            ),
            # Answers derived from the registry (negative answers, computed pod names, ANY),
            # remembered until the state they came from changes.
            "derived": (
                len(registry.derived),
                self.sources.stats.derived_hits,
                resolver.derived,
                registry.derived_evictions,
            ),
        }
        forwarder = self.sources.forwarder()
        if forwarder is not None and forwarder.cache is not None:
            for kind, c in forwarder.cache.counters().items():
                if kind in ("success", "denial"):
                    numbers[f"forward_{kind}"] = (
                        c["entries"],
                        c["hits"],
                        c["misses"],
                        c["evictions"],
                    )
        return numbers

    def _caches(self) -> Iterator[Family]:
        numbers = self._cache_numbers()
        entries = GaugeMetricFamily("kdns_cache_entries", "Entries per cache", labels=["cache"])
        hits = CounterMetricFamily("kdns_cache_hits", "Cache hits", labels=["cache"])
        misses = CounterMetricFamily("kdns_cache_misses", "Cache misses", labels=["cache"])
        evictions = CounterMetricFamily("kdns_cache_evictions", "Cache evictions", labels=["cache"])
        for cache, (n, hit, miss, evicted) in numbers.items():
            entries.add_metric([cache], n)
            hits.add_metric([cache], hit)
            misses.add_metric([cache], miss)
            evictions.add_metric([cache], evicted)
        yield from (entries, hits, misses, evictions)

    # ------------------------------------------------------------------ coredns_*

    def _coredns(self, rows: _Rows) -> Iterator[Family]:
        server = self.sources.server
        # CoreDNS's zone label is the server block's zone: "." in a kube-system Corefile.
        yield _build_info()
        # CoreDNS counts recovered panics of its query path; kdns's equivalent is a query that
        # hit an internal error (kdns_internal_errors_total).
        yield CounterMetricFamily(
            "coredns_panics",
            "A metrics that counts the number of panics.",
            value=self.sources.stats.errors,
        )
        requests = CounterMetricFamily(
            "coredns_dns_requests",
            "Counter of DNS requests made per zone, protocol and family.",
            labels=["server", "zone", "view", "proto", "family", "type"],
        )
        merged: dict[tuple[str, str, str], float] = defaultdict(float)
        for (proto, family, qtype, _zone), value in rows.requests.items():
            merged[(proto, family, qtype)] += value
        for (proto, family, qtype), value in sorted(merged.items()):
            requests.add_metric([server, ".", "", proto, family, qtype], value)
        yield requests
        responses = CounterMetricFamily(
            "coredns_dns_responses",
            "Counter of response status codes.",
            labels=["server", "zone", "view", "rcode", "plugin"],
        )
        by_rcode: dict[tuple[str, str], float] = defaultdict(float)
        for (_proto, zone, rcode), value in rows.responses.items():
            by_rcode[(rcode, "" if zone == "." else "kubernetes")] += value
        for (rcode, plugin), value in sorted(by_rcode.items()):
            responses.add_metric([server, ".", "", rcode, plugin], value)
        yield responses
        duration = _histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            ["server", "zone", "view", "type"],
        )
        by_type = _sum_by(rows.durations, lambda key: key[2])  # CoreDNS: zone "." only
        for qtype, counts in sorted(by_type.items()):
            _add_histogram(
                duration, [server, ".", "", qtype], DURATION_BUCKETS, counts[:-1], counts[-1]
            )
        yield duration
        for name, store in (("request", rows.request_sizes), ("response", rows.response_sizes)):
            sizes = _histogram(
                f"coredns_dns_{name}_size_bytes",
                "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol."
                if name == "request"
                else "Size of the returned response in bytes.",
                ["server", "zone", "view", "proto"],
            )
            by_proto = _sum_by(store, lambda key: key[0])
            for proto, counts in sorted(by_proto.items()):
                _add_histogram(
                    sizes, [server, ".", "", proto], SIZE_BUCKETS, counts[:-1], counts[-1]
                )
            yield sizes
        entries, hits, misses, _ = self._cache_numbers()["answers"]
        yield _cache_entries(server, entries)
        hit_family = CounterMetricFamily(
            "coredns_cache_hits",
            "The count of cache hits.",
            labels=["server", "type", "zones", "view"],
        )
        # Every answer served from a cache: the pre-rendered answers and killer's wire cache.
        hit_family.add_metric([server, "success", ".", ""], hits + self.sources.wire_hits())
        yield hit_family
        miss_family = CounterMetricFamily(
            "coredns_cache_misses", "The count of cache misses.", labels=["server", "zones", "view"]
        )
        miss_family.add_metric([server, ".", ""], misses)
        yield miss_family
        forwarder = self.sources.forwarder()
        if forwarder is not None:
            yield from _forward_families(forwarder, "coredns_forward")
        cluster = self.sources.cluster()
        if cluster is not None:
            programming = _histogram(
                "coredns_kubernetes_dns_programming_duration_seconds",
                "Histogram of the time (in seconds) it took to program a dns instance.",
                ["service_kind"],
            )
            for kind, hist in sorted(cluster.programming.items()):
                _add_histogram(
                    programming, [kind], hist.buckets, [float(c) for c in hist.counts], hist.total
                )
            yield programming


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


class Metrics:
    def __init__(
        self, sources: Sources, compat: str = "none", workers: WorkerCounts = lambda: (1, 0)
    ) -> None:
        self.collectors = CollectorRegistry(auto_describe=False)
        self.collectors.register(_Collector(sources, compat == "coredns"))
        # process_* (resident memory, CPU seconds, open fds, start time), of this process;
        # with --workers, summed over every process of the pod (see MERGE).
        self.process = _Process()
        self.collectors.register(self.process)
        self.collectors.register(_MemoryLimit())
        self.collectors.register(_WorkersCollector(workers))

    def snapshot(self) -> Snapshot:
        return snapshot(self.collectors.collect())

    def snapshot_bytes(self) -> bytes:
        """This process's families, for the first process to merge (in a worker)."""
        return json.dumps(self.snapshot(), separators=(",", ":")).encode()

    def process_snapshot(self, pid: int) -> Snapshot:
        """process_* of another process of the pod (the --workers spawner)."""
        process = _Process(lambda: pid)
        process.share = self.process.share
        return snapshot(process.collect())

    def render(self, others: Iterable[Snapshot] = ()) -> tuple[bytes, str]:
        """The exposition; with ``others`` (the workers' snapshots), merged into one."""
        others = list(others)
        if not others:
            return generate_latest(self.collectors), CONTENT_TYPE_LATEST
        merged = merge([self.snapshot(), *others])
        return generate_latest(_Families(merged)), CONTENT_TYPE_LATEST


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


class BlockedQueries(Collector):
    """kdns_blocked_queries_total{view,list}: queries a view's block list answered
    (kdns.policy.views); the counts are the app's, carried across reloads."""

    def __init__(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Family]:
        family = CounterMetricFamily(
            "kdns_blocked_queries",
            "Queries answered by a block list, by view and list",
            labels=["view", "list"],
        )
        for (view, name), count in sorted(self.counts().items()):
            family.add_metric([view, name], count)
        yield family


class AutopathMetrics(Collector):
    """kdns.authority.autopath: replies that answered a pod's search walk in one round trip, the
    queries they saved, and the walks left to the client, by reason (with ``--metrics-compat
    coredns`` also CoreDNS's ``coredns_autopath_success_count_total``)."""

    def __init__(self, counters: Callable[[], dict[str, Any]], server: str, compat: bool) -> None:
        self.counters = counters  # kdns.authority.autopath.Autopath.counters
        self.server = server
        self.compat = compat

    def collect(self) -> Iterator[Family]:
        numbers = self.counters()
        yield CounterMetricFamily(
            "kdns_autopath_answers",
            "Queries answered with the first name of the client's search path that exists",
            value=numbers["answers"],
        )
        yield CounterMetricFamily(
            "kdns_autopath_saved_queries",
            "Queries autopath answers saved their clients (search-path steps not sent)",
            value=numbers["saved"],
        )
        misses = CounterMetricFamily(
            "kdns_autopath_misses",
            "NXDOMAIN names under <ns>.svc.<zone> answered without autopath, by reason",
            labels=["reason"],
        )
        for reason, count in numbers["misses"].items():
            misses.add_metric([reason], count)
        yield misses
        if self.compat:
            success = CounterMetricFamily(
                "coredns_autopath_success_count",
                "Counter of requests that did autopath.",
                labels=["server"],
            )
            success.add_metric([self.server], numbers["answers"])
            yield success


class BlockListMetrics(Collector):
    """Per configured block list or allowlist (its source's numbers): rules in use, lines
    skipped by reason, downloads by result, the time of the last good load."""

    def __init__(self, rows: Callable[[], list[tuple[str, Any]]]) -> None:
        self.rows = rows  # (list name, kdns.policy.listfetch.Source)

    def collect(self) -> Iterator[Family]:
        entries = GaugeMetricFamily(
            "kdns_blocklist_entries",
            "Rules of a list in use (names, exceptions, patterns)",
            labels=["list"],  # fmt: skip
        )
        skipped = GaugeMetricFamily(
            "kdns_blocklist_skipped_rules",
            "Lines of a list not used, by reason",
            labels=["list", "reason"],  # fmt: skip
        )
        refresh = CounterMetricFamily(
            "kdns_blocklist_refresh",
            "Downloads of a URL list, by result",
            labels=["list", "result"],  # fmt: skip
        )
        success = GaugeMetricFamily(
            "kdns_blocklist_last_success_timestamp_seconds",
            "When a list was last loaded from a good copy (0: never)",
            labels=["list"],
        )
        for name, source in self.rows():
            loaded = source.loaded
            entries.add_metric([name], loaded.entries if loaded is not None else 0)
            if loaded is not None:
                for reason, count in sorted(loaded.skipped_by.items()):
                    skipped.add_metric([name, reason], count)
            if source.url is not None:
                for result, count in sorted(source.results.items()):
                    refresh.add_metric([name, result], count)
            success.add_metric([name], source.last_success)
        yield from (entries, skipped, refresh, success)
