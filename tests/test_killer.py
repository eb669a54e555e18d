"""Killer mode's parts on their own: the wire cache (bounds, invalidation, exact counts), the
Markov prefetcher (successors, shapes, repeats, the share cap), and the transport in a real
event loop against a real registry (a change is never answered from the old bytes)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.app import App
from kdns.config import Config, build_config
from kdns.dns import names
from kdns.killer.markov import Prefetcher, Successors, shape_of
from kdns.model import Service


def query(name: str, rdtype: str = "A", qid: int = 7) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return q.to_wire()


def reply_for(wire: bytes, rcode: int = 0, answers: int = 1, authority: int = 0) -> bytes:
    """A fake reply: the query's header turned into a response with the given counts."""
    head = wire[:2] + bytes((0x84, rcode)) + b"\x00\x01"
    counts = answers.to_bytes(2, "big") + authority.to_bytes(2, "big") + b"\x00\x00"
    return head + counts + wire[12:] + b"\xc0\x0c" + b"x" * 20


# ---------------------------------------------------------------- wire cache


# The wire cache on its own: tests/test_wirecache.py.


# ---------------------------------------------------------------- Markov model


def test_successors_decay_and_stay_bounded() -> None:
    model = Successors(max_keys=3, max_next=2, half_life=10.0)
    for _ in range(4):
        model.learn("a", "b", now=0.0)
    model.learn("a", "c", now=0.0)
    assert model.likely("a", 0.5, now=0.0) == ["b"]
    assert model.likely("a", 0.5, now=100.0) == []  # decayed below one observation
    for key in "wxyz":
        model.learn(key, "b", now=0.0)
    assert len(model) == 3


def test_shape_of_a_search_path_step() -> None:
    before = names.to_wire("api.example.com.team.svc.cluster.local")
    after = names.to_wire("api.example.com.svc.cluster.local")
    shape = shape_of(before, after)
    assert shape is not None
    assert shape[0] == names.to_wire("team.svc.cluster.local")
    assert shape[1] == names.to_wire("svc.cluster.local")
    last = shape_of(
        names.to_wire("api.example.com.corp.internal"), names.to_wire("api.example.com")
    )
    assert last is not None and last[1] == b"\x00"
    assert shape_of(names.to_wire("a.x"), names.to_wire("b.x")) is None  # no shared stem


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SEARCH = ("team.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.internal", "")


def walk(stem: str) -> list[bytes]:
    return [query(f"{stem}.{s}".rstrip(".")) for s in SEARCH]


def make_prefetcher(clock: FakeClock, expiry: dict[bytes, float] | None = None) -> tuple[Prefetcher, list[bytes], list[bytes]]:  # fmt: skip
    rendered: list[bytes] = []
    fetched: list[bytes] = []
    expiries = expiry if expiry is not None else {}

    def is_ours(name: bytes) -> bool:
        return name.endswith(names.to_wire("cluster.local"))

    def fetch(name: bytes, qtype: int) -> bool:
        fetched.append(name)
        return True

    prefetcher = Prefetcher(
        is_ours=is_ours,
        render=lambda name, qtype: rendered.append(name),
        fetch=fetch,
        expiry=lambda name, qtype: expiries.get(name, 0.0),
        upstream_queries=lambda: 1000,
        search_domains=(names.to_wire("corp.internal"),),  # the node's, from resolv.conf
        clock=clock,
    )
    return prefetcher, rendered, fetched


def ask(prefetcher: Prefetcher, clock: FakeClock, wire: bytes, client: bytes = b"c1") -> None:
    ours = b"cluster" in wire.lower()
    prefetcher.observe(client, wire, 3 if ours or b"corp" in wire else 0, not ours)
    prefetcher.run()
    clock.now += 0.001


def test_a_walk_is_predicted_from_its_first_step_for_a_new_name() -> None:
    """The shape of a search-path walk, learned from one name, predicts another's steps:
    the cluster ones are rendered, the external ones fetched."""
    clock = FakeClock()
    prefetcher, rendered, fetched = make_prefetcher(clock)
    for wire in walk("api.example.com"):
        ask(prefetcher, clock, wire)
    rendered.clear()
    fetched.clear()
    ask(prefetcher, clock, walk("db.example.org")[0], client=b"c2")
    assert names.to_wire("db.example.org.svc.cluster.local") in rendered
    assert names.to_wire("db.example.org.cluster.local") in rendered
    assert names.to_wire("db.example.org.corp.internal") in fetched
    assert names.to_wire("db.example.org") in fetched
    assert prefetcher.issued == 2


