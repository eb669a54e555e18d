"""Listening sockets made by hand (socket + setsockopt + bind), so kdns controls their options.

A configured address becomes one or more concrete ones:

- ``:PORT`` (host ``""``) is every address of both families, as CoreDNS's ``.:53``: a 0.0.0.0
  socket and a [::] socket with IPV6_V6ONLY=1, on the same port. On a host without IPv6 it is
  0.0.0.0 alone, said once in the log.
- ``[::]:PORT`` is IPv6 only (IPV6_V6ONLY=1 on every IPv6 socket), so ``0.0.0.0:53`` and
  ``[::]:53`` can be given together, and the kernel's dual-stack default
  (net.ipv6.bindv6only=0) never decides what an address means.
- ``localhost:PORT`` is 127.0.0.1.

Port 0 picks one free port for the whole group (every family and transport of the address), so a
test that reads one "listening on" line can reach any of them. Failures raise ``ListenError``,
whose text is the one line the CLI prints:
``dns: cannot listen on 127.0.0.1:5353 (udp): address already in use (EADDRINUSE)``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from kdns.values import format_hostport

log = logging.getLogger("kdns")

Address = tuple[str, int]

ANY = ""  # the host of ":PORT": both families
UDP, TCP = socket.SOCK_DGRAM, socket.SOCK_STREAM
_TRANSPORT = {UDP: "udp", TCP: "tcp"}
# What binding [::] fails with when the host has no IPv6 (kernel ipv6.disable=1, no ::).
_NO_IPV6 = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL})
_PORT0_ATTEMPTS = 8  # port 0: the port UDP got may be taken for TCP or the other family
_said_no_ipv6 = False


def os_reason(exc: OSError) -> str:
    """``address already in use (EADDRINUSE)``: the OS's words and the errno name."""
    if exc.errno is None:
        return str(exc)
    text = os.strerror(exc.errno)
    text = text[:1].lower() + text[1:]
    name = errno.errorcode.get(exc.errno)
    return f"{text} ({name})" if name else text


class ListenError(OSError):
    """A listener cannot bind. ``str()`` is one line naming the listener (dns, metrics, health,
    ready), the address, the transport and the OS reason."""

    def __init__(self, listener: str, address: Address, transport: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror)
        self.listener = listener
        self.address = address
        self.transport = transport
        self.reason = os_reason(error)
        if error.errno == errno.EACCES and 0 < address[1] < 1024:
            self.reason += ": ports below 1024 need root or CAP_NET_BIND_SERVICE"

    def __str__(self) -> str:
        where = format_hostport(self.address)
        return f"{self.listener}: cannot listen on {where} ({self.transport}): {self.reason}"


def concrete_hosts(host: str) -> list[str]:
    """The hosts a configured host binds: ``""`` -> 0.0.0.0 and ::, localhost -> 127.0.0.1."""
    if host == ANY:
        return ["0.0.0.0", "::"]
    if host == "localhost":
        return ["127.0.0.1"]
    return [host]


def overlaps(a: Address, b: Address) -> bool:
    """Whether two configured addresses would bind a common socket (``:53`` and 0.0.0.0:53)."""
    return a[1] == b[1] != 0 and not set(concrete_hosts(a[0])).isdisjoint(concrete_hosts(b[0]))


