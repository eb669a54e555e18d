"""Gateway zones against the Gateway API v1.5 text and external-dns's reading of it, without a
process: the route kind / listener protocol table of v1.5, ListenerSet status, external-dns's
hostname-source annotations and its annotation prefixes. Each case names the rule it checks."""

from __future__ import annotations

from typing import Any

import pytest

from kdns.authority.gateway import COMPATIBLE, GROUP, kind_allowed
from kdns.k8s import annotations, objects
from kdns.k8s.objects import slim
from kdns.model import Listener
from tests.k8sapi import (
    gateway,
    httproute,
    ingress,
    listenerset,
    route_status,
    tcproute,
    tlsroute,
)
from tests.test_gateway import ZONE, a, load, registry

GW_IP = "192.168.1.1"


# --- route kind vs listener protocol (Gateway API v1.5) ------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "kind", "listed", "attached"),
    [
        # site-src/guides/tls.md (v1.5): TLS/Passthrough -> TLSRoute, TLS/Terminate -> TLSRoute
        # (extended), HTTPS/Terminate -> HTTPRoute; GEP-2643: a TLSRoute needs a TLS listener.
        ("TLS", "TLSRoute", (), True),
        ("TLS", "TLSRoute", ("TLSRoute",), True),
        # kubernetes-sigs/gateway-api#4427 (v1.5.0): "Remove TCPRoute support from TLS
        # listeners", even when allowedRoutes.kinds lists it (InvalidRouteKinds).
        ("TLS", "TCPRoute", ("TCPRoute",), False),
        ("TLS", "TCPRoute", (), False),
        ("TLS", "HTTPRoute", (), False),
        ("HTTPS", "TLSRoute", (), False),
        ("HTTPS", "HTTPRoute", (), True),
        ("HTTPS", "GRPCRoute", (), True),
        ("HTTP", "GRPCRoute", (), True),
        ("HTTP", "TLSRoute", ("TLSRoute",), False),
        ("TCP", "TCPRoute", (), True),
        ("TCP", "TLSRoute", (), False),
        ("UDP", "UDPRoute", (), True),
        ("UDP", "TCPRoute", (), False),
        # A custom (domain-prefixed) protocol takes what it lists, nothing else.
        ("example.com/mqtt", "TCPRoute", ("TCPRoute",), True),
        ("example.com/mqtt", "TCPRoute", (), False),
    ],
)
def test_route_kind_per_listener_protocol(protocol: str, kind: str, listed: tuple[str, ...], attached: bool) -> None:  # fmt: skip
    listener = Listener("l", "", "All", 443, protocol, tuple(f"{GROUP}/{k}" for k in listed))
    assert kind_allowed(kind, listener) is attached


def test_tls_listener_table_is_v1_5s() -> None:
    assert COMPATIBLE["TLS"] == frozenset((f"{GROUP}/TLSRoute",))


def test_tcproute_on_a_tls_listener_is_not_published() -> None:
    # The same through the registry: a TCPRoute named by a TLS listener's allowedRoutes.kinds
    # (valid before v1.5) publishes nothing; the TLSRoute beside it does.
    reg = registry()
    load(
        reg,
        gateway(
            "infra", "l4", [GW_IP], [("tls", None, "All", "TLS", 443, ["TLSRoute", "TCPRoute"])]
        ),  # fmt: skip
        tcproute(
            "apps",
            "db",
            [("infra", "l4", "tls")],
            annotations={"external-dns.alpha.kubernetes.io/hostname": f"db.{ZONE}"},
        ),  # fmt: skip
        tlsroute("apps", "kafka", [f"kafka.{ZONE}"], [("infra", "l4", "tls")]),
    )
    assert a(reg, f"db.{ZONE}") == []
    assert a(reg, f"kafka.{ZONE}") == [GW_IP]


# --- ListenerSet status --------------------------------------------------------------------------


def _set_world(**set_args: Any) -> list[dict[str, Any]]:
    """A Gateway admitting ListenerSets from all namespaces, a ListenerSet with listeners
    ``a`` (a.home...) and ``b`` (b.home...), and a route on each listener and one on the set."""
    return [
        gateway("infra", "eg", [GW_IP], [("https", f"*.{ZONE}")], allowed_listeners="All"),
        listenerset(
            "apps",
            "team",
            ("infra", "eg"),
            [("a", f"a.{ZONE}", "Same", "HTTPS"), ("b", f"b.{ZONE}", "Same", "HTTPS")],
            **set_args,
        ),
        httproute("apps", "ra", [], [{"kind": "ListenerSet", "name": "team", "sectionName": "a"}]),
        httproute("apps", "rb", [], [{"kind": "ListenerSet", "name": "team", "sectionName": "b"}]),
    ]


