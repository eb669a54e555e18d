"""Listen addresses: ``:PORT`` is IPv4 and IPv6 on UDP and TCP (as CoreDNS's ``.:53``), an
explicit 0.0.0.0 and [::] coexist (IPV6_V6ONLY), the HTTP endpoints follow the same rule, and a
port that cannot be bound is one line naming the listener, the address and the OS reason.

The socket rules are checked in-process (kdns.server.sockets); the behaviour end to end, with
the real ``kdns serve`` answering dnspython over UDP and TCP on 127.0.0.1 and ::1.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import dns.exception
import dns.message
import dns.query
import pytest

from kdns.server import sockets
from kdns.server.sockets import TCP, UDP, ListenError, bind_address, overlaps
from tests.kdnsproc import LOOPBACK, Kdns, run_kdns

DEMO_NAME = "web.shop.svc.cluster.local"
DEMO_ADDRESS = "10.96.10.20"
HTTP_OFF = ("--metrics-listen", "off", "--health-listen", "off", "--ready-listen", "off")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _has_ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not IPV6, reason="no IPv6 loopback (::1) on this host")
LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=needs_ipv6),
]


def free_port() -> int:
    """A port free on UDP and TCP of both families (as far as a probe can tell)."""
    for _ in range(50):
        with ExitStack() as stack:
            first = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            first.bind(("0.0.0.0", 0))
            port = int(first.getsockname()[1])
            try:
                for family, kind in [
                    (socket.AF_INET, socket.SOCK_STREAM),
                    *([(socket.AF_INET6, socket.SOCK_DGRAM)] if IPV6 else []),
                    *([(socket.AF_INET6, socket.SOCK_STREAM)] if IPV6 else []),
                ]:
                    probe = stack.enter_context(socket.socket(family, kind))
                    if family == socket.AF_INET6:
                        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    probe.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def answers(host: str, port: int, *, tcp: bool, timeout: float = 3) -> list[str]:
    q = dns.message.make_query(DEMO_NAME, "A")
    if tcp:
        resp = dns.query.tcp(q, host, port=port, timeout=timeout)
    else:
        resp = dns.query.udp(q, host, port=port, timeout=timeout)
    return [rdata.to_text() for rrset in resp.answer for rdata in rrset]


def reachable(host: str, port: int, *, tcp: bool) -> bool:
    try:
        return bool(answers(host, port, tcp=tcp, timeout=0.5))
    except (dns.exception.Timeout, OSError):
        return False


def http_get(host: str, port: int, path: str) -> int:
    where = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{where}:{port}/{path}", timeout=3) as resp:
        return int(resp.status)


# --- sockets, in-process --------------------------------------------------------------------------


@pytest.fixture
def no_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host whose kernel has no IPv6 (ipv6.disable=1): AF_INET6 sockets cannot be made."""
    real = sockets._new_socket

    def new_socket(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, kind)

    monkeypatch.setattr(sockets, "_new_socket", new_socket)
    monkeypatch.setattr(sockets, "_said_no_ipv6", False)


def close_all(groups: list[sockets.BoundAddress]) -> None:
    for group in groups:
        group.close()


@needs_ipv6
def test_all_addresses_bind_both_families_on_one_port() -> None:
    groups = bind_address("dns", ("", 0), (UDP, TCP))
    try:
        assert [g.host for g in groups] == ["0.0.0.0", "::"]
        assert len({g.port for g in groups}) == 1 and groups[0].port != 0
        for group in groups:
            assert set(group.sockets) == {UDP, TCP}
            for sock in group.sockets.values():
                assert sock.getsockname()[1] == group.port
        v6 = groups[1].sockets[UDP]
        assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        close_all(groups)


@needs_ipv6
def test_explicit_ipv6_any_is_ipv6_only_and_coexists_with_ipv4_any() -> None:
    port = free_port()
    v4 = bind_address("dns", ("0.0.0.0", port), (UDP, TCP))
    try:
        v6 = bind_address("dns", ("::", port), (UDP, TCP))
        try:
            sock = v6[0].sockets[TCP]
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        finally:
            close_all(v6)
    finally:
        close_all(v4)


def test_localhost_is_ipv4_loopback() -> None:
    groups = bind_address("dns", ("localhost", 0), (UDP,))
    try:
        assert [g.host for g in groups] == ["127.0.0.1"]
    finally:
        close_all(groups)


