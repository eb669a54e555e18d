"""Reloads and invalidation (issue 17): whatever standard mode answers from, once swapped in,
is what killer mode's wire cache answers from too, and a reload never loses part of an edit.

- A local zone edit that moves only its SOA (a zone file's MINIMUM, so the negative TTL) is
  reported to the registry's watchers: cached NXDOMAIN/NODATA replies are dropped at once.
- Every input (zone files and their SOA, TOML records, objects-file reloads, cluster object
  edits, TTL, ACL, views and block lists, registry rebuilds) is checked as a differential: the
  same query bytes, sent in bursts (the batched receive path), to a standard and a killer App
  before and after the change; replies must agree byte for byte after the ID.
- A reload swaps everything in one step of the event loop: while it is still reading files,
  nothing served has changed; once it returns, no cached reply of the old state is served.
- An objects-file reload and a registry rebuild (a config reload changing kubernetes.pods) take
  turns: the rebuild never strands the rest of the file in the old registry.

Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.app import App
from kdns.authority import zones as zones_module
from kdns.authority.localzones import from_records
from kdns.authority.registry import Registry
from kdns.authority.slices import Pacer
from kdns.authority.zones import LOCAL, ZoneSet
from kdns.config import Config, build_config
from kdns.k8s import static
from kdns.k8s.static import StaticSource
from kdns.model import Service

LOOPBACK = "127.0.0.1"
ZONE = """\
$TTL 300
@    {soa_ttl} IN SOA ns.home.example. admin.home.example. 2000000000 7200 1800 86400 {minimum}
@    IN NS ns
ns   IN A 192.0.2.53
www  IN A {www}
"""


def _zone_text(minimum: int = 60, soa_ttl: int = 60, www: str = "192.0.2.10") -> str:
    return ZONE.format(minimum=minimum, soa_ttl=soa_ttl, www=www)


def _objects(count: int, third: int) -> str:
    """``count`` Services svc-N in namespace load, ClusterIP 10.1.<third>.<N>."""
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: load}\n"]
    for i in range(count):
        docs.append(
            "apiVersion: v1\nkind: Service\n"
            f"metadata: {{name: svc-{i}, namespace: load}}\n"
            f"spec: {{clusterIP: 10.{1 + i // 250}.{third}.{i % 250 + 1}, "
            "ports: [{name: http, port: 80, protocol: TCP}]}\n"
        )
    return "---\n".join(docs)


def _address(i: int, third: int) -> str:
    return f"10.{1 + i // 250}.{third}.{i % 250 + 1}"


def _write(path: Path, text: str) -> None:
    """Rewrite a file so its (inode, size, mtime) stamp surely moves."""
    path.write_text(text)
    later = time.time_ns() + 2_000_000_000
    os.utime(path, ns=(later, later))


# ---------------------------------------------------------------- the registry's report


def test_a_soa_only_local_zone_edit_is_reported_to_the_watchers() -> None:
    """A zone whose SOA MINIMUM (so its negative TTL) changed is in the watchers' ``zones``
    set: their copies of its negative replies carry the old SOA."""
    zone_set = ZoneSet.build("cluster.local", (), 5, local_zones=(("home.example", 300),))
    registry = Registry(zone_set)
    soa = "@ 60 SOA ns.home.example. admin.home.example. 2000000000 7200 1800 86400 {}"
    registry.set_local(from_records("home.example", [soa.format(60), "www A 192.0.2.10"]))
    calls: list[tuple[set[bytes], set[str], bool]] = []
    registry.watchers.append(lambda names, zones, everything: calls.append((names, zones, everything)))  # fmt: skip
    zone = next(z for z in registry.zones if z.kind == LOCAL)
    before = zone.negative(b"\x07missing" + zone.apex, dns.rcode.NXDOMAIN).body
    registry.set_local(from_records("home.example", [soa.format(30), "www A 192.0.2.10"]))
    assert zone.negative(b"\x07missing" + zone.apex, dns.rcode.NXDOMAIN).body != before
    assert any("home.example" in zones or everything for _, zones, everything in calls), calls
    calls.clear()
    registry.set_local(from_records("home.example", [soa.format(30), "www A 192.0.2.10"]))
    assert not any(zones for _, zones, _ in calls)  # nothing moved: nothing reported


# ---------------------------------------------------------------- in-process Apps


@pytest.fixture
def fixed_serials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zones start at the same serial in both Apps (they count up alike from there), so a
    standard and a killer App give the same bytes."""
    monkeypatch.setattr(zones_module, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))


