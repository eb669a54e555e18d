"""kdns's footprint and start through the real watch path, from an idle demo to 160,000 API objects.

Each cluster is built in the Kubernetes API test server (tests/k8sapi.py: the real list/watch
HTTP protocol) and served by a real `kdns serve --kubeconfig ...` process. Reported:

- `import kdns.app`: resident memory and time right after the import (a fresh interpreter);
- the demo (`kdns serve --demo`): resident memory when idle, time to the first answer;
- per cluster, in stages on the same API server (each stage a fresh kdns that lists
  everything loaded so far): Services alone, then their EndpointSlices, then Pods. Each stage
  reports the time from process start to the first full sync (/ready 200) and to the first
  answer, and its resident memory after sync; the difference between stages, divided by what
  the stage added, is the cost of one Service, one endpoint (its share of the EndpointSlice
  included) and one Pod. Per API object (Services + EndpointSlices + Pods) is reported too;
  endpoints are not API objects;
- on the large cluster, the longest time a query waited while a 410 relist of everything ran
  (a UDP client on loopback asks every millisecond and records the worst round trip; a query
  with no reply within 2 s is counted as timed out and as a wait of at least 2 s, never left
  out), next to the same client's worst round trip on an idle server; then the resident memory
  after that relist and the peak (VmHWM) from the start through the relist, what a memory
  limit must cover.

Clusters: `1050` is 1,050 Services (30 namespaces, 3,400 endpoints, a fifth of the Services
headless; pods not watched, the default `--pods insecure`), the size kube-dns published its
memory for; `large` is 10,000 Services, 100,000 endpoints and 50,000 Pods under
`--pods verified` (160,000 API objects and 100,000 endpoints).

    .venv/bin/python benchmarks/cluster_scale.py                    # everything, once
    .venv/bin/python benchmarks/cluster_scale.py --only 1050 --repeat 3
    .venv/bin/python benchmarks/cluster_scale.py --quick --json benchmarks/results/cluster_scale.json --merge   # make bench
    .venv/bin/python benchmarks/cluster_scale.py --only custom --services 500 --endpoints 5000 --pods 5000

Targets (issue "Standard mode", Footprint): RSS after sync with 1,050 Services <= 50 MiB; demo
idle <= 40 MB; first answer <= 1 s on an idle machine; (issue "Live cluster") relist stall
< 100 ms with no query timed out. Memory is reported in MiB (VmRSS / 1024 KiB).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

from tests.k8sapi import K8sApi, endpointslice, namespace, pod, service  # noqa: E402
from tests.kdnsproc import Kdns  # noqa: E402

PROBE_NAME = "svc1.ns1.svc.cluster.local"  # a ClusterIP Service every cluster below has
DEMO_NAME = "kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Shape:
    name: str
    services: int
    endpoints: int
    pods: int
    namespaces: int
    pods_mode: str
    relist: bool

    @property
    def api_objects(self) -> int:
        """Services + their EndpointSlices (one each) + Pods; namespaces are not counted."""
        return self.services * 2 + self.pods


SHAPES = {
    "1050": Shape("1,050 Services", 1050, 3400, 0, 30, "insecure", relist=False),
    "large": Shape("large cluster", 10000, 100000, 50000, 50, "verified", relist=True),
}


def build(shape: Shape) -> tuple[list[dict], list[dict], list[dict]]:
    """The cluster as three stages: namespaces and Services, EndpointSlices, Pods."""
    services_: list[dict] = [namespace(f"ns{i}") for i in range(shape.namespaces)]
    slices: list[dict] = []
    pods: list[dict] = []
    services, endpoints = shape.services, shape.endpoints
    for s in range(services):
        ns = f"ns{s % shape.namespaces}"
        headless = s % 5 == 0  # a fifth headless, like StatefulSets
        ip = f"10.{96 + s // 65536}.{(s // 256) % 256}.{s % 256}"
        services_.append(
            service(ns, f"svc{s}", None if headless else ip, [("http", 80)], headless=headless)
        )
        # endpoints spread evenly: the first (endpoints % services) Services get one more
        first = s * endpoints // services
        addresses = []
        for n in range(first, (s + 1) * endpoints // services):
            addresses.append(
                (f"10.{128 + n // 65536}.{(n // 256) % 256}.{n % 256}", True, None, f"pod{n}")
            )
        slices.append(endpointslice(ns, f"svc{s}-x", f"svc{s}", addresses, [("http", 8080)]))
    for p in range(shape.pods):
        pods.append(
            pod(
                f"ns{p % shape.namespaces}",
                f"pod{p}",
                f"10.{128 + p // 65536}.{(p // 256) % 256}.{p % 256}",
            )
        )
    return services_, slices, pods


def per_kind(shape: Shape, empty: int, after: dict[str, int]) -> dict[str, float]:
    """Bytes per Service, per endpoint (its EndpointSlice's share included), per Pod and per
    API object, from the resident KiB of an empty kdns and after each stage."""
    out = {"Service": (after["services"] - empty) * 1024 / shape.services}
    out["endpoint"] = (after["slices"] - after["services"]) * 1024 / max(shape.endpoints, 1)
    last = after["slices"]
    if shape.pods:
        out["Pod"] = (after["pods"] - after["slices"]) * 1024 / shape.pods
        last = after["pods"]
    out["API object"] = (last - empty) * 1024 / shape.api_objects
    return out


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory in KiB (``VmHWM``: the peak since the process started)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def answered(port: int, name: str, timeout: float = 0.2) -> bool:
    """One UDP question; True for NOERROR with an answer (SERVFAIL before the first sync)."""
    query = dns.message.make_query(name, "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(query.to_wire(), ("127.0.0.1", port))
        try:
            reply = dns.message.from_wire(sock.recv(65535))
        except (TimeoutError, dns.exception.DNSException):
            return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)


@dataclass
class Start:
    """One kdns start (``with``: the process runs inside): when it synced and answered,
    counted from the process start."""

    proc: Kdns
    started: float = 0.0
    synced: float | None = None
    answered: float | None = None

    def __enter__(self) -> Kdns:
        self.started = time.monotonic()
        return self.proc.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.proc.__exit__(*exc)

    def wait(self, name: str | None, timeout: float = 900) -> None:
        """Poll /ready and a DNS name (if any) until both succeed."""
        deadline = self.started + timeout
        while self.synced is None or (name is not None and self.answered is None):
            if time.monotonic() > deadline:
                raise TimeoutError(f"kdns did not sync and answer within {timeout}s")
            if name is not None and self.answered is None and answered(self.proc.port, name):
                self.answered = time.monotonic() - self.started
            if self.synced is None:
                try:
                    if self.proc.get("ready")[0] == 200:
                        self.synced = time.monotonic() - self.started
                except OSError:
                    pass  # a slow answer while the first sync runs: ask again
            time.sleep(0.005)


def start(*args: str) -> Start:
    """A kdns to run with ``with``, which returns as soon as its ports are known (before it
    synced). (Until 2026-12-07 this started the process and ``with`` started a second one:
    every stage ran two kdns at once, the first never stopped, and the sync and first-answer
    times counted from the first's start.)"""
    return Start(Kdns(*args, "--lameduck", "0", wait_serving=False, start_timeout=600))


class Prober(threading.Thread):
    """Asks one name every millisecond over UDP; keeps the worst round trip."""

    def __init__(self, port: int, name: str, timeout: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.timeout = timeout
        self.query = dns.message.make_query(name, "A").to_wire()
        self.worst = 0.0
        self.lost = 0  # no reply within the timeout: each counted as a wait of the timeout
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
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
                    # A probe that timed out waited at least the timeout: it is the worst wait,
                    # never left out.
                    self.lost += 1
                    self.worst = max(self.worst, self.timeout)
                    continue
                self.worst = max(self.worst, time.perf_counter() - started)
                time.sleep(0.001)


def probe(
    port: int,
    name: str,
    seconds: float | None = None,
    until: threading.Event | None = None,
    timeout: float = 2.0,
) -> Prober:
    prober = Prober(port, name, timeout)
    prober.start()
    if seconds is not None:
        time.sleep(seconds)
    elif until is not None:
        until.wait()
    prober.stop.set()
    prober.join()
    return prober


# --- report ---------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    unit: str
    target: str = ""
    values: list[float] = field(default_factory=list)

    def text(self) -> str:
        if not self.values:
            return f"{self.label:76} {'-':>16}"
        low, high = min(self.values), max(self.values)
        fmt = "{:.0f}" if self.unit == "B" else "{:.2f}" if self.unit == "s" else "{:.1f}"
        span = fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"
        target = f"   (target {self.target})" if self.target else ""
        return f"{self.label:76} {span:>13} {self.unit:<3}{target}"


class Report:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.prefixes: list[str] = []  # row labels of the parts run (what a merge replaces)

    def add(self, label: str, value: float, unit: str, target: str = "") -> None:
        row = self.rows.setdefault(label, Row(label, unit, target))
        row.values.append(value)
        print(f"  {label}: {value:.3f} {unit}", flush=True)

    def print(self) -> None:
        print()
        for row in self.rows.values():
            print(row.text())

    def save(self, path: Path, command: str, parts: list[str], merge: bool) -> None:
        """The rows as JSON: what docs/deploying.md and the README cite (one place for the
        figures; tests/test_docs.py checks the docs against it). ``merge``: the rows of the
        parts run now replace theirs in the file, the other parts' rows (the large cluster's,
        from a run of its own) stay, and ``runs`` says which command measured each part."""
        import json

        rows = {r.label: {"unit": r.unit, "values": r.values} for r in self.rows.values()}
        stamp = f"{command} ({time.strftime('%Y-%m-%d')})"
        runs = dict.fromkeys(parts, stamp)
        if merge and path.exists():
            old = json.loads(path.read_text())
            mine = tuple(self.prefixes)
            kept = {k: v for k, v in old.get("rows", {}).items() if not k.startswith(mine)}
            rows = {**kept, **rows}
            before = old.get("runs") or {"(earlier)": old.get("command", "?")}
            runs = {**{k: v for k, v in before.items() if k not in runs}, **runs}
        path.write_text(json.dumps({"command": "; ".join(dict.fromkeys(runs.values())), "runs": runs, "rows": rows}, indent=1) + "\n")  # fmt: skip


def measure_import(report: Report) -> None:
    code = (
        "import time; t = time.perf_counter(); import kdns.app; t = time.perf_counter() - t\n"
        "rss = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS'))\n"
        "print(t, rss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seconds, rss = out.stdout.split()
    report.add("import kdns.app: time", float(seconds), "s")
    report.add("import kdns.app: resident memory", int(rss) / 1024, "MiB")


def measure_demo(report: Report) -> None:
    run = start("--demo")
    with run:
        run.wait(DEMO_NAME, timeout=60)
        time.sleep(2)  # idle
        report.add("demo: resident memory, idle", rss_kib(run.proc.proc.pid) / 1024, "MiB",  # type: ignore[union-attr]
                   "<= 40 MB")  # fmt: skip
        assert run.answered is not None
        report.add("demo: first answer (process start -> answer)", run.answered, "s", "<= 1 s")


def measure_stage(report: Report, shape: Shape, stage: str, kubeconfig: str) -> int:
    """One kdns on everything loaded so far: sync, first answer, RSS after sync (KiB)."""
    name = f"{shape.name}, {stage}"
    args = ("--kubeconfig", kubeconfig, "--pods", shape.pods_mode, "--startup-timeout", "600")
    run = start(*args)
    with run as proc:
        run.wait(PROBE_NAME)
        assert run.synced is not None and run.answered is not None
        report.add(f"{name}: first sync (process start -> /ready 200)", run.synced, "s")
        report.add(f"{name}: first answer (process start -> answer)", run.answered, "s",
                   "<= 1 s" if shape.api_objects < 10000 else "")  # fmt: skip
        time.sleep(1)
        rss = rss_kib(proc.proc.pid)  # type: ignore[union-attr]
        report.add(f"{name}: resident memory after sync", rss / 1024, "MiB",
                   "<= 50 MiB" if shape.services == 1050 and stage != "Services" else "")  # fmt: skip
        return rss


def measure_relist(report: Report, shape: Shape, kubeconfig: str, api: K8sApi) -> None:
    name = shape.name
    args = ("--kubeconfig", kubeconfig, "--pods", shape.pods_mode, "--startup-timeout", "600")
    run = start(*args)
    with run as proc:
        run.wait(PROBE_NAME)
        time.sleep(1)
        idle = probe(proc.port, PROBE_NAME, seconds=2)
        # Relist everything: compact the log and cut every watch -> 410 -> LIST all kinds.
        lists_before = api.count("list")
        kinds = 4 if shape.pods_mode == "verified" else 3
        done = threading.Event()

        def trigger() -> None:
            time.sleep(0.5)
            api.compact()
            api.cut_watches()
            deadline = time.monotonic() + 300
            while api.count("list") < lists_before + kinds and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(3)  # the last LIST's pages parse and apply after the request
            done.set()

        threading.Thread(target=trigger, daemon=True).start()
        stalled = probe(proc.port, PROBE_NAME, until=done)
        report.add(f"{name}: worst query wait, idle (baseline)", idle.worst * 1000, "ms")
        report.add(f"{name}: worst query wait during a full relist (timeouts count as 2 s)",
                   stalled.worst * 1000, "ms", "< 100 ms")  # fmt: skip
        report.add(f"{name}: queries timed out (no reply in 2 s) during the relist",
                   stalled.lost, "", "0")  # fmt: skip
        pid = proc.proc.pid  # type: ignore[union-attr]
        report.add(f"{name}: resident memory after the relist", rss_kib(pid) / 1024, "MiB")
        report.add(f"{name}: peak resident memory (VmHWM, start to relist)",
                   rss_kib(pid, "VmHWM") / 1024, "MiB")  # fmt: skip
        print(f"  ({stalled.sent} queries, {stalled.lost} timed out, "
              f"{api.count('list') - lists_before} LISTs)")  # fmt: skip


def empty_baseline(kubeconfig: str, pods_mode: str) -> int:
    run = start("--kubeconfig", kubeconfig, "--pods", pods_mode)
    with run as proc:
        run.wait(None, timeout=60)
        time.sleep(1)
        return rss_kib(proc.proc.pid)  # type: ignore[union-attr]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["import", "demo", *SHAPES, "custom"], action="append",
                        help="run only these parts (repeatable); default: all but custom")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs of each part (ranges shown)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file "
                        "(benchmarks/results/cluster_scale.json is what the docs cite)")  # fmt: skip
    parser.add_argument(
        "--no-relist", action="store_true", help="skip the large cluster's relist stall"
    )
    parser.add_argument("--services", type=int, default=500, help="custom cluster")
    parser.add_argument("--endpoints", type=int, default=5000, help="custom cluster")
    parser.add_argument("--pods", type=int, default=5000, help="custom cluster (verified mode)")
    parser.add_argument("--quick", action="store_true",
                        help="import, demo and the 1,050-Service cluster only (make bench; "
                        "about a minute): the large cluster is its own run, --only large")  # fmt: skip
    parser.add_argument("--merge", action="store_true", help="with --json: keep the rows of "
                        "the parts not run now (see Report.save)")  # fmt: skip
    args = parser.parse_args()
    parts = args.only or (["import", "demo", "1050"] if args.quick else ["import", "demo", *SHAPES])
    shapes = dict(SHAPES)
    shapes["custom"] = Shape(f"{args.services} svc/{args.endpoints} ep/{args.pods} pods",
                             args.services, args.endpoints, args.pods, 50,
                             "verified" if args.pods else "insecure", relist=True)  # fmt: skip

    report = Report()
    report.prefixes = [{"import": "import kdns.app", "demo": "demo"}.get(p) or shapes[p].name for p in parts]  # fmt: skip
    for _ in range(args.repeat):
        if "import" in parts:
            measure_import(report)
        if "demo" in parts:
            measure_demo(report)
    for key in [p for p in parts if p in shapes]:
        shape = shapes[key]
        print(f"{shape.name}: building {shape.services} Services, {shape.endpoints} endpoints, "
              f"{shape.pods} pods ...", flush=True)  # fmt: skip
        stages = dict(zip(("services", "slices", "pods"), build(shape), strict=True))
        if not shape.pods:
            del stages["pods"]
        for run in range(args.repeat):
            # A fresh API server each run, loaded one stage at a time.
            with tempfile.TemporaryDirectory() as tmp, K8sApi(bookmark_interval=5.0) as api:
                kubeconfig = str(api.kubeconfig(Path(tmp) / "kubeconfig"))
                # Baseline memory: the same kdns with an empty cluster (the API's own objects).
                empty_rss = empty_baseline(kubeconfig, shape.pods_mode)
                report.add(f"{shape.name}: resident memory, empty cluster", empty_rss / 1024,
                           "MiB")  # fmt: skip
                after: dict[str, int] = {}
                for stage, objects in stages.items():
                    api.load(objects)
                    label = {"services": "Services", "slices": "+ EndpointSlices",
                             "pods": "+ Pods"}[stage]  # fmt: skip
                    after[stage] = measure_stage(report, shape, label, kubeconfig)
                for kind, value in per_kind(shape, empty_rss, after).items():
                    report.add(f"{shape.name}: memory per {kind} above an empty kdns", value, "B")
                if shape.relist and not args.no_relist and run == args.repeat - 1:
                    measure_relist(report, shape, kubeconfig, api)
    report.print()
    if args.json is not None:
        command = "benchmarks/cluster_scale.py " + " ".join(sys.argv[1:])
        report.save(args.json, command, parts, args.merge)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
