"""Response rate limiting (RRL), after BIND's and Knot's: off by default.

An authoritative server reachable from outside (a LoadBalancer Service, a homelab LAN) can be
used to reflect traffic at a spoofed victim. RRL limits how many *identical* responses one client
network receives per second; a flood of them is dropped, except every ``slip``-th dropped one,
which is sent as a truncated empty reply (TC=1, the question only) so a real client behind a
spoofed-victim's network can still get its answer over TCP.

Accounts are keyed, as BIND's, by the client's network (``ipv4_prefix`` / ``ipv6_prefix`` bits)
and the response's class:

- a positive answer (or NODATA): the question name and type;
- NXDOMAIN: the zone that answered (the owner of the SOA in authority), so random subdomains
  of one zone share one account;
- an error (SERVFAIL, REFUSED, FORMERR, ...): one account per client network.

Each account is a token bucket holding up to ``responses_per_second`` tokens and refilled at that
rate. The table is bounded (``max_entries``): idle, refilled accounts are swept first, then the
oldest. ``exempt`` networks are never limited.

Interface for the transports (UDP here; any other datagram path can call it the same way)::

    action = rrl.check(client_ip, response, now)   # SEND, DROP or SLIP
    if action == SLIP: response = slip_reply(response)

TCP replies are never limited: a TCP client has proven its address.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from socket import AF_INET, AF_INET6, inet_pton

__all__ = ["DROP", "SEND", "SLIP", "Rrl", "slip_reply"]

SEND, DROP, SLIP = 0, 1, 2

_POSITIVE, _NXDOMAIN, _ERROR = b"p", b"n", b"e"
_TC = 0x02


def _name_end(data: bytes, pos: int) -> int:
    """Offset past the name at ``pos`` (labels, ending in a root label or a pointer); -1 bad."""
    n = len(data)
    while pos < n:
        length = data[pos]
        if length >= 0xC0:
            return pos + 2
        pos += 1 + length
        if length == 0:
            return pos
    return -1


def _question_end(response: bytes) -> int:
    """Offset past the response's question (12 when it has none); -1 when malformed."""
    if len(response) < 12:
        return -1
    if response[4:6] != b"\x00\x01":
        return 12
    end = _name_end(response, 12)
    return -1 if end < 0 or end + 4 > len(response) else end + 4


def slip_reply(response: bytes) -> bytes:
    """The truncated stand-in for a dropped response: its header with TC set, no records,
    the question kept (a client retries over TCP, RFC 7766)."""
    qend = _question_end(response)
    if qend < 0:
        qend = 12
    qdcount = b"\x00\x01" if qend > 12 else b"\x00\x00"
    flags = bytes((response[2] | _TC, response[3] & 0xF0))  # rcode NOERROR, as BIND's slip
    return response[:2] + flags + qdcount + b"\x00\x00\x00\x00\x00\x00" + response[12:qend]


class _Network:
    __slots__ = ("version", "network", "mask")

    def __init__(self, text: str) -> None:
        net = ipaddress.ip_network(text, strict=False)
        self.version = net.version
        self.network = int(net.network_address)
        self.mask = int(net.netmask)


