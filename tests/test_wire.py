"""The hot path in isolation: header accept check, EDNS, truncation, and fuzzing."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns.answer import Answer
from kdns.dns.records import QNAME_POINTER, A, rrset
from kdns.model import Service
from kdns.server.wire import Responder


def _responder() -> Responder:
    registry = Registry(ZoneSet.build("cluster.local", (), 5))
    registry.upsert(
        Service("default", "web", "ClusterIP", ("10.0.0.1",), False, "", (), (), (), False)
    )
    registry.synced = True
    return Responder(registry.answers, Resolver(registry).resolve)


RESPONDER = _responder()
QUERY = dns.message.make_query("web.default.svc.cluster.local", "A", id=0x1234).to_wire()


def test_hit_is_clients_header_and_question_plus_body() -> None:
    out = RESPONDER.respond(QUERY)
    assert out is not None
    assert out[:2] == QUERY[:2]
    assert out[12 : len(QUERY)] == QUERY[12:]  # the client's own question bytes
    msg = dns.message.from_wire(out)
    assert msg.flags & dns.flags.QR and msg.flags & dns.flags.AA and msg.flags & dns.flags.RD


def test_rd_and_cd_copied_ra_never_set() -> None:
    """RFC 1035 4.1.1: RD copied into the response; RFC 4035 3.1.6 (CD) likewise."""
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    q.flags = dns.flags.CD  # RD off, CD on
    msg = dns.message.from_wire(RESPONDER.respond(q.to_wire()) or b"")
    assert not msg.flags & dns.flags.RD and msg.flags & dns.flags.CD
    assert not msg.flags & dns.flags.RA


def test_fit_cuts_at_rrset_boundaries() -> None:
    """RFC 2181 9: TC only when an answer/authority RRset is dropped; additional silently."""
    big = rrset(QNAME_POINTER, A, 5, [bytes([10, 0, i // 256, i % 256]) for i in range(40)])
    glue = rrset(b"\x01x\x00", A, 5, [b"\x0a\x00\x00\x01"])
    answer = Answer(0, True, ((big,), (), (glue,)))
    counts, body, truncated = answer.fit(len(big[0]), edns=False)
    assert not truncated and body == big[0] and counts == b"\x00\x28\x00\x00\x00\x00"
    # The answer RRset does not fit whole: its leading whole records do (as CoreDNS), with TC.
    counts, body, truncated = answer.fit(len(big[0]) - 1, edns=True)
    assert truncated and body == big[0][: 39 * 16] and counts == b"\x00\x27\x00\x00\x00\x01"
    counts, body, truncated = answer.fit(15, edns=False)
    assert truncated and body == b"" and counts == b"\x00\x00\x00\x00\x00\x00"


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    out = RESPONDER.respond(data)
    if out is not None:
        assert len(out) >= 12 and out[:2] == data[:2] and out[2] & 0x80


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(QUERY) + 20), st.integers(0, 255)), min_size=1, max_size=6
    )
)
def test_mutated_queries_never_raise(edits: list[tuple[int, int]]) -> None:
    data = bytearray(QUERY + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00")
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
        else:
            data.append(value)
    out = RESPONDER.respond(bytes(data))
    if out is not None:
        msg = dns.message.from_wire(out, ignore_trailing=True, question_only=True)
        assert msg.id == int.from_bytes(data[:2], "big")
        assert msg.rcode() in (
            dns.rcode.NOERROR,
            dns.rcode.NXDOMAIN,
            dns.rcode.FORMERR,
            dns.rcode.NOTIMP,
            dns.rcode.REFUSED,
            dns.rcode.SERVFAIL,
            dns.rcode.BADVERS,
        )


def test_label_containing_a_length_byte_is_not_a_pod_name() -> None:
    """A single label b"xx\\x03pod" under the zone ends like ".pod.<zone>" byte-wise but is not
    below pod.<zone>: NXDOMAIN, no exception (label boundaries, RFC 1035 3.1)."""
    wire = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"\x06xx\x03pod\x07cluster\x05local\x00"
        + b"\x00\x01\x00\x01"
    )
    out = RESPONDER.respond(wire)
    assert out is not None and out[3] & 0x0F == dns.rcode.NXDOMAIN


def test_tcp_stops_reading_while_the_client_does_not_read() -> None:
    """asyncio flow control: a full write buffer pauses reading from that client."""
    from kdns.server.stats import Stats
    from kdns.server.tcp import TcpConnection, TcpServer

    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

        def is_closing(self) -> bool:
            return False

        def is_reading(self) -> bool:
            return not self.paused

        def get_write_buffer_size(self) -> int:
            return 0

    async def main() -> None:  # pause_writing arms the write deadline on the running loop
        conn = TcpConnection(TcpServer(RESPONDER, Stats()))
        transport = Transport()
        conn.transport = transport  # type: ignore[assignment]
        conn.pause_writing()
        assert transport.paused
        conn.resume_writing()
        assert not transport.paused

    asyncio.run(main())
