"""Gateway zones without a process: slimming Gateway API / Ingress / annotated Service objects,
the hostname rules (listener intersection, sectionName, allowedRoutes), conflicts, filters,
config validation, and the demo cluster's gateway names through the resolver."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kdns.authority.gateway import GatewaySettings, intersect, parse_filter
from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.authority.zones import ZoneSet
from kdns.config import ConfigError, build_config
from kdns.dns import names
from kdns.dns.records import CNAME, NOERROR, NXDOMAIN, A, rdata_address
from kdns.k8s.demo import demo_objects
from kdns.k8s.objects import slim, slim_service
from kdns.k8s.sources import load_objects
from kdns.k8s.static import apply_all, copy_objects
from kdns.model import EMPTY_META, Gateway, Listener, Meta, ParentRef, Route
from kdns.parts import build_registry
from tests.k8sapi import (
    CONTROLLER,
    gateway,
    gatewayclass,
    grpcroute,
    httproute,
    ingress,
    namespace,
    route_status,
    service,
    tcproute,
    tlsroute,
)

ZONE = "home.example.com"


def registry(zones: tuple[str, ...] = (ZONE,), **settings: Any) -> Registry:
    zone_set = ZoneSet.build("cluster.local", (), 5, gateway_zones=zones)
    reg = Registry(zone_set, gateway=GatewaySettings(zones=zones, **settings))
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
        (
            Listener("https", f"*.{ZONE}", "All", 443, "HTTPS"),
            Listener("http", "", "Same", 443, "HTTPS"),
        ),
        "eg",
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
        # status.parents: the entry for its one spec parent says Accepted=True, generation 1.
        ((ParentRef("infra", "eg", "https"), CONTROLLER),),
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
    # the annotated LoadBalancer: its spec.externalIPs, as external-dns publishes them
    assert a(reg, f"shop-lb.{ZONE}") == ["198.51.100.7"]
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


# --- issue 20: Gateway API attachment to the letter ------------------------------------------------
# Each case was answered wrongly on main 6cf769f; the comment names the rule it encodes.


def ask(reg: Registry, name: str, qtype: str = "A", **kwargs: Any) -> Any:
    """The reply a client gets (dnspython message), through the hot path and the resolver."""
    import dns.message

    from kdns.server.wire import Responder

    responder = Responder(reg.answers, Resolver(reg, **kwargs).resolve)
    responder.derived = reg.derived
    wire = responder.respond(dns.message.make_query(name, qtype).to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def ips(reg: Registry, name: str) -> list[str]:
    return sorted(r.to_text() for rrset in ask(reg, name).answer for r in rrset)


def test_allowed_routes_namespace_selector() -> None:
    # Gateway API AllowedRoutes.namespaces: "Selector: Routes in namespaces selected by the
    # selector may be attached"; a namespace the selector does not match is not (matchLabels
    # and matchExpressions, metav1.LabelSelector). Wrong today 1: treated as All.
    selector = {
        "from": "Selector",
        "selector": {
            "matchLabels": {"dns": "lan"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["guest"]}],
        },
    }
    reg = registry()
    load(
        reg,
        namespace("lan", labels={"dns": "lan"}),
        namespace("guest", labels={"dns": "lan", "tier": "guest"}),
        namespace("plain"),
        gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}", selector)]),
        httproute("lan", "r", [f"lan.{ZONE}"], [("infra", "eg")]),
        httproute("guest", "r", [f"guest.{ZONE}"], [("infra", "eg")]),
        httproute("plain", "r", [f"plain.{ZONE}"], [("infra", "eg")]),
        httproute("unknown", "r", [f"unknown.{ZONE}"], [("infra", "eg")]),  # no Namespace
    )
    assert a(reg, f"lan.{ZONE}") == ["192.168.1.1"]
    assert a(reg, f"guest.{ZONE}") == a(reg, f"plain.{ZONE}") == a(reg, f"unknown.{ZONE}") == []
    # Relabelled: the routes of that namespace re-attach at once.
    load(reg, namespace("plain", labels={"dns": "lan"}))
    assert a(reg, f"plain.{ZONE}") == ["192.168.1.1"]
    load(reg, namespace("lan"))
    assert a(reg, f"lan.{ZONE}") == []
    # A config reload re-renders into a fresh registry: the labels come along.
    fresh = registry()
    copy_objects(reg, fresh)
    assert a(fresh, f"plain.{ZONE}") == ["192.168.1.1"] and a(fresh, f"lan.{ZONE}") == []
    # kubernetes.io/metadata.name (set by the API server) selects one namespace by name.
    by_name = {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "unknown"}}}  # fmt: skip
    load(reg, gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}", by_name)]))
    assert a(reg, f"unknown.{ZONE}") == ["192.168.1.1"] and a(reg, f"plain.{ZONE}") == []


def test_route_kind_must_match_the_listener_protocol() -> None:
    # Gateway API Listener.protocol / AllowedRoutes.kinds: "When unspecified or empty, the kinds
    # of Routes selected are determined using the Listener protocol": HTTP/HTTPS carry
    # HTTPRoute and GRPCRoute, TLS carries TLSRoute (GEP-2643), TCP TCPRoute. Wrong today 2.
    reg = registry()
    load(
        reg,
        gateway(
            "infra",
            "l4",
            ["192.168.1.1"],
            [("tls", None, "All", "TLS"), ("tcp", None, "All", "TCP")],
        ),  # fmt: skip
        gateway("infra", "web", ["192.168.1.2"], [("http", None, "All", "HTTP")]),
        httproute("apps", "h", [f"h.{ZONE}"], [("infra", "l4")]),
        grpcroute("apps", "g", [f"g.{ZONE}"], [("infra", "l4")]),
        tlsroute("apps", "t", [f"t.{ZONE}"], [("infra", "web")]),
        tlsroute("apps", "t2", [f"t2.{ZONE}"], [("infra", "l4")]),
        grpcroute("apps", "g2", [f"g2.{ZONE}"], [("infra", "web")]),
    )
    assert a(reg, f"h.{ZONE}") == a(reg, f"g.{ZONE}") == a(reg, f"t.{ZONE}") == []
    assert a(reg, f"t2.{ZONE}") == ["192.168.1.1"]
    assert a(reg, f"g2.{ZONE}") == ["192.168.1.2"]


def test_allowed_routes_kinds() -> None:
    # Gateway API AllowedRoutes.kinds: "Kinds specifies the groups and kinds of Routes that
    # are allowed to bind to this Gateway Listener"; a kind the protocol cannot carry is
    # invalid (InvalidRouteKinds). Wrong today 3: ignored.
    reg = registry()
    load(
        reg,
        gateway(
            "infra",
            "eg",
            ["192.168.1.1"],
            [
                ("grpc", None, "All", "HTTPS", 443, ["GRPCRoute"]),
                ("bad", None, "All", "HTTP", 80, ["TLSRoute"]),
            ],  # fmt: skip
        ),
        httproute("apps", "h", [f"h.{ZONE}"], [("infra", "eg", "grpc")]),
        grpcroute("apps", "g", [f"g.{ZONE}"], [("infra", "eg", "grpc")]),
        tlsroute("apps", "t", [f"t.{ZONE}"], [("infra", "eg", "bad")]),
    )
    assert a(reg, f"h.{ZONE}") == a(reg, f"t.{ZONE}") == []
    assert a(reg, f"g.{ZONE}") == ["192.168.1.1"]


def test_parent_ref_port() -> None:
    # Gateway API ParentReference.port: "the Route only attaches to Listeners on that port".
    # Wrong today 4: ignored.
    reg = registry()
    load(
        reg,
        gateway("infra", "eg", ["192.168.1.1"], [("http", None, "All", "HTTP", 80)]),
        httproute("apps", "r8080", [f"r8080.{ZONE}"], [("infra", "eg", "", 8080)]),
        httproute("apps", "r80", [f"r80.{ZONE}"], [("infra", "eg", "", 80)]),
        httproute("apps", "s", [f"s.{ZONE}"], [("infra", "eg", "http", 8080)]),
    )
    assert a(reg, f"r8080.{ZONE}") == a(reg, f"s.{ZONE}") == []
    assert a(reg, f"r80.{ZONE}") == ["192.168.1.1"]


def test_route_status_accepted_at_its_generation() -> None:
    # external-dns (source/gateway.go gwRouteIsAccepted, since kubernetes-sigs/external-dns
    # #5241): a route is published for a parent only when that parent's status.parents entry
    # says Accepted=True with observedGeneration equal to the route's generation; the entry
    # must come from the Gateway's controller (GatewayClass.spec.controllerName). Wrong
    # today 5: rejected routes answered.
    gw = gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")])
    rejected = httproute("apps", "no", [f"no.{ZONE}"], [("infra", "eg")], accepted=False)
    stale = httproute("apps", "stale", [f"stale.{ZONE}"], [("infra", "eg")])
    stale["metadata"]["generation"] = 2  # observedGeneration 1: the controller lags
    other = httproute("apps", "other", [f"other.{ZONE}"], [("infra", "eg")])
    other["status"] = route_status([("infra", "eg")], controller="example.com/another")
    no_status = httproute("apps", "none", [f"none.{ZONE}"], [("infra", "eg")], accepted=None)
    moved = httproute("apps", "moved", [f"moved.{ZONE}"], [("infra", "eg")])
    moved["status"] = route_status([("infra", "old")])  # accepted by its previous parent only
    ok = httproute("apps", "ok", [f"ok.{ZONE}"], [("infra", "eg")])
    objects = (gatewayclass("eg"), gw, rejected, stale, other, no_status, moved, ok)
    reg = registry()
    load(reg, *objects)
    assert a(reg, f"ok.{ZONE}") == ["192.168.1.1"]
    for name in ("no", "stale", "other", "none", "moved"):
        assert a(reg, f"{name}.{ZONE}") == [], name
    # Without the GatewayClass the controller is unknown: any controller's entry counts.
    reg = registry()
    load(reg, *objects[1:])
    assert a(reg, f"other.{ZONE}") == ["192.168.1.1"] and a(reg, f"no.{ZONE}") == []
    # require_accepted = false: the spec alone, for controllers that never write status.
    reg = registry(require_accepted=False)
    load(reg, *objects)
    assert all(a(reg, f"{n}.{ZONE}") == ["192.168.1.1"] for n in ("no", "stale", "none", "ok"))


def test_route_wildcards_match_at_any_depth() -> None:
    # Gateway API HTTPRoute.spec.hostnames: "*.example.com" matches any name with one or more
    # labels in front of the suffix; RFC 4592 would stop at sub.apps, an empty non-terminal
    # made by deep.sub.apps. Wrong today 6: other.sub.apps got NXDOMAIN.
    reg = registry()
    load(
        reg,
        gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
        gateway("infra", "other", ["192.168.1.2"], [("h", f"*.{ZONE}")]),
        httproute("apps", "wild", [f"*.apps.{ZONE}"], [("infra", "eg")]),
        httproute("apps", "deep", [f"deep.sub.apps.{ZONE}"], [("infra", "other")]),
        httproute("apps", "closer", [f"*.near.apps.{ZONE}"], [("infra", "other")]),
    )

    assert ips(reg, f"other.sub.apps.{ZONE}") == ["192.168.1.1"]
    assert ips(reg, f"sub.apps.{ZONE}") == ["192.168.1.1"]  # an empty non-terminal: matched too
    assert ips(reg, f"a.b.c.apps.{ZONE}") == ["192.168.1.1"]
    assert ips(reg, f"deep.sub.apps.{ZONE}") == ["192.168.1.2"]  # the exact name wins
    assert ips(reg, f"x.y.near.apps.{ZONE}") == ["192.168.1.2"]  # the more specific wildcard wins
    reply = ask(reg, f"apps.{ZONE}")  # the suffix itself is not matched: NODATA
    assert reply.rcode() == NOERROR and reply.answer == []


def test_forward_zone_named_like_a_gateway_zone(tmp_path: Any) -> None:
    # Wrong today 7: accepted, logged and never used. It now means k8s_gateway's fallthrough
    # upstream for the zone, so it needs [gateway] fallthrough (one-line error otherwise).
    path = tmp_path / "kdns.toml"
    path.write_text(f'[gateway]\nzones = ["{ZONE}"]\n[forward]\nzones = ["{ZONE}=192.168.1.1"]\n')
    with pytest.raises(ConfigError) as caught:
        build_config(str(path), {})
    assert str(caught.value).startswith("config: forward.zones: home.example.com is also a gateway zone")  # fmt: skip
    path.write_text(
        f'[gateway]\nzones = ["{ZONE}"]\nfallthrough = true\n[forward]\nzones = ["{ZONE}=192.168.1.1"]\n'  # fmt: skip
    )
    config = build_config(str(path), {})
    assert config.forward_zones == ((ZONE, ("192.168.1.1",)),) and config.gateway_fallthrough
    # The same for a [[zones]] entry: allowed once the zone falls through.
    path.write_text(
        f'[[zones]]\nname = "{ZONE}"\nrecords = ["nas A 192.168.1.11"]\nfallthrough = true\n'
        f'[forward]\nzones = ["{ZONE}=192.168.1.1"]\n'
    )
    assert build_config(str(path), {}).local_zones[0].fallthrough


def test_zone_names_take_underscores(tmp_path: Any) -> None:
    # Wrong today 8: RFC 2181 11 ("any binary string" is a label); cert-manager's DNS-01 names
    # _acme-challenge.<host>, and SRV owners start with _service._proto.
    acme = f"_acme-challenge.one.{ZONE}"
    config = build_config(
        None,
        {},
        {
            "forward_zones": [f"{acme}=192.168.1.1"],
            "gateway_zones": [f"_tcp.lab.{ZONE}"],
            "local_zones": [f"_sip._udp.{ZONE}=/dev/null"],
        },
    )
    assert config.forward_zones == ((acme, ("192.168.1.1",)),)
    assert config.gateway_zones == (f"_tcp.lab.{ZONE}",)
    assert config.local_zones[0].name == f"_sip._udp.{ZONE}"
    with pytest.raises(ConfigError):
        build_config(None, {}, {"forward_zones": ["bad..name=192.168.1.1"]})


def test_gateway_zone_answers_its_own_nameserver() -> None:
    # Wrong today 9: the apex NS named ns.dns.<zone>, a name the zone did not have (a lame
    # delegation, RFC 1912 2.8). It now answers with glue: [gateway] nameserver_addresses, else
    # the DNS Service's LoadBalancer/external IPs; [gateway] nameserver renames it.
    reg = registry(nameserver_addresses=("192.168.1.53",))
    ns = ask(reg, ZONE, "NS")
    assert [r.to_text() for rrset in ns.answer for r in rrset] == [f"ns.dns.{ZONE}."]
    assert ips(reg, f"ns.dns.{ZONE}") == ["192.168.1.53"]
    assert ask(reg, f"ns.dns.{ZONE}").flags & 0x0400  # aa
    zones = ZoneSet.build("cluster.local", (), 5, gateway_zones=(ZONE,))
    reg = Registry(zones, gateway=GatewaySettings(zones=(ZONE,), nameserver=f"dns.{ZONE}"))
    reg.synced = True
    load(
        reg,
        service(
            "kube-system", "kube-dns", "10.96.0.10", type="LoadBalancer", lb_ips=["192.168.1.54"]
        ),  # fmt: skip
    )
    assert [r.to_text() for rrset in ask(reg, ZONE, "NS").answer for r in rrset] == [f"dns.{ZONE}."]
    assert ips(reg, f"dns.{ZONE}") == ["192.168.1.54"]


def test_ingress_classes_pick_the_internal_controller() -> None:
    # Wrong today 11: one host on an internal and an external IngressClass answered the
    # external address for LAN clients (namespace/name order). [gateway] ingress_classes
    # (k8s_gateway's ingressClasses, external-dns --ingress-class) keeps the internal one.
    objects = (
        ingress("a", "public", [f"wiki.{ZONE}"], ["203.0.113.5"], ingress_class="nginx-external"),
        ingress("b", "lan", [f"wiki.{ZONE}"], ["192.168.1.5"], ingress_class="nginx-internal"),
    )
    reg = registry(ingress_classes=("nginx-internal",))
    load(reg, *objects)
    assert a(reg, f"wiki.{ZONE}") == ["192.168.1.5"]
    by_annotation = ingress("c", "legacy", [f"old.{ZONE}"], ["192.168.1.6"], ingress_class="")
    by_annotation["spec"].pop("ingressClassName")
    by_annotation["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx-internal"}
    load(reg, by_annotation)
    assert a(reg, f"old.{ZONE}") == ["192.168.1.6"]
    # gateway_classes does the same for Gateways (spec.gatewayClassName).
    reg = registry(gateway_classes=("internal",))
    load(
        reg,
        gateway("infra", "pub", ["203.0.113.1"], [("h", f"*.{ZONE}")], gateway_class="external"),
        gateway("infra", "lan", ["192.168.1.1"], [("h", f"*.{ZONE}")], gateway_class="internal"),
        httproute("apps", "r", [f"r.{ZONE}"], [("infra", "pub"), ("infra", "lan")]),
    )
    assert a(reg, f"r.{ZONE}") == ["192.168.1.1"]


def test_fallthrough_forwards_unclaimed_names() -> None:
    # k8s_gateway's `fallthrough` (split-brain DNS): names no route, Ingress, Service or record
    # claims go to the zone's upstreams instead of NXDOMAIN; claimed names stay ours.
    from kdns.dns.answer import FORWARD

    reg = registry()
    load(
        reg,
        gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
        httproute("apps", "g", [f"grafana.{ZONE}"], [("infra", "eg")]),
    )
    on = Resolver(reg, forward=True, fallthrough=(ZONE,))
    off = Resolver(reg, forward=True)
    acme = names.to_wire(f"_acme-challenge.grafana.{ZONE}")
    assert on.resolve(acme, 16) is FORWARD  # DNS-01: the public TXT record
    assert off.resolve(acme, 16).rcode == NXDOMAIN
    assert on.resolve(names.to_wire(f"grafana.{ZONE}"), 16).rcode == NOERROR  # ours: NODATA
    assert Resolver(reg, forward=False, fallthrough=(ZONE,)).resolve(acme, 16).rcode == NXDOMAIN


def test_annotations_ttl_and_hostname_only_load_balancers() -> None:
    # external-dns annotations on Ingresses, Services and Gateways; a LoadBalancer with only
    # a hostname is a CNAME (as external-dns publishes it); [gateway] ttl, then the ttl
    # annotation per object.
    reg = registry(ttl=120)
    load(
        reg,
        service(
            "apps", "elb", "10.96.0.20", type="LoadBalancer",
            annotations={"coredns.io/hostname": f"elb.{ZONE}"},
        ),
        service(
            "apps", "db", "10.96.0.21",
            annotations={"external-dns.alpha.kubernetes.io/internal-hostname": f"db.{ZONE}"},
        ),
        ingress(
            "apps", "i", [f"i.{ZONE}"], ["192.168.1.7"],
            annotations={
                "external-dns.alpha.kubernetes.io/target": "192.168.1.8",
                "external-dns.alpha.kubernetes.io/ttl": "30",
            },
        ),
        gateway("infra", "eg", ["192.168.1.1"], [("h", f"*.{ZONE}")]),
        httproute("apps", "r", [f"r.{ZONE}"], [("infra", "eg")]),
    )  # fmt: skip
    elb = slim(service("apps", "elb", "10.96.0.20", type="LoadBalancer", annotations={"coredns.io/hostname": f"elb.{ZONE}"}))  # fmt: skip
    assert elb is not None
    raw = service("apps", "elb", "10.96.0.20", type="LoadBalancer", annotations={"coredns.io/hostname": f"elb.{ZONE}"})  # fmt: skip
    raw["status"] = {"loadBalancer": {"ingress": [{"hostname": "abc.elb.amazonaws.com"}]}}
    load(reg, raw)
    assert reg.records(names.to_wire(f"elb.{ZONE}")) == {CNAME: [names.to_wire("abc.elb.amazonaws.com")]}  # fmt: skip
    assert ips(reg, f"db.{ZONE}") == ["10.96.0.21"]  # internal-hostname: the ClusterIP
    assert ips(reg, f"i.{ZONE}") == ["192.168.1.8"]  # target overrides the status
    assert ask(reg, f"i.{ZONE}").answer[0].ttl == 30
    assert ask(reg, f"r.{ZONE}").answer[0].ttl == 120


def test_hosts_file_zone(tmp_path: Any) -> None:
    # CoreDNS `hosts` / Pi-hole custom lists: "IP NAME [ALIAS...]", names outside the zone
    # skipped, bare names relative to the zone.
    hosts = tmp_path / "hosts"
    hosts.write_text(f"# LAN\n192.168.1.11 nas.{ZONE} files\nfd00::11 nas.{ZONE}\n10.0.0.1 other.example.org\n")  # fmt: skip
    config = build_config(None, {}, {"hosts_files": [f"{ZONE}={hosts}"]})
    assert config.local_zones[0].format == "hosts"
    reg = build_registry(config)
    reg.synced = True
    assert a(reg, f"nas.{ZONE}") == ["192.168.1.11", "fd00::11"]
    assert a(reg, f"files.{ZONE}") == ["192.168.1.11"]
    assert not reg.exists(names.to_wire("other.example.org"))


def test_registry_counts_gateway_kinds() -> None:
    reg = registry()
    load(reg, gatewayclass("eg"), gateway("infra", "eg", ["192.168.1.1"]), tcproute("a", "t"))
    counts = reg.counts()
    assert (counts["GatewayClass"], counts["Gateway"], counts["TCPRoute"]) == (1, 1, 1)


def test_gateway_zone_negative_ttl_follows_gateway_ttl() -> None:
    # RFC 2308 5: a negative answer is cached for min(SOA TTL, SOA MINIMUM), and kdns's SOA
    # MINIMUM is its zone's TTL. A gateway zone's names live for [gateway] ttl (k8s_gateway's
    # `ttl` sets the SOA minimum of its zones too, plugin/k8s_gateway apex.go), so a name
    # about to be claimed is not held negative for [kubernetes] ttl instead (or longer).
    config = build_config(None, {}, {"ttl": 5, "gateway_zones": [ZONE], "gateway_ttl": 60})
    reg = build_registry(config)
    reg.synced = True
    reply = ask(reg, f"nothing.{ZONE}")
    assert reply.rcode() == NXDOMAIN
    (soa,) = reply.authority
    assert (soa[0].minimum, soa.ttl) == (60, 60)
    (apex,) = ask(reg, ZONE, "SOA").answer
    assert (apex[0].minimum, apex.ttl) == (60, 60)
    # the cluster zone keeps [kubernetes] ttl; a TTL reload leaves the gateway zone's alone
    assert ask(reg, "nothing.cluster.local").authority[0][0].minimum == 5
    reg.set_ttl(7)
    assert ask(reg, f"nothing.{ZONE}").authority[0][0].minimum == 60
    # without [gateway] ttl the zone follows [kubernetes] ttl, as before
    reg = build_registry(build_config(None, {}, {"ttl": 5, "gateway_zones": [ZONE]}))
    reg.synced = True
    assert ask(reg, f"nothing.{ZONE}").authority[0][0].minimum == 5
