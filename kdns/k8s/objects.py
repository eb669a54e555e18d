"""Raw Kubernetes API objects -> slim ``kdns.model`` objects.

The input is what the API server sends (a JSON object with camelCase keys, as a plain dict) or
what a manifest file holds (the same shape, from YAML). The output keeps only what DNS needs.
This runs once per watch event, for clusters with tens of thousands of pods, so it is plain dict
access: no kubernetes_asyncio model classes (building those costs ~100x more than reading a
dict) and no validation beyond what DNS relies on.

``slim()`` dispatches on ``kind``. The per-kind functions exist because items of a typed list
response (``GET /api/v1/pods`` -> ``PodList``) carry no ``kind`` of their own: the caller knows
the kind from the list it asked for.

A slimmer returns ``None`` for an object that exists in the API but must not be served (a
finished pod, an FQDN EndpointSlice). A watcher should treat ``None`` for a MODIFIED event like a
DELETED one: a pod that moves to Succeeded stops answering.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from socket import AF_INET, inet_ntop, inet_pton
from typing import Any

from kdns.model import (
    EMPTY_HINTS,
    EMPTY_META,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Gateway,
    GatewayClass,
    Hints,
    Ingress,
    KubeObject,
    Listener,
    ListenerSet,
    Meta,
    Namespace,
    ParentRef,
    Pod,
    Route,
    Selector,
    Service,
    ServicePort,
)

__all__ = [
    "SERVICE_NAME_LABEL",
    "normalize_ip",
    "slim",
    "slim_endpointslice",
    "slim_gateway",
    "slim_gatewayclass",
    "slim_grpcroute",
    "slim_httproute",
    "slim_ingress",
    "slim_listenerset",
    "slim_namespace",
    "slim_pod",
    "slim_service",
    "slim_tcproute",
    "slim_tlsroute",
    "slim_udproute",
    "slimmer_for",
]

Raw = Mapping[str, Any]

# EndpointSlice label naming the Service the slice belongs to (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Pod phases after which the pod's IP may already belong to another pod (PodStatus.phase).
_FINISHED_PHASES = frozenset(("Succeeded", "Failed"))

_EMPTY: Mapping[str, Any] = {}
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")

log = logging.getLogger("kdns.objects")

# Values skipped at ingest (an IPv6 ClusterIP with a zone id, a podIP of 10.1.2.300, ...), by
# (kind, field): exported as kdns_objects_skipped_values_total. Each distinct problem is logged
# once (kind namespace/name, field, value, reason), not on every watch event that repeats it.
SKIPPED: Counter[tuple[str, str]] = Counter()
_LOGGED: set[tuple[str, str, str, str, str]] = set()
_LOGGED_MAX = 10_000


# --- helpers ---------------------------------------------------------------------------------


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


def _ips(values: Iterable[Any], kind: str, key: tuple[str, str], field: str) -> tuple[str, ...]:
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


def _meta(raw: Raw, kind: str, namespaced: bool = True) -> tuple[str, str]:
    """(namespace, name) from metadata; a missing namespace means "default" like kubectl."""
    meta = raw.get("metadata") or _EMPTY
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise ValueError(f"{kind} is missing metadata.name")
    if not namespaced:
        return "", name
    # Interned: thousands of objects share a handful of namespaces; one string each.
    return sys.intern(meta.get("namespace") or "default"), name


def _port_number(value: Any, where: str) -> int:
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


# --- Service (core/v1) -----------------------------------------------------------------------


def _service_ports(raw_ports: Iterable[Raw], where: str) -> tuple[ServicePort, ...]:
    # ServicePort.port is required by the API; a manifest without it gets a clear error.
    return tuple(
        ServicePort(
            p.get("name") or "",
            p.get("protocol") or "TCP",
            _port_number(p.get("port"), f"{where}.spec.ports[{i}].port"),
        )
        for i, p in enumerate(raw_ports)
    )


def slim_service(raw: Raw) -> Service:
    namespace, name = _meta(raw, "Service")
    spec = raw.get("spec") or _EMPTY
    svc_type = spec.get("type") or "ClusterIP"
    # spec.clusterIPs (dual-stack, 1.20+) supersedes spec.clusterIP; its first entry equals
    # clusterIP. Older objects and hand-written manifests only have clusterIP.
    raw_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    # clusterIP "None" is the API's spelling of a headless service; only ClusterIP may be one.
    headless = svc_type == "ClusterIP" and bool(raw_ips) and raw_ips[0] == "None"
    external_name = ""
    if svc_type == "ExternalName":
        # The CNAME target; DNS names are case-insensitive and we always emit absolute names.
        external_name = (spec.get("externalName") or "").lower().rstrip(".")
        raw_ips = []  # an ExternalName service has no cluster IP to answer with
    ingress = ((raw.get("status") or _EMPTY).get("loadBalancer") or _EMPTY).get("ingress") or ()
    return Service(
        namespace=namespace,
        name=name,
        type=svc_type,
        # "None" (headless) and "" are the API's spellings of "no IP", not bad values.
        cluster_ips=_ips(
            [ip for ip in raw_ips if ip not in ("None", "")],
            "Service",
            (namespace, name),
            "spec.clusterIPs",
        ),
        headless=headless,
        external_name=external_name,
        ports=_service_ports(spec.get("ports") or (), f"Service {namespace}/{name}"),
        external_ips=_ips(
            spec.get("externalIPs") or (), "Service", (namespace, name), "spec.externalIPs"
        ),
        # Ingress entries with only a hostname (AWS ELB style) have no IP to serve.
        lb_ips=_ips(
            [i["ip"] for i in ingress if isinstance(i, Mapping) and i.get("ip") is not None],
            "Service",
            (namespace, name),
            "status.loadBalancer.ingress[].ip",
        ),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        **_service_hostnames(raw, svc_type, (namespace, name)),
    )


def _service_hostnames(raw: Raw, svc_type: str, key: tuple[str, str]) -> dict[str, Any]:
    """``hostnames``, ``meta``, ``lb_hostnames`` and ``hints`` of a Service with DNS
    annotations: a LoadBalancer's hostname annotations (external-dns's, a comma-separated list,
    k8s_gateway's coredns.io/hostname, kdns.io/hostname), any Service's external-dns
    internal-hostname (its ClusterIPs); nothing otherwise, so every other Service shares the
    defaults."""
    annotations = (raw.get("metadata") or _EMPTY).get("annotations") or _EMPTY
    if not annotations:
        return {}
    hints = _hints(raw, "Service", key)
    hostnames = hints.hostnames if svc_type == "LoadBalancer" else ()
    if not hostnames and not hints.internal:
        return {}
    ingress = ((raw.get("status") or _EMPTY).get("loadBalancer") or _EMPTY).get("ingress") or ()
    lb_hostnames = _hostnames(
        [i.get("hostname") for i in ingress if isinstance(i, Mapping) and i.get("ip") is None],
        "Service",
        key,
        "status.loadBalancer.ingress[].hostname",
    )
    return {
        "hostnames": hostnames,
        "meta": _meta_filters(raw),
        "lb_hostnames": lb_hostnames if svc_type == "LoadBalancer" else (),
        "hints": hints,
    }


# --- EndpointSlice (discovery.k8s.io/v1) -----------------------------------------------------


def _endpoint_ports(raw_ports: Iterable[Raw], where: str) -> tuple[EndpointPort, ...]:
    out: list[EndpointPort] = []
    for i, p in enumerate(raw_ports):
        # EndpointPort.port nil means "all ports" (selector-less services); there is no number
        # to put in an SRV record, so the port is skipped.
        if p.get("port") is None:
            continue
        port = _port_number(p["port"], f"{where}.ports[{i}].port")
        out.append(EndpointPort(p.get("name") or "", p.get("protocol") or "TCP", port))
    return tuple(out)


def _endpoint(raw: Raw, key: tuple[str, str]) -> Endpoint | None:
    field = "endpoints[].addresses"
    addresses = _ips(raw.get("addresses") or (), "EndpointSlice", key, field)
    if not addresses:
        return None  # nothing to answer with (a bad address was logged by _ips)
    # conditions.ready: "nil should be interpreted as unknown"; consumers (kube-proxy, CoreDNS)
    # treat unknown as ready, so only an explicit false hides an endpoint.
    ready = (raw.get("conditions") or _EMPTY).get("ready")
    target = raw.get("targetRef") or _EMPTY
    pod_name = (target.get("name") or "") if target.get("kind") == "Pod" else ""
    return Endpoint(addresses, raw.get("hostname") or "", ready is not False, pod_name)


def slim_endpointslice(raw: Raw) -> EndpointSlice | None:
    namespace, name = _meta(raw, "EndpointSlice")
    address_type = raw.get("addressType") or ""
    # FQDN slices (deprecated) hold names, not addresses; DNS does not serve them (nor does
    # CoreDNS).
    if address_type == "FQDN":
        return None
    labels = (raw.get("metadata") or _EMPTY).get("labels") or _EMPTY
    endpoints = tuple(
        ep
        for ep in (_endpoint(e, (namespace, name)) for e in raw.get("endpoints") or ())
        if ep is not None
    )
    return EndpointSlice(
        namespace=namespace,
        name=name,
        service=labels.get(SERVICE_NAME_LABEL) or "",
        address_type=address_type,
        ports=_endpoint_ports(raw.get("ports") or (), f"EndpointSlice {namespace}/{name}"),
        endpoints=endpoints,
    )


# --- Pod (core/v1) ---------------------------------------------------------------------------


def slim_pod(raw: Raw) -> Pod | None:
    namespace, name = _meta(raw, "Pod")
    status = raw.get("status") or _EMPTY
    # A finished pod keeps its IP in status, but the IP is free for reuse: never answer it.
    if status.get("phase") in _FINISHED_PHASES:
        return None
    # status.podIPs (dual-stack) supersedes status.podIP; podIPs[0] equals podIP.
    pod_ips = status.get("podIPs")
    if pod_ips:
        ips = _ips([p.get("ip") for p in pod_ips], "Pod", (namespace, name), "status.podIPs")
    else:
        pod_ip = status.get("podIP")
        ips = _ips((pod_ip,) if pod_ip else (), "Pod", (namespace, name), "status.podIP")
    # hostNetwork pods are kept: their IP is the node's, and CoreDNS answers for them too.
    if not ips:
        return None  # not scheduled / not started yet: nothing to answer
    return Pod(namespace, name, ips)


# --- Namespace (core/v1) ---------------------------------------------------------------------


def slim_namespace(raw: Raw) -> Namespace:
    name = _meta(raw, "Namespace", namespaced=False)[1]
    # Labels: what Gateway listeners' namespace selectors match (kdns.authority.gateway adds the
    # kubernetes.io/metadata.name the API server sets, when a manifest lacks it).
    labels = (raw.get("metadata") or _EMPTY).get("labels") or _EMPTY
    return Namespace(name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))


# --- Gateway API and Ingress (gateway zones) --------------------------------------------------

GATEWAY_GROUP = "gateway.networking.k8s.io"
# external-dns's annotations (what a migration keeps), k8s_gateway's, then kdns's own.
# external-dns reads its annotations under external-dns.kubernetes.io/ since v0.22.0 and under
# external-dns.alpha.kubernetes.io/ before (its annotations docs, "Annotation prefix"): both are
# read, the new prefix winning where an object carries both (as --enable-legacy-annotation-prefix
# merges them).
EXTERNAL_DNS = "external-dns.kubernetes.io/"
EXTERNAL_DNS_LEGACY = "external-dns.alpha.kubernetes.io/"
# external-dns's (under either prefix), k8s_gateway's, kdns's.
HOSTNAME_ANNOTATIONS = ("hostname", "coredns.io/hostname", "kdns.io/hostname")
INTERNAL_HOSTNAME = "internal-hostname"
TARGET = "target"
TTL = "ttl"
# Which hostnames a route / an Ingress publishes: "annotation-only" or "defined-hosts-only".
GATEWAY_HOSTNAME_SOURCE = "gateway-hostname-source"
INGRESS_HOSTNAME_SOURCE = "ingress-hostname-source"
_HOSTNAME_SOURCES = frozenset(("annotation-only", "defined-hosts-only"))
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_MAX_ANNOTATION = 1024  # longer values (JSON blobs) are no filter anyone writes
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_MAX_TTL = 2_147_483_647  # RFC 2181 8


def _hostname(value: Any) -> str | None:
    """A lowercased hostname without a trailing dot (``*.`` prefix allowed), or None."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        return None
    # A wildcard is a whole leftmost label (Gateway API and RFC 4592 alike).
    first = labels[0] == "*" or _HOST_LABEL.fullmatch(labels[0])
    if len(labels) < 2 or not first or not all(_HOST_LABEL.fullmatch(x) for x in labels[1:]):
        return None
    return name


