"""Claims: what each claimant (a route through one parent, a Gateway's or an Ingress's or a
Service's hostname annotation, a LoadBalancer Service's ``<name>.<namespace>.<zone>`` with
``service_names``) says a hostname answers, and the order that picks a winner.

The answer of a route: its ``target`` annotation, else its ListenerSet's (when its parent is
one), else its Gateway's, else the Gateway's ``status.addresses`` (IPs as A/AAAA; a Hostname
address as a CNAME when there is no IP). TTL: the route's ``ttl`` annotation, else its
Gateway's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from kdns.authority.gateway.attach import route_accepted, route_hostnames, set_listeners
from kdns.authority.gateway.settings import RESOURCES
from kdns.dns import names
from kdns.dns.records import CNAME, rdata_address
from kdns.model import EMPTY_HINTS, ROUTE_KINDS, Gateway, Hints, Listener, ParentRef

if TYPE_CHECKING:
    from kdns.authority.gateway.table import GatewayTable

Source = tuple[str, str, str]  # (kind, namespace, name) of a claimant
Answer = tuple[tuple[int, bytes], ...]  # (rtype, rdata), sorted
_RANK = {kind: rank for rank, kind in enumerate(RESOURCES)}
# A Service with one of these (even holding no valid name) is not <name>.<namespace> under
# service_names: k8s_gateway indexes an annotated Service by the annotation alone.
HOSTNAME_KEYS = frozenset(
    (
        "coredns.io/hostname",
        "external-dns.alpha.kubernetes.io/hostname",
        "external-dns.kubernetes.io/hostname",
        "kdns.io/hostname",
    )
)


class Claim(NamedTuple):
    order: tuple[int, str, str, str]  # rank, claimant "ns/name", via Gateway "ns/name"
    what: str  # "HTTPRoute apps/grafana via Gateway infra/internal", for the log
    answer: Answer
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


def winning(claims: Iterable[Claim], classes: Classes) -> Claim | None:
    """The claim that answers under ``classes``: the first that passes them, with the addresses
    of its claimant's other passing claims added. A route attached through several parents
    answers every parent's addresses (external-dns docs/sources/gateway.md: "The targets from
    each parent Gateway matching the *Route are then combined and de-duplicated"; k8s_gateway
    answers every Gateway's too). A CNAME cannot sit beside addresses (RFC 1034 3.6.2): when
    one parent has IPs, the IPs answer; when none has, the first claim's CNAME."""
    first: Claim | None = None
    answer: set[tuple[int, bytes]] = set()
    for claim in claims:
        if not passes(claim, classes):
            continue
        if first is None:
            first = claim
        elif claim.order[:2] != first.order[:2] or claim.answer == first.answer:
            continue
        answer.update(r for r in claim.answer if r[0] != CNAME)
    if first is None or not answer or set(first.answer) == answer:
        return first
    return first._replace(answer=tuple(sorted(answer)))


def address_answer(ips: Iterable[str], hostnames: Iterable[str]) -> Answer:
    """A/AAAA for ``ips``; none: a CNAME to the first of ``hostnames`` (a load balancer's)."""
    records = sorted({rdata_address(ip) for ip in ips})
    if records:
        return tuple(records)
    for hostname in hostnames:
        try:
            return ((CNAME, names.to_wire(hostname)),)
        except ValueError:
            continue
    return ()


def target_answer(hints: Hints) -> Answer:
    """external-dns's target annotation: its IPs, else a CNAME to its (first) hostname."""
    ips = [t for t in hints.targets if ":" in t or t.replace(".", "").isdigit()]
    return address_answer(ips, [t for t in hints.targets if t not in ips])


def service_names(name: str, namespace: str, zones: Iterable[str]) -> tuple[str, ...]:
    """k8s_gateway's names of a LoadBalancer Service: ``<name>.<namespace>.<zone>``
    (``namespace`` "": ``<name>.<zone>``)."""
    base = f"{name}.{namespace}" if namespace else name
    return tuple(base + ("" if zone == "." else f".{zone}") for zone in zones)


def relative_names(hostnames: Iterable[str], zones: tuple[str, ...]) -> tuple[str, ...]:
    """``hostnames``, each one outside every zone in ``zones`` put under each of them."""
    out: list[str] = []
    for hostname in hostnames:
        if any(zone == "." or hostname == zone or hostname.endswith("." + zone) for zone in zones):
            out.append(hostname)
        else:
            out.extend(service_names(hostname, "", zones))
    return tuple(dict.fromkeys(out))


