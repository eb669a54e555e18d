"""Where kdns's event loop waits while a block list refreshes (issue 21: a refresh of a 1M-line
list must not stall the loop more than 5 ms).

The real App runs in this process (the benchmark cluster from workload.py, a view applying a
1M-line hosts list by URL from a loopback HTTP server, metrics on, listening on 127.0.0.1), and
beside it in the same event loop a probe task sleeps 1 ms at a time and records how late each
wake-up is: a late wake-up is the loop waiting (a step holding the GIL or running on the loop).
Every step of the refresh is timed where it runs (the download and the copy on disk in their
threads; the parse, from the request to the parse helper to its reply; a fork of this process,
if one happens; the views swapped in; each garbage collection, by gc.callbacks), and each late
wake-up is put beside the steps it overlapped; the pod's memory (PSS of this process and its
children) is sampled from another process. dnsperf (if installed) sends ``--qps`` queries a second from CPU 1 the whole time,
this process is pinned to CPU 0, as benchmarks/lan.py pins kdns.

    .venv/bin/python benchmarks/refresh_lag.py                     # 1M lines, 10,000 qps, 3 runs
    .venv/bin/python benchmarks/refresh_lag.py --entries 200000 --qps 0

Results: a table of the worst waits and their steps, benchmarks/results/refresh_lag.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import lan_blocking, servers, workload  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "refresh_lag.json"
TICK = 0.001
TARGET_MS = 5.0
REFRESH = 20  # seconds between the list's downloads
AFTER = 1.0  # seconds the probe runs on after the swap


class Steps:
    """(name, start, end) of every timed step, perf_counter seconds, from any thread."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()

    def add(self, name: str, start: float, end: float) -> None:
        with self.lock:
            self.spans.append((name, start, end))

    def wrap(self, name: str, func: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.add(name, start, time.perf_counter())

        return timed

    def during(self, start: float, end: float) -> list[str]:
        return sorted({n for n, s, e in self.spans if s < end and e > start})


def instrument(steps: Steps, app: Any) -> None:
    """Time each step of a refresh where it runs (see the module docstring)."""
    from kdns.policy import listfetch, listsource

    listfetch.download = steps.wrap("download (thread)", listfetch.download)
    listfetch.Lists._keep = steps.wrap("copy to cache_dir (thread)", listfetch.Lists._keep)  # type: ignore[method-assign]
    listsource.os.fork = steps.wrap("fork", os.fork)  # type: ignore[attr-defined]
    loads = pickle.loads

    def unpickle(data: Any, *args: Any, **kwargs: Any) -> Any:
        if len(data) < 1 << 20:
            return loads(data, *args, **kwargs)
        start = time.perf_counter()
        try:
            return loads(data, *args, **kwargs)
        finally:
            steps.add("unpickle the index", start, time.perf_counter())

    listsource.pickle.loads = unpickle  # type: ignore[attr-defined]
    listsource._parse_forked = steps.wrap("parse in the child, start to end", listsource._parse_forked)  # fmt: skip
    app._swap_views = steps.wrap("views swapped in (loop)", app._swap_views)
    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[info["generation"]] = time.perf_counter()
        else:
            begin = started.pop(info["generation"], None)
            if begin is not None:
                steps.add(f"gc generation {info['generation']}", begin, time.perf_counter())

    gc.callbacks.append(on_gc)


def config_toml(url: str, objects: Path, cache: Path) -> str:
    return f"""
[server]
listen = ["127.0.0.1:0"]
reload_interval = 0

[metrics]
listen = "127.0.0.1:0"

[health]
listen = "127.0.0.1:0"
lameduck = 0

[ready]
listen = "127.0.0.1:0"

[kubernetes]
objects = ["{objects}"]

[forward]
enabled = false

[blocking]
cache_dir = "{cache}"

[[blocklists]]
name = "ads"
url = "{url}"
format = "hosts"
refresh = "{REFRESH}s"

[[views]]
name = "lan"
networks = ["127.0.0.0/8"]
blocklists = ["ads"]
"""


SERVE = """
import functools, http.server, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
handler = functools.partial(Quiet, directory=sys.argv[1])
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


SAMPLE = """
import os, sys, time
root, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
def tree(pid):
    out = [pid]
    try:
        kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return out
    for kid in kids:
        out += tree(int(kid))
    return out
def pss(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
while time.monotonic() < until:
    print(round(time.monotonic(), 3), sum(pss(p) for p in tree(root)), flush=True)
    time.sleep(0.2)
"""


class ListServer:
    """The list over HTTP from another process (on CPU 1): the GIL of the process measured is
    kdns's alone. ``update`` puts the list's second version in place (a rename)."""

    def __init__(self, directory: Path, body: bytes) -> None:
        self.directory = directory
        self.body = body
        (directory / "ads.hosts").write_bytes(body)
        self.proc = subprocess.Popen(
            [*servers.pin(servers.CLIENT_CPU), sys.executable, "-c", SERVE, str(directory)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/ads.hosts"

    def update(self) -> None:
        staged = self.directory / "ads.hosts.new"
        staged.write_bytes(self.body + f"0.0.0.0 {lan_blocking.REFRESH_MARKER}\n".encode())
        staged.rename(self.directory / "ads.hosts")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


async def measure(config: Any, qps: int, datafile: Path, lists: ListServer, debug: bool) -> dict[str, Any]:  # fmt: skip
    from kdns.app import App

    app = App(config)
    steps = Steps()
    instrument(steps, app)
    ticks: list[tuple[float, float]] = []  # (when the wake-up was due, its lateness)
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            ticks.append((due, max(0.0, time.perf_counter() - due)))

    slow: list[tuple[float, str]] = []  # asyncio debug mode's "Executing ... took" lines

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            slow.append((time.perf_counter(), message[:160] + " ... " + message[-24:]))

    if debug:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = 0.003
        logging.getLogger("asyncio").addHandler(Slow())
    serving = asyncio.create_task(app.serve())
    prober = asyncio.create_task(probe())
    while not app.listeners.bound:
        await asyncio.sleep(0.05)
    source = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the first download parsed and in
        source = next(iter(app.lists.sources.values()), None)
        if source is not None and source.loaded is not None:
            break
        await asyncio.sleep(0.1)
    assert source is not None and source.loaded is not None, "the list never loaded"
    first = source.loaded
    port = next(iter(app.listeners.bound.values()))[0].port
    load = None
    if qps and port and shutil.which("dnsperf"):
        load = subprocess.Popen(
            [*servers.pin(servers.CLIENT_CPU), "dnsperf", "-s", "127.0.0.1", "-p", str(port),
             "-d", str(datafile), "-l", str(REFRESH + 60), "-Q", str(qps), "-q", "500"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    # The pod's memory (PSS of this process, the parse helper and its child), sampled from
    # another process on the client CPU every 0.2 s until the end.
    sampler = subprocess.Popen(
        [*servers.pin(servers.CLIENT_CPU), sys.executable, "-c", SAMPLE, str(os.getpid()), str(REFRESH + 40)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lists.update()
    await asyncio.sleep(2.0)
    quiet_from = time.perf_counter()
    ticks_before = len(ticks)
    while source.loaded is first and time.monotonic() < deadline + REFRESH:
        await asyncio.sleep(0.1)
    assert source.loaded is not first, "no refresh swapped in"
    await asyncio.sleep(AFTER)
    done.set()
    await prober
    if load is not None:
        load.terminate()
        load.wait()
    sampler.terminate()
    samples = [tuple(map(float, line.split())) for line in sampler.communicate()[0].split("\n") if line]  # fmt: skip
    app.stopping.set()
    await serving
    return {"ticks": ticks[ticks_before:], "steps": steps, "from": quiet_from, "slow": slow, "pss": samples}  # fmt: skip


def report(result: dict[str, Any], entries: int, qps: int) -> dict[str, Any]:
    ticks: list[tuple[float, float]] = result["ticks"]
    steps: Steps = result["steps"]
    refresh = [s for s in steps.spans if s[0] == "download (thread)"]
    swap = [s for s in steps.spans if s[0] == "views swapped in (loop)"]
    begin = refresh[-1][1] if refresh else ticks[0][0]
    end = swap[-1][2] + 0.5 if swap else ticks[-1][0]
    during = [(due, lag) for due, lag in ticks if begin - 0.01 <= due <= end]
    outside = [(due, lag) for due, lag in ticks if not begin - 0.01 <= due <= end]
    worst = sorted(during, key=lambda t: -t[1])[:12]
    rows = [
        {"lag_ms": round(lag * 1e3, 2), "at_s": round(due - begin, 3),
         "steps": steps.during(due, due + lag) or ["(none timed)"]}
        for due, lag in worst
    ]  # fmt: skip
    timed: dict[str, list[float]] = {}
    timeline = []
    for name, s, e in steps.spans:
        if begin - 0.01 <= s <= end:
            timed.setdefault(name, []).append(round((e - s) * 1e3, 2))
            if not name.startswith("gc generation 0"):
                timeline.append({"step": name, "from_s": round(s - begin, 3), "to_s": round(e - begin, 3)})  # fmt: skip
    lags = sorted(lag for _, lag in during)

    def pct(values: list[float], p: float) -> float:
        return round(values[min(len(values) - 1, int(p / 100 * len(values)))] * 1e3, 3) if values else 0.0  # fmt: skip

    quiet = sorted(lag for _, lag in outside)
    # PSS samples are monotonic seconds; the steps are perf_counter: both CLOCK_MONOTONIC here.
    pss = result["pss"]
    before_mib = max((k for t, k in pss if t < begin), default=0) / 1024
    peak_mib = max((k for t, k in pss if begin <= t <= end), default=0) / 1024
    out = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["benchmarks/refresh_lag.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "entries": entries,
        "qps": qps,
        "refresh_seconds": round(end - 0.5 - begin, 2),
        "during_refresh": {
            "ticks": len(lags),
            "p50_ms": pct(lags, 50),
            "p99_ms": pct(lags, 99),
            "p999_ms": pct(lags, 99.9),
            "max_ms": pct(lags, 100),
        },  # fmt: skip
        "outside_refresh": {
            "ticks": len(quiet),
            "p99_ms": pct(quiet, 99),
            "max_ms": pct(quiet, 100),
        },  # fmt: skip
        "target_ms": TARGET_MS,
        "target_met": pct(lags, 100) <= TARGET_MS,
        "pss_mib": {
            "before_refresh": round(before_mib, 1),
            "peak_during_refresh": round(peak_mib, 1),
        },
        "worst_waits": rows,
        "slow_loop_steps": [
            {"at_s": round(t - begin, 3), "what": what}
            for t, what in result["slow"]
            if t >= begin - 0.01
        ],
        "steps_ms": timed,
        "timeline": timeline,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="block list lines")
    parser.add_argument("--qps", type=int, default=10_000, help="dnsperf rate (0: none)")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--debug", action="store_true",
                        help="asyncio debug mode: every loop step over 3 ms, by callback")  # fmt: skip
    args = parser.parse_args()
    if (os.cpu_count() or 1) > 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {servers.SERVER_CPU})
    logging.basicConfig(level=logging.WARNING)
    from kdns.config import build_config

    with tempfile.TemporaryDirectory(prefix="kdns-lag-") as tmpdir:
        tmp = Path(tmpdir)
        cluster = workload.cluster_objects()
        objects = workload.write_objects(cluster, tmp / "objects.json")
        body = lan_blocking.write_blocklist(tmp / "ads.hosts", args.entries).read_bytes()
        datafile = workload.write_queries(workload.plain_queries(cluster), tmp / "queries.txt")
        (tmp / "www").mkdir()
        server = ListServer(tmp / "www", body)
        runs = []
        try:
            for run in range(args.repeat):  # each from the list's first version, a new cache
                (tmp / "www" / "ads.hosts").write_bytes(body)
                path = tmp / f"kdns{run}.toml"
                path.write_text(config_toml(server.url, objects, tmp / f"cache{run}"))
                config = build_config(str(path), {"KDNS_RESOLV_CONF": os.devnull})
                result = asyncio.run(measure(config, args.qps, datafile, server, args.debug))
                out = report(result, args.entries, args.qps)
                runs.append(out)
                for row in out["worst_waits"][:5]:
                    print(f"{row['lag_ms']:8.2f} ms at +{row['at_s']:.3f} s: {', '.join(row['steps'])}")  # fmt: skip
                print(json.dumps({k: out[k] for k in ("refresh_seconds", "during_refresh", "outside_refresh", "pss_mib")}))  # fmt: skip
        finally:
            server.close()
    summary = {
        "when": runs[0]["when"],
        "command": runs[0]["command"],
        "entries": args.entries,
        "qps": args.qps,
        "target_ms": TARGET_MS,
        "during_max_ms": [r["during_refresh"]["max_ms"] for r in runs],
        "during_p99_ms": [r["during_refresh"]["p99_ms"] for r in runs],
        "outside_max_ms": [r["outside_refresh"]["max_ms"] for r in runs],
        "outside_p99_ms": [r["outside_refresh"]["p99_ms"] for r in runs],
        "target_met": all(r["target_met"] for r in runs),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
