"""The LAN kdns (docs/homelab.md, issues 12 and 21): qps for each query set a home network sends,
next to cluster names, in one run; kdns's RSS with a 1M-entry block list loaded; what block
lists cost, and DNS latency while a 1M list refreshes.

Every kdns serves the benchmark cluster (benchmarks/workload.py: 1,050 Services) plus a
homelab's gateway objects (``gateway_objects``: Gateways, HTTPRoutes/GRPCRoutes/TLSRoutes,
Ingresses and annotated LoadBalancer Services in the gateway zone home.example.com), with
``--no-forward`` and metrics off, pinned to CPU 0 with dnsperf on CPU 1, 127.0.0.1 only:

  kdns             no views: the standard deployment (the reference for the sets it can answer)
  kdns-lan         + a local zone lab.example.com (500 names and a wildcard), a 1M-name hosts
                   block list, and a view for 127.0.0.0/8 (dnsperf's address) applying it, so
                   every query pays the view's block check
  kdns-lan-killer  the same in killer mode

Query sets, one function each (``*_queries``, listed in ``QUERY_SETS``):

  cluster   cluster names (workload.plain_queries): the reference
  gateway   Gateway-derived names: route, Ingress and LoadBalancer hostnames (A, some AAAA),
            names under a wildcard route, and NXDOMAIN for names nobody claims
  blocked   names on the block list and names below them (0.0.0.0 / :: answers), 100,000
            distinct, spread over the whole list
  local     the local zone: specific names and names only its wildcard answers
  mixed     half cluster names, half blocked names

Per server and set: a 1 s warm-up, then dnsperf at full speed for --seconds. RSS is VmRSS after
the runs. Also (``--parts``; issue 21's Proof):

  lists    in this process: load time, index size and lookup cost (hit, miss) of the 1M-line
           hosts list and of a 1M-rule adblock list, and of the hosts list beside 14 regexes
  stalls   in this process: how late a 1 ms loop timer fires while the list is parsed off the
           loop, in a child of the parse helper (kdns's way) and in a thread (the fallback),
           and idle; and
           the loop's own share, the index rebuilt in slices (its longest step, its total)
           (benchmarks/refresh_lag.py times each step of a refresh inside the real App)
  refresh  kdns-lan with the list by URL from a loopback HTTP server: dnsperf at 10,000 qps
           (-v: its own percentiles) and a probe client (a query every 2 ms), a phase with no
           refresh, then a phase during which the list is downloaded, parsed and swapped in;
           p50/p99/p99.9/max of each, against the 5 ms target

Results: a table, benchmarks/results/lan.json.

    .venv/bin/python benchmarks/lan.py                  # everything, about 3 minutes
    .venv/bin/python benchmarks/lan.py --quick          # 2 s runs
    .venv/bin/python benchmarks/lan.py --sets gateway --servers kdns --seconds 5
    .venv/bin/python benchmarks/lan.py --entries 100000 --sets cluster,blocked
    .venv/bin/python benchmarks/lan.py --parts refresh --json /tmp/refresh.json

Needs dnsperf (apt-get install dnsperf).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dnsperf  # noqa: E402
import servers  # noqa: E402
import workload  # noqa: E402
from lan_blocking import (  # noqa: E402
    blocked_name,
    in_process,
    loop_stalls,
    refresh_latency,
    write_blocklist,
)

JSON = dict[str, Any]
ZONE = "home.example.com"  # the gateway zone
LOCAL_ZONE = "lab.example.com"  # the local zone (records and a wildcard)
LOCAL_NAMES = 500  # specific names in the local zone
RESULTS = Path(__file__).resolve().parent / "results" / "lan.json"
SERVERS = ("kdns", "kdns-lan", "kdns-lan-killer")
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
        self.entries = 1_000_000  # names on the block list (--entries)


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


# --- the block list and the local zone ----------------------------------------------------------


def lan_toml(blocklist: Path) -> str:
    records = [f'"host{i} A 192.168.{i // 250}.{i % 250 + 1}"' for i in range(LOCAL_NAMES)]
    return f"""
[[zones]]
name = "{LOCAL_ZONE}"
records = [{", ".join(records)}, "* A 192.168.1.58"]

[[blocklists]]
name = "ads"
file = "{blocklist}"
format = "hosts"
answer = "null"

[[views]]
name = "lan"
networks = ["127.0.0.0/8"]
blocklists = ["ads"]
"""


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


def blocked_queries(cluster: workload.Cluster, lan: Lan, count: int = 100_000) -> list[str]:
    """Listed names (A, 20% AAAA) and names below listed ones, spread over the whole list."""
    rng = random.Random(3)
    lines = []
    for _ in range(count):
        name = blocked_name(rng.randrange(lan.entries))
        if rng.random() < 0.3:
            name = f"sub{rng.randrange(1000)}.{name}"
        lines.append(f"{name} {'AAAA' if rng.random() < 0.2 else 'A'}")
    return lines


def local_queries(cluster: workload.Cluster, lan: Lan, count: int = 20_000) -> list[str]:
    """Half specific local names, half names only the local zone's wildcard answers."""
    rng = random.Random(4)
    lines = []
    for i in range(count):
        if i % 2:
            lines.append(f"host{rng.randrange(LOCAL_NAMES)}.{LOCAL_ZONE} A")
        else:
            lines.append(f"device{rng.randrange(5000)}.{LOCAL_ZONE} A")
    return lines


