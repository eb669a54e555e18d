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


class Hints(NamedTuple):
    """What an object's DNS annotations say (external-dns's ``external-dns.alpha.kubernetes.io/``
    ``hostname``, ``internal-hostname``, ``target``, ``ttl``; k8s_gateway's ``coredns.io/hostname``;
    ``kdns.io/hostname``). The shared ``EMPTY_HINTS`` for an object without any."""

    hostnames: tuple[str, ...] = ()  # the hostname annotations, lowercased
    internal: tuple[str, ...] = ()  # internal-hostname: a Service's ClusterIP(s)
    targets: tuple[str, ...] = ()  # target: IPs (A/AAAA) or one hostname (CNAME)
    ttl: int = -1  # ttl in seconds; -1: unset
    # gateway-hostname-source on a route: "" (spec hostnames, else the listener's, plus the
    # annotation's), "annotation-only" or "defined-hosts-only" (kdns.authority.gateway).
    source: str = ""


EMPTY_HINTS = Hints()


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
    # status.loadBalancer.ingress[].hostname (a CNAME when there is no IP), and the other DNS
    # annotations (internal-hostname, target, ttl): set only for annotated Services.
    lb_hostnames: tuple[str, ...] = ()
    hints: Hints | None = None

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
    # metadata.labels, sorted (key, value) pairs: what a Gateway listener's
    # ``allowedRoutes.namespaces.selector`` matches (kubernetes.io/metadata.name included: the
    # API server sets it, and manifests get it at ingest).
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def kind(self) -> str:
        return "Namespace"

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)


# --- Gateway zones (served only when [gateway] zones are configured) ---------------------------


# A label selector as (key, operator, values) requirements; matchLabels become "In" with one value.
Selector = tuple[tuple[str, str, tuple[str, ...]], ...]


class Listener(NamedTuple):
    name: str
    hostname: str  # spec.listeners[].hostname, lowercased; "" when unset (any hostname)
    namespaces: str  # allowedRoutes.namespaces.from: "Same" (the default), "All", "Selector"
    port: int = 0  # spec.listeners[].port
    protocol: str = ""  # HTTP | HTTPS | TLS | TCP | UDP | a domain-prefixed custom protocol
    # allowedRoutes.kinds as "group/Kind" (group defaulted); empty: the protocol's kinds.
    kinds: tuple[str, ...] = ()
    selector: Selector | None = None  # allowedRoutes.namespaces.selector (from: Selector)


class Gateway(NamedTuple):
    """gateway.networking.k8s.io Gateway: where the routes attached to it answer."""

    namespace: str
    name: str
    addresses: tuple[str, ...]  # status.addresses of type IPAddress (the default type)
    hostnames: tuple[str, ...]  # status.addresses of type Hostname (a CNAME target)
    listeners: tuple[Listener, ...]
    gateway_class: str = ""  # spec.gatewayClassName
    # spec.allowedListeners.namespaces.from: which ListenerSets may attach ("None", the
    # default, "Same", "All", "Selector") and its selector.
    allowed_listeners: str = "None"
    listeners_selector: Selector | None = None
    hints: Hints = EMPTY_HINTS

    @property
    def kind(self) -> str:
        return "Gateway"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class ListenerSet(NamedTuple):
    """gateway.networking.k8s.io ListenerSet (standard since Gateway API 1.5): more listeners
    for a parent Gateway, which routes name as their parent; they answer the Gateway's
    addresses."""

    namespace: str
    name: str
    gateway: tuple[str, str]  # spec.parentRef (namespace defaulted to the ListenerSet's)
    listeners: tuple[Listener, ...]
    # status.conditions Accepted=True at the current generation (its Gateway's controller
    # accepted it), and the names of the status.listeners entries that say Accepted=True.
    accepted: bool = False
    accepted_listeners: tuple[str, ...] = ()
    hints: Hints = EMPTY_HINTS  # its target annotation wins over its Gateway's

    @property
    def kind(self) -> str:
        return "ListenerSet"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class GatewayClass(NamedTuple):
    """gateway.networking.k8s.io GatewayClass: which controller runs its Gateways (the one
    whose ``status.parents`` entries of a route count)."""

    name: str
    controller: str  # spec.controllerName

    @property
    def kind(self) -> str:
        return "GatewayClass"

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)


class ParentRef(NamedTuple):
    namespace: str  # defaulted to the route's own namespace
    name: str
    section: str  # sectionName: one listener; "" for every listener
    port: int = 0  # port: listeners on that port only; 0 for every port
    kind: str = "Gateway"  # "Gateway" | "ListenerSet"


class Route(NamedTuple):
    """HTTPRoute, GRPCRoute, TLSRoute, TCPRoute or UDPRoute: the hostnames a Gateway serves
    for it."""

    kind: str
    namespace: str
    name: str
    hostnames: tuple[str, ...]  # spec.hostnames, lowercased; may start with "*."
    parents: tuple[ParentRef, ...]  # spec.parentRefs to Gateways and ListenerSets
    meta: Meta
    # status.parents entries that say Accepted=True for the route's current generation:
    # (parent, controllerName).
    accepted: tuple[tuple[ParentRef, str], ...] = ()
    hints: Hints = EMPTY_HINTS

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
    # spec.ingressClassName, else the kubernetes.io/ingress.class annotation; "" when neither.
    ingress_class: str = ""
    hints: Hints = EMPTY_HINTS

    @property
    def kind(self) -> str:
        return "Ingress"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


KubeObject = (
    Service
    | EndpointSlice
    | Pod
    | Namespace
    | GatewayClass
    | Gateway
    | ListenerSet
    | Route
    | Ingress
)
ROUTE_KINDS: tuple[str, ...] = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
GATEWAY_KINDS: tuple[str, ...] = ("GatewayClass", "Gateway", "ListenerSet", *ROUTE_KINDS, "Ingress")
KINDS: tuple[str, ...] = ("Service", "EndpointSlice", "Pod", "Namespace", *GATEWAY_KINDS)
# The kinds that publish hostnames in gateway zones ([gateway] resources), in the order that
# decides a conflict (kdns.authority.gateway).
GATEWAY_RESOURCES: tuple[str, ...] = (*ROUTE_KINDS, "Gateway", "Ingress", "Service")
