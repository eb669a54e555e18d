"""Queries per second and latency percentiles: kdns next to a baseline, in one run.

Starts each server on loopback, pins it to CPU 0 and dnsperf to CPU 1 (when taskset exists),
drives it with dnsperf for --seconds, and prints one table. Traffic goes to 127.0.0.1 only.

    make bench                       # or: .venv/bin/python benchmarks/qps.py --seconds 10

Needs dnsperf (Debian/Ubuntu: apt-get install dnsperf); the script installs it with apt-get
when it runs as root and it is missing, else explains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# A cluster-DNS-like mix over the demo cluster: mostly service A lookups, some AAAA/SRV/PTR,
# pods, and the NXDOMAINs a search path produces (ndots:5 tries <name>.<ns>.svc.cluster.local).
QUERIES: list[tuple[str, str, int]] = [
    ("web.shop.svc.cluster.local", "A", 30),
    ("kubernetes.default.svc.cluster.local", "A", 15),
    ("api.shop.svc.cluster.local", "A", 10),
    ("api.shop.svc.cluster.local", "AAAA", 5),
    ("db.data.svc.cluster.local", "A", 5),
    ("_http._tcp.web.shop.svc.cluster.local", "SRV", 5),
    ("20.10.96.10.in-addr.arpa", "PTR", 5),
    ("10-244-1-10.shop.pod.cluster.local", "A", 5),
    ("web.shop.svc.cluster.local.shop.svc.cluster.local", "A", 10),
    ("kube-dns.kube-system.svc.cluster.local", "A", 10),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_dnsperf() -> str:
    path = shutil.which("dnsperf")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("dnsperf missing: installing the Debian package", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "dnsperf"], check=True)
        path = shutil.which("dnsperf")
        if path:
            return path
    sys.exit(
        "benchmarks need dnsperf: apt-get install dnsperf (Debian/Ubuntu) or brew install dnsperf"
    )


def pin(cpu: int) -> list[str]:
    return (
        ["taskset", "-c", str(cpu)]
        if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1
        else []
    )


def wait_udp(port: int, timeout: float = 15) -> None:
    import dns.message
    import dns.query

    deadline = time.monotonic() + timeout
    q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
    while time.monotonic() < deadline:
        try:
            dns.query.udp(q, "127.0.0.1", port=port, timeout=0.3)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer")


def run_dnsperf(dnsperf: str, port: int, seconds: float, datafile: str) -> dict[str, float]:
    cmd = pin(1) + [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", datafile, "-l", str(seconds),
                    "-c", "8", "-q", "256", "-t", "2", "-v"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    latencies = []
    qps = 0.0
    lost = 0
    for line in proc.stdout.splitlines():
        if line.startswith("> "):
            parts = line.split()
            if parts[1] == "T":  # timed out
                continue
            latencies.append(float(parts[-1]))
        elif "Queries per second:" in line:
            qps = float(line.split(":")[1])
        elif "Queries lost:" in line:
            lost = int(line.split(":")[1].split()[0])
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6
            if latencies
            else 0.0
        )

    return {
        "qps": qps,
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p99.9": pct(99.9),
        "mean": statistics.fmean(latencies) * 1e6 if latencies else 0.0,
        "lost": lost,
    }


def serve(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        pin(0) + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    wait_udp(port)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5, help="per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median kept)")
    args = parser.parse_args()
    dnsperf = ensure_dnsperf()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for name, rdtype, weight in QUERIES:
            f.write(f"{name} {rdtype}\n" * weight)
        datafile = f.name

    def kdns(port: int, *extra: str) -> list[str]:
        return [PY, "-m", "kdns.cli", "serve", "--demo", "--listen", f"127.0.0.1:{port}",
                "--health-listen", "off", "--ready-listen", "off", "--no-forward", *extra]  # fmt: skip

    metrics_port = free_port()
    contenders = {
        "baseline (dnslib parse+build per query)": lambda port: [
            PY,
            "benchmarks/baseline_dnslib.py",
            str(port),
        ],
        "kdns, metrics off": lambda port: kdns(port, "--metrics-listen", "off"),
        "kdns, metrics on": lambda port: kdns(
            port, "--metrics-listen", f"127.0.0.1:{metrics_port}"
        ),
        "ceiling (UDP echo, no DNS work)": lambda port: [
            PY,
            "benchmarks/echo_ceiling.py",
            str(port),
        ],
    }
    # Each contender runs --repeat times, interleaved with the others, and keeps its median
    # run: a shared 2-core machine drifts, and interleaving spreads the drift evenly.
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in contenders}
    for _ in range(args.repeat):
        for label, make_cmd in contenders.items():
            port = free_port()
            proc = serve(make_cmd(port), port)
            try:
                runs[label].append(run_dnsperf(dnsperf, port, args.seconds, datafile))
            finally:
                proc.terminate()
                proc.wait(10)
    rows = {label: sorted(r, key=lambda x: x["qps"])[len(r) // 2] for label, r in runs.items()}
    os.unlink(datafile)
    rows["kdns, forwarded names (warm cache)"] = forwarded_names(dnsperf, args.seconds)
    print(
        f"\n{'server':45} {'qps':>10} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'lost':>6}"
    )
    for label, r in rows.items():
        print(
            f"{label:45} {r['qps']:10.0f} {r['p50']:8.0f} {r['p90']:8.0f} {r['p99']:8.0f} {r['p99.9']:9.0f} {r['lost']:6.0f}"
        )
    base, off, on, ceiling, forwarded = (r["qps"] for r in rows.values())
    print(
        f"kdns: {off / base:.1f}x the dnslib baseline, {100 * off / ceiling:.0f}% of the echo ceiling"
    )
    print(f"metrics cost: {100 * (off - on) / off:+.1f}% qps (on vs off; target under 5%)")
    print(f"forwarded names from the warm cache: {100 * forwarded / on:.0f}% of cluster-name qps")
    print(f"(median of {args.repeat} interleaved runs of {args.seconds:g} s each)")


def forwarded_names(dnsperf: str, seconds: float) -> dict[str, float]:
    """kdns forwarding public names to a loopback upstream, every name already cached."""
    sys.path.insert(0, str(ROOT))
    from tests.dnsupstream import DnsUpstream

    names = [f"host{i}.example.com" for i in range(50)]
    with DnsUpstream({(f"{n}.", "A"): ["192.0.2.1"] for n in names}, ttl=3600) as upstream:
        port = free_port()
        proc = serve(
            [PY, "-m", "kdns.cli", "serve", "--demo", "--listen", f"127.0.0.1:{port}",
             "--health-listen", "off", "--ready-listen", "off", "--metrics-listen", "off",
             "--resolv-conf", os.devnull, "--upstream", upstream.upstream("udp")],
            port,
        )  # fmt: skip
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("".join(f"{n} A\n" for n in names))
            datafile = f.name
        try:
            run_dnsperf(dnsperf, port, 1, datafile)  # warm the cache
            return run_dnsperf(dnsperf, port, seconds, datafile)
        finally:
            proc.terminate()
            proc.wait(10)
            os.unlink(datafile)


if __name__ == "__main__":
    main()
