"""--workers: one /metrics for all processes, dying together, restarts, and "auto".

End to end cases start the real process with --workers 2 (the first process, the spawner it
forks before any event loop, one worker) on a fixed loopback port, since every process binds
the same one.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kdns.metrics import pod as metrics
from kdns.server.workers import auto_workers, cgroup_cpus
from tests.kdnsproc import LOOPBACK, Kdns, fixed_port

DEMO_NAME = "web.shop.svc.cluster.local"


# --------------------------------------------------------------------------- helpers


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (the spawner, and the workers below it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(_parent(int(entry.name)), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if _alive(child):
                out.append(child)
                todo.append(child)
    return out


def _smaps(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


def _answers(port: int, timeout: float = 0.3) -> bool:
    q = dns.message.make_query(DEMO_NAME, "A")
    try:
        return bool(dns.query.udp(q, LOOPBACK, port=port, timeout=timeout).answer)
    except (dns.exception.Timeout, OSError):
        return False


def _scrape(proc: Kdns) -> dict[str, list]:  # type: ignore[type-arg]
    status, body = proc.get("metrics")
    assert status == 200
    return {family.name: family.samples for family in text_string_to_metric_families(body)}


def _total(families: dict[str, list], family: str, sample: str) -> float:  # type: ignore[type-arg]
    return sum(s.value for s in families.get(family, []) if s.name == sample)


@pytest.fixture
def workers2() -> Iterator[Kdns]:
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "2", listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}
    ) as proc:
        assert proc.proc is not None
        # Both DNS processes are up once each logged its "serving" line.
        _eventually(lambda: proc.log.count("serving {") >= 2)
        yield proc


def _worker_pids(proc: Kdns) -> tuple[int, list[int]]:
    """(the spawner, the workers below it)."""
    assert proc.proc is not None
    (spawner,) = [p for p in _descendants(proc.proc.pid) if _parent(p) == proc.proc.pid]
    return spawner, [p for p in _descendants(spawner)]


# --------------------------------------------------------------------------- one /metrics


def test_metrics_count_every_query_of_every_worker_exactly(workers2: Kdns) -> None:
    """N queries from many source ports (the kernel spreads UDP by source address, so both
    processes answer some) read back as exactly N from the one /metrics."""
    before = _scrape(workers2)
    requests = "kdns_dns_requests_total"
    assert _total(before, "kdns_dns_requests", requests) == 0
    udp_queries, tcp_queries = 300, 20
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(udp_queries)]
    try:
        for i, sock in enumerate(sockets):
            sock.settimeout(3)
            query = dns.message.make_query(DEMO_NAME, "A", id=i)
            sock.sendto(query.to_wire(), (LOOPBACK, workers2.port))
            assert dns.message.from_wire(sock.recv(4096)).answer
    finally:
        for sock in sockets:
            sock.close()
    for _ in range(tcp_queries):
        assert workers2.query(DEMO_NAME, "A", tcp=True).answer
    after = _scrape(workers2)
    n = udp_queries + tcp_queries
    assert _total(after, "kdns_dns_requests", requests) == n
    assert _total(after, "kdns_dns_responses", "kdns_dns_responses_total") == n
    duration = "kdns_dns_request_duration_seconds"
    assert _total(after, duration, duration + "_count") == n
    assert _total(after, "kdns_dns_requests", requests) == sum(
        s.value for s in after["kdns_dns_requests"] if s.labels.get("type") == "A"
    )
    # Facts every worker holds once are not multiplied; the pod's processes are counted.
    objects = after["kdns_registry_objects"]
    assert next(s.value for s in objects if s.labels["kind"] == "Service") == 7
    assert _total(after, "kdns_registry_synced", "kdns_registry_synced") == 1
    assert _total(after, "kdns_workers", "kdns_workers") == 2
    assert _total(after, "kdns_worker_restarts", "kdns_worker_restarts_total") == 0
    # process_*: summed over the pod's three processes (first, spawner, worker); resident
    # memory as proportional set sizes, so pages the forked processes share count once.
    spawner, workers = _worker_pids(workers2)
    assert workers2.proc is not None
    pids = [workers2.proc.pid, spawner, *workers]
    rss = _total(after, "process_resident_memory_bytes", "process_resident_memory_bytes")
    expected = sum(_smaps(p, "Pss:") for p in pids)
    assert 0.8 * expected < rss < 1.2 * expected, (rss, expected)
    assert rss < sum(_smaps(p, "Rss:") for p in pids)
    open_fds = sum(len(os.listdir(f"/proc/{p}/fd")) for p in pids)  # +- the scrape's own
    assert abs(_total(after, "process_open_fds", "process_open_fds") - open_fds) <= 6
    start = _total(after, "process_start_time_seconds", "process_start_time_seconds")
    assert abs(start - time.time()) < 600  # one start time (the earliest), not three summed
    assert _total(after, "process_cpu_seconds", "process_cpu_seconds_total") > 0


# --------------------------------------------------------------------------- dying together


def test_sigkill_of_the_first_process_takes_every_worker_down() -> None:
    """An OOM kill of the first process: the port stops answering within 2 s and no kdns
    process is left (PR_SET_PDEATHSIG: the spawner dies with it, the workers with the spawner)."""
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "2", listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}
    ) as proc:
        assert proc.proc is not None
        _eventually(lambda: proc.log.count("serving {") >= 2)
        spawner, workers = _worker_pids(proc)
        assert len(workers) == 1
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(5)
        killed = time.monotonic()
        _eventually(lambda: not _answers(port, timeout=0.2), timeout=2)
        assert time.monotonic() - killed < 2
        _eventually(lambda: not any(_alive(p) for p in [spawner, *workers]), timeout=2)


def test_a_killed_worker_is_replaced_and_counted() -> None:
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "2", listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}
    ) as proc:
        _eventually(lambda: proc.log.count("serving {") >= 2)
        spawner, (worker,) = _worker_pids(proc)
        for _ in range(10):
            assert proc.query(DEMO_NAME, "A").answer
        before = _total(_scrape(proc), "kdns_dns_requests", "kdns_dns_requests_total")
        os.kill(worker, signal.SIGKILL)
        _eventually(lambda: len(_worker_pids(proc)[1]) == 1 and worker not in _worker_pids(proc)[1])
        _eventually(lambda: proc.log.count("serving {") >= 3)
        assert f"worker 1 (pid {worker}) killed by SIGKILL" in proc.log
        assert "restarting it in 0.5s" in proc.log
        families = _scrape(proc)
        assert _total(families, "kdns_worker_restarts", "kdns_worker_restarts_total") == 1
        assert _total(families, "kdns_workers", "kdns_workers") == 2
        # The dead worker's counts stay in the sums (its replacement starts from zero).
        assert _total(families, "kdns_dns_requests", "kdns_dns_requests_total") >= before
        for _ in range(10):
            assert proc.query(DEMO_NAME, "A").answer
        assert proc.stop() == 0
    assert not _alive(spawner)


def test_sigterm_stops_every_process_cleanly(workers2: Kdns) -> None:
    spawner, workers = _worker_pids(workers2)
    assert workers2.stop() == 0
    assert not any(_alive(p) for p in [spawner, *workers])
    assert "restarting" not in workers2.log


# --------------------------------------------------------------------------- --workers auto


def _cgroup(tmp_path: Path, v2: str | None = None, v1: tuple[int, int] | None = None) -> Path:
    root = tmp_path / "cgroup"
    root.mkdir()
    if v2 is not None:
        (root / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (root / "cpu").mkdir()
        (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (root / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return root


def _self(tmp_path: Path, text: str = "0::/\n") -> Path:
    path = tmp_path / "self-cgroup"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("v2", "v1", "cpus", "expected"),
    [
        ("250000 100000", None, 8, 2),  # 2.5 CPUs: two whole ones
        ("50000 100000", None, 8, 1),  # half a CPU: still one worker
        ("max 100000", None, 8, 8),  # no quota: every CPU we may run on
        ("400000 100000", None, 2, 2),  # quota above the affinity (cpuset): affinity wins
        (None, (300000, 100000), 16, 3),  # cgroup v1
        (None, (-1, 100000), 4, 4),  # v1 without a quota
        (None, None, 6, 6),  # no cgroup files at all
        ("max 100000", None, 100, 64),  # the setting's upper bound
    ],
)
def test_workers_auto_reads_the_cgroup_quota(
    tmp_path: Path, v2: str | None, v1: tuple[int, int] | None, cpus: int, expected: int
) -> None:
    quota = cgroup_cpus(_cgroup(tmp_path, v2, v1), _self(tmp_path, "1:cpu:/\n0::/\n"))
    assert auto_workers(quota, cpus) == expected


def test_workers_auto_takes_the_smallest_quota_up_the_hierarchy(tmp_path: Path) -> None:
    """Without a cgroup namespace /proc/self/cgroup names a nested cgroup: its own cpu.max
    and every parent's apply."""
    root = _cgroup(tmp_path, "300000 100000")
    pod = root / "kubepods" / "pod1"
    pod.mkdir(parents=True)
    (root / "kubepods" / "cpu.max").write_text("max 100000\n")
    (pod / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpus(root, _self(tmp_path, "0::/kubepods/pod1\n")) == 1.5
    # A path not visible here (another mount namespace): the root's file.
    assert cgroup_cpus(root, _self(tmp_path, "0::/elsewhere\n")) == 3.0


def test_workers_auto_starts_one_process_per_cpu_here() -> None:
    """End to end: "auto" is accepted by the flag and resolved at start (this machine has no
    CFS quota; its affinity decides)."""
    expected = auto_workers(cgroup_cpus(), len(os.sched_getaffinity(0)))
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "auto", listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}
    ) as proc:
        assert f"workers auto: {expected} (" in proc.log
        _eventually(lambda: proc.log.count("serving {") >= expected)
        assert _total(_scrape(proc), "kdns_workers", "kdns_workers") == expected