@pytest.mark.parametrize(
    ("set_args", "require", "want_a", "want_b"),
    [
        # external-dns newListenerSetObject / listenerSetSections: the set's Accepted condition,
        # then each listener's own status.listeners entry.
        ({}, True, [GW_IP], [GW_IP]),
        ({"accepted": False}, True, [], []),  # NotAllowed by its Gateway
        ({"accepted": None}, True, [], []),  # no status yet: not accepted
        ({"rejected": ["b"]}, True, [GW_IP], []),  # listener b Conflicted, Accepted=False
        # Accepted, but observed for an older generation: stale, as a route's (#5241).
        ({"generation": 2, "observed": 1}, True, [], []),
        # require_accepted = false: controllers that write no status; the spec alone.
        ({"accepted": None}, False, [GW_IP], [GW_IP]),
        ({"rejected": ["b"]}, False, [GW_IP], [GW_IP]),
    ],
)
def test_listenerset_status(set_args: dict[str, Any], require: bool, want_a: list[str], want_b: list[str]) -> None:  # fmt: skip
    reg = registry(require_accepted=require)
    load(reg, *_set_world(**set_args))
    assert a(reg, f"a.{ZONE}") == want_a
    assert a(reg, f"b.{ZONE}") == want_b


def test_listenerset_set_condition_counts_beside_its_listeners() -> None:
    # Listener entries left Accepted from before while the set itself is now Accepted=False
    # (its Gateway stopped allowing it): the set's condition decides.
    reg = registry()
    world = _set_world()
    world[1]["status"]["conditions"][0]["status"] = "False"
    load(reg, *world)
    assert a(reg, f"a.{ZONE}") == a(reg, f"b.{ZONE}") == []


def test_listenerset_acceptance_moves_its_routes() -> None:
    # The controller accepts the set later (a watch MODIFIED event): its routes appear; it
    # withdraws acceptance: they go.
    reg = registry()
    world = _set_world(accepted=None)
    load(reg, *world)
    assert a(reg, f"a.{ZONE}") == []
    load(reg, listenerset("apps", "team", ("infra", "eg"), [("a", f"a.{ZONE}", "Same", "HTTPS")]))
    assert a(reg, f"a.{ZONE}") == [GW_IP]
    load(reg, listenerset("apps", "team", ("infra", "eg"), [("a", f"a.{ZONE}", "Same", "HTTPS")], accepted=False))  # fmt: skip
    assert a(reg, f"a.{ZONE}") == []


def test_route_status_for_the_listenerset_parent() -> None:
    # The route's status.parents entry is for the ListenerSet (the parentRef it names): an
    # entry saying Accepted=False there, or one for the Gateway instead, publishes nothing.
    reg = registry()
    world = _set_world()
    ref = {"kind": "ListenerSet", "name": "team", "sectionName": "a"}
    rejected = httproute("apps", "ra", [], [ref], accepted=False)
    wrong = httproute("apps", "ra", [], [ref])
    wrong["status"] = route_status([("infra", "eg")])
    load(reg, *world[:2], rejected)
    assert a(reg, f"a.{ZONE}") == []
    load(reg, wrong)
    assert a(reg, f"a.{ZONE}") == []
    load(reg, world[2])
    assert a(reg, f"a.{ZONE}") == [GW_IP]


def test_listenerset_target_wins_over_its_gateways() -> None:
    # external-dns docs/sources/gateway-api.md: "When a Route references a ListenerSet, the
    # ListenerSet target annotation takes precedence over the parent Gateway's".
    reg = registry()
    target = "external-dns.alpha.kubernetes.io/target"
    world = _set_world(annotations={target: "10.9.9.9"})
    world[0] = gateway("infra", "eg", [GW_IP], [("https", f"*.{ZONE}")], allowed_listeners="All", annotations={target: "10.8.8.8"})  # fmt: skip
    direct = httproute("apps", "direct", [f"direct.{ZONE}"], [("infra", "eg")])
    load(reg, *world, direct)
    assert a(reg, f"a.{ZONE}") == ["10.9.9.9"]
    assert a(reg, f"direct.{ZONE}") == ["10.8.8.8"]  # through the Gateway itself


# --- gateway-hostname-source / ingress-hostname-source ------------------------------------------

SOURCE = "external-dns.alpha.kubernetes.io/gateway-hostname-source"
HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"