def _new_socket(family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
    return socket.socket(family, kind)  # a seam: tests make AF_INET6 fail here


# A UDP socket's receive queue, in bytes of kernel accounting (about 700 B per small query):
# the default 208 KiB holds ~300 queries, so a pause of a few milliseconds at high rates (a GC
# pass, a big watch event) loses queries. NSD and CoreDNS ask for megabytes too. The kernel
# caps SO_RCVBUF at net.core.rmem_max (docs/deploying.md: raise it on the node); with
# CAP_NET_ADMIN, SO_RCVBUFFORCE goes past that cap.
UDP_RECEIVE_BUFFER = 8 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def size_receive_buffer(sock: socket.socket, size: int = UDP_RECEIVE_BUFFER) -> int:
    """Ask for ``size`` bytes of receive queue; returns what the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:  # no CAP_NET_ADMIN: capped at net.core.rmem_max
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


# server.freebind: bind an address that is not (yet) on any interface, as node-local DNS needs
# for its link-local address (169.254.20.10) and the kube-dns ClusterIP, which a setup step adds
# to a dummy interface maybe after kdns starts. Packets reach the socket once the address is
# local. Linux only; no privilege needed. Set by the app from its config before binding.
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
_IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)
_freebind = False


def set_freebind(on: bool) -> None:
    """Sockets bound from now on (DNS and HTTP) get IP_FREEBIND / IPV6_FREEBIND when ``on``."""
    global _freebind
    _freebind = on


def _set_freebind(sock: socket.socket, family: socket.AddressFamily) -> None:
    if family == socket.AF_INET6:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            return
        except OSError as exc:  # kernels before 4.15: IP_FREEBIND covers IPv6 sockets too
            if exc.errno != errno.ENOPROTOOPT:
                raise
    sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)


def open_socket(
    listener: str, host: str, port: int, kind: socket.SocketKind, *, reuse_port: bool = False
) -> socket.socket:
    """A bound, non-blocking socket of ``kind`` (UDP or TCP; TCP not yet listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = _new_socket(family, kind)
    except OSError as exc:
        raise ListenError(listener, (host, port), _TRANSPORT[kind], exc) from None
    try:
        if kind == TCP:  # restart while old connections sit in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:  # --workers: N processes on one port, the kernel spreads the load
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if kind == UDP:
            size_receive_buffer(sock)
        if _freebind:
            _set_freebind(sock, family)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenError(listener, (host, port), _TRANSPORT[kind], exc) from None
    return sock


@dataclass
class BoundAddress:
    """One concrete address of a configured one, with a socket per transport."""

    host: str  # "0.0.0.0", "::", "127.0.0.1", ...
    port: int  # the bound port (the asked one, or the one the kernel picked for port 0)
    sockets: dict[socket.SocketKind, socket.socket] = field(
        default_factory=dict
    )  # UDP/TCP -> socket

    @property
    def text(self) -> str:
        return format_hostport((self.host, self.port))

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def bind_address(
    listener: str,
    address: Address,
    kinds: Sequence[socket.SocketKind],
    *,
    reuse_port: bool = False,
) -> list[BoundAddress]:
    """Bind every concrete address of ``address`` for each of ``kinds`` on one port.

    Raises ``ListenError``; nothing stays bound when it does.
    """
    host, port = address
    for attempt in range(_PORT0_ATTEMPTS if port == 0 else 1):
        done: list[BoundAddress] = []
        try:
            chosen = port
            for concrete in concrete_hosts(host):
                bound = BoundAddress(concrete, chosen)
                try:
                    for kind in kinds:
                        sock = open_socket(listener, concrete, chosen, kind, reuse_port=reuse_port)
                        bound.sockets[kind] = sock
                        chosen = bound.port = sock.getsockname()[1]
                except ListenError as exc:
                    bound.close()
                    if host == ANY and concrete == "::" and exc.errno in _NO_IPV6:
                        _say_no_ipv6(address, exc)
                        continue
                    raise
                done.append(bound)
            return done
        except ListenError as exc:
            for bound in done:
                bound.close()
            if port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < _PORT0_ATTEMPTS:
                continue  # the port picked for the first socket is taken for another: again
            raise
    raise AssertionError("unreachable")


def _say_no_ipv6(address: Address, exc: ListenError) -> None:
    global _said_no_ipv6
    if not _said_no_ipv6:
        _said_no_ipv6 = True
        log.warning(
            "no IPv6 on this host (%s): %s and other all-address listeners serve IPv4 only",
            exc.reason,
            format_hostport(address),
        )
