"""manifests/autoscaler/ and manifests/nodelocal/: valid Kubernetes objects that agree with kdns
and with each other (docs/scaling.md).

Schema checks use kubernetes-validate's bundled schemas in strict mode (no network), for the
oldest and newest Kubernetes minors test_manifests.py claims. The rest are requirements, one per
test: the cluster-proportional-autoscaler's parameters and least-privilege RBAC, the HPA
alternative, the topology spread patch, and the node-local DaemonSet's addresses, probes,
privileges and Services. The node-local configuration is run in tests/test_nodelocal.py.
"""

from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kdns.config import Config, build_config
from tests.test_manifests import (
    K8S_VERSIONS,
    MANIFESTS,
    NAMESPACE,
    apply_patch,
    load_yaml,
    render_kustomization,
    resolve_port,
    run_kubectl,
    selects,
)

ROOT = Path(__file__).resolve().parent.parent
AUTOSCALER = MANIFESTS / "autoscaler"
HPA = AUTOSCALER / "hpa"
NODELOCAL = MANIFESTS / "nodelocal"
SPREAD = AUTOSCALER / "spread.yaml"
SCALING_DOC = ROOT / "docs" / "scaling.md"
KUSTOMIZATIONS = (AUTOSCALER, HPA, NODELOCAL)
# Files that are patches for objects manifests/ installs, applied with `kubectl patch`.
PATCH_FILES = {SPREAD}

Obj = dict[str, Any]


def objects(directory: Path) -> list[Obj]:
    return [
        o for p in sorted(directory.glob("*.yaml")) if p not in PATCH_FILES for o in load_yaml(p)
    ]


