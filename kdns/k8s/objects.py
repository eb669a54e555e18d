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

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kdns.k8s.annotations import hints_of, meta_filters, valid_hostnames
from kdns.k8s.gatewayobjects import (
    GATEWAY_GROUP,
    slim_gateway,
    slim_gatewayclass,
    slim_grpcroute,
    slim_httproute,
    slim_ingress,
    slim_listenerset,
    slim_tcproute,
    slim_tlsroute,
    slim_udproute,
)
from kdns.k8s.ingest import (
    EMPTY,
    SKIPPED,
    Raw,
    normalize_ip,
    object_key,
    port_number,
    skipped,
    valid_ips,
)
from kdns.model import (
    EMPTY_HINTS,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    KubeObject,
    Namespace,
    Pod,
    Service,
    ServicePort,
)

__all__ = [
    "SERVICE_NAME_LABEL",
    "SKIPPED",
    "normalize_ip",
    "skipped",
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

# EndpointSlice label naming the Service the slice belongs to (discovery.k8s.io/v1).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Pod phases after which the pod's IP may already belong to another pod (PodStatus.phase).
_FINISHED_PHASES = frozenset(("Succeeded", "Failed"))


# --- Service (core/v1) -----------------------------------------------------------------------


def _service_ports(raw_ports: Iterable[Raw], where: str) -> tuple[ServicePort, ...]:
    # ServicePort.port is required by the API; a manifest without it gets a clear error.
    return tuple(
        ServicePort(
            p.get("name") or "",
            p.get("protocol") or "TCP",
            port_number(p.get("port"), f"{where}.spec.ports[{i}].port"),
        )
        for i, p in enumerate(raw_ports)
    )


def slim_service(raw: Raw) -> Service:
    namespace, name = object_key(raw, "Service")
    spec = raw.get("spec") or EMPTY
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
    ingress = ((raw.get("status") or EMPTY).get("loadBalancer") or EMPTY).get("ingress") or ()
    return Service(
        namespace=namespace,
        name=name,
        type=svc_type,
        # "None" (headless) and "" are the API's spellings of "no IP", not bad values.
        cluster_ips=valid_ips(
            [ip for ip in raw_ips if ip not in ("None", "")],
            "Service",
            (namespace, name),
            "spec.clusterIPs",
        ),
        headless=headless,
        external_name=external_name,
        ports=_service_ports(spec.get("ports") or (), f"Service {namespace}/{name}"),
        external_ips=valid_ips(
            spec.get("externalIPs") or (), "Service", (namespace, name), "spec.externalIPs"
        ),
        # Ingress entries with only a hostname (AWS ELB style) have no IP to serve.
        lb_ips=valid_ips(
            [i["ip"] for i in ingress if isinstance(i, Mapping) and i.get("ip") is not None],
            "Service",
            (namespace, name),
            "status.loadBalancer.ingress[].ip",
        ),
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
        **_service_hostnames(raw, svc_type, (namespace, name)),
    )


def _service_hostnames(raw: Raw, svc_type: str, key: tuple[str, str]) -> dict[str, Any]:
    """``hostnames``, ``meta``, ``lb_hostnames`` and ``hints`` of a Service that may publish
    gateway names: any LoadBalancer (its hostname annotations: external-dns's, a
    comma-separated list, k8s_gateway's coredns.io/hostname, kdns.io/hostname; without one,
    ``[gateway] service_names`` publishes it as <name>.<namespace>.<zone>, filtered by its
    labels and annotations), and any Service with external-dns's internal-hostname (its
    ClusterIPs); nothing otherwise, so every other Service shares the defaults."""
    annotations = (raw.get("metadata") or EMPTY).get("annotations") or EMPTY
    balanced = svc_type == "LoadBalancer"
    hints = hints_of(raw, "Service", key) if annotations else EMPTY_HINTS
    if not balanced and not hints.internal:
        return {}
    hostnames = hints.hostnames if balanced else ()
    ingress = ((raw.get("status") or EMPTY).get("loadBalancer") or EMPTY).get("ingress") or ()
    lb_hostnames = valid_hostnames(
        [i.get("hostname") for i in ingress if isinstance(i, Mapping) and i.get("ip") is None],
        "Service",
        key,
        "status.loadBalancer.ingress[].hostname",
    )
    return {
        "hostnames": hostnames,
        "meta": meta_filters(raw),
        "lb_hostnames": lb_hostnames if balanced else (),
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
        port = port_number(p["port"], f"{where}.ports[{i}].port")
        out.append(EndpointPort(p.get("name") or "", p.get("protocol") or "TCP", port))
    return tuple(out)


def _endpoint(raw: Raw, key: tuple[str, str]) -> Endpoint | None:
    field = "endpoints[].addresses"
    addresses = valid_ips(raw.get("addresses") or (), "EndpointSlice", key, field)
    if not addresses:
        return None  # nothing to answer with (a bad address was logged by _ips)
    # conditions.ready: "nil should be interpreted as unknown"; consumers (kube-proxy, CoreDNS)
    # treat unknown as ready, so only an explicit false hides an endpoint.
    ready = (raw.get("conditions") or EMPTY).get("ready")
    target = raw.get("targetRef") or EMPTY
    pod_name = (target.get("name") or "") if target.get("kind") == "Pod" else ""
    return Endpoint(addresses, raw.get("hostname") or "", ready is not False, pod_name)


def slim_endpointslice(raw: Raw) -> EndpointSlice | None:
    namespace, name = object_key(raw, "EndpointSlice")
    address_type = raw.get("addressType") or ""
    # FQDN slices (deprecated) hold names, not addresses; DNS does not serve them (nor does
    # CoreDNS).
    if address_type == "FQDN":
        return None
    labels = (raw.get("metadata") or EMPTY).get("labels") or EMPTY
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
    namespace, name = object_key(raw, "Pod")
    status = raw.get("status") or EMPTY
    # A finished pod keeps its IP in status, but the IP is free for reuse: never answer it.
    if status.get("phase") in _FINISHED_PHASES:
        return None
    # status.podIPs (dual-stack) supersedes status.podIP; podIPs[0] equals podIP.
    pod_ips = status.get("podIPs")
    if pod_ips:
        ips = valid_ips([p.get("ip") for p in pod_ips], "Pod", (namespace, name), "status.podIPs")
    else:
        pod_ip = status.get("podIP")
        ips = valid_ips((pod_ip,) if pod_ip else (), "Pod", (namespace, name), "status.podIP")
    # hostNetwork pods are kept: their IP is the node's, and CoreDNS answers for them too.
    if not ips:
        return None  # not scheduled / not started yet: nothing to answer
    return Pod(namespace, name, ips)


# --- Namespace (core/v1) ---------------------------------------------------------------------


def slim_namespace(raw: Raw) -> Namespace:
    name = object_key(raw, "Namespace", namespaced=False)[1]
    # Labels: what Gateway listeners' namespace selectors match (kdns.authority.gateway adds the
    # kubernetes.io/metadata.name the API server sets, when a manifest lacks it).
    labels = (raw.get("metadata") or EMPTY).get("labels") or EMPTY
    return Namespace(name, tuple(sorted((str(k), str(v)) for k, v in labels.items())))


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
