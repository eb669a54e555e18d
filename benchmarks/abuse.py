"""Abuse run: each attack of the "Hardening" issue against a running kdns, while a well-behaved
client measures its latency; then a fuzz run. Loopback only, bounded in time and count.

    .venv/bin/python benchmarks/abuse.py                 # every attack + 1,000,000-packet fuzz
    .venv/bin/python benchmarks/abuse.py --fuzz 100000   # a shorter fuzz
    .venv/bin/python benchmarks/abuse.py --only any,tcp-hog --fuzz 0

Prints one row per attack: packets/connections sent, the good client's p99 (and max) UDP
latency during the attack, wrong answers it got, kdns's RSS before/after; then the fuzz:
packets, crashes (kdns gone), internal errors (kdns_internal_errors_total), RSS growth.
Targets (the issue): good-client p99 < 5 ms during every attack on an idle machine; 0 crashes;
RSS growth < 1 MB per million fuzz packets.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.rcode
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.kdnsproc import LOOPBACK, Kdns  # noqa: E402

GOOD_SOURCE = "127.0.1.1"  # the well-behaved client (exempt from RRL, its own TCP client)
GOOD_NAME = "web.default.svc.cluster.local"
BIG = "big.default.svc.cluster.local"
ENDPOINTS = 10_000
RATE = 5_000  # attack packets per second (see _udp_flood)
PORTS = 1_000


# --- data --------------------------------------------------------------------------------------


def _address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def manifests(generation: int = 0) -> list[dict]:
    """A normal Service, a 10,000-endpoint headless one, a 1,000-named-port one; ``generation``
    shifts the endpoint addresses so a rewrite changes every record."""
    endpoints = [{"addresses": [_address(1 + generation + i)]} for i in range(ENDPOINTS)]
    ports = [{"name": f"p{i}", "port": 1000 + i, "protocol": "TCP"} for i in range(PORTS)]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ports", "namespace": "default"},
            "spec": {"clusterIP": f"10.96.1.{1 + generation % 200}", "ports": ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 80}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "big-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "big"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "p", "port": 80}],
            "endpoints": endpoints,
        },
    ]


def query(name: str, rdtype: str = "A", edns: int = -1, qid: int | None = None) -> bytes:
    message = dns.message.make_query(name, rdtype, use_edns=edns)
    if qid is not None:
        message.id = qid
    return message.to_wire()


# --- fuzz packets --------------------------------------------------------------------------------


def _crafted() -> list[bytes]:
    """Edge cases a parser must survive: every one gets FORMERR/NOTIMP/an answer or silence."""
    head = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    good = query(GOOD_NAME)
    qname = good[12:-4]
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    with_extra = head[:10] + b"\x00\x01" + qname + b"\x00\x01\x00\x01"  # ARCOUNT 1
    return [
        b"",
        b"\x00",
        head[:11],
        head,  # question missing
        struct.pack("!HHHHHH", 1, 0x0100, 0, 0, 0, 0),  # no question
        struct.pack("!HHHHHH", 1, 0x0100, 2, 0, 0, 0) + qname + b"\x00\x01\x00\x01" * 2,
        struct.pack("!HHHHHH", 1, 0x8100, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01",  # QR
        struct.pack("!HHHHHH", 1, 0x2900, 1, 0, 0, 0) + qname + b"\x00\x01\x00\x01",  # opcode 5
        head + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer loop in the question
        head + b"\x3f" + b"a" * 63 + b"\x00\x00\x01\x00\x01",
        head + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # 257-byte name
        head + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label 64
        head + qname + b"\x00\x01",  # question cut short
        head + qname + b"\x00\xfc\x00\x01",  # AXFR over UDP
        head + qname + b"\x00\x01\x00\x03",  # class CH
        head + qname + b"\x00\x01\x00\xff",  # class ANY
        head[:10] + b"\x00\x01" + qname + b"\x00\x01\x00\x01" + opt,
        head[:10] + b"\x00\x02" + qname + b"\x00\x01\x00\x01" + opt + opt,  # OPT twice
        with_extra + opt[:-2] + b"\x00\x08\x00\x0a\x00\x20",  # option overruns its RDATA
        with_extra + b"\x00\x00\x29\x00\x00\x00\x01\x00\x00\x00\x00",  # EDNS version 1
        with_extra + b"\xc0\x0c\x00\x29\xff\xff\x00\x00\x00\x00\x00\x00",  # OPT owner a pointer
        head[:6] + b"\xff\xff\xff\xff\xff\xff" + qname + b"\x00\x01\x00\x01",  # huge counts
        query(BIG, "ANY"),
        query(BIG, "ANY", edns=0),
        query(BIG, "SRV", edns=0),
        query("_p999._tcp.ports.default.svc.cluster.local", "SRV"),
        query("10.0.0.1.in-addr.arpa", "PTR"),
        query("cluster.local", "SOA"),
        query("x" * 60 + ".default.pod.cluster.local", "A"),
        query("10-0-0-1.default.pod.cluster.local", "AAAA"),
        query("fd00--1.default.pod.cluster.local", "AAAA"),
    ]


def fuzz_packets(rng: random.Random, count: int) -> Iterator[bytes]:
    """``count`` packets: a third random bytes, half mutated valid queries, the rest crafted."""
    crafted = _crafted()
    seeds = [query(GOOD_NAME), query(BIG, edns=0), query(GOOD_NAME, "SRV", edns=0), *crafted]
    for i in range(count):
        kind = i % 6
        if kind in (0, 1):
            yield rng.randbytes(rng.randrange(0, 600))
        elif kind in (2, 3, 4):
            packet = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                if packet and rng.random() < 0.8:
                    packet[rng.randrange(len(packet))] = rng.randrange(256)
                elif rng.random() < 0.5:
                    packet += rng.randbytes(rng.randrange(1, 20))
                else:
                    del packet[rng.randrange(len(packet) + 1) :]
            if len(packet) > 2:
                packet[2] &= 0x7F  # queries (QR clear), so the parse goes deep
            yield bytes(packet)
        else:
            yield crafted[i % len(crafted)]


# --- measuring -----------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class GoodClient(threading.Thread):
    """A well-behaved resolver: one UDP query every ``interval`` seconds, latency recorded."""

    def __init__(self, port: int, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.latencies: list[float] = []
        self.wrong = 0  # NXDOMAIN / no answer / timeouts
        self.stop = threading.Event()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((GOOD_SOURCE, 0))
        sock.settimeout(1.0)
        qid = 0
        while not self.stop.is_set():
            qid = (qid + 1) & 0xFFFF
            wire = query(GOOD_NAME, qid=qid)
            started = time.perf_counter()
            sock.sendto(wire, (LOOPBACK, self.port))
            try:
                while True:
                    data = sock.recv(65535)
                    if data[:2] == wire[:2]:
                        break
                self.latencies.append(time.perf_counter() - started)
                if data[3] & 0x0F != dns.rcode.NOERROR or data[6:8] == b"\x00\x00":
                    self.wrong += 1
            except TimeoutError:
                self.latencies.append(1.0)
                self.wrong += 1
            time.sleep(self.interval)
        sock.close()

    def window(self) -> tuple[list[float], int]:
        """Latencies and wrong answers since the last call."""
        out, self.latencies = self.latencies, []
        wrong, self.wrong = self.wrong, 0
        return out, wrong


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# --- attacks (each returns what it sent) ---------------------------------------------------------


def _udp_flood(port: int, packets: list[bytes], count: int, seconds: float, rate: int) -> int:
    """Send ``count`` packets (cycling ``packets``) at ``rate`` per second, for ``seconds``
    at most, draining replies. A flood above what the server can answer at all only measures
    queueing in the socket buffer (true of any server); at a rate it can answer, the good
    client's latency shows what each attack packet costs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = 0
    started = time.monotonic()
    while sent < count and time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < min(due, count):
            try:
                sock.sendto(packets[sent % len(packets)], (LOOPBACK, port))
            except BlockingIOError:
                break
            sent += 1
        try:
            while sock.recv(65535):
                pass
        except BlockingIOError:
            pass
        time.sleep(0.001)
    sock.close()
    return sent


