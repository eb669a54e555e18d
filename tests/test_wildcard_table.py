"""Wildcard table tests (RFC 4592), in the style of tests/test_resolver_table.py.

The zone is RFC 4592 2.2.1's example (without its delegation, which local zones refuse), served
as a local zone from a zone file, plus a wildcard at the apex of a subtree (``*.apps``) and a
CNAME at a wildcard (``*.cn``). Each case runs the whole pipeline on query bytes:
``Registry`` + ``Resolver`` + ``Responder.respond``, the reply parsed with dnspython. Case ids
cite the RFC section. A second part checks that remembered (derived) answers and killer mode's
invalidation stay exact while wildcards and the names around them change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from kdns.authority.localzones import from_file, from_records
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.model import Service
from kdns.server.wire import Responder

ZONE = """\
$ORIGIN example.
$TTL 3600
example.                 IN  SOA   ns.example.com. hostmaster.example. (
                                   2024010101 ; serial
                                   7200 1800 86400 300 )
example.                     NS    ns.example.com.
example.                     NS    ns.example.net.
*.example.                   TXT   "this is a wildcard"
*.example.                   MX    10 host1.example.
sub.*.example.               TXT   "this is not a wildcard"
host1.example.               A     192.0.2.1
_ssh._tcp.host1.example.     SRV   0 0 22 host1.example.
_ssh._tcp.host2.example.     SRV   0 0 22 host2.example.
; a wildcard at the apex of a subtree, and a CNAME at a wildcard
*.apps                  300  A     192.0.2.9
*.cn                    300  CNAME host1
*.out                   300  CNAME elsewhere.example.org.
"""
SOA = "example. 300 IN SOA ns.example.com. hostmaster.example. 0 7200 1800 86400 300"


class Case(NamedTuple):
    qname: str
    qtype: str
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()


def ok(id_: str, qname: str, qtype: str, *answer: str) -> Any:
    return pytest.param(Case(qname, qtype, "NOERROR", answer), id=id_)


def nodata(id_: str, qname: str, qtype: str) -> Any:
    return pytest.param(Case(qname, qtype, "NOERROR", (), (SOA,)), id=id_)


def nxdomain(id_: str, qname: str, qtype: str) -> Any:
    return pytest.param(Case(qname, qtype, "NXDOMAIN", (), (SOA,)), id=id_)


def build(tmp_path: Path, text: str = ZONE) -> tuple[Registry, Responder]:
    path = tmp_path / "example.zone"
    path.write_text(text)
    zones = ZoneSet.build("cluster.local", (), 5, local_zones=(("example", 300),))
    registry = Registry(zones, ttl=5)
    registry.set_local(from_file("example", str(path)))
    registry.synced = True
    resolver = Resolver(registry)
    responder = Responder(registry.answers, resolver.resolve)
    responder.derived = registry.derived
    return registry, responder


def ask(responder: Responder, qname: str, qtype: str) -> dns.message.Message:
    request = dns.message.make_query(qname, qtype)
    wire = responder.respond(request.to_wire())
    assert isinstance(wire, bytes)
    reply = dns.message.from_wire(wire)
    assert reply.question[0].name.to_text() == request.question[0].name.to_text()  # case kept
    return reply


def lines(section: list[Any]) -> list[str]:
    out = []
    for rrset in section:
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.SOA:
                rdata = rdata.replace(serial=0)
            kind = dns.rdatatype.to_text(rrset.rdtype)
            out.append(f"{rrset.name} {rrset.ttl} IN {kind} {rdata.to_text()}")
    return sorted(out)


@pytest.fixture(scope="module")
def responder(tmp_path_factory: pytest.TempPathFactory) -> Responder:
    return build(tmp_path_factory.mktemp("wild"))[1]


CASES = [
    # RFC 4592 2.2.1: the queries its example zone answers from the wildcard, and those it
    # does not.
    ok("RFC4592 2.2.1 host3 MX is synthesized from *.example", "host3.example.", "MX",
       "host3.example. 3600 IN MX 10 host1.example."),
    nodata("RFC4592 2.2.1 host3 A: the wildcard has no A, NODATA", "host3.example.", "A"),
    ok("RFC4592 2.2.1 foo.bar TXT: a wildcard matches several labels", "foo.bar.example.", "TXT",
       'foo.bar.example. 3600 IN TXT "this is a wildcard"'),
    nodata("RFC4592 2.2.1 host1 MX: an existing name is never covered", "host1.example.", "MX"),
    nodata("RFC4592 2.2.1 sub.*.example MX: exists, NODATA", "sub.*.example.", "MX"),
    nxdomain("RFC4592 2.2.1 _telnet._tcp.host1: the closest encloser is the empty non-terminal "
             "_tcp.host1, which has no wildcard", "_telnet._tcp.host1.example.", "SRV"),
    nxdomain("RFC4592 2.2.1 ghost.*.example: the closest encloser is *.example itself",
             "ghost.*.example.", "MX"),
    ok("RFC4592 2.2.1 _ssh._tcp.host3 SRV: host3 does not exist, so *.example covers it -- "
       "and has no SRV", "_ssh._tcp.host3.example.", "MX",
       "_ssh._tcp.host3.example. 3600 IN MX 10 host1.example."),
    nodata("RFC4592 3.3.1 a covered name without the type is NODATA",
           "_ssh._tcp.host3.example.", "SRV"),
    # Empty non-terminals (RFC 4592 2.2.2): they exist, and stop the wildcard above them.
    nodata("RFC4592 2.2.2 _tcp.host1 is an empty non-terminal: NODATA",
           "_tcp.host1.example.", "TXT"),
    nodata("RFC4592 2.2.2 the wildcard's own parent apps is an empty non-terminal",
           "apps.example.", "A"),
    nxdomain("RFC4592 2.2.2 x._tcp.host2: below an empty non-terminal, no wildcard there",
             "x._tcp.host2.example.", "A"),
    # The wildcard asked for itself (RFC 4592 2.1.1: it is an ordinary name then).
    ok("RFC4592 2.1.1 *.example asked literally", "*.example.", "TXT",
       '*.example. 3600 IN TXT "this is a wildcard"'),
    # A wildcard at the apex of a subtree.
    ok("subtree wildcard: x.apps", "x.apps.example.", "A", "x.apps.example. 300 IN A 192.0.2.9"),
    ok("subtree wildcard: several labels below apps", "a.b.apps.example.", "A",
       "a.b.apps.example. 300 IN A 192.0.2.9"),
    nodata("subtree wildcard: its type only", "x.apps.example.", "AAAA"),
    ok("the apex wildcard still covers names beside the subtree", "x.other.example.", "TXT",
       'x.other.example. 3600 IN TXT "this is a wildcard"'),
    # CNAME at a wildcard (RFC 4592 4.3 / RFC 1034 4.3.2 step 3c): the CNAME is synthesized
    # with the question's name, and the in-zone target chased.
    ok("CNAME at a wildcard: A chases the in-zone target", "www.cn.example.", "A",
       "www.cn.example. 300 IN CNAME host1.example.", "host1.example. 3600 IN A 192.0.2.1"),
    ok("CNAME at a wildcard: any type gets the CNAME", "www.cn.example.", "TXT",
       "www.cn.example. 300 IN CNAME host1.example."),
    ok("CNAME at a wildcard: asked as CNAME", "www.cn.example.", "CNAME",
       "www.cn.example. 300 IN CNAME host1.example."),
    ok("CNAME at a wildcard to a name outside our zones: the CNAME alone (no forwarder)",
       "x.out.example.", "A", "x.out.example. 300 IN CNAME elsewhere.example.org."),
    # Specific names win; letter case is echoed; ANY gives the wildcard's RRsets.
    ok("a specific name is answered from its own records", "host1.example.", "A",
       "host1.example. 3600 IN A 192.0.2.1"),
    ok("the question's letter case owns the synthesized records", "HoSt3.ExAmple.", "MX",
       "HoSt3.ExAmple. 3600 IN MX 10 host1.example."),
    ok("ANY on a covered name: the wildcard's RRsets", "host3.example.", "ANY",
       "host3.example. 3600 IN MX 10 host1.example.",
       'host3.example. 3600 IN TXT "this is a wildcard"'),
    ok("the apex SOA comes from the zone file, with its TTL (negative answers: the MINIMUM, "
       "RFC 2308 3)", "example.", "SOA", SOA.replace(" 300 IN", " 3600 IN")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_wildcard_case(responder: Responder, case: Case) -> None:
    reply = ask(responder, case.qname, case.qtype)
    assert dns.rcode.to_text(reply.rcode()) == case.rcode
    assert reply.flags & dns.flags.AA
    assert lines(reply.answer) == sorted(case.answer)
    assert lines(reply.authority) == sorted(case.authority)


def test_repeated_questions_are_served_from_the_memo(tmp_path: Path) -> None:
    """A synthesized answer is derived once, then served by the hot path's second lookup."""
    registry, responder = build(tmp_path)
    first = lines(ask(responder, "host9.example.", "MX").answer)
    assert b"\x05host9\x07example\x00\x00\x0f\x00\x01" in registry.derived
    assert lines(ask(responder, "host9.example.", "MX").answer) == first
    assert responder.stats.derived_hits == 1


