"""The kdns_* (and, with --metrics-compat coredns, coredns_*) families, folded at scrape time
from the meter's rows, the stats and the registry."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

# /metrics is the text format CoreDNS serves (version=0.0.4, what generate_latest writes with
# its default escaping; prometheus_client >= 0.22 names it version=1.0.0 by default).
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from kdns import __version__
from kdns.model import KINDS
from kdns.server.meter import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
)

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    pass
from kdns.metrics.families import (
    Family,
    Sources,
    _add_histogram,
    _build_info,
    _cache_entries,
    _forward_families,
    _histogram,
    _Rows,
    _skipped_values_family,
    _sum_by,
    _watch_families,
)


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
                resolver.misses + stats.derived_hits + stats.splice_hits,
                0,
            ),
            # Answers derived from the registry (negative answers, computed pod names, ANY),
            # remembered until the state they came from changes. A first sight answered by a
            # splice (kdns.server.splices) is a miss here, as the resolver would have counted it.
            "derived": (
                len(registry.derived),
                self.sources.stats.derived_hits,
                resolver.derived + stats.splice_hits,
                registry.derived_evictions,
            ),
        }
        # Whole replies kept by the query's bytes (kdns.server.replymemo), UDP only: its hits
        # are counted under "answers" or "derived" too, where their answers came from.
        numbers["replies"] = (
            self.sources.memo_entries(),
            stats.memo_hits,
            stats.memo_misses,
            stats.memo_evictions,
        )
        # NXDOMAIN first sights spliced from a sibling's reply (kdns.server.splices), UDP only:
        # its hits are misses of the reply memo too.
        numbers["splices"] = (
            self.sources.splice_entries(),
            stats.splice_hits,
            stats.splice_misses,
            stats.splice_evictions,
        )
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
