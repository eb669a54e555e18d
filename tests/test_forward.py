"""kdns.forward.upstreams against loopback upstreams (tests/dnsupstream.py): UDP, TCP and DNS over
TLS, ID and case restoring, TC retry, pipelining, failover and health checks, policies,
max_concurrent and timeouts. Every packet goes to 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import trustme
from dnsupstream import HOLD, DnsUpstream

from kdns.forward.upstreams import (
    LATENCY_BUCKETS,
    ForwardError,
    ForwardGroup,
    Overloaded,
    Upstream,
    question_end,
)

RECORDS = {
    ("example.com.", "A"): ["192.0.2.1"],
    ("example.com.", "AAAA"): ["2001:db8::1"],
    ("slow.example.", "A"): ["192.0.2.9"],
    ("big.example.", "TXT"): [f'"{i:02d}{"x" * 200}"' for i in range(10)],
}


def make_query(
    name: str = "ExAmPlE.CoM.", rtype: str = "A", qid: int = 0x1234, use_edns: bool = True
) -> bytes:
    return dns.message.make_query(name, rtype, id=qid, use_edns=use_edns).to_wire()


def addresses(reply: bytes) -> list[str]:
    return sorted(rd.to_text() for rrset in dns.message.from_wire(reply).answer for rd in rrset)


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA) -> Iterator[DnsUpstream]:
    with DnsUpstream(RECORDS, tls=True, ca=ca) as up:
        yield up


@pytest.fixture
def server2(ca: trustme.CA) -> Iterator[DnsUpstream]:
    with DnsUpstream(RECORDS, tls=True, ca=ca) as up:
        yield up


# --- transports ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_forwards_over_each_transport(server: DnsUpstream, transport: str) -> None:
    query = make_query()
    async with ForwardGroup([server.upstream(transport)], tls_ca_file=server.ca_file) as group:
        reply = await group.query(query)
    assert reply[:2] == b"\x12\x34"  # the client's ID
    qend = question_end(query)
    assert reply[12:qend] == query[12:qend]  # the client's question bytes, letter case and all
    message = dns.message.from_wire(reply)
    assert message.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == ["192.0.2.1"]
    assert server.names(transport) == ["ExAmPlE.CoM."]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_forwards_on_uvloop(server: DnsUpstream, transport: str) -> None:
    import uvloop  # a dependency (pyproject.toml); kdns serves on it: its transports differ

    server.truncate_udp = True  # the UDP case goes on to TCP as well

    async def main() -> list[bytes]:
        spec = server.upstream(transport)
        async with ForwardGroup([spec], tls_ca_file=server.ca_file) as group:
            return await asyncio.gather(*(group.query(make_query(qid=i)) for i in range(10)))

    replies = uvloop.run(main())
    assert [r[:2] for r in replies] == [i.to_bytes(2, "big") for i in range(10)]
    assert all(addresses(reply) == ["192.0.2.1"] for reply in replies)


async def test_upstream_query_ids_are_random(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        for _ in range(8):
            assert (await group.query(make_query(qid=0x1234)))[:2] == b"\x12\x34"
    ids = {q.id for q in server.queries}
    assert len(ids) > 1  # never the client's ID on the wire, a fresh one per query
    assert ids != {0x1234}


async def test_nxdomain_and_nodata_pass_through(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        nx = dns.message.from_wire(await group.query(make_query("nope.example.")))
        nodata = dns.message.from_wire(await group.query(make_query("slow.example.", "AAAA")))
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer


async def test_dot_certificate_name_mismatch_fails(server: DnsUpstream) -> None:
    spec = server.upstream("tls", server_name="wrong.test")
    async with ForwardGroup([spec], tls_ca_file=server.ca_file, timeout=1.0) as group:
        with pytest.raises(ForwardError, match="(?i)certificate"):
            await group.query(make_query())
        assert group.upstreams[0].stats.failures >= 1
    assert server.queries == []  # nothing was sent over an unverified connection


async def test_dot_system_cas_do_not_trust_the_test_ca(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("tls")], timeout=1.0) as group:
        with pytest.raises(ForwardError):
            await group.query(make_query())
    assert server.queries == []


async def test_truncated_udp_reply_is_retried_over_tcp_to_the_same_server(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    server.truncate_udp = True
    async with ForwardGroup(
        [server.upstream("udp"), server2.upstream("udp")], policy="sequential"
    ) as group:
        reply = await group.query(make_query())
        stats = group.upstreams[0].stats
    message = dns.message.from_wire(reply)
    assert not message.flags & dns.flags.TC
    assert addresses(reply) == ["192.0.2.1"]
    assert [(q.name, q.transport) for q in server.queries] == [
        ("ExAmPlE.CoM.", "udp"),
        ("ExAmPlE.CoM.", "tcp"),
    ]
    assert server2.queries == []
    assert (stats.truncated, stats.requests, stats.failures) == (1, 2, 0)


async def test_large_answer_truncated_by_size_is_fetched_over_tcp(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        reply = await group.query(make_query("big.example.", "TXT", use_edns=False))
    assert len(dns.message.from_wire(reply).answer[0]) == 10
    assert len(reply) > 512  # fitting it to the client is the caller's job
    assert [q.transport for q in server.queries] == ["udp", "tcp"]


async def test_tcp_client_skips_udp(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        assert addresses(await group.query(make_query(), tcp=True)) == ["192.0.2.1"]
    assert [q.transport for q in server.queries] == ["tcp"]


async def test_spoofed_udp_replies_are_ignored(server: DnsUpstream) -> None:
    server.spoof = True  # a reply with a wrong ID and one with a wrong question come first
    async with ForwardGroup([server.upstream("udp")]) as group:
        reply = await group.query(make_query())
        assert addresses(reply) == ["192.0.2.1"]
        assert group.upstreams[0].stats.mismatched == 2


# --- connections -----------------------------------------------------------------------------


async def test_dot_pipelines_concurrent_queries_on_few_connections(server: DnsUpstream) -> None:
    async with ForwardGroup(
        [server.upstream("tls")], tls_ca_file=server.ca_file, pool_size=2
    ) as group:
        names = ["Example.com." if i % 2 else "EXAMPLE.com." for i in range(50)]
        replies = await asyncio.gather(
            *(group.query(make_query(name, qid=i)) for i, name in enumerate(names))
        )
        for i, (name, reply) in enumerate(zip(names, replies, strict=True)):
            assert reply[:2] == i.to_bytes(2, "big")
            assert dns.message.from_wire(reply).question[0].name.to_text() == name
            assert addresses(reply) == ["192.0.2.1"]
        upstream = group.upstreams[0]
        assert upstream.stats.connects <= 2
        assert upstream.connections <= 2
    assert len(server.queries) == 50
    assert server.connections["tls"] <= 2


async def test_pipelined_replies_may_come_back_out_of_order(server: DnsUpstream) -> None:
    server.delays = {"slow.example.": HOLD}  # answered only once released
    async with ForwardGroup([server.upstream("tcp")], pool_size=1, timeout=60) as group:
        slow = asyncio.create_task(group.query(make_query("slow.example.", qid=1)))
        await wait_for(lambda: server.held == 1)
        fast = await group.query(make_query(qid=2))
        assert not slow.done()  # the second reply came back first on the one connection
        server.release.set()
        assert addresses(await slow) == ["192.0.2.9"]
    assert addresses(fast) == ["192.0.2.1"]
    assert server.connections["tcp"] == 1


async def test_idle_connection_expires_then_reconnects(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("tcp")], expire=0.2) as group:
        upstream = group.upstreams[0]
        await group.query(make_query())
        await group.query(make_query())
        assert upstream.connections == 1 and server.connections["tcp"] == 1  # reused
        await wait_for(lambda: upstream.connections == 0)
        await group.query(make_query())
    assert server.connections["tcp"] == 2


async def test_reconnects_after_the_server_restarts(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("tls")], tls_ca_file=server.ca_file) as group:
        await group.query(make_query())
        server.stop()
        server.start()
        # The client has not seen the old connection close yet: the query goes out on it,
        # is lost, and is sent again on a fresh connection within the same attempt.
        assert addresses(await group.query(make_query())) == ["192.0.2.1"]
        stats = group.upstreams[0].stats
        assert (stats.connects, stats.failures) == (2, 0)
    assert server.connections["tls"] == 2


# --- failover and health ---------------------------------------------------------------------


async def test_failover_from_a_silent_upstream_and_health_check_recovery(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    server.drop = True
    async with ForwardGroup(
        [server.upstream("udp"), server2.upstream("udp")],
        policy="sequential",
        timeout=60,
        attempt_timeout=0.2,
        health_check=0.1,
    ) as group:
        first = group.upstreams[0]
        for n in range(2):  # max_fails = 2 timeouts on the first upstream
            assert addresses(await group.query(make_query())) == ["192.0.2.1"]
            # the first attempt timed out (its 0.2 s), then the second upstream answered
            assert first.stats.timeouts == n + 1
        assert first.down and group.healthy()
        assert first.stats.timeouts == 2
        await group.query(make_query())
        assert server.names() == ["ExAmPlE.CoM."] * 2  # straight to the healthy one
        assert server2.names() == ["ExAmPlE.CoM."] * 3

        server.drop = False  # it comes back: the `. IN NS` health check notices
        await wait_for(lambda: not first.down)
        health = [q for q in server.queries if q.name == "."]
        assert health and all(q.type == "NS" and q.transport == "udp" for q in health)
        assert first.stats.health_checks >= 1
        await group.query(make_query())
        assert server.names() == ["ExAmPlE.CoM."] * 3  # sequential: the first one again


async def test_failover_from_a_stopped_tcp_upstream_is_immediate(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    server.stop()
    async with ForwardGroup(
        [server.upstream("tcp"), server2.upstream("tcp")],
        policy="sequential",
        health_check=0.1,
        timeout=120,
        attempt_timeout=60,
    ) as group:
        first = group.upstreams[0]
        started = time.perf_counter()
        for _ in range(3):
            assert addresses(await group.query(make_query())) == ["192.0.2.1"]
        # Connection refused needs no timeout: far under one 60 s attempt timeout.
        assert time.perf_counter() - started < 30
        assert first.stats.timeouts == 0
        assert first.down and first.stats.failures == 2
        server.start()  # same port
        await wait_for(lambda: not first.down)
        await group.query(make_query())
    assert server.names("tcp") == ["ExAmPlE.CoM."]
    assert server2.names("tcp") == ["ExAmPlE.CoM."] * 3


async def test_all_upstreams_down_are_still_tried(server: DnsUpstream) -> None:
    server.drop = True
    async with ForwardGroup(
        [server.upstream("udp")], timeout=0.2, attempt_timeout=0.2, health_check=60
    ) as group:
        for _ in range(2):
            with pytest.raises(ForwardError, match="no reply"):
                await group.query(make_query())
        assert not group.healthy()
        server.drop = False  # the health check would take a minute: the query tries anyway
        assert addresses(await group.query(make_query())) == ["192.0.2.1"]
        assert group.stats.all_down == 1
        assert group.healthy()  # an answer marks it up


async def test_servfail_is_an_answer_not_a_failover(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    server.servfail = True
    async with ForwardGroup(
        [server.upstream("udp"), server2.upstream("udp")], policy="sequential"
    ) as group:
        for _ in range(3):
            reply = await group.query(make_query())
            assert dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
        first = group.upstreams[0]
        assert not first.down and first.stats.failures == 0
        assert first.stats.rcodes[dns.rcode.SERVFAIL] == 3
    assert server2.queries == []


async def test_timeout_raises_forward_error(server: DnsUpstream) -> None:
    server.drop = True
    async with ForwardGroup([server.upstream("udp")], timeout=0.3) as group:
        started = time.perf_counter()
        with pytest.raises(ForwardError):
            await group.query(make_query())
        elapsed = time.perf_counter() - started
        assert group.stats.failed == 1
        assert group.upstreams[0].stats.timeouts == 1
    assert elapsed > 0.25  # it waited the timeout (an upper bound is a benchmark's business)
    assert len(server.queries) == 1  # the whole 0.3 s went to the one attempt


async def test_refused_tcp_connections_fail(server: DnsUpstream) -> None:
    server.refuse_tcp = True
    async with ForwardGroup([server.upstream("tcp")], timeout=0.5) as group:
        with pytest.raises(ForwardError):
            await group.query(make_query())
    assert server.connections["tcp"] >= 1 and server.queries == []


# --- policies --------------------------------------------------------------------------------


async def _spread(policy: str, count: int, *servers: DnsUpstream) -> list[int]:
    async with ForwardGroup([s.upstream("udp") for s in servers], policy=policy) as group:
        for _ in range(count):
            await group.query(make_query())
    return [len(s.queries) for s in servers]


async def test_sequential_policy_always_tries_the_first(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    assert await _spread("sequential", 10, server, server2) == [10, 0]


async def test_round_robin_policy_alternates(server: DnsUpstream, server2: DnsUpstream) -> None:
    async with ForwardGroup(
        [server.upstream("udp"), server2.upstream("udp")], policy="round_robin"
    ) as group:
        seen = []
        for _ in range(6):
            before = len(server.queries)
            await group.query(make_query())
            seen.append("first" if len(server.queries) > before else "second")
    assert seen in (["first", "second"] * 3, ["second", "first"] * 3)


async def test_random_policy_spreads(server: DnsUpstream, server2: DnsUpstream) -> None:
    first, second = await _spread("random", 100, server, server2)
    assert first + second == 100
    assert 20 <= first <= 80  # binomial(100, 0.5): outside this about once in 10^9


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        ForwardGroup(["127.0.0.1"], policy="least_loaded")
    with pytest.raises(ValueError):
        ForwardGroup([])
    with pytest.raises(ValueError):
        ForwardGroup(["not-an-ip"])
    with pytest.raises(ValueError):
        question_end(b"\x00" * 5)


async def test_not_a_query_is_a_value_error(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        with pytest.raises(ValueError):
            await group.query(b"garbage")
        response = dns.message.make_response(dns.message.make_query("example.com.", "A"))
        with pytest.raises(ValueError):
            await group.query(response.to_wire())
    assert server.queries == []


# --- concurrency -----------------------------------------------------------------------------


async def test_max_concurrent_rejects_at_once(server: DnsUpstream) -> None:
    server.delay = HOLD  # the first two stay in flight until released
    async with ForwardGroup([server.upstream("udp")], max_concurrent=2, timeout=60) as group:
        first = [asyncio.create_task(group.query(make_query(qid=i))) for i in range(2)]
        await wait_for(lambda: server.held == 2)
        with pytest.raises(Overloaded):
            await group.query(make_query())
        # at once: rejected while both slots are still taken, not after one freed
        assert not any(task.done() for task in first)
        server.release.set()
        assert isinstance(Overloaded(), ForwardError)
        for task in first:
            assert addresses(await task) == ["192.0.2.1"]
        assert group.stats.overloaded == 1
        assert group.inflight == 0
        await group.query(make_query())  # room again


async def test_a_slow_upstream_does_not_delay_a_fast_one(
    server: DnsUpstream, server2: DnsUpstream
) -> None:
    server.delay = HOLD  # the slow upstream answers only once released
    slow_group = ForwardGroup([server.upstream("udp")], timeout=60, attempt_timeout=60)
    fast_group = ForwardGroup([server2.upstream("tcp")])
    async with slow_group, fast_group:
        slow = [asyncio.create_task(slow_group.query(make_query(qid=i))) for i in range(20)]
        await wait_for(lambda: server.held == 20)
        fast = await asyncio.gather(*(fast_group.query(make_query(qid=i)) for i in range(20)))
        assert not any(task.done() for task in slow)
        assert all(addresses(reply) == ["192.0.2.1"] for reply in fast)
        server.release.set()
        assert all(addresses(reply) == ["192.0.2.1"] for reply in await asyncio.gather(*slow))


# --- stats and lifecycle ---------------------------------------------------------------------


async def test_stats_count_requests_and_latency(server: DnsUpstream) -> None:
    async with ForwardGroup([server.upstream("udp")]) as group:
        for _ in range(5):
            await group.query(make_query())
        stats = group.upstreams[0].stats
    assert (stats.requests, stats.failures, stats.rcodes[0]) == (5, 0, 5)
    assert stats.latency_count == 5 == sum(stats.latency_buckets)
    assert 0 < stats.latency_sum < 5
    histogram = stats.histogram()
    assert len(histogram) == len(LATENCY_BUCKETS) + 1 == 17
    assert histogram[0][0] == 0.00025 and histogram[-1] == (float("inf"), 5)
    assert [count for _, count in histogram] == sorted(count for _, count in histogram)


async def test_upstream_alone_and_closing(server: DnsUpstream) -> None:
    upstream = Upstream(server.upstream("tcp"))
    assert str(upstream) == f"tcp://127.0.0.1:{server.port}"
    reply = await upstream.query(make_query(qid=7), timeout=1.0)
    assert reply[:2] == b"\x00\x07" and addresses(reply) == ["192.0.2.1"]
    assert upstream.connections == 1
    await upstream.close()
    assert upstream.connections == 0
    group = ForwardGroup([upstream])
    await group.close()
    with pytest.raises(ForwardError):
        await group.query(make_query())


def test_forward_does_not_import_kubernetes() -> None:
    code = (
        "import sys, kdns.forward.upstreams; "
        "bad = [m for m in sys.modules if m.startswith(('kdns.k8s', 'kubernetes'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dnsupstream_from_sync_code(server: DnsUpstream) -> None:
    query = dns.message.make_query("EXAMPLE.com.", "A")
    for ask in (dns.query.udp, dns.query.tcp):
        reply = ask(query, "127.0.0.1", port=server.port, timeout=2)
        assert reply.question[0].name.to_text() == "EXAMPLE.com."
        assert [rd.to_text() for rd in reply.answer[0]] == ["192.0.2.1"]
    assert [(q.name, q.transport) for q in server.queries] == [
        ("EXAMPLE.com.", "udp"),
        ("EXAMPLE.com.", "tcp"),
    ]


def test_forward_allow_default_is_private_networks_only() -> None:
    """Hardening 9 (BIND allow-recursion localhost; localnets): loopback, RFC 1918, RFC 6598,
    ULA and link-local may forward; the public internet may not."""
    from kdns.dns.networks import PRIVATE, Networks

    allow = Networks(PRIVATE)
    for ip in ("127.0.0.1", "10.244.1.7", "172.20.0.1", "192.168.1.20", "100.64.3.4", "fd00::5", "169.254.20.10", "fe80::1", "::1", "::ffff:10.0.0.1"):  # fmt: skip
        assert allow.allowed(ip), ip
    for ip in ("8.8.8.8", "203.0.113.9", "2001:db8::1", "1.1.1.1"):
        assert not allow.allowed(ip), ip