def attack_any(server: Kdns, ctx: dict) -> str:
    packets = [query(BIG, "ANY"), query(BIG, "ANY", edns=0)]
    sent = _udp_flood(server.port, packets, 40_000, 8, RATE)
    return f"{sent} ANY packets ({RATE}/s)"


def attack_large_rrset(server: Kdns, ctx: dict) -> str:
    packets = [query(BIG), query(BIG, "SRV", edns=0), query("_p._tcp." + BIG, "A", edns=0)]
    sent = _udp_flood(server.port, packets, 40_000, 8, RATE)
    socks = []
    for _ in range(20):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=3)
        wire = query(BIG, "ANY")
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        socks.append(sock)
    for sock in socks:
        sock.settimeout(3)
        size = int.from_bytes(sock.recv(2), "big")
        got = 0
        while got < size:
            got += len(sock.recv(size - got))
        sock.close()
    return f"{sent} UDP ({RATE}/s) + 20 TCP ANY"


def attack_reload(server: Kdns, ctx: dict) -> str:
    """Rewrite the manifest with every endpoint address changed (re-render 10,000 endpoints and
    1,000 ports), twice; the manifest poll applies it within 5 s."""
    path: Path = ctx["objects"]
    for generation in (1, 2):
        path.write_text(yaml.safe_dump_all(manifests(generation)))
        time.sleep(6.5)
    return "2 reloads of 10,000 endpoints + 1,000 ports"


