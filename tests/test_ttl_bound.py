"""TTLs of forwarded and cached answers never exceed the true remaining time (issue 17, item 4).

The bound, with no slack beyond the rounding a whole-second TTL needs: a record an upstream
answered with TTL ``T`` at time ``t_up`` has ``T - (t - t_up)`` seconds left at time ``t``, so
any reply served at ``t`` must carry a TTL <= ceil(T - (t - t_up)) = T - floor(t - t_up).

End to end, the loopback upstream notes the moment it makes each answer (``t_up``: kdns cannot
have had the answer before it, and the TTL it states is true from then), and the client notes
when it sends each query (``t_send``: kdns cannot have served the reply before it). The served
TTL must then be <= T - floor(t_send - t_up), taking for ``t_up`` the latest answer the
upstream made for that question before the reply arrived (the one most favourable to kdns: it
may have served any answer it had by then). That is the exact bound evaluated at the two
instants the test can see, nothing added: one reply held 0.1 s past the second it was rendered
for, or TTLs counted from when the answer reached kdns rather than from when it was asked for,
fails it as soon as a query lands in the gap. (The client's send time of the query that caused
the fetch is earlier still than ``t_up``; bounding with it would fail a correct server by the
forwarding latency whenever a query falls that close to a second.)

Both modes: standard (the forward cache renders each hit) and killer (the wire cache keeps a
reply until the forward cache's next countdown second), queried one at a time and in bursts of
48 datagrams so the batched recvmmsg path serves many of them. Unit level: the forward cache
with an injected clock on a 10 ms grid, and the forwarder counting from when it asked.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from typing import Any

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from kdns.forward.cache import ResponseCache, cache_key
from kdns.server.forwarding import Forwarder, Route
from kdns.server.wire import Query, Responder
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns

# name -> upstream TTL. All at or above cache.min_ttl (5 by default): below it an entry is
# kept min_ttl seconds and served with TTL 0 once its own has run out (see kdns.forward.cache),
# covered by the unit test below.
TTLS = {
    "five.ttl.test.": 5,
    "seven.ttl.test.": 7,
    "gone.ttl.test.": 6,  # NXDOMAIN: the SOA's TTL and MINIMUM are both 6
    "long.ttl.test.": 4000,  # above cache.success_ttl (3600): served capped, still counted down
}
RECORDS = {(name, "A"): ["192.0.2.1"] for name in TTLS if not name.startswith("gone")}
RUN = 9.0  # seconds of traffic per mode: every short TTL runs out at least once
BURST = 48  # datagrams sent back to back
HOLD = 0.25  # seconds between the upstream making an answer and sending it (see TimedUpstream)


class TimedUpstream(DnsUpstream):
    """DnsUpstream with a TTL per name that notes when it makes each answer."""

    def __init__(self) -> None:
        super().__init__(RECORDS, ttl=300)
        self.made: dict[str, list[float]] = {}
        self._made_lock = threading.Lock()

    def _delay_for(self, data: bytes) -> float:
        """Called as each query arrives: the answer is made now, and sent HOLD later (a
        distant upstream, a busy loop on either side: its TTLs run all that time)."""
        try:
            name = dns.message.from_wire(data).question[0].name.to_text().lower()
        except Exception:
            return HOLD
        with self._made_lock:
            self.made.setdefault(name, []).append(time.monotonic())
        return HOLD

    def _respond(self, data: bytes, transport: str) -> bytes | None:
        try:
            name = dns.message.from_wire(data).question[0].name.to_text().lower()
        except Exception:
            return super()._respond(data, transport)
        self.ttl = TTLS.get(name, 300)  # one server loop: no other answer runs meanwhile
        return super()._respond(data, transport)

    def made_before(self, name: str, moment: float) -> float | None:
        with self._made_lock:
            times = [t for t in self.made.get(name, ()) if t < moment]
        return max(times) if times else None


def _ttls(wire: bytes) -> list[int]:
    """Every record's TTL as sent (one RR per RRset: no merging of differing TTLs)."""
    message = dns.message.from_wire(wire, one_rr_per_rrset=True)
    return [rrset.ttl for section in (message.answer, message.authority) for rrset in section]


def _typed_ttls(wire: bytes) -> list[tuple[str, int]]:
    message = dns.message.from_wire(wire, one_rr_per_rrset=True)
    return [(dns.rdatatype.to_text(rrset.rdtype), rrset.ttl) for rrset in message.answer]


class Sample:
    __slots__ = ("name", "sent", "received", "reply")

    def __init__(self, name: str, sent: float, received: float, reply: bytes) -> None:
        self.name, self.sent, self.received, self.reply = name, sent, received, reply


