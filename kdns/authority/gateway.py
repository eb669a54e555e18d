"""Gateway zones: the hostnames of Gateway API routes, Ingresses and annotated Gateways and
Services, answered with the addresses that serve them (what the k8s_gateway CoreDNS plugin and
external-dns + a DNS server do, inside kdns).

Who claims a hostname:
- an HTTPRoute, GRPCRoute, TLSRoute, TCPRoute or UDPRoute, for each parent it is attached to
  (``spec.parentRefs``: a Gateway, or a ListenerSet the Gateway admits through
  ``spec.allowedListeners``). A route is attached to a listener only when everything the
  Gateway API says about attachment holds (gateway.networking.k8s.io/v1 Gateway and route
  types):

  - ``sectionName`` names the listener and ``port`` its port, when set;
  - the listener's protocol carries the route's kind, and ``allowedRoutes.kinds`` (when set)
    lists it: HTTP/HTTPS take HTTPRoute and GRPCRoute, TLS takes TLSRoute (GEP-2643; TCPRoute
    only when the listener lists it), TCP takes TCPRoute, UDP UDPRoute;
  - ``allowedRoutes.namespaces.from``: ``Same`` (the default: the namespace of the Gateway,
    or of the ListenerSet), ``All``, or ``Selector`` (the route's Namespace labels match the
    label selector);
  - the route's hostnames (``spec.hostnames`` plus its hostname annotation) intersect the
    listener's ``hostname`` (the more specific of the two is published), or the listener's
    hostname when the route has none; TCP and UDP listeners match no hostname, so a
    TCPRoute/UDPRoute publishes its hostname annotation only;
  - with ``require_accepted`` (the default), the route's ``status.parents`` entry for that
    parent, written by the controller of the Gateway's GatewayClass, says ``Accepted=True``
    at the route's current generation (external-dns since kubernetes-sigs/external-dns#5241);
  - the Gateway's class is in ``gateway_classes`` when that filter is set.

  The answer is the route's ``target`` annotation, else the Gateway's, else the Gateway's
  ``status.addresses`` (IPs as A/AAAA; a Hostname address as a CNAME when there is no IP);
- a Gateway's own hostname annotation (external-dns.alpha.kubernetes.io/hostname: the names
  of its TCPRoutes and UDPRoutes, which have no hostnames of their own), answered like a route;
- an Ingress of an allowed class (``ingress_classes``): each ``spec.rules[].host`` and its
  hostname annotation, answered with its ``target`` annotation, else its
  ``status.loadBalancer.ingress`` IPs (a CNAME to the ingress hostname when there is no IP);
- a Service: a LoadBalancer's hostname annotations (external-dns's, k8s_gateway's
  ``coredns.io/hostname``, ``kdns.io/hostname``) answered with its ``target`` annotation,
  else its ingress IPs, else a CNAME to its ingress hostname; any Service's external-dns
  ``internal-hostname`` answered with its ClusterIPs.

A hostname is served only inside a configured gateway zone. Route wildcards
(``*.apps.home.example.com``) follow the Gateway API rule, not RFC 4592: they match names any
number of labels below their suffix, even below a name that exists (the resolver asks
``wildcard_for``); a more specific name or wildcard always wins.

Conflicts: claims that answer the same records agree (two routes behind one Gateway are the
normal case). When they differ, one claim wins, deterministically: Gateway API routes before
Gateways before Ingresses before Services (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
Gateway, Ingress, Service), then by the claimant's namespace/name, then by the Gateway's
namespace/name; the others are logged once.

TTL: the winning claimant's ``ttl`` annotation, else ``[gateway] ttl``, else the zone's.

Each hostname is one registry owner (``("gw", "", hostname)``): whatever changes (a route, a
Gateway's address, a namespace's labels, a filter), only the hostnames whose claims moved are
re-rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from kdns.authority.zones import LOCAL, ZoneSet
from kdns.dns import names
from kdns.dns.records import AAAA, ANY, AXFR, CNAME, IXFR, NOERROR, A, rdata_address
from kdns.model import (
    EMPTY_HINTS,
    EMPTY_META,
    GATEWAY_RESOURCES,
    ROUTE_KINDS,
    Gateway,
    GatewayClass,
    Hints,
    Ingress,
    Listener,
    ListenerSet,
    Meta,
    ParentRef,
    Route,
    Selector,
    Service,
)

log = logging.getLogger("kdns.gateway")

Source = tuple[str, str, str]  # (kind, namespace, name) of a claimant
GatewayKey = tuple[str, str]
Records = dict[int, list[bytes]]
GatewayObject = GatewayClass | Gateway | ListenerSet | Route | Ingress

RESOURCES = GATEWAY_RESOURCES
_RANK = {kind: rank for rank, kind in enumerate(RESOURCES)}
GROUP = "gateway.networking.k8s.io"
WILDCARD = b"\x01*"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Listener protocol -> the route kinds it can carry (Gateway API Listener.protocol and
# AllowedRoutes.kinds: "A RouteGroupKind MUST correspond to kinds of Routes that are compatible
# with the application protocol specified in the Listener's Protocol field"), and the kinds it
# takes when allowedRoutes.kinds is unset.
COMPATIBLE: Mapping[str, frozenset[str]] = {
    "HTTP": frozenset((f"{GROUP}/HTTPRoute", f"{GROUP}/GRPCRoute")),
    "HTTPS": frozenset((f"{GROUP}/HTTPRoute", f"{GROUP}/GRPCRoute")),
    "TLS": frozenset((f"{GROUP}/TLSRoute", f"{GROUP}/TCPRoute")),
    "TCP": frozenset((f"{GROUP}/TCPRoute",)),
    "UDP": frozenset((f"{GROUP}/UDPRoute",)),
}
DEFAULT_KINDS: Mapping[str, frozenset[str]] = {
    **COMPATIBLE,
    "TLS": frozenset((f"{GROUP}/TLSRoute",)),  # GEP-2643: a TLS listener's route is TLSRoute
}
# Protocols that match no hostname (Listener.hostname "is ignored for protocols that don't
# require hostname based matching").
_NO_HOSTNAME = frozenset(("TCP", "UDP"))
_HOSTLESS_KINDS = frozenset(("TCPRoute", "UDPRoute"))
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


def selector_matches(selector: Selector | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every requirement holds (an empty selector selects
    everything); None (no selector where one is required) selects nothing."""
    if selector is None:
        return False
    for key, operator, values in selector:
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        else:  # DoesNotExist
            ok = not present
        if not ok:
            return False
    return True


