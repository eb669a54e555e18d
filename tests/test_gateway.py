"""Gateway zones without a process: slimming Gateway API / Ingress / annotated Service objects,
the hostname rules (listener intersection, sectionName, allowedRoutes), conflicts, filters,
config validation, and the demo cluster's gateway names through the resolver."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kdns.config import ConfigError, build_config
from kdns.dns import names
from kdns.dns.gateway import GatewaySettings, intersect, parse_filter
from kdns.dns.records import CNAME, NOERROR, NXDOMAIN, A, rdata_address
from kdns.dns.registry import Registry
from kdns.dns.resolver import Resolver
from kdns.dns.zones import ZoneSet
from kdns.k8s.demo import demo_objects
from kdns.k8s.objects import slim, slim_service
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all, copy_objects
from kdns.model import EMPTY_META, Gateway, Listener, Meta, ParentRef, Route
from kdns.parts import build_registry
from tests.k8sapi import gateway, grpcroute, httproute, ingress, service, tlsroute

ZONE = "home.example.com"


def registry(**settings: Any) -> Registry:
    zones = ZoneSet.build("cluster.local", (), 5, gateway_zones=(ZONE,))
    reg = Registry(zones, gateway=GatewaySettings(zones=(ZONE,), **settings))
    reg.synced = True
    return reg


def load(reg: Registry, *raws: dict[str, Any]) -> None:
    with reg.batch():
        for raw in raws:
            obj = slim(raw)
            assert obj is not None, raw
            reg.upsert(obj)


def a(reg: Registry, name: str) -> list[str]:
    import ipaddress

    records = reg.records(names.to_wire(name))
    return sorted(str(ipaddress.ip_address(r)) for t in (1, 28) for r in records.get(t, ()))


# --- slimming ------------------------------------------------------------------------------------


def test_slim_gateway() -> None:
    raw = gateway(
        "infra", "eg", ["192.168.1.240", "fd00::1"], [("https", "*.Home.Example.com."), "http"]
    )
    raw["status"]["addresses"].append({"type": "Hostname", "value": "lb.example.net"})
    raw["status"]["addresses"].append({"value": "192.168.1.241"})  # type defaults to IPAddress
    raw["spec"]["listeners"][1]["allowedRoutes"] = {}
    assert slim(raw) == Gateway(
        "infra",
        "eg",
        ("192.168.1.240", "fd00::1", "192.168.1.241"),
        ("lb.example.net",),
        (Listener("https", f"*.{ZONE}", "All"), Listener("http", "", "Same")),
    )


def test_slim_routes() -> None:
    raw = httproute(
        "apps", "web", ["Web.home.example.com", "bad..name"], [("infra", "eg", "https")]
    )
    raw["spec"]["parentRefs"] += [
        {"name": "local"},  # namespace defaults to the route's
        {"name": "svc", "kind": "Service", "group": ""},  # GAMMA: no hostname to publish
    ]
    raw["metadata"]["annotations"] = {
        "team": "a",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
    }
    assert slim(raw) == Route(
        "HTTPRoute",
        "apps",
        "web",
        (f"web.{ZONE}",),
        (ParentRef("infra", "eg", "https"), ParentRef("apps", "local", "")),
        Meta((), (("team", "a"),)),
    )
    assert slim(grpcroute("apps", "g", ["g.x.com"], ["eg"])).kind == "GRPCRoute"  # type: ignore[union-attr]
    assert slim(tlsroute("apps", "t", ["t.x.com"], ["eg"])).kind == "TLSRoute"  # type: ignore[union-attr]
    other = httproute("apps", "x", [], [])
    other["apiVersion"] = "example.com/v1"
    assert slim(other) is None  # another group's HTTPRoute


def test_slim_ingress_and_service_hostnames() -> None:
    obj = slim(ingress("apps", "i", ["a.example.com", "*.b.example.com"], ["10.0.0.1"], ["lb.x"]))
    assert obj is not None and obj.kind == "Ingress"
    assert obj.hosts == ("a.example.com", "*.b.example.com")  # type: ignore[union-attr]
    assert obj.lb_ips == ("10.0.0.1",) and obj.lb_hostnames == ("lb.x",)  # type: ignore[union-attr]
    annotated = service(
        "apps",
        "nas",
        "10.96.0.9",
        type="LoadBalancer",
        lb_ips=["192.168.1.9"],
        annotations={
            "external-dns.alpha.kubernetes.io/hostname": "nas.example.com, NAS2.example.com."
        },
        labels={"dns": "lan"},
    )
    svc = slim_service(annotated)
    assert svc.hostnames == ("nas.example.com", "nas2.example.com")
    assert svc.meta == Meta(
        (("dns", "lan"),),
        (("external-dns.alpha.kubernetes.io/hostname", "nas.example.com, NAS2.example.com."),),
    )
    # Not a LoadBalancer, or not annotated: the shared defaults, nothing held per Service.
    plain = slim_service(service("apps", "web", "10.96.0.10"))
    assert plain.hostnames == () and plain.meta is None
    cluster_ip = dict(annotated, spec={**annotated["spec"], "type": "ClusterIP"})
    assert slim_service(cluster_ip).hostnames == ()


# --- hostname rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "listener", "want"),
    [
        ("a.example.com", "a.example.com", "a.example.com"),
        ("a.example.com", "*.example.com", "a.example.com"),
        ("a.b.example.com", "*.example.com", "a.b.example.com"),
        ("*.example.com", "a.example.com", "a.example.com"),
        ("*.b.example.com", "*.example.com", "*.b.example.com"),
        ("*.example.com", "*.b.example.com", "*.b.example.com"),
        ("example.com", "*.example.com", None),
        ("a.example.org", "*.example.com", None),
        ("a.example.com", "b.example.com", None),
    ],
)
def test_intersect(route: str, listener: str, want: str | None) -> None:
    assert intersect(route, listener) == want


def test_listener_rules() -> None:
    reg = registry()
    load(
        reg,
        gateway(
            "infra",
            "eg",
            ["192.168.1.240"],
            [("wiki", f"wiki.{ZONE}"), ("apps", f"*.apps.{ZONE}"), ("own", None, "Same")],
        ),
        httproute("apps", "wiki", [], [("infra", "eg", "wiki")]),  # the listener's hostname
        httproute("apps", "any", [f"x.apps.{ZONE}", f"y.{ZONE}"], [("infra", "eg", "apps")]),
        httproute("apps", "same", [f"same.{ZONE}"], [("infra", "eg", "own")]),  # other ns
        httproute("infra", "same", [f"ok.{ZONE}"], [("infra", "eg", "own")]),
        httproute("apps", "nohost", [], [("infra", "eg", "own")]),  # no hostname anywhere
        httproute("apps", "wild", [f"*.apps.{ZONE}"], [("infra", "eg")]),
        httproute("apps", "outside", ["grafana.example.org"], [("infra", "eg")]),
    )
    assert a(reg, f"wiki.{ZONE}") == ["192.168.1.240"]
    assert a(reg, f"x.apps.{ZONE}") == ["192.168.1.240"]
    assert a(reg, f"y.{ZONE}") == []  # not under the "apps" listener's hostname
    assert a(reg, f"same.{ZONE}") == []  # allowedRoutes: Same, route in another namespace
    assert a(reg, f"ok.{ZONE}") == ["192.168.1.240"]
    assert a(reg, f"*.apps.{ZONE}") == ["192.168.1.240"]  # a wildcard name, as is
    assert not reg.exists(names.to_wire("grafana.example.org"))  # outside every gateway zone
    assert reg.exists(names.to_wire(f"apps.{ZONE}"))  # empty non-terminal above the wildcard


def test_gateway_without_addresses_and_with_a_hostname_address() -> None:
    reg = registry()
    load(
        reg,
        gateway("infra", "pending", [], [("h", f"*.{ZONE}")]),
        httproute("apps", "r", [f"r.{ZONE}"], [("infra", "pending")]),
    )
    assert not reg.exists(names.to_wire(f"r.{ZONE}"))  # no address yet: nothing to answer
    load(reg, gateway("infra", "pending", [], [("h", f"*.{ZONE}")], hostnames=["lb.cloud.example"]))
    assert reg.records(names.to_wire(f"r.{ZONE}")) == {CNAME: [names.to_wire("lb.cloud.example")]}


def test_conflicts_are_deterministic_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    objects = [
        gateway("infra", "a", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
        gateway("infra", "b", ["192.168.1.2"], [("h", f"*.{ZONE}")]),
        httproute("zz", "late", [f"app.{ZONE}"], [("infra", "a")]),
        httproute("aa", "early", [f"app.{ZONE}"], [("infra", "b")]),
        httproute("aa", "same", [f"app.{ZONE}"], [("infra", "b")]),  # agrees with early: fine
        ingress("aa", "ing", [f"app.{ZONE}"], ["192.168.1.3"]),  # routes rank before Ingress
    ]
    answers = set()
    for order in (objects, objects[::-1]):
        reg = registry()
        with caplog.at_level(logging.WARNING, logger="kdns.gateway"):
            load(reg, *order)
            load(reg, gateway("infra", "a", ["192.168.1.1"], [("h", f"*.{ZONE}"), "x"]))
        answers.add(tuple(a(reg, f"app.{ZONE}")))
    assert answers == {("192.168.1.2",)}  # aa/early via infra/b, whatever the arrival order
    conflicts = [r for r in caplog.records if "claimed with different addresses" in r.message]
    assert len(conflicts) == 1  # logged once for the same conflict (the table's memory)
    assert "HTTPRoute aa/early via Gateway infra/b" in conflicts[0].message


def test_filters() -> None:
    objects = [
        gateway("infra", "internal", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
        gateway("infra", "external", ["192.168.1.2"], [("h", f"*.{ZONE}")]),
        httproute("apps", "in", [f"in.{ZONE}"], [("infra", "internal")], labels={"dns": "lan"}),
        httproute("apps", "out", [f"out.{ZONE}"], [("infra", "external")], annotations={"x": "1"}),
        ingress("apps", "ing", [f"ing.{ZONE}"], ["192.168.1.3"], labels={"dns": "lan"}),
    ]
    reg = registry(gateways=("infra/internal",))
    load(reg, *objects)
    assert (a(reg, f"in.{ZONE}"), a(reg, f"out.{ZONE}")) == (["192.168.1.1"], [])
    assert a(reg, f"ing.{ZONE}") == ["192.168.1.3"]  # Ingresses have no Gateway to filter by
    reg = registry(gateways=("infra/*",), label="dns=lan")
    load(reg, *objects)
    assert (a(reg, f"in.{ZONE}"), a(reg, f"out.{ZONE}"), a(reg, f"ing.{ZONE}")) == (
        ["192.168.1.1"],
        [],
        ["192.168.1.3"],
    )
    reg = registry(annotation="x", resources=("HTTPRoute",))
    load(reg, *objects)
    assert (a(reg, f"in.{ZONE}"), a(reg, f"out.{ZONE}"), a(reg, f"ing.{ZONE}")) == (
        [],
        ["192.168.1.2"],
        [],
    )
    assert parse_filter("a=b") == ("a", "b") and parse_filter("a") == ("a", None)
    assert GatewaySettings(zones=(ZONE,), resources=("Ingress",)).watched_kinds() == ["Ingress"]
    assert GatewaySettings().watched_kinds() == []
    assert GatewaySettings().selects(EMPTY_META)


def test_relist_and_reload_keep_gateway_objects() -> None:
    reg = registry()
    objects = [
        o
        for o in (
            slim(gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")])),
            slim(httproute("apps", "r", [f"r.{ZONE}"], [("infra", "eg")])),
        )
        if o is not None
    ]
    apply_all(reg, objects)
    assert a(reg, f"r.{ZONE}") == ["192.168.1.1"]
    assert reg.keys("HTTPRoute") == [("apps", "r")]
    assert reg.current("Gateway", ("infra", "eg")) == objects[0]
    fresh = registry()
    copy_objects(reg, fresh)
    assert a(fresh, f"r.{ZONE}") == ["192.168.1.1"]
    reg.replace("HTTPRoute", [])
    assert not reg.exists(names.to_wire(f"r.{ZONE}"))


def test_config() -> None:
    config = build_config(None, {"KDNS_GATEWAY_ZONE": "Home.Example.com."})
    assert config.gateway_zones == (ZONE,)
    assert build_config(
        None, {}, {"gateway_zones": ["a.example.com", "b.example.com"]}
    ).gateway_zones == (
        "a.example.com",
        "b.example.com",
    )


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('[gateway]\ngateways = ["internal"]', "config: gateway.gateways: expected NAMESPACE/NAME"),
        ('[gateway]\nlabel = "a=b=c"', "config: gateway.label: expected KEY=VALUE or KEY"),
        ('[gateway]\nannotation = ""', "config: gateway.annotation: expected KEY=VALUE or KEY"),
        ('[gateway]\nresources = ["Route"]', "config: gateway.resources: expected HTTPRoute|"),
        ("[gateway]\nresources = []", "config: gateway.resources: expected at least one"),
        ('[gateway]\nzones = ["cluster.local"]', "config: gateway.zones: cluster.local is already"),
        ('[gateway]\nzones = [{zone = "x.com"}]', "config: gateway.zones: expected a DNS name"),
    ],
)
def test_config_errors_are_one_line(tmp_path: Any, toml: str, error: str) -> None:
    path = tmp_path / "kdns.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        build_config(str(path), {})
    assert str(caught.value).startswith(error) and "\n" not in str(caught.value)


def test_gateway_zones_table_form(tmp_path: Any) -> None:
    path = tmp_path / "kdns.toml"
    path.write_text('[[gateway.zones]]\nname = "home.example.com"\n')
    assert build_config(str(path), {}).gateway_zones == (ZONE,)


# --- the demo cluster (what --objects and the README homelab example serve) -------------------------


def test_demo_gateway_names_through_the_resolver() -> None:
    config = build_config(None, {}, {"gateway_zones": [ZONE]})
    reg = build_registry(config)
    apply_all(reg, demo_objects())
    reg.synced = True
    resolver = Resolver(reg)

    def answer(name: str, qtype: int = A) -> Any:
        key = names.to_wire(name)
        return reg.answers.get(key + qtype.to_bytes(2, "big") + b"\x00\x01") or resolver.resolve(
            key, qtype
        )

    assert answer(f"grafana.{ZONE}").rcode == NOERROR
    assert a(reg, f"grafana.{ZONE}") == ["192.168.1.240"]
    assert a(reg, f"shop.{ZONE}") == ["192.168.1.241"]
    assert a(reg, f"photos.{ZONE}") == ["192.168.1.230"]
    assert a(reg, f"shop-lb.{ZONE}") == ["203.0.113.10"]  # the annotated LoadBalancer
    assert a(reg, f"db.{ZONE}") == a(reg, f"api.{ZONE}") == ["192.168.1.240"]
    assert a(reg, f"*.apps.{ZONE}") == ["192.168.1.240"]
    assert answer(f"nothing-here.{ZONE}").rcode == NXDOMAIN
    assert rdata_address("192.168.1.240")[1] in reg.records(names.to_wire(f"grafana.{ZONE}"))[A]


def test_objects_flag_reads_gateway_documents(tmp_path: Any) -> None:
    import yaml

    path = tmp_path / "routes.yaml"
    path.write_text(
        yaml.safe_dump_all(
            [
                gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
                httproute("apps", "r", [f"r.{ZONE}"], [("infra", "eg")]),
                grpcroute("apps", "g", [f"g.{ZONE}"], [("infra", "eg")]),
                tlsroute("apps", "t", [f"t.{ZONE}"], [("infra", "eg")]),
                ingress("apps", "i", [f"i.{ZONE}"], ["192.168.1.2"]),
            ]
        )
    )
    kinds = sorted(o.kind for o in load_objects([str(path)]))
    assert kinds == ["GRPCRoute", "Gateway", "HTTPRoute", "Ingress", "TLSRoute"]