@pytest.mark.usefixtures("no_ipv6")
def test_without_ipv6_all_addresses_fall_back_to_ipv4_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kdns")
    first = bind_address("dns", ("", 0), (UDP, TCP))
    second = bind_address("metrics", ("", 0), (TCP,))
    try:
        assert [g.host for g in first] == ["0.0.0.0"] == [g.host for g in second]
    finally:
        close_all(first + second)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("no IPv6 on this host (address family not supported")
    assert "serve IPv4 only" in warnings[0]


@pytest.mark.usefixtures("no_ipv6")
def test_without_ipv6_an_explicit_ipv6_address_is_an_error() -> None:
    with pytest.raises(ListenError) as err:
        bind_address("dns", ("::", 0), (UDP, TCP))
    assert str(err.value) == (
        "dns: cannot listen on [::]:0 (udp): "
        "address family not supported by protocol (EAFNOSUPPORT)"
    )


def test_port_in_use_names_listener_address_transport_and_reason() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as err:
            bind_address("health", (LOOPBACK, port), (TCP,))
    assert str(err.value) == (
        f"health: cannot listen on 127.0.0.1:{port} (tcp): address already in use (EADDRINUSE)"
    )
    assert err.value.errno == errno.EADDRINUSE  # still an OSError to callers that catch those


