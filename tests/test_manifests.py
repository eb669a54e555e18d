"""manifests/, Dockerfile and docs/deploying.md: valid Kubernetes objects that agree with each other.

Schema checks use kubernetes-validate's bundled OpenAPI schemas (no network) in strict mode, so an
unknown or misspelt field fails. The rest are the deployment requirements, one per test: RBAC is
list+watch on four kinds, the probes and ports are the ones kdns's own config loader reads from
the ConfigMap, the pod runs unprivileged, and the kube-dns Service can take over from CoreDNS.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kdns.config import Config, build_config

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
DOCS = ROOT / "docs" / "deploying.md"

# The oldest Kubernetes minor we claim and the newest the pinned kubernetes-validate bundles.
K8S_VERSIONS = ("1.30.0", "1.37.0")

NAMESPACE = "kube-system"
POD_LABELS = {"k8s-app": "kdns"}
CONFIG_DIR = "/etc/kdns"
CONFIG_FILE = "kdns.toml"
NON_ROOT_UID = 65532

Obj = dict[str, Any]


# --- loading --------------------------------------------------------------------------------


def load_yaml(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def all_objects() -> list[tuple[str, Obj]]:
    return [(path.name, obj) for path in manifest_files() for obj in load_yaml(path)]


def the(kind: str, name: str | None = None) -> Obj:
    found = [
        obj
        for _, obj in all_objects()
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec() -> Obj:
    spec: Obj = the("Deployment", "kdns")["spec"]["template"]["spec"]
    return spec


def container() -> Obj:
    containers = pod_spec()["containers"]
    assert [c["name"] for c in containers] == ["kdns"]
    c: Obj = containers[0]
    return c


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The ConfigMap's kdns.toml as kdns itself reads it (file only: no env, no flags)."""
    path = tmp_path_factory.mktemp("configmap") / CONFIG_FILE
    path.write_text(the("ConfigMap", "kdns")["data"][CONFIG_FILE], encoding="utf-8")
    return build_config(str(path), env={}, flags={})


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) or a Service's plain map, on labels."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def container_port(ref: int | str, protocol: str) -> int:
    """A Service targetPort resolved against the container, as the EndpointSlice controller does."""
    for port in container()["ports"]:
        if port.get("protocol", "TCP") == protocol and ref in (port["containerPort"], port["name"]):
            number: int = port["containerPort"]
            return number
    raise AssertionError(f"no {protocol} container port {ref!r}")


def probe_port(probe: Obj) -> int:
    port = probe["httpGet"]["port"]
    return port if isinstance(port, int) else container_port(port, "TCP")


# --- schema validation ------------------------------------------------------------------------


def yaml_blocks(markdown: str) -> Iterator[Obj]:
    for block in re.findall(r"^```yaml\n(.*?)^```", markdown, flags=re.M | re.S):
        yield from (doc for doc in yaml.safe_load_all(block) if doc)


def schema_cases() -> list[Any]:
    cases = []
    for source, obj in all_objects():
        for version in K8S_VERSIONS:
            name = f"{source}:{obj['kind']}/{obj['metadata']['name']}@{version}"
            cases.append(pytest.param(obj, version, id=name))
    for i, obj in enumerate(yaml_blocks(DOCS.read_text(encoding="utf-8"))):
        if obj.get("kind") != "Kustomization":
            for version in K8S_VERSIONS:
                cases.append(pytest.param(obj, version, id=f"deploying.md#{i}@{version}"))
    return cases


