"""Attachment: which listeners a route is attached to, through which parent, and the hostnames
it gets there, by the rules of the Gateway API (gateway.networking.k8s.io/v1 Gateway, route and
ListenerSet types) and the ``status`` a Gateway's controller writes.

- A listener takes a route when ``sectionName`` names it and ``port`` is its port (when set),
  when its protocol carries the route's kind (``COMPATIBLE``) and ``allowedRoutes.kinds`` (when
  set) lists it, and when ``allowedRoutes.namespaces`` lets the route's namespace in.
- A ListenerSet is a parent only when its Gateway's ``spec.allowedListeners`` admits it; with
  ``require_accepted``, also when its own status says the Gateway accepted it, and then only its
  listeners whose ``status.listeners`` entry says ``Accepted=True`` (as external-dns reads it).
- The hostnames: the route's ``spec.hostnames`` intersected with the listener's ``hostname``
  (the more specific of the two; the listener's when the route has none), plus its hostname
  annotation, as external-dns's ``gateway-hostname-source`` annotation selects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kdns.model import Gateway, Listener, ListenerSet, ParentRef, Route, Selector

GROUP = "gateway.networking.k8s.io"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# Listener protocol -> the route kinds it carries, per Gateway API v1.5: the TLS guide's table
# (site-src/guides/tls.md: TLS/Passthrough -> TLSRoute, TLS/Terminate -> TLSRoute (extended),
# HTTPS/Terminate -> HTTPRoute, GRPCRoute), GEP-2643 ("A Listener MUST have protocol set to TLS
# when a TLSRoute attaches to it"), kubernetes-sigs/gateway-api#4427 ("Remove TCPRoute support
# from TLS listeners", v1.5.0), GRPCRoute over HTTP (h2c) and HTTPS, TCPRoute on TCP, UDPRoute
# on UDP. AllowedRoutes.kinds: "A RouteGroupKind MUST correspond to kinds of Routes that are
# compatible with the application protocol specified in the Listener's Protocol field": a
# listed kind outside this table is invalid (InvalidRouteKinds) and attaches nothing.
COMPATIBLE: Mapping[str, frozenset[str]] = {
    "HTTP": frozenset((f"{GROUP}/HTTPRoute", f"{GROUP}/GRPCRoute")),
    "HTTPS": frozenset((f"{GROUP}/HTTPRoute", f"{GROUP}/GRPCRoute")),
    "TLS": frozenset((f"{GROUP}/TLSRoute",)),
    "TCP": frozenset((f"{GROUP}/TCPRoute",)),
    "UDP": frozenset((f"{GROUP}/UDPRoute",)),
}
# Protocols that match no hostname (Listener.hostname "is ignored for protocols that don't
# require hostname based matching"), and the route kinds that have no hostnames of their own.
_NO_HOSTNAME = frozenset(("TCP", "UDP"))
_HOSTLESS_KINDS = frozenset(("TCPRoute", "UDPRoute"))
# external-dns's gateway-hostname-source values (source/gateway.go); anything else: the default.
ANNOTATION_ONLY = "annotation-only"
DEFINED_HOSTS_ONLY = "defined-hosts-only"


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


def namespace_allowed(allowed: str, selector: Selector | None, owner: str, namespace: str, labels: Mapping[str, str]) -> bool:  # fmt: skip
    """``namespaces.from`` (allowedRoutes, allowedListeners): ``Same`` (the ``owner``'s
    namespace), ``All``, ``Selector`` (the Namespace ``labels`` match); ``None`` and anything
    unknown admit nothing."""
    if allowed == "Same":
        return namespace == owner
    if allowed == "Selector":
        return selector_matches(selector, labels)
    return allowed == "All"


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
    if not protocol:  # hand-written manifests without a protocol: as before, any kind
        return not listener.kinds or group_kind in listener.kinds
    compatible = COMPATIBLE.get(protocol)
    if compatible is None:  # a custom (domain-prefixed) protocol takes what it lists
        return group_kind in listener.kinds
    return group_kind in compatible and (not listener.kinds or group_kind in listener.kinds)


def _wanted(route: Route) -> tuple[tuple[str, ...], bool]:
    """The hostnames ``route`` asks for, and whether it takes the listener's hostname when it
    asks for none of its own (external-dns source/gateway.go ``hosts``): by default its
    ``spec.hostnames`` (none: the listener's) plus its hostname annotation;
    ``gateway-hostname-source: annotation-only`` the annotation's alone,
    ``defined-hosts-only`` its ``spec.hostnames`` alone (none: nothing, so a redirect route
    on a listener publishes no name)."""
    hints = route.hints
    if hints.source == ANNOTATION_ONLY:
        return hints.hostnames, False
    if hints.source == DEFINED_HOSTS_ONLY:
        return route.hostnames, False
    extra = tuple(h for h in hints.hostnames if h not in route.hostnames)
    return route.hostnames + extra, not route.hostnames


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
    own, inherit = _wanted(route)
    for listener in listeners:
        if parent.section and listener.name != parent.section:
            continue
        if parent.port and listener.port != parent.port:
            continue
        if not kind_allowed(route.kind, listener):
            continue
        if not namespace_allowed(listener.namespaces, listener.selector, namespace, route.namespace, labels):  # fmt: skip
            continue
        found: Iterable[str]
        if route.kind in _HOSTLESS_KINDS or listener.protocol in _NO_HOSTNAME:
            # No hostname matching at L4: the annotation's names (none under
            # defined-hosts-only: such a route has no spec hostnames).
            found = () if route.hints.source == DEFINED_HOSTS_ONLY else route.hints.hostnames
        elif not listener.hostname:
            found = own
        else:
            found = [m for h in own if (m := intersect(h, listener.hostname)) is not None]
            if inherit:
                found.insert(0, listener.hostname)
        out.extend(h for h in found if h not in out)
    return out


def set_listeners(listener_set: ListenerSet, gateway: Gateway, labels: Mapping[str, str], require_accepted: bool) -> tuple[Listener, ...] | None:  # fmt: skip
    """The listeners of ``listener_set`` routes may attach to, None when the set is no parent:
    ``gateway.spec.allowedListeners`` (default ``None``: no ListenerSet) must admit its
    namespace (``labels``: that Namespace's); with ``require_accepted``, its
    ``status.conditions`` must say ``Accepted=True`` and only the listeners whose
    ``status.listeners`` entry says ``Accepted=True`` count (a listener the Gateway found in
    conflict with its own, or not yet looked at, attaches nothing), as external-dns reads a
    ListenerSet (source/gateway.go ``newListenerSetObject``)."""
    if not namespace_allowed(gateway.allowed_listeners, gateway.listeners_selector, gateway.namespace, listener_set.namespace, labels):  # fmt: skip
        return None
    if not require_accepted:
        return listener_set.listeners
    if not listener_set.accepted:
        return None
    accepted = listener_set.accepted_listeners
    return tuple(x for x in listener_set.listeners if x.name in accepted)


def route_accepted(route: Route, parent: ParentRef, controller: str | None) -> bool:
    """The route's ``status.parents`` entry for ``parent`` says ``Accepted=True`` for the
    route's current generation, written by ``controller`` (the Gateway's GatewayClass's; any
    while that class is unknown)."""
    return any(
        ref == parent and (controller is None or by == controller) for ref, by in route.accepted
    )
