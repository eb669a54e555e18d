"""``[hosts]``: names and addresses from a hosts file and inline entries, as CoreDNS's ``hosts``
plugin serves them (k3s's ``NodeHosts``, minikube's ``host.minikube.internal``).

A stage of local data (kdns/server/stages.py): asked on the resolver's path, after the
pre-rendered answers dict (cluster names stay one dict lookup) and before zones and forwarding.
Semantics, after the CoreDNS hosts README:

- ``IP NAME [ALIAS...]`` per line, ``#`` comments; names are absolute (``k3s-server`` is the
  one-label name ``k3s-server.``); only names inside ``zones`` (default: every name) are served.
- A listed name answers its A and AAAA records (TTL ``ttl``, default 3600); asked for another
  type, it answers NOERROR with nothing (NODATA).
- Every listed address answers PTR with its names, unless ``no_reverse``.
- A name inside ``zones`` that is not listed goes on to the next source with ``fallthrough``;
  without it, CoreDNS answers SERVFAIL ("we don't have a SOA"), and so does kdns for names
  outside its own zones (names of kdns's zones are answered by those zones).

Inline entries come first; the file's lines follow (both kept, as CoreDNS). The file is re-read
when it changes (kdns.app: every ``server.reload_interval``), and every answer from it is
dropped from killer mode's wire cache in the same step.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from kdns.dns import names
from kdns.dns.answer import Answer, empty
from kdns.dns.records import AAAA, ANY, NOERROR, PTR, SERVFAIL, A, rdata_address, rrset
from kdns.dns.records import QNAME_POINTER as _POINTER

__all__ = ["DEFAULT_TTL", "Hosts", "HostsError", "parse_lines"]

DEFAULT_TTL = 3600  # CoreDNS hosts: "ttl ... default 3600"
_SERVFAIL = empty(SERVFAIL, False)


class HostsError(ValueError):
    """A line that is not ``IP NAME [ALIAS...]``; the message names where."""


def parse_lines(lines: Iterable[str], where: str) -> list[tuple[str, list[str]]]:
    """``(address, [names])`` per line; raises ``HostsError`` naming ``where:LINE``."""
    out = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0].split("%", 1)[0]))
        except ValueError:
            raise HostsError(f"{where}:{number}: {fields[0]!r} is not an IP address") from None
        if len(fields) < 2:
            raise HostsError(f"{where}:{number}: expected 'IP NAME [ALIAS...]'")
        hosts = []
        for host in fields[1:]:
            text = host.lower().rstrip(".")
            try:
                names.to_wire(text)
            except ValueError:
                raise HostsError(f"{where}:{number}: {host!r} is not a DNS name") from None
            hosts.append(text)
        out.append((address, hosts))
    return out


def read_file(path: str) -> list[tuple[str, list[str]]]:
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_lines(handle.read().splitlines(), path)
    except OSError as exc:
        raise HostsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise HostsError(f"{path}: not UTF-8 text ({exc.reason})") from None


class Hosts:
    """The hosts stage: ``lookup`` answers a listed name (or its PTR), ``None`` otherwise;
    ``closes`` says whether an unlisted name ends here (SERVFAIL: no fallthrough)."""

    __slots__ = ("_records", "_zones", "fallthrough", "ttl", "entries")

    def __init__(
        self,
        entries: Sequence[tuple[str, list[str]]],
        *,
        zones: Sequence[str] = (".",),
        ttl: int = DEFAULT_TTL,
        fallthrough: bool = False,
        no_reverse: bool = False,
    ) -> None:
        self.ttl = ttl
        self.fallthrough = fallthrough
        self.entries = len(entries)
        self._zones = tuple(names.to_wire(z) if z != "." else names.ROOT for z in zones)
        records: dict[bytes, dict[int, list[bytes]]] = {}
        for address, hosts in entries:
            rtype, packed = rdata_address(address)
            for host in hosts:
                owner = names.to_wire(host)
                if not self._inside(owner):
                    continue  # CoreDNS hosts: names outside the plugin's zones are not served
                rdatas = records.setdefault(owner, {}).setdefault(rtype, [])
                if packed not in rdatas:
                    rdatas.append(packed)
                if not no_reverse:
                    reverse = names.to_wire(ipaddress.ip_address(address).reverse_pointer)
                    ptrs = records.setdefault(reverse, {}).setdefault(PTR, [])
                    if owner not in ptrs:
                        ptrs.append(owner)
        self._records = records

    def __len__(self) -> int:
        return len(self._records)

    def _inside(self, name: bytes) -> bool:
        return any(zone == names.ROOT or names.is_subdomain(name, zone) for zone in self._zones)

    def lookup(self, qname: bytes, qtype: int) -> Answer | None:
        """The answer for a listed name (records, or NODATA for another type); else None."""
        types = self._records.get(qname)
        if types is None:
            return None
        wanted = [t for t in (A, AAAA, PTR) if t in types] if qtype == ANY else [qtype]
        section = tuple(rrset(_POINTER, t, self.ttl, types[t]) for t in wanted if t in types)
        if not section:
            return empty(NOERROR, True)
        return Answer(NOERROR, True, (section, (), ()))

    def closes(self, qname: bytes) -> Answer | None:
        """SERVFAIL for an unlisted name inside the zones without fallthrough (CoreDNS
        hosts), None when it goes on to the next source."""
        if self.fallthrough or not self._inside(qname):
            return None
        return _SERVFAIL