# --- the memo and killer mode's wire cache stay exact while names change ---------------------


def _set(registry: Registry, *extra: str) -> None:
    records = ['* TXT "wild"', "host1 A 192.0.2.1", *extra]
    registry.set_local(from_records("example", records, 300))


def _text(responder: Responder, qname: str, qtype: str = "TXT") -> str:
    reply = ask(responder, qname, qtype)
    return f"{dns.rcode.to_text(reply.rcode())} {' '.join(lines(reply.answer))}"


@pytest.fixture
def live(tmp_path: Path) -> tuple[Registry, Responder, list[tuple[set[bytes], bool]]]:
    registry, responder = build(tmp_path)
    _set(registry)
    told: list[tuple[set[bytes], bool]] = []
    registry.watchers.append(lambda changed, zones, everything: told.append((changed, everything)))
    return registry, responder, told


def test_a_name_made_between_encloser_and_question_drops_the_synthesized_answer(live: Any) -> None:
    """a.b.example came from *.example (closest encloser example). Making x.b.example turns b
    into an empty non-terminal: a.b is then NXDOMAIN, and the memo and the watchers know."""
    registry, responder, told = live
    assert _text(responder, "a.b.example.") == 'NOERROR a.b.example. 300 IN TXT "wild"'
    assert _text(responder, "a.b.example.") == 'NOERROR a.b.example. 300 IN TXT "wild"'  # memo
    _set(registry, "x.b A 192.0.2.7")
    assert _text(responder, "a.b.example.") == "NXDOMAIN "
    changed, everything = told[-1]
    assert names.to_wire("a.b.example") in changed and not everything