# --------------------------------------------------------------------------- merging


def test_merge_sums_counters_and_keeps_copies_of_facts_single() -> None:
    def family(name: str, typ: str, *samples: tuple[str, dict[str, str], float]) -> list:  # type: ignore[type-arg]
        return [name, typ, "doc", "", [list(s) for s in samples]]

    first = [
        family("kdns_dns_requests", "counter", ("kdns_dns_requests_total", {"type": "A"}, 3.0)),
        family("kdns_registry_objects", "gauge", ("kdns_registry_objects", {"kind": "Service"}, 7)),
        family("process_start_time_seconds", "gauge", ("process_start_time_seconds", {}, 100.0)),
    ]
    second = [
        family(
            "kdns_dns_requests",
            "counter",
            ("kdns_dns_requests_total", {"type": "A"}, 4.0),
            ("kdns_dns_requests_total", {"type": "AAAA"}, 1.0),
        ),
        family("kdns_registry_objects", "gauge", ("kdns_registry_objects", {"kind": "Service"}, 7)),
        family("process_start_time_seconds", "gauge", ("process_start_time_seconds", {}, 105.0)),
    ]
    merged = {f.name: {(s.name, tuple(s.labels.items())): s.value for s in f.samples}
              for f in metrics.merge([first, second])}  # fmt: skip
    assert merged["kdns_dns_requests"] == {
        ("kdns_dns_requests_total", (("type", "A"),)): 7.0,
        ("kdns_dns_requests_total", (("type", "AAAA"),)): 1.0,
    }
    assert merged["kdns_registry_objects"] == {("kdns_registry_objects", (("kind", "Service"),)): 7}
    assert merged["process_start_time_seconds"] == {("process_start_time_seconds", ()): 100.0}
    # A dead worker leaves its counters, not its gauges.
    retired = metrics.fold(None, second)
    assert [f[0] for f in retired] == ["kdns_dns_requests"]
    assert metrics.fold(retired, second)[0][4][0][2] == 8.0