@pytest.mark.parametrize(
    ("spec", "source", "want"),
    [
        # external-dns source/gateway.go hosts(): unset, the spec's hostnames (none: the
        # listener's) and the annotation's.
        ([], None, ["extra", "web"]),
        (["app"], None, ["app", "extra"]),
        # annotation-only: the annotation's alone, no listener hostname.
        (["app"], "annotation-only", ["extra"]),
        ([], "annotation-only", ["extra"]),
        # defined-hosts-only: the spec's alone; none at all publishes nothing (a redirect
        # route on the HTTP listener).
        (["app"], "defined-hosts-only", ["app"]),
        ([], "defined-hosts-only", []),
        # Compared case-insensitively; anything else is the default, with a warning.
        (["app"], "Annotation-Only", ["extra"]),
        (["app"], "spec-only", ["app", "extra"]),
    ],
)
def test_gateway_hostname_source(spec: list[str], source: str | None, want: list[str]) -> None:
    reg = registry()
    annotations = {HOSTNAME: f"extra.{ZONE}"}
    if source is not None:
        annotations[SOURCE] = source
    load(
        reg,
        gateway("infra", "eg", [GW_IP], [("https", f"web.{ZONE}"), ("wild", f"*.{ZONE}")]),
        httproute(
            "apps", "r", [f"{h}.{ZONE}" for h in spec], [("infra", "eg")], annotations=annotations
        ),  # fmt: skip
    )
    published = [h for h in ("app", "extra", "web") if a(reg, f"{h}.{ZONE}")]
    assert published == want


def test_gateway_hostname_source_on_a_tcproute() -> None:
    # A TCPRoute has no spec hostnames: defined-hosts-only leaves it nothing to publish.
    reg = registry()
    load(
        reg,
        gateway("infra", "l4", [GW_IP], [("mqtt", None, "All", "TCP", 1883)]),
        tcproute(
            "apps",
            "m",
            [("infra", "l4")],
            annotations={HOSTNAME: f"m.{ZONE}", SOURCE: "defined-hosts-only"},
        ),  # fmt: skip
        tcproute(
            "apps",
            "n",
            [("infra", "l4")],
            annotations={HOSTNAME: f"n.{ZONE}", SOURCE: "annotation-only"},
        ),  # fmt: skip
    )
    assert a(reg, f"m.{ZONE}") == []
    assert a(reg, f"n.{ZONE}") == [GW_IP]


def test_bad_hostname_source_is_counted() -> None:
    before = objects.SKIPPED[("HTTPRoute", f"metadata.annotations[{annotations.GATEWAY_HOSTNAME_SOURCE}]")]  # fmt: skip
    slim(httproute("apps", "r", [], ["eg"], annotations={SOURCE: "both"}))
    after = objects.SKIPPED[("HTTPRoute", f"metadata.annotations[{annotations.GATEWAY_HOSTNAME_SOURCE}]")]  # fmt: skip
    assert after == before + 1


@pytest.mark.parametrize(
    ("source", "want"),
    [
        # external-dns source/ingress.go: unset, the rules' hosts and the annotation's.
        (None, ["extra", "rule"]),
        ("defined-hosts-only", ["rule"]),
        ("annotation-only", ["extra"]),
    ],
)
def test_ingress_hostname_source(source: str | None, want: list[str]) -> None:
    reg = registry()
    annotations = {HOSTNAME: f"extra.{ZONE}"}
    if source is not None:
        annotations["external-dns.alpha.kubernetes.io/ingress-hostname-source"] = source
    load(reg, ingress("apps", "i", [f"rule.{ZONE}"], ["10.0.0.7"], annotations=annotations))
    assert [h for h in ("extra", "rule") if a(reg, f"{h}.{ZONE}")] == want


# --- annotation prefixes -------------------------------------------------------------------------


def test_external_dns_annotation_prefixes() -> None:
    # external-dns annotations docs ("Annotation prefix"): external-dns.kubernetes.io/ since
    # v0.22.0, external-dns.alpha.kubernetes.io/ before; on conflict the new prefix wins.
    reg = registry()
    both = {
        "external-dns.kubernetes.io/hostname": f"new.{ZONE}",
        "external-dns.kubernetes.io/target": "10.0.0.2",
        "external-dns.alpha.kubernetes.io/target": "10.0.0.1",
        "external-dns.kubernetes.io/ttl": "90",
    }
    load(reg, ingress("apps", "i", [], ["10.0.0.7"], annotations=both))
    assert a(reg, f"new.{ZONE}") == ["10.0.0.2"]
    obj = slim(ingress("apps", "i", [], [], annotations=both))
    assert obj is not None and obj.hints.ttl == 90  # type: ignore[union-attr]