def attack_truncate(server: Kdns, ctx: dict) -> str:
    """Non-atomic rewrites (truncate, pause, write) around the poll."""
    path: Path = ctx["objects"]
    content = path.read_text()
    deadline = time.monotonic() + 12
    rewrites = 0
    while time.monotonic() < deadline:
        with open(path, "w") as handle:
            handle.flush()
            time.sleep(0.3)
            handle.write(content)
        rewrites += 1
        time.sleep(0.2)
    return f"{rewrites} truncate-then-write rewrites"


def attack_pipeline(server: Kdns, ctx: dict) -> str:
    """TCP clients pipelining big-answer queries and never reading."""
    wire = query(BIG, "ANY")
    framed = (len(wire).to_bytes(2, "big") + wire) * 4000
    socks = []
    for _ in range(10):
        sock = socket.create_connection((LOOPBACK, server.port), timeout=3)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        socks.append([sock, 0])
    deadline = time.monotonic() + 8
    total = 0
    while time.monotonic() < deadline:
        for entry in socks:
            sock, sent = entry
            try:
                n = sock.send(framed[sent % len(framed) : sent % len(framed) + 65536])
                entry[1] += n
                total += n
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.01)
    for sock, _ in socks:
        sock.close()
    return f"10 connections, {total // (len(wire) + 2)} queries unread"


def attack_tcp_hog(server: Kdns, ctx: dict) -> str:
    """1,000 idle connections from one address, then a TCP query from another."""
    socks = []
    refused = 0
    for _ in range(1000):
        try:
            socks.append(socket.create_connection((LOOPBACK, server.port), timeout=1))
        except OSError:
            refused += 1
    time.sleep(0.5)
    ok = False
    try:
        sock = socket.create_connection(
            (LOOPBACK, server.port), timeout=2, source_address=(GOOD_SOURCE, 0)
        )
        wire = query(GOOD_NAME)
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        ok = len(sock.recv(2)) == 2
        sock.close()
    except OSError:
        pass
    for sock in socks:
        sock.close()
    return f"1000 conns ({refused} refused), other client {'answered' if ok else 'LOCKED OUT'}"


def attack_reflection(server: Kdns, ctx: dict) -> str:
    """A flood of identical queries, as a reflection attack sends from a spoofed victim."""
    before = _metric(server, r'kdns_rrl_responses_total\{action="drop"\} (\S+)')
    sent = _udp_flood(server.port, [query(BIG, edns=0)], 40_000, 8, RATE)
    dropped = _metric(server, r'kdns_rrl_responses_total\{action="drop"\} (\S+)') - before
    return f"{sent} packets ({RATE}/s), RRL dropped {dropped:.0f}"


ATTACKS: dict[str, Callable[[Kdns, dict], str]] = {
    "any": attack_any,
    "large-rrset": attack_large_rrset,
    "reload": attack_reload,
    "truncated-file": attack_truncate,
    "tcp-pipeline": attack_pipeline,
    "tcp-hog": attack_tcp_hog,
    "reflection+rrl": attack_reflection,
}


