"""What every slimmer shares (kdns.k8s.objects, kdns.k8s.gatewayobjects): addresses
normalised and checked, values DNS cannot use counted and logged once, an object's namespace and
name, port numbers."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from socket import AF_INET, inet_ntop, inet_pton
from typing import Any

Raw = Mapping[str, Any]
EMPTY: Mapping[str, Any] = {}

log = logging.getLogger("kdns.objects")

# Values skipped at ingest (an IPv6 ClusterIP with a zone id, a podIP of 10.1.2.300, ...), by
# (kind, field): exported as kdns_objects_skipped_values_total. Each distinct problem is logged
# once (kind namespace/name, field, value, reason), not on every watch event that repeats it.
SKIPPED: Counter[tuple[str, str]] = Counter()
_LOGGED: set[tuple[str, str, str, str, str]] = set()
_LOGGED_MAX = 10_000


def normalize_ip(text: str) -> str | None:
    """The compressed form of an IP address, or None when ``text`` is not one.

    Compressed form makes "2001:0db8::0001" and "2001:db8::1" the same key for reverse lookups
    and the same answer bytes. Scoped IPv6 ("fe80::1%eth0") is refused: a zone index means
    nothing to a remote resolver.

    An IPv4 address in its canonical form (what the API server stores) is returned as is, the
    same string object: nothing new is kept per address. No cache of every address seen (a
    cluster has one per pod: an LRU entry costs ~250 bytes, more than the address's records).
    """
    try:
        if inet_ntop(AF_INET, inet_pton(AF_INET, text)) == text:
            return text
    except (OSError, TypeError, ValueError):
        pass
    return _normalize_ip(text)


@lru_cache(maxsize=1 << 10)
def _normalize_ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return None
    return ip.compressed


def valid_ips(
    values: Iterable[Any], kind: str, key: tuple[str, str], field: str
) -> tuple[str, ...]:
    """Normalised, de-duplicated IPs in their original order; invalid entries are skipped,
    each logged once and counted (``skipped``)."""
    out: list[str] = []
    for value in values:
        ip = normalize_ip(value) if isinstance(value, str) else None
        if ip is None:
            skipped(kind, key, field, value, _why_not_ip(value))
        elif ip not in out:
            out.append(ip)
    return tuple(out)


def _why_not_ip(value: Any) -> str:
    if not isinstance(value, str):
        return f"expected an IP address, got a {type(value).__name__}"
    if "%" in value:
        return "an IPv6 zone id (scope) means nothing to a remote client"
    return "not an IP address"


def skipped(kind: str, key: tuple[str, str], field: str, value: Any, reason: str) -> None:
    """Count a value DNS could not use, and log it the first time it is seen for the object."""
    SKIPPED[(kind, field)] += 1
    namespace, name = key
    seen = (kind, namespace, name, field, repr(value)[:200])
    if seen in _LOGGED:
        return
    if len(_LOGGED) >= _LOGGED_MAX:
        _LOGGED.clear()
    _LOGGED.add(seen)
    where = f"{namespace}/{name}" if namespace else name
    log.warning("%s %s: %s: skipped %s: %s", kind, where, field, seen[4], reason)


def object_key(raw: Raw, kind: str, namespaced: bool = True) -> tuple[str, str]:
    """(namespace, name) from metadata; a missing namespace means "default" like kubectl."""
    meta = raw.get("metadata") or EMPTY
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise ValueError(f"{kind} is missing metadata.name")
    if not namespaced:
        return "", name
    # Interned: thousands of objects share a handful of namespaces; one string each.
    return sys.intern(meta.get("namespace") or "default"), name


def port_number(value: Any, where: str) -> int:
    # bool is an int subclass; "port: yes" in YAML 1.1 would otherwise become port 1.
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a port number, got {value!r}")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{where}: port {port} is out of range")
    return port
