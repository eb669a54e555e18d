"""Gateway API objects (gateway.networking.k8s.io GatewayClass, Gateway, ListenerSet, the
route kinds) and networking.k8s.io/v1 Ingress -> slim ``kdns.model`` objects, with the status
their controllers write (Gateway addresses, route ``status.parents``, ListenerSet conditions)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from kdns.k8s.annotations import (
    GATEWAY_HOSTNAME_SOURCE,
    INGRESS_CLASS_ANNOTATION,
    INGRESS_HOSTNAME_SOURCE,
    hints_of,
    hostname_of,
    meta_filters,
    valid_hostnames,
)
from kdns.k8s.ingest import EMPTY, Raw, object_key, valid_ips
from kdns.model import (
    Gateway,
    GatewayClass,
    Ingress,
    Listener,
    ListenerSet,
    ParentRef,
    Route,
    Selector,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
T = TypeVar("T")


def _shaped(slimmer: Callable[[Raw], T]) -> Callable[[Raw], T]:
    """A field of the wrong shape (a number where the schema has a list: a hand-written file, a
    CRD installed without its schema) makes the object a ValueError, which the API watch logs
    and skips and an objects file reports with its line; as a TypeError it ended the kind's
    watch, and kdns, still Ready, never saw another change of that kind."""

    @functools.wraps(slimmer)
    def slim(raw: Raw) -> T:
        try:
            return slimmer(raw)
        except (AttributeError, TypeError, KeyError) as exc:
            meta = raw.get("metadata") if isinstance(raw, Mapping) else None
            meta = meta if isinstance(meta, Mapping) else EMPTY
            who = "/".join(str(meta[k]) for k in ("namespace", "name") if meta.get(k))
            kind = raw.get("kind") if isinstance(raw, Mapping) else None
            raise ValueError(f"malformed {kind or 'object'} {who}: {type(exc).__name__}: {exc}") from None  # fmt: skip

    return slim


def _status_addresses(raw: Raw, key: tuple[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ips: list[Any] = []
    names: list[Any] = []
    for entry in (raw.get("status") or EMPTY).get("addresses") or ():
        if not isinstance(entry, Mapping):
            continue
        kind = entry.get("type") or "IPAddress"
        if kind == "IPAddress":
            ips.append(entry.get("value"))
        elif kind == "Hostname":
            names.append(entry.get("value"))
        # NamedAddress and implementation-specific types: nothing DNS can answer with.
    return (
        valid_ips(ips, "Gateway", key, "status.addresses[].value"),
        valid_hostnames(names, "Gateway", key, "status.addresses[].value"),
    )


_OPERATORS = frozenset(("In", "NotIn", "Exists", "DoesNotExist"))


def _selector(raw: Any) -> Selector:
    """A metav1.LabelSelector as requirements. An operator the API would reject makes a
    requirement nothing meets (a selector kdns cannot read selects nothing)."""
    if not isinstance(raw, Mapping):
        return ()
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for key, value in sorted((raw.get("matchLabels") or EMPTY).items()):
        out.append((str(key), "In", (str(value),)))
    for expr in raw.get("matchExpressions") or ():
        if not isinstance(expr, Mapping):
            continue
        operator = str(expr.get("operator") or "")
        values = tuple(sorted(str(v) for v in expr.get("values") or ()))
        out.append((str(expr.get("key") or ""), operator if operator in _OPERATORS else "In", values if operator in _OPERATORS else ()))  # fmt: skip
    return tuple(out)


def _namespaces_from(raw: Any) -> tuple[str, Selector | None]:
    """``namespaces: {from, selector}`` -> (from, selector when from is Selector)."""
    raw = raw if isinstance(raw, Mapping) else EMPTY
    allowed = str(raw.get("from") or "Same")
    return allowed, (_selector(raw.get("selector")) if allowed == "Selector" else None)


def _listener(item: Mapping[str, Any]) -> Listener:
    allowed = item.get("allowedRoutes") or EMPTY
    namespaces, selector = _namespaces_from(allowed.get("namespaces"))
    kinds = tuple(
        f"{k.get('group') or GATEWAY_GROUP}/{k.get('kind')}"
        for k in allowed.get("kinds") or ()
        if isinstance(k, Mapping) and k.get("kind")
    )
    port = item.get("port")
    return Listener(
        str(item.get("name") or ""),
        hostname_of(item.get("hostname")) or "",
        namespaces,
        port if isinstance(port, int) and not isinstance(port, bool) else 0,
        str(item.get("protocol") or ""),
        kinds,
        selector,
    )


def _listeners(spec: Mapping[str, Any]) -> tuple[Listener, ...]:
    return tuple(_listener(i) for i in spec.get("listeners") or () if isinstance(i, Mapping))


@_shaped
def slim_gateway(raw: Raw) -> Gateway:
    namespace, name = object_key(raw, "Gateway")
    spec = raw.get("spec") or EMPTY
    addresses, hostnames = _status_addresses(raw, (namespace, name))
    allowed = spec.get("allowedListeners") or EMPTY
    from_, selector = _namespaces_from(allowed.get("namespaces") if allowed else {"from": "None"})
    return Gateway(
        namespace,
        name,
        addresses,
        hostnames,
        _listeners(spec),
        str(spec.get("gatewayClassName") or ""),
        from_ if allowed else "None",
        selector,
        hints_of(raw, "Gateway", (namespace, name)),
    )


def _condition_true(conditions: Any, kind: str, generation: Any) -> bool:
    """The condition of type ``kind`` says True, observed at ``generation`` (metav1.Condition;
    one observed for an older generation is stale, as external-dns reads route status since
    kubernetes-sigs/external-dns#5241; either side unknown: current)."""
    for cond in conditions or ():
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            observed = cond.get("observedGeneration")
            current = generation is None or observed is None or observed == generation
            return cond.get("status") == "True" and current
    return False


@_shaped
def slim_listenerset(raw: Raw) -> ListenerSet:
    namespace, name = object_key(raw, "ListenerSet")
    spec = raw.get("spec") or EMPTY
    ref = spec.get("parentRef") or EMPTY
    gateway = ("", "")
    if (ref.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP and (ref.get("kind") or "Gateway") == "Gateway":  # fmt: skip
        gateway = (sys.intern(ref.get("namespace") or namespace), str(ref.get("name") or ""))
    # status as the Gateway's controller writes it (ListenerSetStatus): conditions Accepted and
    # Programmed for the set, an entry per listener (ListenerEntryStatus) with its own.
    generation = (raw.get("metadata") or EMPTY).get("generation")
    status = raw.get("status") or EMPTY
    entries = [e for e in status.get("listeners") or () if isinstance(e, Mapping)]
    return ListenerSet(
        namespace,
        name,
        gateway,
        _listeners(spec),
        _condition_true(status.get("conditions"), "Accepted", generation),
        tuple(
            str(e.get("name"))
            for e in entries
            if e.get("name") and _condition_true(e.get("conditions"), "Accepted", generation)
        ),
        hints_of(raw, "ListenerSet", (namespace, name)),
    )


@_shaped
def slim_gatewayclass(raw: Raw) -> GatewayClass:
    name = object_key(raw, "GatewayClass", namespaced=False)[1]
    return GatewayClass(name, str((raw.get("spec") or EMPTY).get("controllerName") or ""))


_PARENT_KINDS = frozenset(("Gateway", "ListenerSet"))


def _parent_ref(ref: Any, namespace: str) -> ParentRef | None:
    """A route's parentRef to a Gateway or ListenerSet; None for other parents (a Service
    parent, GAMMA mesh routing, publishes no hostname)."""
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    kind = ref.get("kind") or "Gateway"
    if (ref.get("group") or GATEWAY_GROUP) != GATEWAY_GROUP or kind not in _PARENT_KINDS:
        return None
    port = ref.get("port")
    return ParentRef(
        sys.intern(ref.get("namespace") or namespace),
        str(ref["name"]),
        str(ref.get("sectionName") or ""),
        port if isinstance(port, int) and not isinstance(port, bool) else 0,
        kind,
    )


def _parent_refs(raw_refs: Iterable[Any], namespace: str) -> tuple[ParentRef, ...]:
    out: list[ParentRef] = []
    for ref in raw_refs:
        parent = _parent_ref(ref, namespace)
        if parent is not None and parent not in out:
            out.append(parent)
    return tuple(out)


def _accepted(raw: Raw, namespace: str) -> tuple[tuple[ParentRef, str], ...]:
    """The route's ``status.parents`` entries whose Accepted condition is True for the route's
    current generation (external-dns since kubernetes-sigs/external-dns#5241: a condition
    observed for an older generation is stale), with the controller that wrote each."""
    generation = (raw.get("metadata") or EMPTY).get("generation")
    out: list[tuple[ParentRef, str]] = []
    for entry in (raw.get("status") or EMPTY).get("parents") or ():
        if not isinstance(entry, Mapping):
            continue
        parent = _parent_ref(entry.get("parentRef"), namespace)
        if parent is None:
            continue
        if _condition_true(entry.get("conditions"), "Accepted", generation):
            out.append((parent, str(entry.get("controllerName") or "")))
    return tuple(out)


def _slim_route(raw: Raw, kind: str) -> Route:
    namespace, name = object_key(raw, kind)
    spec = raw.get("spec") or EMPTY
    return Route(
        kind,
        namespace,
        name,
        valid_hostnames(spec.get("hostnames") or (), kind, (namespace, name), "spec.hostnames"),
        _parent_refs(spec.get("parentRefs") or (), namespace),
        meta_filters(raw),
        _accepted(raw, namespace),
        hints_of(raw, kind, (namespace, name), GATEWAY_HOSTNAME_SOURCE),
    )


@_shaped
def slim_httproute(raw: Raw) -> Route:
    return _slim_route(raw, "HTTPRoute")


@_shaped
def slim_grpcroute(raw: Raw) -> Route:
    return _slim_route(raw, "GRPCRoute")


@_shaped
def slim_tlsroute(raw: Raw) -> Route:
    return _slim_route(raw, "TLSRoute")


@_shaped
def slim_tcproute(raw: Raw) -> Route:
    return _slim_route(raw, "TCPRoute")


@_shaped
def slim_udproute(raw: Raw) -> Route:
    return _slim_route(raw, "UDPRoute")


@_shaped
def slim_ingress(raw: Raw) -> Ingress:
    namespace, name = object_key(raw, "Ingress")
    key = (namespace, name)
    spec = raw.get("spec") or EMPTY
    rules = [r for r in spec.get("rules") or () if isinstance(r, Mapping)]
    ingress = ((raw.get("status") or EMPTY).get("loadBalancer") or EMPTY).get("ingress") or ()
    entries = [i for i in ingress if isinstance(i, Mapping)]
    annotations = (raw.get("metadata") or EMPTY).get("annotations") or EMPTY
    ingress_class = spec.get("ingressClassName") or annotations.get(INGRESS_CLASS_ANNOTATION)
    hosts = valid_hostnames([r.get("host") for r in rules], "Ingress", key, "spec.rules[].host")
    # external-dns publishes spec.tls[].hosts too (source/ingress.go endpointsFromIngress, unless
    # --ignore-ingress-tls-spec): a host only the certificate names still gets a record.
    tls_hosts = [h for t in spec.get("tls") or () if isinstance(t, Mapping) for h in t.get("hosts") or ()]  # fmt: skip
    extra = valid_hostnames(tls_hosts, "Ingress", key, "spec.tls[].hosts")
    hosts += tuple(h for h in extra if h not in hosts)
    hints = hints_of(raw, "Ingress", key, INGRESS_HOSTNAME_SOURCE)
    # external-dns's ingress-hostname-source (source/ingress.go): the rules' hosts alone, or
    # the hostname annotation's alone; unset, both.
    if hints.source == "annotation-only":
        hosts = ()
    elif hints.source == "defined-hosts-only" and hints.hostnames:
        hints = hints._replace(hostnames=())
    return Ingress(
        namespace,
        name,
        hosts,
        valid_ips(
            [i["ip"] for i in entries if i.get("ip") is not None],
            "Ingress",
            key,
            "status.loadBalancer.ingress[].ip",
        ),
        valid_hostnames(
            [i.get("hostname") for i in entries if i.get("ip") is None],
            "Ingress",
            key,
            "status.loadBalancer.ingress[].hostname",
        ),
        meta_filters(raw),
        str(ingress_class) if isinstance(ingress_class, str) else "",
        hints,
    )
