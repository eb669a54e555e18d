"""qps with 1 and 2 (or more) `--workers` in one run, as a scaling ratio next to the core count.

The cluster and the query mix are `make bench`'s plain mix (benchmarks/workload.py: 1,050
Services, cluster names A/AAAA/SRV/PTR), served by ``kdns serve --objects FILE --workers N
--no-forward`` on a fixed loopback port (workers share it with SO_REUSEPORT, so it cannot be
port 0). dnsperf sends from several source ports (-c 8): the kernel hashes each source port to
one worker's socket, so the load spreads over the workers as pods' queries do in a cluster.

CPU placement: with at least N+1 CPUs for the largest N, kdns runs on CPUs 0..N-1 and dnsperf on
the rest, so each worker has a core of its own; with fewer (a 2-core machine), neither is
pinned and dnsperf competes with the workers for the same cores: the ratio then shows what the
machine allows, not what kdns does. The report says which.

    .venv/bin/python benchmarks/workers_scaling.py                  # 1 and 2 workers, 8 s runs
    .venv/bin/python benchmarks/workers_scaling.py --workers 1,2,4 --seconds 15 --json out.json

Needs dnsperf (Debian: apt-get install dnsperf; installed when run as root).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dnsperf  # noqa: E402
import servers  # noqa: E402
import workload  # noqa: E402

_SERVING = re.compile(r"\bserving\b")


class Workers(servers.Server):
    """``kdns serve --workers N`` on a fixed loopback port; ready when every process serves."""

    def __init__(self, count: int, objects: Path, cpus: list[int] | None) -> None:
        self.label = f"kdns --workers {count}"
        self.port = servers.free_port()
        self.lines: list[str] = []
        self._serving = 0
        self._all = threading.Event()
        self._count = count
        pin = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
        cmd = [sys.executable, "-m", "kdns.cli", "serve", "--objects", str(objects),
               "--workers", str(count), "--listen", f"{servers.HOST}:{self.port}",
               "--no-forward", "--resolv-conf", os.devnull, "--lameduck", "0",
               "--metrics-listen", "off", "--health-listen", "off", "--ready-listen", "off"]  # fmt: skip
        self.proc = subprocess.Popen(
            pin + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=servers.ROOT,
        )  # fmt: skip
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 120
        while not self._all.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.label} did not start:\n" + "".join(self.lines[-20:]))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.lines) < 200:
                self.lines.append(line)
            if _SERVING.search(line) and "share the DNS port" not in line:
                self._serving += 1
                if self._serving >= self._count:
                    self._all.set()


def dnsperf_run(
    binary: str, port: int, datafile: str, seconds: float, cpus: list[int] | None
) -> dnsperf.Run:
    """One dnsperf run as fast as it goes, from several source ports (-c), on ``cpus``."""
    pin = ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []
    cmd = pin + [binary, "-s", servers.HOST, "-p", str(port), "-d", datafile,
                 "-l", f"{seconds:g}", "-c", str(dnsperf.CLIENTS), "-q", str(dnsperf.OUTSTANDING),
                 "-t", str(dnsperf.TIMEOUT)]  # fmt: skip
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"dnsperf failed ({proc.returncode}): {proc.stderr[-500:]}")
        out.seek(0)
        return dnsperf.parse(out)


def placement(counts: list[int]) -> tuple[dict[int, list[int] | None], list[int] | None, str]:
    """CPUs for each worker count and for dnsperf, and the sentence the report prints."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= max(counts) + 1:
        client = available[max(counts) :]
        layout: dict[int, list[int] | None] = {n: available[:n] for n in counts}
        text = f"kdns on CPUs {available[: max(counts)]} (one per worker), dnsperf on {client}"
        return layout, client, text
    text = (
        f"only {len(available)} CPUs: kdns and dnsperf unpinned, sharing them (dnsperf takes "
        f"about one), so {max(counts)} workers cannot each have a core"
    )
    return {n: None for n in counts}, None, text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2", help="comma-separated counts (default 1,2)")
    parser.add_argument("--seconds", type=float, default=8, help="per dnsperf run (default 8)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    counts = sorted({int(n) for n in args.workers.split(",") if n})
    if not counts or counts[0] < 1:
        parser.error("--workers: counts of 1 or more")
    binary = servers.ensure_tool("dnsperf", "dnsperf")
    layout, client_cpus, where = placement(counts)
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "placement": where,
        "settings": {
            "seconds": args.seconds,
            "clients": dnsperf.CLIENTS,
            "outstanding": dnsperf.OUTSTANDING,
        },
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="kdns-workers-") as tmpdir:
        tmp = Path(tmpdir)
        cluster = workload.cluster_objects()
        objects = workload.write_objects(cluster, tmp / "objects.json")
        datafile = str(workload.write_queries(workload.plain_queries(cluster), tmp / "plain.txt"))
        for count in counts:
            print(f"kdns --workers {count} ...", file=sys.stderr)
            with Workers(count, objects, layout[count]) as srv:
                dnsperf_run(binary, srv.port, datafile, 1, client_cpus)  # warm-up
                cpu0 = srv.cpu_seconds()
                run = dnsperf_run(binary, srv.port, datafile, args.seconds, client_cpus)
                cpu = srv.cpu_seconds() - cpu0
                results["runs"][str(count)] = {
                    "qps": run.qps,
                    "lost": run.lost,
                    "completed": run.completed,
                    "server_cpu_s": round(cpu, 2),
                    "cpu_us_per_query": 1e6 * cpu / run.completed if run.completed else None,
                }
    base = results["runs"][str(counts[0])]["qps"]
    cores = results["machine"]["affinity_cpus"]
    print(f"\nkdns --workers, plain cluster names, dnsperf -c {dnsperf.CLIENTS} -q "
          f"{dnsperf.OUTSTANDING}, {args.seconds:g} s per run; {cores} CPUs: {where}")  # fmt: skip
    print(f"{'workers':>7} {'qps':>9} {'ratio':>6} {'CPU s':>6} {'CPUµs/q':>8} {'lost':>6}")
    for count in counts:
        row = results["runs"][str(count)]
        row["ratio"] = round(row["qps"] / base, 2) if base else None
        per_query = row["cpu_us_per_query"]
        print(f"{count:>7} {row['qps']:>9.0f} {row['ratio']:>6.2f} {row['server_cpu_s']:>6.1f} "
              f"{per_query if per_query is None else round(per_query, 1):>8} {row['lost']:>6}")  # fmt: skip
    results["scaling_ratio"] = results["runs"][str(counts[-1])]["ratio"]
    print(f"\nscaling ratio {counts[-1]} workers / {counts[0]}: {results['scaling_ratio']:.2f}x "
          f"on {cores} CPUs")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
