"""Autopath with a real stub resolver: glibc's ``getaddrinfo`` in a pod's network namespace.

The test builds a two-namespace network of its own (root and iproute2 needed):

- ``kdns-ap-dns-*``: kdns (``kdns serve --autopath``, listening on 10.244.250.1:53, the only
  port glibc asks) and a loopback upstream (tests/dnsupstream.py) on that namespace's 127.0.0.1.
- ``kdns-ap-pod-*``: the pod, 10.244.250.5 on the other end of a veth pair. ``ip netns exec``
  bind-mounts ``/etc/netns/<name>/resolv.conf`` over ``/etc/resolv.conf``: the kubelet's
  ``nameserver 10.244.250.1``, ``search prod.svc.cluster.local svc.cluster.local cluster.local
  corp.example`` and ``options ndots:5`` (and an nsswitch.conf of ``hosts: files dns``, so
  nothing but glibc's DNS stub answers). The objects file has a Pod of ``prod`` with that IP.

Each lookup is ``python -c 'socket.getaddrinfo(NAME, None, AF_UNSPEC, ..., AI_CANONNAME)'``
run in the pod's namespace: glibc sends A and AAAA for every step of its walk. kdns's
``kdns_dns_requests_total`` per type before and after the lookup counts what the pod sent: one
question per type with autopath, the walk without. No address outside the two namespaces is
used; nothing leaves them.

Without namespaces (not root, no ``ip``, or ``ip netns add`` refused: an unprivileged
container) the same cases run with dnspython's stub resolver as the pod (the same search list
and ndots, A and AAAA as getaddrinfo asks them, its socket bound to the pod address 127.0.0.5
of tests/fixtures/autopath.yaml) against kdns on loopback, and the test says so in a warning.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.resolver
import pytest

from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import LOOPBACK, Kdns

FIXTURE = Path(__file__).parent / "fixtures" / "autopath.yaml"
SEARCH = ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example")
WALK = len(SEARCH) + 1  # questions per type an outside name costs without autopath
UPSTREAM = {
    ("api.github.com.", "A"): ["140.82.112.5"],
    ("api.github.com.", "AAAA"): ["2001:db8::5"],
    ("intranet.corp.example.", "A"): ["10.1.2.3"],
}
DNS_ADDR = "10.244.250.1"  # kdns's end of the veth pair (in the test's dns namespace)
POD_ADDR = "10.244.250.5"  # the pod's end (in the test's pod namespace)
FALLBACK_POD = "127.0.0.5"  # prod/client of the fixture, when there are no namespaces
CLONE_NEWNET = 0x40000000
GETADDRINFO = """
import json, socket, sys
try:
    infos = socket.getaddrinfo(sys.argv[1], None, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                               socket.AI_CANONNAME)
except socket.gaierror as err:
    print(json.dumps({"error": err.errno}))
else:
    print(json.dumps({"addresses": sorted({i[4][0] for i in infos}), "canonical": infos[0][3]}))
