"""What ``[gateway]`` selects: the zones, which Gateways and objects publish names, the class
filters, and the kinds to watch (kdns.config validates it and builds a ``GatewaySettings``)."""

from __future__ import annotations

from typing import NamedTuple

from kdns.model import EMPTY_META, GATEWAY_RESOURCES, ROUTE_KINDS, Meta

RESOURCES = GATEWAY_RESOURCES
# k8s_gateway's opt-out (README "Excluding Specific Resources"): a route, Ingress or Service
# labelled so publishes no name, whatever the filters say.
IGNORE_LABEL = ("k8s-gateway.dns/ignore", "true")


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
    gateway_classes: tuple[str, ...] = ()  # spec.gatewayClassName of Gateways; empty: any
    ingress_classes: tuple[str, ...] = ()  # an Ingress's class; empty: any
    require_accepted: bool = True  # route status.parents must say Accepted=True
    fallthrough: bool = False  # unclaimed names go to the zone's upstreams
    # k8s_gateway's names for LoadBalancer Services without a hostname annotation:
    # <name>.<namespace>.<zone> in every gateway zone. Off by default: kdns never published
    # them, and turning them on adds a name for every LoadBalancer of the cluster.
    service_names: bool = False
    ttl: int | None = None  # gateway names' TTL; None: kubernetes.ttl
    nameserver: str = ""  # the gateway zones' NS name; "": ns.dns.<zone>
    nameserver_addresses: tuple[str, ...] = ()  # its glue; (): the DNS Service's addresses

    def selects_gateway(self, namespace: str, name: str) -> bool:
        if not self.gateways:
            return True
        return f"{namespace}/{name}" in self.gateways or f"{namespace}/*" in self.gateways

    def selects(self, meta: Meta | None) -> bool:
        meta = meta or EMPTY_META
        if IGNORE_LABEL in meta.labels:
            return False
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