def _traffic(port: int, seconds: float, seed: int) -> list[Sample]:
    """Single queries at jittered 15-60 ms intervals, with a burst of BURST datagrams every
    ~0.3 s; the same bytes per name (after the ID) so the wire cache can hit."""
    rng = random.Random(seed)
    names = list(TTLS)
    wires = {name: dns.message.make_query(name, "A").to_wire() for name in names}
    samples: list[Sample] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect((LOOPBACK, port))
    sock.settimeout(2.0)
    qid = 0
    end = time.monotonic() + seconds
    next_burst = time.monotonic() + 0.3
    try:
        while time.monotonic() < end:
            burst = time.monotonic() >= next_burst
            if burst:
                next_burst = time.monotonic() + rng.uniform(0.2, 0.4)
            chosen = [rng.choice(names) for _ in range(BURST if burst else 1)]
            pending: dict[int, tuple[str, float]] = {}
            for name in chosen:
                qid = (qid + 1) & 0xFFFF
                wire = qid.to_bytes(2, "big") + wires[name][2:]
                pending[qid] = (name, time.monotonic())
                sock.send(wire)
            while pending:
                reply = sock.recv(65535)
                received = time.monotonic()
                name, sent = pending.pop(int.from_bytes(reply[:2], "big"))
                samples.append(Sample(name, sent, received, reply))
            time.sleep(rng.uniform(0.015, 0.06))
    finally:
        sock.close()
    return samples


def _violations(up: TimedUpstream, samples: list[Sample]) -> list[str]:
    bad = []
    for s in samples:
        made = up.made_before(s.name, s.received)
        assert made is not None, f"{s.name}: answered before the upstream ever answered it"
        ttl = TTLS[s.name]
        bound = ttl - math.floor(s.sent - made)  # ceil(ttl - (sent - made)), exactly
        for served in _ttls(s.reply):
            if served > bound:
                bad.append(
                    f"{s.name} TTL {served} > {bound}: sent {s.sent - made:.3f}s after the "
                    f"upstream made its answer (upstream TTL {ttl})"
                )
    return bad


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_served_ttls_never_exceed_the_true_remaining_time(mode: str) -> None:
    args = ["--killer"] if mode == "killer" else []
    with (
        TimedUpstream() as up,
        Kdns(
            "--objects", str(FIXTURES / "cluster.yaml"), "--upstream", up.upstream("udp"), *args
        ) as proc,
    ):
        samples = _traffic(proc.port, RUN, seed=17)
    assert len(samples) > 1000
    bad = _violations(up, samples)
    assert not bad, f"{len(bad)} of {len(samples)} replies over the bound:\n" + "\n".join(bad[:20])
    for name, ttl in TTLS.items():
        mine = [s for s in samples if s.name == name]
        served = {min(_ttls(s.reply)) for s in mine}
        # The cache was used and counted down (not one fetch per query, not frozen).
        assert len(served) >= min(ttl, 5), (name, sorted(served))
        fetches = len(up.made.get(name, ()))
        # (Standard mode asks again for each query that arrives while a fetch is on its way:
        # a burst at expiry costs a dozen.)
        assert 1 <= fetches <= len(mine) // 4, (name, fetches, len(mine))
        # Every phase of the second was probed: a reply held past its second would be caught.
        phases = {
            int(((s.sent - (up.made_before(name, s.received) or 0.0)) % 1.0) * 10) for s in mine
        }
        assert phases == set(range(10)), (name, sorted(phases))
    # Above cache.success_ttl only the replies that brought the answer (the upstream's, as is).
    long = [s for s in samples if s.name == "long.ttl.test." and max(_ttls(s.reply)) > 3600]
    assert len(long) <= len(up.made["long.ttl.test."])


# ---------------------------------------------------------------------- unit level


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _response(name: str, ttl: int, qid: int = 0) -> bytes:
    query = dns.message.make_query(name, "A")
    query.id = qid
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", "192.0.2.1", "192.0.2.2"))
    response.answer.append(dns.rrset.from_text(name, ttl + 50, "IN", "TXT", '"longer"'))
    return response.to_wire()


def _key(name: str) -> bytes:
    wire = dns.message.make_query(name, "A").to_wire()
    return cache_key(wire[12:].lower())


