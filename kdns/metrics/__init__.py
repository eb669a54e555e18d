"""Prometheus exposition, built at scrape time from plain counters (collector.py: the kdns_* and
coredns_* families; families.py: what they share; features.py: block lists, autopath; pod.py:
--workers merge, process_*, memory limit).

The query path only bumps ints (server.meter.Meter rows, server.stats.Stats); this collector
folds them into metric families when /metrics is scraped, so a query never touches a
prometheus-client object or a label dict.

Names: ``kdns_*`` always; with ``--metrics-compat coredns`` also CoreDNS's names and labels
(``coredns_dns_requests_total{server,zone,view,proto,family,type}`` and friends) so existing
CoreDNS dashboards and alerts keep working.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

# /metrics is the text format CoreDNS serves (version=0.0.4, what generate_latest writes with
# its default escaping; prometheus_client >= 0.22 names it version=1.0.0 by default).
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE_LATEST

from kdns.metrics.collector import _Collector
from kdns.metrics.families import Sources
from kdns.metrics.features import AutopathMetrics, BlockedQueries, BlockListMetrics
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

__all__ = [
    "AutopathMetrics",
    "BlockListMetrics",
    "BlockedQueries",
    "Metrics",
    "Sources",
    "_Collector",
]


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
