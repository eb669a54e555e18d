"""Node-local mode (manifests/nodelocal/): the shipped configuration runs, as a kdns in front of
another kdns, and binds addresses the host does not have (server.freebind).

The node-local kdns is started from the ConfigMap's own kdns.toml and the DaemonSet's own
KDNS_FORWARD_ZONE, with only their addresses swapped for loopback ones (each swap asserted, so
an edit of the shipped files that the test no longer matches fails here rather than passing
unseen): 169.254.20.10:53 -> 127.0.0.1, the kube-dns ClusterIP 10.96.0.10:53 -> 127.0.0.2, the
kube-dns-upstream Service variables -> the cluster kdns (``kdns serve --objects`` of the test
cluster), and the node's resolv.conf upstreams -> a loopback DnsUpstream. Loopback only.
"""

from __future__ import annotations

import errno
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from kdns.config import build_config
from kdns.server import sockets
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, Kdns, rrset_texts, run_kdns
from tests.test_manifests import MANIFESTS, load_yaml

NODELOCAL = MANIFESTS / "nodelocal"
LINK_LOCAL = "169.254.20.10"
KUBE_DNS_IP = "10.96.0.10"
# Stand-ins on loopback: the link-local address and the kube-dns ClusterIP.
LOCAL_STANDIN, CLUSTER_IP_STANDIN = "127.0.0.1", "127.0.0.2"
_QUERY_LOG = re.compile(r"kdns\.query: (udp|tcp) \S+ (\S+) (\S+) (\S+)")
_LISTENING = re.compile(r"dns listening on udp\+tcp (\S+):(\d+)")

Obj = dict[str, Any]


# --- the shipped files --------------------------------------------------------------------------


def nodelocal_objects() -> list[Obj]:
    return [obj for path in sorted(NODELOCAL.glob("*.yaml")) for obj in load_yaml(path)]


def the(kind: str, name: str) -> Obj:
    (found,) = [
        o for o in nodelocal_objects() if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    return found


def shipped_toml() -> str:
    text: str = the("ConfigMap", "kdns-nodelocal")["data"]["kdns.toml"]
    return text


def kdns_container() -> Obj:
    (container,) = [
        c
        for c in the("DaemonSet", "kdns-nodelocal")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "kdns"
    ]
    return container


def shipped_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in kdns_container().get("env", [])}


def swap(text: str, old: str, new: str) -> str:
    assert old in text, f"the shipped node-local config no longer has {old!r}"
    return text.replace(old, new)


def expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of a container env value (service-link variables)."""

    def one(match: re.Match[str]) -> str:
        assert match[1] in variables, f"$({match[1]}) is not a variable the test provides"
        return variables[match[1]]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value)


def loopback_config(directory: Path) -> Path:
    """The ConfigMap's kdns.toml with loopback addresses: ports 0 (kdns picks them)."""
    text = shipped_toml()
    text = swap(text, f'"{LINK_LOCAL}:53"', f'"{LOCAL_STANDIN}:0"')
    text = swap(text, f'"{KUBE_DNS_IP}:53"', f'"{CLUSTER_IP_STANDIN}:0"')
    text = swap(text, f'"{LINK_LOCAL}:8080"', f'"{LOCAL_STANDIN}:0"')
    text = swap(text, '":9253"', f'"{LOCAL_STANDIN}:0"')
    settings = "\n".join(line.partition("#")[0] for line in text.splitlines())
    assert LINK_LOCAL not in settings and KUBE_DNS_IP not in settings
    path = directory / "kdns.toml"
    path.write_text(text, encoding="utf-8")
    return path


def service_links(port: int) -> dict[str, str]:
    """What the kubelet puts in the pod for the kube-dns-upstream Service (service links)."""
    return {
        "KUBE_DNS_UPSTREAM_SERVICE_HOST": "127.0.0.1",
        "KUBE_DNS_UPSTREAM_SERVICE_PORT": str(port),
        "KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS": str(port),
        "KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS_TCP": str(port),
    }


