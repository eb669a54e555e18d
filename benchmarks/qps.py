"""`make bench`: kdns next to NSD on the same cluster, in one run, with the issues' targets.

Servers (--servers): NSD (Debian package) serving zones transferred (AXFR) from kdns, so both
answer from the same records; kdns standard with metrics on (``kdns``) and off
(``kdns-nometrics``); kdns killer (``kdns-killer``, ``--killer``). Optional extras: ``dnslib``
(a naive parse+build server) and ``echo`` (a UDP echo: the ceiling of a Python server).

The cluster (benchmarks/workload.py): 1,050 Services, 3,400 endpoints, 30 namespaces, served
by kdns with ``kdns serve --objects FILE``. Mixes (--mixes):

  plain     (a) cluster names: A, AAAA, SRV, PTR
  edns      (b) the same, EDNS on every query (dnsperf -e)
  cookie    (b2) the same, EDNS with one client COOKIE option on every query (dnsperf -E)
  nxdomain  (c) 90% NXDOMAIN ndots:5 walk names over 21,000 distinct names, 10% existing
  fresh     (c2) never-seen NXDOMAIN walk names: 3,300,000 distinct names, each asked once (the
                max run only: a first sight of every name)
  trace     (d) pods walking their search list to external names through a loopback upstream
                that adds 20 ms and answers with TTL 10 s (benchmarks/trace_replay.py); kdns only,
                each mode also with --autopath (the pods are Pods of the objects served, for at
                most AUTOPATH_TRACE_SECONDS)

Each server runs pinned to CPU 0 and dnsperf to CPU 1, on 127.0.0.1 only. Per mix, in
--rounds rounds (2), every server in turn, started anew each round: a 1 s warm-up and the max
qps run (dnsperf -q 500 -c 8), whose CPU time gives CPU per query; a server's row takes its
best round (this machine is shared: its noise only lowers a max, and every server gets the same
rounds; JSON: qps_rounds). In the last round, mixes (a)-(c) also get a run at 50% of the
server's max (-Q; latency percentiles from dnsperf -v) and one at 90% (lost queries); on mix
(a), latency at the same absolute rates for every server (10k, 25k and 50k qps), the median of
three runs at each. CPU per query and the share of its core each server used at max are
reported beside each ratio. Output: a table per mix, the targets as PASS/MISS, and
benchmarks/results/latest.json.

    make bench                                   # everything (about 20 minutes)
    .venv/bin/python benchmarks/qps.py --quick   # smoke run (about 4 minutes)
    .venv/bin/python benchmarks/qps.py --mixes plain,edns --servers nsd,kdns --seconds 15

Needs dnsperf and nsd (Debian: apt-get install dnsperf nsd); when run as root the script
installs whichever is missing with apt-get, else it says how.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chart  # noqa: E402
import dnsperf  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
import trace_replay  # noqa: E402
import workload  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
ALL_SERVERS = ("nsd", "kdns", "kdns-nometrics", "kdns-killer")
EXTRA_SERVERS = ("dnslib", "echo")
TRACE_SERVERS = ("kdns", "kdns-killer")  # NSD cannot forward; metrics off adds nothing here
TRACE_TOML = "[cache]\nserve_stale = 0\n"  # serve-stale off (the default, said explicitly)
# Mix (d) again with --autopath, after each trace server chosen (issue 18); no longer than
# this, so both add about 2 minutes to a full run.
TRACE_AUTOPATH = {"kdns": "kdns-autopath", "kdns-killer": "kdns-killer-autopath"}
AUTOPATH_TRACE_SECONDS = 60.0


def start(server: str, objects: Path, zone_files: dict[str, Path], tmp: Path) -> servers.Server:
    if server == "nsd":
        nsd_dir = Path(tempfile.mkdtemp(prefix="nsd-", dir=tmp))
        return servers.Nsd(servers.ensure_tool("nsd", "nsd"), zone_files, nsd_dir)
    if server in EXTRA_SERVERS:
        script = {"dnslib": "baseline_dnslib.py", "echo": "echo_ceiling.py"}[server]
        return servers.Script(report.LABELS[server], Path(__file__).parent / script)
    variant = {"kdns": "metrics-on", "kdns-nometrics": "metrics-off", "kdns-killer": "killer"}
    return servers.Kdns(report.LABELS[server], objects, *servers.kdns_args(variant[server]),
                        "--no-forward")  # fmt: skip


RATES = (10_000, 25_000, 50_000)  # the same absolute rates for every server (latency)
# Runs per rate: the row gives the median of their percentiles. One 8 s run's p99 at these
# rates moved between 190 and 480 µs for every server, NSD included (the machine's noise, not
# the server's); the median of three is less the luck of one run.
RATE_RUNS = 3
ROUNDS = 2  # max-qps rounds per mix (--rounds): the servers in turn, each round
# What a row takes from its best max-qps round (the round's own CPU per query with it).
MAX_FIELDS = ("qps", "lost_max", "rcodes", "cpu_us_per_query", "cpu_share", "names_repeated")


def measure_max(
    dnsperf_bin: str, srv: servers.Server, datafile: str, seconds: float, edns: bool,
    option: str | None = None, *, warmup: str | None = None, fresh: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A 1 s warm-up, then the max qps run: qps, CPU per query and the share of its core the
    server used.

    ``fresh``: ``datafile`` names are each asked once (never-seen names): the warm-up runs on
    ``warmup`` instead (a server started anew has never seen them)."""
    dnsperf.run(
        dnsperf_bin, srv.port, warmup or datafile, 1, edns=edns, option=option
    )  # warm-up, not counted
    cpu0 = srv.cpu_seconds()
    top = dnsperf.run(dnsperf_bin, srv.port, datafile, seconds, edns=edns, option=option)
    cpu = srv.cpu_seconds() - cpu0
    row: dict[str, Any] = {
        "qps": top.qps,
        "lost_max": top.lost,
        "rcodes": top.rcodes,
        "cpu_us_per_query": 1e6 * cpu / top.completed if top.completed else None,
        # Below ~0.95 the server did not saturate its core: its max is not its CPU's.
        "cpu_share": cpu / seconds,
        "rss_kib": srv.rss_kib(),
    }
    if fresh:  # no latency runs: a second run would ask the names again
        row["names_repeated"] = max(0, top.sent - _lines(datafile))
        row.update(p50_us=None, p99_us=None, p999_us=None, lost_50=0, lost_90=0)
    return row