class GatewaySettings(NamedTuple):
    """What ``[gateway]`` selects (kdns.config validates it)."""

    zones: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()  # "namespace/name" or "namespace/*"; empty: every Gateway
    label: str = ""  # "key=value" or "key": routes, Ingresses and Services must carry it
    annotation: str = ""  # the same, for an annotation
    resources: tuple[str, ...] = RESOURCES  # which kinds publish names
    gateway_classes: tuple[str, ...] = ()  # spec.gatewayClassName of Gateways; empty: any
    ingress_classes: tuple[str, ...] = ()  # an Ingress's class; empty: any
    require_accepted: bool = True  # route status.parents must say Accepted=True
    fallthrough: bool = False  # unclaimed names go to the zone's upstreams
    ttl: int | None = None  # gateway names' TTL; None: kubernetes.ttl
    nameserver: str = ""  # the gateway zones' NS name; "": ns.dns.<zone>
    nameserver_addresses: tuple[str, ...] = ()  # its glue; (): the DNS Service's addresses

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
        kinds = []
        if routes or "Gateway" in self.resources:
            kinds = ["GatewayClass", "Gateway", "ListenerSet", *routes]
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


def kind_allowed(kind: str, listener: Listener) -> bool:
    """The listener takes routes of ``kind`` (Gateway API AllowedRoutes.kinds and protocol)."""
    group_kind = f"{GROUP}/{kind}"
    protocol = listener.protocol
    if listener.kinds:
        # Listed kinds the protocol cannot carry are invalid (InvalidRouteKinds); a custom
        # (domain-prefixed) protocol takes what it lists.
        compatible = COMPATIBLE.get(protocol)
        return group_kind in listener.kinds and (compatible is None or group_kind in compatible)
    if not protocol:  # hand-written manifests without a protocol: as before, any kind
        return True
    return group_kind in DEFAULT_KINDS.get(protocol, ())