def _write_config(path: Path, zone: Path, objects: Path, extra: str = "") -> Path:
    path.write_text(
        f"""
[server]
reload_interval = 0
listen = ["{LOOPBACK}:0"]
{extra}
[kubernetes]
objects = ["{objects}"]
ttl = 5

[forward]
enabled = false

[[zones]]
name = "home.example"
file = "{zone}"
"""
    )
    return path


def _config(path: Path, killer: bool) -> Config:
    flags: dict[str, object] = {"metrics_listen": "off", "health_listen": "off", "ready_listen": "off"}  # fmt: skip
    if killer:
        flags["killer"] = True
    return build_config(str(path), {}, flags)


async def _start(config: Config) -> tuple[App, int]:
    app = App(config)
    await app.start_source()
    listeners = await app.listeners.bind(config.listen[0])
    if app.source is not None:
        await app.source.stop()  # objects-file reloads only when the test polls
    return app, listeners[0].port


def _queries() -> list[bytes]:
    """Local zone names (answers, NXDOMAIN, NODATA, the apex), cluster names and a pod name,
    in two letter cases, with and without EDNS."""
    out = []
    names = [
        "www.home.example",
        "missing.home.example",
        "home.example",
        "MiSsInG.HoMe.ExAmPlE",
        "svc-1.load.svc.cluster.local",
        "nope.load.svc.cluster.local",
        "SvC-2.LoAd.svc.cluster.local",
        "10-1-2-3.load.pod.cluster.local",  # kubernetes.pods insecure: computed
    ]
    for name in names:
        for rdtype in ("A", "AAAA", "SOA", "TXT"):
            for edns in (False, 0):
                q = dns.message.make_query(name, rdtype, use_edns=edns, payload=1232)
                out.append(q.to_wire())
    return out


def _burst(port: int, queries: list[bytes]) -> list[bytes]:
    """Send every query at once from one socket (several per recvmmsg), then collect the
    replies; each reply after its ID, in the order of ``queries``."""
    replies: dict[int, bytes] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        for qid, wire in enumerate(queries):
            sock.sendto(qid.to_bytes(2, "big") + wire[2:], (LOOPBACK, port))
        while len(replies) < len(queries):
            data = sock.recv(65535)
            replies[int.from_bytes(data[:2], "big")] = data[2:]
    return [replies[qid] for qid in range(len(queries))]


async def _ask(port: int, queries: list[bytes], times: int = 3) -> list[bytes]:
    """The replies to ``queries``, asked ``times`` in a row (after the first, the killer
    answers from its wire cache); every round must give the same bytes."""
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, _burst, port, queries)
    for _ in range(times - 1):
        assert await loop.run_in_executor(None, _burst, port, queries) == first
    return first


@dataclasses.dataclass
class Pair:
    standard: App
    killer: App
    ports: tuple[int, int]
    config_file: Path
    zone_file: Path
    objects_file: Path

    async def both(self, change: Callable[[App], Awaitable[None]]) -> None:
        await change(self.standard)
        await change(self.killer)

    async def replies(self) -> tuple[list[bytes], list[bytes]]:
        queries = _queries()
        return await _ask(self.ports[0], queries), await _ask(self.ports[1], queries)


@pytest.fixture
async def pair(tmp_path: Path, fixed_serials: None) -> AsyncIterator[Pair]:
    zone = tmp_path / "home.zone"
    zone.write_text(_zone_text())
    objects = tmp_path / "objects.yaml"
    objects.write_text(_objects(5, 1))
    config_file = _write_config(tmp_path / "kdns.toml", zone, objects)
    standard, standard_port = await _start(_config(config_file, killer=False))
    killer, killer_port = await _start(_config(config_file, killer=True))
    assert killer.killer is not None and standard.killer is None
    yield Pair(standard, killer, (standard_port, killer_port), config_file, zone, objects)
    for app in (standard, killer):
        await app.listeners.close_all()


def _reload_file(pair: Pair, extra: str) -> Callable[[App], Awaitable[None]]:
    _write_config(pair.config_file, pair.zone_file, pair.objects_file, extra)

    async def change(app: App) -> None:
        await app.apply(_config(pair.config_file, app.killer is not None), "test")

    return change


async def _zone_file(pair: Pair, text: str) -> Callable[[App], Awaitable[None]]:
    _write(pair.zone_file, text)

    async def change(app: App) -> None:
        await app.refresh_data_files("test")

    return change


