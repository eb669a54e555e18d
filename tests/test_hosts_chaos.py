"""[hosts] and [chaos]: CoreDNS's hosts and chaos plugins as stages of kdns's local data.

CoreDNS hosts README: "INLINE the hosts file contents inlined in Corefile"; "ttl change the
DNS TTL of the records generated (forward and reverse). The default is 3600 seconds";
"no_reverse disable the automatic generation of the in-addr.arpa or ip6.arpa entries for the
hosts"; "reload change the period between each hostsfile modification time check";
"fallthrough If zone matches and no record can be generated, pass request to the next plugin.
If [ZONES...] is omitted, then fallthrough happens for all zones for which the plugin is
authoritative." Without fallthrough a name not listed gets SERVFAIL (hosts.go: "we don't have
a SOA"). CoreDNS chaos README: "chaos [VERSION] [AUTHORS...]" answers version.bind,
version.server, authors.bind, hostname.bind and id.server (CH TXT).
"""

from __future__ import annotations

import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdataclass

from kdns.authority.hosts import Hosts, parse_lines
from kdns.dns import names
from kdns.dns.records import AAAA, MX, PTR, SERVFAIL, A
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, LOOPBACK, Kdns

CLUSTER = str(FIXTURES / "cluster.yaml")


def texts(resp: dns.message.Message) -> list[str]:
    return sorted(r.to_text() for rrset in resp.answer for r in rrset)


def test_hosts_table_semantics() -> None:
    entries = parse_lines(["10.0.0.5 k3s-server  # node", "fd00::5 k3s-server", "1.2.3.4 a.b"], "x")
    hosts = Hosts(entries, ttl=60, fallthrough=False)
    server = names.to_wire("k3s-server")
    a = hosts.lookup(server, A)
    assert a is not None and a.rcode == 0 and a.counts[:2] == b"\x00\x01"
    assert hosts.lookup(server, AAAA) is not None
    nodata = hosts.lookup(server, MX)
    assert nodata is not None and nodata.counts[:2] == b"\x00\x00"  # NODATA
    assert hosts.lookup(names.to_wire("5.0.0.10.in-addr.arpa"), PTR) is not None
    assert hosts.lookup(names.to_wire("other.example"), A) is None
    closed = hosts.closes(names.to_wire("other.example"))
    assert closed is not None and closed.rcode == SERVFAIL  # no fallthrough
    ft = Hosts(entries, fallthrough=True, no_reverse=True, zones=("b",))
    assert ft.closes(names.to_wire("other.example")) is None
    assert ft.lookup(server, A) is None  # outside the zones: not served
    assert ft.lookup(names.to_wire("4.3.2.1.in-addr.arpa"), PTR) is None  # no_reverse


def test_hosts_and_chaos_served_and_reloaded(tmp_path: Path) -> None:
    node_hosts = tmp_path / "NodeHosts"
    node_hosts.write_text("172.18.0.2 k3s-server\n")
    conf = tmp_path / "kdns.toml"
    with DnsUpstream({("www.example.com.", "A"): ["192.0.2.1"]}) as up:
        conf.write_text(
            "[server]\nreload_interval = 0.2\n"
            f'[forward]\nupstreams = ["{up.upstream()}"]\n'
            '[hosts]\nfile = "NodeHosts"\nentries = ["192.168.49.1 host.minikube.internal"]\n'
            "ttl = 60\nfallthrough = true\n"
            '[chaos]\nenabled = true\nversion = "kdns-test"\n'
        )
        with Kdns("-c", str(conf), "--objects", CLUSTER, "--killer") as proc:
            resp = proc.query("host.minikube.internal")
            assert texts(resp) == ["192.168.49.1"] and resp.answer[0].ttl == 60
            assert texts(proc.query("k3s-server")) == ["172.18.0.2"]
            assert texts(proc.query("2.0.18.172.in-addr.arpa", "PTR")) == ["k3s-server."]
            # fallthrough: a name not listed goes on to forward
            assert texts(proc.query("www.example.com")) == ["192.0.2.1"]
            # cluster names are still the registry's
            assert proc.query("kubernetes.default.svc.cluster.local").rcode() == 0
            q = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
            chaos = dns.query.udp(q, LOOPBACK, port=proc.port, timeout=3)
            assert texts(chaos) == ['"kdns-test"']
            # The file changes: the new address is served (killer mode's wire cache dropped).
            for _ in range(3):
                proc.query("k3s-server")  # learnt by the wire cache
            node_hosts.write_text("172.18.0.9 k3s-server\n")
            deadline = time.monotonic() + 5
            while texts(proc.query("k3s-server")) != ["172.18.0.9"]:
                assert time.monotonic() < deadline, proc.log[-2000:]
                time.sleep(0.1)


def test_a_name_remembered_as_nxdomain_is_the_hosts_files_once_listed(tmp_path: Path) -> None:
    """CoreDNS hosts comes before kubernetes: a cluster-domain name asked (and remembered by
    the derived memo and the reply memo) before the hosts file lists it is answered from the
    file once it does. Breaks when a hosts reload leaves the reply memo's entries trusted."""
    node_hosts = tmp_path / "NodeHosts"
    node_hosts.write_text("172.18.0.2 k3s-server\n")
    conf = tmp_path / "kdns.toml"
    conf.write_text('[server]\nreload_interval = 0.2\n[hosts]\nfile = "NodeHosts"\n')
    name = "pinned.default.svc.cluster.local"
    with Kdns("-c", str(conf), "--objects", CLUSTER, "--no-forward") as proc:
        for _ in range(4):  # a derived answer, then reply memo hits
            assert proc.query(name).rcode() == dns.rcode.NXDOMAIN
        node_hosts.write_text(f"172.18.0.2 k3s-server\n10.9.9.9 {name}\n")
        deadline = time.monotonic() + 5
        while texts(proc.query(name)) != ["10.9.9.9"]:
            assert time.monotonic() < deadline, proc.log[-2000:]
            time.sleep(0.1)


def test_hosts_without_fallthrough_answers_servfail_for_other_names(tmp_path: Path) -> None:
    conf = tmp_path / "kdns.toml"
    with DnsUpstream({("www.example.com.", "A"): ["192.0.2.1"]}) as up:
        conf.write_text(
            f'[forward]\nupstreams = ["{up.upstream()}"]\n[hosts]\nentries = ["10.1.1.1 nas.lan"]\n'
        )
        with Kdns("-c", str(conf), "--objects", CLUSTER) as proc:
            assert texts(proc.query("nas.lan")) == ["10.1.1.1"]
            assert proc.query("www.example.com").rcode() == dns.rcode.SERVFAIL
            assert up.queries == [q for q in up.queries if q.name.endswith("kdns-loop-check.")]