class Rrl:
    """Token buckets per (client network, response class); see the module docstring."""

    def __init__(
        self,
        responses_per_second: int,
        *,
        slip: int = 2,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
        exempt: Iterable[str] = (),
        max_entries: int = 100_000,
    ) -> None:
        if responses_per_second < 1:
            raise ValueError("responses_per_second must be at least 1")
        self.rate = float(responses_per_second)
        self.slip = slip  # 0: never slip; 1: slip every dropped response; N: every Nth
        self.mask4 = ((1 << 32) - 1) ^ ((1 << (32 - ipv4_prefix)) - 1)
        self.mask6 = ((1 << 128) - 1) ^ ((1 << (128 - ipv6_prefix)) - 1)
        self.exempt = [_Network(text) for text in exempt]
        self.max_entries = max_entries
        # key -> [tokens, last refill time, responses dropped in a row (for slip)]
        self.table: dict[bytes, list[float]] = {}
        # client address -> its network key (b"" for exempt), so a flood parses each source once
        self._clients: dict[str, bytes] = {}
        self.sent = 0
        self.dropped = 0
        self.slipped = 0

    def _client_key(self, client_ip: str) -> bytes:
        key = self._clients.get(client_ip)
        if key is not None:
            return key
        try:
            packed = inet_pton(AF_INET, client_ip)
            version, mask = 4, self.mask4
        except OSError:
            try:
                packed = inet_pton(AF_INET6, client_ip.partition("%")[0])
                version, mask = 6, self.mask6
            except OSError:
                packed, version, mask = b"", 0, 0
        number = int.from_bytes(packed, "big")
        if any(n.version == version and number & n.mask == n.network for n in self.exempt):
            key = b""
        else:
            key = (number & mask).to_bytes(len(packed), "big") + bytes((version,))
        if len(self._clients) >= 65536:
            self._clients.clear()
        self._clients[client_ip] = key
        return key

    @staticmethod
    def _class_key(response: bytes) -> bytes:
        """The response's account within a client network (BIND's response classes)."""
        rcode = response[3] & 0x0F
        if rcode not in (0, 3):
            return _ERROR
        qend = _question_end(response)
        if qend <= 12:
            return _ERROR
        if rcode == 0:
            return _POSITIVE + response[12:qend].lower()
        # NXDOMAIN: the SOA owner in authority is the zone (a pointer into the question, or
        # a name of its own); without one, the question name.
        ancount, nscount = struct.unpack_from("!HH", response, 6)
        pos = qend
        for _ in range(ancount):
            end = _name_end(response, pos)
            if end < 0 or end + 10 > len(response):
                return _NXDOMAIN + response[12 : qend - 4].lower()
            pos = end + 10 + ((response[end + 8] << 8) | response[end + 9])
        if nscount and pos < len(response):
            if response[pos] >= 0xC0 and pos + 1 < len(response):
                target = ((response[pos] & 0x3F) << 8) | response[pos + 1]
                if 12 <= target < qend - 4:
                    return _NXDOMAIN + response[target : qend - 4].lower()
            else:
                end = _name_end(response, pos)
                if end > pos:
                    return _NXDOMAIN + response[pos:end].lower()
        return _NXDOMAIN + response[12 : qend - 4].lower()

    def check(self, client_ip: str, response: bytes, now: float) -> int:
        """SEND, DROP or SLIP (send ``slip_reply(response)`` instead) for one UDP response."""
        client = self._client_key(client_ip)
        if not client:
            return SEND  # an exempt network
        key = client + self._class_key(response)
        table = self.table
        account = table.get(key)
        if account is None:
            if len(table) >= self.max_entries:
                self._sweep(now)
            table[key] = [self.rate - 1.0, now, 0.0]
            self.sent += 1
            return SEND
        tokens = account[0] + (now - account[1]) * self.rate
        if tokens > self.rate:
            tokens = self.rate
        account[1] = now
        if tokens >= 1.0:
            account[0] = tokens - 1.0
            account[2] = 0.0
            self.sent += 1
            return SEND
        account[0] = tokens
        account[2] += 1.0
        if self.slip and int(account[2]) % self.slip == 0:
            self.slipped += 1
            return SLIP
        self.dropped += 1
        return DROP

    def _sweep(self, now: float) -> None:
        """Make room: forget accounts that have refilled (nothing to remember), then, if
        still full, the oldest half."""
        table = self.table
        rate = self.rate
        idle = [k for k, (tokens, last, _) in table.items() if tokens + (now - last) * rate >= rate]
        for key in idle:
            del table[key]
        if len(table) >= self.max_entries:
            for key in list(table)[: len(table) // 2 + 1]:
                del table[key]