async def _soa_minimum(pair: Pair) -> Callable[[App], Awaitable[None]]:
    return await _zone_file(pair, _zone_text(minimum=30))


async def _soa_ttl(pair: Pair) -> Callable[[App], Awaitable[None]]:
    return await _zone_file(pair, _zone_text(soa_ttl=20))


async def _zone_records(pair: Pair) -> Callable[[App], Awaitable[None]]:
    return await _zone_file(pair, _zone_text(www="192.0.2.99") + "missing IN TXT found\n")


async def _objects_file(pair: Pair) -> Callable[[App], Awaitable[None]]:
    _write(pair.objects_file, _objects(3, 7))  # new addresses, two Services fewer

    async def change(app: App) -> None:
        assert app.source is not None
        assert await app.source.poll()

    return change


async def _object_edit(pair: Pair) -> Callable[[App], Awaitable[None]]:
    async def change(app: App) -> None:
        old = app.registry.services[("load", "svc-1")]
        assert isinstance(old, Service)
        app.registry.upsert(old._replace(cluster_ips=("10.9.9.9",)))
        app.registry.delete("Service", ("load", "svc-2"))

    return change


async def _ttl(pair: Pair) -> Callable[[App], Awaitable[None]]:
    text = pair.config_file.read_text().replace("ttl = 5", "ttl = 42")
    pair.config_file.write_text(text)

    async def change(app: App) -> None:
        await app.apply(_config(pair.config_file, app.killer is not None), "test")

    return change


async def _acl(pair: Pair) -> Callable[[App], Awaitable[None]]:
    return _reload_file(
        pair, '[acl]\nrules = [{action = "block", zone = ["home.example"], type = ["A"]}]\n'
    )


async def _blocklist(pair: Pair) -> Callable[[App], Awaitable[None]]:
    hosts = pair.zone_file.parent / "block.hosts"
    hosts.write_text("0.0.0.0 nothing.example.net\n")
    lists = f"""
[[blocklists]]
name = "ads"
file = "{hosts}"
format = "hosts"

[[views]]
name = "here"
networks = ["{LOOPBACK}/32"]
blocklists = ["ads"]
"""
    # First the view with a list that blocks nothing we ask (a reload: views, ACL...), then
    # the list file moves (a data file refresh), blocking a name replies are cached for.
    await _reload_file(pair, lists)(pair.standard)
    await _reload_file(pair, lists)(pair.killer)
    await pair.replies()
    _write(hosts, "0.0.0.0 www.home.example\n0.0.0.0 svc-1.load.svc.cluster.local\n")

    async def change(app: App) -> None:
        await app.refresh_data_files("test")

    return change


async def _rebuild(pair: Pair) -> Callable[[App], Awaitable[None]]:
    """kubernetes.pods changes: every object is rendered into a fresh registry."""
    text = pair.config_file.read_text().replace("ttl = 5", 'ttl = 5\npods = "disabled"')
    pair.config_file.write_text(text)

    async def change(app: App) -> None:
        await app.apply(_config(pair.config_file, app.killer is not None), "test")
        assert app.registry.pods_mode == "disabled"

    return change


CHANGES = {
    "zone file SOA minimum": _soa_minimum,
    "zone file SOA TTL": _soa_ttl,
    "zone file records": _zone_records,
    "objects file": _objects_file,
    "cluster object edit": _object_edit,
    "config TTL": _ttl,
    "ACL": _acl,
    "views and block list file": _blocklist,
    "registry rebuild": _rebuild,
}


@pytest.mark.parametrize("kind", list(CHANGES))
async def test_killer_replies_follow_every_input(pair: Pair, kind: str) -> None:
    """The same query bytes, before and right after the change, to a standard and a killer
    App: byte for byte the same replies after the ID, and the change visible in them."""
    standard, killer = await pair.replies()
    assert killer == standard
    change = await CHANGES[kind](pair)
    before = killer
    await pair.both(change)
    standard, killer = await pair.replies()
    mismatched = [
        dns.message.from_wire(b"\x00\x00" + q[2:]).question[0].to_text()
        for q, a, b in zip(_queries(), standard, killer, strict=True)
        if a != b
    ]
    assert not mismatched, f"killer mode kept old replies after '{kind}': {mismatched}"
    assert killer != before, "the change moved no reply: the test shows nothing"


# ---------------------------------------------------------------- one step


