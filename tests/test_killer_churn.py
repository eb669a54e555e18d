"""Killer mode under churn: 10 object edits a second for 30 s while clients keep asking.

Killer mode issue, Build 3: "10 object edits a second for 30 s under traffic, 0 replies
carrying data older than the last applied edit". Each edit n moves one Service: its ClusterIP
becomes 10.77.(n >> 8).(n & 255) and its port 10000 + n, so every reply names the edit it was
made from (the A record; the SRV port and the A record in its additional section).

Traffic: one UDP socket sends bursts of 64 fixed datagrams (A without and with EDNS, with a
DNS COOKIE, in another letter case; SRV) without waiting, so killer mode reads them with
recvmmsg and most are wire cache hits; then it collects the replies. Each query's send time
and each reply's receive time are recorded.

When an edit is applied: a second client asks the same process over TCP in a loop. TCP is
served by the standard path in killer mode (the wire cache sits in front of UDP only), so its
answer is the registry's state; a TCP reply received at t showing edit n proves n was applied
before t. Any reply, UDP or TCP, received before a query was sent sets a floor for it:

    every UDP reply must carry an edit >= the newest edit seen in any reply received before
    its query was sent, and <= the newest edit written before the reply arrived.

Two sources of edits:
- the objects file (``--objects``), rewritten in one step (rename) 10 times a second. kdns polls
  it every 5 s (``StaticSource.poll_interval``), so of the 300 edits written about 6 are
  applied, each under full traffic, and the cache holds each state for seconds before the next;
- the Kubernetes API (list/watch through the test API server in tests/k8sapi.py): every one of
  the 300 edits reaches kdns within milliseconds, the churn the issue describes.
"""

from __future__ import annotations

import bisect
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.k8sapi import K8sApi, namespace, service
from tests.kdnsproc import LOOPBACK, Kdns

NAME = "churn.prod.svc.cluster.local"
EDITS = 300  # 10 a second for 30 s
RATE = 10.0
BURST = 64
COOKIE = bytes.fromhex("0123456789abcdef")


def _ip(n: int) -> str:
    return f"10.77.{n >> 8}.{n & 255}"


def _queries() -> list[bytes]:
    cookie: list[dns.edns.Option] = [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, COOKIE)]
    made = [
        dns.message.make_query(NAME, "A", id=0, use_edns=False),
        dns.message.make_query(NAME, "A", id=0, use_edns=0),
        dns.message.make_query(NAME, "A", id=0, use_edns=0, options=cookie),
        dns.message.make_query("Churn.Prod.svc.cluster.local", "A", id=0, use_edns=0),
        dns.message.make_query(f"_http._tcp.{NAME}", "SRV", id=0, use_edns=0),
    ]
    return [q.to_wire() for q in made]


def _edit_of(reply: bytes) -> int:
    """The edit a reply was made from; ValueError when it does not name exactly one."""
    message = dns.message.from_wire(reply)
    if message.rcode() != dns.rcode.NOERROR:
        raise ValueError(f"rcode {dns.rcode.to_text(message.rcode())}")
    seen = set()
    for rrset in (*message.answer, *message.additional):
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                a, b, c, d = (int(x) for x in rdata.address.split("."))
                if (a, b) != (10, 77):
                    raise ValueError(f"unexpected address {rdata.address}")
                seen.add(c << 8 | d)
            elif rrset.rdtype == dns.rdatatype.SRV:
                seen.add(rdata.port - 10000)
    if len(seen) != 1:
        raise ValueError(f"edits {sorted(seen)} in one reply")
    return seen.pop()


@dataclass
class Run:
    """What happened, on one monotonic clock."""

    written: list[tuple[float, int]] = field(default_factory=list)  # (time started, edit)
    truth: list[tuple[float, int]] = field(default_factory=list)  # TCP: (time received, edit)
    sent: dict[int, tuple[float, int]] = field(default_factory=dict)  # seq -> (time, query)
    replies: list[tuple[int, float, bytes]] = field(default_factory=list)  # (seq, time, reply)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)


