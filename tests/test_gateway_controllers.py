"""Gateway zones fed objects as controllers write them: Envoy Gateway, Istio, Cilium, NGINX
Gateway Fabric, Traefik and kgateway status blocks (several parents and controllers on one route,
observedGeneration, listener status arrays, conditions with reasons, status parentRefs spelled
out or copied as the spec wrote them), Ingresses and LoadBalancer Services with the annotations
users write. Each case names the Gateway API rule or the external-dns / k8s_gateway behaviour it
checks. The objects are written here by hand, not by tests/k8sapi.py's helpers, so that their
shapes are the controllers' and not kdns's own idea of them."""

from __future__ import annotations

from typing import Any

from tests.test_gateway import ZONE, a, ask, load, registry

JSON = dict[str, Any]
GROUP = "gateway.networking.k8s.io"
EG = "gateway.envoyproxy.io/gatewayclass-controller"
ISTIO = "istio.io/gateway-controller"
CILIUM = "io.cilium/gateway-controller"
NGF = "gateway.nginx.org/nginx-gateway-controller"
TRAEFIK = "traefik.io/gateway-controller"
KGATEWAY = "kgateway.dev/kgateway"
CLASSES = {"eg": EG, "istio": ISTIO, "cilium": CILIUM, "nginx": NGF, "traefik": TRAEFIK, "kgateway": KGATEWAY}  # fmt: skip


def condition(kind: str, ok: bool, generation: int = 1, reason: str = "") -> JSON:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason or (kind if ok else "Invalid"),
        "message": "",
        "lastTransitionTime": "2026-12-01T10:00:00Z",
        "observedGeneration": generation,
    }


def gatewayclass(name: str) -> JSON:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name, "generation": 1},
        "spec": {"controllerName": CLASSES[name]},
        "status": {
            "conditions": [condition("Accepted", True), condition("SupportedVersion", True)]
        },  # fmt: skip
    }


def listener(name: str, protocol: str = "HTTP", port: int = 80, hostname: str = "", allowed: str = "All") -> JSON:  # fmt: skip
    out: JSON = {"name": name, "protocol": protocol, "port": port}
    if hostname:
        out["hostname"] = hostname
    out["allowedRoutes"] = {"namespaces": {"from": allowed}}
    return out


def gateway(ns: str, name: str, cls: str, addresses: list[JSON], listeners: list[JSON], **extra: Any) -> JSON:  # fmt: skip
    """A Gateway with the status its controller writes: addresses, Accepted/Programmed, and a
    status.listeners entry per listener (supportedKinds, attachedRoutes, conditions)."""
    gen = extra.pop("generation", 1)
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": {
            "namespace": ns,
            "name": name,
            "generation": gen,
            **extra.pop("metadata", {}),
        },  # fmt: skip
        "spec": {"gatewayClassName": cls, "listeners": listeners, **extra.pop("spec", {})},
        "status": {
            "addresses": addresses,
            "conditions": [condition("Accepted", True, gen), condition("Programmed", True, gen)],
            "listeners": [
                {
                    "name": item["name"],
                    "attachedRoutes": 1,
                    "supportedKinds": [
                        {"group": GROUP, "kind": "HTTPRoute"},
                        {"group": GROUP, "kind": "GRPCRoute"},
                    ],  # fmt: skip
                    "conditions": [
                        condition("Accepted", True, gen),
                        condition("Programmed", True, gen),
                        condition("ResolvedRefs", True, gen),
                    ],  # fmt: skip
                }
                for item in listeners
            ],
        },
    }


def ip(value: str) -> JSON:
    return {"type": "IPAddress", "value": value}


def parent_status(controller: str, ref: JSON, *conditions: JSON) -> JSON:
    return {"controllerName": controller, "parentRef": ref, "conditions": list(conditions)}


def httproute(ns: str, name: str, hostnames: list[str] | None, refs: list[JSON], parents: list[JSON], generation: int = 1, annotations: JSON | None = None) -> JSON:  # fmt: skip
    route: JSON = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "namespace": ns,
            "name": name,
            "generation": generation,
            "annotations": annotations or {},
        },  # fmt: skip
        "spec": {"parentRefs": refs, "rules": [{"backendRefs": [{"name": name, "port": 80}]}]},
        "status": {"parents": parents},
    }
    if hostnames is not None:
        route["spec"]["hostnames"] = hostnames
    return route


