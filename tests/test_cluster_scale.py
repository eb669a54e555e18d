"""benchmarks/cluster_scale.py's arithmetic and its relist prober: what its figures mean. No
kdns, no timings asserted."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import cluster_scale  # noqa: E402


def test_memory_is_reported_per_kind_not_per_endpoint_as_object() -> None:
    """Requirement (issue 22 item 1): bytes per Service, per endpoint and per Pod come from the
    stage that added them; per API object counts Services, EndpointSlices and Pods, never
    endpoints."""
    shape = cluster_scale.Shape("t", 100, 1000, 500, 5, "verified", relist=False)
    assert shape.api_objects == 100 + 100 + 500
    kib = {"services": 1000 + 200, "slices": 1200 + 1000, "pods": 2200 + 250}
    out = cluster_scale.per_kind(shape, 1000, kib)
    assert out == {
        "Service": 200 * 1024 / 100,
        "endpoint": 1000 * 1024 / 1000,
        "Pod": 250 * 1024 / 500,
        "API object": 1450 * 1024 / 700,
    }
    no_pods = cluster_scale.Shape("t", 100, 1000, 0, 5, "insecure", relist=False)
    assert set(cluster_scale.per_kind(no_pods, 1000, kib)) == {"Service", "endpoint", "API object"}


def test_stages_add_services_then_slices_then_pods() -> None:
    shape = cluster_scale.Shape("t", 10, 35, 7, 3, "verified", relist=False)
    services, slices, pods = cluster_scale.build(shape)
    assert {o["kind"] for o in services} == {"Namespace", "Service"}
    assert sum(o["kind"] == "Service" for o in services) == 10
    assert [o["kind"] for o in slices] == ["EndpointSlice"] * 10
    assert sum(len(o["endpoints"]) for o in slices) == 35
    assert [o["kind"] for o in pods] == ["Pod"] * 7
    large = cluster_scale.SHAPES["large"]
    assert (large.services, large.endpoints, large.pods) == (10000, 100000, 50000)


def test_relist_prober_counts_a_timed_out_query_as_a_wait() -> None:
    """Requirement (issue 22 item 3): a probe that gets no reply is counted, and its wait (at
    least the timeout) is the worst wait, not left out."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(30)
    seen = threading.Event()

    def answer() -> None:
        # Answer every query but the third; stop after six.
        for n in range(6):
            data, peer = server.recvfrom(512)
            if n != 2:
                server.sendto(data, peer)
        seen.set()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    prober = cluster_scale.probe(port, "svc1.ns1.svc.cluster.local", until=seen, timeout=0.5)
    server.close()
    assert prober.lost >= 1
    assert prober.worst >= 0.5
