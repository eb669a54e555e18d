"""manifests/gateway/ (RBAC for gateway zones) and manifests/lan/ (a second kdns on a
LoadBalancer IP for home devices): valid Kubernetes, and agreeing with kdns and each other.

The rendering, schema check and kubectl cross-check are tests/test_manifests.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from kdns.config import Config, build_config, parse_hostport
from tests.test_manifests import K8S_VERSIONS, MANIFESTS, Obj, render_kustomization, run_kubectl

GATEWAY = MANIFESTS / "gateway"
LAN = MANIFESTS / "lan"
NAMESPACE = "kube-system"


def rendered(directory: Path) -> list[Obj]:
    return render_kustomization(directory)


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


@pytest.fixture(scope="module")
def lan() -> list[Obj]:
    return rendered(LAN)


@pytest.fixture(scope="module")
def lan_config(lan: list[Obj], tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("lan") / "kdns.toml"
    path.write_text(one(lan, "ConfigMap", "kdns-lan")["data"]["kdns.toml"])
    return build_config(str(path), {})


def schema_cases() -> list[object]:
    cases = []
    for directory in (GATEWAY, LAN):
        for obj in rendered(directory):
            for version in K8S_VERSIONS:
                name = f"{directory.name}:{obj['kind']}/{obj['metadata']['name']}@{version}"
                cases.append(pytest.param(obj, version, id=name))
    return cases


@pytest.mark.parametrize(("obj", "version"), schema_cases())
def test_objects_are_valid_kubernetes_in_strict_mode(obj: Obj, version: str) -> None:
    assert kubernetes_validate.validate(obj, version, strict=True) == version.rsplit(".", 1)[0]


def test_gateway_rbac_is_list_and_watch_on_exactly_the_gateway_resources() -> None:
    objects = rendered(GATEWAY)
    role = one(objects, "ClusterRole", "system:kdns-gateway")
    granted = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        assert sorted(rule["verbs"]) == ["list", "watch"], rule
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {
        ("gateway.networking.k8s.io", "gatewayclasses"),
        ("gateway.networking.k8s.io", "gateways"),
        ("gateway.networking.k8s.io", "listenersets"),
        ("gateway.networking.k8s.io", "httproutes"),
        ("gateway.networking.k8s.io", "grpcroutes"),
        ("gateway.networking.k8s.io", "tlsroutes"),
        ("gateway.networking.k8s.io", "tcproutes"),
        ("gateway.networking.k8s.io", "udproutes"),
        ("networking.k8s.io", "ingresses"),
    }
    binding = one(objects, "ClusterRoleBinding", "system:kdns-gateway")
    assert binding["roleRef"]["name"] == "system:kdns-gateway"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kdns", "namespace": NAMESPACE}
    ]
    # The reflector asks for exactly these paths (a rule per enabled resource, no more).
    from kdns.k8s.reflector import RESOURCES

    paths = {r.path.split("/")[-1] for r in RESOURCES.values() if r.optional}
    assert paths == {resource for _, resource in granted}


def test_base_rbac_stays_the_four_resources() -> None:
    (role,) = [
        o
        for o in yaml.safe_load_all((MANIFESTS / "rbac.yaml").read_text())
        if o and o["kind"] == "ClusterRole"
    ]
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"services", "pods", "namespaces", "endpointslices"}


def test_lan_kdns_has_its_own_identity_bound_to_both_roles(lan: list[Obj]) -> None:
    account = one(lan, "ServiceAccount", "kdns-lan")
    assert account["metadata"]["namespace"] == NAMESPACE
    roles = {
        o["roleRef"]["name"]
        for o in lan
        if o["kind"] == "ClusterRoleBinding"
        and o["subjects"]
        == [{"kind": "ServiceAccount", "name": "kdns-lan", "namespace": NAMESPACE}]
    }
    assert roles == {"system:kdns", "system:kdns-gateway"}
    assert one(lan, "ClusterRole")["metadata"]["name"] == "system:kdns-gateway"
    pod = one(lan, "Deployment", "kdns-lan")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kdns-lan"
    (config_volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert config_volume["configMap"]["name"] == "kdns-lan"


def test_lan_service_is_a_load_balancer_on_udp_and_tcp_53(
    lan: list[Obj], lan_config: Config
) -> None:
    service = one(lan, "Service", "kdns-lan")
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["externalTrafficPolicy"] == "Local"  # client addresses reach the ACL and RRL
    assert {(p["port"], p["protocol"]) for p in spec["ports"]} == {(53, "UDP"), (53, "TCP")}
    deployment = one(lan, "Deployment", "kdns-lan")
    assert spec["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (listen,) = lan_config.listen
    for port in spec["ports"]:
        assert named[port["targetPort"]] == listen[1]
    probes = {
        "livenessProbe": lan_config.health_listen,
        "readinessProbe": lan_config.ready_listen,
    }
    for probe, address in probes.items():
        assert address is not None
        assert container[probe]["httpGet"]["port"] == address[1]
    annotations = service["metadata"]["annotations"]
    assert annotations["lbipam.cilium.io/ips"] == annotations["metallb.universe.tf/loadBalancerIPs"]


def test_lan_config_is_set_for_a_lan(lan_config: Config) -> None:
    assert lan_config.gateway_zones == ("home.example.com",)
    assert lan_config.rrl and lan_config.rrl_ipv4_prefix == 32
    assert all(u.startswith("tls://") for u in lan_config.upstreams)  # DoT upstreams
    assert dict(lan_config.forward_zones)["lan.home.example.com"] == ("192.168.1.1",)
    assert (
        "0.0.0.0/0" not in lan_config.forward_allow and "192.168.0.0/16" in lan_config.forward_allow
    )
    rules = [dict(rule) for rule in lan_config.acl]
    assert rules[-1] == {"action": "drop"}  # anything not from the LAN: no reply
    assert {"action": "block", "zone": ["cluster.local"]} in rules
    assert lan_config.pods == "disabled" and lan_config.dns_service == "kube-system/kdns-lan"
    assert parse_hostport(":5353") in lan_config.listen


def test_lan_acl_answers_the_lan_and_drops_others(lan_config: Config) -> None:
    from kdns.dns import names
    from kdns.policy.acl import Acl, parse_rules

    acl = Acl(parse_rules(lan_config.acl))
    grafana = names.to_wire("grafana.home.example.com")
    assert acl.decide("192.168.1.20", grafana, 1) == "allow"
    assert acl.decide("fd00::20", grafana, 28) == "allow"
    assert acl.decide("203.0.113.9", grafana, 1) == "drop"  # not a home network
    assert acl.decide("192.168.1.20", names.to_wire("web.shop.svc.cluster.local"), 1) == "block"
    assert acl.decide("192.168.1.20", grafana, 252) == "block"  # AXFR


@pytest.mark.parametrize("directory", [GATEWAY, LAN], ids=["gateway", "lan"])
def test_python_render_matches_kubectl_kustomize(directory: Path) -> None:
    out = run_kubectl("kustomize", str(directory))
    theirs = [o for o in yaml.safe_load_all(out) if o]

    def key(obj: Obj) -> str:
        return json.dumps(obj, sort_keys=True)

    assert sorted(map(key, theirs)) == sorted(map(key, rendered(directory)))