def spelled(ns: str, name: str, **more: Any) -> JSON:
    """A status parentRef as NGINX Gateway Fabric and Cilium write it: group, kind and namespace
    spelled out although the spec left them to their defaults."""
    return {"group": GROUP, "kind": "Gateway", "namespace": ns, "name": name, **more}


def cluster() -> list[JSON]:
    """Three Gateways of three controllers: Envoy Gateway (HTTP + HTTPS *.zone), Istio, Cilium
    (dual-stack)."""
    return [
        *(gatewayclass(c) for c in CLASSES),
        gateway(
            "infra",
            "eg",
            "eg",
            [ip("192.168.1.10")],
            [listener("http"), listener("https", "HTTPS", 443, f"*.{ZONE}")],
        ),  # fmt: skip
        gateway("istio-system", "istio", "istio", [ip("192.168.1.20")], [listener("http")]),
        gateway(
            "infra", "cilium", "cilium", [ip("192.168.1.30"), ip("fd00::30")], [listener("http")]
        ),  # fmt: skip
    ]


# --- several parents, several controllers ---------------------------------------------------------


def test_route_through_two_accepted_gateways_answers_both() -> None:
    # external-dns docs/sources/gateway.md, "Targets": "The targets from each parent Gateway
    # matching the *Route are then combined and de-duplicated"; k8s_gateway answers the
    # addresses of every Gateway a route resolves to. One route on Envoy Gateway's and
    # Cilium's Gateways (each controller writes its own status.parents entry) answers all
    # three addresses, and no conflict is logged for it.
    route = httproute(
        "apps",
        "web",
        [f"web.{ZONE}"],
        [{"name": "eg", "namespace": "infra"}, {"name": "cilium", "namespace": "infra"}],
        [
            parent_status(
                EG,
                {"name": "eg", "namespace": "infra"},
                condition("Accepted", True),
                condition("ResolvedRefs", True),
            ),  # fmt: skip
            parent_status(
                CILIUM,
                spelled("infra", "cilium"),
                condition("Accepted", True, reason="Accepted"),
                condition("ResolvedRefs", True),
            ),  # fmt: skip
        ],
    )
    reg = registry()
    load(reg, *cluster(), route)
    assert a(reg, f"web.{ZONE}") == ["192.168.1.10", "192.168.1.30", "fd00::30"]
    reply = ask(reg, f"web.{ZONE}", "AAAA")
    assert [r.to_text() for rrset in reply.answer for r in rrset] == ["fd00::30"]
    # Only the accepted parents count: Cilium says NotAllowedByListeners -> Envoy's alone.
    route["status"]["parents"][1]["conditions"][0] = condition("Accepted", False, reason="NotAllowedByListeners")  # fmt: skip
    load(reg, route)
    assert a(reg, f"web.{ZONE}") == ["192.168.1.10"]


def test_two_parents_one_hostname_only_gateway_answers_the_addresses() -> None:
    # Combining a Gateway with IPs and one whose status.addresses is only a Hostname: a CNAME
    # cannot sit beside A records (RFC 1034 3.6.2), so the IPs answer.
    reg = registry()
    load(
        reg,
        *cluster(),
        gateway(
            "infra",
            "aws",
            "eg",
            [{"type": "Hostname", "value": "k8s-infra-aws.elb.example.net"}],
            [listener("http")],
        ),  # fmt: skip
        httproute(
            "apps",
            "web",
            [f"web.{ZONE}"],
            [{"name": "aws", "namespace": "infra"}, {"name": "eg", "namespace": "infra"}],
            [
                parent_status(EG, spelled("infra", "aws"), condition("Accepted", True)),
                parent_status(EG, spelled("infra", "eg"), condition("Accepted", True)),
            ],  # fmt: skip
        ),
        httproute(
            "apps",
            "only",
            [f"only.{ZONE}"],
            [{"name": "aws", "namespace": "infra"}],
            [parent_status(EG, spelled("infra", "aws"), condition("Accepted", True))],
        ),
    )
    assert a(reg, f"web.{ZONE}") == ["192.168.1.10"]
    reply = ask(reg, f"only.{ZONE}")
    assert [rrset.rdtype for rrset in reply.answer] == [5]  # CNAME alone


# --- Ingresses and LoadBalancer Services as users write them ---------------------------------------


def ingress(ns: str, name: str, hosts: list[str], lb: list[JSON], **spec: Any) -> JSON:
    backend = {"service": {"name": name, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "namespace": ns,
            "name": name,
            "generation": 1,
            "annotations": spec.pop("annotations", {}),
        },  # fmt: skip
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": h,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
                for h in hosts
            ],  # fmt: skip
            **spec,
        },
        "status": {"loadBalancer": {"ingress": lb}},
    }


