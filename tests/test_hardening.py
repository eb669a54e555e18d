"""Hardening: one regression case per defect of the "Hardening" issue (items 2-8 and 10).

Unit cases drive the registry, answers, RRL and manifest source directly; the transport cases
(TCP limits, a client that never reads, RRL on the wire) run the real ``kdns serve`` process on
loopback. The long abuse and fuzz runs live in benchmarks/abuse.py; ``test_short_fuzz`` is their
short version.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import yaml

from kdns.authority import nametable
from kdns.authority import registry as registry_module
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.dns.answer import Answer
from kdns.dns.records import ANY, CLASS_IN
from kdns.k8s import objects as objects_module
from kdns.k8s.objects import slim_endpointslice, slim_pod, slim_service
from kdns.k8s.static import StaticSource
from kdns.model import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort
from kdns.server.meter import TCP4, UDP4
from kdns.server.rrl import DROP, SEND, SLIP, Rrl, slip_reply
from kdns.server.stats import Stats
from kdns.server.wire import Responder
from tests.kdnsproc import LOOPBACK, Kdns

# --- fixtures ------------------------------------------------------------------------------


def make() -> Registry:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    registry.synced = True
    return registry


def address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def headless(n: int, name: str = "big", start: int = 1) -> tuple[Service, EndpointSlice]:
    svc = Service(
        "default", name, "ClusterIP", (), True, "", (ServicePort("p", "TCP", 80),), (), (), False
    )
    endpoints = tuple(Endpoint((address(start + i),), "", True, "") for i in range(n))
    ports = (EndpointPort("p", "TCP", 80),)
    return svc, EndpointSlice("default", name + "-1", name, "IPv4", ports, endpoints)


def responder(registry: Registry) -> Responder:
    out = Responder(registry.answers, Resolver(registry).resolve)
    out.derived = registry.derived
    return out


def ask(
    r: Responder, name: str, rdtype: str, *, tcp: bool = False, edns: int = -1
) -> tuple[dns.message.Message, int]:
    wire = r.respond(
        dns.message.make_query(name, rdtype, use_edns=edns).to_wire(), TCP4 if tcp else UDP4
    )
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire), len(wire)


BIG = "big.default.svc.cluster.local"


# --- item 2: ANY on a large headless Service is bounded --------------------------------------


def test_any_on_a_large_service_renders_at_most_a_tcp_message() -> None:
    """Item 2: ANY rendered the whole 10,000-endpoint Service (1.27 MB, then dropped as
    truncated); now it renders what 64 KiB can carry, and the reply keeps those records."""
    registry = make()
    for obj in headless(10_000):
        registry.upsert(obj)
    answer = Resolver(registry).resolve(names.to_wire(BIG), ANY, CLASS_IN)
    assert 0 < len(answer.body) <= 65535 - 12
    message, size = ask(responder(registry), BIG, "ANY", tcp=True)
    assert size <= 65535 and len(message.answer[0]) > 3000


def test_srv_and_glue_of_a_large_service_are_bounded() -> None:
    """Item 2/3: the SRV RRset is whole (TC when a reply cannot carry it), its glue bounded."""
    registry = make()
    for obj in headless(10_000):
        registry.upsert(obj)
    key = registry_module.question_key(names.to_wire(BIG), 33)
    assert len(registry.answers[key].sections[2]) == 0  # no room left for glue
    message, _ = ask(responder(registry), BIG, "SRV", tcp=True)
    assert message.flags & dns.flags.TC and len(message.answer[0]) > 500


# --- item 3: rendering is linear in the records produced --------------------------------------


def _thawed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the stored records the registry reads back while rendering."""
    count = [0]
    thaw = nametable.thaw

    def counting(frozen: bytes) -> Iterator[tuple[int, bytes]]:
        for item in thaw(frozen):
            count[0] += 1
            yield item

    monkeypatch.setattr(nametable, "thaw", counting)
    return count