def test_a_killed_spawner_is_reaped_and_kdns_stops_to_be_restarted_whole() -> None:
    """Issue 22 item 15: the OOM killer takes the spawner (and so its workers): it is reaped
    (no zombie), logged, counted, and kdns stops (lameduck, then exit 1) so Kubernetes
    restarts the pod with every process instead of it serving alone at reduced capacity."""
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "2", "--lameduck", "1", listen=False,
        env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"},
    ) as proc:  # fmt: skip
        _eventually(lambda: proc.log.count("serving {") >= 2)
        spawner, (worker,) = _worker_pids(proc)
        assert proc.proc is not None
        os.kill(spawner, signal.SIGKILL)
        assert proc.proc.wait(60) == 1
        assert f"the worker spawner (pid {spawner}) killed by SIGKILL" in proc.log
        assert "stopping so the pod restarts" in proc.log
    _eventually(lambda: not _alive(spawner) and not _alive(worker))


def test_the_spawner_death_counter_is_exported() -> None:
    from kdns.authority.resolver import Resolver
    from kdns.metrics import Sources, _Collector
    from kdns.server.stats import Stats
    from tests.test_registry import make

    stats = Stats()
    stats.spawner_deaths = 1
    registry = make()
    resolver = Resolver(registry)
    sources = Sources(stats, None, lambda: registry, lambda: resolver, lambda: None, "dns://:53")
    found = {}
    for family in _Collector(sources, False).collect():
        if family.name.startswith("kdns_worker_spawner"):
            found[family.name] = family.samples[0].value
    assert found == {"kdns_worker_spawner_deaths": 1}