# --- the pair of kdns processes ----------------------------------------------------------------


class Pair:
    def __init__(self, cluster: Kdns, node: Kdns, upstream: DnsUpstream) -> None:
        self.cluster = cluster
        self.node = node
        self.upstream = upstream
        self.ports = {m[1]: int(m[2]) for m in map(_LISTENING.search, node.lines) if m}

    def ask(
        self, name: str, rdtype: str = "A", *, via: str = LOCAL_STANDIN, tcp: bool = False
    ) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype)
        if tcp:
            return dns.query.tcp(query, via, port=self.ports[via], timeout=5)
        return dns.query.udp(query, via, port=self.ports[via], timeout=5)

    def cluster_saw(self, name: str, *, settle: float = 0.3) -> list[tuple[str, str]]:
        """(transport, type) of every query for ``name`` the cluster kdns logged."""
        time.sleep(settle)  # its log line is written after the answer went out
        wanted = name.lower().rstrip(".") + "."
        return [
            (m[1], m[3])
            for m in map(_QUERY_LOG.search, list(self.cluster.lines))
            if m and m[2].lower() == wanted
        ]

    def upstream_saw(self, name: str) -> list[str]:
        wanted = name.lower().rstrip(".") + "."
        return [q.type for q in self.upstream.queries if q.name.lower() == wanted]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    upstream = DnsUpstream(
        {("example.com.", "A"): ["192.0.2.80"], ("www.example.org.", "AAAA"): ["2001:db8::80"]}
    ).start()
    config = loopback_config(tmp_path_factory.mktemp("nodelocal"))
    try:
        with Kdns("--objects", str(FIXTURES / "cluster.yaml"), "--no-forward", "--query-log") as cl:
            env = {
                name: expand(value, service_links(cl.port)) for name, value in shipped_env().items()
            }
            node_args = ("-c", str(config), "--upstream", upstream.upstream("udp"))
            with Kdns(*node_args, listen=False, env=env) as node:
                yield Pair(cl, node, upstream)
    finally:
        upstream.close()


def test_shipped_config_is_a_forward_only_cache(tmp_path: Path) -> None:
    """Requirement: the ConfigMap's kdns.toml loads; it has no API watch, listens on the link-
    local address and the kube-dns ClusterIP with freebind, health on its own port on the
    link-local address, and the DaemonSet routes the cluster and reverse zones over TCP."""
    path = tmp_path / "kdns.toml"
    path.write_text(shipped_toml(), encoding="utf-8")
    variables = {
        "KUBE_DNS_UPSTREAM_SERVICE_HOST": "10.96.0.11",
        "KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS_TCP": "53",
    }
    env = {k: expand(v, variables) for k, v in shipped_env().items()}
    config = build_config(str(path), env=env, flags={})
    assert config.kubernetes_enabled is False and not config.demo and not config.objects
    assert config.listen == ((LINK_LOCAL, 53), (KUBE_DNS_IP, 53))
    assert config.freebind is True
    assert config.health_listen == (LINK_LOCAL, 8080)
    assert config.ready_listen is None
    assert config.metrics_listen == ("", 9253)
    assert config.forward and config.cache and config.upstreams == ()  # resolv.conf's
    assert config.resolv_conf == "/etc/resolv.conf"
    assert dict(config.forward_zones) == {
        "cluster.local": ("tcp://10.96.0.11:53",),
        "in-addr.arpa": ("tcp://10.96.0.11:53",),
        "ip6.arpa": ("tcp://10.96.0.11:53",),
    }
    assert (config.cache_success_ttl, config.cache_denial_ttl) == (30, 5)