@pytest.mark.parametrize("ports", [250, 1000])
def test_named_ports_render_in_linear_work(monkeypatch: pytest.MonkeyPatch, ports: int) -> None:
    """Item 3: one Service with N named ports read its own N SRV records back once per port
    name (N^2: 9.9 s at N = 1,000); now each name's records are read once per flush."""
    count = _thawed(monkeypatch)
    registry = make()
    svc_ports = tuple(ServicePort(f"p{i}", "TCP", 1000 + i) for i in range(ports))
    registry.upsert(
        Service("default", "many", "ClusterIP", ("10.0.0.1",), False, "", svc_ports, (), (), False)
    )
    assert count[0] < 20 * ports  # was ~ports * ports
    message, _ = ask(responder(registry), "_p7._tcp.many.default.svc.cluster.local", "SRV")
    assert [r.port for r in message.answer[0]] == [1007]
    assert [rr.to_text() for rr in message.additional[0]] == ["10.0.0.1"]


def test_large_endpointslice_renders_in_linear_time() -> None:
    """Item 3: 10,000 endpoints cost 6.6 s of CPU (a list scan per record added); now well
    under a second on any machine (CPU time: a busy CI box does not fail it)."""
    registry = make()
    svc, eps = headless(10_000)
    registry.upsert(svc)
    started = time.process_time()
    registry.upsert(eps)
    assert time.process_time() - started < 2.0
    message, _ = ask(responder(registry), BIG, "A", tcp=True)
    assert len(message.answer[0]) > 4000


def test_manifest_reload_yields_to_the_event_loop(tmp_path: Path) -> None:
    """Item 3: a manifest reload was applied in one go (the loop stopped for all of it); now
    objects go in one at a time with yields between, each whole when a query sees it."""
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(_services(50)))
    registry = make()
    source = StaticSource(registry, paths=(str(path),), settle=0.01)
    source.load()
    path.write_text(yaml.safe_dump_all(_services(400, port_names=40)))

    async def main() -> tuple[int, int]:
        ticks = 0
        seen_partial = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks, seen_partial
            while not done:
                ticks += 1
                for key in list(registry.services):
                    svc = registry.services[key]
                    name = names.to_wire(f"_p39._tcp.{svc.name}.default.svc.cluster.local")
                    srv = registry_module.question_key(name, 33)
                    # A Service is there with all its port names, or not at all.
                    if len(svc.ports) == 40 and srv not in registry.answers:
                        seen_partial += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        assert await source.poll()
        done = True
        await task
        return ticks, seen_partial

    ticks, partial = asyncio.run(main())
    assert len(registry.services) == 400
    assert ticks > 2 and partial == 0


def _services(n: int, port_names: int = 1) -> list[dict]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"s{i}", "namespace": "default"},
            "spec": {
                "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                "ports": [{"name": f"p{j}", "port": 1000 + j} for j in range(port_names)],
            },
        }
        for i in range(n)
    ]


# --- item 4: a large RRset keeps the records that fit ----------------------------------------


def test_udp_truncation_keeps_the_records_that_fit() -> None:
    """Item 4: a headless Service over ~70 endpoints answered TC with an empty answer over
    UDP; now the whole records that fit, with TC (clients that never retry over TCP)."""
    registry = make()
    for obj in headless(100):
        registry.upsert(obj)
    r = responder(registry)
    plain, size = ask(r, BIG, "A")
    assert plain.flags & dns.flags.TC and size <= 512 and len(plain.answer[0]) == 29
    edns, size = ask(r, BIG, "A", edns=0)
    assert edns.flags & dns.flags.TC and size <= 1232 and len(edns.answer[0]) == 73


