"""k8s_gateway parity: a LoadBalancer Service as ``<name>.<namespace>.<zone>`` ([gateway]
service_names), table tests without a process.

Each rule cites the k8s_gateway behaviour it encodes (github.com/ori-edge/k8s_gateway, and its
continuation k8s-gateway/k8s_gateway):

- README, Description table: "Service | `name.namespace` + any of the configured zones OR any
  string ... specified in the `coredns.io/hostname` or `external-dns.alpha.kubernetes.io/hostname`
  annotations | `.status.loadBalancer.ingress`", footnote "Only resolves service of type
  LoadBalancer";
- kubernetes.go ``serviceHostnameIndexFunc``: a Service with a hostname annotation is indexed
  by the annotation's names, otherwise by ``name.namespace`` (not both);
- kubernetes.go ``lookupServiceIndex``: ``spec.externalIPs``, when set, answer instead of the
  load balancer's status;
- gateway.go ``staticResources``/``getMatchingAddresses``: resources are tried in order
  (HTTPRoute, TLSRoute, GRPCRoute, Ingress, Service) and the first kind with a match answers,
  so a route or an Ingress wins a name over a Service.
"""

from __future__ import annotations

from typing import Any

from kdns.authority.gateway import GatewaySettings
from kdns.config import build_config
from kdns.dns import names
from kdns.dns.records import CNAME
from kdns.k8s.objects import slim_service
from kdns.parts import gateway_settings
from tests.k8sapi import (
    CONTROLLER,
    gateway,
    gatewayclass,
    httproute,
    ingress,
    service,
)
from tests.test_gateway import ZONE, load, registry
from tests.test_gateway import a as addresses

OTHER = "lab.example.org"


def lb(name: str = "jellyfin", ns: str = "media", **kw: Any) -> dict[str, Any]:
    kw.setdefault("lb_ips", ["192.168.1.230"])
    return service(ns, name, "10.96.0.30", type="LoadBalancer", **kw)


# --- the setting ------------------------------------------------------------------------------


def test_service_names_is_off_by_default_and_reaches_the_gateway_settings() -> None:
    # Off: kdns's existing users never had these names (docs/configuration.md says why).
    assert build_config().gateway_service_names is False
    assert GatewaySettings().service_names is False
    config = build_config(flags={"gateway_zones": [ZONE], "gateway_service_names": True})
    assert gateway_settings(config).service_names is True


def test_off_publishes_no_name_namespace_zone() -> None:
    reg = registry()
    load(reg, lb())
    assert addresses(reg, f"jellyfin.media.{ZONE}") == []


# --- README: "name.namespace + any of the configured zones", LoadBalancer only ----------------


def test_load_balancer_service_answers_name_namespace_in_every_zone() -> None:
    reg = registry(zones=(ZONE, OTHER), service_names=True)
    load(reg, lb(lb_ips=["192.168.1.230", "fd00::230"]))
    for zone in (ZONE, OTHER):
        assert addresses(reg, f"jellyfin.media.{zone}") == ["192.168.1.230", "fd00::230"]
    assert addresses(reg, f"jellyfin.{ZONE}") == []  # the namespace is part of the name


def test_cluster_ip_and_node_port_services_have_no_name() -> None:
    # README footnote 3: "Only resolves service of type LoadBalancer".
    reg = registry(service_names=True)
    load(
        reg,
        service("media", "web", "10.96.0.31"),
        service("media", "np", "10.96.0.32", type="NodePort"),
    )
    assert addresses(reg, f"web.media.{ZONE}") == []
    assert addresses(reg, f"np.media.{ZONE}") == []
    assert slim_service(service("media", "web", "10.96.0.31")).meta is None  # nothing held


def test_load_balancer_without_an_ingress_address_has_no_name_until_it_gets_one() -> None:
    # lookupServiceIndex answers .status.loadBalancer.ingress: none yet, no address, no name.
    reg = registry(service_names=True)
    load(reg, lb(lb_ips=[]))
    name = names.to_wire(f"jellyfin.media.{ZONE}")
    assert reg.records(name) == {}
    load(reg, lb(lb_ips=["192.168.1.230"]))
    assert addresses(reg, f"jellyfin.media.{ZONE}") == ["192.168.1.230"]