@pytest.mark.parametrize("ttl", [1, 5, 10, 3600, 7200])
def test_cache_countdown_on_a_10ms_grid(ttl: int) -> None:
    """Every get: TTLs <= ceil(remaining); the reply's validity (``last_tick``, the wire
    cache's deadline) ends before that ceiling drops; nothing is served past the entry."""
    clock = Clock()
    cache = ResponseCache(clock=clock, min_ttl=5)
    key = _key("grid.test.")
    stored = clock.t
    assert cache.put(key, _response("grid.test.", ttl), now=stored)
    life = max(5, min(ttl, 3600))  # min_ttl below, success_ttl above
    # Every 10 ms of the first 12 s and the last 3 s (and 2 s beyond): the whole life of a
    # short entry, both ends of a long one.
    for step in sorted({*range(1200), *range((life - 3) * 100, (life + 2) * 100)}):
        clock.t = stored + step / 100 + 0.0001  # off the exact second: the general case
        elapsed = clock.t - stored
        reply = cache.get(key, b"\x00\x01")
        if elapsed >= life:
            assert reply is None, elapsed
            continue
        assert reply is not None, elapsed
        # The same bytes may be reused until last_tick: still within the bound then.
        assert clock.t < cache.last_tick <= stored + life
        latest = cache.last_tick - 1e-9
        for rdtype, served in _typed_ttls(reply):
            # What the upstream said, capped at the entry's life (success_ttl): the A records
            # and the longer-lived TXT count down each from its own.
            own = min(ttl if rdtype == "A" else ttl + 50, life)
            for moment in (elapsed, latest - stored):
                # Rounded up to the second and no more; 0 (never negative) once a TTL below
                # min_ttl has run out.
                assert served <= max(0, math.ceil(own - moment)), (rdtype, moment, served)
            assert served == max(0, own - math.floor(elapsed))  # not needlessly short either


def test_cache_countdown_exact_seconds() -> None:
    """At exactly k seconds the TTL is T - k (the ceiling of an integer is itself)."""
    clock = Clock()
    cache = ResponseCache(clock=clock)
    key = _key("exact.test.")
    assert cache.put(key, _response("exact.test.", 10), now=clock.t)
    for k in range(10):
        reply = cache.get(key, b"\x00\x01", now=1000.0 + k)
        assert reply is not None
        assert min(_ttls(reply)) == 10 - k
        assert cache.last_tick == 1000.0 + k + 1
    assert cache.get(key, b"\x00\x01", now=1010.0) is None


class _SlowGroup:
    """A forward group whose answer comes back ``latency`` seconds (of the fake clock) after
    it was asked for, made by the upstream at once."""

    def __init__(self, clock: Clock, ttl: int, latency: float) -> None:
        self.clock, self.ttl, self.latency = clock, ttl, latency
        self.timeout = 1.0
        self.asked: list[float] = []

    async def query(self, wire: bytes, *, tcp: bool = False) -> bytes:
        self.asked.append(self.clock.t)
        message = dns.message.from_wire(wire)
        self.clock.t += self.latency  # the answer arrives (and is read) this much later
        return _response(message.question[0].name.to_text(), self.ttl, message.id)

    async def close(self) -> None:
        pass


class _Replier:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_reply(self, response: bytes, peer: Any, query: Any = None) -> None:
        self.sent.append(response)


def _query(responder: Responder, name: str) -> Query:
    data = dns.message.make_query(name, "A").to_wire()
    qend = len(data)
    wire_name = data[12 : qend - 4].lower()
    return Query(data, wire_name, 1, qend, None, 0, responder)


@pytest.mark.parametrize("path", ["client", "prefetch"])
def test_forwarder_counts_ttls_from_when_it_asked(path: str) -> None:
    """An answer that takes 0.8 s to come back (slow upstream, busy event loop) is counted
    down from when it was asked for: 1.0 s after asking, 9 s of a 10 s TTL remain at most."""

    async def run() -> None:
        clock = Clock()
        cache = ResponseCache(clock=clock)
        group = _SlowGroup(clock, ttl=10, latency=0.8)
        forwarder = Forwarder([Route(".", group)], cache)  # type: ignore[arg-type]
        responder = Responder({}, lambda name, qtype, qclass: None)  # type: ignore[arg-type,return-value]
        until: list[float] = []
        forwarder.on_prefetched = lambda name, qtype, at: until.append(at)
        if path == "client":
            query = _query(responder, "slow.test.")
            assert forwarder.handle(query, _Replier(), ("127.0.0.1", 1)) is None
        else:
            assert forwarder.prefetch(_query(responder, "slow.test.").name, 1)
        await asyncio.gather(*forwarder.tasks)
        asked = group.asked[0]
        assert cache.expires(_key("slow.test.")) == asked + 10
        if until:
            assert until == [asked + 10]
        clock.t = asked + 1.0
        hit = forwarder.handle(_query(responder, "slow.test."), _Replier(), ("127.0.0.1", 1))
        assert isinstance(hit, bytes)
        assert max(t for t in _ttls(hit) if t <= 10) == 9
        assert responder.keep == asked + 2.0  # the wire cache may reuse it until then, no later

    asyncio.run(run())
