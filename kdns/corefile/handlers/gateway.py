"""The k8s_gateway plugin (github.com/ori-edge/k8s_gateway, continued as k8s-gateway/k8s_gateway):
its block becomes ``[gateway]``, which answers the same names from the same objects.

What each option becomes (k8s_gateway README "Configure", setup.go ``parse``):

- ``k8s_gateway [ZONES...]`` -> ``gateway.zones`` (no ZONES: the server block's zones), and
  ``gateway.service_names = true``: k8s_gateway answers every LoadBalancer Service as
  ``<name>.<namespace>.<zone>``;
- ``resources`` -> ``gateway.resources`` (``DNSEndpoint`` and ``Node`` have no kdns source);
  without it, what ori-edge/k8s_gateway watches: HTTPRoute, TLSRoute, GRPCRoute, Ingress,
  Service;
- ``ttl`` -> ``gateway.ttl`` (without it, k8s_gateway's 60 s);
- ``apex NAME.NAMESPACE`` -> ``gateway.nameserver = NAME.NAMESPACE.<zone>`` and
  ``kubernetes.dns_service = NAMESPACE/NAME``: k8s_gateway's NS name is ``apex.<zone>`` and
  its glue the LoadBalancer address of the Service the apex names (gateway.go
  ``SelfAddress``); kdns glues the DNS Service's LoadBalancer address to its NS name;
- ``fallthrough [ZONES...]`` -> ``gateway.fallthrough`` (unclaimed names go to the upstreams);
- ``ingressClasses`` / ``gatewayClasses`` -> ``gateway.ingress_classes`` / ``gateway_classes``;
- ``kubeconfig FILE`` -> ``kubernetes.kubeconfig``;
- ``secondary``, ``soa``, a kubeconfig CONTEXT: reported (kdns has no equivalent).

k8s_gateway needs the API server, so the translation keeps ``kubernetes.enabled`` (the watch);
kdns then also answers the cluster domain, which the ``forward . /etc/resolv.conf`` of the
k8s_gateway Helm chart sent to the cluster DNS anyway.
"""

from __future__ import annotations

from collections.abc import Callable

from kdns.corefile.handlers.common import _options
from kdns.corefile.parse import Directive
from kdns.corefile.translator import _bad, _Block, _integer, _Translator, _zone

# ori-edge/k8s_gateway gateway.go staticResources: watched when `resources` is not given.
# (k8s-gateway/k8s_gateway 1.x watches only Ingress and Service by default: setup.go.)
DEFAULT_RESOURCES = ["HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress", "Service"]
KNOWN_RESOURCES = {"HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress", "Service"}
DEFAULT_TTL = 60  # gateway.go ttlDefault