def find(directory: Path, kind: str, name: str | None = None) -> Obj:
    found = [
        o
        for o in objects(directory)
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{directory.name}: expected one {kind} {name or ''}"
    return found[0]


def base(kind: str, name: str) -> Obj:
    (found,) = [
        o
        for o in render_kustomization(MANIFESTS)
        if (o["kind"], o["metadata"]["name"]) == (kind, name)
    ]
    return found


def kdns_pod_labels() -> dict[str, str]:
    labels: dict[str, str] = base("Deployment", "kdns")["spec"]["template"]["metadata"]["labels"]
    return labels


# --- schemas, kustomize -------------------------------------------------------------------------


def every_object() -> list[tuple[str, Obj]]:
    out = []
    for directory in KUSTOMIZATIONS:
        for obj in render_kustomization(directory):
            out.append((f"{directory.relative_to(MANIFESTS)}: {obj['kind']}", obj))
    spread = apply_patch(base("Deployment", "kdns"), yaml.safe_load(SPREAD.read_text()))
    out.append(("kdns Deployment + autoscaler/spread.yaml", spread))
    return out


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    """Requirement: every object the scaling kustomizations install, and the kdns Deployment
    after the spread patch, validates strictly (an unknown field fails)."""
    checked = every_object()
    assert len(checked) >= 12
    for where, obj in checked:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {err.message} at {list(err.path)}")


def test_kustomizations_list_every_manifest_of_their_directory() -> None:
    """Requirement: `kubectl apply -k DIR` installs every manifest file of DIR (the spread
    patch excepted: it is applied with `kubectl patch`), and nothing outside it."""
    for directory in KUSTOMIZATIONS:
        (kustomization,) = load_yaml(directory / "kustomization.yaml")
        files = sorted(
            p.name
            for p in directory.glob("*.yaml")
            if p.name != "kustomization.yaml" and p not in PATCH_FILES
        )
        assert sorted(kustomization["resources"]) == files, directory


def test_everything_lives_in_kube_system() -> None:
    """Requirement: namespaced objects go to kube-system; cluster roles have no namespace."""
    for where, obj in every_object():
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert namespace is None, where
        else:
            assert namespace == NAMESPACE, where


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_python_render_matches_kubectl_kustomize(directory: Path) -> None:
    """Requirement: what these tests check is what `kubectl kustomize` builds."""
    rendered = [o for o in yaml.safe_load_all(run_kubectl("kustomize", str(directory))) if o]

    def key(obj: Obj) -> str:
        return json.dumps(obj, sort_keys=True)

    assert sorted(map(key, rendered)) == sorted(map(key, render_kustomization(directory)))


def test_spread_patch_agrees_with_kubectl_patch(tmp_path: Path) -> None:
    """Requirement: `kubectl patch --type=merge --patch-file spread.yaml`, as the docs give it,
    yields the Deployment these tests validate."""
    path = tmp_path / "deployment.yaml"
    deployment = base("Deployment", "kdns")
    path.write_text(yaml.safe_dump(deployment))
    out = run_kubectl(
        "patch", "--local", "-o", "json", "-f", str(path),
        "--type=merge", "--patch-file", str(SPREAD),
    )  # fmt: skip
    assert json.loads(out) == apply_patch(deployment, yaml.safe_load(SPREAD.read_text()))
    assert "--patch-file manifests/autoscaler/spread.yaml" in " ".join(
        SCALING_DOC.read_text().split()
    )


# --- the cluster-proportional-autoscaler ---------------------------------------------------------


def cpa_container() -> Obj:
    (container,) = find(AUTOSCALER, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def cpa_flags() -> dict[str, str]:
    container = cpa_container()
    command = container["command"]
    assert command[0] == "/cluster-proportional-autoscaler"
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in command[1:])
    return flags


def linear() -> dict[str, Any]:
    params: dict[str, Any] = json.loads(find(AUTOSCALER, "ConfigMap")["data"]["linear"])
    return params


def linear_replicas(params: dict[str, Any], nodes: int, cores: int) -> int:
    """cluster-proportional-autoscaler's linear controller."""
    replicas = max(
        math.ceil(cores / params["coresPerReplica"]), math.ceil(nodes / params["nodesPerReplica"])
    )
    replicas = max(replicas, params.get("min", 1))
    if "max" in params:
        replicas = min(replicas, params["max"])
    if params.get("preventSinglePointFailure") and nodes > 1:
        replicas = max(replicas, 2)
    return replicas


def test_cpa_scales_the_kdns_deployment_from_its_configmap() -> None:
    """Requirement: the autoscaler targets Deployment/kdns in kube-system and reads the shipped
    ConfigMap; no --default-params, so it never has to create or rewrite a ConfigMap."""
    flags = cpa_flags()
    assert flags["target"].lower() == "deployment/kdns"
    assert flags["namespace"] == NAMESPACE
    assert flags["configmap"] == find(AUTOSCALER, "ConfigMap")["metadata"]["name"]
    assert "default-params" not in flags
    image = cpa_container()["image"]
    assert image.startswith("registry.k8s.io/cpa/cluster-proportional-autoscaler:v")
    pod = find(AUTOSCALER, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == find(AUTOSCALER, "ServiceAccount")["metadata"]["name"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert cpa_container()["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_linear_parameters_as_kube_dns_ships_them_with_two_at_least() -> None:
    """Requirement: `linear` mode with cores and nodes per replica, min 2 and
    preventSinglePointFailure; the worked examples in the ConfigMap's comment hold."""
    params = linear()
    assert set(params) <= {
        "coresPerReplica", "nodesPerReplica", "min", "max",
        "preventSinglePointFailure", "includeUnschedulableNodes",
    }  # fmt: skip
    assert params["coresPerReplica"] > 0 and params["nodesPerReplica"] > 0
    assert params["min"] == 2 and params["preventSinglePointFailure"] is True
    assert params["max"] >= params["min"]
    assert linear_replicas(params, nodes=1, cores=2) == 2
    assert linear_replicas(params, nodes=40, cores=320) == 3
    assert linear_replicas(params, nodes=200, cores=800) == 13
    comment = (AUTOSCALER / "configmap.yaml").read_text()
    assert "40 nodes x 8 cores" in comment and "= 3 replicas" in comment
    assert "200 nodes x 4\n# cores has 13" in comment


def rules(obj: Obj) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    out = []
    for rule in obj["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.append(
                    (group, resource, tuple(rule.get("resourceNames", ())), tuple(rule["verbs"]))
                )
    return sorted(out)


def test_cpa_rbac_is_least_privilege() -> None:
    """Requirement: list+watch nodes cluster-wide; in kube-system only get of its own
    ConfigMap and get+update of the kdns Deployment's scale subresource (CPA writes it with
    PUT); no wildcard, no other verb or resource; both bindings name its ServiceAccount."""
    cluster_role = find(AUTOSCALER, "ClusterRole")
    role = find(AUTOSCALER, "Role")
    configmap = find(AUTOSCALER, "ConfigMap")["metadata"]["name"]
    assert rules(cluster_role) == [("", "nodes", (), ("list", "watch"))]
    assert rules(role) == [
        ("", "configmaps", (configmap,), ("get",)),
        ("apps", "deployments/scale", ("kdns",), ("get", "update")),
    ]
    account = find(AUTOSCALER, "ServiceAccount")["metadata"]
    for kind, role_obj in (("ClusterRoleBinding", cluster_role), ("RoleBinding", role)):
        binding = find(AUTOSCALER, kind)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_obj["kind"],
            "name": role_obj["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    text = json.dumps([cluster_role, role])
    assert "*" not in text


# --- the HPA alternative ---------------------------------------------------------------------------


def test_hpa_scales_kdns_on_cpu_with_two_at_least() -> None:
    """Requirement: an autoscaling/v2 HPA on the kdns Deployment, CPU only, min 2, as an
    absolute per-pod value (not a share of the 100m request), quick up and slow down."""
    hpa = find(HPA, "HorizontalPodAutoscaler")
    spec = hpa["spec"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "kdns"}
    assert spec["minReplicas"] == 2 and spec["maxReplicas"] > spec["minReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "AverageValue", "averageValue": "500m"}
    behavior = spec["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_the_two_autoscalers_are_separate_kustomizations() -> None:
    """Requirement: applying one never applies the other (two controllers would fight over
    one replica count), and neither reapplies kdns's Deployment (replicas: 2 would undo them)."""
    cpa = {(o["kind"], o["metadata"]["name"]) for o in render_kustomization(AUTOSCALER)}
    hpa = {(o["kind"], o["metadata"]["name"]) for o in render_kustomization(HPA)}
    assert ("HorizontalPodAutoscaler", "kdns") in hpa and not any(
        kind == "HorizontalPodAutoscaler" for kind, _ in cpa
    )
    assert ("Deployment", "kdns-autoscaler") in cpa and ("Deployment", "kdns-autoscaler") not in hpa
    assert ("Deployment", "kdns") not in cpa | hpa


def test_spread_patch_spreads_kdns_over_zones_and_nodes() -> None:
    """Requirement: topology spread across zones and nodes, preferred (a DNS pod must still
    schedule in a zone-less or full cluster), counting kdns's own pods per rollout."""
    patched = apply_patch(base("Deployment", "kdns"), yaml.safe_load(SPREAD.read_text()))
    pod = patched["spec"]["template"]
    constraints = pod["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    for constraint in constraints:
        assert constraint["maxSkew"] == 1
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert selects(constraint["labelSelector"], pod["metadata"]["labels"])
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    # Only the spread changes.
    unpatched = copy.deepcopy(patched)
    del unpatched["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert unpatched == base("Deployment", "kdns")


# --- node-local ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nodelocal_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    path = tmp_path_factory.mktemp("nodelocal") / "kdns.toml"
    path.write_text(find(NODELOCAL, "ConfigMap", "kdns-nodelocal")["data"]["kdns.toml"])
    return build_config(str(path), env={}, flags={})


def daemonset_pod() -> Obj:
    spec: Obj = find(NODELOCAL, "DaemonSet")["spec"]["template"]["spec"]
    return spec


def nodelocal_container(name: str) -> Obj:
    (container,) = [c for c in daemonset_pod()["containers"] if c["name"] == name]
    return container


def test_nodelocal_runs_on_every_node_in_the_host_network() -> None:
    """Requirement: a DaemonSet on the node's network, asking the node's resolvers, node-
    critical, on every node whatever its taints, with no API credentials."""
    daemonset = find(NODELOCAL, "DaemonSet")
    pod = daemonset_pod()
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "Default"
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert daemonset["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert [c["name"] for c in pod["containers"]] == ["kdns", "netsetup"]


def test_nodelocal_listens_where_netsetup_puts_the_addresses(nodelocal_config: Config) -> None:
    """Requirement: kdns listens on port 53 of 169.254.20.10 and the kube-dns ClusterIP (the
    fresh-cluster Service's, kubeadm's default), binding them with freebind; netsetup puts
    exactly those on the node, the health address first."""
    config = nodelocal_config
    assert config.listen == (("169.254.20.10", 53), ("10.96.0.10", 53))
    assert config.freebind is True
    (kube_dns,) = load_yaml(MANIFESTS / "fresh-cluster" / "kube-dns.yaml")
    assert config.listen[1][0] == kube_dns["spec"]["clusterIP"]
    env = {e["name"]: e["value"] for e in nodelocal_container("netsetup")["env"]}
    assert env["LOCAL_IPS"].split() == [host for host, _ in config.listen]
    assert config.health_listen is not None
    assert env["LOCAL_IPS"].split()[0] == config.health_listen[0]
    assert int(env["DNS_PORT"]) == config.listen[0][1]
    assert int(env["HEALTH_PORT"]) == config.health_listen[1]
    declared = {(p["containerPort"], p["protocol"]) for p in nodelocal_container("kdns")["ports"]}
    assert {(53, "UDP"), (53, "TCP")} <= declared


def test_nodelocal_probe_and_metrics_match_its_config(nodelocal_config: Config) -> None:
    """Requirement: health on its own port of the link-local address (the liveness probe asks
    there), metrics on 9253 (not the cluster kdns's 9153) as the scrape annotation says."""
    config = nodelocal_config
    probe = nodelocal_container("kdns")["livenessProbe"]["httpGet"]
    assert config.health_listen == (probe["host"], probe["port"])
    assert probe["path"] == "/health"
    assert config.ready_listen is None and "readinessProbe" not in nodelocal_container("kdns")
    annotations = find(NODELOCAL, "DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert config.metrics_listen == ("", 9253)
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9253"}
    metrics = [p for p in nodelocal_container("kdns")["ports"] if p["name"] == "metrics"]
    assert [p["containerPort"] for p in metrics] == [9253]


def test_nodelocal_forwards_cluster_zones_through_kube_dns_upstream() -> None:
    """Requirement: KDNS_FORWARD_ZONE sends cluster.local and the reverse zones over TCP to the
    address and port the kubelet gives for kube-dns-upstream's dns-tcp port (service links),
    and that Service selects kdns's pods on their DNS ports, not node-local's own."""
    env = {e["name"]: e["value"] for e in nodelocal_container("kdns")["env"]}
    rules_ = env["KDNS_FORWARD_ZONE"].split(",")
    target = "tcp://$(KUBE_DNS_UPSTREAM_SERVICE_HOST):$(KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS_TCP)"
    assert rules_ == [f"{zone}={target}" for zone in ("cluster.local", "in-addr.arpa", "ip6.arpa")]
    assert daemonset_pod()["enableServiceLinks"] is True
    service = find(NODELOCAL, "Service", "kube-dns-upstream")
    spec = service["spec"]
    assert selects(spec["selector"], kdns_pod_labels())
    nodelocal_labels = find(NODELOCAL, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert not selects(spec["selector"], nodelocal_labels)
    assert "clusterIP" not in spec  # allocated: a different address from kube-dns's
    (tcp,) = [p for p in spec["ports"] if p["name"] == "dns-tcp"]
    assert (tcp["port"], tcp["protocol"]) == (53, "TCP")
    kdns_ports = base("Deployment", "kdns")["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert resolve_port(kdns_ports, tcp["targetPort"], "TCP") == 5353
    # The variable names the kubelet derives from this Service and port name.
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    port_var = f"{prefix}_SERVICE_PORT_{tcp['name'].upper().replace('-', '_')}"
    assert set(re.findall(r"\$\((\w+)\)", env["KDNS_FORWARD_ZONE"])) == {
        f"{prefix}_SERVICE_HOST",
        port_var,
    }


def test_nodelocal_pods_are_not_kdns_service_endpoints() -> None:
    """Requirement: nothing of manifests/ (the kdns Service, PDB, anti-affinity) selects the
    node-local pods, and they select no cluster kdns pod."""
    labels = find(NODELOCAL, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    for obj in render_kustomization(MANIFESTS):
        selector = obj.get("spec", {}).get("selector")
        if selector is not None:
            assert not selects(selector, labels), obj["metadata"]["name"]
    assert not selects(find(NODELOCAL, "DaemonSet")["spec"]["selector"], kdns_pod_labels())


def test_nodelocal_privileges_are_the_few_it_needs() -> None:
    """Requirement: kdns holds only NET_BIND_SERVICE (port 53 on the node), netsetup only
    NET_ADMIN and NET_RAW (interfaces, iptables); both drop everything else, read-only roots,
    no privilege escalation, RuntimeDefault seccomp, neither privileged."""
    wanted = {"kdns": ["NET_BIND_SERVICE"], "netsetup": ["NET_ADMIN", "NET_RAW"]}
    for name, caps in wanted.items():
        context = nodelocal_container(name)["securityContext"]
        assert context["capabilities"] == {"drop": ["ALL"], "add": caps}, name
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context.get("privileged", False) is False
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "limits" in nodelocal_container("kdns")["resources"]
    assert "cpu" not in nodelocal_container("kdns")["resources"]["limits"]


def test_nodelocal_images_are_placeholders_set_through_kustomize_images() -> None:
    """Requirement: as manifests/: no published image is implied; the kdns image is the
    cluster kdns's, at the package version, and both are set in the kustomization."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (kustomization,) = load_yaml(NODELOCAL / "kustomization.yaml")
    names = {entry["name"] for entry in kustomization["images"]}
    assert names == {"registry.example.com/kdns", "registry.example.com/kdns-netsetup"}
    assert nodelocal_container("kdns")["image"] == f"registry.example.com/kdns:{version}"
    assert nodelocal_container("netsetup")["image"].startswith("registry.example.com/")
    dockerfile = (NODELOCAL / "netsetup" / "Dockerfile").read_text()
    assert "iproute2" in dockerfile and "iptables" in dockerfile
    command = nodelocal_container("netsetup")["command"]
    assert command == ["/bin/sh", "/netsetup/netsetup.sh"]
    volumes = {v["name"]: v for v in daemonset_pod()["volumes"]}
    script = find(NODELOCAL, "ConfigMap", "kdns-nodelocal-netsetup")
    assert volumes["netsetup"]["configMap"]["name"] == script["metadata"]["name"]
    assert volumes["config"]["configMap"]["name"] == "kdns-nodelocal"


# --- docs/scaling.md's own kustomization -----------------------------------------------------------


def docs_overlay(tmp_path: Path, autoscaler: str = "autoscaler") -> Path:
    """docs/scaling.md's `dns/kustomization.yaml`, beside a `kdns` checkout (a symlink here)."""
    blocks = re.findall(r"^```yaml\n(# dns/kustomization\.yaml.*?)^```", SCALING_DOC.read_text(),
                        re.M | re.S)  # fmt: skip
    (text,) = blocks
    if autoscaler != "autoscaler":
        text = text.replace("- ../kdns/manifests/autoscaler ", f"- ../kdns/manifests/{autoscaler} ")
        assert f"manifests/{autoscaler} " in text
    (tmp_path / "kdns").symlink_to(ROOT)
    overlay = tmp_path / "dns"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(text)
    return overlay


@pytest.mark.parametrize("autoscaler", ["autoscaler", "autoscaler/hpa"])
def test_docs_overlay_leaves_the_count_to_the_autoscaler(tmp_path: Path, autoscaler: str) -> None:
    """Requirement: the kustomization docs/scaling.md tells operators to keep installs kdns
    and the autoscaler, without `spec.replicas` (which the autoscaler owns) and with a budget
    of one pod down at a time; every object valid."""
    rendered = render_kustomization(docs_overlay(tmp_path, autoscaler))
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert ("Deployment", "kdns") in names and ("Service", "kdns") in names
    if autoscaler == "autoscaler":
        assert ("Deployment", "kdns-autoscaler") in names
    else:
        assert ("HorizontalPodAutoscaler", "kdns") in names
    (deployment,) = [
        o for o in rendered if (o["kind"], o["metadata"]["name"]) == ("Deployment", "kdns")
    ]
    assert "replicas" not in deployment["spec"]
    expected = copy.deepcopy(base("Deployment", "kdns"))
    del expected["spec"]["replicas"]
    assert deployment == expected
    (pdb,) = [o for o in rendered if o["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    for obj in rendered:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_docs_overlay_builds_with_kubectl_kustomize(tmp_path: Path) -> None:
    """Requirement: kustomize itself accepts it (a kustomization under manifests/ that
    included manifests/ would be refused as a cycle; this one sits beside the checkout)."""
    overlay = docs_overlay(tmp_path)
    rendered = [o for o in yaml.safe_load_all(run_kubectl("kustomize", str(overlay))) if o]

    def key(obj: Obj) -> str:
        return json.dumps(obj, sort_keys=True)

    assert sorted(map(key, rendered)) == sorted(map(key, render_kustomization(overlay)))
