"""A big cluster through the real watch path: memory, time to first sync, serving-loop stall.

Builds a cluster in the Kubernetes API test server (tests/k8sapi.py, the real list/watch HTTP
protocol), starts `kdns serve --kubeconfig ...` against it and reports:

- time from process start to /ready 200 (first full sync),
- resident memory after sync, and per object above an empty kdns,
- the longest time a query waited while a 410 relist of everything ran (a UDP client on
  loopback asks every millisecond and records the worst latency), next to the same client's
  worst latency on an idle server as the baseline.

    .venv/bin/python benchmarks/cluster_scale.py                      # 5,000 svc / 50,000 ep / 50,000 pods
    .venv/bin/python benchmarks/cluster_scale.py --services 500 --endpoints 5000 --pods 5000

Targets (issue "Live cluster"): under 1 KB per object, under 100 ms stall.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dns.message  # noqa: E402

from tests.k8sapi import K8sApi, endpointslice, namespace, pod, service  # noqa: E402
from tests.kdnsproc import Kdns  # noqa: E402


def build(services: int, endpoints: int, pods: int, namespaces: int = 50) -> list[dict]:
    objects: list[dict] = [namespace(f"ns{i}") for i in range(namespaces)]
    per_service = max(1, endpoints // services)
    for s in range(services):
        ns = f"ns{s % namespaces}"
        headless = s % 5 == 0  # a fifth headless, like StatefulSets
        ip = f"10.{96 + s // 65536}.{(s // 256) % 256}.{s % 256}"
        objects.append(
            service(ns, f"svc{s}", None if headless else ip, [("http", 80)], headless=headless)
        )
        addresses = []
        for e in range(per_service):
            n = s * per_service + e
            addresses.append(
                (f"10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}", True, None, f"pod{n}")
            )
        objects.append(endpointslice(ns, f"svc{s}-x", f"svc{s}", addresses, [("http", 8080)]))
    for p in range(pods):
        objects.append(
            pod(
                f"ns{p % namespaces}",
                f"pod{p}",
                f"10.{128 + p // 65536}.{(p // 256) % 256}.{p % 256}",
            )
        )
    return objects


def wait_ready(proc: Kdns) -> None:
    while True:
        try:
            if proc.get("ready")[0] == 200:
                return
        except OSError:
            pass  # a slow answer while the first sync runs: ask again
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Prober(threading.Thread):
    """Asks one name every millisecond over UDP; keeps the worst round trip."""

    def __init__(self, port: int, name: str) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.query = dns.message.make_query(name, "A").to_wire()
        self.worst = 0.0
        self.lost = 0
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            qid = 0
            while not self.stop.is_set():
                qid = (qid + 1) & 0xFFFF
                wire = struct.pack("!H", qid) + self.query[2:]
                started = time.perf_counter()
                sock.sendto(wire, ("127.0.0.1", self.port))
                self.sent += 1
                try:
                    while True:
                        reply = sock.recv(4096)
                        if reply[:2] == wire[:2]:
                            break
                except TimeoutError:
                    self.lost += 1
                    continue
                self.worst = max(self.worst, time.perf_counter() - started)
                time.sleep(0.001)


def probe(
    port: int, name: str, seconds: float | None = None, until: threading.Event | None = None
) -> Prober:
    prober = Prober(port, name)
    prober.start()
    if seconds is not None:
        time.sleep(seconds)
    elif until is not None:
        until.wait()
    prober.stop.set()
    prober.join()
    return prober


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=50000)
    parser.add_argument("--pods", type=int, default=50000)
    args = parser.parse_args()

    print(
        f"building {args.services} services, {args.endpoints} endpoints, {args.pods} pods ...",
        flush=True,
    )
    objects = build(args.services, args.endpoints, args.pods)
    total = args.services * 2 + args.endpoints + args.pods  # services + slices, endpoints, pods
    with tempfile.TemporaryDirectory() as tmp, K8sApi(bookmark_interval=5.0) as api:
        kubeconfig = str(api.kubeconfig(Path(tmp) / "kubeconfig"))
        # Baseline memory: kdns with an empty cluster.
        with Kdns("--kubeconfig", kubeconfig, "--pods", "verified", "--lameduck", "0") as empty:
            wait_ready(empty)
            empty_rss = rss_kib(empty.proc.pid)  # type: ignore[union-attr]
            idle = probe(empty.port, "kubernetes.default.svc.cluster.local", seconds=2)
        api.load(objects)
        started = time.monotonic()
        with Kdns("--kubeconfig", kubeconfig, "--pods", "verified", "--lameduck", "0",
                  "--startup-timeout", "600") as proc:  # fmt: skip
            wait_ready(proc)
            sync_s = time.monotonic() - started
            time.sleep(1)
            rss = rss_kib(proc.proc.pid)  # type: ignore[union-attr]
            resp = proc.query("svc1.ns1.svc.cluster.local", "A")
            assert resp.answer, "svc1 did not resolve"
            # Relist everything: compact the log and cut every watch -> 410 -> LIST all kinds.
            lists_before = api.count("list")
            done = threading.Event()

            def trigger() -> None:
                time.sleep(0.5)
                api.compact()
                api.cut_watches()
                deadline = time.monotonic() + 300
                while api.count("list") < lists_before + 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(3)  # the last LIST's pages parse and apply after the request
                done.set()

            threading.Thread(target=trigger, daemon=True).start()
            relist = probe(proc.port, "svc1.ns1.svc.cluster.local", until=done)
            relists = api.count("list") - lists_before
    per_object = (rss - empty_rss) * 1024 / total
    print()
    print(f"{'objects (services+slices+endpoints+pods)':44} {total:>10}")
    print(f"{'time to first sync (start -> /ready 200)':44} {sync_s:>9.1f}s")
    print(f"{'resident memory: empty kdns':44} {empty_rss / 1024:>8.1f}MB")
    print(f"{'resident memory: after sync':44} {rss / 1024:>8.1f}MB")
    print(f"{'memory per object':44} {per_object:>9.0f}B   (target < 1024 B)")
    print(
        f"{'worst query wait, idle server (baseline)':44} {idle.worst * 1000:>8.1f}ms  ({idle.sent} queries)"
    )
    print(f"{'worst query wait during full relist':44} {relist.worst * 1000:>8.1f}ms  "
          f"({relist.sent} queries, {relist.lost} lost, {relists} LISTs)   (target < 100 ms)")  # fmt: skip
    os._exit(0)


if __name__ == "__main__":
    main()
