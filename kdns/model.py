"""Slim, immutable Kubernetes objects: only the fields DNS needs.

Every source (the API watch, manifest files, the demo cluster) produces these and nothing else,
so the registry has one way in. They are NamedTuples: no per-instance ``__dict__`` (a slotted
tuple), cheap equality (an update that changes nothing DNS-visible compares equal and is
dropped), and hashable.

This module imports nothing from Kubernetes clients: ``kdns.dns`` depends on it, and
``kdns.k8s.objects`` builds these from raw API JSON.
"""

from __future__ import annotations

from typing import NamedTuple


class ServicePort(NamedTuple):
    name: str  # "" for an unnamed port (no SRV name then)
    protocol: str  # "TCP" | "UDP" | "SCTP", as in the API
    port: int


class Meta(NamedTuple):
    """Labels and annotations an object publishing gateway names is filtered by (sorted
    (key, value) pairs; annotations without kubectl's last-applied copy)."""

    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]


EMPTY_META = Meta((), ())


class Service(NamedTuple):
    namespace: str
    name: str
    type: str  # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ips: tuple[str, ...]  # empty for headless ("None") and ExternalName
    headless: bool
    external_name: str  # ExternalName target, "" otherwise
    ports: tuple[ServicePort, ...]
    external_ips: tuple[str, ...]  # spec.externalIPs
    lb_ips: tuple[str, ...]  # status.loadBalancer.ingress[].ip
    publish_not_ready: bool  # spec.publishNotReadyAddresses
    # Gateway zones: the hostnames of the external-dns.alpha.kubernetes.io/hostname (or
    # kdns.io/hostname) annotation of a LoadBalancer Service, and the labels and annotations
    # the gateway filters read. The shared empty tuple / EMPTY_META for every other Service.
    hostnames: tuple[str, ...] = ()
    meta: Meta | None = None

    @property
    def kind(self) -> str:
        return "Service"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class EndpointPort(NamedTuple):
    name: str
    protocol: str
    port: int


class Endpoint(NamedTuple):
    addresses: tuple[str, ...]
    hostname: str  # endpoints[].hostname, "" when unset
    ready: bool  # conditions.ready; unset means ready (API contract)
    pod_name: str  # targetRef.name when targetRef.kind == Pod, else ""


class EndpointSlice(NamedTuple):
    namespace: str
    name: str
    service: str  # label kubernetes.io/service-name; "" when unset (slice is ignored)
    address_type: str  # IPv4 | IPv6 | FQDN
    ports: tuple[EndpointPort, ...]
    endpoints: tuple[Endpoint, ...]

    @property
    def kind(self) -> str:
        return "EndpointSlice"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class Pod(NamedTuple):
    namespace: str
    name: str
    ips: tuple[str, ...]  # status.podIPs (falls back to status.podIP)

    @property
    def kind(self) -> str:
        return "Pod"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class Namespace(NamedTuple):
    name: str

    @property
    def kind(self) -> str:
        return "Namespace"

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)


# --- Gateway zones (served only when [gateway] zones are configured) ---------------------------


class Listener(NamedTuple):
    name: str
    hostname: str  # spec.listeners[].hostname, lowercased; "" when unset (any hostname)
    namespaces: str  # allowedRoutes.namespaces.from: "Same" (the default), "All", "Selector"


class Gateway(NamedTuple):
    """gateway.networking.k8s.io Gateway: where the routes attached to it answer."""

    namespace: str
    name: str
    addresses: tuple[str, ...]  # status.addresses of type IPAddress (the default type)
    hostnames: tuple[str, ...]  # status.addresses of type Hostname (a CNAME target)
    listeners: tuple[Listener, ...]

    @property
    def kind(self) -> str:
        return "Gateway"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class ParentRef(NamedTuple):
    namespace: str  # defaulted to the route's own namespace
    name: str
    section: str  # sectionName: one listener; "" for every listener


class Route(NamedTuple):
    """HTTPRoute, GRPCRoute or TLSRoute: the hostnames a Gateway serves for it."""

    kind: str  # "HTTPRoute" | "GRPCRoute" | "TLSRoute"
    namespace: str
    name: str
    hostnames: tuple[str, ...]  # spec.hostnames, lowercased; may start with "*."
    parents: tuple[ParentRef, ...]  # spec.parentRefs to Gateways (other kinds dropped)
    meta: Meta

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class Ingress(NamedTuple):
    """networking.k8s.io/v1 Ingress: its rule hosts answer its load balancer's address."""

    namespace: str
    name: str
    hosts: tuple[str, ...]  # spec.rules[].host, lowercased
    lb_ips: tuple[str, ...]  # status.loadBalancer.ingress[].ip
    lb_hostnames: tuple[str, ...]  # status.loadBalancer.ingress[].hostname (CNAME)
    meta: Meta

    @property
    def kind(self) -> str:
        return "Ingress"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


KubeObject = Service | EndpointSlice | Pod | Namespace | Gateway | Route | Ingress
ROUTE_KINDS: tuple[str, ...] = ("HTTPRoute", "GRPCRoute", "TLSRoute")
GATEWAY_KINDS: tuple[str, ...] = ("Gateway", *ROUTE_KINDS, "Ingress")
KINDS: tuple[str, ...] = ("Service", "EndpointSlice", "Pod", "Namespace", *GATEWAY_KINDS)
# The kinds that publish hostnames in gateway zones ([gateway] resources), in the order that
# decides a conflict (kdns.dns.gateway).
GATEWAY_RESOURCES: tuple[str, ...] = (*ROUTE_KINDS, "Ingress", "Service")
