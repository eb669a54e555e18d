"""[[rewrite]] and [[template]]: CoreDNS's rewrite and template plugins as kdns stages.

CoreDNS rewrite README (plugin/rewrite/README.md): "rewrite [continue|stop] FIELD [TYPE]
[(FROM TO)|TTL] [OPTIONS]"; "exact (default): on an exact match of the name"; "prefix: when
the name begins with the matching string"; "suffix: when the name ends with the matching
string"; "substring: on a partial match"; "regex: ... {1} and {2} are regular expression match
groups"; "continue will continue applying the next rule ... stop will consider the current rule
the last rule ... The default behaviour is stop"; "answer auto - the names in the response is
rewritten in a best effort manner"; "answers for rewrites of type exact are always rewritten";
"For a suffix name rule auto leads to a reverse suffix response rewrite"; "answer name FROM TO
- the query name in the response is rewritten matching the from regex pattern"; "to rewrite
ANY queries to HINFO, use rewrite type ANY HINFO"; "If the newly used name is not a legal
domain name, the plugin returns an error to the client".

CoreDNS template README (plugin/template/README.md): "template CLASS TYPE [ZONE...] { match
REGEX... answer RR additional RR authority RR rcode CODE fallthrough [FALLTHROUGH-ZONE...] }";
"TYPE the query type (A, PTR, ... can be ANY to match all types)"; "ZONE ... Defaults to the
server zones"; "Specifying no regex matches everything (default: .*). First matching regex
wins"; "rcode CODE ... The default is NOERROR"; "Without fallthrough, when the template's ZONE
matches a query but no regex match then a SERVFAIL response is returned"; ".Name the query
name, as a string (lowercased)"; ".Match an array of all matches. index .Match 0 refers to the
whole match"; ".Group a map of the named capture groups".
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.app import App
from kdns.config import Config, build_config
from kdns.corefile import import_text
from kdns.dns import names
from kdns.model import Service
from kdns.rules.rewrite import RuleError, rule_from_table
from kdns.rules.template import TemplateError, template_from_table
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, Kdns
from tests.test_killer import _started

CLUSTER = str(FIXTURES / "cluster.yaml")
OFF = {"metrics_listen": "off", "health_listen": "off", "ready_listen": "off"}


def _config(rewrite: list[dict[str, Any]] = (), template: list[dict[str, Any]] = (), **flags: Any) -> Config:  # type: ignore[assignment]  # fmt: skip
    values: dict[str, Any] = {"demo": True, "forward": False, "listen": ["127.0.0.1:0"], **OFF}
    values.update(flags)
    values["rewrites"] = [rule_from_table(r) for r in rewrite]
    values["templates"] = [template_from_table(t) for t in template]
    return build_config(None, {}, values)


async def _app(config: Config) -> App:
    app = App(config)
    await app.start_source()
    return app


def _ask(app: App, name: str, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    out = app.responder.respond(q.to_wire())
    assert isinstance(out, bytes), out
    return dns.message.from_wire(out)


def _texts(msg: dns.message.Message) -> list[str]:
    return sorted(f"{rrset.name} {rd.to_text()}" for rrset in msg.answer for rd in rrset)


# ----------------------------------------------------------------------------- rewrite table

# (rule tables, qname, qtype) -> (rcode, answer "owner rdata" lines), demo cluster
# (web.shop 10.96.10.20, kubernetes.default 10.96.0.1, payments.shop ExternalName).
REWRITE_CASES: list[tuple[str, list[dict[str, Any]], str, str, str, list[str]]] = [
    # AKS docs / home-ops: name regex ... answer auto: the owner is the name asked.
    (
        "regex auto",
        [
            {
                "match": "regex",
                "from": r"(.*)\.foo\.example",
                "to": "{1}.shop.svc.cluster.local",
                "answer": "auto",
            }
        ],  # fmt: skip
        "web.foo.example",
        "A",
        "NOERROR",
        ["web.foo.example. 10.96.10.20"],
    ),
    # regex without an answer rule: the question is the client's, the answer the target's
    # (vcluster's `rewrite name regex .*\.nodes\.vcluster\.com kubernetes.default...`).
    (
        "regex plain",
        [
            {
                "match": "regex",
                "from": r".*\.nodes\.vcluster\.com",
                "to": "kubernetes.default.svc.cluster.local",
            }
        ],  # fmt: skip
        "node1.nodes.vcluster.com",
        "A",
        "NOERROR",
        ["kubernetes.default.svc.cluster.local. 10.96.0.1"],
    ),  # fmt: skip
    # exact: always rewritten back.
    (
        "exact",
        [{"from": "a.example", "to": "web.shop.svc.cluster.local"}],
        "a.example",
        "A",
        "NOERROR",
        ["a.example. 10.96.10.20"],
    ),
    (
        "exact miss",
        [{"from": "a.example", "to": "web.shop.svc.cluster.local"}],
        "b.example",
        "A",
        "REFUSED",
        [],
    ),
    # suffix with answer auto: the reverse suffix rewrite.
    (
        "suffix auto",
        [
            {
                "match": "suffix",
                "from": ".corp.example",
                "to": ".shop.svc.cluster.local",
                "answer": "auto",
            }
        ],  # fmt: skip
        "web.corp.example",
        "A",
        "NOERROR",
        ["web.corp.example. 10.96.10.20"],
    ),
    (
        "prefix auto",
        [{"match": "prefix", "from": "www.", "to": "web.", "answer": "auto"}],
        "www.shop.svc.cluster.local",
        "A",
        "NOERROR",
        ["www.shop.svc.cluster.local. 10.96.10.20"],
    ),  # fmt: skip
    (
        "substring auto",
        [
            {"match": "substring", "from": ".legacy.", "to": ".shop.svc.", "answer": "auto"}
        ],  # fmt: skip
        "web.legacy.cluster.local",
        "A",
        "NOERROR",
        ["web.legacy.cluster.local. 10.96.10.20"],
    ),
    # answer name FROM TO (the README's explicit response rewrite).
    (
        "regex answer name",
        [
            {
                "match": "regex",
                "from": r"(.*)-(shop)\.example",
                "to": "{1}.{2}.svc.cluster.local",  # fmt: skip
                "answer_name": [r"(.*)\.(shop)\.svc\.cluster\.local", "{1}-{2}.example"],
            }
        ],  # fmt: skip
        "web-shop.example",
        "A",
        "NOERROR",
        ["web-shop.example. 10.96.10.20"],
    ),
    # a target that does not exist: NXDOMAIN of the target's zone, the client's question.
    (
        "regex nxdomain",
        [
            {
                "match": "regex",
                "from": r"(.*)\.foo\.example",
                "to": "{1}.shop.svc.cluster.local",
                "answer": "auto",
            }
        ],  # fmt: skip
        "nothere.foo.example",
        "A",
        "NXDOMAIN",
        [],
    ),
    # ExternalName through a rewrite: the CNAME owner mapped back, its target left alone.
    (
        "cname chain",
        [
            {
                "match": "regex",
                "from": r"(.*)\.foo\.example",
                "to": "{1}.shop.svc.cluster.local",
                "answer": "auto",
            }
        ],  # fmt: skip
        "payments.foo.example",
        "A",
        "NOERROR",
        ["payments.foo.example. payments.example.net."],
    ),
    # stop (default) ends the list; continue goes on.
    (
        "stop",
        [
            {"from": "a.example", "to": "b.example"},
            {"from": "b.example", "to": "web.shop.svc.cluster.local"},
        ],  # fmt: skip
        "a.example",
        "A",
        "REFUSED",
        [],
    ),
    (
        "continue",
        [
            {"from": "a.example", "to": "b.example", "continue": True},
            {"from": "b.example", "to": "web.shop.svc.cluster.local"},
        ],  # fmt: skip
        "a.example",
        "A",
        "NOERROR",
        ["a.example. 10.96.10.20"],
    ),
    # type: rewrite type ANY HINFO's shape (here AAAA -> A for a v4-only Service).
    (
        "type",
        [{"field": "type", "from": "AAAA", "to": "A"}],
        "web.shop.svc.cluster.local",
        "AAAA",
        "NOERROR",
        ["web.shop.svc.cluster.local. 10.96.10.20"],
    ),  # fmt: skip
    # class: CH -> IN.
    (
        "class",
        [{"field": "class", "from": "CH", "to": "IN"}],
        "web.shop.svc.cluster.local",
        "A",
        "NOERROR",
        ["web.shop.svc.cluster.local. 10.96.10.20"],
    ),  # fmt: skip
    # a name no rule matches: the normal path, untouched.
    (
        "untouched",
        [
            {"match": "regex", "from": r"(.*)\.foo\.example", "to": "{1}.shop.svc.cluster.local"}
        ],  # fmt: skip
        "web.shop.svc.cluster.local",
        "A",
        "NOERROR",
        ["web.shop.svc.cluster.local. 10.96.10.20"],
    ),  # fmt: skip
    # not a legal name: SERVFAIL ("returns an error to the client").
    (
        "illegal",
        [
            {
                "match": "regex",
                "from": r"(.*)\.foo\.example",
                "to": "{1}{1}{1}{1}{1}.shop.svc.cluster.local",
            }
        ],  # fmt: skip
        "x" * 60 + ".foo.example",
        "A",
        "SERVFAIL",
        [],
    ),
]


@pytest.mark.parametrize("case", REWRITE_CASES, ids=[c[0] for c in REWRITE_CASES])
async def test_rewrite_table(case: tuple[str, list[dict[str, Any]], str, str, str, list[str]]) -> None:  # fmt: skip
    _, rules, qname, qtype, rcode, answer = case
    app = await _app(_config(rules))
    kw = {"rdclass": "CH"} if case[0] == "class" else {}
    reply = _ask(app, qname, qtype, **kw)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert [str(q.name) for q in reply.question] == [qname + "."]
    assert dns.rdatatype.to_text(reply.question[0].rdtype) == qtype  # the client's question
    assert _texts(reply) == answer


async def test_rewrite_echoes_the_clients_letter_case() -> None:
    app = await _app(_config([{"match": "regex", "from": r"(.*)\.foo\.example", "to": "{1}.shop.svc.cluster.local", "answer": "auto"}]))  # fmt: skip
    reply = _ask(app, "WeB.Foo.Example")
    assert str(reply.question[0].name) == "WeB.Foo.Example."
    assert str(reply.answer[0].name) == "WeB.Foo.Example."


async def test_a_cluster_name_no_rule_matches_costs_one_set_lookup() -> None:
    """Once asked, a question no rule matches is in ``passes``: the hot path's one extra
    check; the rules are not run for it again."""
    app = await _app(_config([{"match": "regex", "from": r"(.*)\.foo\.example", "to": "{1}.shop.svc.cluster.local"}]))  # fmt: skip
    stage = app.responder.rewrite
    assert stage is not None
    _ask(app, "web.shop.svc.cluster.local")
    key = names.to_wire("web.shop.svc.cluster.local") + b"\x00\x01\x00\x01"
    assert key in stage.passes
    made = stage._make
    calls: list[bytes] = []
    stage._make = lambda k: calls.append(k) or made(k)  # type: ignore[method-assign]
    for _ in range(3):
        _ask(app, "web.shop.svc.cluster.local")
    assert calls == []


async def test_neither_stage_configured_leaves_the_responder_bare() -> None:
    app = await _app(_config())
    assert app.responder.rewrite is None and app.responder.template is None


async def test_rewritten_reply_is_cut_to_the_clients_udp_size() -> None:
    """The reply is rebuilt after the rewrite (names uncompressed, the client's question):
    what no longer fits 512 bytes keeps whole records and sets TC."""
    records = [f"x{i:02d}-a-long-label-to-fill-the-reply-past-five-hundred-bytes 60 A 192.0.2.{i}" for i in range(1)]  # fmt: skip
    config = _config(
        [{"match": "suffix", "from": ".alias.example", "to": ".big.example", "answer": "auto"}],
        local_zones=[
            {
                "name": "big.example",
                "records": records + [f"many 60 A 198.51.100.{i}" for i in range(40)],
            }
        ],  # fmt: skip
    )
    app = await _app(config)
    reply = _ask(app, "many.alias.example", use_edns=False)
    assert reply.flags & dns.flags.TC
    assert str(reply.question[0].name) == "many.alias.example."
    full = _ask(app, "many.alias.example", use_edns=0, payload=4096)
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 40


def test_rewrite_rules_are_checked() -> None:
    with pytest.raises(RuleError, match="bad regular expression"):
        rule_from_table({"match": "regex", "from": "(", "to": "x"})
    with pytest.raises(RuleError, match="unknown record type"):
        rule_from_table({"field": "type", "from": "NOPE", "to": "A"})
    with pytest.raises(RuleError) as info:
        rule_from_table({"from": "a", "to": "b", "oops": 1})
    assert info.value.key == ".oops"


# ----------------------------------------------------------------------------- template table

TEMPLATE_CASES: list[tuple[str, list[dict[str, Any]], str, str, str, list[str]]] = [
    # AKS's and CCE's block: template ANY AAAA { rcode NXDOMAIN } (outside names).
    (
        "aaaa nxdomain",
        [{"class": "ANY", "type": "AAAA", "rcode": "NXDOMAIN"}],
        "www.example.org",
        "AAAA",
        "NXDOMAIN",
        [],
    ),
    (
        "aaaa block leaves A",
        [{"class": "ANY", "type": "AAAA", "rcode": "NXDOMAIN"}],
        "www.example.org",
        "A",
        "REFUSED",
        [],
    ),
    # ... and a cluster name that exists keeps its records (kdns's stage order).
    (
        "aaaa block keeps cluster",
        [{"class": "ANY", "type": "AAAA", "rcode": "NXDOMAIN"}],
        "api.shop.svc.cluster.local",
        "AAAA",
        "NOERROR",
        ["api.shop.svc.cluster.local. fd00:10:96::1e"],
    ),  # fmt: skip
    # CCE / AKS: template IN ANY example.com { match ...; rcode NXDOMAIN }.
    (
        "zone match nxdomain",
        [
            {
                "type": "ANY",
                "zones": ["example.com"],
                "match": [r"^(.*)\.example\.com\.cluster\.local\.$", r"^blocked\.example\.com\.$"],
                "rcode": "NXDOMAIN",
                "fallthrough": True,
            }
        ],  # fmt: skip
        "blocked.example.com",
        "A",
        "NXDOMAIN",
        [],
    ),
    (
        "zone match falls through",
        [
            {
                "type": "ANY",
                "zones": ["example.com"],
                "match": [r"^blocked\.example\.com\.$"],
                "rcode": "NXDOMAIN",
                "fallthrough": True,
            }
        ],  # fmt: skip
        "ok.example.com",
        "A",
        "REFUSED",
        [],
    ),
    # zone matches, no regex, no fallthrough: SERVFAIL.
    (
        "no fallthrough",
        [{"type": "A", "zones": ["example.com"], "match": ["^nothing$"]}],
        "ok.example.com",
        "A",
        "SERVFAIL",
        [],
    ),
    # an answer from a pattern, with regex groups (index .Match N).
    (
        "answer index match",
        [
            {
                "type": "A",
                "zones": ["example"],
                "match": [r"^ip-(\d+)-(\d+)-(\d+)-(\d+)[.]example[.]$"],
                "answer": [
                    "{{ .Name }} 60 IN A {{ index .Match 1 }}.{{ index .Match 2 }}.{{ index .Match 3 }}.{{ index .Match 4 }}"
                ],
                "fallthrough": True,
            }
        ],  # fmt: skip
        "ip-10-1-2-3.example",
        "A",
        "NOERROR",
        ["ip-10-1-2-3.example. 10.1.2.3"],
    ),
    # named groups and parseInt (the README's hexadecimal example).
    (
        "group parseint",
        [
            {
                "type": "A",
                "zones": ["example"],
                "match": [
                    r"^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
                ],
                "answer": [
                    "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
                ],
            }
        ],  # fmt: skip
        "ip0a7b7b7b.example",
        "A",
        "NOERROR",
        ["ip0a7b7b7b.example. 10.123.123.123"],
    ),
    # type mismatch: the template is skipped (with fallthrough, the path goes on).
    (
        "type mismatch",
        [
            {"type": "A", "zones": ["example"], "answer": ["{{ .Name }} 60 IN A 10.0.0.1"]}
        ],  # fmt: skip
        "x.example",
        "MX",
        "REFUSED",
        [],
    ),
    # the homelab corpus fixture: a wildcard zone answered with one address.
    (
        "homelab",
        [
            {
                "type": "A",
                "zones": ["fzen.pro"],
                "match": [r"(^[\w\-_]*[.]|^.*[.]pages[.])fzen[.]pro[.]$"],
                "answer": ["{{ .Name }}  60  IN  A  192.168.2.2"],
                "fallthrough": True,
            }
        ],  # fmt: skip
        "grafana.fzen.pro",
        "A",
        "NOERROR",
        ["grafana.fzen.pro. 192.168.2.2"],
    ),
    # a CNAME fabricated for foogle.com (the README's last example).
    (
        "fabricated cname",
        [
            {
                "type": "ANY",
                "zones": ["foogle.com"],
                "match": [r"^foogle\.com\.$"],
                "answer": ["foogle.com 60 IN CNAME google.com"],
            }
        ],  # fmt: skip
        "foogle.com",
        "A",
        "NOERROR",
        ["foogle.com. google.com."],
    ),
    # NXDOMAIN names of our own zones are asked too.
    (
        "own nxdomain",
        [
            {
                "type": "A",
                "zones": ["cluster.local"],
                "match": [r"^legacy\."],
                "answer": ["{{ .Name }} 60 IN A 10.9.9.9"],
                "fallthrough": True,
            }
        ],  # fmt: skip
        "legacy.cluster.local",
        "A",
        "NOERROR",
        ["legacy.cluster.local. 10.9.9.9"],
    ),
]


@pytest.mark.parametrize("case", TEMPLATE_CASES, ids=[c[0] for c in TEMPLATE_CASES])
async def test_template_table(case: tuple[str, list[dict[str, Any]], str, str, str, list[str]]) -> None:  # fmt: skip
    _, templates, qname, qtype, rcode, answer = case
    app = await _app(_config(template=templates))
    reply = _ask(app, qname, qtype)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert _texts(reply) == answer
    if answer:
        assert reply.flags & dns.flags.AA


def test_template_entries_are_checked() -> None:
    with pytest.raises(TemplateError, match="not supported"):
        template_from_table({"answer": ["{{ .Message }} 60 IN A 10.0.0.1"]})
    with pytest.raises(TemplateError, match="expected one of"):
        template_from_table({"rcode": "NOPE"})
    with pytest.raises(TemplateError, match="bad regular expression"):
        template_from_table({"match": ["("]})


# ----------------------------------------------------------------------------- the importer

IMPORT_CASES = [
    # AKS docs (coredns-custom): a rewrite to a cluster Service with answer auto.
    (
        "rewrite name regex (.*)\\.foo\\.example {1}.default.svc.cluster.local answer auto",
        {
            "field": "name",
            "match": "regex",
            "from": "(.*)\\.foo\\.example",
            "to": "{1}.default.svc.cluster.local",
            "answer": "auto",
        },
    ),  # fmt: skip
    # Gardener / the rewrite README's strict block form.
    (
        "rewrite stop {\n  name regex (.*)\\.my\\.domain {1}.svc.cluster.local\n  answer name (.*)\\.svc\\.cluster\\.local {1}.my.domain\n }",  # fmt: skip
        {
            "field": "name",
            "match": "regex",
            "from": "(.*)\\.my\\.domain",
            "to": "{1}.svc.cluster.local",
            "answer_name": [["(.*)\\.svc\\.cluster\\.local", "{1}.my.domain"]],
        },
    ),  # fmt: skip
    # home-ops: exact.
    (
        "rewrite name exact a.example b.svc.cluster.local",
        {"field": "name", "match": "exact", "from": "a.example", "to": "b.svc.cluster.local"},
    ),
    (
        "rewrite continue name suffix .old.example .new.example answer auto",
        {
            "field": "name",
            "match": "suffix",
            "from": ".old.example",
            "to": ".new.example",
            "answer": "auto",
            "continue": True,
        },
    ),  # fmt: skip
    (
        "rewrite name foo.example.com foo.default.svc.cluster.local",
        {"field": "name", "from": "foo.example.com", "to": "foo.default.svc.cluster.local"},
    ),
    ("rewrite type ANY HINFO", {"field": "type", "from": "ANY", "to": "HINFO"}),
    # AKS's and CCE's template blocks.
    (
        "template ANY AAAA {\n  rcode NXDOMAIN\n }",
        {"class": "ANY", "type": "AAAA", "zones": ["."], "rcode": "NXDOMAIN"},
    ),
    (
        'template IN ANY example.com {\n  match "^(.*)\\.example\\.com\\.cluster\\.local\\.$"\n  rcode NXDOMAIN\n  fallthrough\n }',  # fmt: skip
        {
            "class": "IN",
            "type": "ANY",
            "zones": ["example.com"],
            "match": ["^(.*)\\.example\\.com\\.cluster\\.local\\.$"],
            "rcode": "NXDOMAIN",
            "fallthrough": True,
        },
    ),  # fmt: skip
    (
        'template IN A example {\n  match "^ip-(\\d+)[.]example[.]$"\n  answer "{{ .Name }} 60 IN A 10.0.0.{{ index .Match 1 }}"\n }',  # fmt: skip
        {
            "class": "IN",
            "type": "A",
            "zones": ["example"],
            "match": ["^ip-(\\d+)[.]example[.]$"],
            "answer": ["{{ .Name }} 60 IN A 10.0.0.{{ index .Match 1 }}"],
        },
    ),  # fmt: skip
]


@pytest.mark.parametrize("directive,table", IMPORT_CASES, ids=[c[0].split("\n")[0] for c in IMPORT_CASES])  # fmt: skip
def test_importer_maps_the_published_forms(directive: str, table: dict[str, Any], tmp_path: Path) -> None:  # fmt: skip
    text = f".:53 {{\n kubernetes cluster.local\n {directive}\n forward . 192.0.2.53\n}}\n"
    result = import_text(text, "Corefile", {})
    assert result.problems == []
    path = tmp_path / "kdns.toml"
    path.write_text(result.toml)
    config = build_config(str(path), {})
    loaded = [*config.rewrites, *config.templates]
    assert len(loaded) == 1
    expected = rule_from_table(table) if "to" in table else template_from_table(table)
    assert loaded[0] == expected


def test_importer_reports_what_it_cannot_rewrite() -> None:
    text = ".:53 {\n kubernetes cluster.local\n rewrite edns0 local set 0xffee abcd\n rewrite ttl example.com 15\n}\n"  # fmt: skip
    problems = import_text(text, "Corefile", {}).problems
    assert len(problems) == 2 and all("rewrites the question's name" in p for p in problems)
    text = ".:53 {\n template ANY A {\n  ederror 21 blocked\n  rcode NXDOMAIN\n }\n}\n"
    assert any("ederror" in p for p in import_text(text, "Corefile", {}).problems)


# ----------------------------------------------------------------------------- reload, killer


def _udp(sock: socket.socket, port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    sock.sendto(dns.message.make_query(name, rdtype).to_wire(), ("127.0.0.1", port))
    data, _ = sock.recvfrom(4096)
    return dns.message.from_wire(data)


@pytest.mark.parametrize("killer", [False, True])
async def test_a_reload_that_changes_rules_takes_effect_at_once(killer: bool) -> None:
    """Standard and killer mode: a rewritten and a templated reply are asked until killer's
    wire cache holds them; a reload with other rules is answered from the next query on."""
    rewrite = [{"from": "alias.example", "to": "web.shop.svc.cluster.local"}]
    template = [{"type": "A", "zones": ["tpl.example"], "answer": ["{{ .Name }} 60 IN A 10.0.0.1"]}]  # fmt: skip
    config = _config(rewrite, template, killer=killer)
    app, port = await _started(config)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)

    async def ask(name: str) -> list[str]:
        return _texts(await loop.run_in_executor(None, _udp, sock, port, name))

    try:
        for _ in range(3):
            assert await ask("alias.example") == ["alias.example. 10.96.10.20"]
            assert await ask("x.tpl.example") == ["x.tpl.example. 10.0.0.1"]
        if killer:
            assert app.killer is not None and app.killer.wire.counters()["hits"] >= 2
        new = dataclasses.replace(
            config,
            rewrites=(
                rule_from_table(
                    {"from": "alias.example", "to": "kubernetes.default.svc.cluster.local"}
                ),
            ),  # fmt: skip
            templates=(
                template_from_table(
                    {
                        "type": "A",
                        "zones": ["tpl.example"],
                        "answer": ["{{ .Name }} 60 IN A 10.0.0.2"],
                    }
                ),
            ),  # fmt: skip
        )
        await app.apply(new, "test")
        assert await ask("alias.example") == ["alias.example. 10.96.0.1"]
        assert await ask("x.tpl.example") == ["x.tpl.example. 10.0.0.2"]
        await app.apply(dataclasses.replace(new, rewrites=(), templates=()), "test")
        assert app.responder.rewrite is None and app.responder.template is None
        reply = await loop.run_in_executor(None, _udp, sock, port, "alias.example")
        assert reply.rcode() == dns.rcode.REFUSED  # no rule, no forwarding
    finally:
        sock.close()
        await app.listeners.close_all()


async def test_killer_drops_a_rewritten_reply_when_its_target_changes() -> None:
    """The wire cache keys a rewritten reply by the client's question; it is filed under the
    rewritten name too, so the target Service's edit drops it before the next query."""
    config = _config([{"from": "alias.example", "to": "web.shop.svc.cluster.local"}], killer=True)
    app, port = await _started(config)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    try:
        for _ in range(3):
            reply = await loop.run_in_executor(None, _udp, sock, port, "alias.example")
            assert _texts(reply) == ["alias.example. 10.96.10.20"]
        assert app.killer is not None and app.killer.wire.counters()["hits"] >= 1
        old = app.registry.services[("shop", "web")]
        assert isinstance(old, Service)
        app.registry.upsert(old._replace(cluster_ips=("10.96.10.99",)))
        reply = await loop.run_in_executor(None, _udp, sock, port, "alias.example")
        assert _texts(reply) == ["alias.example. 10.96.10.99"]
    finally:
        sock.close()
        await app.listeners.close_all()


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("killer", [False, True])
def test_serve_with_rules_over_udp_and_tcp(killer: bool, tmp_path: Path) -> None:
    """A real ``kdns serve`` with [[rewrite]] and [[template]] tables, asked on loopback over
    UDP and TCP: a rewritten cluster name, a rewritten outside name forwarded upstream (the
    upstream sees the rewritten name, the client its own), a templated answer, an AAAA block."""
    records = {("www.upstream.example.", "A"): ["192.0.2.10"]}
    with DnsUpstream(records) as up:
        conf = tmp_path / "kdns.toml"
        conf.write_text(
            f'[forward]\nupstreams = ["{up.upstream()}"]\n'
            "[[rewrite]]\n"
            'match = "regex"\n'
            "from = '(.*)\\.foo\\.example'\n"
            'to = "{1}.prod.svc.cluster.local"\n'
            'answer = "auto"\n'
            "[[rewrite]]\n"
            'match = "suffix"\n'
            'from = ".mirror.example"\n'
            'to = ".upstream.example"\n'
            'answer = "auto"\n'
            "[[template]]\n"
            'type = "A"\n'
            'zones = ["example"]\n'
            "match = ['^ip-(\\d+)-(\\d+)-(\\d+)-(\\d+)[.]example[.]$']\n"
            'answer = ["{{ .Name }} 60 IN A {{ index .Match 1 }}.{{ index .Match 2 }}.{{ index .Match 3 }}.{{ index .Match 4 }}"]\n'  # noqa: E501
            "fallthrough = true\n"
            "[[template]]\n"
            'class = "ANY"\n'
            'type = "AAAA"\n'
            'zones = ["upstream.example"]\n'
            'rcode = "NXDOMAIN"\n'
        )
        args = ["-c", str(conf), "--objects", CLUSTER] + (["--killer"] if killer else [])
        with Kdns(*args) as proc:
            for tcp in (False, True):
                for _ in range(2):  # the second UDP round: killer's wire cache
                    reply = proc.query("frontend.foo.example", tcp=tcp)
                    assert _texts(reply) == ["frontend.foo.example. 10.0.10.10"]
                    reply = proc.query("www.mirror.example", tcp=tcp)
                    assert _texts(reply) == ["www.mirror.example. 192.0.2.10"]
                    assert str(reply.question[0].name) == "www.mirror.example."
                    reply = proc.query("ip-10-20-30-40.example", tcp=tcp)
                    assert _texts(reply) == ["ip-10-20-30-40.example. 10.20.30.40"]
                    assert proc.query("www.upstream.example", "AAAA", tcp=tcp).rcode() == dns.rcode.NXDOMAIN  # fmt: skip
                    # a cluster name no rule touches
                    reply = proc.query("kubernetes.default.svc.cluster.local", tcp=tcp)
                    assert _texts(reply) == ["kubernetes.default.svc.cluster.local. 10.0.0.1"]
            assert "www.upstream.example." in up.names()
            assert not any("mirror" in n for n in up.names())
