"""The LAN kdns (docs/homelab.md): qps for each query set a home network sends, next to cluster
names, in one run of one kdns.

One kdns serves the benchmark cluster (benchmarks/workload.py: 1,050 Services) plus a homelab's
gateway objects (``gateway_objects``: Gateways, HTTPRoutes/GRPCRoutes/TLSRoutes, Ingresses and
annotated LoadBalancer Services in the gateway zone home.example.com), and dnsperf asks, query
set by query set (one function each, ``*_queries``):

  cluster   cluster names (workload.plain_queries): the reference
  gateway   Gateway-derived names: route, Ingress and LoadBalancer hostnames (A, some AAAA),
            names under a wildcard route, and NXDOMAIN for names nobody claims

    .venv/bin/python benchmarks/lan.py                 # every query set, 10 s each
    .venv/bin/python benchmarks/lan.py --sets gateway --seconds 5

Needs dnsperf (apt-get install dnsperf). kdns is pinned to CPU 0, dnsperf to CPU 1, loopback.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dnsperf  # noqa: E402
import servers  # noqa: E402
import workload  # noqa: E402

JSON = dict[str, Any]
ZONE = "home.example.com"
GATEWAYS = 4  # Gateways, each with its own LB IP
ROUTES = 300  # HTTPRoutes (plus a GRPCRoute and a TLSRoute per 10)
INGRESSES = 50
LOAD_BALANCERS = 20  # annotated LoadBalancer Services


class Lan:
    """The gateway objects and the names the query sets draw from."""

    def __init__(self) -> None:
        self.objects: list[JSON] = []
        self.a_names: list[str] = []  # route / Ingress / LoadBalancer hostnames
        self.aaaa_names: list[str] = []  # behind a dual-stack Gateway
        self.wildcard_parents: list[str] = []  # *.<parent> routes: <random>.<parent> answers


def gateway_objects() -> Lan:
    lan = Lan()
    for g in range(GATEWAYS):
        addresses = [{"type": "IPAddress", "value": f"192.168.1.{240 + g}"}]
        if g == 0:
            addresses.append({"type": "IPAddress", "value": "fd00::240"})
        lan.objects.append({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": f"gw{g}", "namespace": "gateways"},
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [{"name": "https", "hostname": f"*.{ZONE}", "port": 443,
                               "protocol": "HTTPS",
                               "allowedRoutes": {"namespaces": {"from": "All"}}}],
            },
            "status": {"addresses": addresses},
        })  # fmt: skip
    for r in range(ROUTES):
        kind, version = "HTTPRoute", "v1"
        if r % 10 == 1:
            kind = "GRPCRoute"
        elif r % 10 == 2:
            kind, version = "TLSRoute", "v1alpha2"
        gateway = r % GATEWAYS
        hostname = f"app{r}.{ZONE}" if r % 25 else f"*.env{r}.{ZONE}"
        lan.objects.append({
            "apiVersion": f"gateway.networking.k8s.io/{version}",
            "kind": kind,
            "metadata": {"name": f"route{r}", "namespace": workload._ns(r % 30)},
            "spec": {"parentRefs": [{"name": f"gw{gateway}", "namespace": "gateways"}],
                     "hostnames": [hostname]},
        })  # fmt: skip
        if hostname.startswith("*."):
            lan.wildcard_parents.append(hostname[2:])
        else:
            lan.a_names.append(hostname)
            if gateway == 0:
                lan.aaaa_names.append(hostname)
    for i in range(INGRESSES):
        host = f"ing{i}.{ZONE}"
        lan.objects.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": f"ing{i}", "namespace": workload._ns(i % 30)},
            "spec": {"rules": [{"host": host}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.230"}]}},
        })  # fmt: skip
        lan.a_names.append(host)
    for i in range(LOAD_BALANCERS):
        host = f"lb{i}.{ZONE}"
        lan.objects.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"lb{i}", "namespace": "gateways",
                         "annotations": {"external-dns.alpha.kubernetes.io/hostname": host}},
            "spec": {"type": "LoadBalancer", "clusterIP": f"10.97.0.{i + 1}",
                     "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": f"192.168.1.{200 + i}"}]}},
        })  # fmt: skip
        lan.a_names.append(host)
    return lan


# --- query sets: one function each --------------------------------------------------------------


def cluster_queries(cluster: workload.Cluster, lan: Lan, count: int = 20_000) -> list[str]:
    """Cluster names, as pods ask them (the reference next to the LAN's sets)."""
    return workload.plain_queries(cluster, count)


def gateway_queries(cluster: workload.Cluster, lan: Lan, count: int = 20_000) -> list[str]:
    """Gateway-derived names: A 70%, AAAA 10%, under a wildcard route 10% (a different name
    each time), NXDOMAIN in the zone 10%."""
    rng = random.Random(3)
    lines = [f"{rng.choice(lan.a_names)} A" for _ in range(count * 70 // 100)]
    lines += [f"{rng.choice(lan.aaaa_names)} AAAA" for _ in range(count * 10 // 100)]
    lines += [f"h{i}.{rng.choice(lan.wildcard_parents)} A" for i in range(count * 10 // 100)]
    lines += [f"nobody{i}.{ZONE} A" for i in range(count * 10 // 100)]
    rng.shuffle(lines)
    return lines


QUERY_SETS: dict[str, Callable[[workload.Cluster, Lan], list[str]]] = {
    "cluster": cluster_queries,
    "gateway": gateway_queries,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(QUERY_SETS), help="query sets, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    unknown = set(sets) - set(QUERY_SETS)
    if unknown:
        parser.error(f"unknown query sets: {', '.join(sorted(unknown))}")
    perf = servers.ensure_tool("dnsperf", "dnsperf")
    cluster = workload.cluster_objects()
    lan = gateway_objects()
    cluster.objects += lan.objects
    with tempfile.TemporaryDirectory() as tmp:
        objects = workload.write_objects(cluster, Path(tmp) / "objects.json")
        server = servers.Kdns("kdns-lan", objects, "--gateway-zone", ZONE, "--no-forward",
                              *servers.kdns_args("metrics-off"))  # fmt: skip
        try:
            print(f"{'query set':<12} {'qps':>10} {'lost':>6}")
            for name in sets:
                data = workload.write_queries(
                    QUERY_SETS[name](cluster, lan), Path(tmp) / f"{name}.txt"
                )
                dnsperf.run(perf, server.port, str(data), 1.0)  # warm-up
                run = dnsperf.run(perf, server.port, str(data), args.seconds)
                print(f"{name:<12} {run.qps:>10.0f} {run.lost:>6}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