def test_tcp_carries_as_many_records_as_64k_holds() -> None:
    """Item 4: beyond ~4,000 endpoints even TCP answered TC with nothing; now 64 KiB of them."""
    registry = make()
    for obj in headless(5000):
        registry.upsert(obj)
    message, size = ask(responder(registry), BIG, "A", tcp=True)
    assert message.flags & dns.flags.TC
    assert size <= 65535 and len(message.answer[0]) == (65535 - 12 - 35) // 16


def test_truncated_answers_rotate_with_loadbalance() -> None:
    """Item 4: with loadbalance on, the records kept differ from reply to reply."""
    registry = make()
    for obj in headless(100):
        registry.upsert(obj)
    r = responder(registry)
    r.loadbalance = True
    firsts = {ask(r, BIG, "A")[0].answer[0][0].address for _ in range(5)}
    assert len(firsts) == 5


def test_fit_keeps_leading_records_of_uncompressed_owners() -> None:
    """Item 4: record boundaries are found for full owner names too (additional, CNAME chase)."""
    owner = names.to_wire("x.example")
    rrs = [owner + struct.pack("!HHIH", 1, 1, 5, 4) + bytes([10, 0, 0, i]) for i in range(10)]
    data = b"".join(rrs)
    answer = Answer(0, True, (((data, 10),), (), ()))
    counts, body, truncated = answer.fit(len(rrs[0]) * 3 + 5, edns=False)
    assert truncated and body == b"".join(rrs[:3]) and counts[:2] == b"\x00\x03"


# --- item 5: a momentarily empty --objects file ---------------------------------------------


def test_empty_read_during_a_rewrite_does_not_empty_the_cluster(tmp_path: Path) -> None:
    """Item 5: a rewrite read between truncate and write emptied the cluster until the next
    poll; now an empty or shrunken read is re-read after a settle and the rewrite wins."""
    path = tmp_path / "objects.yaml"
    content = yaml.safe_dump_all(_services(3))
    path.write_text(content)
    registry = make()
    source = StaticSource(registry, paths=(str(path),), settle=0.2)
    source.load()
    path.write_text("")  # the truncate step

    async def main() -> bool:
        async def writer() -> None:
            await asyncio.sleep(0.05)
            path.write_text(content + "---\n")  # the write step (same objects)

        task = asyncio.create_task(writer())
        applied = await source.poll()
        await task
        return applied

    asyncio.run(main())
    assert len(registry.services) == 3


def test_a_rewrite_cut_short_with_fewer_endpoints_is_not_applied(tmp_path: Path) -> None:
    """Item 5: a read cut mid-write can parse with every object and fewer endpoints; and a
    writer that keeps rewriting must not be confirmed by a re-read in the same phase."""
    path = tmp_path / "objects.yaml"
    slice_doc = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address(i + 1)]} for i in range(100)],
    }
    full = yaml.safe_dump_all([*_services(1), slice_doc])
    cut = yaml.safe_dump_all([*_services(1), {**slice_doc, "endpoints": slice_doc["endpoints"][:30]}])  # fmt: skip
    path.write_text(full)
    registry = make()
    source = StaticSource(registry, paths=(str(path),), settle=0.1)
    source.load()

    async def main() -> bool:
        path.write_text(cut)

        async def writer() -> None:  # rewrites every 50 ms: cut, then whole again
            for _ in range(8):
                await asyncio.sleep(0.025)
                path.write_text(full)
                await asyncio.sleep(0.025)
                path.write_text(cut)
            path.write_text(full)

        task = asyncio.create_task(writer())
        applied = await source.poll()
        await task
        return applied

    asyncio.run(main())
    assert len(registry.slices[("default", "big-1")].endpoints) == 100


