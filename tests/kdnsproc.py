"""Start the real ``kdns serve`` process on ephemeral loopback ports and talk to it.

Ports are chosen by kdns itself (``--listen 127.0.0.1:0``); it logs where it listens and this
harness reads those lines, so parallel runs never fight over a port.
"""

from __future__ import annotations

import os
import re
import signal
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
        self.lines: list[str] = []
        self.port = 0
        self.http: dict[str, int] = {}
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Kdns:
        self.proc = subprocess.Popen(
            kdns_command(*self.args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=self.env,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return self
            if self.proc.poll() is not None:
                break
        self.__exit__(None, None, None)
        raise RuntimeError("kdns did not start:\n" + "".join(self.lines))

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