async def test_a_reload_swaps_and_invalidates_in_one_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that changes the upstreams and a local zone: while the zone is still being
    read (in a thread), killer mode answers as standard mode does, from the old upstream for
    a cached name and a new one alike; after it, from the new upstream for both."""
    import kdns.running.datafiles as datafiles
    from tests.dnsupstream import DnsUpstream

    records = {("cached.example.org.", "A"): ["192.0.2.1"], ("fresh.example.org.", "A"): ["192.0.2.1"]}  # fmt: skip
    later = {("cached.example.org.", "A"): ["192.0.2.2"], ("fresh.example.org.", "A"): ["192.0.2.2"]}  # fmt: skip
    with DnsUpstream(records) as old_up, DnsUpstream(later) as new_up:
        flags: dict[str, object] = {"demo": True, "killer": True, "listen": [f"{LOOPBACK}:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off", "upstreams": [old_up.upstream("udp")], "local_zones": ["home.example=" + str(tmp_path / "home.zone")]}  # fmt: skip
        (tmp_path / "home.zone").write_text(_zone_text())
        config = build_config(None, {}, flags)
        app, port = await _start(config)
        loop = asyncio.get_running_loop()

        def address(name: str) -> str:
            q = dns.message.make_query(name, "A")
            reply = dns.message.from_wire(b"\x00\x00" + _burst(port, [q.to_wire()])[0])
            return reply.answer[0][0].to_text()

        ask = lambda name: loop.run_in_executor(None, address, name)  # noqa: E731
        try:
            for _ in range(3):  # forwarded, then cached (forward cache, wire cache)
                assert await ask("cached.example.org") == "192.0.2.1"
            reading = asyncio.Event()
            release = asyncio.Event()
            real_load = datafiles.load_local_zone

            def slow_load(*args: object) -> object:
                loop.call_soon_threadsafe(reading.set)
                asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)
                return real_load(*args)  # type: ignore[arg-type]

            monkeypatch.setattr(datafiles, "load_local_zone", slow_load)
            (tmp_path / "home2.zone").write_text(_zone_text(www="192.0.2.77"))
            moved = {"upstreams": [new_up.upstream("udp")], "local_zones": ["home.example=" + str(tmp_path / "home2.zone")]}  # fmt: skip
            new = build_config(None, {}, {**flags, **moved})
            reload = asyncio.create_task(app.apply(new, "test"))
            await asyncio.wait_for(reading.wait(), 5)
            # The reload is suspended reading the zone: one state is served, the old one.
            during = (await ask("cached.example.org"), await ask("fresh.example.org"))
            release.set()
            await reload
            after = (await ask("cached.example.org"), await ask("fresh.example.org"))
        finally:
            await app.listeners.close_all()
    assert during == ("192.0.2.1", "192.0.2.1"), f"half-applied reload served {during}"
    assert after == ("192.0.2.2", "192.0.2.2")


# ---------------------------------------------------------------- reloads never lose an edit


async def _rebuild_during_objects_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killer: bool
) -> tuple[App, int, int]:
    count = 400
    objects = tmp_path / "objects.yaml"
    objects.write_text(_objects(count, 1))
    flags: dict[str, object] = {"objects": [str(objects)], "killer": killer, "forward": False, "listen": [f"{LOOPBACK}:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off", "reload_interval": 0}  # fmt: skip
    config = build_config(None, {}, flags)
    app, port = await _start(config)
    source = app.source
    assert source is not None
    # Apply one object at a time, yielding to the loop after each (a large file on a slow
    # node): the registry rebuild below lands between two objects, every time.
    real = static.apply_gradually

    async def one_by_one(registry: Registry, objs: list[object], pacer: object = None) -> None:
        await real(registry, objs, Pacer(0.0))  # type: ignore[arg-type]

    monkeypatch.setattr(static, "apply_gradually", one_by_one)
    _write(objects, _objects(count, 2))
    poll = asyncio.create_task(source.poll())
    started = asyncio.get_running_loop().time()
    while not any(
        svc.cluster_ips == (_address(i, 2),)
        for i, svc in enumerate(app.registry.services[("load", f"svc-{i}")] for i in range(count))
        if isinstance(svc, Service)
    ):
        assert asyncio.get_running_loop().time() - started < 10, "the reload never started"
        await asyncio.sleep(0.001)
    # Suspended between two objects: a config reload rebuilds the registry (pods mode).
    await app.apply(dataclasses.replace(config, pods="disabled"), "test")
    assert await poll
    assert app.registry.pods_mode == "disabled"
    return app, port, count


@pytest.mark.parametrize("killer", [False, True], ids=["standard", "killer"])
async def test_a_registry_rebuild_during_an_objects_reload_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killer: bool
) -> None:
    """Issue 17: 392 of 400 Services kept their old addresses when a SIGHUP rebuilt the
    registry while the objects file was being applied."""
    app, port, count = await _rebuild_during_objects_reload(tmp_path, monkeypatch, killer)
    try:
        stale = [
            i
            for i in range(count)
            if app.registry.services[("load", f"svc-{i}")].cluster_ips != (_address(i, 2),)  # type: ignore[union-attr]
        ]
        assert not stale, f"{len(stale)} of {count} Services kept their old addresses"
        queries = [
            dns.message.make_query(f"svc-{i}.load.svc.cluster.local", "A").to_wire()
            for i in range(0, count, 7)
        ]
        replies = await _ask(port, queries)
        for i, reply in zip(range(0, count, 7), replies, strict=True):
            message = dns.message.from_wire(b"\x00\x00" + reply)
            assert [r.to_text() for rr in message.answer for r in rr] == [_address(i, 2)]
    finally:
        await app.listeners.close_all()


async def test_an_objects_reload_follows_a_registry_swapped_under_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even a swap that does not take the lock (``set_registry`` mid-apply) loses nothing:
    the source applies the file again to the registry it now feeds."""
    objects = tmp_path / "objects.yaml"
    objects.write_text(_objects(50, 1))
    zone_set = lambda: ZoneSet.build("cluster.local", (), 5)  # noqa: E731
    first = Registry(zone_set())
    source = StaticSource(first, paths=(str(objects),), poll_interval=0)
    source.load()
    real = static.apply_gradually
    swapped = Registry(zone_set())

    async def swap_midway(
        registry: Registry, objs: list[object], pacer: Pacer | None = None
    ) -> None:
        if registry is first:
            with registry.batch():
                for obj in objs[:10]:
                    registry.upsert(obj)  # type: ignore[arg-type]
            static.copy_objects(first, swapped)
            source.set_registry(swapped)
            await asyncio.sleep(0)
        await real(registry, objs, pacer)  # type: ignore[arg-type]

    monkeypatch.setattr(static, "apply_gradually", swap_midway)
    _write(objects, _objects(50, 2))
    assert await source.poll()
    held = swapped.services
    assert all(
        held[("load", f"svc-{i}")].cluster_ips == (_address(i, 2),)  # type: ignore[union-attr]
        for i in range(50)
    )