def test_a_repeated_name_is_refreshed_just_before_it_is_asked_again() -> None:
    """Asked every 15 s with a 10 s TTL: after one ask, refreshed once as it expires; once
    the gap is known, refreshed a little before the next ask (not at every expiry, which
    would cost 1.5 upstream queries per ask)."""
    clock = FakeClock()
    start = clock.now
    expiry: dict[bytes, float] = {}
    prefetcher, _, fetched = make_prefetcher(clock, expiry)
    name = names.to_wire("api.example.com")
    wire = query("api.example.com")
    expiry[name] = start + 10
    ask(prefetcher, clock, wire)

    def run_until(when: float) -> None:
        while clock.now < when:
            clock.now = min(when, clock.now + 0.05)
            prefetcher.run()

    run_until(start + 9.4)
    assert fetched == []  # the answer is still good
    run_until(start + 9.6)
    assert fetched == [name]  # refreshed as it expires, on the strength of one ask
    expiry[name] = start + 19.6
    prefetcher.fetched(name, 1, expiry[name])
    run_until(start + 15)
    ask(prefetcher, clock, wire)  # asked again: the refresh was used, the gap is 15 s
    assert prefetcher.used == 1
    run_until(start + 26.9)
    assert fetched == [name]  # next ask due at 30 s; refresh 3 s (a fifth of the gap) early
    run_until(start + 27.1)
    assert fetched == [name, name]
    assert prefetcher.counters()["precision"] == 1.0


def test_unused_prefetches_are_wasted_and_capped_by_the_share() -> None:
    clock = FakeClock()
    prefetcher, _, fetched = make_prefetcher(clock)
    prefetcher.upstream_queries = lambda: 10
    prefetcher.share = 0.5
    for wire in walk("api.example.com"):
        ask(prefetcher, clock, wire)
    for i in range(40):
        ask(prefetcher, clock, walk(f"n{i}.example.com")[0], client=b"c%d" % i)
    # Before any history, half of what is pending is expected to go unused: that expected
    # waste stays within share x upstream queries (with a small allowance to start learning).
    assert (prefetcher.issued - prefetcher.used) * 0.5 <= max(8, 0.5 * 10) + 0.5
    assert prefetcher.skipped > 0
    for question in list(prefetcher._pending):
        prefetcher.fetched(question[:-4], 1, clock.now + 1)
    clock.now += 2
    prefetcher.run()
    assert prefetcher.wasted == prefetcher.issued


# ---------------------------------------------------------------- in a real event loop