def test_an_empty_file_keeps_the_last_good_objects(tmp_path: Path) -> None:
    """Issue 22 item 16: a file with no objects that stays empty (a failed `kubectl get >
    file`) is logged and counted, and the last good objects keep being served; an empty set is
    applied only from a file that says so, `kind: List` with `items: []`."""
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(_services(3)))
    registry = make()
    source = StaticSource(registry, paths=(str(path),), settle=0.01)
    source.stats = Stats()
    source.load()
    path.write_text("")
    assert not asyncio.run(source.poll())
    assert len(registry.services) == 3 and source.empty_kept == 1
    assert source.stats.objects_kept == 1  # kdns_objects_reloads_kept_total
    assert not asyncio.run(source.poll())  # unchanged since: not counted again
    assert source.empty_kept == 1
    path.write_text("apiVersion: v1\nkind: List\nitems: []\n")
    assert asyncio.run(source.poll())
    assert not registry.services and source.empty_kept == 1


# --- item 8: skipped values are logged once and counted ---------------------------------------


def test_bad_values_are_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Item 8: an IPv6 ClusterIP with a zone id and a malformed address were skipped silently."""
    caplog.set_level(logging.WARNING, logger="kdns.objects")
    before = dict(objects_module.SKIPPED)
    raw_svc = {
        "kind": "Service",
        "metadata": {"name": "zoned", "namespace": "ns1"},
        "spec": {"clusterIPs": ["10.96.0.9", "fd00::1%eth0"], "ports": []},
    }
    for _ in range(3):  # a watch repeats the object: one log line
        svc = slim_service(raw_svc)
    assert svc.cluster_ips == ("10.96.0.9",)
    raw_eps = {
        "kind": "EndpointSlice",
        "metadata": {
            "name": "e1",
            "namespace": "ns1",
            "labels": {"kubernetes.io/service-name": "zoned"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.2.300"]}, {"addresses": ["10.1.2.3"]}],
    }
    eps = slim_endpointslice(raw_eps)
    assert eps is not None and len(eps.endpoints) == 1
    pod = slim_pod({"kind": "Pod", "metadata": {"name": "p"}, "status": {"podIP": "nope"}})
    assert pod is None
    lines = [r.getMessage() for r in caplog.records]
    zoned = [line for line in lines if "fd00::1%eth0" in line]
    assert len(zoned) == 1
    assert "Service ns1/zoned" in zoned[0] and "spec.clusterIPs" in zoned[0]
    assert any("EndpointSlice ns1/e1" in x and "10.1.2.300" in x for x in lines)
    assert any("Pod default/p" in x and "status.podIP" in x for x in lines)
    skipped = objects_module.SKIPPED
    assert skipped[("Service", "spec.clusterIPs")] - before.get(("Service", "spec.clusterIPs"), 0) == 3  # fmt: skip
    field = ("EndpointSlice", "endpoints[].addresses")
    assert skipped[field] - before.get(field, 0) == 1


def test_headless_and_hostname_only_ingress_are_not_bad_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Item 8: clusterIP "None" and a hostname-only LoadBalancer ingress are normal."""
    caplog.set_level(logging.WARNING, logger="kdns.objects")
    slim_service(
        {
            "kind": "Service",
            "metadata": {"name": "h", "namespace": "ns2"},
            "spec": {"clusterIP": "None", "type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"hostname": "elb.example"}]}},
        }
    )
    assert not caplog.records


# --- item 10: response rate limiting ---------------------------------------------------------


def _response(name: str, rcode: int = 0, qtype: str = "A") -> bytes:
    query = dns.message.make_query(name, qtype)
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    return reply.to_wire()


def test_rrl_limits_identical_responses_per_client_network() -> None:
    """Item 10: responses_per_second per (client /24, response), slip every 2nd dropped."""
    rrl = Rrl(5, slip=2)
    response = _response("web.default.svc.cluster.local")
    actions = [rrl.check("192.0.2.1", response, 100.0) for _ in range(11)]
    assert actions[:5] == [SEND] * 5
    assert actions[5:] == [DROP, SLIP, DROP, SLIP, DROP, SLIP]
    # Same /24: same account. Another /24, or another question: their own.
    assert rrl.check("192.0.2.77", response, 100.0) != SEND
    assert rrl.check("192.0.3.1", response, 100.0) == SEND
    assert rrl.check("192.0.2.1", _response("other.default.svc.cluster.local"), 100.0) == SEND
    # Refilled at the configured rate.
    assert rrl.check("192.0.2.1", response, 100.5) == SEND


def test_rrl_nxdomain_is_accounted_per_zone_and_exempt_networks_pass() -> None:
    rrl = Rrl(2, slip=0, exempt=["10.0.0.0/8"])
    registry = make()
    r = responder(registry)
    sent = []
    for i in range(6):
        wire = r.respond(dns.message.make_query(f"x{i}.default.svc.cluster.local", "A").to_wire())
        assert isinstance(wire, bytes) and wire[3] & 15 == dns.rcode.NXDOMAIN
        sent.append(rrl.check("198.51.100.1", wire, 5.0))
        assert rrl.check("10.1.2.3", wire, 5.0) == SEND
    assert sent == [SEND, SEND, DROP, DROP, DROP, DROP]  # random names, one zone, one account


def test_rrl_slip_reply_is_truncated_and_empty() -> None:
    response = _response("web.default.svc.cluster.local")
    full = dns.message.from_wire(response)
    slipped = dns.message.from_wire(slip_reply(response))
    assert slipped.flags & dns.flags.TC and not slipped.answer
    assert slipped.id == full.id and slipped.question == full.question


def test_rrl_table_is_bounded() -> None:
    rrl = Rrl(5, max_entries=1000)
    for i in range(5000):
        rrl.check(f"203.0.{i // 256 % 256}.{i % 256}", _response(f"n{i}.example"), float(i))
    assert len(rrl.table) <= 1000


# --- transport cases: the real server -------------------------------------------------------


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hardening") / "cluster.yaml"
    endpoints = [{"addresses": [address(i + 1)]} for i in range(3000)]
    docs = [
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
    path.write_text(yaml.safe_dump_all(docs))
    return path


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "kdns.toml"
    path.write_text(text)
    return str(path)


def _connect(port: int, source: str = LOOPBACK) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=3, source_address=(source, 0))
    return sock


def _tcp_query(sock: socket.socket, name: str) -> dns.message.Message:
    wire = dns.message.make_query(name, "A").to_wire()
    sock.sendall(len(wire).to_bytes(2, "big") + wire)
    size = int.from_bytes(_recv_exact(sock, 2), "big")
    return dns.message.from_wire(_recv_exact(sock, size))


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _closed(sock: socket.socket, timeout: float = 3.0) -> bool:
    """The server closed (or reset) the connection: read what it sent until the end."""
    sock.setblocking(True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:
            return True  # reset
    return False


def test_one_client_cannot_take_every_tcp_slot(manifests: Path, tmp_path: Path) -> None:
    """Item 7: 1,000 idle connections from one address locked every other TCP client out;
    now one client network holds at most tcp_max_connections_per_client, and at the global
    limit a newcomer closes the oldest idle connection."""
    config = _config(
        tmp_path,
        "[server]\ntcp_max_connections = 12\ntcp_max_connections_per_client = 8\n",
    )
    with Kdns("-c", config, "--objects", str(manifests)) as server:
        hog = [_connect(server.port) for _ in range(8)]
        assert _tcp_query(hog[0], "web.default.svc.cluster.local").answer
        extra = _connect(server.port)
        assert _closed(extra)  # the 9th from the same address
        others = [_connect(server.port, f"127.0.0.{i}") for i in (2, 3, 4, 5)]
        for sock in others:  # fills the global limit (8 + 4 = 12)
            assert _tcp_query(sock, "web.default.svc.cluster.local").answer
        late = _connect(server.port, "127.0.0.6")  # 13th: the oldest idle one makes room
        assert _tcp_query(late, "web.default.svc.cluster.local").answer
        assert _closed(hog[0])
        for sock in [*hog, extra, *others, late]:
            sock.close()


def test_a_client_that_never_reads_costs_the_others_nothing(
    manifests: Path, tmp_path: Path
) -> None:
    """Item 6: a TCP client pipelining queries without reading stalled UDP (every pipelined
    query was answered at once into an unbounded buffer); now reading stops at 64 KiB
    unread, the rest waits, and the client is dropped after tcp_write_timeout."""
    with Kdns("--objects", str(manifests)) as server:  # tcp_write_timeout 5 s by default
        query = dns.message.make_query(BIG, "A").to_wire()  # ~48 KB answers
        framed = (len(query).to_bytes(2, "big") + query) * 2000
        hog = _connect(server.port)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        sent = answered = 0
        worst = 0.0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                sent += hog.send(framed[sent : sent + 65536])
            except BlockingIOError:
                pass
            except OSError:
                break  # dropped by kdns
            started = time.perf_counter()
            reply = server.query("web.default.svc.cluster.local")
            worst = max(worst, time.perf_counter() - started)
            assert reply.answer  # every UDP query answered within the client's 3 s
            answered += 1
        # Generous bounds (a loaded runner passes them); before the fix the UDP client waited
        # behind every pipelined answer. Latency itself is a benchmark's business.
        assert answered >= 10, f"{answered} UDP answers while a TCP client did not read"
        assert worst < 2.0, f"UDP answer took {worst:.3f}s while a TCP client did not read"
        assert _closed(hog, timeout=6)
        status, text = server.get("metrics")
        assert "kdns_tcp_write_timeouts_total 1.0" in text
        hog.close()


@pytest.mark.parametrize("mode", [(), ("--killer",)], ids=["standard", "killer"])
def test_rrl_on_the_wire(manifests: Path, tmp_path: Path, mode: tuple[str, ...]) -> None:
    """Item 10: with [rrl] on, a flood of one question gets dropped and slipped replies;
    a TCP retry still answers; the metric counts them. Killer mode's wire-cache hits are
    rate limited too."""
    config = _config(tmp_path, "[rrl]\nenabled = true\nresponses_per_second = 5\nslip = 2\n")
    with Kdns("-c", config, "--objects", str(manifests), *mode) as server:
        wire = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
        answered = truncated = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)  # the end of the replies: 2 s of silence
            for _ in range(30):
                sock.sendto(wire, (LOOPBACK, server.port))
            while True:
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except TimeoutError:
                    break
                if reply.flags & dns.flags.TC:
                    truncated += 1
                else:
                    answered += 1
        assert answered <= 6 and truncated >= 5 and answered + truncated < 30
        assert server.query("web.default.svc.cluster.local", tcp=True).answer
        _, text = server.get("metrics")
        assert 'kdns_rrl_responses_total{action="drop"}' in text


def test_rrl_off_by_default(manifests: Path) -> None:
    with Kdns("--objects", str(manifests)) as server:
        for _ in range(50):
            assert server.query("web.default.svc.cluster.local").answer


# --- short fuzz (the long one: benchmarks/abuse.py --fuzz) ----------------------------------


@pytest.mark.parametrize("mode", [(), ("--killer",)], ids=["standard", "killer"])
def test_short_fuzz(manifests: Path, mode: tuple[str, ...]) -> None:
    """Random, mutated and crafted packets: the server neither dies nor logs internal errors
    (killer mode: through the batched transport and the wire cache)."""
    from benchmarks.abuse import fuzz_packets

    with Kdns("--objects", str(manifests), *mode) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for packet in fuzz_packets(random.Random(7), 5000):
                sock.sendto(packet, (LOOPBACK, server.port))
                try:
                    while sock.recv(65535):
                        pass
                except BlockingIOError:
                    pass
        assert server.query("web.default.svc.cluster.local").answer
        _, text = server.get("metrics")
        assert "kdns_internal_errors_total 0.0" in text
        assert "Traceback" not in server.log