# ---------------------------------------------------------------- the real process


def test_kdns_serve_killer_follows_a_soa_only_zone_file_edit(tmp_path: Path) -> None:
    """`kdns serve` and `kdns serve --killer` on the same zone file (polled every 0.2 s): the
    same query bytes, in bursts, get the same replies after the ID before the file moves its
    SOA MINIMUM (60 -> 30, serial unchanged), and again soon after it."""
    from tests.kdnsproc import Kdns

    zone = tmp_path / "home.zone"
    zone.write_text(_zone_text())
    config = tmp_path / "kdns.toml"
    config.write_text(
        f'[server]\nreload_interval = 0.2\n\n[[zones]]\nname = "home.example"\nfile = "{zone}"\n'
    )
    queries = [q for q in _queries() if b"\x04home\x07example\x00" in q.lower()]

    def negative_ttl(replies: list[bytes]) -> int:
        at = [q[2:] for q in queries].index(missing[2:])
        message = dns.message.from_wire(b"\x00\x00" + replies[at])
        return message.authority[0].ttl

    missing = dns.message.make_query("missing.home.example", "A", use_edns=False).to_wire()
    with Kdns("-c", str(config), "--demo") as standard, Kdns("-c", str(config), "--demo", "--killer") as killer:  # fmt: skip
        for _ in range(3):  # the killer's later rounds come from its wire cache
            assert _burst(killer.port, queries) == _burst(standard.port, queries)
        assert negative_ttl(_burst(killer.port, queries)) == 60
        _write(zone, _zone_text(minimum=30))
        deadline = time.monotonic() + 10
        while negative_ttl(_burst(standard.port, queries)) != 30:
            assert time.monotonic() < deadline, "standard mode never reloaded the zone file"
            time.sleep(0.05)
        while (got := _burst(killer.port, queries)) != _burst(standard.port, queries):
            assert time.monotonic() < deadline, (
                f"killer mode kept the old negative replies (TTL {negative_ttl(got)})"
            )
            time.sleep(0.05)
        assert negative_ttl(got) == 30