def _udp_ask(sock: socket.socket, port: int, wire: bytes) -> dns.message.Message:
    sock.sendto(wire, ("127.0.0.1", port))
    data, _ = sock.recvfrom(4096)
    return dns.message.from_wire(data)


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("cache", ["reply-memo", "wire-cache"])
async def test_a_service_edit_is_never_answered_from_the_old_bytes(batched: bool, cache: str, tmp_path: Path) -> None:  # fmt: skip
    """Issue: a registry change invalidates the entries it affects before the next query is
    read. Ask, change the Service in the registry, ask at once: the new address. Cluster
    names are the reply memo's hits by default; with an ACL (the memo is off) the wire
    cache's."""
    from kdns.server import udp as killer_udp

    path = tmp_path / "kdns.toml"
    acl = '[acl]\nrules = [{action = "allow", net = ["127.0.0.0/8"]}]\n'
    path.write_text(acl if cache == "wire-cache" else "")
    config = build_config(str(path), {}, {"demo": True, "killer": True, "forward": False, "listen": ["127.0.0.1:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off"})  # fmt: skip
    saved = killer_udp.LIBC
    if not batched:
        killer_udp.LIBC = None
    try:
        app, port = await _started(config)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        name = "web.shop.svc.cluster.local"
        ask = lambda: loop.run_in_executor(None, _udp_ask, sock, port, query(name))  # noqa: E731
        first = await ask()
        assert [r.to_text() for rr in first.answer for r in rr] == ["10.96.10.20"]
        assert (await ask()).answer == first.answer  # now a cache hit
        assert app.killer is not None
        if cache == "wire-cache":
            assert app.killer.wire.counters()["hits"] >= 1
        else:
            assert app.stats.memo_hits >= 1 and app.killer.wire.counters()["hits"] == 0
        old = app.registry.services[("shop", "web")]
        app.registry.upsert(old._replace(cluster_ips=("10.96.10.99",)) if isinstance(old, Service) else old)  # fmt: skip
        after = await ask()
        assert [r.to_text() for rr in after.answer for r in rr] == ["10.96.10.99"]
        app.registry.delete("Service", ("shop", "web"))
        assert (await ask()).rcode() == dns.rcode.NXDOMAIN
        sock.close()
        await app.listeners.close_all()
    finally:
        killer_udp.LIBC = saved


# ---------------------------------------------------------------- review findings


def _config(**extra: object) -> Config:
    flags: dict[str, object] = {"demo": True, "killer": True, "forward": False, "listen": ["127.0.0.1:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off"}  # fmt: skip
    flags.update(extra)
    return build_config(None, {}, flags)


async def _started(config: Config) -> tuple[App, int]:
    app = App(config)
    await app.start_source()
    listeners = await app.listeners.bind(config.listen[0])
    return app, listeners[0].port


async def _ask_from(port: int, name: str, source: str = "127.0.0.1") -> dns.message.Message:
    loop = asyncio.get_running_loop()
    q = dns.message.make_query(name, "A")
    return await loop.run_in_executor(
        None, lambda: dns.query.udp(q, "127.0.0.1", port=port, source=source, timeout=3)
    )


async def test_one_unsendable_reply_costs_only_itself() -> None:
    """sendmmsg stops at the first message it cannot send (here a spoofed source port 0):
    the other replies of the batch still go out."""
    import struct

    from kdns.server import udp as killer_udp

    if killer_udp.LIBC is None:
        pytest.skip("no recvmmsg/sendmmsg here")
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        pytest.skip("needs CAP_NET_RAW to spoof a source port")
    app, port = await _started(_config())
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
    wire = query("web.shop.svc.cluster.local")
    try:
        for client in clients:
            client.bind(("127.0.0.1", 0))
            client.settimeout(0.5)
        clients[0].sendto(wire, ("127.0.0.1", port))
        raw.sendto(struct.pack("!HHHH", 0, port, 8 + len(wire), 0) + wire, ("127.0.0.1", 0))
        for client in clients[1:]:
            client.sendto(wire, ("127.0.0.1", port))
        await asyncio.sleep(0.3)  # one wake-up reads all six
        answered = []
        for index, client in enumerate(clients):
            try:
                client.recvfrom(4096)
                answered.append(index)
            except TimeoutError:
                pass
        assert answered == [0, 1, 2, 3, 4]
    finally:
        raw.close()
        for client in clients:
            client.close()
        await app.listeners.close_all()


async def test_a_reload_that_narrows_forward_allow_reaches_cached_replies() -> None:
    import dataclasses

    from tests.dnsupstream import DnsUpstream

    with DnsUpstream({("www.example.org.", "A"): ["192.0.2.1"]}) as up:
        config = _config(forward=True, upstreams=[up.upstream("udp")], forward_allow=["127.0.0.0/8"])  # fmt: skip
        app, port = await _started(config)
        try:
            for _ in range(3):  # forwarded, then from the forward cache, then a wire-cache hit
                assert (await _ask_from(port, "www.example.org")).answer
            await app.apply(dataclasses.replace(config, forward_allow=("127.0.0.2/32",)), "test")
            for _ in range(3):
                await _ask_from(port, "www.example.org", "127.0.0.2")
            refused = await _ask_from(port, "www.example.org", "127.0.0.1")
            assert refused.rcode() == dns.rcode.REFUSED
        finally:
            await app.listeners.close_all()


async def test_chased_externalname_replies_follow_forward_allow() -> None:
    """An ExternalName's upstream addresses depend on whether the client may forward: such
    replies are never cached, in either direction."""
    from tests.dnsupstream import DnsUpstream

    records = {("www.example.org.", "A"): ["192.0.2.1"], ("api.example.org.", "A"): ["192.0.2.9"]}
    with DnsUpstream(records) as up:
        config = _config(forward=True, upstreams=[up.upstream("udp")], forward_allow=["127.0.0.2/32"])  # fmt: skip
        app, port = await _started(config)
        try:
            for name, target in (("ext", "www.example.org"), ("ext2", "api.example.org")):
                app.registry.upsert(Service("shop", name, "ExternalName", (), False, target, (), (), (), False))  # fmt: skip
            for _ in range(2):
                await _ask_from(port, "ext.shop.svc.cluster.local", "127.0.0.2")
            denied = await _ask_from(port, "ext.shop.svc.cluster.local", "127.0.0.1")
            assert not any("192.0.2.1" in rr.to_text() for rr in denied.answer)
            await _ask_from(port, "ext2.shop.svc.cluster.local", "127.0.0.1")
            allowed = await _ask_from(port, "ext2.shop.svc.cluster.local", "127.0.0.2")
            assert any("192.0.2.9" in rr.to_text() for rr in allowed.answer)
        finally:
            await app.listeners.close_all()