def route_hostnames(
    route: Route,
    listeners: Iterable[Listener],
    parent: ParentRef,
    namespace: str,
    labels: Mapping[str, str],
) -> list[str]:
    """The hostnames ``route`` has through ``parent`` on ``listeners`` (of a Gateway or a
    ListenerSet in ``namespace``); ``labels`` are the route's Namespace labels."""
    out: list[str] = []
    own = route.hostnames + tuple(h for h in route.hints.hostnames if h not in route.hostnames)
    for listener in listeners:
        if parent.section and listener.name != parent.section:
            continue
        if parent.port and listener.port != parent.port:
            continue
        if not kind_allowed(route.kind, listener):
            continue
        allowed = listener.namespaces
        if allowed == "Same" and route.namespace != namespace:
            continue
        if allowed == "Selector" and not selector_matches(listener.selector, labels):
            continue
        if allowed not in ("Same", "All", "Selector"):
            continue
        found: Iterable[str]
        if route.kind in _HOSTLESS_KINDS or listener.protocol in _NO_HOSTNAME:
            found = route.hints.hostnames  # no hostname matching at L4: the annotation's
        elif not listener.hostname:
            found = own
        elif not own:
            found = (listener.hostname,)
        else:
            found = (m for h in own if (m := intersect(h, listener.hostname)) is not None)
        out.extend(h for h in found if h not in out)
    return out


class Claim(NamedTuple):
    order: tuple[int, str, str, str]  # rank, claimant "ns/name", via Gateway "ns/name"
    what: str  # "HTTPRoute apps/grafana via Gateway infra/internal", for the log
    answer: tuple[tuple[int, bytes], ...]  # (rtype, rdata), sorted
    ttl: int  # -1: the zone's
    gateway_class: str | None = None  # the Gateway's spec.gatewayClassName (routes, Gateways)
    ingress_class: str | None = None  # an Ingress's class


# (gateway_classes, ingress_classes): which claims a set of class filters lets answer ([gateway]
# for clients in no view, a [[views]] entry's own for its clients); () lets any class.
Classes = tuple[tuple[str, ...], tuple[str, ...]]


def passes(claim: Claim, classes: Classes) -> bool:
    """The claim survives the class filters (k8s_gateway's gatewayClasses / ingressClasses,
    external-dns --gateway-class / --ingress-class): Services carry no class and always do."""
    gateway_classes, ingress_classes = classes
    if gateway_classes and claim.gateway_class is not None:
        if claim.gateway_class not in gateway_classes:
            return False
    if ingress_classes and claim.ingress_class is not None:
        return claim.ingress_class in ingress_classes
    return True


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