"""
_REQUESTS = re.compile(r'^kdns_dns_requests_total\{[^}]*type="([A-Z0-9]+)"[^}]*\} ([0-9.e+]+)$')


@dataclass
class Lookup:
    addresses: list[str]
    canonical: str  # the name the addresses belong to ("" when the lookup failed)
    asked: dict[str, int]  # questions kdns received during the lookup, per type


def requests_by_type(metrics: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if m := _REQUESTS.match(line):
            counts[m.group(1)] += int(float(m.group(2)))
    return counts


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


_libc = ctypes.CDLL(None, use_errno=True)


@contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run this thread in ``netns`` (setns(2) is per thread): sockets it makes, threads it
    starts and processes it spawns live there; the thread's own namespace after."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    finally:
        os.close(target)
        os.close(home)


class Network:
    """The dns and pod namespaces, joined by a veth pair, with the pod's /etc/netns files."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{os.urandom(2).hex()}"
        self.dns, self.pod = f"kdns-ap-dns-{tag}", f"kdns-ap-pod-{tag}"
        self.etc = Path("/etc/netns") / self.pod

    def __enter__(self) -> Network:
        try:
            _run("ip", "netns", "add", self.dns)
            _run("ip", "netns", "add", self.pod)
            _run("ip", "link", "add", "pod0", "netns", self.pod, "type", "veth",
                 "peer", "name", "dns0", "netns", self.dns)  # fmt: skip
            for ns, dev, addr in ((self.dns, "dns0", DNS_ADDR), (self.pod, "pod0", POD_ADDR)):
                _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            self.etc.mkdir(parents=True)
            search = " ".join(SEARCH)
            # timeout:5 (glibc's default): the questions are counted, so a retransmission on
            # a loaded test machine must not pass for a question of the walk.
            (self.etc / "resolv.conf").write_text(
                f"nameserver {DNS_ADDR}\nsearch {search}\noptions ndots:5 attempts:2 timeout:5\n"
            )
            (self.etc / "nsswitch.conf").write_text("hosts: files dns\n")
            (self.etc / "hosts").write_text("127.0.0.1 localhost\n")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.etc, ignore_errors=True)
        for ns in (self.pod, self.dns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@functools.cache
def netns_unavailable() -> str | None:
    """Why the namespace test cannot run here (None: it can); probed once per run."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    try:
        with Network():
            pass
    except (subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        return f"cannot build a network namespace: {detail.strip()}"
    return None


class Pod:
    """kdns serving the fixture (plus the pod) and the pod's stub resolver: glibc in the pod's
    namespace, else dnspython bound to a loopback pod address."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.why_not = netns_unavailable()
        self.netns = self.why_not is None
        objects = tmp / "cluster.yaml"
        objects.write_text(
            FIXTURE.read_text()
            + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: netns-client, namespace: prod}\n"
            + f"status: {{phase: Running, podIP: {POD_ADDR}}}\n"
        )
        self.args = ["--objects", str(objects), "--autopath-search", "corp.example", *extra]
        self.stack = ExitStack()

    def __enter__(self) -> Pod:
        try:
            if self.netns:
                self.network = self.stack.enter_context(Network())
                with inside(self.network.dns):
                    self.upstream = self.stack.enter_context(DnsUpstream(UPSTREAM, ttl=60))
                    upstream = ["--upstream", self.upstream.upstream("udp")]
                    listen = ["--listen", f"{DNS_ADDR}:53"]
                    self.kdns = self.stack.enter_context(Kdns(*self.args, *upstream, *listen))
            else:
                warnings.warn(
                    f"no network namespace ({self.why_not}): dnspython's stub resolver stands "
                    "in for glibc's getaddrinfo",
                    stacklevel=2,
                )
                self.upstream = self.stack.enter_context(DnsUpstream(UPSTREAM, ttl=60))
                self.kdns = self.stack.enter_context(
                    Kdns(*self.args, "--upstream", self.upstream.upstream("udp"))
                )
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def metrics(self) -> str:
        if self.netns:
            with inside(self.network.dns):
                status, body = self.kdns.get("metrics")
        else:
            status, body = self.kdns.get("metrics")
        assert status == 200
        return body

    def lookup(self, name: str) -> Lookup:
        before = requests_by_type(self.metrics())
        if self.netns:
            done = subprocess.run(
                ["ip", "netns", "exec", self.network.pod, sys.executable, "-c", GETADDRINFO, name],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            result = json.loads(done.stdout)
            addresses, canonical = result.get("addresses", []), result.get("canonical", "")
        else:
            addresses, canonical = self._dnspython(name)
        asked = requests_by_type(self.metrics()) - before
        return Lookup(addresses, canonical.rstrip("."), dict(asked))

    def _dnspython(self, name: str) -> tuple[list[str], str]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [LOOPBACK]
        resolver.port = self.kdns.port
        resolver.search = [dns.name.from_text(domain) for domain in SEARCH]
        resolver.ndots = 5
        resolver.use_search_by_default = True
        resolver.cache = None
        addresses: list[str] = []
        canonical = ""
        for rdtype in ("A", "AAAA"):  # as getaddrinfo with AF_UNSPEC asks
            try:
                answer = resolver.resolve(
                    name, rdtype, source=FALLBACK_POD, lifetime=5, raise_on_no_answer=False
                )
            except dns.resolver.NXDOMAIN:
                continue
            addresses += [rdata.to_text() for rdata in answer]
            canonical = canonical or answer.canonical_name.to_text()
        return sorted(addresses), canonical

    def upstream_asked(self) -> list[str]:
        return [n.lower() for n in self.upstream.names() if not n.endswith("kdns-loop-check.")]


def per_type(n: int) -> dict[str, int]:
    return {"A": n, "AAAA": n}


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_getaddrinfo_sends_one_question_per_type_with_autopath(mode: str, tmp_path: Path) -> None:
    extra = ["--autopath"] + (["--killer"] if mode == "killer" else [])
    with Pod(tmp_path, *extra) as pod:
        assert "autopath: on" in pod.kdns.log
        github = ["140.82.112.5", "2001:db8::5"]
        # An outside name: one A and one AAAA, each answered with the CNAME to the name found.
        assert pod.lookup("api.github.com") == Lookup(github, "api.github.com", per_type(1))
        asked = pod.upstream_asked()
        assert sorted(asked) == sorted(
            ["api.github.com.corp.example.", "api.github.com."] * 2  # A and AAAA
        )
        # Again: still one question per type, and nothing more upstream (the forward cache).
        for _ in range(2):
            assert pod.lookup("api.github.com") == Lookup(github, "api.github.com", per_type(1))
        assert len(pod.upstream_asked()) == len(asked)
        # A node search domain (A only: AAAA ends the walk there too, with NODATA).
        assert pod.lookup("intranet") == Lookup(["10.1.2.3"], "intranet.corp.example", per_type(1))
        # A Service of another namespace, found at the second step of the walk.
        web = "web.shop.svc.cluster.local"
        assert pod.lookup("web.shop") == Lookup(["10.96.0.20"], web, per_type(1))
        # The pod's own namespace: found at the first step, never short-cut.
        api = "api.prod.svc.cluster.local"
        assert pod.lookup("api") == Lookup(["10.96.0.30"], api, per_type(1))
        # A name that is nowhere: the plain NXDOMAIN, and the pod walks on by itself.
        assert pod.lookup("nothing.invalid") == Lookup([], "", per_type(WALK))
        metrics = pod.metrics()
        # api.github.com x3, intranet, web.shop: A and AAAA each.
        assert "kdns_autopath_answers_total 10.0" in metrics
        # The pod was known by its address: never an unknown client.
        assert 'kdns_autopath_misses_total{reason="unknown_client"} 0.0' in metrics


def test_getaddrinfo_walks_the_search_path_without_autopath(tmp_path: Path) -> None:
    with Pod(tmp_path) as pod:
        github = ["140.82.112.5", "2001:db8::5"]
        assert pod.lookup("api.github.com") == Lookup(github, "api.github.com", per_type(WALK))
        assert pod.lookup("intranet") == Lookup(["10.1.2.3"], "intranet.corp.example", per_type(4))
        web = "web.shop.svc.cluster.local"
        assert pod.lookup("web.shop") == Lookup(["10.96.0.20"], web, per_type(2))
        assert "kdns_autopath" not in pod.metrics()
