"""kdns.k8s.sources (manifest files) and kdns.k8s.demo (the built-in cluster)."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from importlib.resources import as_file, files
from pathlib import Path

import pytest

from kdns.k8s import demo
from kdns.k8s.demo import demo_objects
from kdns.k8s.sources import SourceError, iter_raw, load_objects, manifest_files
from kdns.model import (
    EMPTY_HINTS,
    EMPTY_META,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Hints,
    KubeObject,
    Meta,
    Namespace,
    Pod,
    Service,
    ServicePort,
)

FIXTURES = Path(__file__).parent / "fixtures"
CLUSTER = str(FIXTURES / "cluster.yaml")
BAD = FIXTURES / "bad"


def by_key(objects: list[KubeObject]) -> dict[tuple[str, str, str], KubeObject]:
    return {(o.kind, *o.key): o for o in objects}


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: shop}
spec: {clusterIP: 10.96.0.%d}
"""


# --- the cluster fixture ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> dict[tuple[str, str, str], KubeObject]:
    return by_key(load_objects([CLUSTER]))


def test_cluster_fixture_loads_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kdns.sources"):
        objects = load_objects([CLUSTER])
    assert caplog.records == []
    counts = Counter(o.kind for o in objects)
    assert counts == {"Namespace": 4, "Service": 11, "EndpointSlice": 8, "Pod": 14}


@pytest.mark.parametrize(
    ("key", "want"),
    [
        pytest.param(
            ("Namespace", "", "monitoring"), Namespace("monitoring"), id="kind: List item"
        ),
        pytest.param(
            ("Service", "prod", "frontend"),
            Service(
                "prod",
                "frontend",
                "ClusterIP",
                ("10.0.10.10", "fd00:0:0:10::a"),
                False,
                "",
                (ServicePort("http", "TCP", 80),),
                (),
                (),
                False,
            ),
            id="dual-stack service in the List document",
        ),
        pytest.param(
            ("Service", "prod", "kafka"),
            Service(
                "prod",
                "kafka",
                "ClusterIP",
                (),
                True,
                "",
                (ServicePort("broker", "TCP", 9092),),
                (),
                (),
                True,
            ),
            id="separate document: headless with publishNotReadyAddresses",
        ),
        pytest.param(
            ("Service", "prod", "mail"),
            Service(
                "prod", "mail", "ExternalName", (), False, "mail.example.com", (), (), (), False
            ),
            id="ExternalName normalised",
        ),
        pytest.param(
            ("Service", "prod", "ingress"),
            Service(
                "prod",
                "ingress",
                "LoadBalancer",
                ("10.0.20.20",),
                False,
                "",
                (ServicePort("http", "TCP", 80), ServicePort("https", "TCP", 443)),
                ("198.51.100.20", "2001:db8::14"),
                ("192.0.2.10",),
                False,
                # A LoadBalancer keeps what [gateway] service_names reads: its (empty) filter
                # metadata and its hostname-only ingress entry.
                meta=EMPTY_META,
                lb_hostnames=("lb-1234.elb.example.com",),
                hints=EMPTY_HINTS,
            ),
            id="LoadBalancer ingress and externalIPs",
        ),
        pytest.param(
            ("Service", "staging", "legacy"),
            Service(
                "staging",
                "legacy",
                "ClusterIP",
                ("10.0.30.30",),
                False,
                "",
                (ServicePort("", "TCP", 8080),),
                (),
                (),
                False,
            ),
            id="unnamed port",
        ),
        pytest.param(
            ("Service", "monitoring", "syslog"),
            Service(
                "monitoring",
                "syslog",
                "ClusterIP",
                ("10.0.40.40",),
                False,
                "",
                (ServicePort("syslog", "UDP", 514),),
                (),
                (),
                False,
            ),
            id="UDP port",
        ),
        pytest.param(
            ("Service", "monitoring", "prometheus"),
            Service(
                "monitoring",
                "prometheus",
                "NodePort",
                ("10.0.40.41",),
                False,
                "",
                (ServicePort("web", "TCP", 9090),),
                (),
                (),
                False,
            ),
            id="NodePort",
        ),
        pytest.param(
            ("EndpointSlice", "prod", "cassandra-h5k2p"),
            EndpointSlice(
                "prod",
                "cassandra-h5k2p",
                "cassandra",
                "IPv4",
                (EndpointPort("cql", "TCP", 9042),),
                (
                    Endpoint(("10.1.2.10",), "cassandra-0", True, "cassandra-0"),
                    Endpoint(("10.1.2.11",), "cassandra-1", True, "cassandra-1"),
                    Endpoint(("10.1.2.12",), "cassandra-2", False, "cassandra-2"),
                ),
            ),
            id="headless endpoints with hostnames, one not ready",
        ),
        pytest.param(
            ("EndpointSlice", "prod", "workers-c8v3z"),
            EndpointSlice(
                "prod",
                "workers-c8v3z",
                "workers",
                "IPv4",
                (EndpointPort("metrics", "TCP", 9100),),
                (
                    Endpoint(("10.1.2.30",), "", True, "workers-5d4f7-kx9vb"),
                    Endpoint(("10.1.2.31",), "", True, "workers-5d4f7-lq2mt"),
                ),
            ),
            id="endpoints without hostnames; empty conditions means ready",
        ),
        pytest.param(
            ("Pod", "prod", "cassandra-0"),
            Pod("prod", "cassandra-0", ("10.1.2.10",)),
            id="PodList item inherits kind",
        ),
        pytest.param(
            ("Pod", "staging", "ipv6-only"),
            Pod("staging", "ipv6-only", ("fd00:0:0:1::5",)),
            id="IPv6-only pod from status.podIP",
        ),
        pytest.param(
            ("Pod", "monitoring", "node-exporter-q7x2v"),
            Pod("monitoring", "node-exporter-q7x2v", ("172.18.0.2",)),
            id="hostNetwork pod kept",
        ),
    ],
)
def test_cluster_fixture_objects(
    cluster: dict[tuple[str, str, str], KubeObject], key: tuple[str, str, str], want: KubeObject
) -> None:
    assert cluster[key] == want


