"""Metrics of the pod as a whole: merging the --workers' snapshots into one exposition, the
process_* families (summed over the pod's processes), and the container's memory limit."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# --------------------------------------------------------------------------- --workers
#
# Each worker sends its families as a snapshot (plain JSON lists); the first process merges
# them with its own, sample by sample (same name and labels), so /metrics has the names and
# labels of a single process. Counters and histograms add up. Gauges add up too (cache entries,
# process memory, open fds), except those below: facts every worker holds a copy of, or limits.

Snapshot = list[list[Any]]  # [[name, type, help, unit, [[sample name, labels, value], ...]], ...]

MERGE: dict[str, Callable[[float, float], float]] = {
    "kdns_registry_objects": max,  # every worker holds the whole cluster: not N times it
    "kdns_registry_names": max,
    "kdns_registry_generation": max,
    "kdns_registry_synced": min,  # 1 once every process has synced
    "kdns_forward_upstream_healthy": min,  # 0 when any process marked the upstream down
    "coredns_forward_upstream_healthy": min,
    "coredns_build_info": max,
    "process_start_time_seconds": min,  # when the pod's first process started
    "process_max_fds": max,  # a per-process limit
    "kdns_killer_prefetch_precision": max,  # a ratio: the best worker's (used/(used+wasted) sums are exact)
    "kdns_memory_limit_bytes": max,  # the pod's (container's) limit, read by every process
}
_ADDITIVE = ("counter", "histogram", "summary")  # what a dead worker leaves behind


def snapshot(families: Iterable[Metric]) -> Snapshot:
    return [
        [f.name, f.type, f.documentation, f.unit, [[s.name, s.labels, s.value] for s in f.samples]]
        for f in families
    ]


def merge(snapshots: Iterable[Snapshot]) -> list[Metric]:
    """Families of several processes as one: samples with the same name and labels combined
    (MERGE, else summed; info families keep the first)."""
    families: dict[str, Metric] = {}
    index: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], int]] = {}
    for snap in snapshots:
        for name, typ, doc, unit, samples in snap:
            family = families.get(name)
            if family is None:
                family = families[name] = Metric(name, doc, typ, unit)
                index[name] = {}
            combine = MERGE.get(name, _first if typ in ("info", "stateset") else _add)
            seen = index[name]
            for sample_name, labels, value in samples:
                key = (sample_name, tuple(sorted(labels.items())))
                at = seen.get(key)
                if at is None:
                    seen[key] = len(family.samples)
                    family.samples.append(Sample(sample_name, labels, value))
                else:
                    old = family.samples[at]
                    family.samples[at] = old._replace(value=combine(old.value, value))
    return list(families.values())


def fold(retired: Snapshot | None, last: Snapshot) -> Snapshot:
    """Add a dead worker's counters and histograms to those of the workers that died before
    it: its replacement starts from zero, the pod's sums do not go backwards."""
    kept = [family for family in last if family[1] in _ADDITIVE]
    return snapshot(merge([retired or [], kept]))


def parse_snapshot(body: bytes) -> Snapshot:
    parsed: Snapshot = json.loads(body)
    return parsed


def _add(a: float, b: float) -> float:
    return a + b


def _first(a: float, b: float) -> float:
    return a


class _Families:
    """Ready-made families in the shape generate_latest wants."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


WorkerCounts = Callable[[], "tuple[int, int] | None"]  # (processes, restarts); None in a worker


class _WorkersCollector(Collector):
    def __init__(self, counts: WorkerCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts()
        if counts is None:
            return
        processes, restarts = counts
        yield GaugeMetricFamily(
            "kdns_workers", "Processes answering DNS (--workers), alive now", value=processes
        )
        yield CounterMetricFamily(
            "kdns_worker_restarts", "Workers restarted after they died", value=restarts
        )


class _Process(Collector):
    """process_* of one process (prometheus-client's ProcessCollector). With --workers
    (``share``), resident memory is the process's proportional set size (PSS: a page shared by
    k processes counts 1/k in each), so the pod's sum counts the pages the forked processes
    share once, as the container's memory cgroup does; summed RSS would overstate it by half."""

    def __init__(self, pid: Callable[[], int | str] = lambda: "self") -> None:
        self.pid = pid
        self.inner = ProcessCollector(pid=pid, registry=None)
        self.share = False

    def collect(self) -> Iterator[Metric]:
        for family in self.inner.collect():
            if self.share and family.name == "process_resident_memory_bytes":
                pss = _pss_bytes(self.pid())
                if pss is not None:
                    family.documentation += " (--workers: proportional set size, summed)"
                    family.samples = [sample._replace(value=pss) for sample in family.samples]
            yield family


def _pss_bytes(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class _MemoryLimit(Collector):
    """kdns_memory_limit_bytes: what this process may use before the kernel's OOM killer
    steps in, for ``process_resident_memory_bytes / kdns_memory_limit_bytes`` (the memory
    alert): the smallest cgroup memory limit on the way up from our cgroup (v2 memory.max,
    v1 memory.limit_in_bytes; the container's limit in a pod), else the machine's memory."""

    def collect(self) -> Iterator[Metric]:
        limit = memory_limit()
        if limit is not None:
            yield GaugeMetricFamily(
                "kdns_memory_limit_bytes",
                "Memory limit of the container (cgroup), else the machine's memory",
                value=limit,
            )


def memory_limit(
    root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    from kdns.server.workers import _up_from  # the cgroup walk --workers auto uses

    paths: dict[str, str] = {}  # controller ("" for v2) -> our cgroup path
    with contextlib.suppress(OSError, ValueError):
        for line in self_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    found: list[float] = []
    for base, name, key in ((root, "memory.max", ""), (root / "unified", "memory.max", ""),
                            (root / "memory", "memory.limit_in_bytes", "memory")):  # fmt: skip
        for directory in _up_from(base, paths.get(key, "/")):
            with contextlib.suppress(OSError, ValueError):
                found.append(float((directory / name).read_text().strip()))  # "max": ValueError
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    found.append(float(line.split()[1]) * 1024)  # v1 "unlimited" is ~2**63
    return min(found) if found else None
