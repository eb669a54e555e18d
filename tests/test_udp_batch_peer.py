"""The batched UDP loop makes a client's address into a tuple only when a stage needs it
(``kdns.server.wire.PEER_LATER``): these cases put several clients into one recvmmsg batch and
check that every stage that judges the client (ACL, forward.allow, views, autopath's
namespace) judged the datagram's own sender, never the neighbour's in the batch."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import dns.rcode
import pytest

from kdns.app import App
from kdns.config import build_config
from tests.dnsupstream import DnsUpstream

SOURCES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def _flags(**extra: object) -> dict[str, object]:
    flags: dict[str, object] = {"demo": True, "forward": False, "listen": ["127.0.0.1:0"], "metrics_listen": "off", "health_listen": "off", "ready_listen": "off"}  # fmt: skip
    flags.update(extra)
    return flags


def _clients() -> list[socket.socket]:
    clients = []
    for source in SOURCES:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((source, 0))
        except OSError:
            sock.close()
            for other in clients:
                other.close()
            pytest.skip(f"{source} is not bindable here")
        sock.setblocking(False)
        clients.append(sock)
    return clients


async def _replies(clients: list[socket.socket], expected: set[int]) -> dict[int, dns.message.Message]:  # fmt: skip
    """The replies the clients got (by index) once those ``expected`` are in, or after 5 s."""
    got: dict[int, dns.message.Message] = {}
    deadline = asyncio.get_running_loop().time() + 5
    while set(got) != expected and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
        for index, client in enumerate(clients):
            try:
                got[index] = dns.message.from_wire(client.recv(4096))
            except BlockingIOError:
                pass
    return got


async def _one_batch(toml: str, tmp_path: object, questions: list[tuple[str, str]], **flags: object) -> list[dns.message.Message | None]:  # fmt: skip
    """Start kdns in process, send one question from each source before the loop runs (so
    one recvmmsg reads them all), and collect each client's reply (None: no reply)."""
    path = tmp_path / "kdns.toml"  # type: ignore[operator]
    path.write_text(toml)
    config = build_config(str(path), {}, _flags(**flags))
    app = App(config)
    await app.start_source()
    port = (await app.listeners.bind(config.listen[0]))[0].port
    clients = _clients()
    try:
        for client, (name, rdtype) in zip(clients, questions, strict=True):
            client.sendto(dns.message.make_query(name, rdtype).to_wire(), ("127.0.0.1", port))
        got = await _replies(clients, set(range(len(clients))))
        return [got.get(index) for index in range(len(clients))]
    finally:
        for client in clients:
            client.close()
        await app.listeners.close_all()


async def test_acl_judges_each_datagram_of_a_batch_by_its_own_sender(transport: object, tmp_path: object) -> None:  # fmt: skip
    """CoreDNS acl: block -> REFUSED, for the blocked source only, though its query shares a
    batch (and the same pre-rendered answer) with allowed ones."""
    toml = '[acl]\nrules = [{action = "block", net = ["127.0.0.3/32"]}]\n'
    name = "web.shop.svc.cluster.local"
    replies = await _one_batch(toml, tmp_path, [(name, "A")] * 4)
    rcodes = [r.rcode() if r is not None else None for r in replies]
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.NOERROR]


async def test_forward_allow_judges_each_datagram_of_a_batch(transport: object, tmp_path: object) -> None:  # fmt: skip
    """forward.allow (BIND's allow-recursion): a forwarded name is REFUSED to a source outside
    the allowed networks and answered for the others of the same batch."""
    with DnsUpstream({("www.example.org.", "A"): ["192.0.2.1"]}) as up:
        replies = await _one_batch(
            "",
            tmp_path,
            [("www.example.org", "A")] * 4,
            forward=True,
            upstreams=[up.upstream("udp")],
            forward_allow=["127.0.0.1/32", "127.0.0.4/32"],
        )
    rcodes = [r.rcode() if r is not None else None for r in replies]
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.REFUSED, dns.rcode.NOERROR]
    assert replies[0] is not None and replies[0].answer[0][0].to_text() == "192.0.2.1"


async def test_views_pick_each_datagram_of_a_batch_by_its_own_sender(transport: object, tmp_path: object) -> None:  # fmt: skip
    """Views by client network: a view's block list answers its clients only."""
    listfile = tmp_path / "block.txt"  # type: ignore[operator]
    listfile.write_text("web.shop.svc.cluster.local\n")
    toml = (
        f'[[blocklists]]\nname = "kids"\nfile = "{listfile}"\n'
        '[[views]]\nname = "kids"\nnetworks = ["127.0.0.2/32"]\nblocklists = ["kids"]\n'
    )
    name = "web.shop.svc.cluster.local"
    replies = await _one_batch(toml, tmp_path, [(name, "A")] * 4)
    answers = [[rr.to_text() for rrset in r.answer for rr in rrset] if r else None for r in replies]
    assert answers[0] == answers[2] == answers[3] == ["10.96.10.20"]
    assert answers[1] == ["0.0.0.0"]


async def test_a_datagram_without_reply_does_not_shift_the_others(transport: object, tmp_path: object) -> None:  # fmt: skip
    """Replies of a batch leave together (sendmmsg); one datagram that gets no reply (a
    response, dropped: RFC 1035 never answers QR=1) must not send a neighbour's reply to
    the wrong client, in that batch nor in the next (the addresses moved for the gap are put
    back). Round 0's gap is among first sights (replies sent whole), round 2's among reply
    memo hits (sent as the client's ID + the kept reply, each message pointing at a later
    datagram's ID), and rounds 1 and 3 follow each."""
    path = tmp_path / "kdns.toml"  # type: ignore[operator]
    path.write_text("")
    config = build_config(str(path), {}, _flags())
    app = App(config)
    await app.start_source()
    port = (await app.listeners.bind(config.listen[0]))[0].port
    clients = _clients()
    names = ["web.shop.svc.cluster.local", "db.data.svc.cluster.local", "x.shop.svc.cluster.local", "kubernetes.default.svc.cluster.local"]  # fmt: skip
    try:
        for round_ in range(4):
            sent = {}
            for index, client in enumerate(clients):
                q = dns.message.make_query(names[index], "A")
                q.id = 1000 * (round_ + 1) + index
                data = bytearray(q.to_wire())
                if round_ in (0, 2) and index == 1:
                    data[2] |= 0x80  # QR: a response, never answered
                client.sendto(bytes(data), ("127.0.0.1", port))
                sent[index] = q
            expected = {0, 2, 3} if round_ in (0, 2) else {0, 1, 2, 3}
            got = await _replies(clients, expected)
            assert set(got) == expected
            for index, reply in got.items():
                assert reply.id == sent[index].id
                assert reply.question[0].name == sent[index].question[0].name
    finally:
        for client in clients:
            client.close()
        await app.listeners.close_all()
