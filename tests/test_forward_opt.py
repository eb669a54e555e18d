"""A forwarded reply carries kdns's own OPT record (RFC 6891 6.1.1: the OPT is hop by hop, it
describes the sender), the same whether it came straight from upstream or from the forward
cache. The test upstream (tests/dnsupstream.py) answers with dnspython's OPT, payload 8192: a
client used to see 8192 on a name's first reply and kdns's 1232 on the next."""

from __future__ import annotations

import dns.flags

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import Kdns


def test_forwarded_replies_carry_our_opt_first_and_cached_alike() -> None:
    with DnsUpstream({("www.example.org.", "A"): ["192.0.2.1"]}) as up:
        with Kdns("--demo", "--upstream", up.upstream("udp")) as kdns:
            for do in (False, True):
                name = "www.example.org" if not do else "WWW.example.org"
                first = kdns.query(name, "A", use_edns=0, payload=4096, want_dnssec=do)
                again = kdns.query(name, "A", use_edns=0, payload=4096, want_dnssec=do)
                for reply in (first, again):
                    assert reply.answer and reply.edns == 0
                    assert reply.payload == 1232, reply.payload  # ours, not the upstream's
                    assert bool(reply.ednsflags & dns.flags.DO) == do
                    assert not reply.options
            plain = kdns.query("mail.example.org", "A")  # no EDNS asked: none answered
            assert plain.edns == -1