def _hostnames(
    values: Iterable[Any], kind: str, key: tuple[str, str], field: str
) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        name = _hostname(value)
        if name is None:
            if value not in (None, ""):
                skipped(kind, key, field, value, "not a DNS hostname")
        elif name not in out:
            out.append(name)
    return tuple(out)


def _meta_filters(raw: Raw) -> Meta:
    meta = raw.get("metadata") or _EMPTY
    labels = meta.get("labels") or _EMPTY
    annotations = meta.get("annotations") or _EMPTY
    if not labels and not annotations:
        return EMPTY_META
    return Meta(
        tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        tuple(
            sorted(
                (str(k), str(v))
                for k, v in annotations.items()
                if k != _LAST_APPLIED and len(str(v)) <= _MAX_ANNOTATION
            )
        ),
    )


def _ttl(value: str) -> int | None:
    """external-dns's ttl annotation: seconds ("60") or a Go duration of h/m/s ("1m30s")."""
    text = value.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            return None
        h, m, s = (int(x or 0) for x in match.groups())
        seconds = h * 3600 + m * 60 + s
    return seconds if 0 < seconds <= _MAX_TTL else None


def _hints(raw: Raw, kind: str, key: tuple[str, str], source_key: str = "") -> Hints:
    """The DNS annotations of an object (``EMPTY_HINTS`` when it has none); ``source_key``:
    external-dns's hostname-source annotation the object's kind reads, if any."""
    annotations = (raw.get("metadata") or _EMPTY).get("annotations") or _EMPTY
    if not annotations:
        return EMPTY_HINTS

    def external(name: str) -> Any:
        value = annotations.get(EXTERNAL_DNS + name)
        return annotations.get(EXTERNAL_DNS_LEGACY + name) if value is None else value

    def listed(value: Any) -> list[str]:
        return [part for part in value.split(",")] if isinstance(value, str) else []

    field = "metadata.annotations"
    hostnames = _hostnames(
        listed(external("hostname"))
        + [
            h for name in HOSTNAME_ANNOTATIONS[1:] for h in listed(annotations.get(name))
        ],  # fmt: skip
        kind,
        key,
        f"{field}[hostname]",
    )
    internal = _hostnames(
        listed(external(INTERNAL_HOSTNAME)), kind, key, f"{field}[internal-hostname]"
    )
    targets: list[str] = []
    for part in listed(external(TARGET)):
        text = part.strip()
        ip = normalize_ip(text)
        name = ip or _hostname(text)
        if name is None or name.startswith("*"):
            if text:
                skipped(kind, key, f"{field}[target]", text, "not an IP address or hostname")
        elif name not in targets:
            targets.append(name)
    ttl = -1
    value = external(TTL)
    if isinstance(value, str):
        parsed = _ttl(value)
        if parsed is None:
            skipped(kind, key, f"{field}[ttl]", value, "not a TTL (seconds, or like 1m30s)")
        else:
            ttl = min(parsed, 3600 * 24 * 7)
    source = ""
    value = external(source_key) if source_key else None
    if isinstance(value, str):
        # external-dns compares the value case-insensitively and falls back to its default
        # (both sources of names) on anything else, with a warning.
        source = value.strip().lower()
        if source not in _HOSTNAME_SOURCES:
            why = "not annotation-only or defined-hosts-only: both sources are used"
            skipped(kind, key, f"{field}[{source_key}]", value, why)
            source = ""
    hints = Hints(hostnames, internal, tuple(targets), ttl, source)
    return EMPTY_HINTS if hints == EMPTY_HINTS else hints


