"""End to end with a live (test) API server: the real kdns process watches a Kubernetes API test
server through kubernetes_asyncio with a generated kubeconfig, and dnspython asks it what a pod
would. Each case is one operator story from the "live cluster" issue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.k8sapi import K8sApi, endpointslice, namespace, pod, service
from tests.kdnsproc import Kdns

WEB = "web.prod.svc.cluster.local"
DB = "db.prod.svc.cluster.local"


def base_objects() -> list[dict[str, Any]]:
    return [
        namespace("default"),
        namespace("prod"),
        service("prod", "web", "10.96.0.5", [("http", 80)]),
        service("prod", "db", headless=True, ports=[("pg", 5432)]),
        endpointslice(
            "prod",
            "db-1",
            "db",
            [("10.244.0.1", True, "db-0"), ("10.244.0.2", True, "db-1")],
            [("pg", 5432)],
        ),
    ]


def eventually(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> float:
    """Poll until check() is true; return how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {check}")


def addresses(proc: Kdns, name: str) -> list[str] | None:
    """Sorted A records, or None for a non-NOERROR answer."""
    resp = proc.query(name, "A")
    if resp.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(r.to_text() for rrset in resp.answer for r in rrset)


def rcode(proc: Kdns, name: str) -> int:
    return proc.query(name, "A").rcode()


@pytest.fixture
def api() -> Iterator[K8sApi]:
    with K8sApi(base_objects(), bookmark_interval=0.5) as server:
        yield server


def start_kdns(api: K8sApi, tmp_path: Path, *extra: str) -> Kdns:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    return Kdns("--kubeconfig", str(kubeconfig), "--lameduck", "0", *extra)