def _traffic(port: int, run: Run) -> None:
    queries = _queries()
    seq = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.connect((LOOPBACK, port))
        while not run.stop.is_set():
            waiting: dict[int, int] = {}  # ID -> sequence number, for this burst
            for _ in range(BURST):
                ident = seq & 0xFFFF
                which = seq % len(queries)
                run.sent[seq] = (time.monotonic(), which)
                sock.send(ident.to_bytes(2, "big") + queries[which][2:])
                waiting[ident] = seq
                seq += 1
            deadline = time.monotonic() + 2.0
            while waiting and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(65535)
                except TimeoutError:
                    continue
                number = waiting.pop(int.from_bytes(data[:2], "big"), None)
                if number is not None:
                    run.replies.append((number, time.monotonic(), data))
            time.sleep(0.01)


def _truth(port: int, run: Run) -> None:
    """Standard mode's state of the same process, asked over TCP in a loop."""
    query = dns.message.make_query(NAME, "A")
    while not run.stop.is_set():
        try:
            reply = dns.query.tcp(query, LOOPBACK, port=port, timeout=3)
            run.truth.append((time.monotonic(), _edit_of(reply.to_wire())))
        except Exception as exc:  # recorded, and the run fails
            run.errors.append(f"TCP probe: {exc!r}")
        time.sleep(0.005)


def _churn(proc: Kdns, edit: Callable[[int], None]) -> Run:
    """EDITS edits at RATE a second under UDP traffic, then until the last is served."""
    run = Run()
    threads = [
        threading.Thread(target=_traffic, args=(proc.port, run), daemon=True),
        threading.Thread(target=_truth, args=(proc.port, run), daemon=True),
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    for n in range(1, EDITS + 1):
        pause = started + n / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        run.written.append((time.monotonic(), n))  # before: kdns may apply it at once
        edit(n)
    # Until the last edit is served (the objects file is polled every 5 s), then a little more.
    deadline = time.monotonic() + 60
    while not (run.truth and run.truth[-1][1] == EDITS) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    run.stop.set()
    for thread in threads:
        thread.join(10)
    return run


def _check(run: Run, proc: Kdns, applied_at_least: int, wire_cache: bool = False) -> None:
    assert not run.errors, run.errors[:5]
    assert run.truth and run.truth[-1][1] == EDITS, "the last edit was never served over TCP"
    decoded: dict[bytes, int | str] = {}  # most replies are the same bytes: decode each once
    events = list(run.truth)  # (time received, edit): what was applied by then
    udp: list[tuple[float, float, int, int]] = []  # (sent, received, query, edit)
    bad = []
    for number, received, reply in run.replies:
        sent, which = run.sent[number]
        key = reply[2:]
        if key not in decoded:
            try:
                decoded[key] = _edit_of(reply)
            except Exception as exc:
                decoded[key] = str(exc)
        value = decoded[key]
        if isinstance(value, str):
            bad.append((which, value))
            continue
        udp.append((sent, received, which, value))
        events.append((received, value))
    assert not bad, f"{len(bad)} replies that name no single edit: {bad[:5]}"
    events.sort()
    times = [t for t, _ in events]
    newest = []  # newest edit seen in any reply received up to events[i]
    top = 0
    for _, value in events:
        top = max(top, value)
        newest.append(top)
    written_times = [t for t, _ in run.written]
    stale, future = [], []
    for sent, received, which, value in udp:
        i = bisect.bisect_left(times, sent)  # replies received strictly before the send
        floor = newest[i - 1] if i else 0
        if value < floor:
            stale.append((round(sent, 3), which, value, floor))
        j = bisect.bisect_right(written_times, received)
        if value > (run.written[j - 1][1] if j else 0):
            future.append((round(received, 3), which, value))
    applied = sorted({value for _, value in run.truth})
    sent_total = len(run.sent)
    _, text = proc.get("metrics")
    # Replies sent from a cache: the wire cache's, and the reply memo's (asked first by the
    # UDP loop in both modes while no stage judges the client; with an ACL it is off).
    hits = sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(
            ("kdns_killer_wirecache_hits_total ", 'kdns_cache_hits_total{cache="replies"}')
        )  # fmt: skip
    )
    wire = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("kdns_killer_wirecache_hits_total ")
    )
    summary = (
        f"{sent_total} queries sent, {len(udp)} answered, {hits:.0f} cache hits ({wire:.0f} "
        "from the wire cache); "
        f"edits applied (seen over TCP): {len(applied)}: {applied[:12]}..."
    )
    assert not stale, f"{len(stale)} stale replies (sent, query, edit, floor): {stale[:10]}; {summary}"  # fmt: skip
    assert not future, f"replies from edits not yet written: {future[:10]}; {summary}"
    # The run tested something: traffic answered throughout, mostly from the wire cache, across
    # many applied edits.
    assert len(udp) >= 0.9 * sent_total, summary
    assert hits >= 0.5 * sent_total, summary
    if wire_cache:
        assert wire >= 0.5 * sent_total, summary
    assert len(applied) >= applied_at_least, summary