def test_cluster_names_go_through_the_cluster_kdns_once(pair: Pair) -> None:
    """Requirement: a cluster name is answered as the cluster kdns answers it, forwarded over
    TCP; asked again (on either address) it comes from the node-local cache: the cluster kdns
    sees one query."""
    name = "frontend.prod.svc.cluster.local"
    direct = pair.cluster.query(name, "A")
    first = pair.ask(name)
    assert first.rcode() == dns.rcode.NOERROR
    assert [r.split()[-1] for r in rrset_texts(first)] == ["10.0.10.10"]
    assert [r.split()[-1] for r in rrset_texts(direct)] == ["10.0.10.10"]
    for via in (LOCAL_STANDIN, CLUSTER_IP_STANDIN, LOCAL_STANDIN):
        again = pair.ask(name, via=via)
        assert [r.split()[-1] for r in rrset_texts(again)] == ["10.0.10.10"]
    again_tcp = pair.ask(name, via=CLUSTER_IP_STANDIN, tcp=True)
    assert [r.split()[-1] for r in rrset_texts(again_tcp)] == ["10.0.10.10"]
    # One query from node-local (over TCP), plus the test's own direct UDP one.
    assert sorted(pair.cluster_saw(name)) == [("tcp", "A"), ("udp", "A")]
    assert pair.upstream_saw(name) == []


def test_reverse_and_missing_cluster_names_go_to_the_cluster_kdns(pair: Pair) -> None:
    """Requirement: reverse zones go to the cluster kdns too, and an NXDOMAIN in the cluster
    domain comes from it (cached as well), never from the node's resolvers."""
    ptr = pair.ask("10.10.0.10.in-addr.arpa", "PTR")
    assert ptr.rcode() == dns.rcode.NOERROR
    assert any("frontend.prod.svc.cluster.local." in r for r in rrset_texts(ptr))
    assert pair.cluster_saw("10.10.0.10.in-addr.arpa") == [("tcp", "PTR")]
    missing = "nothere.prod.svc.cluster.local"
    for _ in range(2):
        assert pair.ask(missing).rcode() == dns.rcode.NXDOMAIN
    assert pair.cluster_saw(missing) == [("tcp", "A")]
    assert pair.upstream_saw(missing) == [] and pair.upstream_saw("10.10.0.10.in-addr.arpa") == []


def test_other_names_go_to_the_node_resolvers_only(pair: Pair) -> None:
    """Requirement: names outside the cluster zones go to the node's upstream (here a loopback
    server), are cached, and never reach the cluster kdns."""
    for _ in range(3):
        answer = pair.ask("example.com", "A")
        assert [r.split()[-1] for r in rrset_texts(answer)] == ["192.0.2.80"]
    aaaa = pair.ask("www.example.org", "AAAA", via=CLUSTER_IP_STANDIN)
    assert [r.split()[-1] for r in rrset_texts(aaaa)] == ["2001:db8::80"]
    assert pair.upstream_saw("example.com") == ["A"]
    assert pair.upstream_saw("www.example.org") == ["AAAA"]
    assert pair.cluster_saw("example.com") == [] and pair.cluster_saw("www.example.org") == []


def test_node_local_serves_without_an_api_server(pair: Pair) -> None:
    """Requirement: no API watch, no cluster zones of its own; health answers on its port."""
    assert pair.node.get("health")[0] == 200
    assert "forwarding only, no cluster zones" in pair.node.log
    assert "loaded" not in pair.node.log  # no objects, no demo


# --- freebind -----------------------------------------------------------------------------------


def _plain_bind(host: str) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            return exc
    return None


def _need_absent(host: str) -> None:
    error = _plain_bind(host)
    if error is None:
        pytest.skip(f"{host} is bindable here without freebind (on an interface, or nonlocal_bind)")
    if error.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        pytest.skip(f"no {'IPv6' if ':' in host else 'IPv4'} here")
    assert error.errno == errno.EADDRNOTAVAIL, error