def measure_latency(
    dnsperf_bin: str, srv: servers.Server, datafile: str, seconds: float, edns: bool,
    option: str | None, top_qps: float, rates: tuple[int, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """At 50% of ``top_qps`` (latency percentiles, lost) and 90% (lost); then, for each of
    ``rates``, latency at that rate (the median of RATE_RUNS runs)."""
    drops0 = servers.udp_rcvbuf_errors()
    half = dnsperf.run(dnsperf_bin, srv.port, datafile, seconds, edns=edns, option=option, rate=top_qps / 2,
                       verbose=True)  # fmt: skip
    drops50 = servers.udp_rcvbuf_errors()
    ninety = dnsperf.run(
        dnsperf_bin, srv.port, datafile, seconds, edns=edns, option=option, rate=top_qps * 0.9
    )
    drops90 = servers.udp_rcvbuf_errors()
    row: dict[str, Any] = {
        "p50_us": half.percentile(50),
        "p99_us": half.percentile(99),
        "p999_us": half.percentile(99.9),
        "half_qps": half.qps,
        "lost_50": half.lost,
        "lost_90": ninety.lost,
        "ninety_qps": ninety.qps,
        # kernel drops on full UDP receive buffers during those runs (any socket on the host)
        "rcvbuf_drops_50": drops50 - drops0,
        "rcvbuf_drops_90": drops90 - drops50,
    }
    at_rates = {}
    for rate in rates:
        runs = [
            dnsperf.run(dnsperf_bin, srv.port, datafile, seconds, edns=edns, option=option,
                        rate=rate, verbose=True)
            for _ in range(RATE_RUNS)
        ]  # fmt: skip
        at_rates[str(rate)] = {
            "qps": _median([run.qps for run in runs]),
            "p50_us": _median([run.percentile(50) for run in runs]),
            "p99_us": _median([run.percentile(99) for run in runs]),
            "p999_us": _median([run.percentile(99.9) for run in runs]),
            "p99_runs": [run.percentile(99) for run in runs],
            "lost": sum(run.lost for run in runs),
        }
    if at_rates:
        row["rates"] = at_rates
    row["rss_kib"] = srv.rss_kib()
    return row


def _median(values: list[Any]) -> Any:
    """The median of ``values`` (None when any is None: a run without latency data)."""
    if any(v is None for v in values):
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def best_round(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's row of a mix from its rounds (``rows``, the last with the latency runs
    when the mix has them): the max-qps fields of its best round, every round's qps in
    ``qps_rounds``. A shared machine's noise only ever lowers a max; the best round is the
    nearest to what the server itself can do, and every server gets the same rounds."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return rows[-1]
    best = max(ok, key=lambda r: r["qps"])
    row = dict(ok[-1])
    row.update({k: best[k] for k in MAX_FIELDS if k in best})
    row["qps_rounds"] = [r["qps"] for r in ok]
    return row


def _lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def prefetch_metrics(text: str) -> tuple[float | None, dict[str, float]]:
    """kdns_killer_prefetch_* samples from /metrics and the precision they give, None when the
    killer's metrics are absent: a ``precision`` gauge if exported, else used / issued, else
    used / (used + wasted), matching those words in sample names and labels."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kdns_killer_prefetch") and "_created" not in line:
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    for name, value in samples.items():
        if "precision" in name:
            return value, samples

    def total(pattern: str, unless: str = "^$") -> float:
        return sum(
            v for n, v in samples.items() if re.search(pattern, n) and not re.search(unless, n)
        )

    used = total("used|useful|hit", unless="unused")
    wasted = total("wasted|unused|expired|evicted")
    issued = total("issued|sent|started")
    if issued:
        return used / issued, samples
    if used + wasted:
        return used / (used + wasted), samples
    return None, samples


def run_trace(
    server: str, objects: Path, namespaces: list[str], seconds: float, clients: int
) -> dict[str, Any]:
    upstream = trace_replay.TraceUpstream()
    variant = "killer" if server.startswith("kdns-killer") else "metrics-on"
    args = servers.kdns_args(variant) + ["--upstream", f"127.0.0.1:{upstream.port}"]
    if server.endswith("-autopath"):
        args += ["--autopath", "--autopath-search", trace_replay.HOST_DOMAIN]
    with servers.Kdns(report.LABELS[server], objects, *args, toml=TRACE_TOML) as srv:
        cpu0 = srv.cpu_seconds()
        result = trace_replay.run_trace(upstream, srv.port, namespaces, seconds, clients=clients)
        cpu = srv.cpu_seconds() - cpu0
        row = result.summary()
        queries = sum(w.queries for w in result.walks)
        row["cpu_us_per_query"] = 1e6 * cpu / queries if queries else None
        row["rss_kib"] = srv.rss_kib()
        row["prefetch_precision"], row["prefetch_metrics"] = prefetch_metrics(srv.metrics())
        row["seconds"] = seconds
    return row


def _one_line(err: Exception) -> str:
    """The first line of an error and, for a server that died, the last line it logged."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [repr(err)]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8, help="per dnsperf run (default 8)")
    parser.add_argument("--mixes", default=",".join(workload.MIXES),
                        help="comma-separated: plain,edns,cookie,nxdomain,fresh,trace")  # fmt: skip
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help=f"comma-separated from {','.join(ALL_SERVERS + EXTRA_SERVERS)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"max-qps rounds per mix, servers in turn; the best counts (default {ROUNDS})")  # fmt: skip
    parser.add_argument("--trace-seconds", type=float, default=90, help="mix (d) length")
    parser.add_argument("--trace-clients", type=int, default=50, help="mix (d) pods")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 s dnsperf runs, 35 s trace, 20 pods")  # fmt: skip
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.trace_seconds, args.trace_clients, args.rounds = 2, 35, 20, 1
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    mixes = [m for m in args.mixes.split(",") if m]
    chosen = [s for s in args.servers.split(",") if s]
    for name, allowed in ((mixes, workload.MIXES), (chosen, ALL_SERVERS + EXTRA_SERVERS)):
        bad = set(name) - set(allowed)
        if bad:
            parser.error(f"unknown: {', '.join(sorted(bad))} (choose from {', '.join(allowed)})")

    dnsperf_bin = servers.ensure_tool("dnsperf", "dnsperf")
    if servers.pin(servers.CLIENT_CPU):  # mix (d)'s clients and upstream run in this process
        os.sched_setaffinity(0, {servers.CLIENT_CPU})
    if "nsd" in chosen:
        servers.ensure_tool("nsd", "nsd")
    began = time.monotonic()
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },  # fmt: skip
        "settings": {
            "seconds": args.seconds,
            "mixes": mixes,
            "servers": chosen,
            "rounds": args.rounds,
            "rate_runs": RATE_RUNS,
            "trace_seconds": args.trace_seconds,
            "trace_clients": args.trace_clients,
            "clients": dnsperf.CLIENTS,
            "outstanding": dnsperf.OUTSTANDING,
        },  # fmt: skip
        "workload": {
            "services": workload.SERVICES,
            "endpoints": workload.ENDPOINTS,
            "namespaces": workload.NAMESPACES,
        },  # fmt: skip
        "mixes": {},
        "trace": {},
    }
    with tempfile.TemporaryDirectory(prefix="kdns-bench-") as tmpdir:
        tmp = Path(tmpdir)
        cluster = workload.cluster_objects()
        objects = workload.write_objects(cluster, tmp / "objects.json")
        files = {
            "plain": workload.write_queries(workload.plain_queries(cluster), tmp / "plain.txt"),
            "nxdomain": workload.write_queries(workload.nxdomain_queries(cluster), tmp / "nx.txt"),
        }
        files["edns"] = files["cookie"] = files["plain"]
        if "fresh" in mixes:
            fresh = workload.fresh_nxdomain_queries(cluster)
            files["fresh"] = workload.write_queries(fresh, tmp / "fresh.txt")
        zone_files: dict[str, Path] = {}
        if "nsd" in chosen and set(mixes) - {"trace"}:
            print("transferring the zones from kdns for NSD ...", file=sys.stderr)
            zone_files = servers.write_zone_files(servers.transfer_zones(objects), tmp)
        # Mix-major order: the servers of one mix run back to back, so the ratios between them
        # see the same machine (a shared machine drifts over minutes).
        for mix in (m for m in workload.MIXES if m in mixes and m != "trace"):
            rows = results["mixes"].setdefault(mix, {})
            tried: dict[str, list[dict[str, Any]]] = {server: [] for server in chosen}
            fresh = mix == "fresh"
            # Rounds: every server in turn, started anew each round (the latency runs in the
            # last); each keeps its best max (best_round).
            for turn in range(args.rounds):
                last = turn == args.rounds - 1
                for server in chosen:
                    if tried[server] and "error" in tried[server][-1]:
                        continue  # broken in an earlier round: its error stands
                    print(f"{mix}: {report.LABELS[server]} (round {turn + 1}) ...", file=sys.stderr)
                    try:
                        with start(server, objects, zone_files, tmp) as srv:
                            row = measure_max(
                                dnsperf_bin, srv, str(files[mix]), args.seconds,
                                mix in workload.EDNS_MIXES, workload.OPTION_MIXES.get(mix),
                                warmup=str(files["plain"]), fresh=fresh,
                            )  # fmt: skip
                            if last and not fresh:  # a second run would repeat fresh names
                                top = max(r["qps"] for r in [*tried[server], row])
                                row.update(measure_latency(
                                    dnsperf_bin, srv, str(files[mix]), args.seconds,
                                    mix in workload.EDNS_MIXES, workload.OPTION_MIXES.get(mix),
                                    top, RATES if mix == "plain" and not args.quick else (),
                                ))  # fmt: skip
                    except Exception as err:  # one broken server must not lose the others' numbers
                        row = {"error": _one_line(err)}
                    tried[server].append(row)
            for server in chosen:
                rows[server] = best_round(tried[server])
            report.print_mix(mix, rows)
        if "trace" in mixes:
            # The trace clients are Pods of the objects every trace server gets (autopath finds
            # a client's namespace from its pod IP; the others hold the same objects).
            pods = trace_replay.pod_objects(args.trace_clients, cluster.namespaces)
            traced = tmp / "trace-objects.json"
            traced.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                          "items": cluster.objects + pods}))  # fmt: skip
            runs = [(s, args.trace_seconds) for s in TRACE_SERVERS if s in chosen]
            runs = [r for s, seconds in runs for r in ((s, seconds), (TRACE_AUTOPATH[s],
                    min(seconds, AUTOPATH_TRACE_SECONDS)))]  # fmt: skip
            for server, seconds in runs:
                print(f"trace: {report.LABELS[server]} ({seconds:g} s) ...", file=sys.stderr)
                try:
                    results["trace"][server] = run_trace(server, traced, cluster.namespaces,
                                                         seconds, args.trace_clients)  # fmt: skip
                except Exception as err:
                    results["trace"][server] = {"error": _one_line(err)}
            if results["trace"]:
                report.print_trace(results["trace"])
    results["targets"] = report.targets(results)
    report.print_targets(results["targets"])
    results["elapsed_s"] = round(time.monotonic() - began, 1)
    report.write_json(results, args.json)
    print(
        f"\nlatency: dnsperf -v at 50% of each server's max; CPU: server utime+stime over the max"
        f" run / answered queries; RSS: VmRSS (NSD: PSS summed over its processes)."
        f"\n{args.seconds:g} s per dnsperf run, {results['elapsed_s']:.0f} s in all; "
        f"JSON: {args.json}"
    )
    chart.write_chart(results, args.json.with_suffix(".png"))  # needs the bench extra


if __name__ == "__main__":
    main()