def _target_answer(hints: Hints) -> tuple[tuple[int, bytes], ...]:
    """external-dns's target annotation: its IPs, else a CNAME to its (first) hostname."""
    ips = [t for t in hints.targets if ":" in t or t.replace(".", "").isdigit()]
    return _answer(ips, [t for t in hints.targets if t not in ips])


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
        self.classes: dict[str, GatewayClass] = {}
        self.gateways: dict[GatewayKey, Gateway] = {}
        self.listenersets: dict[GatewayKey, ListenerSet] = {}
        self.routes: dict[Source, Route] = {}
        self.ingresses: dict[tuple[str, str], Ingress] = {}
        self.ns_labels: dict[str, tuple[tuple[str, str], ...]] = {}  # Namespace -> labels
        # (parent kind, namespace, name) -> routes naming it; Gateway -> its ListenerSets.
        self.routes_of: dict[Source, set[Source]] = {}
        self.sets_of: dict[GatewayKey, set[GatewayKey]] = {}
        self.claims: dict[bytes, set[Source]] = {}  # hostname -> who claims it
        self.names_of: dict[Source, tuple[bytes, ...]] = {}  # the reverse
        # Claimed wildcard names whose claims [gateway]'s class filters let answer (Gateway
        # API matching, asked by the resolver).
        self.wildcards: set[bytes] = set()
        self.ttls: dict[bytes, int] = {}  # hostname -> its TTL, when not the zone's
        # Claims are kept whatever their class; the filters pick among them when a name is
        # rendered: [gateway]'s for the registry's answers, a view's own for its overlay.
        self.filters: Classes = (settings.gateway_classes, settings.ingress_classes)
        # Views with class filters of their own: one overlay per distinct filter set, holding
        # only the names whose answer differs from [gateway]'s (kdns.policy.views asks them).
        self.overlays: dict[Classes, Overlay] = {}
        self.moved: set[bytes] = set()  # names an overlay's answer moved for (next flush tells)
        self.moves = 0  # counts overlay moves: a view's memo of answers is dropped on change

    # --------------------------------------------------------------- objects

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in ROUTE_KINDS}
        for kind, _, _ in self.routes:
            counts[kind] += 1
        return {
            "GatewayClass": len(self.classes),
            "Gateway": len(self.gateways),
            "ListenerSet": len(self.listenersets),
            **counts,
            "Ingress": len(self.ingresses),
        }

    def current(self, kind: str, key: tuple[str, str]) -> GatewayObject | None:
        if kind == "GatewayClass":
            return self.classes.get(key[1])
        if kind == "Gateway":
            return self.gateways.get(key)
        if kind == "ListenerSet":
            return self.listenersets.get(key)
        if kind == "Ingress":
            return self.ingresses.get(key)
        return self.routes.get((kind, *key))

    def keys(self, kind: str) -> list[tuple[str, str]]:
        if kind == "GatewayClass":
            return [("", name) for name in self.classes]
        if kind == "Gateway":
            return list(self.gateways)
        if kind == "ListenerSet":
            return list(self.listenersets)
        if kind == "Ingress":
            return list(self.ingresses)
        return [(ns, name) for k, ns, name in self.routes if k == kind]

    def objects(self) -> list[GatewayObject]:
        return [
            *self.classes.values(),
            *self.gateways.values(),
            *self.listenersets.values(),
            *self.routes.values(),
            *self.ingresses.values(),
        ]

    def upsert(self, obj: GatewayObject) -> set[bytes] | None:
        """Store ``obj``; the hostnames whose claims may have changed, None when nothing
        DNS-visible changed."""
        if isinstance(obj, GatewayClass):
            if self.classes.get(obj.name) == obj:
                return None
            self.classes[obj.name] = obj
            return self._refresh(self._of_class(obj.name))
        if isinstance(obj, Gateway):
            if self.gateways.get(obj.key) == obj:
                return None
            self.gateways[obj.key] = obj
            return self._refresh(self._of_gateway(obj.key))
        if isinstance(obj, ListenerSet):
            old_set = self.listenersets.get(obj.key)
            if old_set == obj:
                return None
            self._link_set(obj.key, old_set, obj)
            self.listenersets[obj.key] = obj
            return self._refresh(self.routes_of.get(("ListenerSet", *obj.key), ()))
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
        if kind == "GatewayClass":
            if self.classes.pop(key[1], None) is None:
                return None
            return self._refresh(self._of_class(key[1]))
        if kind == "Gateway":
            if self.gateways.pop(key, None) is None:
                return None
            return self._refresh(self._of_gateway(key))
        if kind == "ListenerSet":
            old_set = self.listenersets.pop(key, None)
            if old_set is None:
                return None
            self._link_set(key, old_set, None)
            return self._refresh(self.routes_of.get(("ListenerSet", *key), ()))
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

    def namespace_changed(self, name: str, labels: tuple[tuple[str, str], ...] | None) -> set[bytes]:  # fmt: skip
        """A Namespace's labels changed (None: it went away): routes in it, and routes of
        ListenerSets in it, may attach differently (``from: Selector``)."""
        if labels is None:
            if self.ns_labels.pop(name, None) is None:
                return set()
        elif self.ns_labels.get(name) == labels:
            return set()
        else:
            self.ns_labels[name] = labels
        sources: set[Source] = {s for s in self.routes if s[1] == name}
        for ns, set_name in self.listenersets:
            if ns == name:
                sources |= self.routes_of.get(("ListenerSet", ns, set_name), set())
        return self._refresh(sources) if self.enabled else set()

    def service_changed(self, key: tuple[str, str]) -> set[bytes]:
        """A Service changed or went away (the registry's ``services`` already shows it)."""
        source = ("Service", *key)
        svc = self.services.get(key)
        if source not in self.names_of and (svc is None or svc.meta is None):
            return set()  # the common case: a Service that never published a hostname
        return self._refresh((source,))

    def _of_gateway(self, key: GatewayKey) -> set[Source]:
        sources = set(self.routes_of.get(("Gateway", *key), ()))
        for set_key in self.sets_of.get(key, ()):
            sources |= self.routes_of.get(("ListenerSet", *set_key), set())
        sources.add(("Gateway", *key))  # its hostname annotation
        return sources

    def _of_class(self, name: str) -> set[Source]:
        sources: set[Source] = set()
        for key, gateway in self.gateways.items():
            if gateway.gateway_class == name:
                sources |= self._of_gateway(key)
        return sources

    def _link_set(self, key: GatewayKey, old: ListenerSet | None, new: ListenerSet | None) -> None:
        if old is not None:
            members = self.sets_of.get(old.gateway)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.sets_of[old.gateway]
        if new is not None:
            self.sets_of.setdefault(new.gateway, set()).add(key)

    def _link_route(self, source: Source, old: Route | None, new: Route | None) -> None:
        before = {(p.kind, p.namespace, p.name) for p in old.parents} if old else set()
        after = {(p.kind, p.namespace, p.name) for p in new.parents} if new else set()
        for parent in before - after:
            routes = self.routes_of.get(parent)
            if routes is not None:
                routes.discard(source)
                if not routes:
                    del self.routes_of[parent]
        for parent in after - before:
            self.routes_of.setdefault(parent, set()).add(source)

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
        self._settle(changed)
        return changed

    def _settle(self, hostnames: Iterable[bytes]) -> None:
        """After claims moved: which wildcards [gateway]'s filters let answer, and each
        overlay's names that answer otherwise than [gateway]'s."""
        overlays = self.overlays
        for name in hostnames:
            wild = name.startswith(WILDCARD)
            if not (wild or overlays):
                continue
            claims = self.candidates(name)
            winner = self._first(claims, self.filters)
            if wild:
                if winner is None:
                    self.wildcards.discard(name)
                else:
                    self.wildcards.add(name)
            for overlay in overlays.values():
                if overlay.settle(name, winner, self._first(claims, overlay.classes)):
                    self.moved.add(name)
                    self.moves += 1

    def overlay(self, classes: Classes) -> Overlay | None:
        """The overlay of a view whose class filters are ``classes`` (None: they are
        [gateway]'s, the registry's answers are the view's)."""
        if classes == self.filters or not self.enabled:
            return None
        overlay = self.overlays.get(classes)
        if overlay is None:
            overlay = self.overlays[classes] = Overlay(classes, self.settings.ttl)
            self._settle(list(self.claims))
        return overlay

    def retain(self, wanted: Iterable[Classes]) -> None:
        """Forget the overlays of filter sets no view has any more (a reload)."""
        keep = set(wanted)
        for classes in [c for c in self.overlays if c not in keep]:
            del self.overlays[classes]

    def take_moved(self) -> set[bytes]:
        """Names whose overlay answers moved since the last call (the registry's flush
        reports them to its watchers: killer mode's wire cache)."""
        moved, self.moved = self.moved, set()
        return moved

    def candidates(self, name: bytes) -> list[Claim]:
        """Every claim on ``name``, whatever its class, in the order that picks a winner."""
        claims: list[Claim] = []
        for source in self.claims.get(name, ()):
            claims.extend(self._claims_of(source).get(name, ()))
        claims.sort()
        return claims

    @staticmethod
    def _first(claims: list[Claim], classes: Classes) -> Claim | None:
        return next((c for c in claims if passes(c, classes)), None)

    def winner(self, name: bytes) -> Claim | None:
        """The claim that answers ``name`` under [gateway]'s class filters."""
        return self._first(self.candidates(name), self.filters)

    def _ours(self, hostname: str) -> bytes | None:
        """The wire name of ``hostname`` when its most specific zone is a gateway zone (not
        a more specific zone of another kind below it), else None."""
        try:
            wire = names.to_wire(hostname)
        except ValueError:
            return None
        zone = self.zones.find(wire)
        return wire if zone is not None and zone.apex in self.apexes else None

    def _labels(self, namespace: str) -> dict[str, str]:
        labels = dict(self.ns_labels.get(namespace, ()))
        labels.setdefault(NAMESPACE_NAME_LABEL, namespace)  # what the API server sets
        return labels

    def _gateway_selected(self, gateway: Gateway) -> bool:
        # Class filters are applied per audience when a name is rendered (``passes``).
        return self.settings.selects_gateway(gateway.namespace, gateway.name)

    def _parent(self, parent: ParentRef) -> tuple[Gateway, tuple[Listener, ...], str] | None:
        """The Gateway behind ``parent``, the listeners it offers and the namespace they
        belong to; None when the parent is unknown or (a ListenerSet) not admitted."""
        if parent.kind == "Gateway":
            gateway = self.gateways.get((parent.namespace, parent.name))
            return None if gateway is None else (gateway, gateway.listeners, gateway.namespace)
        listener_set = self.listenersets.get((parent.namespace, parent.name))
        if listener_set is None:
            return None
        gateway = self.gateways.get(listener_set.gateway)
        if gateway is None:
            return None
        # Gateway.spec.allowedListeners (default: no ListenerSet may attach).
        allowed = gateway.allowed_listeners
        if allowed == "Same" and listener_set.namespace != gateway.namespace:
            return None
        if allowed == "Selector" and not selector_matches(
            gateway.listeners_selector, self._labels(listener_set.namespace)
        ):
            return None
        if allowed not in ("Same", "All", "Selector"):
            return None
        return gateway, listener_set.listeners, listener_set.namespace

    def _accepted(self, route: Route, parent: ParentRef, gateway: Gateway) -> bool:
        """The route's status says its parent accepted it, for the current generation, in an
        entry written by the Gateway's controller (any, while its GatewayClass is unknown)."""
        gateway_class = self.classes.get(gateway.gateway_class)
        controller = gateway_class.controller if gateway_class is not None else None
        return any(
            ref == parent and (controller is None or by == controller) for ref, by in route.accepted
        )

    def _claims_of(self, source: Source) -> dict[bytes, list[Claim]]:
        """hostname -> this source's claims on it (a route has one per Gateway)."""
        kind, namespace, name = source
        settings = self.settings
        out: dict[bytes, list[Claim]] = {}
        if kind not in settings.resources:
            return out
        rank = _RANK[kind]
        who = f"{namespace}/{name}"

        def claim(hostname: str, via: str, answer: tuple[tuple[int, bytes], ...], ttl: int, gclass: str | None = None, iclass: str | None = None) -> None:  # fmt: skip
            wire = self._ours(hostname) if answer else None
            if wire is None:
                return
            what = f"{kind} {who}" + (f" via Gateway {via}" if via else "")
            order = (rank, who, via, hostname)
            out.setdefault(wire, []).append(Claim(order, what, answer, ttl, gclass, iclass))

        if kind in ROUTE_KINDS:
            route = self.routes.get(source)
            if route is None or not settings.selects(route.meta):
                return out
            labels = self._labels(route.namespace)
            for parent in route.parents:
                found = self._parent(parent)
                if found is None:
                    continue
                gateway, listeners, owner_ns = found
                if not self._gateway_selected(gateway):
                    continue
                if settings.require_accepted and not self._accepted(route, parent, gateway):
                    continue
                answer = (
                    _target_answer(route.hints)
                    or _target_answer(gateway.hints)
                    or _answer(gateway.addresses, gateway.hostnames)
                )
                ttl = route.hints.ttl if route.hints.ttl >= 0 else gateway.hints.ttl
                via = f"{gateway.namespace}/{gateway.name}"
                for hostname in route_hostnames(route, listeners, parent, owner_ns, labels):
                    claim(hostname, via, answer, ttl, gateway.gateway_class)
        elif kind == "Gateway":
            own = self.gateways.get((namespace, name))
            if own is None or not own.hints.hostnames:
                return out
            if not self._gateway_selected(own):
                return out
            answer = _target_answer(own.hints) or _answer(own.addresses, own.hostnames)  # fmt: skip
            for hostname in own.hints.hostnames:
                claim(hostname, "", answer, own.hints.ttl, own.gateway_class)
        elif kind == "Ingress":
            ingress = self.ingresses.get((namespace, name))
            if ingress is None or not settings.selects(ingress.meta):
                return out
            hints = ingress.hints
            answer = _target_answer(hints) or _answer(ingress.lb_ips, ingress.lb_hostnames)
            for hostname in (*ingress.hosts, *hints.hostnames):
                claim(hostname, "", answer, hints.ttl, None, ingress.ingress_class)
        else:
            svc = self.services.get((namespace, name))
            if svc is None or svc.meta is None or not settings.selects(svc.meta):
                return out
            hints = svc.hints or EMPTY_HINTS
            answer = _target_answer(hints) or _answer(svc.lb_ips, svc.lb_hostnames)
            for hostname in svc.hostnames:
                claim(hostname, "", answer, hints.ttl)
            internal = _answer(svc.cluster_ips, ())
            for hostname in hints.internal:
                claim(hostname, "", internal, hints.ttl)
        return out

    # -------------------------------------------------------------- rendering

    def records(self, name: bytes) -> Records:
        """The records ``name`` answers: the winning claim's (see the module docstring)."""
        filters = self.filters
        claims = [c for c in self.candidates(name) if passes(c, filters)]
        if not claims:
            self.ttls.pop(name, None)
            return {}
        winner = claims[0]
        losers = [c for c in claims[1:] if c.answer != winner.answer]
        if losers:
            self._log_conflict(name, winner, losers)
        ttl = winner.ttl if winner.ttl >= 0 else self.settings.ttl
        if ttl is None:
            self.ttls.pop(name, None)
        else:
            self.ttls[name] = ttl
        records: Records = {}
        for rtype, rdata in winner.answer:
            records.setdefault(rtype, []).append(rdata)
        return records

    def wildcard_for(self, name: bytes, apex: bytes) -> bytes | None:
        """The most specific route wildcard matching ``name`` by the Gateway API rule (its
        suffix, one label below or more), None when none does."""
        return wildcard_in(self.wildcards, name, apex)

    def _log_conflict(self, name: bytes, winner: Claim, losers: list[Claim]) -> None:
        seen = (name, (winner.what, *(c.what for c in losers)))
        if seen in _LOGGED:
            return
        if len(_LOGGED) >= _LOGGED_MAX:
            _LOGGED.clear()
        _LOGGED.add(seen)
        log.warning(
            "gateway: %s is claimed with different addresses by %s; answering %s's "
            "(set [gateway] gateway_classes, ingress_classes, gateways, label or annotation "
            "to pick one)",
            names.to_text(name),
            ", ".join(c.what for c in [winner, *losers]),
            winner.what,
        )


