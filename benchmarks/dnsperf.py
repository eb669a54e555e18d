"""Driving dnsperf (pinned to the client CPU) and reading its report.

Latency percentiles come from dnsperf itself: Debian's dnsperf 2.10 has no latency histogram
option, so the half-load run uses ``-v``, which prints every answer with its latency (written
to a file, then sorted here). At half load dnsperf has the headroom to print.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field

from servers import CLIENT_CPU, HOST, pin

CLIENTS = 8  # dnsperf -c: source ports
OUTSTANDING = 500  # dnsperf -q: enough in flight to saturate one server core
TIMEOUT = 2  # dnsperf -t: seconds before a query counts as lost


@dataclass
class Run:
    qps: float = 0.0
    sent: int = 0
    completed: int = 0
    lost: int = 0
    rcodes: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, sorted (with -v only)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile latency in microseconds (None without -v data)."""
        if not self.latencies:
            return None
        index = min(len(self.latencies) - 1, int(p / 100 * len(self.latencies)))
        return self.latencies[index] * 1e6


def run(
    dnsperf: str,
    port: int,
    datafile: str,
    seconds: float,
    *,
    edns: bool = False,
    option: str | None = None,
    rate: float | None = None,
    verbose: bool = False,
) -> Run:
    """One dnsperf run: as fast as it can (``rate`` None) or at ``rate`` qps (``-Q``)."""
    cmd = pin(CLIENT_CPU) + [dnsperf, "-s", HOST, "-p", str(port), "-d", datafile,
                             "-l", f"{seconds:g}", "-c", str(CLIENTS), "-q", str(OUTSTANDING),
                             "-t", str(TIMEOUT)]  # fmt: skip
    if edns:
        cmd.append("-e")
    if option is not None:  # an EDNS option on every query ("code:hex value")
        cmd += ["-E", option]
    if rate is not None:
        cmd += ["-Q", str(max(1, int(rate)))]
    if verbose:
        cmd.append("-v")
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"dnsperf failed ({proc.returncode}): {proc.stderr[-500:]}")
        out.seek(0)
        return parse(out)


def parse(lines: object) -> Run:
    """dnsperf's stdout: ``-v`` answer lines (``> RCODE NAME TYPE LATENCY``) and the summary."""
    r = Run()
    latencies = r.latencies
    for line in lines:  # type: ignore[attr-defined]
        if line.startswith("> "):
            parts = line.split()
            if parts[1] != "T":  # "> T ..." is a timeout
                latencies.append(float(parts[-1]))
            continue
        key, _, value = line.strip().partition(":")
        if key == "Queries sent":
            r.sent = int(value.split()[0])
        elif key == "Queries completed":
            r.completed = int(value.split()[0])
        elif key == "Queries lost":
            r.lost = int(value.split()[0])
        elif key == "Queries per second":
            r.qps = float(value)
        elif key == "Response codes":
            for item in value.split(","):
                words = item.split()
                if len(words) >= 2:
                    r.rcodes[words[0]] = int(words[1])
    latencies.sort()
    return r