def test_ingress_tls_hosts_are_published() -> None:
    # external-dns source/ingress.go endpointsFromIngress: the hosts of spec.tls[].hosts are
    # published beside spec.rules[].host unless --ignore-ingress-tls-spec (off by default);
    # ingress-hostname-source: defined-hosts-only keeps them (they are defined hosts),
    # annotation-only drops them.
    tls = [{"hosts": [f"app.{ZONE}", f"www.app.{ZONE}"], "secretName": "app-tls"}]
    lb = [{"ip": "192.168.2.4", "ipMode": "VIP", "ports": [{"port": 443, "protocol": "TCP"}]}]
    reg = registry()
    load(reg, ingress("apps", "app", [f"app.{ZONE}"], lb, tls=tls))
    assert a(reg, f"app.{ZONE}") == a(reg, f"www.app.{ZONE}") == ["192.168.2.4"]
    hostname = {"external-dns.alpha.kubernetes.io/hostname": f"alias.{ZONE}"}
    for source, answered in (("defined-hosts-only", True), ("annotation-only", False)):
        annotations = {**hostname, "external-dns.alpha.kubernetes.io/ingress-hostname-source": source}  # fmt: skip
        reg = registry()
        load(reg, ingress("apps", "app", [f"app.{ZONE}"], lb, tls=tls, annotations=annotations))
        assert a(reg, f"www.app.{ZONE}") == (["192.168.2.4"] if answered else [])
        assert a(reg, f"alias.{ZONE}") == ([] if answered else ["192.168.2.4"])


def service(ns: str, name: str, lb: list[JSON], annotations: JSON, **spec: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name, "annotations": annotations},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.5",
            "clusterIPs": ["10.96.0.5"],
            "ports": [
                {
                    "name": "http",
                    "port": 80,
                    "protocol": "TCP",
                    "targetPort": 8080,
                    "nodePort": 31080,
                }
            ],  # fmt: skip
            **spec,
        },
        "status": {"loadBalancer": {"ingress": lb}},
    }


def test_load_balancer_service_external_ips_win() -> None:
    # external-dns source/service.go extractLoadBalancerTargets: a LoadBalancer Service with
    # spec.externalIPs publishes those, not its status.loadBalancer.ingress (a bare-metal LB
    # that fronts the Service at addresses the cluster was told about).
    hostname = {"external-dns.alpha.kubernetes.io/hostname": f"nas.{ZONE}"}
    reg = registry()
    load(
        reg,
        service(
            "apps",
            "nas",
            [{"ip": "192.168.3.1", "ipMode": "VIP"}],
            hostname,
            externalIPs=["192.168.3.99"],
        ),  # fmt: skip
        service("apps", "web", [{"ip": "192.168.3.2"}], {"coredns.io/hostname": f"web.{ZONE}"}),
        service(
            "apps",
            "cn",
            [{"hostname": "k8s-apps-cn.elb.example.net"}],
            {"external-dns.kubernetes.io/hostname": f"cn.{ZONE}"},
            externalIPs=["192.168.3.98"],
        ),  # fmt: skip
    )
    assert a(reg, f"nas.{ZONE}") == ["192.168.3.99"]
    assert a(reg, f"web.{ZONE}") == ["192.168.3.2"]  # no externalIPs: the load balancer's
    assert a(reg, f"cn.{ZONE}") == ["192.168.3.98"]  # over the load balancer's hostname


def test_ingress_class_spec_before_the_legacy_annotation() -> None:
    # external-dns source/ingress.go filterByIngressClass (--ingress-class): a non-empty
    # spec.ingressClassName decides alone; without one, kubernetes.io/ingress.class does.
    lb = [{"ip": "192.168.2.1"}]
    legacy = {"kubernetes.io/ingress.class": "internal"}
    reg = registry(ingress_classes=("internal",))
    load(
        reg,
        ingress(
            "apps", "spec", [f"spec.{ZONE}"], lb, ingressClassName="external", annotations=legacy
        ),  # fmt: skip
        ingress("apps", "empty", [f"empty.{ZONE}"], lb, ingressClassName="", annotations=legacy),
        ingress("apps", "none", [f"none.{ZONE}"], lb, ingressClassName=None),
    )
    assert a(reg, f"spec.{ZONE}") == [] and a(reg, f"none.{ZONE}") == []
    assert a(reg, f"empty.{ZONE}") == ["192.168.2.1"]