def test_cluster_fixture_split_slices_and_dual_stack(
    cluster: dict[tuple[str, str, str], KubeObject],
) -> None:
    def slices(ns: str, service: str) -> list[EndpointSlice]:
        return [
            o
            for o in cluster.values()
            if isinstance(o, EndpointSlice) and (o.namespace, o.service) == (ns, service)
        ]

    search = slices("staging", "search")
    assert [s.name for s in search] == ["search-abc12", "search-def34"]
    assert [e.hostname for s in search for e in s.endpoints] == ["search-0", "search-1", "search-2"]
    assert sorted(s.address_type for s in slices("prod", "frontend")) == ["IPv4", "IPv6"]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(("Pod", "monitoring", "backup-28475520-zr4lp"), id="Failed pod"),
        pytest.param(("Pod", "monitoring", "scraper-6f8d9-pq3rs"), id="Pending pod without IP"),
        pytest.param(("EndpointSlice", "staging", "legacy-fqdn"), id="FQDN EndpointSlice"),
    ],
)
def test_cluster_fixture_objects_not_served(
    cluster: dict[tuple[str, str, str], KubeObject], key: tuple[str, str, str]
) -> None:
    assert key not in cluster


# --- formats ---------------------------------------------------------------------------------


def test_multi_document_yaml_with_empty_documents(tmp_path: Path) -> None:
    path = write(
        tmp_path / "svc.yaml",
        "# leading comment\n---\n"
        + SERVICE_YAML % ("a", 1)
        + "---\n---\n"
        + SERVICE_YAML % ("b", 2)
        + "---\n",
    )
    assert [o.key for o in load_objects([path])] == [("shop", "a"), ("shop", "b")]


