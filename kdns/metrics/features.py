"""Collectors of optional parts: block lists (queries blocked per view and list, list
refreshes and sizes) and autopath."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

# /metrics is the text format CoreDNS serves (version=0.0.4, what generate_latest writes with
# its default escaping; prometheus_client >= 0.22 names it version=1.0.0 by default).
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the API client is imported only when kdns watches a cluster
    pass
from kdns.metrics.families import (
    Family,
)


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
