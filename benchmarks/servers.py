"""The servers under test: kdns processes and NSD serving the same data, plus /proc accounting.

Each server runs pinned to CPU 0 (``taskset -c 0``) on 127.0.0.1. NSD's zones are transferred
(AXFR) from a kdns serving the benchmark's objects, so both answer from identical records.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import dns.zone

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_CPU, CLIENT_CPU = 0, 1
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
_DNS = re.compile(r"dns listening on udp\+tcp (\S+):(\d+)")
_HTTP = re.compile(r"(metrics) listening on http://(\S+):(\d+)/")
_TICKS = os.sysconf("SC_CLK_TCK")


def pin(cpu: int) -> list[str]:
    """``taskset -c CPU`` when there is a second core to keep the other side on."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def ensure_tool(binary: str, package: str) -> str:
    """The path of ``binary``; installs the Debian package when root and missing, else exits
    with how to install it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{binary} missing: installing the Debian package {package}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)
        path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
        if path:
            return path
    sys.exit(f"benchmarks need {binary}: apt-get install {package} (Debian/Ubuntu)")


class Server:
    """A running server process: its port, and CPU time / RSS of its whole process tree."""

    label = ""
    port = 0
    metrics_port = 0
    proc: subprocess.Popen[str] | None = None

    def cpu_seconds(self) -> float:
        """utime + stime of the process and its live descendants (all threads)."""
        assert self.proc is not None
        total = 0
        for pid in _tree(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / _TICKS

    def rss_kib(self) -> int:
        """VmRSS of the process; for a process tree (NSD: main, xfrd and the serving child,
        which share their zone memory copy-on-write) the sum of their PSS instead."""
        assert self.proc is not None
        pids = _tree(self.proc.pid)
        if len(pids) == 1:
            return _status_field(pids[0], "status", "VmRSS:")
        return sum(_status_field(pid, "smaps_rollup", "Pss:") for pid in pids)

    def metrics(self) -> str:
        if not self.metrics_port:
            return ""
        url = f"http://{HOST}:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _status_field(pid: int, file: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


class Kdns(Server):
    """``kdns serve --objects FILE`` on an ephemeral loopback port (read back from its log)."""

    def __init__(self, label: str, objects: Path, *args: str, toml: str = "") -> None:
        self.label = label
        self.lines: list[str] = []
        self._ready = threading.Event()
        cmd = [sys.executable, "-m", "kdns.cli", "serve", "--objects", str(objects),
               "--listen", f"{HOST}:0", "--resolv-conf", os.devnull, "--lameduck", "0",
               "--health-listen", "off", "--ready-listen", "off", "--log-level", "info", *args]  # fmt: skip
        self._tmp = None
        if toml:
            self._tmp = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
            self._tmp.write(toml)
            self._tmp.close()
            cmd += ["--config", self._tmp.name]
        self.proc = subprocess.Popen(
            pin(SERVER_CPU) + cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{label}: kdns did not start:\n" + "".join(self.lines[-20:]))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.lines) < 200:
                self.lines.append(line)
            if m := _DNS.search(line):
                self.port = int(m.group(2))
            if m := _HTTP.search(line):
                self.metrics_port = int(m.group(3))
            if "serving" in line and self.port:
                self._ready.set()

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            os.unlink(self._tmp.name)
            self._tmp = None


class Script(Server):
    """A comparison server from benchmarks/ (``SCRIPT PORT``)."""

    def __init__(self, label: str, script: Path) -> None:
        self.label = label
        self.port = free_port()
        self.proc = subprocess.Popen(
            pin(SERVER_CPU) + [sys.executable, str(script), str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        wait_udp(self.port, "kubernetes.default.svc.cluster.local", self.proc)


def kdns_args(variant: str) -> list[str]:
    """Flags of a kdns variant: ``metrics-on``, ``metrics-off`` or ``killer`` (metrics on)."""
    metrics = ["--metrics-listen", "off" if variant == "metrics-off" else f"{HOST}:0"]
    return metrics + (["--killer"] if variant == "killer" else [])


def transfer_zones(objects: Path) -> dict[str, dns.zone.Zone]:
    """AXFR cluster.local and the reverse zones from a kdns serving ``objects``."""
    toml = '[transfer]\nallow = ["127.0.0.0/8"]\n'
    with Kdns("axfr", objects, "--metrics-listen", "off", "--no-forward", toml=toml) as k:
        zones = {}
        for origin in ("cluster.local", *REVERSE_ZONES):
            zones[origin] = dns.zone.from_xfr(dns.query.xfr(HOST, origin, port=k.port, timeout=30))
        return zones


def write_zone_files(zones: dict[str, dns.zone.Zone], directory: Path) -> dict[str, Path]:
    paths = {}
    for origin, zone in zones.items():
        path = directory / f"{origin}.zone"
        zone.to_file(str(path), want_origin=True)
        paths[origin] = path
    return paths


class Nsd(Server):
    """NSD in the foreground (``nsd -d``) on a loopback port, one server process, serving zone
    files; everything it writes stays in a temporary directory."""

    def __init__(self, nsd: str, zone_files: dict[str, Path], workdir: Path) -> None:
        self.label = "NSD"
        self.port = free_port()
        conf = workdir / "nsd.conf"
        text = f"""server:
    ip-address: {HOST}@{self.port}
    port: {self.port}
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "{workdir}"
    database: ""
    zonelistfile: "{workdir}/zone.list"
    xfrdfile: "{workdir}/xfrd.state"
    xfrdir: "{workdir}"
    pidfile: "{workdir}/nsd.pid"
    logfile: "{workdir}/nsd.log"
    hide-version: yes
    verbosity: 0
    round-robin: no
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
    minimal-responses: yes
remote-control:
    control-enable: no
"""
        for origin, path in zone_files.items():
            text += f'zone:\n    name: "{origin}"\n    zonefile: "{path}"\n'
        conf.write_text(text)
        check = shutil.which("nsd-checkconf") or "/usr/sbin/nsd-checkconf"
        if os.path.exists(check):
            subprocess.run([check, str(conf)], check=True)
        self.proc = subprocess.Popen(
            pin(SERVER_CPU) + [nsd, "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.log = workdir / "nsd.log"
        try:
            wait_udp(self.port, "kubernetes.default.svc.cluster.local", self.proc)
        except RuntimeError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"NSD did not start:\n{log}") from None


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped because a UDP socket's receive buffer was full (this
    network namespace, every socket: /proc/net/snmp Udp RcvbufErrors)."""
    try:
        head, values = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
                        if line.startswith("Udp:")][:2]  # fmt: skip
        return int(values[head.index("RcvbufErrors")])
    except (OSError, ValueError):
        return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_udp(port: int, name: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    q = dns.message.make_query(name, "SOA")
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            dns.query.udp(q, HOST, port=port, timeout=0.3)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer")