def _k8s_gateway(t: _Translator, d: Directive, b: _Block) -> None:
    zones = [z for arg in d.args for z in _zone(arg, d)] or [z for z in b.zones if z != "."]
    if not zones or "." in zones:
        t.unsupported(d, None, "name the zone (k8s_gateway home.example.com): kdns serves gateway names in named zones")  # fmt: skip
        return
    asked = [k for o in d.block or [] if o.name == "resources" for k in o.args]
    if asked and not KNOWN_RESOURCES.intersection(asked):
        # Only DNSEndpoint/Node: kdns would serve none of it, and its default kinds are more
        # than was asked for. Leave the zones out rather than answer other objects there.
        t.unsupported(d, "resources " + " ".join(asked), "kdns has no source for these kinds (DNSEndpoint, Node): the block is left out")  # fmt: skip
        return
    t.append("gateway.zones", list(zones), d, "k8s_gateway " + " ".join(d.args))
    seen: set[str] = set()

    def resources(o: Directive) -> None:
        if not o.args:
            raise _bad(o, "resources takes one kind or more")  # setup.go refuses it
        kinds = []
        for kind in o.args:
            if kind in KNOWN_RESOURCES:
                kinds.append(kind)
            else:
                t.unsupported(d, f"resources {kind}", "kdns publishes names of HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute, Ingress and Service objects (DNSEndpoint and Node have no kdns source)")  # fmt: skip
        if kinds:
            t.set("gateway.resources", kinds, o, "resources " + " ".join(o.args))
        seen.add("resources")

    def ttl(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "ttl takes one number of seconds")
        value = _integer(o.args[0], o)
        if value > 3600:
            raise _bad(o, f"ttl must be in range [0, 3600]: {value}")  # setup.go's check
        t.set("gateway.ttl", value, o, f"ttl {value}")
        seen.add("ttl")

    def apex(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "apex takes one name")
        name = o.args[0].strip(".").lower()
        t.set("gateway.nameserver", f"{name}.{zones[0]}", o, f"apex {o.args[0]}: the NS name is APEX.ZONE")  # fmt: skip
        if len(zones) > 1:
            t.unsupported(d, f"apex {o.args[0]} for {', '.join(zones[1:])}", f"kdns names one nameserver for every gateway zone, {name}.{zones[0]}; k8s_gateway names {name}.<zone> in each")  # fmt: skip
        labels = name.split(".")
        if len(labels) == 2:  # NAME.NAMESPACE: the Service whose address is the glue
            t.set("kubernetes.dns_service", f"{labels[1]}/{labels[0]}", o, f"apex {o.args[0]}: its LoadBalancer address is the NS name's glue, as k8s_gateway's")  # fmt: skip
            t.note("gateway", o, f"the Service {labels[1]}/{labels[0]} is where LAN clients reach the server: give kdns's LoadBalancer Service that name, or set kubernetes.dns_service to kdns's (manifests/lan: kube-system/kdns-lan)")  # fmt: skip

    def fallthrough(o: Directive) -> None:
        covered = [z for arg in o.args for z in _zone(arg, o)]
        if covered and set(covered) != set(zones):
            t.unsupported(d, f"fallthrough {' '.join(o.args)}", "kdns's [gateway] fallthrough covers every gateway zone")  # fmt: skip
        t.set("gateway.fallthrough", True, o, "fallthrough")

    def classes(key: str) -> Callable[[Directive], None]:
        def handle(o: Directive) -> None:
            if not o.args:
                raise _bad(o, f"{o.name} takes one class or more")
            t.set(f"gateway.{key}", list(o.args), o, f"{o.name} {' '.join(o.args)}")

        return handle

    def kubeconfig(o: Directive) -> None:
        if not o.args:
            raise _bad(o, "kubeconfig takes FILE [CONTEXT]")
        t.set("kubernetes.kubeconfig", o.args[0], o, f"kubeconfig {o.args[0]}")
        if len(o.args) > 1:
            t.unsupported(d, f"kubeconfig context {o.args[1]}", "kdns uses the kubeconfig's current context: make it the current one")  # fmt: skip

    def secondary(o: Directive) -> None:
        t.unsupported(d, f"secondary {' '.join(o.args)}", "kdns answers one NS name per gateway zone (gateway.nameserver); list the peer's nameserver in the parent zone's delegation, or run one kdns with two replicas behind one address")  # fmt: skip

    def soa(o: Directive) -> None:
        t.unsupported(d, f"soa {' '.join(o.args)}", "kdns's gateway zones have fixed SOA timers; gateway.ttl sets their minimum")  # fmt: skip

    _options(
        t,
        d,
        {
            "resources": resources,
            "ttl": ttl,
            "apex": apex,
            "fallthrough": fallthrough,
            "ingressClasses": classes("ingress_classes"),
            "gatewayClasses": classes("gateway_classes"),
            "kubeconfig": kubeconfig,
            "secondary": secondary,
            "soa": soa,
        },
    )
    if "resources" not in seen:
        t.set("gateway.resources", DEFAULT_RESOURCES, d, "no resources option: what ori-edge/k8s_gateway watches (k8s-gateway/k8s_gateway 1.x: Ingress and Service only)")  # fmt: skip
    kinds = t.values.get("gateway.resources")
    if kinds is not None and "Service" in kinds.value:  # type: ignore[operator]
        t.set("gateway.service_names", True, d, "k8s_gateway answers LoadBalancer Services as NAME.NAMESPACE.ZONE")  # fmt: skip
    if "ttl" not in seen:
        t.set("gateway.ttl", DEFAULT_TTL, d, "no ttl option: k8s_gateway's default")

    def dead_forwards() -> None:
        # Without fallthrough k8s_gateway answers every name of its zones (NXDOMAIN when
        # nothing claims it): a forward for one of them is never asked, in CoreDNS as in kdns
        # (which refuses such a forward zone at start).
        fall = t.values.get("gateway.fallthrough")
        if fall is not None and fall.value:
            return
        for zone in zones:
            if zone in t.forward_zones:
                del t.forward_zones[zone]
                t.note("forward", d, f"forward for {zone} left out: k8s_gateway answers that zone without fallthrough, so CoreDNS never forwarded it either")  # fmt: skip

    t.finish_checks.append(dead_forwards)
