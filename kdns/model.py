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


KubeObject = Service | EndpointSlice | Pod | Namespace
KINDS: tuple[str, ...] = ("Service", "EndpointSlice", "Pod", "Namespace")
