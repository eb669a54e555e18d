"""Sets of client networks: who may transfer zones, who may use forwarding."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# forward.allow's default (BIND's allow-recursion { localhost; localnets; } in spirit): the
# networks a cluster or a home network uses, never the public internet.
PRIVATE = (
    "127.0.0.0/8",  # loopback
    "::1/128",
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # RFC 6598 shared address space (carrier-grade NAT, some pod networks)
    "fc00::/7",  # ULA (RFC 4193)
    "169.254.0.0/16",  # link-local (node-local DNS caches listen there)
    "fe80::/10",
)


class Networks:
    """A set of client networks (``transfer.allow``, ``forward.allow``); empty allows nobody.

    ``allow`` holds networks (``10.0.0.0/8``), single addresses (``10.0.0.53``, a /32) or
    ``*`` (anyone, as CoreDNS ``to *``). IPv4-mapped IPv6 clients (``::ffff:10.0.0.53``, seen
    on dual-stack sockets) match IPv4 entries.
    """

    __slots__ = ("networks", "any", "_decided")
    label = "networks"
    _REMEMBERED = 4096  # client addresses whose answer is kept (parsing one costs ~5 µs)

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.any = False
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            text = str(entry).strip()
            if text == "*":
                self.any = True
                continue
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{self.label}: {text!r} is not a network or address") from None
        self.networks = tuple(nets)
        self._decided: dict[str, bool] = {}

    def allowed(self, client_ip: str) -> bool:
        """Whether ``client_ip`` is in the set. Asked per forwarded query (forward.allow), so
        answers are remembered per address (bounded: forgotten all at once when full)."""
        decided = self._decided.get(client_ip)
        if decided is None:
            if len(self._decided) >= self._REMEMBERED:
                self._decided.clear()
            decided = self._decided[client_ip] = self._check(client_ip)
        return decided

    def _check(self, client_ip: str) -> bool:
        if self.any:
            return True
        if not self.networks:
            return False
        address = _client_address(client_ip)
        if address is None:
            return False
        return any(address in net for net in self.networks)

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __repr__(self) -> str:
        allow = ["*"] if self.any else []
        allow += [str(n) for n in self.networks]
        return f"{type(self).__name__}({allow!r})"


def _client_address(client_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    return address
