"""[log] classes: the query log keeps the response classes named, as CoreDNS's log plugin.

CoreDNS log README: "class CLASSES... CLASSES is a space-separated list of classes of responses
which should be logged": success, denial ("either NXDOMAIN or nodata responses"), error
("SERVFAIL, NOTIMP, REFUSED, etc. Anything that indicates the remote server is not willing to
resolve the request") and all (the default).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset
import pytest

from kdns.config import ConfigError, build_config
from kdns.server import querylog


def reply(rcode: int, *, answer: bool = False, soa: bool = False, ns: bool = False) -> bytes:
    query = dns.message.make_query("www.example.com", "A")
    msg = dns.message.make_response(query)
    msg.set_rcode(rcode)
    if answer:
        msg.answer.append(dns.rrset.from_text("www.example.com.", 60, "IN", "A", "192.0.2.1"))
    if soa:
        msg.authority.append(
            dns.rrset.from_text("example.com.", 60, "IN", "SOA", "ns. host. 1 2 3 4 5")
        )
    if ns:
        msg.authority.append(dns.rrset.from_text("example.com.", 60, "IN", "NS", "ns.example."))
    return msg.to_wire()


QUERY = dns.message.make_query("www.example.com", "A").to_wire()
CASES = {
    "answer": (reply(dns.rcode.NOERROR, answer=True), "success"),
    "referral": (reply(dns.rcode.NOERROR, ns=True), "success"),
    "nodata": (reply(dns.rcode.NOERROR, soa=True), "denial"),
    "nxdomain": (reply(dns.rcode.NXDOMAIN, soa=True), "denial"),
    "servfail": (reply(dns.rcode.SERVFAIL), "error"),
    "refused": (reply(dns.rcode.REFUSED), "error"),
}


@pytest.fixture(autouse=True)
def every_class() -> Iterator[None]:
    yield
    querylog.set_classes(("all",))


@pytest.mark.parametrize("case", CASES)
def test_classify(case: str) -> None:
    response, expected = CASES[case]
    assert querylog.classify(response) == expected
    assert querylog.classify(None) == "error"  # dropped: no reply at all


@pytest.mark.parametrize(
    ("classes", "logged"),
    [
        (("error",), {"servfail", "refused"}),  # microk8s/Talos/OpenShift: `log . { class error }`
        (("denial", "error"), {"nodata", "nxdomain", "servfail", "refused"}),
        (("success",), {"answer", "referral"}),
        (("all",), set(CASES)),
    ],
)
def test_only_the_named_classes_are_logged(classes, logged, caplog) -> None:
    querylog.set_classes(classes)
    with caplog.at_level(logging.INFO, logger="kdns.query"):
        for case, (response, _) in CASES.items():
            caplog.clear()
            querylog.log_query("udp", ("127.0.0.1", 5000), QUERY, response, 0.001)
            assert bool(caplog.records) == (case in logged), case


def test_log_classes_setting(tmp_path: Path) -> None:
    path = tmp_path / "kdns.toml"
    path.write_text('[log]\nquery_log = true\nclasses = ["denial", "error"]\n')
    assert build_config(str(path), {}).log_classes == ("denial", "error")
    assert build_config(None, {}).log_classes == ("all",)
    path.write_text('[log]\nclasses = ["failure"]\n')
    with pytest.raises(ConfigError, match="log.classes"):
        build_config(str(path), {})
