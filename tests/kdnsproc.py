"""Start the real ``kdns serve`` process on ephemeral loopback ports and talk to it.

Ports are chosen by kdns itself (``--listen 127.0.0.1:0``); it logs where it listens and this
harness reads those lines, so parallel runs never fight over a port.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_DNS = re.compile(r"dns listening on udp\+tcp (\S+):(\d+)")
_HTTP = re.compile(r"(health|ready|metrics) listening on http://(\S+):(\d+)/")
LOOPBACK = "127.0.0.1"
# How long a start may take before the harness gives up. kdns starts in well under a second on
# an idle machine; a loaded CI box (parallel tests, two cores) can be 10-20x slower, and a
# spurious failure costs more than a slow one. KDNS_TEST_START_TIMEOUT overrides it.
START_TIMEOUT = float(os.environ.get("KDNS_TEST_START_TIMEOUT", "60"))
LOG_TAIL = 40  # lines of kdns's log quoted when a start fails


def kdns_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kdns.cli", *args]


def run_kdns(
    *args: str, timeout: float = 20, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a kdns command to completion (check-config, version, a serve that must fail)."""
    full_env = {**os.environ, "KDNS_RESOLV_CONF": os.devnull, **(env or {})}  # see Kdns
    return subprocess.run(
        kdns_command(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env
    )


class Kdns:
    """A running ``kdns serve``; use as a context manager."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        wait_serving: bool = True,
        listen: bool = True,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.args = [
            "serve",
            *(["--listen", f"{LOOPBACK}:0"] if listen else []),  # else the config file's
            # Never the machine's resolver: without an --upstream of the test's own (on
            # loopback), there is nowhere to forward and out-of-zone names get REFUSED.
            "--resolv-conf",
            os.devnull,
            # Stop at once when the test is done; lameduck cases pass their own --lameduck.
            "--lameduck",
            "0",
            "--metrics-listen",
            f"{LOOPBACK}:0",
            "--health-listen",
            f"{LOOPBACK}:0",
            "--ready-listen",
            f"{LOOPBACK}:0",
            *args,
        ]
        # Loopback only: never let a proxy setting route the API test server's traffic away.
        self.env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        self.env.update(env or {})
        self.wait_serving = wait_serving
        self.start_timeout = start_timeout
        self.lines: list[str] = []
        self.port = 0
        self.http: dict[str, int] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._drainer: threading.Thread | None = None

    def __enter__(self) -> Kdns:
        self.proc = subprocess.Popen(
            kdns_command(*self.args),
            stdin=subprocess.DEVNULL,  # never a terminal: Ctrl-C handling is not interactive
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.env,
        )
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        started = time.monotonic()
        while time.monotonic() - started < self.start_timeout:
            if self._ready.wait(0.05):
                return self
            if self.proc.poll() is not None:
                break
        elapsed = time.monotonic() - started
        exited = self.proc.poll()
        self.__exit__(None, None, None)
        raise RuntimeError(self._start_failure(elapsed, exited))

    def _start_failure(self, elapsed: float, exited: int | None) -> str:
        """Why the start failed, with the end of kdns's log (read to the end of the pipe)."""
        if self._drainer is not None:
            self._drainer.join(5)  # the process is gone: its stderr ends soon
        if exited is not None:
            why = f"kdns exited with status {exited} after {elapsed:.1f}s"
        else:
            waiting = "the 'serving' line" if self.wait_serving else "the DNS listening line"
            missing = [e for e in ("health", "ready", "metrics") if e not in self.http]
            why = (
                f"kdns did not start within {self.start_timeout:g}s (waited for {waiting}"
                f"{', DNS port' if not self.port else ''}"
                f"{', HTTP ' + '/'.join(missing) if missing else ''}); stopped it"
            )
        lines = list(self.lines)
        if not lines:
            tail = "(kdns wrote nothing to stderr: stuck before logging, e.g. still importing)"
        else:
            skipped = len(lines) - LOG_TAIL
            tail = (f"[... {skipped} earlier lines]\n" if skipped > 0 else "") + "".join(
                lines[-LOG_TAIL:]
            )
        command = " ".join(kdns_command(*self.args))
        return f"{why}\ncommand: {command}\nlast lines of its log:\n{tail}"

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if m := _DNS.search(line):
                self.port = int(m.group(2))
            if m := _HTTP.search(line):
                self.http[m.group(1)] = int(m.group(3))
            serving = "serving" in line if self.wait_serving else bool(self.port)
            if serving and self.port and len(self.http) == 3:
                self._ready.set()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self, timeout: float = 15) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    # -- DNS

    def query(
        self, name: str, rdtype: str | int = "A", *, tcp: bool = False, **make_kw: object
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **make_kw)  # type: ignore[arg-type]
        if tcp:
            return dns.query.tcp(q, LOOPBACK, port=self.port, timeout=3)
        return dns.query.udp(q, LOOPBACK, port=self.port, timeout=3, ignore_trailing=False)

    def send_raw_udp(self, payload: bytes, timeout: float = 1.0) -> bytes | None:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(payload, (LOOPBACK, self.port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

    # -- HTTP

    def get(self, endpoint: str) -> tuple[int, str]:
        url = f"http://{LOOPBACK}:{self.http[endpoint]}/{endpoint}"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()


def rrset_texts(message: dns.message.Message, section: str = "answer") -> list[str]:
    """Every record of a section as sorted 'name ttl class type rdata' lines, lowercase names."""
    out = []
    for rrset in getattr(message, section):
        for line in rrset.to_text().splitlines():
            out.append(line)
    return sorted(out)


def fixed_port() -> int:
    """A port free for both UDP and TCP on loopback, below the ephemeral range, for tests that
    must name kdns's port in advance (a reload, --workers): no client socket of a test running
    beside us can take it between the probe and kdns's bind."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    udp.bind((LOOPBACK, port))
                    tcp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port between 20000 and 32000")


def udp_blast(
    port: int, queries: list[bytes], *, chunk: int = 128, timeout: float = 5.0, tries: int = 4
) -> tuple[list[bytes | None], int]:
    """Send ``queries`` to kdns on loopback from one UDP socket, ``chunk`` datagrams at a time
    without waiting for replies (so the server reads them in batches), then collect the replies.

    Each query's first two bytes (its ID) are replaced by its index; the rest is sent exactly as
    given. Queries left unanswered (a full socket buffer on either side) are sent again, the
    same bytes, up to ``tries`` times. Returns the replies by index (None: never answered) and
    how many datagrams had to be sent again."""
    if len(queries) > 65536:
        raise ValueError("at most 65536 queries (one ID each)")
    replies: list[bytes | None] = [None] * len(queries)
    resent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.connect((LOOPBACK, port))
        pending = list(range(len(queries)))
        for attempt in range(tries):
            if attempt:
                resent += len(pending)
            for start in range(0, len(pending), chunk):
                part = pending[start : start + chunk]
                for i in part:
                    sock.send(i.to_bytes(2, "big") + queries[i][2:])
                waiting = set(part)
                deadline = time.monotonic() + timeout
                while waiting and time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        data = sock.recv(65535)
                    except (TimeoutError, ConnectionRefusedError):
                        continue
                    if len(data) < 2:
                        continue
                    i = int.from_bytes(data[:2], "big")
                    if i < len(queries) and replies[i] is None:
                        replies[i] = data
                        waiting.discard(i)
            pending = [i for i in pending if replies[i] is None]
            if not pending:
                break
    return replies, resent
