"""A cluster of six Gateway API controllers as a whole: Envoy Gateway, Istio, Cilium, NGINX
Gateway Fabric, Traefik and kgateway Gateways, routes of every kind with the status those
controllers write, Ingresses and Services with the annotations users write. The same objects go
through the resolver, through the Kubernetes API test server to a kdns process, and through an
objects file as ``kubectl get -o yaml`` writes it; every name answers what EXPECTED says, which is
what external-dns would publish for them (the rule for each is by its object)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest
import yaml

from tests.k8sapi import CORE, GATEWAY_API, INGRESS, K8sApi
from tests.kdnsproc import Kdns
from tests.test_e2e_watch import eventually
from tests.test_gateway import ZONE, ask, load, registry
from tests.test_gateway_controllers import (
    CILIUM,
    EG,
    GROUP,
    ISTIO,
    JSON,
    KGATEWAY,
    NGF,
    TRAEFIK,
    cluster,
    condition,
    gateway,
    httproute,
    ingress,
    ip,
    listener,
    parent_status,
    service,
    spelled,
)


def accepted(controller: str, ref: JSON, generation: int = 1, refs: bool = True) -> JSON:
    return parent_status(
        controller,
        ref,
        condition("Accepted", True, generation),
        condition("ResolvedRefs", refs, generation, "" if refs else "BackendNotFound"),
    )


def namespace(name: str, **labels: str) -> JSON:
    labels["kubernetes.io/metadata.name"] = name
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def realistic_cluster() -> list[JSON]:
    """Six controllers' Gateways, routes of every kind with the status those controllers write,
    Ingresses and Services with the annotations users write (EXPECTED says what each name
    answers). Fed to the registry, the API test server and an objects file below."""
    eg, cil, ist = ({"name": n, "namespace": ns} for n, ns in (("eg", "infra"), ("cilium", "infra"), ("istio", "istio-system")))  # fmt: skip
    selector = {"from": "Selector", "selector": {"matchLabels": {"dns": "lan"}}}
    tls = {"name": "kgw", "namespace": "infra", "sectionName": "tls"}
    web = {"name": "traefik", "namespace": "infra", "sectionName": "websecure"}
    objs = [
        *(namespace(n) for n in ("infra", "istio-system", "guest")),
        namespace("apps", dns="lan"),
        *(o for o in cluster() if o["metadata"]["name"] != "istio"),
        {
            **gateway("istio-system", "istio", "istio", [ip("192.168.1.20")], [listener("http")]),
            "spec": {
                "gatewayClassName": "istio",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": {"namespaces": selector},
                    }
                ],
            },
        },  # fmt: skip
        gateway(
            "infra",
            "nginx",
            "nginx",
            [{"type": "Hostname", "value": "nginx-lb.elb.example.net"}],
            [listener("https", "HTTPS", 443, f"shop.{ZONE}", "Same")],
        ),  # fmt: skip
        gateway(
            "infra",
            "traefik",
            "traefik",
            [ip("192.168.1.50")],
            [listener("web", "HTTP", 8000), listener("websecure", "HTTPS", 8443, f"*.apps.{ZONE}")],
        ),  # fmt: skip
        gateway(
            "infra",
            "kgw",
            "kgateway",
            [ip("192.168.1.60")],
            [listener("tls", "TLS", 443, f"*.{ZONE}"), listener("pg", "TCP", 5432)],
            metadata={"annotations": {"external-dns.kubernetes.io/hostname": f"pg.{ZONE}"}},
        ),  # fmt: skip
        httproute(
            "apps",
            "web",
            [f"web.{ZONE}"],
            [eg, cil],
            [accepted(EG, eg), accepted(CILIUM, spelled("infra", "cilium"))],
        ),  # fmt: skip
        # Accepted with a missing backend (ResolvedRefs=False) is still accepted.
        httproute(
            "apps",
            "grafana",
            [f"grafana.{ZONE}"],
            [dict(eg, sectionName="https"), ist],
            [accepted(EG, dict(eg, sectionName="https"), refs=False), accepted(ISTIO, ist)],
        ),  # fmt: skip
        # from: Selector (dns=lan) -- Istio refuses the guest namespace's route.
        httproute(
            "guest",
            "wiki",
            [f"wiki.{ZONE}"],
            [ist],
            [
                parent_status(
                    ISTIO, ist, condition("Accepted", False, reason="NotAllowedByListeners")
                )
            ],
        ),  # fmt: skip
        # The same with a status saying Accepted (a controller's bug): the selector still rules.
        httproute("guest", "sneaky", [f"sneaky.{ZONE}"], [ist], [accepted(ISTIO, ist)]),
        # The controller has not looked at generation 3 yet.
        httproute(
            "apps", "stale", [f"stale.{ZONE}"], [eg], [accepted(EG, eg, generation=2)], generation=3
        ),  # fmt: skip
        # The class moved to Envoy Gateway; Istio's entry of old is no word of eg's controller.
        httproute("apps", "old", [f"old.{ZONE}"], [eg], [accepted(ISTIO, eg)]),
        # NGINX Gateway Fabric: a wildcard narrowed to its listener's shop.<zone>; a CNAME.
        httproute(
            "infra",
            "shop",
            [f"*.{ZONE}"],
            [{"name": "nginx"}],
            [accepted(NGF, spelled("infra", "nginx"))],
        ),  # fmt: skip
        # Traefik: no hostnames, the listener's wildcard; a specific name on two Gateways.
        httproute("apps", "apps", None, [web], [accepted(TRAEFIK, web)]),
        httproute(
            "apps",
            "api",
            [f"api.apps.{ZONE}"],
            [web, eg],
            [accepted(TRAEFIK, web), accepted(EG, eg)],
        ),  # fmt: skip
        httproute(
            "apps",
            "upper",
            None,
            [cil],
            [accepted(CILIUM, cil)],
            annotations={"external-dns.alpha.kubernetes.io/hostname": f"Upper.{ZONE.upper()}."},
        ),  # fmt: skip
        {
            **httproute(
                "apps",
                "grpc",
                [f"grpc.{ZONE}"],
                [dict(eg, port=443)],
                [accepted(EG, dict(eg, port=443))],
            ),
            "kind": "GRPCRoute",
        },  # fmt: skip
        {
            **httproute("apps", "mqtt", [f"mqtt.{ZONE}"], [tls], [accepted(KGATEWAY, tls)]),
            "kind": "TLSRoute",
        },  # fmt: skip
        {
            **httproute(
                "apps",
                "misfit",
                [f"misfit.{ZONE}"],
                [dict(eg, sectionName="https")],
                [accepted(EG, dict(eg, sectionName="https"))],
            ),
            "kind": "TLSRoute",
        },  # HTTPS: no TLSRoute  # fmt: skip
        ingress(
            "apps",
            "legacy",
            [f"legacy.{ZONE}"],
            [{"ip": "192.168.1.70"}],
            ingressClassName=None,
            annotations={"kubernetes.io/ingress.class": "nginx"},
            tls=[{"hosts": [f"www.legacy.{ZONE}"], "secretName": "t"}],
        ),  # fmt: skip
        ingress(
            "apps",
            "aws",
            [f"aws.{ZONE}"],
            [{"hostname": "k8s-apps-aws.elb.example.net"}],
            ingressClassName="alb",
        ),  # fmt: skip
        service(
            "apps",
            "nas",
            [{"ip": "192.168.1.80", "ipMode": "VIP"}],
            {
                "external-dns.kubernetes.io/hostname": f"nas.{ZONE}",
                "external-dns.kubernetes.io/ttl": "1m",
            },
        ),  # fmt: skip
        service(
            "apps",
            "pihole",
            [{"ip": "192.168.1.90"}],
            {"coredns.io/hostname": f"pihole.{ZONE}"},
            externalIPs=["192.168.1.91"],
        ),  # fmt: skip
        service(
            "apps",
            "internal",
            [],
            {"external-dns.alpha.kubernetes.io/internal-hostname": f"int.{ZONE}"},
            type="ClusterIP",
            clusterIP="10.96.0.50",
            clusterIPs=["10.96.0.50"],
        ),  # fmt: skip
    ]
    for obj in objs:  # TLSRoute at v1 (Gateway API 1.5), GRPCRoute v1
        if obj["kind"] in ("TLSRoute", "GRPCRoute"):
            obj["spec"].pop("rules", None)
        if obj["kind"] == "TCPRoute":
            obj["apiVersion"] = f"{GROUP}/v1alpha2"
    pg = {"name": "kgw", "namespace": "infra", "sectionName": "pg"}
    tcp = httproute("apps", "pg", None, [pg], [accepted(KGATEWAY, pg)])
    objs.append({**tcp, "kind": "TCPRoute", "apiVersion": f"{GROUP}/v1alpha2"})
    return objs


# name -> (type, sorted answer texts); [] is NXDOMAIN.
EXPECTED: dict[str, tuple[str, list[str]]] = {
    f"web.{ZONE}": ("A", ["192.168.1.10", "192.168.1.30"]),
    f"web.{ZONE}.": ("AAAA", ["fd00::30"]),
    f"grafana.{ZONE}": ("A", ["192.168.1.10", "192.168.1.20"]),
    f"wiki.{ZONE}": ("A", []),
    f"sneaky.{ZONE}": ("A", []),
    f"stale.{ZONE}": ("A", []),
    f"old.{ZONE}": ("A", []),
    f"shop.{ZONE}": ("CNAME", ["nginx-lb.elb.example.net."]),
    f"other.{ZONE}": ("A", []),  # the shop route's *.<zone> is narrowed to shop.<zone>
    f"x.apps.{ZONE}": ("A", ["192.168.1.50"]),
    f"deep.x.apps.{ZONE}": ("A", ["192.168.1.50"]),
    f"api.apps.{ZONE}": ("A", ["192.168.1.10", "192.168.1.50"]),
    f"upper.{ZONE}": ("A", ["192.168.1.30"]),
    f"grpc.{ZONE}": ("A", ["192.168.1.10"]),
    f"mqtt.{ZONE}": ("A", ["192.168.1.60"]),
    f"misfit.{ZONE}": ("A", []),
    f"pg.{ZONE}": ("A", ["192.168.1.60"]),
    f"legacy.{ZONE}": ("A", ["192.168.1.70"]),
    f"www.legacy.{ZONE}": ("A", ["192.168.1.70"]),
    f"aws.{ZONE}": ("CNAME", ["k8s-apps-aws.elb.example.net."]),
    f"nas.{ZONE}": ("A", ["192.168.1.80"]),
    f"pihole.{ZONE}": ("A", ["192.168.1.91"]),
    f"int.{ZONE}": ("A", ["10.96.0.50"]),
}


def test_realistic_cluster_through_the_resolver() -> None:
    reg = registry()
    load(reg, *realistic_cluster())
    for name, (rdtype, want) in EXPECTED.items():
        reply = ask(reg, name, rdtype)
        got = sorted(r.to_text() for rrset in reply.answer for r in rrset)
        assert (reply.rcode(), got) == ((0, want) if want else (3, [])), name


def answers(proc: Kdns, name: str, rdtype: str) -> tuple[int, list[str]]:
    reply = proc.query(name, rdtype)
    return reply.rcode(), sorted(r.to_text() for rrset in reply.answer for r in rrset)


def expected(want: list[str]) -> tuple[int, list[str]]:
    return (dns.rcode.NOERROR, want) if want else (dns.rcode.NXDOMAIN, [])


@pytest.fixture
def api() -> Iterator[K8sApi]:
    with K8sApi(realistic_cluster(), bookmark_interval=0.5, installed=(*CORE, *GATEWAY_API, *INGRESS)) as server:  # fmt: skip
        yield server


def test_realistic_cluster_through_the_api(api: K8sApi, tmp_path: Path) -> None:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    with Kdns("--kubeconfig", str(kubeconfig), "--lameduck", "0", "--gateway-zone", ZONE) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: answers(proc, f"int.{ZONE}", "A")[1] == ["10.96.0.50"])
        for name, (rdtype, want) in EXPECTED.items():
            assert answers(proc, name, rdtype) == expected(want), name
        # The stale route's controller catches up: it answers.
        stale = next(o for o in realistic_cluster() if o["metadata"]["name"] == "stale")
        stale["status"]["parents"][0]["conditions"][0]["observedGeneration"] = 3
        api.modify(stale)
        eventually(lambda: answers(proc, f"stale.{ZONE}", "A") == expected(["192.168.1.10"]))
        # One parent's address moves, then another parent goes: the combined answer follows.
        api.modify(gateway("infra", "cilium", "cilium", [ip("192.168.1.31")], [listener("http")]))
        eventually(lambda: answers(proc, f"web.{ZONE}", "A")[1] == ["192.168.1.10", "192.168.1.31"])  # fmt: skip
        api.delete("gateways", "infra", "eg")
        eventually(lambda: answers(proc, f"web.{ZONE}", "A")[1] == ["192.168.1.31"])
        assert answers(proc, f"api.apps.{ZONE}", "A")[1] == ["192.168.1.50"]
        # The nas Service's ttl annotation (1m) is its records' TTL.
        assert proc.query(f"nas.{ZONE}", "A").answer[0].ttl == 60


def test_realistic_cluster_through_an_objects_file(tmp_path: Path) -> None:
    # `kubectl get gatewayclasses,gateways,httproutes,... -A -o yaml`: a List of the objects.
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": realistic_cluster()}))  # fmt: skip
    with Kdns("--objects", str(path), "--gateway-zone", ZONE) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        for name, (rdtype, want) in EXPECTED.items():
            assert answers(proc, name, rdtype) == expected(want), name


def test_a_malformed_object_from_the_api_is_skipped_not_fatal(api: K8sApi, tmp_path: Path) -> None:
    # The API test server (like a CRD installed without its schema) sends what it is given: a
    # Gateway whose spec.listeners is not a list must be ignored with a warning, as other
    # objects kdns cannot use are, and the Gateway watch must go on. It ended the watch: kdns
    # stayed Ready and never saw another Gateway change.
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    with Kdns("--kubeconfig", str(kubeconfig), "--lameduck", "0", "--gateway-zone", ZONE) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: answers(proc, f"web.{ZONE}", "A")[1] == ["192.168.1.10", "192.168.1.30"])  # fmt: skip
        bad = gateway("infra", "bad", "eg", [ip("192.168.9.9")], [listener("http")])
        bad["spec"]["listeners"] = 5
        api.add(bad)
        bad_route = httproute("apps", "bad", [f"bad.{ZONE}"], [], [])
        bad_route["spec"]["parentRefs"] = True
        api.add(bad_route)
        api.modify(gateway("infra", "cilium", "cilium", [ip("192.168.1.33")], [listener("http")]))
        eventually(lambda: answers(proc, f"web.{ZONE}", "A")[1] == ["192.168.1.10", "192.168.1.33"])  # fmt: skip
        api.add(httproute("apps", "late", [f"late.{ZONE}"], [{"name": "eg", "namespace": "infra"}], [accepted(EG, {"name": "eg", "namespace": "infra"})]))  # fmt: skip
        eventually(lambda: answers(proc, f"late.{ZONE}", "A")[1] == ["192.168.1.10"])
        assert "ignoring an object the API sent" in proc.log