def _metric(server: Kdns, pattern: str) -> float:
    _, text = server.get("metrics")
    match = re.search("^" + pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# --- fuzz ----------------------------------------------------------------------------------------


def fuzz(server: Kdns, count: int, seed: int = 1) -> str:
    assert server.proc is not None
    pid = server.proc.pid
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    warm = list(fuzz_packets(random.Random(seed + 1), 20_000))  # first-use allocations
    _send_all(sock, server.port, iter(warm))
    time.sleep(0.5)
    rss_before = rss_kb(pid)
    errors_before = _metric(server, r"kdns_internal_errors_total (\S+)")
    started = time.monotonic()
    sent = _send_all(sock, server.port, fuzz_packets(rng, count))
    elapsed = time.monotonic() - started
    time.sleep(0.5)
    crashed = server.proc.poll() is not None
    rss_after = 0 if crashed else rss_kb(pid)
    errors = (
        -1.0 if crashed else _metric(server, r"kdns_internal_errors_total (\S+)") - errors_before
    )
    alive = False
    if not crashed:
        alive = server.query(GOOD_NAME).rcode() == dns.rcode.NOERROR
    sock.close()
    return (
        f"fuzz: {sent} packets in {elapsed:.0f}s, crashes {int(crashed)}, internal errors "
        f"{errors:.0f}, still answering: {alive}, RSS {rss_before / 1024:.1f} -> "
        f"{rss_after / 1024:.1f} MiB ({(rss_after - rss_before) / 1024:+.2f} MiB)"
    )


def _send_all(sock: socket.socket, port: int, packets: Iterator[bytes], batch: int = 128) -> int:
    """Send every packet so that kdns handles each one: after each ``batch`` a valid query
    from the (RRL-exempt) good address goes last and its reply is awaited (kdns reads one
    socket in order), so none is lost to a full receive buffer."""
    sync = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sync.bind((GOOD_SOURCE, 0))
    sync.setblocking(False)
    sent = 0
    sentinel = 0
    for packet in packets:
        sock.sendto(packet, (LOOPBACK, port))
        sent += 1
        if sent % batch == 0:
            _drain(sock)
            sentinel = (sentinel + 1) & 0xFFFF
            _sync(sync, port, sentinel)
    _sync(sync, port, 0)
    _drain(sock)
    sync.close()
    return sent


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(65535):
            pass
    except BlockingIOError:
        pass


def _sync(sock: socket.socket, port: int, qid: int) -> None:
    wire = query(GOOD_NAME, qid=qid)
    sock.sendto(wire, (LOOPBACK, port))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if sock.recv(65535)[:2] == wire[:2]:
                return
        except BlockingIOError:
            time.sleep(0.0001)
    raise SystemExit("kdns stopped answering during the fuzz")


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated attacks: " + ",".join(ATTACKS))
    parser.add_argument("--fuzz", type=int, default=1_000_000, help="fuzz packets (0: none)")
    args = parser.parse_args()
    chosen = list(ATTACKS) if not args.only else args.only.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="kdns-abuse-"))
    objects = workdir / "cluster.yaml"
    objects.write_text(yaml.safe_dump_all(manifests()))
    config = workdir / "kdns.toml"
    config.write_text(
        f'[rrl]\nenabled = true\nresponses_per_second = 20\nexempt = ["{GOOD_SOURCE}/32"]\n'
    )
    print(f"kdns {' '.join(['serve', '-c', str(config), '--objects', str(objects)])}")
    print(f"{'attack':16} {'sent':62} {'p99 ms':>8} {'max ms':>8} {'wrong':>6} {'RSS MiB':>14}")
    with Kdns("-c", str(config), "--objects", str(objects)) as server:
        assert server.proc is not None
        good = GoodClient(server.port)
        good.start()
        time.sleep(1)
        baseline, _ = good.window()
        print(f"{'(idle)':16} {'':62} {p99(baseline) * 1000:8.2f} {max(baseline) * 1000:8.2f}")
        ctx = {"objects": objects}
        for name in chosen:
            rss_before = rss_kb(server.proc.pid)
            good.window()
            what = ATTACKS[name](server, ctx)
            time.sleep(0.3)
            latencies, wrong = good.window()
            rss_after = rss_kb(server.proc.pid)
            print(
                f"{name:16} {what[:62]:62} {p99(latencies) * 1000:8.2f} "
                f"{max(latencies, default=0) * 1000:8.2f} {wrong:6d} "
                f"{rss_before / 1024:6.1f}->{rss_after / 1024:6.1f}",
                flush=True,
            )
            if server.proc.poll() is not None:
                print("kdns died", file=sys.stderr)
                sys.exit(1)
        good.stop.set()
        good.join()
        if args.fuzz:
            print(fuzz(server, args.fuzz), flush=True)
    os.unlink(objects)


if __name__ == "__main__":
    main()