@pytest.mark.parametrize("host", [LINK_LOCAL, "2001:db8::53"])
def test_freebind_binds_an_address_not_on_any_interface(host: str) -> None:
    """Requirement (server.freebind): without it, binding an address the host lacks fails with
    EADDRNOTAVAIL; with it, UDP and TCP sockets bind it."""
    _need_absent(host)
    with pytest.raises(sockets.ListenError, match="EADDRNOTAVAIL"):
        sockets.bind_address("dns", (host, 0), (sockets.UDP, sockets.TCP))
    sockets.set_freebind(True)
    try:
        bound = sockets.bind_address("dns", (host, 0), (sockets.UDP, sockets.TCP))
    except sockets.ListenError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES, errno.ENOPROTOOPT):
            pytest.skip(f"freebind not permitted here: {exc}")
        raise
    finally:
        sockets.set_freebind(False)
    try:
        (group,) = bound
        assert group.host == host and group.port > 0
        assert set(group.sockets) == {sockets.UDP, sockets.TCP}
    finally:
        for group in bound:
            group.close()


def test_shipped_config_starts_on_a_host_without_its_addresses(tmp_path: Path) -> None:
    """Requirement: the ConfigMap's kdns.toml, unchanged but for the ports (53 and 8080 need
    privileges, and may be taken), starts on a host that has neither 169.254.20.10 nor
    10.96.0.10: freebind binds DNS and health there before netsetup adds them."""
    for host in (LINK_LOCAL, KUBE_DNS_IP):
        _need_absent(host)
    text = swap(shipped_toml(), f'"{LINK_LOCAL}:53"', f'"{LINK_LOCAL}:0"')
    text = swap(text, f'"{KUBE_DNS_IP}:53"', f'"{KUBE_DNS_IP}:0"')
    text = swap(text, f'"{LINK_LOCAL}:8080"', f'"{LINK_LOCAL}:0"')
    text = swap(text, '":9253"', '"127.0.0.1:0"')
    path = tmp_path / "kdns.toml"
    path.write_text(text, encoding="utf-8")
    env = {k: expand(v, service_links(53)) for k, v in shipped_env().items()}
    # --health-listen restates the file's (the harness would put health on 127.0.0.1).
    health = ("--health-listen", f"{LINK_LOCAL}:0")
    with Kdns("-c", str(path), *health, listen=False, env=env) as node:
        bound = {m[1] for m in map(_LISTENING.search, node.lines) if m}
        assert bound == {LINK_LOCAL, KUBE_DNS_IP}, node.log
        assert f"health listening on http://{LINK_LOCAL}:" in node.log
    # The same file with freebind off fails on the first address, naming it.
    path.write_text(swap(text, "freebind = true", "freebind = false"), encoding="utf-8")
    failed = run_kdns("serve", "-c", str(path), "--metrics-listen", "off", env=env)
    assert failed.returncode != 0
    assert f"cannot listen on {LINK_LOCAL}:0" in failed.stderr
    assert "EADDRNOTAVAIL" in failed.stderr


# --- netsetup -----------------------------------------------------------------------------------

_STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  "ip link show"*) exit 1 ;;
  *-save*) [ "$(basename "$0")" = iptables-nft-save ] && echo "-A KUBE-SERVICES -j X"; exit 0 ;;
  *" -C "*) exit 1 ;;
  *" -D "*) [ -e "$CALLS.deleted-$(echo "$*" | cksum | cut -d' ' -f1)" ] && exit 1
            touch "$CALLS.deleted-$(echo "$*" | cksum | cut -d' ' -f1)"; exit 0 ;;