def test_failed_group_leaves_nothing_bound() -> None:
    """UDP bound, then TCP fails: the UDP socket is closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=r"\(tcp\)"):
            bind_address("dns", (LOOPBACK, port), (UDP, TCP))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOOPBACK, port))  # free again


def test_privileged_port_hint() -> None:
    error = ListenError("dns", ("0.0.0.0", 53), "udp", PermissionError(errno.EACCES, "x"))
    assert str(error) == (
        "dns: cannot listen on 0.0.0.0:53 (udp): permission denied (EACCES): "
        "ports below 1024 need root or CAP_NET_BIND_SERVICE"
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (("", 53), ("0.0.0.0", 53), True),
        (("", 53), ("::", 53), True),
        (("", 53), ("::1", 53), False),
        (("0.0.0.0", 53), ("::", 53), False),
        (("", 53), ("", 54), False),
        (("", 0), ("0.0.0.0", 0), False),  # two ephemeral ports never collide
        (("localhost", 53), ("127.0.0.1", 53), True),
    ],
)
def test_overlaps(a: tuple[str, int], b: tuple[str, int], expected: bool) -> None:
    assert overlaps(a, b) is expected is overlaps(b, a)


# --- the real process ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dual() -> Iterator[Kdns]:
    """``--listen :0``: one ephemeral port, both families, UDP and TCP; HTTP on ``:0`` too."""
    with Kdns(
        "--demo",
        "--listen",
        ":0",
        "--metrics-listen",
        ":0",
        "--health-listen",
        ":0",
        "--ready-listen",
        ":0",
        listen=False,
    ) as proc:
        yield proc


def test_all_addresses_log_one_line_per_family(dual: Kdns) -> None:
    lines = [line for line in dual.lines if "dns listening on udp+tcp" in line]
    expected = [f"0.0.0.0:{dual.port}", *([f"[::]:{dual.port}"] if IPV6 else [])]
    assert [line.rsplit(" ", 1)[1].strip() for line in lines] == expected


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_all_addresses_answer_on_both_families(dual: Kdns, host: str, tcp: bool) -> None:
    assert answers(host, dual.port, tcp=tcp) == [DEMO_ADDRESS]


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize("endpoint", ["health", "ready", "metrics"])
def test_http_all_addresses_answer_on_both_families(dual: Kdns, host: str, endpoint: str) -> None:
    assert http_get(host, dual.http[endpoint], endpoint) == 200


@needs_ipv6
def test_explicit_ipv4_and_ipv6_any_together() -> None:
    port = free_port()
    with Kdns(
        "--demo", "--listen", f"0.0.0.0:{port}", "--listen", f"[::]:{port}", listen=False
    ) as proc:
        assert proc.port == port
        for host in ("127.0.0.1", "::1"):
            for tcp in (False, True):
                assert answers(host, port, tcp=tcp) == [DEMO_ADDRESS], (host, tcp)


@needs_ipv6
def test_explicit_ipv6_any_alone_is_ipv6_only() -> None:
    """IPV6_V6ONLY on [::]: the same on every host, whatever net.ipv6.bindv6only says."""
    with Kdns("--demo", "--listen", "[::]:0", listen=False) as proc:
        assert answers("::1", proc.port, tcp=False) == [DEMO_ADDRESS]
        assert answers("::1", proc.port, tcp=True) == [DEMO_ADDRESS]
        assert not reachable("127.0.0.1", proc.port, tcp=True)
        assert not reachable("127.0.0.1", proc.port, tcp=False)


def test_reload_from_ipv4_any_to_all_addresses(tmp_path) -> None:
    """0.0.0.0:P becoming :P shares a socket: the old one is closed first, then both bound."""
    port = free_port()
    config = tmp_path / "kdns.toml"
    body = '[kubernetes]\ndemo = true\n[server]\nreload_interval = 0.2\nlisten = ["{}"]\n'
    config.write_text(body.format(f"0.0.0.0:{port}"))
    with Kdns("-c", str(config), listen=False) as proc:
        assert answers("127.0.0.1", port, tcp=False) == [DEMO_ADDRESS]
        config.write_text(body.format(f":{port}"))
        deadline = 100
        hosts = ["127.0.0.1", *(["::1"] if IPV6 else [])]
        while deadline and not all(reachable(h, port, tcp=True) for h in hosts):
            deadline -= 1
            time.sleep(0.1)
        for host in hosts:
            assert answers(host, port, tcp=False) == [DEMO_ADDRESS]
        assert "cannot listen" not in proc.log


# --- what cannot be bound: one line, exit 1 --------------------------------------------------------


def last_line(result: object) -> str:
    return str(getattr(result, "stderr", "")).strip().splitlines()[-1]


def test_dns_port_in_use_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        result = run_kdns("serve", "--demo", "--listen", f"{LOOPBACK}:{port}", *HTTP_OFF)
    assert result.returncode == 1
    assert last_line(result) == (
        f"kdns: dns: cannot listen on 127.0.0.1:{port} (udp): address already in use (EADDRINUSE)"
    )


@needs_ipv6
def test_dns_port_in_use_on_ipv6_only_is_not_skipped() -> None:
    """[::]:P taken by another server: ``:P`` fails naming it (no silent IPv4-only)."""
    port = free_port()
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", port))
        taken.listen()
        result = run_kdns("serve", "--demo", "--listen", f":{port}", *HTTP_OFF)
    assert result.returncode == 1
    assert last_line(result) == (
        f"kdns: dns: cannot listen on [::]:{port} (tcp): address already in use (EADDRINUSE)"
    )


def test_dns_bad_address() -> None:
    result = run_kdns("serve", "--demo", "--listen", "192.0.2.1:5353", *HTTP_OFF)
    assert result.returncode == 1
    assert last_line(result) == (
        "kdns: dns: cannot listen on 192.0.2.1:5353 (udp): "
        "cannot assign requested address (EADDRNOTAVAIL)"
    )


@pytest.mark.parametrize("endpoint", ["metrics", "health", "ready"])
def test_http_port_in_use_names_the_endpoint(endpoint: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = {"metrics": "off", "health": "off", "ready": "off", endpoint: f"{LOOPBACK}:{port}"}
        result = run_kdns(
            "serve",
            "--demo",
            "--listen",
            f"{LOOPBACK}:0",
            *(arg for name, value in flags.items() for arg in (f"--{name}-listen", value)),
        )
    assert result.returncode == 1
    assert last_line(result) == (
        f"kdns: {endpoint}: cannot listen on 127.0.0.1:{port} (tcp): "
        "address already in use (EADDRINUSE)"
    )


def test_udp_sockets_get_a_large_receive_queue() -> None:
    """Standard mode issue: no drops below saturation. The kernel's default 208 KiB queue
    holds ~300 queries; kdns asks for 8 MiB (granted up to net.core.rmem_max, or past it
    with CAP_NET_ADMIN)."""
    import socket as socket_module
    from pathlib import Path

    from kdns.server.sockets import UDP, open_socket

    sock = open_socket("dns", "127.0.0.1", 0, UDP)
    try:
        granted = sock.getsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF)
    finally:
        sock.close()
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    # Linux reports twice what was set (its bookkeeping overhead).
    assert granted >= min(2 * rmem_max, 2 * (8 << 20))