def _status_addresses(raw: Raw, key: tuple[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    ips: list[Any] = []
    names: list[Any] = []
    for entry in (raw.get("status") or _EMPTY).get("addresses") or ():
        if not isinstance(entry, Mapping):
            continue
        kind = entry.get("type") or "IPAddress"
        if kind == "IPAddress":
            ips.append(entry.get("value"))
        elif kind == "Hostname":
            names.append(entry.get("value"))
        # NamedAddress and implementation-specific types: nothing DNS can answer with.
    return (
        _ips(ips, "Gateway", key, "status.addresses[].value"),
        _hostnames(names, "Gateway", key, "status.addresses[].value"),
    )


_OPERATORS = frozenset(("In", "NotIn", "Exists", "DoesNotExist"))


def _selector(raw: Any) -> Selector:
    """A metav1.LabelSelector as requirements. An operator the API would reject makes a
    requirement nothing meets (a selector kdns cannot read selects nothing)."""
    if not isinstance(raw, Mapping):
        return ()
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for key, value in sorted((raw.get("matchLabels") or _EMPTY).items()):
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
    raw = raw if isinstance(raw, Mapping) else _EMPTY
    allowed = str(raw.get("from") or "Same")
    return allowed, (_selector(raw.get("selector")) if allowed == "Selector" else None)


def _listener(item: Mapping[str, Any]) -> Listener:
    allowed = item.get("allowedRoutes") or _EMPTY
    namespaces, selector = _namespaces_from(allowed.get("namespaces"))
    kinds = tuple(
        f"{k.get('group') or GATEWAY_GROUP}/{k.get('kind')}"
        for k in allowed.get("kinds") or ()
        if isinstance(k, Mapping) and k.get("kind")
    )
    port = item.get("port")
    return Listener(
        str(item.get("name") or ""),
        _hostname(item.get("hostname")) or "",
        namespaces,
        port if isinstance(port, int) and not isinstance(port, bool) else 0,
        str(item.get("protocol") or ""),
        kinds,
        selector,
    )


def _listeners(spec: Mapping[str, Any]) -> tuple[Listener, ...]:
    return tuple(_listener(i) for i in spec.get("listeners") or () if isinstance(i, Mapping))


def slim_gateway(raw: Raw) -> Gateway:
    namespace, name = _meta(raw, "Gateway")
    spec = raw.get("spec") or _EMPTY
    addresses, hostnames = _status_addresses(raw, (namespace, name))
    allowed = spec.get("allowedListeners") or _EMPTY
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
        _hints(raw, "Gateway", (namespace, name)),
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


def slim_listenerset(raw: Raw) -> ListenerSet:
    namespace, name = _meta(raw, "ListenerSet")
    spec = raw.get("spec") or _EMPTY
    ref = spec.get("parentRef") or _EMPTY
    gateway = ("", "")
    if (ref.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP and (ref.get("kind") or "Gateway") == "Gateway":  # fmt: skip
        gateway = (sys.intern(ref.get("namespace") or namespace), str(ref.get("name") or ""))
    # status as the Gateway's controller writes it (ListenerSetStatus): conditions Accepted and
    # Programmed for the set, an entry per listener (ListenerEntryStatus) with its own.
    generation = (raw.get("metadata") or _EMPTY).get("generation")
    status = raw.get("status") or _EMPTY
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
        _hints(raw, "ListenerSet", (namespace, name)),
    )


def slim_gatewayclass(raw: Raw) -> GatewayClass:
    name = _meta(raw, "GatewayClass", namespaced=False)[1]
    return GatewayClass(name, str((raw.get("spec") or _EMPTY).get("controllerName") or ""))


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
    generation = (raw.get("metadata") or _EMPTY).get("generation")
    out: list[tuple[ParentRef, str]] = []
    for entry in (raw.get("status") or _EMPTY).get("parents") or ():
        if not isinstance(entry, Mapping):
            continue
        parent = _parent_ref(entry.get("parentRef"), namespace)
        if parent is None:
            continue
        if _condition_true(entry.get("conditions"), "Accepted", generation):
            out.append((parent, str(entry.get("controllerName") or "")))
    return tuple(out)


def _slim_route(raw: Raw, kind: str) -> Route:
    namespace, name = _meta(raw, kind)
    spec = raw.get("spec") or _EMPTY
    return Route(
        kind,
        namespace,
        name,
        _hostnames(spec.get("hostnames") or (), kind, (namespace, name), "spec.hostnames"),
        _parent_refs(spec.get("parentRefs") or (), namespace),
        _meta_filters(raw),
        _accepted(raw, namespace),
        _hints(raw, kind, (namespace, name), GATEWAY_HOSTNAME_SOURCE),
    )


def slim_httproute(raw: Raw) -> Route:
    return _slim_route(raw, "HTTPRoute")


def slim_grpcroute(raw: Raw) -> Route:
    return _slim_route(raw, "GRPCRoute")


def slim_tlsroute(raw: Raw) -> Route:
    return _slim_route(raw, "TLSRoute")


def slim_tcproute(raw: Raw) -> Route:
    return _slim_route(raw, "TCPRoute")


def slim_udproute(raw: Raw) -> Route:
    return _slim_route(raw, "UDPRoute")


def slim_ingress(raw: Raw) -> Ingress:
    namespace, name = _meta(raw, "Ingress")
    key = (namespace, name)
    spec = raw.get("spec") or _EMPTY
    rules = [r for r in spec.get("rules") or () if isinstance(r, Mapping)]
    ingress = ((raw.get("status") or _EMPTY).get("loadBalancer") or _EMPTY).get("ingress") or ()
    entries = [i for i in ingress if isinstance(i, Mapping)]
    annotations = (raw.get("metadata") or _EMPTY).get("annotations") or _EMPTY
    ingress_class = spec.get("ingressClassName") or annotations.get(INGRESS_CLASS_ANNOTATION)
    hosts = _hostnames([r.get("host") for r in rules], "Ingress", key, "spec.rules[].host")
    hints = _hints(raw, "Ingress", key, INGRESS_HOSTNAME_SOURCE)
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
        _ips(
            [i["ip"] for i in entries if i.get("ip") is not None],
            "Ingress",
            key,
            "status.loadBalancer.ingress[].ip",
        ),
        _hostnames(
            [i.get("hostname") for i in entries if i.get("ip") is None],
            "Ingress",
            key,
            "status.loadBalancer.ingress[].hostname",
        ),
        _meta_filters(raw),
        str(ingress_class) if isinstance(ingress_class, str) else "",
        hints,
    )


# --- dispatch --------------------------------------------------------------------------------

Slimmer = Callable[[Raw], KubeObject | None]

# kind -> (API group, slimmer). The group is checked because other groups reuse these kinds:
# Knative's serving.knative.dev/v1 Service is not a core Service and has no cluster IP.
SLIMMERS: dict[str, tuple[str, Slimmer]] = {
    "Service": ("", slim_service),
    "EndpointSlice": ("discovery.k8s.io", slim_endpointslice),
    "Pod": ("", slim_pod),
    "Namespace": ("", slim_namespace),
    "GatewayClass": (GATEWAY_GROUP, slim_gatewayclass),
    "Gateway": (GATEWAY_GROUP, slim_gateway),
    "ListenerSet": (GATEWAY_GROUP, slim_listenerset),
    "HTTPRoute": (GATEWAY_GROUP, slim_httproute),
    "GRPCRoute": (GATEWAY_GROUP, slim_grpcroute),
    "TLSRoute": (GATEWAY_GROUP, slim_tlsroute),
    "TCPRoute": (GATEWAY_GROUP, slim_tcproute),
    "UDPRoute": (GATEWAY_GROUP, slim_udproute),
    "Ingress": ("networking.k8s.io", slim_ingress),
}


def slimmer_for(kind: Any, api_version: Any = None) -> Slimmer | None:
    """The slimmer for a kind (and apiVersion, when known), or None when DNS ignores it.

    A missing apiVersion is accepted: items of a typed list carry neither kind nor apiVersion.
    """
    entry = SLIMMERS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        return None
    group, slimmer = entry
    # "v1" -> group "", "discovery.k8s.io/v1" -> "discovery.k8s.io"
    if api_version and str(api_version).rpartition("/")[0] != group:
        return None
    return slimmer


def slim(raw: Raw) -> KubeObject | None:
    """The slim object for a raw API object; None for kinds DNS ignores or objects not served.

    Raises ValueError when a required field (metadata.name, a port number) is missing or bad.
    """
    slimmer = slimmer_for(raw.get("kind"), raw.get("apiVersion"))
    return None if slimmer is None else slimmer(raw)