esac
exit 0
"""


def test_netsetup_adds_the_addresses_and_notrack_rules_and_removes_them(tmp_path: Path) -> None:
    """Requirement: netsetup (the DaemonSet's sidecar script) puts the listen addresses on a
    dummy interface and installs node-local-dns's NOTRACK/ACCEPT rules for each, with the
    iptables flavour holding the node's rules; on SIGTERM it deletes the rules and the
    interface. Run with stub ip/iptables commands that record their arguments."""
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no sh")
    script = tmp_path / "netsetup.sh"
    script.write_text(the("ConfigMap", "kdns-nodelocal-netsetup")["data"]["netsetup.sh"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ip", "iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy",
                 "iptables-nft-save", "iptables-legacy-save"):  # fmt: skip
        stub = bin_dir / name
        stub.write_text(_STUB)
        stub.chmod(0o755)
    calls = tmp_path / "calls"
    (container,) = [
        c
        for c in the("DaemonSet", "kdns-nodelocal")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "netsetup"
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LOCAL_IPS"].split() == [LINK_LOCAL, KUBE_DNS_IP]
    env.update(LOCAL_IPS=f"{LINK_LOCAL} {KUBE_DNS_IP} fd00::10", INTERVAL="30")
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", CALLS=str(calls))
    output = tmp_path / "out"
    with output.open("w") as out:
        proc = subprocess.Popen([shell, str(script)], env=env, stdout=out)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = calls.read_text() if calls.exists() else ""
            if text.count(" -I ") >= 32:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = calls.read_text().splitlines()
    assert proc.returncode == 0, lines
    assert "iptables-nft" in output.read_text()
    assert "ip link add nodelocaldns type dummy" in lines
    for address in (f"{LINK_LOCAL}/32", f"{KUBE_DNS_IP}/32", "fd00::10/128"):
        assert f"ip addr replace {address} dev nodelocaldns" in lines
    inserted = [line for line in lines if " -I " in line]
    assert len(inserted) == 3 * 10 + 2  # 5 rules x 2 protocols per address, 2 for health
    assert not any("legacy" in line for line in inserted)
    comment = "-m comment --comment kdns-nodelocal"
    want = (
        f"iptables-nft -w 5 -t raw -I PREROUTING 1 -p udp -d {KUBE_DNS_IP} --dport 53 -j NOTRACK "
        + comment
    )
    assert want in lines
    assert any(line.startswith("ip6tables-nft") and "-d fd00::10" in line for line in inserted)
    assert (
        f"iptables-nft -w 5 -t raw -I OUTPUT 1 -p tcp -d {LINK_LOCAL} --dport 8080 -j NOTRACK {comment}"
        in lines
    )  # noqa: E501
    # Every inserted rule deleted again, with the same arguments.
    deleted = {re.sub(r" -D (\S+) ", r" -I \1 1 ", line) for line in lines if " -D " in line}
    assert set(inserted) <= deleted
    assert lines[-1] == "ip link del nodelocaldns"


def test_netsetup_is_not_ready_until_every_address_is_on_the_interface(tmp_path: Path) -> None:
    """Issue 22 item 22: where the kernel cannot make the dummy interface, the pod showed
    Running and Ready while kdns served an address the node lacks. The netsetup container's
    readiness probe (its own command, run here with a stub `ip`) fails until every listen
    address is on the interface."""
    (netsetup,) = [
        c
        for c in the("DaemonSet", "kdns-nodelocal")["spec"]["template"]["spec"]["containers"]
        if c["name"] == "netsetup"
    ]
    command = netsetup["readinessProbe"]["exec"]["command"]
    env = {e["name"]: e["value"] for e in netsetup["env"]}
    stub = tmp_path / "ip"

    def probe(ip_output: str | None) -> int:
        if ip_output is None:  # no such interface: ip fails
            stub.write_text('#!/bin/sh\necho "Device does not exist" >&2\nexit 1\n')
        else:
            stub.write_text(f"#!/bin/sh\ncat <<'OUT'\n{ip_output}\nOUT\n")
        stub.chmod(0o755)
        path = f"{tmp_path}:/usr/bin:/bin"
        return subprocess.run(command, env={**env, "PATH": path}, timeout=30).returncode

    line = "5: nodelocaldns    inet {}/32 scope global nodelocaldns\\       valid_lft forever"
    both = "\n".join(line.format(ip) for ip in env["LOCAL_IPS"].split())
    assert probe(None) != 0  # no dummy interface (CONFIG_DUMMY missing)
    assert probe(line.format(env["LOCAL_IPS"].split()[0])) != 0  # one address of two
    assert probe(both) == 0