def parent_of(table: GatewayTable, parent: ParentRef) -> tuple[Gateway, tuple[Listener, ...], str, Hints] | None:  # fmt: skip
    """The Gateway behind ``parent``, the listeners it offers, the namespace they belong to
    and the parent's own annotations (a ListenerSet's target wins over its Gateway's); None
    when the parent is unknown or (a ListenerSet) not admitted."""
    if parent.kind == "Gateway":
        gateway = table.gateways.get((parent.namespace, parent.name))
        if gateway is None:
            return None
        return gateway, gateway.listeners, gateway.namespace, EMPTY_HINTS
    listener_set = table.listenersets.get((parent.namespace, parent.name))
    if listener_set is None:
        return None
    gateway = table.gateways.get(listener_set.gateway)
    if gateway is None:
        return None
    labels = table.labels(listener_set.namespace)
    listeners = set_listeners(listener_set, gateway, labels, table.settings.require_accepted)
    if listeners is None:
        return None
    return gateway, listeners, listener_set.namespace, listener_set.hints


def claims_of(table: GatewayTable, source: Source) -> dict[bytes, list[Claim]]:
    """hostname -> ``source``'s claims on it (a route has one per parent it is attached to)."""
    kind, namespace, name = source
    settings = table.settings
    out: dict[bytes, list[Claim]] = {}
    if kind not in settings.resources:
        return out
    rank = _RANK[kind]
    who = f"{namespace}/{name}"

    def claim(hostname: str, via: str, answer: Answer, ttl: int, gclass: str | None = None, iclass: str | None = None) -> None:  # fmt: skip
        wire = table.ours(hostname) if answer else None
        if wire is None:
            return
        what = f"{kind} {who}" + (f" via Gateway {via}" if via else "")
        order = (rank, who, via, hostname)
        out.setdefault(wire, []).append(Claim(order, what, answer, ttl, gclass, iclass))

    if kind in ROUTE_KINDS:
        route = table.routes.get(source)
        if route is None or not settings.selects(route.meta):
            return out
        labels = table.labels(route.namespace)
        for parent in route.parents:
            found = parent_of(table, parent)
            if found is None:
                continue
            gateway, listeners, owner_ns, parent_hints = found
            if not table.gateway_selected(gateway):
                continue
            if settings.require_accepted and not route_accepted(route, parent, table.controller_of(gateway)):  # fmt: skip
                continue
            answer = (
                target_answer(route.hints)
                or target_answer(parent_hints)
                or target_answer(gateway.hints)
                or address_answer(gateway.addresses, gateway.hostnames)
            )
            ttl = route.hints.ttl if route.hints.ttl >= 0 else gateway.hints.ttl
            via = f"{gateway.namespace}/{gateway.name}"
            for hostname in route_hostnames(route, listeners, parent, owner_ns, labels):
                claim(hostname, via, answer, ttl, gateway.gateway_class)
    elif kind == "Gateway":
        own = table.gateways.get((namespace, name))
        if own is None or not own.hints.hostnames or not table.gateway_selected(own):
            return out
        answer = target_answer(own.hints) or address_answer(own.addresses, own.hostnames)
        for hostname in own.hints.hostnames:
            claim(hostname, "", answer, own.hints.ttl, own.gateway_class)
    elif kind == "Ingress":
        ingress = table.ingresses.get((namespace, name))
        if ingress is None or not settings.selects(ingress.meta):
            return out
        hints = ingress.hints
        answer = target_answer(hints) or address_answer(ingress.lb_ips, ingress.lb_hostnames)
        for hostname in (*ingress.hosts, *hints.hostnames):
            claim(hostname, "", answer, hints.ttl, None, ingress.ingress_class)
    else:
        svc = table.services.get((namespace, name))
        if svc is None or svc.meta is None or not settings.selects(svc.meta):
            return out
        hints = svc.hints or EMPTY_HINTS
        # spec.externalIPs before the load balancer's status (external-dns source/service.go
        # extractLoadBalancerTargets).
        answer = (
            target_answer(hints)
            or address_answer(svc.external_ips, ())
            or address_answer(svc.lb_ips, svc.lb_hostnames)
        )
        hostnames = svc.hostnames
        if settings.service_names and svc.type == "LoadBalancer":
            # k8s_gateway (kubernetes.go serviceHostnameIndexFunc): a LoadBalancer Service
            # is <name>.<namespace> under every zone, unless it has a hostname annotation,
            # whose names it answers instead; a query matches an annotation name as written
            # or with the zone taken off (gateway.go getQueryIndexKeys), so a name outside
            # every zone ("nas") answers under each one.
            if hostnames:
                hostnames = relative_names(hostnames, settings.zones)
            elif not any(key in HOSTNAME_KEYS for key, _ in svc.meta.annotations):
                hostnames = service_names(svc.name, svc.namespace, settings.zones)
        for hostname in hostnames:
            claim(hostname, "", answer, hints.ttl)
        internal = address_answer(svc.cluster_ips, ())
        for hostname in hints.internal:
            claim(hostname, "", internal, hints.ttl)
    return out