def test_a_specific_name_made_where_the_wildcard_answered_wins(live: Any) -> None:
    registry, responder, _ = live
    assert _text(responder, "c.example.") == 'NOERROR c.example. 300 IN TXT "wild"'
    _set(registry, 'c TXT "specific"')
    assert _text(responder, "c.example.") == 'NOERROR c.example. 300 IN TXT "specific"'


def test_a_wildcard_change_drops_every_derived_answer(live: Any) -> None:
    """Changing, adding or removing a wildcard moves the answers of names nobody listed: the
    memo is emptied and the watchers told "everything" (kdns.authority.registry.flush)."""
    registry, responder, told = live
    assert _text(responder, "d.example.") == 'NOERROR d.example. 300 IN TXT "wild"'
    assert _text(responder, "e.host1.example.") == "NXDOMAIN "  # host1 exists: not covered
    registry.set_local(from_records("example", ['* TXT "moved"', "host1 A 192.0.2.1"], 300))
    assert told[-1][1] is True
    assert _text(responder, "d.example.") == 'NOERROR d.example. 300 IN TXT "moved"'
    registry.set_local(from_records("example", ["host1 A 192.0.2.1", '*.host1 TXT "new"'], 300))
    assert _text(responder, "d.example.") == "NXDOMAIN "
    assert _text(responder, "e.host1.example.") == 'NOERROR e.host1.example. 300 IN TXT "new"'
    assert registry.wildcards == {names.to_wire("*.host1.example")}


def test_changes_elsewhere_keep_synthesized_answers(live: Any) -> None:
    """A change that cannot move a synthesized answer (a Service in the cluster zone) leaves
    it remembered; a name made under its closest encloser drops it (a superset of what moved:
    host2 is beside f, not between f and example, but it is never a miss)."""
    registry, responder, told = live
    registry.upsert(_service("a"))  # the namespace appears: everything, once
    _text(responder, "f.example.")
    key = names.to_wire("f.example") + b"\x00\x10\x00\x01"
    assert key in registry.derived
    registry.upsert(_service("b"))
    assert key in registry.derived and told[-1][1] is False
    _set(registry, "host2 A 192.0.2.2")
    assert key not in registry.derived


def _service(name: str) -> Service:
    return Service("x", name, "ClusterIP", ("10.0.0.9",), False, "", (), (), (), False)


def test_an_empty_non_terminal_wildcard_answers_nodata(tmp_path: Path) -> None:
    """``a.*.example`` makes ``*.example`` exist without records: it still is the source of
    synthesis (RFC 4592 2.2.1's "sub.*.example" case from the other side): NODATA."""
    registry, responder = build(tmp_path)
    registry.set_local(from_records("example", ['sub.* TXT "deep"'], 300))
    reply = ask(responder, "zzz.example.", "A")
    assert dns.rcode.to_text(reply.rcode()) == "NOERROR" and not reply.answer
    assert [line.split()[3] for line in lines(reply.authority)] == ["SOA"]
