"""Gateway zones: the hostnames of Gateway API routes, Ingresses and annotated LoadBalancer
Services, answered with the addresses that serve them (what the k8s_gateway CoreDNS plugin and
external-dns + a DNS server do, inside kdns).

Who claims a hostname:
- an HTTPRoute, GRPCRoute or TLSRoute, for each parent Gateway it is attached to
  (``spec.parentRefs``; ``sectionName`` picks one listener): its ``spec.hostnames`` as the
  listener's ``hostname`` narrows them (Gateway API hostname intersection), or the listener's
  hostname when the route has none; a listener allowing only routes of its own namespace
  (``allowedRoutes.namespaces.from: Same``, the default) ignores routes of others. The answer
  is the Gateway's ``status.addresses`` (IPs as A/AAAA; a Hostname address as a CNAME when
  there is no IP);
- an Ingress: each ``spec.rules[].host``, answered with ``status.loadBalancer.ingress`` IPs (a
  CNAME to the ingress hostname when there is no IP);
- a LoadBalancer Service with the ``external-dns.alpha.kubernetes.io/hostname`` or
  ``kdns.io/hostname`` annotation, answered with its ingress IPs.

A hostname is served only inside a configured gateway zone. Wildcard hostnames
(``*.apps.home.example.com``) are ordinary names here; the resolver applies RFC 4592 to them,
so a more specific name always wins.

Conflicts: claims that answer the same records agree (two routes behind one Gateway are the
normal case). When they differ, one claim wins, deterministically: Gateway API routes before
Ingresses before Services (HTTPRoute, GRPCRoute, TLSRoute, Ingress, Service), then by the
claimant's namespace/name, then by the Gateway's namespace/name; the others are logged once.

Each hostname is one registry owner (``("gw", "", hostname)``): whatever changes (a route, a
Gateway's address, a filter), only the hostnames whose claims moved are re-rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from kdns.dns import names
from kdns.dns.records import CNAME, rdata_address
from kdns.dns.zones import ZoneSet
from kdns.model import (
    EMPTY_META,
    GATEWAY_RESOURCES,
    ROUTE_KINDS,
    Gateway,
    Ingress,
    Meta,
    Route,
    Service,
)

log = logging.getLogger("kdns.gateway")

Source = tuple[str, str, str]  # (kind, namespace, name) of a route, Ingress or Service
GatewayKey = tuple[str, str]
Records = dict[int, list[bytes]]

RESOURCES = GATEWAY_RESOURCES
_RANK = {kind: rank for rank, kind in enumerate(RESOURCES)}
# Conflicts already logged (hostname, claimants), per process: a reload's fresh registry or a
# re-render does not log the same conflict again.
_LOGGED: set[tuple[bytes, tuple[str, ...]]] = set()
_LOGGED_MAX = 10_000


def parse_filter(text: str) -> tuple[str, str | None] | None:
    """``"key=value"`` -> (key, value); ``"key"`` -> (key, None): the key is present with any
    value; ``""`` -> None (no filter). Raises ValueError for an empty key."""
    text = text.strip()
    if not text:
        return None
    key, eq, value = text.partition("=")
    key = key.strip()
    if not key or (eq and "=" in value):
        raise ValueError(f"expected KEY=VALUE or KEY, got {text!r}")
    return key, (value.strip() if eq else None)


def _matches(pairs: tuple[tuple[str, str], ...], wanted: tuple[str, str | None] | None) -> bool:
    if wanted is None:
        return True
    key, value = wanted
    return any(k == key and (value is None or v == value) for k, v in pairs)


class GatewaySettings(NamedTuple):
    """What ``[gateway]`` selects (kdns.config validates it)."""

    zones: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()  # "namespace/name" or "namespace/*"; empty: every Gateway
    label: str = ""  # "key=value" or "key": routes, Ingresses and Services must carry it
    annotation: str = ""  # the same, for an annotation
    resources: tuple[str, ...] = RESOURCES  # which kinds publish names

    def selects_gateway(self, namespace: str, name: str) -> bool:
        if not self.gateways:
            return True
        return f"{namespace}/{name}" in self.gateways or f"{namespace}/*" in self.gateways

    def selects(self, meta: Meta | None) -> bool:
        meta = meta or EMPTY_META
        return _matches(meta.labels, parse_filter(self.label)) and _matches(
            meta.annotations, parse_filter(self.annotation)
        )

    def watched_kinds(self) -> list[str]:
        """The API kinds to list+watch for these settings (Services are always watched)."""
        if not self.zones:
            return []
        routes = [kind for kind in ROUTE_KINDS if kind in self.resources]
        kinds = ["Gateway", *routes] if routes else []
        if "Ingress" in self.resources:
            kinds.append("Ingress")
        return kinds


def _wild_match(wildcard: str, name: str) -> bool:
    """Gateway API: ``*.example.com`` matches every name below example.com (one label or
    more), never example.com itself."""
    return name.endswith(wildcard[1:]) and len(name) > len(wildcard) - 1


def intersect(route_host: str, listener_host: str) -> str | None:
    """The hostname a route gets on a listener: the more specific of the two when one
    contains the other (Gateway API, HTTPRoute.spec.hostnames), else None (no match)."""
    if route_host == listener_host:
        return route_host
    if listener_host.startswith("*.") and _wild_match(listener_host, route_host):
        return route_host
    if route_host.startswith("*.") and _wild_match(route_host, listener_host):
        return listener_host
    return None


def route_hostnames(route: Route, gateway: Gateway, section: str) -> list[str]:
    """The hostnames ``route`` has on ``gateway`` through the listener named ``section`` (every
    listener when empty)."""
    out: list[str] = []
    for listener in gateway.listeners:
        if section and listener.name != section:
            continue
        if listener.namespaces == "Same" and route.namespace != gateway.namespace:
            continue
        if not listener.hostname:
            found: Iterable[str] = route.hostnames
        elif not route.hostnames:
            found = (listener.hostname,)
        else:
            found = (
                m for h in route.hostnames if (m := intersect(h, listener.hostname)) is not None
            )
        out.extend(h for h in found if h not in out)
    return out


class Claim(NamedTuple):
    order: tuple[int, str, str, str]  # rank, claimant "ns/name", via Gateway "ns/name"
    what: str  # "HTTPRoute apps/grafana via Gateway infra/internal", for the log
    answer: tuple[tuple[int, bytes], ...]  # (rtype, rdata), sorted


def _answer(ips: Iterable[str], hostnames: Iterable[str]) -> tuple[tuple[int, bytes], ...]:
    records = sorted({rdata_address(ip) for ip in ips})
    if records:
        return tuple(records)
    for hostname in hostnames:  # no IP: a CNAME to the load balancer's name
        try:
            return ((CNAME, names.to_wire(hostname)),)
        except ValueError:
            continue
    return ()


class GatewayTable:
    """The Gateway API, Ingress and Service-hostname side of the registry: objects, the claims
    they make on hostnames, and rendering one hostname's records."""

    def __init__(
        self,
        settings: GatewaySettings,
        zones: ZoneSet,
        services: Mapping[tuple[str, str], Service],
    ) -> None:
        self.settings = settings
        self.zones = zones
        self.apexes = zones.gateway_apexes
        self.enabled = bool(self.apexes)
        self.services = services
        self.gateways: dict[GatewayKey, Gateway] = {}
        self.routes: dict[Source, Route] = {}
        self.ingresses: dict[tuple[str, str], Ingress] = {}
        self.routes_of: dict[GatewayKey, set[Source]] = {}  # Gateway -> routes naming it
        self.claims: dict[bytes, set[Source]] = {}  # hostname -> who claims it
        self.names_of: dict[Source, tuple[bytes, ...]] = {}  # the reverse

    # --------------------------------------------------------------- objects

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in ROUTE_KINDS}
        for kind, _, _ in self.routes:
            counts[kind] += 1
        return {"Gateway": len(self.gateways), **counts, "Ingress": len(self.ingresses)}

    def current(self, kind: str, key: tuple[str, str]) -> Gateway | Route | Ingress | None:
        if kind == "Gateway":
            return self.gateways.get(key)
        if kind == "Ingress":
            return self.ingresses.get(key)
        return self.routes.get((kind, *key))

    def keys(self, kind: str) -> list[tuple[str, str]]:
        if kind == "Gateway":
            return list(self.gateways)
        if kind == "Ingress":
            return list(self.ingresses)
        return [(ns, name) for k, ns, name in self.routes if k == kind]

    def objects(self) -> list[Gateway | Route | Ingress]:
        return [*self.gateways.values(), *self.routes.values(), *self.ingresses.values()]

    def upsert(self, obj: Gateway | Route | Ingress) -> set[bytes] | None:
        """Store ``obj``; the hostnames whose claims may have changed, None when nothing
        DNS-visible changed."""
        if isinstance(obj, Gateway):
            if self.gateways.get(obj.key) == obj:
                return None
            self.gateways[obj.key] = obj
            return self._refresh(self.routes_of.get(obj.key, ()))
        if isinstance(obj, Ingress):
            if self.ingresses.get(obj.key) == obj:
                return None
            self.ingresses[obj.key] = obj
            return self._refresh((("Ingress", *obj.key),))
        source = (obj.kind, obj.namespace, obj.name)
        old = self.routes.get(source)
        if old == obj:
            return None
        self._link_route(source, old, obj)
        self.routes[source] = obj
        return self._refresh((source,))

    def delete(self, kind: str, key: tuple[str, str]) -> set[bytes] | None:
        if kind == "Gateway":
            if self.gateways.pop(key, None) is None:
                return None
            return self._refresh(self.routes_of.get(key, ()))
        if kind == "Ingress":
            if self.ingresses.pop(key, None) is None:
                return None
            return self._refresh((("Ingress", *key),))
        source = (kind, *key)
        old = self.routes.pop(source, None)
        if old is None:
            return None
        self._link_route(source, old, None)
        return self._refresh((source,))

    def service_changed(self, key: tuple[str, str]) -> set[bytes]:
        """A Service changed or went away (the registry's ``services`` already shows it)."""
        source = ("Service", *key)
        svc = self.services.get(key)
        if source not in self.names_of and (svc is None or not svc.hostnames):
            return set()  # the common case: a Service that never published a hostname
        return self._refresh((source,))

    def _link_route(self, source: Source, old: Route | None, new: Route | None) -> None:
        before = {(p.namespace, p.name) for p in old.parents} if old else set()
        after = {(p.namespace, p.name) for p in new.parents} if new else set()
        for gateway in before - after:
            routes = self.routes_of.get(gateway)
            if routes is not None:
                routes.discard(source)
                if not routes:
                    del self.routes_of[gateway]
        for gateway in after - before:
            self.routes_of.setdefault(gateway, set()).add(source)

    # ---------------------------------------------------------------- claims

    def _refresh(self, sources: Iterable[Source]) -> set[bytes]:
        changed: set[bytes] = set()
        for source in list(sources):
            old = self.names_of.pop(source, ())
            new = tuple(self._claims_of(source)) if self.enabled else ()
            if new:
                self.names_of[source] = new
            for name in old:
                claimants = self.claims.get(name)
                if claimants is not None:
                    claimants.discard(source)
                    if not claimants:
                        del self.claims[name]
            for name in new:
                self.claims.setdefault(name, set()).add(source)
            # Every name the source claimed or claims: its records may have changed even when
            # the set of names did not (a Gateway's new address).
            changed.update(old)
            changed.update(new)
        return changed

    def _ours(self, hostname: str) -> bytes | None:
        """The wire name of ``hostname`` when its most specific zone is a gateway zone (not
        a more specific zone of another kind below it), else None."""
        try:
            wire = names.to_wire(hostname)
        except ValueError:
            return None
        zone = self.zones.find(wire)
        return wire if zone is not None and zone.apex in self.apexes else None

    def _claims_of(self, source: Source) -> dict[bytes, list[Claim]]:
        """hostname -> this source's claims on it (a route has one per Gateway)."""
        kind, namespace, name = source
        settings = self.settings
        out: dict[bytes, list[Claim]] = {}
        if kind not in settings.resources:
            return out
        rank = _RANK[kind]
        who = f"{namespace}/{name}"

        def claim(hostname: str, via: str, answer: tuple[tuple[int, bytes], ...]) -> None:
            wire = self._ours(hostname) if answer else None
            if wire is None:
                return
            what = f"{kind} {who}" + (f" via Gateway {via}" if via else "")
            out.setdefault(wire, []).append(Claim((rank, who, via, hostname), what, answer))

        if kind in ROUTE_KINDS:
            route = self.routes.get(source)
            if route is None or not settings.selects(route.meta):
                return out
            for parent in route.parents:
                if not settings.selects_gateway(parent.namespace, parent.name):
                    continue
                gateway = self.gateways.get((parent.namespace, parent.name))
                if gateway is None:
                    continue
                answer = _answer(gateway.addresses, gateway.hostnames)
                via = f"{gateway.namespace}/{gateway.name}"
                for hostname in route_hostnames(route, gateway, parent.section):
                    claim(hostname, via, answer)
        elif kind == "Ingress":
            ingress = self.ingresses.get((namespace, name))
            if ingress is None or not settings.selects(ingress.meta):
                return out
            answer = _answer(ingress.lb_ips, ingress.lb_hostnames)
            for hostname in ingress.hosts:
                claim(hostname, "", answer)
        else:
            svc = self.services.get((namespace, name))
            if svc is None or not svc.hostnames or not settings.selects(svc.meta):
                return out
            answer = _answer(svc.lb_ips, ())
            for hostname in svc.hostnames:
                claim(hostname, "", answer)
        return out

    # -------------------------------------------------------------- rendering

    def records(self, name: bytes) -> Records:
        """The records ``name`` answers: the winning claim's (see the module docstring)."""
        claims: list[Claim] = []
        for source in self.claims.get(name, ()):
            claims.extend(self._claims_of(source).get(name, ()))
        if not claims:
            return {}
        claims.sort()
        winner = claims[0]
        losers = [c for c in claims[1:] if c.answer != winner.answer]
        if losers:
            self._log_conflict(name, winner, losers)
        records: Records = {}
        for rtype, rdata in winner.answer:
            records.setdefault(rtype, []).append(rdata)
        return records

    def _log_conflict(self, name: bytes, winner: Claim, losers: list[Claim]) -> None:
        seen = (name, (winner.what, *(c.what for c in losers)))
        if seen in _LOGGED:
            return
        if len(_LOGGED) >= _LOGGED_MAX:
            _LOGGED.clear()
        _LOGGED.add(seen)
        log.warning(
            "gateway: %s is claimed with different addresses by %s; answering %s's "
            "(set [gateway] gateways, label or annotation to pick one)",
            names.to_text(name),
            ", ".join(c.what for c in [winner, *losers]),
            winner.what,
        )