def test_comment_only_file_has_no_objects(tmp_path: Path) -> None:
    assert load_objects([write(tmp_path / "empty.yaml", "# nothing yet\n")]) == []


def test_json_object_and_json_list(tmp_path: Path) -> None:
    one = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    many = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}],
    }
    paths = [
        write(tmp_path / "one.json", json.dumps(one)),
        write(tmp_path / "many.json", json.dumps(many, indent=2)),
    ]
    assert load_objects(paths) == [Namespace("a"), Namespace("b")]


def test_typed_list_items_inherit_kind_and_api_version(tmp_path: Path) -> None:
    # GET /api/v1/namespaces/shop/services returns a ServiceList whose items have no kind.
    body = {
        "apiVersion": "v1",
        "kind": "ServiceList",
        "metadata": {"resourceVersion": "9"},
        "items": [
            {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.1"}}
        ],
    }
    path = write(tmp_path / "services.json", json.dumps(body))
    assert [o.key for o in load_objects([path])] == [("shop", "web")]
    assert [r["kind"] for r in iter_raw([path])] == ["Service"]


def test_iter_raw_flattens_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.yaml",
        """\
apiVersion: v1
kind: List
items:
- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}
- {apiVersion: v1, kind: Namespace, metadata: {name: n}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
""",
    )
    assert [r["kind"] for r in iter_raw([path])] == ["Deployment", "Namespace", "ConfigMap"]


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", SERVICE_YAML % ("b", 2))
    write(tmp_path / "a" / "z.yml", SERVICE_YAML % ("az", 3))
    write(tmp_path / "a.json", json.dumps({"kind": "Namespace", "metadata": {"name": "a"}}))
    write(tmp_path / "notes.txt", "not a manifest: ignored in directories")
    write(tmp_path / ".hidden.yaml", "this: [is not loaded")
    # A ConfigMap volume: files appear through ..data and again in a timestamped directory.
    write(tmp_path / "..2024_01_01_00_00_00.1" / "c.yaml", SERVICE_YAML % ("dup", 4))
    files_ = manifest_files([str(tmp_path)])
    assert [os.path.relpath(f, tmp_path) for f in files_] == [
        os.path.join("a", "z.yml"),
        "a.json",
        "b.yaml",
    ]
    assert [o.key for o in load_objects([str(tmp_path)])] == [
        ("shop", "az"),
        ("", "a"),
        ("shop", "b"),
    ]


def test_explicit_file_of_any_extension_is_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "services.txt", SERVICE_YAML % ("web", 1))
    assert [o.key for o in load_objects([path])] == [("shop", "web")]


def test_empty_directory_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kdns.sources"):
        assert load_objects([str(tmp_path)]) == []
    assert "no .yaml, .yml or .json files" in caplog.text


def test_object_defined_twice_last_definition_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = write(
        tmp_path / "1.yaml", SERVICE_YAML % ("web", 1) + "---\n" + SERVICE_YAML % ("x", 9)
    )
    second = write(tmp_path / "2.yaml", SERVICE_YAML % ("web", 2))
    with caplog.at_level(logging.WARNING, logger="kdns.sources"):
        objects = load_objects([first, second])
    assert [(o.name, o.cluster_ips) for o in objects if isinstance(o, Service)] == [
        ("web", ("10.96.0.2",)),
        ("x", ("10.96.0.9",)),
    ]
    assert "shop/web is defined again" in caplog.text


# --- unknown kinds ---------------------------------------------------------------------------


def test_unknown_kinds_are_skipped_with_one_warning_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d%d}\n"
    docs = [deployment % i for i in range(3)] + [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\n",
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: k}\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kept}\n",
    ]
    path = write(tmp_path / "mixed.yaml", "---\n".join(docs))
    with caplog.at_level(logging.WARNING, logger="kdns.sources"):
        assert load_objects([path]) == [Namespace("kept")]
    messages = [r.getMessage() for r in caplog.records if r.name == "kdns.sources"]
    assert len(messages) == 4, messages
    assert any("3 Deployment objects" in m for m in messages)
    assert any("1 ConfigMap object:" in m for m in messages)
    assert any("1 Endpoints object" in m and "EndpointSlice" in m for m in messages)
    assert any("serving.knative.dev/v1 Service" in m for m in messages)