@pytest.mark.parametrize(("obj", "version"), schema_cases())
def test_every_object_is_valid_kubernetes_in_strict_mode(obj: Obj, version: str) -> None:
    """Requirement: each manifest (and each object in docs/deploying.md) is accepted by the
    Kubernetes API schema of every supported version, with no unknown fields."""
    validated = kubernetes_validate.validate(obj, version, strict=True)
    assert validated == version.rsplit(".", 1)[0]  # that very schema version, no fallback


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """Requirement: the schema check would catch a typo (it is strict, not a no-op)."""
    deployment = json.loads(json.dumps(the("Deployment", "kdns")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_every_manifest_file_holds_only_kube_system_or_cluster_objects() -> None:
    """Requirement: everything kdns installs lives in kube-system (RBAC roles are cluster-wide)."""
    for source, obj in all_objects():
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert namespace is None, source
        else:
            assert namespace == NAMESPACE, f"{source}: {obj['kind']}"


def test_kustomization_lists_every_manifest() -> None:
    """Requirement: `kubectl apply -k manifests/` installs every manifest file, and only those."""
    (kustomization,) = load_yaml(MANIFESTS / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    assert sorted(resources) == [p.name for p in manifest_files()]


# --- RBAC ---------------------------------------------------------------------------------------


def test_rbac_is_list_and_watch_on_exactly_four_resources() -> None:
    """Requirement: kdns may only list+watch services, pods, namespaces and endpointslices:
    no get, no writes, no secrets, no other kinds, no wildcards."""
    granted = set()
    for rule in the("ClusterRole", "system:kdns")["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, URLs
        assert sorted(rule["verbs"]) == ["list", "watch"], rule
        granted |= {(group, res) for group in rule["apiGroups"] for res in rule["resources"]}
    assert granted == {
        ("", "services"),
        ("", "pods"),
        ("", "namespaces"),
        ("discovery.k8s.io", "endpointslices"),
    }


def test_rbac_binds_the_role_to_the_pods_service_account() -> None:
    """Requirement: the Deployment runs as ServiceAccount kdns, which is bound to system:kdns."""
    account = the("ServiceAccount")
    binding = the("ClusterRoleBinding", "system:kdns")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:kdns",
    }
    subject = {"kind": "ServiceAccount", "name": "kdns", "namespace": NAMESPACE}
    assert binding["subjects"] == [subject]
    assert account["metadata"]["name"] == pod_spec()["serviceAccountName"] == "kdns"
    assert pod_spec().get("automountServiceAccountToken", True), "the API watch needs the token"


# --- the config file ------------------------------------------------------------------------------


def test_configmap_toml_is_accepted_by_kdns_config_loader(config: Config) -> None:
    """Requirement: the shipped kdns.toml loads with kdns's own loader and means what the
    manifests assume: API-server mode, DNS on 5353, kubeadm Corefile's ttl 30, JSON logs."""
    assert config.listen == (("0.0.0.0", 5353),)
    assert config.kubernetes_enabled and not config.demo and not config.objects
    assert config.kubeconfig is None  # in-cluster ServiceAccount
    assert config.cluster_domain == "cluster.local"
    assert config.pods == "insecure"
    assert config.ttl == 30
    assert config.killer is False
    assert config.log_format == "json"
    assert config.metrics_listen == ("0.0.0.0", 9153)
    assert config.health_listen == ("0.0.0.0", 8080)
    assert config.ready_listen == ("0.0.0.0", 8181)


def test_configmap_toml_passes_kdns_check_config(tmp_path: Path) -> None:
    """Requirement: `kdns check-config` (what the docs tell operators to run) accepts the file."""
    path = tmp_path / CONFIG_FILE
    path.write_text(the("ConfigMap", "kdns")["data"][CONFIG_FILE], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "kdns.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "5353" in result.stdout


def test_configmap_names_the_service_it_ships(config: Config) -> None:
    """Requirement: the apex NS record names the Service these manifests create."""
    service = the("Service")["metadata"]
    assert config.dns_service == f"{service['namespace']}/{service['name']}"


def test_container_reads_the_configmap_file_read_only() -> None:
    """Requirement: `serve -c /etc/kdns/kdns.toml` finds the ConfigMap's key, mounted read-only."""
    args = container()["args"]
    assert args == ["serve", "-c", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    assert "command" not in container()  # the image's ENTRYPOINT `kdns` stays
    (mount,) = [m for m in container()["volumeMounts"] if m["mountPath"] == CONFIG_DIR]
    assert mount["readOnly"] is True
    assert "subPath" not in mount  # subPath mounts never see ConfigMap updates
    (volume,) = [v for v in pod_spec()["volumes"] if v["name"] == mount["name"]]
    source = volume["configMap"]
    assert source["name"] == the("ConfigMap")["metadata"]["name"]
    paths = {item["key"]: item["path"] for item in source.get("items", [])}
    assert paths.get(CONFIG_FILE, CONFIG_FILE) == CONFIG_FILE
    assert CONFIG_FILE in the("ConfigMap")["data"]


# --- ports and probes agree with the config -------------------------------------------------------


def test_probes_target_the_configured_health_and_ready_endpoints(config: Config) -> None:
    """Requirement: liveness is GET /health and readiness GET /ready on the ports kdns.toml
    configures; liveness thresholds as CoreDNS's."""
    liveness, readiness = container()["livenessProbe"], container()["readinessProbe"]
    assert config.health_listen is not None and config.ready_listen is not None
    assert liveness["httpGet"]["path"] == "/health"
    assert probe_port(liveness) == config.health_listen[1]
    assert readiness["httpGet"]["path"] == "/ready"
    assert probe_port(readiness) == config.ready_listen[1]
    assert (liveness["initialDelaySeconds"], liveness["timeoutSeconds"]) == (10, 5)
    assert liveness["failureThreshold"] == 5


def test_dns_port_is_the_same_in_config_container_and_service(config: Config) -> None:
    """Requirement: DNS listens (UDP and TCP) on the config's port, the container declares it,
    and the Service's targetPorts resolve to it; metrics alike."""
    ((_, dns_port),) = config.listen
    ports = {(p["name"], p["protocol"]): p["containerPort"] for p in container()["ports"]}
    assert ports == {
        ("dns", "UDP"): dns_port,
        ("dns-tcp", "TCP"): dns_port,
        ("metrics", "TCP"): 9153,
    }
    assert config.metrics_listen is not None
    for port in the("Service", "kube-dns")["spec"]["ports"]:
        wanted = config.metrics_listen[1] if port["name"] == "metrics" else dns_port
        assert container_port(port["targetPort"], port["protocol"]) == wanted, port


def test_service_target_ports_are_named_like_coredns_ports() -> None:
    """Requirement: switching kube-dns between CoreDNS and kdns is a selector change only: the
    targetPorts are the port names both Deployments use (dns, dns-tcp, metrics)."""
    targets = {p["name"]: p["targetPort"] for p in the("Service", "kube-dns")["spec"]["ports"]}
    assert targets == {"dns": "dns", "dns-tcp": "dns-tcp", "metrics": "metrics"}


# --- the Deployment ------------------------------------------------------------------------------


def test_pod_runs_unprivileged() -> None:
    """Requirement: non-root UID/GID 65532, read-only root, no privilege escalation, every
    capability dropped (none added), RuntimeDefault seccomp, no host namespaces or ports."""
    pod_sc, ctr_sc = pod_spec().get("securityContext", {}), container()["securityContext"]
    effective = {**pod_sc, **ctr_sc}  # container settings override the pod's
    assert effective["runAsNonRoot"] is True
    assert effective["runAsUser"] == effective["runAsGroup"] == NON_ROOT_UID
    assert effective["readOnlyRootFilesystem"] is True
    assert effective["allowPrivilegeEscalation"] is False
    assert effective.get("privileged", False) is False
    assert effective["capabilities"] == {"drop": ["ALL"]}
    assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod_spec().get(host, False)
    assert all("hostPort" not in p for p in container()["ports"])
    assert all(p["containerPort"] >= 1024 for p in container()["ports"])  # no NET_BIND_SERVICE


def test_deployment_is_shaped_like_corednss() -> None:
    """Requirement: 2 replicas, one-at-a-time rollout, critical priority, node's resolver,
    CoreDNS's tolerations, Linux nodes, spread over hosts, CoreDNS's resources."""
    deployment = the("Deployment", "kdns")
    spec, pod = deployment["spec"], pod_spec()
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert spec["selector"] == {"matchLabels": POD_LABELS}
    assert selects(spec["selector"], spec["template"]["metadata"]["labels"])
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["dnsPolicy"] == "Default"  # not ClusterFirst: that would be kdns asking itself
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["tolerations"]
    control_plane = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    assert control_plane in pod["tolerations"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container()["resources"] == {
        "requests": {"cpu": "100m", "memory": "70Mi"},
        "limits": {"memory": "170Mi"},
    }
    assert "lifecycle" not in container()
    assert not any(e["name"] == "POD_NAMESPACE" for e in container().get("env", []))


def test_replicas_prefer_different_nodes() -> None:
    """Requirement: preferred (not required) anti-affinity on kubernetes.io/hostname among
    kdns's own pods, as CoreDNS."""
    anti = pod_spec()["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"], POD_LABELS)


def test_image_is_the_placeholder_release() -> None:
    """Requirement: the image is ghcr.io/kdns/kdns:0.1.0, pinned to the package's version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container()["image"] == f"ghcr.io/kdns/kdns:{version}"


# --- the Service and the PDB ------------------------------------------------------------------------


def test_service_is_kube_dns_selecting_kdns_pods() -> None:
    """Requirement: the Service is kube-system/kube-dns (label k8s-app: kube-dns) on 53 UDP/TCP
    and 9153, selecting kdns's pods, with no clusterIP so the existing IP is kept."""
    service = the("Service")
    meta, spec = service["metadata"], service["spec"]
    assert (meta["namespace"], meta["name"]) == (NAMESPACE, "kube-dns")
    assert meta["labels"] == {"k8s-app": "kube-dns", "kubernetes.io/name": "kdns"}
    assert spec["selector"] == POD_LABELS
    assert selects(spec["selector"], the("Deployment")["spec"]["template"]["metadata"]["labels"])
    assert "clusterIP" not in spec and "clusterIPs" not in spec
    ports = {(p["name"], p["port"], p["protocol"]) for p in spec["ports"]}
    assert ports == {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}


def test_service_is_annotated_for_prometheus(config: Config) -> None:
    """Requirement: Prometheus scrapes the metrics port that kdns.toml configures."""
    annotations = the("Service")["metadata"]["annotations"]
    assert config.metrics_listen is not None
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9153"}
    assert int(annotations["prometheus.io/port"]) == config.metrics_listen[1]


def test_pdb_keeps_one_kdns_pod() -> None:
    """Requirement: a policy/v1 PodDisruptionBudget with minAvailable 1 over the Deployment's pods."""
    pdb = the("PodDisruptionBudget")
    deployment = the("Deployment")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert selects(pdb["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])


# --- the image ---------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per build stage; continuations joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def test_dockerfile_runs_kdns_as_the_deployments_non_root_user() -> None:
    """Requirement: multi-stage python:3.11-slim image, final USER is the Deployment's non-root
    UID, ENTRYPOINT is kdns, CMD is the Deployment's args, and it exposes every port used."""
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = dict(stages[-1])  # the last value of each keyword wins, as in Docker
    assert stages[-1][0] == ("FROM", "python:3.11-slim")
    assert "pip wheel" in " ".join(args for kw, args in stages[0] if kw == "RUN")
    user, _, group = final["USER"].partition(":")
    assert int(user) == pod_spec()["securityContext"]["runAsUser"] != 0
    assert int(group) == pod_spec()["securityContext"]["runAsGroup"] != 0
    assert json.loads(final["ENTRYPOINT"]) == ["kdns"]
    assert json.loads(final["CMD"]) == container()["args"]
    exposed = {p if "/" in p else f"{p}/tcp" for p in shlex.split(final["EXPOSE"])}
    used = {f"{p['containerPort']}/{p['protocol'].lower()}" for p in container()["ports"]}
    used |= {f"{probe_port(container()[p])}/tcp" for p in ("livenessProbe", "readinessProbe")}
    assert used <= exposed


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    """Requirement: the venv, git metadata and tool caches never reach the image build."""
    text = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    patterns = {line.strip() for line in text.splitlines()} - {""}
    patterns = {p for p in patterns if not p.startswith("#")}
    wanted = {".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
    assert wanted <= patterns
    # ...but what `pip wheel .` needs stays in.
    for needed in ("kdns/__init__.py", "kdns/k8s/demo.yaml", "pyproject.toml", "README.md"):
        parts = needed.split("/")
        for path in ("/".join(parts[: i + 1]) for i in range(len(parts))):  # a dir excludes all
            assert not any(fnmatch.fnmatch(path, p) for p in patterns), path