def mixed_queries(cluster: workload.Cluster, lan: Lan) -> list[str]:
    """Half cluster names, half blocked names."""
    lines = cluster_queries(cluster, lan, 10_000) + blocked_queries(cluster, lan, 10_000)
    random.Random(5).shuffle(lines)
    return lines


QUERY_SETS: dict[str, Callable[[workload.Cluster, Lan], list[str]]] = {
    "cluster": cluster_queries,
    "gateway": gateway_queries,
    "blocked": blocked_queries,
    "local": local_queries,
    "mixed": mixed_queries,
}
NEEDS_LAN = {"blocked", "local", "mixed"}  # sets the plain kdns has no data for


# --- measuring ----------------------------------------------------------------------------------


def start(server: str, objects: Path, toml: str) -> servers.Kdns:
    args = ["--gateway-zone", ZONE, "--no-forward", *servers.kdns_args("metrics-off")]
    if server == "kdns":
        return servers.Kdns(server, objects, *args)
    if server == "kdns-lan-killer":
        args.append("--killer")
    return servers.Kdns(server, objects, *args, toml=toml)


def run_set(dnsperf_bin: str, srv: servers.Kdns, datafile: Path, seconds: float) -> dict[str, Any]:
    dnsperf.run(dnsperf_bin, srv.port, str(datafile), 1)  # warm-up
    cpu0 = srv.cpu_seconds()
    run = dnsperf.run(dnsperf_bin, srv.port, str(datafile), seconds)
    cpu = srv.cpu_seconds() - cpu0
    return {
        "qps": round(run.qps),
        "lost": run.lost,
        "rcodes": run.rcodes,
        "cpu_us_per_query": round(cpu / max(run.completed, 1) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8, help="per dnsperf run (default 8)")
    parser.add_argument("--entries", type=int, default=1_000_000, help="block list size")
    parser.add_argument("--sets", default=",".join(QUERY_SETS), help="comma-separated query sets")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated servers")
    parser.add_argument("--quick", action="store_true", help="2 s runs")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--refresh-seconds", type=float, default=12,
                        help="each phase of the refresh latency run (default 12)")  # fmt: skip
    parser.add_argument("--parts", default="lists,qps,stalls,refresh",
                        help="comma-separated: lists, qps, stalls, refresh")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2
    parts = set(args.parts.split(","))
    sets = [s for s in args.sets.split(",") if s] if "qps" in parts else []
    chosen = [s for s in args.servers.split(",") if s] if "qps" in parts else []
    for names, allowed in ((sets, QUERY_SETS), (chosen, SERVERS)):
        bad = set(names) - set(allowed)
        if bad:
            parser.error(f"unknown: {', '.join(sorted(bad))} (choose from {', '.join(allowed)})")
    dnsperf_bin = servers.ensure_tool("dnsperf", "dnsperf")
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "entries": args.entries,
        "seconds": args.seconds,
        "command": " ".join(["benchmarks/lan.py", *sys.argv[1:]]),
        "qps": {},
        "rss_mib": {},
    }
    with tempfile.TemporaryDirectory(prefix="kdns-lan-") as tmpdir:
        tmp = Path(tmpdir)
        cluster = workload.cluster_objects()
        lan = gateway_objects()
        lan.entries = args.entries
        cluster.objects += lan.objects
        objects = workload.write_objects(cluster, tmp / "objects.json")
        blocklist = write_blocklist(tmp / "ads.hosts", args.entries)
        toml = lan_toml(blocklist)
        files = {
            name: workload.write_queries(QUERY_SETS[name](cluster, lan), tmp / f"{name}.txt")
            for name in sets
        }
        if "lists" in parts:
            results["in_process"] = in_process(tmp, blocklist, args.entries)
        if "stalls" in parts:
            results["loop_stalls"] = loop_stalls(blocklist)
        if "refresh" in parts:
            mixed = files.get("mixed") or workload.write_queries(
                mixed_queries(cluster, lan), tmp / "mixed.txt"
            )
            results["refresh"] = refresh_latency(dnsperf_bin, objects, blocklist, mixed, args.refresh_seconds)  # fmt: skip
            print(f"refresh: {json.dumps(results['refresh'], indent=1)}", flush=True)
        for server in chosen:
            began = time.monotonic()
            with start(server, objects, toml) as srv:
                started = time.monotonic() - began
                results["rss_mib"][server] = round(srv.rss_kib() / 1024, 1)
                row = results["qps"][server] = {"start_seconds": round(started, 1)}
                for name in sets:
                    if server == "kdns" and name in NEEDS_LAN:
                        continue
                    row[name] = run_set(dnsperf_bin, srv, files[name], args.seconds)
                    print(f"{server:16s} {name:8s} {row[name]}", flush=True)
                results["rss_mib"][server] = max(results["rss_mib"][server], round(srv.rss_kib() / 1024, 1))  # fmt: skip
    print()
    print(f"{'server':16s} " + " ".join(f"{s:>10s}" for s in sets) + f" {'RSS MiB':>8s}")
    for server in chosen:
        row = results["qps"][server]
        cells = [f"{row[s]['qps']:>10,d}" if s in row else f"{'-':>10s}" for s in sets]
        print(f"{server:16s} " + " ".join(cells) + f" {results['rss_mib'][server]:>8.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