def test_external_ips_answer_before_the_load_balancer_status() -> None:
    # lookupServiceIndex: "in case externalIPs are defined, ignoring status field completely".
    reg = registry(service_names=True)
    load(reg, lb(external_ips=["203.0.113.7"]))
    assert addresses(reg, f"jellyfin.media.{ZONE}") == ["203.0.113.7"]


def test_hostname_only_load_balancer_answers_a_cname() -> None:
    # As kdns answers annotated Services whose load balancer has only a hostname (AWS ELB).
    raw = lb(lb_ips=[])
    raw["status"]["loadBalancer"]["ingress"] = [{"hostname": "abc.elb.example.net"}]
    reg = registry(service_names=True)
    load(reg, raw)
    records = reg.records(names.to_wire(f"jellyfin.media.{ZONE}"))
    assert records == {CNAME: [names.to_wire("abc.elb.example.net")]}


def test_a_hostname_annotation_replaces_name_namespace() -> None:
    # serviceHostnameIndexFunc: annotated -> the annotation's names, else name.namespace.
    for key in ("coredns.io/hostname", "external-dns.alpha.kubernetes.io/hostname"):
        reg = registry(service_names=True)
        load(reg, lb(annotations={key: f"media.{ZONE}"}))
        assert addresses(reg, f"media.{ZONE}") == ["192.168.1.230"], key
        assert addresses(reg, f"jellyfin.media.{ZONE}") == [], key


def test_label_and_annotation_filters_apply() -> None:
    reg = registry(service_names=True, label="dns=lan")
    load(
        reg,
        lb("a", labels={"dns": "lan"}),
        lb("b", lb_ips=["192.168.1.231"]),
    )
    assert addresses(reg, f"a.media.{ZONE}") == ["192.168.1.230"]
    assert addresses(reg, f"b.media.{ZONE}") == []


def test_resources_without_service_publish_no_service_name() -> None:
    # k8s_gateway's `resources HTTPRoute`: Services are not looked up at all.
    reg = registry(service_names=True, resources=("HTTPRoute",))
    load(reg, lb())
    assert addresses(reg, f"jellyfin.media.{ZONE}") == []


def test_routes_and_ingresses_win_a_name_over_a_service() -> None:
    # getMatchingAddresses: HTTPRoute, TLSRoute, GRPCRoute, Ingress, then Service; the first
    # kind with a match answers. kdns's claim order is the same (routes, Gateway, Ingress,
    # Service).
    name = f"web.apps.{ZONE}"
    reg = registry(service_names=True)
    load(reg, lb("web", "apps", lb_ips=["192.168.1.9"]))
    assert addresses(reg, name) == ["192.168.1.9"]
    load(reg, ingress("apps", "web", [name], ["192.168.1.241"]))
    assert addresses(reg, name) == ["192.168.1.241"]
    load(
        reg,
        gatewayclass("eg", CONTROLLER),
        gateway("infra", "eg", ["192.168.1.240"], ["http"]),
        httproute("apps", "web", [name], [("infra", "eg")]),
    )
    assert addresses(reg, name) == ["192.168.1.240"]


# --- changes re-render exactly the affected names ---------------------------------------------


def test_type_change_deletion_and_address_change_rerender_the_name() -> None:
    reg = registry(service_names=True)
    name = f"jellyfin.media.{ZONE}"
    load(reg, lb())
    assert addresses(reg, name) == ["192.168.1.230"]
    load(reg, lb(lb_ips=["192.168.1.232"]))  # MetalLB/Cilium moved it
    assert addresses(reg, name) == ["192.168.1.232"]
    load(reg, service("media", "jellyfin", "10.96.0.30"))  # now a ClusterIP Service
    assert addresses(reg, name) == []
    load(reg, lb())
    assert addresses(reg, name) == ["192.168.1.230"]
    with reg.batch():
        reg.delete("Service", ("media", "jellyfin"))
    assert addresses(reg, name) == []