def wildcard_in(wildcards: set[bytes], name: bytes, apex: bytes) -> bytes | None:
    """The most specific of ``wildcards`` matching ``name`` by the Gateway API rule."""
    if not wildcards:
        return None
    node = name
    while len(node) > len(apex):
        node = node[node[0] + 1 :]
        candidate = WILDCARD + node
        if candidate in wildcards:
            return candidate
    return None


_ABSENT: Any = object()


class Overlay:
    """The gateway names of one set of class filters (a ``[[views]]`` entry's
    ``gateway_classes`` / ``ingress_classes``) that answer otherwise than under [gateway]'s:
    name -> the claim that wins it under these filters (None: nobody's claim survives them).
    Names not held here answer as the registry's; an empty overlay costs its view nothing."""

    __slots__ = ("classes", "ttl", "overrides", "wildcards")

    def __init__(self, classes: Classes, ttl: int | None) -> None:
        self.classes = classes
        self.ttl = ttl  # [gateway] ttl
        self.overrides: dict[bytes, Claim | None] = {}
        self.wildcards: set[bytes] = set()  # wildcard names with a winner under these filters

    def effective(self, claim: Claim | None) -> tuple[Any, int | None] | None:
        if claim is None:
            return None
        return claim.answer, (claim.ttl if claim.ttl >= 0 else self.ttl)

    def settle(self, name: bytes, winner: Claim | None, own: Claim | None) -> bool:
        """``winner``: [gateway]'s claim on ``name``; ``own``: these filters'. True when what
        this overlay answers for ``name`` may have moved."""
        if name.startswith(WILDCARD):
            if own is None:
                self.wildcards.discard(name)
            else:
                self.wildcards.add(name)
        before = self.overrides.get(name, _ABSENT)
        if self.effective(own) != self.effective(winner):
            self.overrides[name] = own
            return before is _ABSENT or before != own
        if before is _ABSENT:
            return False
        del self.overrides[name]
        return True

    def wildcard_for(self, name: bytes, apex: bytes) -> bytes | None:
        return wildcard_in(self.wildcards, name, apex)

    def __repr__(self) -> str:
        return f"Overlay({self.classes!r}, {len(self.overrides)} names)"