@pytest.fixture
def kdns(api: K8sApi, tmp_path: Path) -> Iterator[Kdns]:
    with start_kdns(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        yield proc


def test_initial_list_is_served(kdns: Kdns) -> None:
    assert addresses(kdns, WEB) == ["10.96.0.5"]
    assert addresses(kdns, DB) == ["10.244.0.1", "10.244.0.2"]


def test_service_created_resolves_within_one_second(api: K8sApi, kdns: Kdns) -> None:
    api.add(service("prod", "fresh", "10.96.0.77"))
    took = eventually(lambda: addresses(kdns, "fresh.prod.svc.cluster.local") == ["10.96.0.77"])
    assert took < 1.0


def test_endpoint_going_not_ready_leaves_headless_answer(api: K8sApi, kdns: Kdns) -> None:
    """Spec 2.4.1: only ready endpoints answer a headless service."""
    api.modify(
        endpointslice(
            "prod",
            "db-1",
            "db",
            [("10.244.0.1", True, "db-0"), ("10.244.0.2", False, "db-1")],
            [("pg", 5432)],
        )
    )
    eventually(lambda: addresses(kdns, DB) == ["10.244.0.1"])
    assert rcode(kdns, "db-1.db.prod.svc.cluster.local") == dns.rcode.NXDOMAIN


def test_service_deleted_gives_nxdomain(api: K8sApi, kdns: Kdns) -> None:
    api.delete("Service", "prod", "web")
    eventually(lambda: rcode(kdns, WEB) == dns.rcode.NXDOMAIN)


def test_watch_cut_resumes_without_missing_an_event(api: K8sApi, kdns: Kdns) -> None:
    """A dropped watch resumes from the last resourceVersion (no relist), and the change made
    while it was down arrives by replay."""
    # The watch may be between streams (a server-side timeout just ended one) on a loaded
    # machine: cut it once it is open, and count lists from then on.
    eventually(lambda: api.cut_watches("Service") >= 1, timeout=15)
    lists = api.count("list", "Service")
    api.add(service("prod", "during-cut", "10.96.0.88"))
    eventually(lambda: addresses(kdns, "during-cut.prod.svc.cluster.local") == ["10.96.0.88"])
    assert api.count("list", "Service") == lists
    resumed = api.queries("watch", "Service")[-1]
    assert int(resumed["resourceVersion"]) > 0
    assert resumed.get("allowWatchBookmarks", "").lower() == "true"  # client sends "True"


def test_relist_after_410_during_churn_has_no_transient_nxdomain(api: K8sApi, kdns: Kdns) -> None:
    """410 Gone: kdns relists and swaps atomically. Names that exist throughout never answer
    NXDOMAIN while it happens; a deletion made during the gap is applied."""
    seen: list[int] = []
    stop = threading.Event()

    def ask_forever() -> None:
        while not stop.is_set():
            seen.append(rcode(kdns, WEB))
            seen.append(rcode(kdns, DB))

    asker = threading.Thread(target=ask_forever)
    asker.start()
    try:
        lists = api.count("list", "Service")
        for i in range(20):
            api.add(service("prod", f"churn-{i}", f"10.96.1.{i + 1}"))
        api.cut_watches()
        api.delete("Service", "prod", "churn-0")  # deleted while no watch is open
        api.compact()  # ... and its event compacted away: only a relist can see it
        for i in range(20, 30):
            api.add(service("prod", f"churn-{i}", f"10.96.1.{i + 1}"))
        eventually(lambda: api.count("list", "Service") > lists)
        eventually(lambda: addresses(kdns, "churn-29.prod.svc.cluster.local") == ["10.96.1.30"])
        eventually(lambda: rcode(kdns, "churn-0.prod.svc.cluster.local") == dns.rcode.NXDOMAIN)
    finally:
        stop.set()
        asker.join()
    assert len(seen) > 20
    assert set(seen) == {dns.rcode.NOERROR}, f"transient failures: {sorted(set(seen))}"
    assert addresses(kdns, "churn-5.prod.svc.cluster.local") == ["10.96.1.6"]


def test_api_server_down_keeps_answers_then_recovers(api: K8sApi, kdns: Kdns) -> None:
    """The API server goes away for 10 s: answers stay exactly the same; once it is back,
    kdns reconnects (backoff) and new changes arrive."""
    api.refuse_connections(True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert addresses(kdns, WEB) == ["10.96.0.5"]
        assert addresses(kdns, DB) == ["10.244.0.1", "10.244.0.2"]
        time.sleep(0.2)
    api.refuse_connections(False)
    api.add(service("prod", "after-outage", "10.96.0.99"))
    eventually(
        lambda: addresses(kdns, "after-outage.prod.svc.cluster.local") == ["10.96.0.99"],
        timeout=20,
    )
    assert kdns.get("ready")[0] == 200


def test_servfail_and_not_ready_before_first_sync(api: K8sApi, tmp_path: Path) -> None:
    """CoreDNS: until the first list completes, cluster names answer SERVFAIL (never a
    cacheable NXDOMAIN) and /ready is 503; then both turn."""
    api.delay(2.5)
    with start_kdns(api, tmp_path, "--startup-timeout", "30") as proc:
        assert proc.query(WEB, "A").rcode() == dns.rcode.SERVFAIL
        assert proc.query("nope.prod.svc.cluster.local", "A").rcode() == dns.rcode.SERVFAIL
        status, body = proc.get("ready")
        assert status == 503 and "Service" in body
        api.delay(0)
        eventually(lambda: proc.get("ready")[0] == 200, timeout=10)
        assert addresses(proc, WEB) == ["10.96.0.5"]
        assert rcode(proc, "nope.prod.svc.cluster.local") == dns.rcode.NXDOMAIN


def test_api_errors_are_retried(api: K8sApi, tmp_path: Path) -> None:
    """5xx and 429 on LIST: retried with backoff until it works."""
    api.fail_next(500, 2, verb="list", kind="Service")
    api.fail_next(429, 1, verb="list", kind="EndpointSlice")
    with start_kdns(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        assert addresses(proc, WEB) == ["10.96.0.5"]
    assert api.count("list", "Service") >= 3


def test_pods_verified_follow_the_pod_watch(api: K8sApi, tmp_path: Path) -> None:
    """CoreDNS pods verified: a pod name answers only while such a pod exists and runs."""
    api.add(pod("prod", "p1", "10.244.3.3"))
    with start_kdns(api, tmp_path, "--pods", "verified") as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        name = "10-244-3-3.prod.pod.cluster.local"
        assert addresses(proc, name) == ["10.244.3.3"]
        assert rcode(proc, "10-244-3-4.prod.pod.cluster.local") == dns.rcode.NXDOMAIN
        api.modify(pod("prod", "p1", "10.244.3.3", phase="Succeeded"))
        eventually(lambda: rcode(proc, name) == dns.rcode.NXDOMAIN)
        list_params = api.queries("list", "Pod")[0]
        assert "status.phase!=Succeeded" in list_params.get("fieldSelector", "")


def test_programming_latency_is_recorded(api: K8sApi, kdns: Kdns) -> None:
    """The endpoints controller stamps last-change-trigger-time; kdns records the time from it
    to the answer being served (CoreDNS kubernetes_dns_programming_duration_seconds)."""
    slice_ = endpointslice("prod", "db-1", "db", [("10.244.0.9", True, "db-9")], [("pg", 5432)])
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    slice_["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": stamp}
    api.modify(slice_)
    eventually(lambda: addresses(kdns, DB) == ["10.244.0.9"])
    families = {f.name: f for f in text_string_to_metric_families(kdns.get("metrics")[1])}
    histogram = families["kdns_dns_programming_duration_seconds"]
    count = next(s.value for s in histogram.samples if s.name.endswith("_count"))
    assert count >= 1
    events = families["kdns_watch_events"]
    assert any(s.labels["resource"] == "EndpointSlice" and s.value >= 1 for s in events.samples)