def test_a_service_change_touches_only_its_own_names() -> None:
    reg = registry(service_names=True)
    load(reg, lb("a"), lb("b", lb_ips=["192.168.1.231"]))
    table = reg.gateway
    changed = table.service_changed(("media", "a"))
    assert changed == {names.to_wire(f"a.media.{ZONE}")}
    # A ClusterIP Service that never published anything: nothing to re-render.
    load(reg, service("media", "c", "10.96.0.40"))
    assert table.service_changed(("media", "c")) == set()


def test_an_annotation_name_outside_the_zones_answers_under_each_zone() -> None:
    # gateway.go getQueryIndexKeys: a query is looked up as written and with the zone taken off,
    # so k8s_gateway's own test Service (kubernetes_test.go: coredns.io/hostname "annotation")
    # answers annotation.<zone>; test/service-annotation.yml's "good.ok" answers good.ok.<zone>.
    reg = registry(zones=(ZONE, OTHER), service_names=True)
    load(
        reg,
        lb("svc3", annotations={"coredns.io/hostname": "annotation"}),
        lb("good", lb_ips=["192.168.1.231"], annotations={"coredns.io/hostname": "good.ok"}),
        lb("nas", lb_ips=["192.168.1.232"], annotations={"coredns.io/hostname": f"nas.{ZONE}"}),
    )
    for zone in (ZONE, OTHER):
        assert addresses(reg, f"annotation.{zone}") == ["192.168.1.230"]
        assert addresses(reg, f"good.ok.{zone}") == ["192.168.1.231"]
    assert addresses(reg, f"nas.{ZONE}") == ["192.168.1.232"]  # already in a zone: as written
    assert addresses(reg, f"nas.{ZONE}.{OTHER}") == []
    # Without service_names (kdns's own reading), a hostname annotation is a full name.
    reg = registry(zones=(ZONE,))
    load(reg, lb("svc3", annotations={"coredns.io/hostname": "annotation"}))
    assert addresses(reg, f"annotation.{ZONE}") == []


def test_annotation_names_k8s_gateway_refuses_are_refused() -> None:
    # kubernetes.go checkDomainValid (RFC 1123, "*." taken off first) and
    # test/service-annotation.yml: a 64-character label is not indexed; a lone "*" is no
    # hostname. The Service then has no name at all: serviceHostnameIndexFunc indexes an
    # annotated Service by its annotation alone, never by name.namespace.
    for bad in ("a" * 64, "*", "-dash"):
        raw = lb(annotations={"coredns.io/hostname": bad})
        assert slim_service(raw).hostnames == (), bad
        reg = registry(service_names=True)
        load(reg, raw)
        assert addresses(reg, f"jellyfin.media.{ZONE}") == [], bad
        assert reg.gateway.claims == {}, bad
    assert slim_service(lb(annotations={"coredns.io/hostname": "*.apps"})).hostnames == ("*.apps",)


def test_the_k8s_gateway_ignore_label_hides_an_object() -> None:
    # README "Excluding Specific Resources": `k8s-gateway.dns/ignore: "true"` on an Ingress,
    # a LoadBalancer Service or a route: "the plugin will not return it's address".
    ignore = {"k8s-gateway.dns/ignore": "true"}
    reg = registry(service_names=True)
    load(
        reg,
        lb("hidden", labels=ignore),
        lb("shown", lb_ips=["192.168.1.231"], labels={"k8s-gateway.dns/ignore": "false"}),
        ingress("apps", "hidden", [f"ing.{ZONE}"], ["192.168.1.241"], labels=ignore),
        gatewayclass("eg", CONTROLLER),
        gateway("infra", "eg", ["192.168.1.240"], ["http"]),
        httproute("apps", "hidden", [f"route.{ZONE}"], [("infra", "eg")], labels=ignore),
    )
    assert addresses(reg, f"hidden.media.{ZONE}") == []
    assert addresses(reg, f"shown.media.{ZONE}") == ["192.168.1.231"]
    assert addresses(reg, f"ing.{ZONE}") == []
    assert addresses(reg, f"route.{ZONE}") == []
    load(reg, httproute("apps", "hidden", [f"route.{ZONE}"], [("infra", "eg")]))  # label gone
    assert addresses(reg, f"route.{ZONE}") == ["192.168.1.240"]
