"""The render slice budget against query latency during objects-file reloads, in one run.

In one process: the registry of benchmarks/abuse.py's objects (a 10,000-endpoint headless
Service, a Service of 1,000 named ports), kdns's UDP server on loopback, and the objects-file
source (kdns.k8s.static.StaticSource). A probe in another process asks one name every 2 ms
and records each round trip. Each budget in turn (kdns.authority.slices.Pacer's default, set
here) gets ``--reloads`` rewrites of the file, every address changed, each applied by the
source's own poll (parse in a thread, apply in slices); the rounds repeat the budgets in turn
so the machine's drift spreads over all of them. Reported per budget: the probe's p50 / p99 /
max over everything (idle time included, as abuse.py's good client sees it) and during the
reloads alone, and how long the reloads took.

    .venv/bin/python benchmarks/slice_budget.py                     # 0.5, 1, 2, 5 ms; 3 rounds
    .venv/bin/python benchmarks/slice_budget.py --budgets 1,5 --rounds 5

Writes benchmarks/results/slice_budget.json. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from abuse import GOOD_NAME, manifests, query  # noqa: E402

from kdns.authority import slices  # noqa: E402
from kdns.authority.registry import Registry  # noqa: E402
from kdns.authority.resolver import Resolver  # noqa: E402
from kdns.authority.zones import ZoneSet  # noqa: E402
from kdns.k8s.static import StaticSource  # noqa: E402
from kdns.server.stats import Stats  # noqa: E402
from kdns.server.udp import UdpServer  # noqa: E402
from kdns.server.wire import Responder  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "slice_budget.json"

PROBE = """
import json, socket, struct, sys, time
port, seconds, wire = int(sys.argv[1]), float(sys.argv[2]), bytes.fromhex(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.1.1", 0))
sock.settimeout(1.0)
out, qid, end = [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    qid = (qid + 1) & 0xFFFF
    ask = struct.pack("!H", qid) + wire[2:]
    sent = time.monotonic()
    sock.sendto(ask, ("127.0.0.1", port))
    try:
        while sock.recv(65535)[:2] != ask[:2]:
            pass
        out.append((sent, time.monotonic() - sent))
    except TimeoutError:
        out.append((sent, 1.0))
    time.sleep(0.002)
print(json.dumps(out))
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


async def run(budgets: list[float], rounds: int, reloads: int, gap: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="kdns-slices-"))
    path = work / "cluster.yaml"
    texts = [yaml.safe_dump_all(manifests(generation)) for generation in range(4)]
    path.write_text(texts[0])
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    source = StaticSource(registry, paths=(str(path),), poll_interval=0)
    source.load()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    UdpServer(sock, Responder(registry.answers, Resolver(registry).resolve), Stats())
    seconds = 1 + rounds * len(budgets) * reloads * gap + 1
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, str(sock.getsockname()[1]), str(seconds),
        query(GOOD_NAME).hex(), stdout=subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1)
    windows: dict[float, list[tuple[float, float, float]]] = {b: [] for b in budgets}
    generation = 0
    for _ in range(rounds):
        for budget in budgets:
            slices.Pacer.__init__.__defaults__ = (budget,)
            for _ in range(reloads):
                generation = generation % 3 + 1
                started = time.monotonic()
                path.write_text(texts[generation])
                assert await source.poll(), "the rewrite was not applied"
                ended = time.monotonic()
                await asyncio.sleep(max(0.1, gap - (ended - started)))
                windows[budget].append((started, ended, time.monotonic()))
    out, _ = await probe.communicate()
    probes = json.loads(out)
    summary = {}
    for budget, spans in windows.items():
        # "all": from each reload's start to the next one's (idle time included, as abuse.py's
        # client sees it); "during": from the write until the source applied it.
        every = [lat for sent, lat in probes if any(a <= sent < c for a, _, c in spans)]
        during = [lat for sent, lat in probes if any(a <= sent <= b for a, b, _ in spans)]
        took = [b - a for a, b, _ in spans]
        summary[f"{budget * 1000:g} ms"] = {
            "probes": len(every),
            "p50_ms": round(percentile(every, 0.5), 2),
            "p99_ms": round(percentile(every, 0.99), 2),
            "max_ms": round(max(every) * 1000, 2),
            "during_reloads": {
                "probes": len(during),
                "p50_ms": round(percentile(during, 0.5), 2),
                "p99_ms": round(percentile(during, 0.99), 2),
                "max_ms": round(max(during) * 1000, 2),
            },
            "reload_seconds_mean": round(sum(took) / len(took), 3),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.5,1,2,5", help="slice budgets in ms")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reloads", type=int, default=2, help="rewrites per budget and round")
    parser.add_argument("--gap", type=float, default=3.0, help="seconds from one rewrite to the next")  # fmt: skip
    args = parser.parse_args()
    budgets = [float(b) / 1000 for b in args.budgets.split(",")]
    summary = asyncio.run(run(budgets, args.rounds, args.reloads, args.gap))
    print(f"{'budget':>8} {'probes':>7} {'p50':>6} {'p99':>6} {'max':>7}   during reloads: {'probes':>6} {'p50':>6} {'p99':>6} {'max':>7}  reload s")  # fmt: skip
    for budget, row in summary.items():
        d = row["during_reloads"]
        print(f"{budget:>8} {row['probes']:7d} {row['p50_ms']:6.2f} {row['p99_ms']:6.2f} {row['max_ms']:7.1f}   "
              f"{'':16}{d['probes']:6d} {d['p50_ms']:6.2f} {d['p99_ms']:6.2f} {d['max_ms']:7.1f}  {row['reload_seconds_mean']:.3f}")  # fmt: skip
    result = {
        "what": "benchmarks/slice_budget.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "budgets": summary,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
