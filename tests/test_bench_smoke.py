"""The benchmark's generators (benchmarks/workload.py, servers.py): the cluster, the query
mixes, NSD's zones transferred from a real kdns. No dnsperf, no NSD, no timings."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import dnsperf  # noqa: E402
import qps  # noqa: E402
import servers  # noqa: E402
import workload  # noqa: E402

from kdns.k8s.sources import load_objects  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> workload.Cluster:
    return workload.cluster_objects()


def test_cluster_has_the_issue_sizes(cluster: workload.Cluster, tmp_path: Path) -> None:
    kinds = Counter(o["kind"] for o in cluster.objects)
    assert kinds["Service"] == 1050
    assert kinds["Namespace"] == 30
    endpoints = sum(len(o["endpoints"]) for o in cluster.objects if o["kind"] == "EndpointSlice")
    assert endpoints == 3400
    types = Counter(
        "headless" if o["spec"].get("clusterIP") == "None" else o["spec"]["type"]
        for o in cluster.objects
        if o["kind"] == "Service"
    )
    assert types["ExternalName"] > 0 and types["headless"] > 0 and types["ClusterIP"] > 800
    # kdns reads the manifest the benchmark writes, every object of it
    path = workload.write_objects(cluster, tmp_path / "objects.json")
    assert len(list(load_objects([str(path)]))) == len(cluster.objects)


def test_query_mixes(cluster: workload.Cluster, tmp_path: Path) -> None:
    plain = workload.plain_queries(cluster)
    assert {line.split()[1] for line in plain} == {"A", "AAAA", "SRV", "PTR"}
    nx = workload.nxdomain_queries(cluster)
    existing = set(f"{n} A" for n in cluster.a_names)
    walks = [line for line in nx if line not in existing]
    assert len(set(walks)) == len(walks) >= 20_000
    assert 0.89 < len(walks) / len(nx) < 0.91
    suffixes = Counter(line.split()[0].split(".example.com.", 1)[1] for line in walks)
    assert suffixes["svc.cluster.local"] == suffixes["cluster.local"] == len(walks) // 3
    path = workload.write_queries(plain, tmp_path / "plain.txt")
    assert path.read_text().count("\n") == len(plain)


def test_nsd_zones_come_from_kdns_by_axfr(cluster: workload.Cluster, tmp_path: Path) -> None:
    objects = workload.write_objects(cluster, tmp_path / "objects.json")
    zones = servers.transfer_zones(objects)
    assert set(zones) == {"cluster.local", "in-addr.arpa", "ip6.arpa"}
    for fqdn in (cluster.a_names[0], cluster.aaaa_names[0], cluster.srv_names[0]):
        assert zones["cluster.local"].get_node(fqdn + ".") is not None, fqdn
    assert zones["cluster.local"].get_node(cluster.headless_names[0] + ".") is not None
    for ptr in cluster.ptr_names[:50]:
        zone = zones["ip6.arpa" if ptr.endswith(".ip6.arpa") else "in-addr.arpa"]
        assert zone.get_node(ptr + ".") is not None, ptr
    files = servers.write_zone_files(zones, tmp_path)
    text = files["cluster.local"].read_text()
    assert text.startswith("$ORIGIN cluster.local.\n") and " SOA " in text
    assert cluster.a_names[0].removesuffix(".cluster.local") + " " in text


def test_dnsperf_report_is_read() -> None:
    out = [
        "> NOERROR web.svc.cluster.local A 0.000200\n",
        "> T web.svc.cluster.local A\n",
        "> NXDOMAIN x.svc.cluster.local A 0.000100\n",
        "  Queries sent:         10\n",
        "  Queries completed:    9 (90.00%)\n",
        "  Queries lost:         1 (10.00%)\n",
        "  Response codes:       NOERROR 5 (55.56%), NXDOMAIN 4 (44.44%)\n",
        "  Queries per second:   1234.5\n",
    ]
    run = dnsperf.parse(out)
    assert (run.sent, run.completed, run.lost, run.qps) == (10, 9, 1, 1234.5)
    assert run.rcodes == {"NOERROR": 5, "NXDOMAIN": 4}
    assert run.latencies == [0.0001, 0.0002]
    assert run.percentile(50) == pytest.approx(200)


def test_prefetch_precision_from_metrics() -> None:
    assert qps.prefetch_metrics("kdns_requests_total 5\n") == (None, {})
    text = "kdns_killer_prefetch_issued_total 10\nkdns_killer_prefetch_used_total 8\n"
    assert qps.prefetch_metrics(text)[0] == pytest.approx(0.8)
    assert qps.prefetch_metrics("kdns_killer_prefetch_precision 0.5\n")[0] == 0.5
    text = 'kdns_killer_prefetch_total{result="used"} 3\nkdns_killer_prefetch_total{result="wasted"} 1\n'
    assert qps.prefetch_metrics(text)[0] == pytest.approx(0.75)


def test_best_round_takes_the_max_fields_of_the_best_round_and_the_last_rounds_latency() -> None:
    first = {"qps": 300.0, "cpu_us_per_query": 3.0, "cpu_share": 0.99, "lost_max": 1,
             "rcodes": {"NOERROR": 3}, "rss_kib": 10}  # fmt: skip
    last = {"qps": 250.0, "cpu_us_per_query": 3.6, "cpu_share": 0.97, "lost_max": 0,
            "rcodes": {"NOERROR": 2}, "rss_kib": 12, "p99_us": 400.0, "lost_50": 0}  # fmt: skip
    row = qps.best_round([first, last])
    # The best round's max and its own CPU per query (never one round's qps with another's CPU).
    assert (row["qps"], row["cpu_us_per_query"], row["cpu_share"]) == (300.0, 3.0, 0.99)
    assert (row["lost_max"], row["rcodes"]) == (1, {"NOERROR": 3})
    # Latency and memory as the last round (the one with the latency runs) measured them.
    assert (row["p99_us"], row["lost_50"], row["rss_kib"]) == (400.0, 0, 12)
    assert row["qps_rounds"] == [300.0, 250.0]


def test_best_round_keeps_an_error_only_when_no_round_measured() -> None:
    good = {"qps": 5.0, "rss_kib": 1}
    assert qps.best_round([good, {"error": "died"}])["qps"] == 5.0
    assert qps.best_round([{"error": "died"}]) == {"error": "died"}


def test_rate_percentiles_are_medians_and_none_without_data() -> None:
    assert qps._median([476.0, 318.0, 324.0]) == 324.0
    assert qps._median([1.0, 4.0]) == 2.5
    assert qps._median([1.0, None, 3.0]) is None
