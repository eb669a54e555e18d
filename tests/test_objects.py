"""kdns.k8s.objects: raw API objects -> slim model objects.

Each case names the Kubernetes API field it encodes (core/v1 Service, Pod, Namespace;
discovery.k8s.io/v1 EndpointSlice), so a failure says which rule broke.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kdns.k8s.objects import (
    normalize_ip,
    slim,
    slim_endpointslice,
    slim_namespace,
    slim_pod,
    slim_service,
    slimmer_for,
)
from kdns.model import (
    EMPTY_HINTS,
    EMPTY_META,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Namespace,
    Pod,
    Service,
    ServicePort,
)

# --- raw object builders -------------------------------------------------------------------


def svc(
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    name: str = "web",
    namespace: str | None = "shop",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": "1"}
    if namespace is not None:
        meta["namespace"] = namespace
    raw: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": spec or {},
    }
    if status is not None:
        raw["status"] = status
    return raw


def eps(
    endpoints: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
    service: str | None = "web",
) -> dict[str, Any]:
    labels = {} if service is None else {"kubernetes.io/service-name": service}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc12", "namespace": "shop", "labels": labels},
        "addressType": address_type,
        "endpoints": endpoints or [],
        "ports": ports or [],
    }


def pod(
    status: dict[str, Any], spec: dict[str, Any] | None = None, namespace: str | None = "shop"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-0"}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec or {},
        "status": status,
    }


def service(**fields: Any) -> Service:
    base: dict[str, Any] = dict(
        namespace="shop",
        name="web",
        type="ClusterIP",
        cluster_ips=(),
        headless=False,
        external_name="",
        ports=(),
        external_ips=(),
        lb_ips=(),
        publish_not_ready=False,
    )
    base.update(fields)
    return Service(**base)


def slice_(
    endpoints: tuple[Endpoint, ...] = (), ports: tuple[EndpointPort, ...] = (), **fields: Any
) -> EndpointSlice:
    base: dict[str, Any] = dict(
        namespace="shop",
        name="web-abc12",
        service="web",
        address_type="IPv4",
        ports=ports,
        endpoints=endpoints,
    )
    base.update(fields)
    return EndpointSlice(**base)


def ep(*addresses: str, hostname: str = "", ready: bool = True, pod_name: str = "") -> Endpoint:
    return Endpoint(addresses, hostname, ready, pod_name)


# --- Service ---------------------------------------------------------------------------------

SERVICE_CASES = [
    pytest.param(
        svc({"clusterIP": "10.96.0.5"}),
        service(cluster_ips=("10.96.0.5",)),
        id="spec.type defaults to ClusterIP; spec.clusterIP when no clusterIPs",
    ),
    pytest.param(
        svc({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5", "fd00::5"]}),
        service(cluster_ips=("10.96.0.5", "fd00::5")),
        id="spec.clusterIPs (dual-stack) wins over spec.clusterIP",
    ),
    pytest.param(
        svc({"clusterIP": "None"}),
        service(headless=True),
        id="spec.clusterIP None is headless, no cluster IPs",
    ),
    pytest.param(
        svc({"clusterIP": "None", "clusterIPs": ["None"]}),
        service(headless=True),
        id="spec.clusterIPs [None] is headless",
    ),
    pytest.param(
        svc({"type": "NodePort", "clusterIP": "None"}),
        service(type="NodePort"),
        id="only type ClusterIP can be headless",
    ),
    pytest.param(
        svc({"clusterIP": ""}), service(), id="empty spec.clusterIP is no IP (not yet allocated)"
    ),
    pytest.param(
        svc({"clusterIPs": ["10.96.0.5", "not-an-ip", "10.96.0.5"]}),
        service(cluster_ips=("10.96.0.5",)),
        id="invalid and duplicate cluster IPs are skipped",
    ),
    pytest.param(
        svc({"clusterIPs": ["fd00:0000:0000:0000::0005"]}),
        service(cluster_ips=("fd00::5",)),
        id="IPv6 cluster IPs are compressed",
    ),
    pytest.param(
        svc({"type": "ExternalName", "externalName": "Payments.Example.NET."}),
        service(type="ExternalName", external_name="payments.example.net"),
        id="spec.externalName lowercased, trailing dot stripped",
    ),
    pytest.param(
        svc({"type": "ExternalName", "externalName": "x.example", "clusterIP": "10.96.0.9"}),
        service(type="ExternalName", external_name="x.example"),
        id="ExternalName has no cluster IPs even if one is written",
    ),
    pytest.param(
        svc({"clusterIP": "10.96.0.5", "externalName": "ignored.example"}),
        service(cluster_ips=("10.96.0.5",)),
        id="spec.externalName ignored unless type ExternalName",
    ),
    pytest.param(
        svc(
            {
                "clusterIP": "10.96.0.5",
                "ports": [
                    {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"port": 8081},
                    {"name": "dns", "port": "53", "protocol": "UDP"},
                ],
            }
        ),
        service(
            cluster_ips=("10.96.0.5",),
            ports=(
                ServicePort("http", "TCP", 80),
                ServicePort("", "TCP", 8081),
                ServicePort("dns", "UDP", 53),
            ),
        ),
        id="spec.ports: name default '', protocol default TCP, port is int",
    ),
    pytest.param(
        svc(
            {
                "type": "LoadBalancer",
                "clusterIP": "10.96.0.5",
                "externalIPs": ["198.51.100.7", "2001:0db8::0001", "bogus"],
            },
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}, {"hostname": "lb.example.com"}]}},
        ),
        service(
            type="LoadBalancer",
            cluster_ips=("10.96.0.5",),
            external_ips=("198.51.100.7", "2001:db8::1"),
            lb_ips=("203.0.113.10",),
            # A LoadBalancer keeps what gateway names need ([gateway] service_names): its
            # filter metadata and the hostname-only ingress entry (a CNAME there).
            meta=EMPTY_META,
            lb_hostnames=("lb.example.com",),
            hints=EMPTY_HINTS,
        ),
        id="spec.externalIPs and status.loadBalancer.ingress[].ip; hostname-only kept aside",
    ),
    pytest.param(
        svc({"type": "LoadBalancer", "clusterIP": "10.96.0.5"}, {"loadBalancer": {}}),
        service(
            type="LoadBalancer", cluster_ips=("10.96.0.5",), meta=EMPTY_META, hints=EMPTY_HINTS
        ),
        id="LoadBalancer without ingress yet (pending)",
    ),
    pytest.param(
        svc({"clusterIP": "None", "publishNotReadyAddresses": True}),
        service(headless=True, publish_not_ready=True),
        id="spec.publishNotReadyAddresses",
    ),
    pytest.param(
        svc({"clusterIP": "10.96.0.5"}, namespace=None),
        service(namespace="default", cluster_ips=("10.96.0.5",)),
        id="missing metadata.namespace means default (like kubectl apply)",
    ),
    pytest.param(
        {"kind": "Service", "metadata": {"name": "bare"}},
        service(namespace="default", name="bare"),
        id="no spec at all",
    ),
]


@pytest.mark.parametrize(("raw", "want"), SERVICE_CASES)
def test_slim_service(raw: dict[str, Any], want: Service) -> None:
    assert slim_service(raw) == want
    assert slim(raw) == want


# --- EndpointSlice ---------------------------------------------------------------------------

SLICE_CASES = [
    pytest.param(
        eps(
            [{"addresses": ["10.244.1.10"], "conditions": {"ready": True}}],
            [{"name": "http", "port": 8080, "protocol": "TCP"}],
        ),
        slice_((ep("10.244.1.10"),), (EndpointPort("http", "TCP", 8080),)),
        id="label kubernetes.io/service-name, addressType, ports, endpoints",
    ),
    pytest.param(
        eps(service=None), slice_(service=""), id="no kubernetes.io/service-name label: service ''"
    ),
    pytest.param(
        eps(address_type="IPv6", endpoints=[{"addresses": ["FD00:10:244:0:0:0:0:1E"]}]),
        slice_((ep("fd00:10:244::1e"),), address_type="IPv6"),
        id="endpoints[].addresses normalised (IPv6 compressed, lowercase)",
    ),
    pytest.param(
        eps([{"addresses": ["10.244.1.10"], "conditions": {"ready": False}}]),
        slice_((ep("10.244.1.10", ready=False),)),
        id="conditions.ready false: not ready",
    ),
    pytest.param(
        eps([{"addresses": ["10.244.1.10"], "conditions": {"ready": None}}]),
        slice_((ep("10.244.1.10"),)),
        id="conditions.ready null (unknown): ready",
    ),
    pytest.param(
        eps([{"addresses": ["10.244.1.10"], "conditions": {"serving": True}}]),
        slice_((ep("10.244.1.10"),)),
        id="conditions.ready missing: ready",
    ),
    pytest.param(
        eps([{"addresses": ["10.244.1.10"]}]),
        slice_((ep("10.244.1.10"),)),
        id="conditions missing: ready",
    ),
    pytest.param(
        eps([{"addresses": ["10.244.2.20"], "hostname": "db-0"}]),
        slice_((ep("10.244.2.20", hostname="db-0"),)),
        id="endpoints[].hostname",
    ),
    pytest.param(
        eps(
            [
                {
                    "addresses": ["10.244.2.20"],
                    "targetRef": {"kind": "Pod", "name": "db-0", "namespace": "shop"},
                }
            ]
        ),
        slice_((ep("10.244.2.20", pod_name="db-0"),)),
        id="targetRef.kind Pod: pod_name is targetRef.name",
    ),
    pytest.param(
        eps([{"addresses": ["192.168.49.2"], "targetRef": {"kind": "Node", "name": "n1"}}]),
        slice_((ep("192.168.49.2"),)),
        id="targetRef of another kind: no pod_name",
    ),
    pytest.param(
        eps([{"addresses": ["bogus"]}, {"addresses": []}, {"addresses": ["10.244.1.9"]}]),
        slice_((ep("10.244.1.9"),)),
        id="endpoints without a valid address are dropped",
    ),
    pytest.param(
        eps(
            ports=[
                {"name": "all", "port": None, "protocol": "TCP"},
                {"port": 53},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ]
        ),
        slice_(ports=(EndpointPort("", "TCP", 53), EndpointPort("dns", "UDP", 53))),
        id="ports[].port null (all ports) skipped; name '' and protocol TCP defaults",
    ),
]


@pytest.mark.parametrize(("raw", "want"), SLICE_CASES)
def test_slim_endpointslice(raw: dict[str, Any], want: EndpointSlice) -> None:
    assert slim_endpointslice(raw) == want
    assert slim(raw) == want


def test_fqdn_endpointslice_is_not_served() -> None:
    # addressType FQDN (deprecated): names, not addresses; CoreDNS ignores these slices too.
    raw = eps([{"addresses": ["db.example.org"]}], address_type="FQDN")
    assert slim_endpointslice(raw) is None
    assert slim(raw) is None


# --- Pod -------------------------------------------------------------------------------------

POD_CASES = [
    pytest.param(
        pod(
            {
                "phase": "Running",
                "podIP": "10.244.1.10",
                "podIPs": [{"ip": "10.244.1.10"}, {"ip": "fd00::a"}],
            }
        ),
        Pod("shop", "web-0", ("10.244.1.10", "fd00::a")),
        id="status.podIPs (dual-stack)",
    ),
    pytest.param(
        pod({"phase": "Running", "podIP": "fd00:0:0:0::5"}),
        Pod("shop", "web-0", ("fd00::5",)),
        id="status.podIP when podIPs is missing, normalised",
    ),
    pytest.param(
        pod({"phase": "Pending", "podIPs": [{"ip": "10.244.1.10"}]}),
        Pod("shop", "web-0", ("10.244.1.10",)),
        id="Pending with an IP (containers starting) answers",
    ),
    pytest.param(
        pod({"phase": "Running", "podIPs": [{"ip": "192.168.49.2"}]}, {"hostNetwork": True}),
        Pod("shop", "web-0", ("192.168.49.2",)),
        id="spec.hostNetwork pods are kept (as CoreDNS)",
    ),
    pytest.param(
        pod({"phase": "Running", "podIP": "10.244.1.10"}, namespace=None),
        Pod("default", "web-0", ("10.244.1.10",)),
        id="missing metadata.namespace means default",
    ),
    pytest.param(
        pod({"phase": "Succeeded", "podIP": "10.244.1.10"}),
        None,
        id="status.phase Succeeded: finished, not served",
    ),
    pytest.param(
        pod({"phase": "Failed", "podIPs": [{"ip": "10.244.1.10"}]}),
        None,
        id="status.phase Failed: finished, not served",
    ),
    pytest.param(pod({"phase": "Pending"}), None, id="no IP yet: not served"),
    pytest.param(
        pod({"phase": "Running", "podIP": "garbage"}), None, id="only invalid IPs: not served"
    ),
    pytest.param(
        {"kind": "Pod", "metadata": {"name": "x", "namespace": "a"}},
        None,
        id="no status at all: not served",
    ),
]


@pytest.mark.parametrize(("raw", "want"), POD_CASES)
def test_slim_pod(raw: dict[str, Any], want: Pod | None) -> None:
    assert slim_pod(raw) == want
    assert slim(raw) == want


# --- Namespace and dispatch ------------------------------------------------------------------


def test_slim_namespace() -> None:
    raw = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop"},
        "status": {"phase": "Active"},
    }
    assert slim_namespace(raw) == Namespace("shop")
    raw["metadata"]["labels"] = {"kubernetes.io/metadata.name": "shop", "lan": "yes"}
    # Labels are kept: Gateway listeners select routes by their Namespace's labels.
    assert slim_namespace(raw).labels == (("kubernetes.io/metadata.name", "shop"), ("lan", "yes"))
    assert slim(raw) == slim_namespace(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
            id="Deployment",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, id="ConfigMap"
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "x"}},
            id="core/v1 Endpoints (EndpointSlices are used instead)",
        ),
        pytest.param({"metadata": {"name": "x"}}, id="no kind"),
        pytest.param(
            {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "x"}},
            id="Service of another API group (Knative)",
        ),
    ],
)
def test_unknown_kinds_slim_to_none(raw: dict[str, Any]) -> None:
    assert slim(raw) is None


def test_slimmer_for_checks_the_api_group() -> None:
    assert slimmer_for("Service", "v1") is slim_service
    assert slimmer_for("Service", None) is slim_service  # items of a typed list
    assert slimmer_for("EndpointSlice", "discovery.k8s.io/v1") is slim_endpointslice
    assert slimmer_for("EndpointSlice", "discovery.k8s.io/v1beta1") is slim_endpointslice
    assert slimmer_for("EndpointSlice", "v1") is None
    assert slimmer_for("Service", "serving.knative.dev/v1") is None
    assert slimmer_for(None) is None


# --- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    pytest.param(
        {"kind": "Service", "metadata": {"namespace": "shop"}},
        "Service is missing metadata.name",
        id="Service without metadata.name",
    ),
    pytest.param({"kind": "Service"}, "Service is missing metadata.name", id="no metadata"),
    pytest.param(
        {"kind": "Pod", "metadata": {"name": ""}, "status": {"podIP": "10.0.0.1"}},
        "Pod is missing metadata.name",
        id="Pod with empty name",
    ),
    pytest.param(
        {"kind": "EndpointSlice", "metadata": {}, "addressType": "IPv4"},
        "EndpointSlice is missing metadata.name",
        id="EndpointSlice without name",
    ),
    pytest.param(
        {"kind": "Namespace", "metadata": {}},
        "Namespace is missing metadata.name",
        id="Namespace without name",
    ),
    pytest.param(
        svc({"ports": [{"name": "http"}]}),
        r"spec.ports\[0\].port: expected a port number, got None",
        id="Service port without a number",
    ),
    pytest.param(
        svc({"ports": [{"name": "http", "port": "http"}]}),
        r"Service shop/web.spec.ports\[0\].port: expected a port number, got 'http'",
        id="Service port that is a name",
    ),
    pytest.param(
        svc({"ports": [{"port": 70000}]}),
        "port 70000 is out of range",
        id="Service port out of range",
    ),
    pytest.param(
        svc({"ports": [{"port": True}]}),
        "expected a port number, got True",
        id="YAML 1.1 boolean as port",
    ),
    pytest.param(
        eps(ports=[{"port": "x"}]),
        r"EndpointSlice shop/web-abc12.ports\[0\].port: expected a port number",
        id="EndpointSlice port not a number",
    ),
]


@pytest.mark.parametrize(("raw", "message"), ERROR_CASES)
def test_invalid_objects_raise_value_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        slim(raw)


# --- properties the registry relies on -------------------------------------------------------


def test_resource_version_only_update_compares_equal() -> None:
    # The registry drops updates equal to what it has; metadata churn must not show.
    raw = svc({"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]})
    updated = copy.deepcopy(raw)
    updated["metadata"]["resourceVersion"] = "2"
    updated["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert slim(raw) == slim(updated)
    assert hash(slim(raw)) == hash(slim(updated))


def test_dns_visible_change_compares_different() -> None:
    raw = eps([{"addresses": ["10.244.1.10"], "conditions": {"ready": True}}])
    updated = copy.deepcopy(raw)
    updated["endpoints"][0]["conditions"]["ready"] = False
    assert slim(raw) != slim(updated)


def test_slim_does_not_modify_its_input() -> None:
    raw = svc({"type": "ExternalName", "externalName": "A.Example."})
    before = copy.deepcopy(raw)
    slim(raw)
    assert raw == before


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("2001:0DB8:0000::0001", "2001:db8::1"),
        ("::ffff:10.0.0.1", "::ffff:a00:1"),
        ("010.0.0.1", None),  # leading zeros are ambiguous (octal?) and refused
        ("fe80::1%eth0", None),  # a zone index means nothing to a remote client
        ("", None),
        ("None", None),
        ("10.0.0.0/8", None),
    ],
)
def test_normalize_ip(text: str, want: str | None) -> None:
    assert normalize_ip(text) == want