# --- errors ----------------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_line() -> None:
    path = str(BAD / "malformed.yaml")
    with pytest.raises(SourceError) as err:
        load_objects([path])
    assert str(err.value).startswith(f"objects: {path}:9: mapping values are not allowed")
    assert (err.value.path, err.value.line) == (path, 9)


def test_missing_name_names_file_line_and_document() -> None:
    path = str(BAD / "missing-name.yaml")
    with pytest.raises(SourceError) as err:
        load_objects([path])
    assert str(err.value) == (f"objects: {path}:8: document 2: Service is missing metadata.name")


def test_missing_file() -> None:
    with pytest.raises(SourceError) as err:
        load_objects(["/nope"])
    assert str(err.value) == "objects: /nope: no such file or directory"


ERROR_CASES = [
    pytest.param(
        "x.json",
        '{"kind": "Namespace",\n  "metadata": {"name": "a"},\n}\n',
        r"x\.json:3: invalid JSON: ",
        id="invalid JSON with line",
    ),
    pytest.param(
        "x.yaml",
        "- just\n- a list\n",
        r"x\.yaml:1: document 1: expected a Kubernetes object, found a list",
        id="document that is not a mapping",
    ),
    pytest.param(
        "x.yaml",
        "metadata: {name: a}\n",
        r"x\.yaml:1: document 1: object has no kind",
        id="object without kind",
    ),
    pytest.param(
        "x.yaml",
        "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n- 42\n",
        r"x\.yaml:5: document 1, item 2: expected an object",
        id="List item not a mapping",
    ),
    pytest.param(
        "x.yaml",
        "kind: List\nitems:\n- kind: Namespace\n  metadata: {name: a}\n"
        "- kind: Service\n  metadata: {}\n",
        r"x\.yaml:5: document 1, item 2: Service is missing metadata.name",
        id="List item line and index",
    ),
    pytest.param(
        "x.yaml",
        "kind: Service\nmetadata: {name: a}\nspec: {ports: [{port: http}]}\n",
        r"x\.yaml:1: document 1: Service default/a.spec.ports\[0\].port: "
        r"expected a port number, got 'http'",
        id="bad port",
    ),
    pytest.param(
        "x.yaml",
        "kind: Service\nmetadata: {name: a}\nspec: [oops]\n",
        r"x\.yaml:1: document 1: malformed Service: AttributeError",
        id="wrong shape",
    ),
    pytest.param(
        "x.yaml",
        "kind: Namespace\nmetadata: !!python/object/apply:os.getcwd []\n",
        r"x\.yaml:2: could not determine a constructor",
        id="Python tags refused",
    ),
    pytest.param(
        "x.yaml",
        "kind: 'Namespace\n",
        r"x\.yaml:2: found unexpected end of stream",
        id="unterminated quote",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), ERROR_CASES)