_MEMO_MAX = 16384  # answers a view's overlay remembers (then it starts over)
_NO_TRANSFER = frozenset((AXFR, IXFR))


class ViewAnswers:
    """A view's own answers for gateway zone names, under its class filters (kdns.policy.views
    asks it per query of the view's clients). None: the registry's answer is the view's too
    (every name the overlay does not hold, and every name outside gateway zones), so a view
    whose filters agree with [gateway]'s on every name costs one test.

    For a name the overlay holds: the records of its winning claim under the view's filters
    (with the name's other records: a local zone's), else -- nobody's claim survives the
    filters -- what an unclaimed name gets (a route wildcard the view's filters keep,
    fallthrough to the zone's upstreams, NODATA for a name with names below it, NXDOMAIN).
    For a name without records of its own: the most specific route wildcard under the view's
    filters when it differs from [gateway]'s. Answers are remembered until the registry
    changes."""

    __slots__ = ("overlay", "table", "registry", "resolver", "_memo", "_at")

    def __init__(self, overlay: Overlay, registry: Any, resolver: Any) -> None:
        self.overlay = overlay
        self.registry = registry  # kdns.authority.registry.Registry
        self.table: GatewayTable = registry.gateway
        self.resolver = resolver  # kdns.authority.resolver.Resolver: fallthrough and cuts
        self._memo: dict[bytes, Any] = {}
        self._at = (-1, -1)

    def answer(self, name: bytes, qtype: int) -> Any:
        if not self.overlay.overrides or not self.registry.synced:
            return None
        at = (self.registry.generation, self.table.moves)
        memo = self._memo
        if at != self._at:
            memo.clear()
            self._at = at
        key = name + bytes((qtype >> 8, qtype & 0xFF))
        found = memo.get(key, _ABSENT)
        if found is _ABSENT:
            found = self._resolve(name, qtype)
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = found
        return found

    def _resolve(self, name: bytes, qtype: int) -> Any:
        registry = self.registry
        zones = registry.zones
        zone = zones.find(name)
        if zone is None or zone.apex not in zones.gateway_apexes or qtype in _NO_TRANSFER:
            return None
        overlay = self.overlay
        overrides = overlay.overrides
        if name in overrides:
            own = overrides[name]
            records = self._others(name)
            if own is not None:
                for rtype, rdata in own.answer:
                    rdatas = records.setdefault(rtype, [])
                    if rdata not in rdatas:
                        rdatas.append(rdata)
            if records:
                return self._render(name, name, qtype, records, zone, own)
            exists = registry.has_descendants(name)
        else:
            if registry.has_records(name):
                return None  # its own records answer it, whoever's filters
            mine = overlay.wildcard_for(name, zone.apex)
            theirs = self.table.wildcard_for(name, zone.apex)
            if mine == theirs and (mine is None or mine not in overrides):
                return None
            exists = registry.exists(name)
        wildcard = overlay.wildcard_for(name, zone.apex)
        if wildcard is not None:
            own = overrides.get(wildcard, _ABSENT)
            if own is _ABSENT or own is None:  # [gateway]'s winner too: the registry's records
                return self._render(wildcard, name, qtype, registry.records(wildcard), zone, None)  # fmt: skip
            records = self._others(wildcard)
            for rtype, rdata in own.answer:
                records.setdefault(rtype, []).append(rdata)
            return self._render(wildcard, name, qtype, records, zone, own)
        return self.resolver.unclaimed(name, zone, exists)

    def _others(self, name: bytes) -> Records:
        """``name``'s registry records without [gateway]'s winning claim's."""
        records = self.registry.records(name)
        winner = self.table.winner(name)
        if winner is not None:
            for rtype, rdata in winner.answer:
                rdatas = records.get(rtype)
                if rdatas is not None and rdata in rdatas:
                    rdatas.remove(rdata)
                    if not rdatas:
                        del records[rtype]
        return records

    def _render(self, owner: bytes, name: bytes, qtype: int, records: Records, zone: Any, own: Claim | None) -> Any:  # fmt: skip
        """``owner``'s records as the answer to ``name`` (the answer's owner names point at
        the question, so a wildcard's answer fits any name below it), NODATA when it has no
        such type (a CNAME answers A and AAAA; in a local zone's apex, every type)."""
        if not (
            qtype == ANY
            or qtype in records
            or (CNAME in records and (qtype in (A, AAAA) or zone.kind == LOCAL))
        ):
            return zone.negative(name, NOERROR)
        ttls = None
        if own is not None:
            ttl = own.ttl if own.ttl >= 0 else self.overlay.ttl
            if ttl is not None:
                ttls = {rtype: ttl for rtype, _ in own.answer}
        return self.registry.render_answer(owner, qtype, records, ttls)