def _service_doc(n: int) -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "churn", "namespace": "prod"},
            "spec": {
                "clusterIP": _ip(n),
                "clusterIPs": [_ip(n)],
                "ports": [{"name": "http", "port": 10000 + n, "protocol": "TCP"}],
            },
        },
    ]
    return yaml.safe_dump_all(docs)


def test_killer_serves_no_stale_reply_under_objects_file_churn(tmp_path: Path) -> None:
    """10 rewrites a second of the objects file for 30 s, under traffic: no reply older than
    the last edit kdns applied before the query was sent."""
    objects = tmp_path / "objects"
    objects.mkdir()
    target = objects / "churn.yaml"
    target.write_text(_service_doc(0))
    scratch = tmp_path / "churn.yaml.new"

    def edit(n: int) -> None:
        scratch.write_text(_service_doc(n))
        os.replace(scratch, target)

    with Kdns("--objects", str(objects), "--no-forward", "--killer") as proc:
        run = _churn(proc, edit)
        # Polled every 5 s: about 6 of the 300 edits are applied in 30 s (the first poll may
        # come at any time); 3 is a floor a slow machine still reaches.
        _check(run, proc, applied_at_least=3)


@pytest.mark.parametrize("acl", [False, True], ids=["reply-memo", "wire-cache"])
def test_killer_serves_no_stale_reply_under_api_watch_churn(tmp_path: Path, acl: bool) -> None:
    """10 edits a second through the Kubernetes API watch for 30 s, under traffic: each edit
    reaches kdns at once, and no reply is older than the last edit applied before its query.
    Twice: as configured by default (cluster names are the reply memo's hits), and with an ACL
    (a stage that judges the client turns the memo off: the wire cache holds them)."""
    base = [namespace("prod"), service("prod", "churn", _ip(0), [("http", 10000)])]
    with K8sApi(base, bookmark_interval=0.5) as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")

        def edit(n: int) -> None:
            api.modify(service("prod", "churn", _ip(n), [("http", 10000 + n)]))

        config: list[str] = []
        if acl:
            path = tmp_path / "kdns.toml"
            path.write_text('[acl]\nrules = [{action = "allow", net = ["127.0.0.0/8"]}]\n')
            config = ["--config", str(path)]
        with Kdns("--kubeconfig", str(kubeconfig), "--no-forward", "--killer", *config) as proc:
            deadline = time.monotonic() + 30
            while proc.get("ready")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            run = _churn(proc, edit)
            # Every edit is watched; most are seen over TCP (the probe asks every ~5 ms).
            _check(run, proc, applied_at_least=EDITS // 3, wire_cache=acl)