def test_errors_are_one_line_with_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(SourceError, match=message) as err:
        load_objects([path])
    assert str(err.value).startswith(f"objects: {path}")
    assert "\n" not in str(err.value)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "secret.yaml", SERVICE_YAML % ("a", 1))
    real_open = open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        # chmod 0 does not stop root (CI runs as root), so refuse the read the way the OS would.
        if str(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(SourceError, match="permission denied"):
        load_objects([path])


def test_source_error_is_an_exception() -> None:
    assert issubclass(SourceError, Exception)
    err = SourceError("/x.yaml", "boom", 3)
    assert (str(err), err.path, err.line, err.problem) == (
        "objects: /x.yaml:3: boom",
        "/x.yaml",
        3,
        "boom",
    )


# --- the demo cluster ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_cluster() -> dict[tuple[str, str, str], KubeObject]:
    return by_key(demo_objects())


def test_demo_goes_through_load_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo is not a second code path: it is demo.yaml through load_objects.
    calls: list[list[str]] = []
    real = demo.load_objects

    def spy(paths: list[str]) -> list[KubeObject]:
        calls.append(list(paths))
        return real(paths)

    monkeypatch.setattr(demo, "load_objects", spy)
    objects = demo_objects()
    assert len(calls) == 1 and calls[0][0].endswith("demo.yaml")
    with as_file(files("kdns.k8s").joinpath("demo.yaml")) as path:
        assert objects == load_objects([str(path)])


def test_demo_loads_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kdns.sources"):
        demo_objects()
    assert caplog.records == []


def test_demo_namespaces(demo_cluster: dict[tuple[str, str, str], KubeObject]) -> None:
    names = {k[2] for k in demo_cluster if k[0] == "Namespace"}
    assert names == {"default", "kube-system", "shop", "data"}


@pytest.mark.parametrize(
    ("key", "want"),
    [
        pytest.param(
            ("Service", "default", "kubernetes"),
            Service(
                "default",
                "kubernetes",
                "ClusterIP",
                ("10.96.0.1",),
                False,
                "",
                (ServicePort("https", "TCP", 443),),
                (),
                (),
                False,
            ),
            id="kubernetes",
        ),
        pytest.param(
            ("Service", "kube-system", "kube-dns"),
            Service(
                "kube-system",
                "kube-dns",
                "ClusterIP",
                ("10.96.0.10",),
                False,
                "",
                (
                    ServicePort("dns", "UDP", 53),
                    ServicePort("dns-tcp", "TCP", 53),
                    ServicePort("metrics", "TCP", 9153),
                ),
                (),
                (),
                False,
            ),
            id="kube-dns",
        ),
        pytest.param(
            ("Service", "shop", "web"),
            Service(
                "shop",
                "web",
                "ClusterIP",
                ("10.96.10.20",),
                False,
                "",
                (ServicePort("http", "TCP", 80), ServicePort("grpc", "TCP", 9090)),
                (),
                (),
                False,
            ),
            id="web",
        ),
        pytest.param(
            ("Service", "data", "db"),
            Service(
                "data",
                "db",
                "ClusterIP",
                (),
                True,
                "",
                (ServicePort("postgres", "TCP", 5432),),
                (),
                (),
                False,
            ),
            id="db",
        ),
        pytest.param(
            ("Service", "shop", "payments"),
            Service(
                "shop",
                "payments",
                "ExternalName",
                (),
                False,
                "payments.example.net",
                (),
                (),
                (),
                False,
            ),
            id="payments",
        ),
        pytest.param(
            ("Service", "shop", "api"),
            Service(
                "shop",
                "api",
                "ClusterIP",
                ("10.96.20.30", "fd00:10:96::1e"),
                False,
                "",
                (ServicePort("http", "TCP", 8080),),
                (),
                (),
                False,
            ),
            id="api",
        ),
        pytest.param(
            ("Service", "shop", "gateway"),
            Service(
                "shop",
                "gateway",
                "LoadBalancer",
                ("10.96.30.40",),
                False,
                "",
                (ServicePort("http", "TCP", 80), ServicePort("https", "TCP", 443)),
                ("198.51.100.7",),
                ("203.0.113.10",),
                False,
                # The external-dns hostname annotation (gateway zones), and what filters read.
                ("shop-lb.home.example.com",),
                Meta(
                    (("app", "gateway"),),
                    (("external-dns.alpha.kubernetes.io/hostname", "shop-lb.home.example.com"),),
                ),
                (),
                Hints(hostnames=("shop-lb.home.example.com",)),
            ),
            id="gateway",
        ),
    ],
)
def test_demo_services(
    demo_cluster: dict[tuple[str, str, str], KubeObject], key: tuple[str, str, str], want: Service
) -> None:
    assert demo_cluster[key] == want


def demo_endpoints(
    cluster: dict[tuple[str, str, str], KubeObject], ns: str, service: str
) -> list[Endpoint]:
    return [
        e
        for o in cluster.values()
        if isinstance(o, EndpointSlice) and (o.namespace, o.service) == (ns, service)
        for e in o.endpoints
    ]


@pytest.mark.parametrize(
    ("ns", "service", "want"),
    [
        ("default", "kubernetes", [("192.168.49.2", "", True)]),
        ("kube-system", "kube-dns", [("10.244.0.2", "", True), ("10.244.0.3", "", True)]),
        (
            "shop",
            "web",
            [("10.244.1.10", "", True), ("10.244.1.11", "", True), ("10.244.1.12", "", True)],
        ),
        (
            "data",
            "db",
            [
                ("10.244.2.20", "db-0", True),
                ("10.244.2.21", "db-1", True),
                ("10.244.2.22", "db-2", False),
            ],
        ),
        (
            "shop",
            "api",
            [
                ("10.244.1.30", "", True),
                ("10.244.1.31", "", True),
                ("fd00:10:244:1::1e", "", True),
                ("fd00:10:244:1::1f", "", True),
            ],
        ),
        ("shop", "gateway", [("10.244.1.40", "", True), ("10.244.1.41", "", True)]),
    ],
)
def test_demo_endpoints(
    demo_cluster: dict[tuple[str, str, str], KubeObject],
    ns: str,
    service: str,
    want: list[tuple[str, str, bool]],
) -> None:
    got = [(e.addresses[0], e.hostname, e.ready) for e in demo_endpoints(demo_cluster, ns, service)]
    assert got == want


def test_demo_slice_ports(demo_cluster: dict[tuple[str, str, str], KubeObject]) -> None:
    kubernetes = demo_cluster[("EndpointSlice", "default", "kubernetes")]
    assert isinstance(kubernetes, EndpointSlice)
    assert kubernetes.ports == (EndpointPort("https", "TCP", 8443),)
    api = sorted(
        o.address_type
        for o in demo_cluster.values()
        if isinstance(o, EndpointSlice) and o.service == "api"
    )
    assert api == ["IPv4", "IPv6"]


def test_demo_pods_back_every_endpoint(
    demo_cluster: dict[tuple[str, str, str], KubeObject],
) -> None:
    pod_ips = {ip for o in demo_cluster.values() if isinstance(o, Pod) for ip in o.ips}
    endpoint_ips = {
        ip
        for o in demo_cluster.values()
        if isinstance(o, EndpointSlice)
        for e in o.endpoints
        for ip in e.addresses
    }
    assert endpoint_ips <= pod_ips
    pods = {(o.namespace, o.name) for o in demo_cluster.values() if isinstance(o, Pod)}
    for o in demo_cluster.values():
        if isinstance(o, EndpointSlice):
            assert {(o.namespace, e.pod_name) for e in o.endpoints if e.pod_name} <= pods
    assert demo_cluster[("Pod", "shop", "api-7f6d9c8b4-hk2vd")] == Pod(
        "shop", "api-7f6d9c8b4-hk2vd", ("10.244.1.30", "fd00:10:244:1::1e")
    )


def test_demo_succeeded_pod_does_not_answer(
    demo_cluster: dict[tuple[str, str, str], KubeObject],
) -> None:
    with as_file(files("kdns.k8s").joinpath("demo.yaml")) as path:
        raw_pods = {r["metadata"]["name"]: r for r in iter_raw([str(path)]) if r["kind"] == "Pod"}
    assert raw_pods["migrate-schema-8fj2k"]["status"]["phase"] == "Succeeded"
    assert ("Pod", "shop", "migrate-schema-8fj2k") not in demo_cluster
    assert not any(isinstance(o, Pod) and "10.244.1.99" in o.ips for o in demo_cluster.values())
