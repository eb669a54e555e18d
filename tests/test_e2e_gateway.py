"""End to end: gateway zones. The real kdns process watches the Kubernetes API test server
(Gateway API and Ingress resources served like CRDs: list/watch, bookmarks, 410, and 404 while
not installed) and dnspython asks what a LAN device would: the hostnames of HTTPRoutes,
GRPCRoutes, TLSRoutes, Ingresses and annotated LoadBalancer Services in home.example.com.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.rcode
import dns.rdatatype
import pytest

from tests.k8sapi import (
    CORE,
    GATEWAY_API,
    INGRESS,
    K8sApi,
    gateway,
    gatewayclass,
    grpcroute,
    httproute,
    ingress,
    listenerset,
    namespace,
    route_status,
    service,
    tcproute,
    tlsroute,
)
from tests.kdnsproc import Kdns
from tests.test_e2e_watch import eventually

ZONE = "home.example.com"
GRAFANA = f"grafana.{ZONE}"
INTERNAL_IP = "192.168.1.240"
EXTERNAL_IP = "192.168.1.241"
FALLBACK_IP = "192.168.1.58"
EVERYTHING = (*CORE, *GATEWAY_API, *INGRESS)


def base_objects() -> list[dict[str, Any]]:
    return [
        namespace("default"),
        namespace("infra"),
        namespace("apps"),
        gateway(
            "infra",
            "internal",
            [INTERNAL_IP],
            # TLS passthrough for MQTT: a TLSRoute attaches to a TLS listener (GEP-2643).
            [("https", f"*.{ZONE}"), ("mqtt", f"*.{ZONE}", "All", "TLS", 8883)],
        ),
        gateway("infra", "external", [EXTERNAL_IP], [("https", f"*.{ZONE}")]),
        httproute("apps", "grafana", [GRAFANA], [("infra", "internal")]),
        httproute("apps", "blog", [f"blog.{ZONE}"], [("infra", "external")]),
        grpcroute("apps", "api", [f"grpc.{ZONE}"], [("infra", "internal")]),
        tlsroute("apps", "mqtt", [f"mqtt.{ZONE}"], [("infra", "internal")]),
    ]


def a_records(proc: Kdns, name: str, rdtype: str = "A") -> list[str] | None:
    """Sorted answer records (the whole chain for a CNAME), None for a non-NOERROR answer."""
    resp = proc.query(name, rdtype)
    if resp.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(r.to_text() for rrset in resp.answer for r in rrset)


def rcode(proc: Kdns, name: str) -> int:
    return proc.query(name, "A").rcode()


@pytest.fixture
def api() -> Iterator[K8sApi]:
    with K8sApi(base_objects(), bookmark_interval=0.5, installed=EVERYTHING) as server:
        yield server


def start(api: K8sApi, tmp_path: Path, *extra: str, toml: str = "") -> Kdns:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    args = ["--kubeconfig", str(kubeconfig), "--lameduck", "0", "--gateway-zone", ZONE]
    if toml:
        path = tmp_path / "kdns.toml"
        path.write_text(toml)
        args += ["-c", str(path)]
    return Kdns(*args, *extra)


@pytest.fixture
def kdns(api: K8sApi, tmp_path: Path) -> Iterator[Kdns]:
    with start(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        yield proc


def test_route_hostnames_answer_their_gateways_address(kdns: Kdns) -> None:
    assert a_records(kdns, GRAFANA) == [INTERNAL_IP]
    assert a_records(kdns, f"blog.{ZONE}") == [EXTERNAL_IP]
    assert a_records(kdns, f"grpc.{ZONE}") == [INTERNAL_IP]  # GRPCRoute (v1)
    assert a_records(kdns, f"mqtt.{ZONE}") == [INTERNAL_IP]  # TLSRoute (v1), TLS listener
    assert a_records(kdns, GRAFANA.upper()) == [INTERNAL_IP]  # case-insensitive
    assert rcode(kdns, f"nothing.{ZONE}") == dns.rcode.NXDOMAIN
    soa = kdns.query(f"nothing.{ZONE}", "A").authority
    assert soa and soa[0].rdtype == dns.rdatatype.SOA  # RFC 2308: our zone's SOA
    assert kdns.query(GRAFANA, "AAAA").rcode() == dns.rcode.NOERROR  # NODATA, not NXDOMAIN
    assert kdns.query(GRAFANA, "AAAA").answer == []
    assert kdns.query(ZONE, "SOA").answer  # the apex is ours


def test_gateway_address_change_is_followed(api: K8sApi, kdns: Kdns) -> None:
    api.modify(
        gateway("infra", "internal", ["192.168.1.250", "fd00::250"], [("https", f"*.{ZONE}")])
    )
    eventually(lambda: a_records(kdns, GRAFANA) == ["192.168.1.250"])
    assert a_records(kdns, GRAFANA, "AAAA") == ["fd00::250"]
    assert a_records(kdns, f"grpc.{ZONE}") == ["192.168.1.250"]  # every attached route follows
    assert a_records(kdns, f"blog.{ZONE}") == [EXTERNAL_IP]  # the other Gateway's do not


def test_route_moved_to_another_gateway_and_detached(api: K8sApi, kdns: Kdns) -> None:
    api.modify(httproute("apps", "grafana", [GRAFANA], [("infra", "external")]))
    eventually(lambda: a_records(kdns, GRAFANA) == [EXTERNAL_IP])
    api.modify(httproute("apps", "grafana", [GRAFANA], []))  # no parentRefs: detached
    eventually(lambda: rcode(kdns, GRAFANA) == dns.rcode.NXDOMAIN)
    api.modify(httproute("apps", "grafana", [GRAFANA], [("infra", "internal")]))
    eventually(lambda: a_records(kdns, GRAFANA) == [INTERNAL_IP])
    api.delete("HTTPRoute", "apps", "grafana")
    eventually(lambda: rcode(kdns, GRAFANA) == dns.rcode.NXDOMAIN)


def test_listener_hostname_and_section_name(api: K8sApi, kdns: Kdns) -> None:
    """A route without hostnames takes its listener's; sectionName picks the listener."""
    api.add(
        gateway(
            "infra",
            "multi",
            ["192.168.1.245"],
            [("wiki", f"wiki.{ZONE}"), ("media", f"*.media.{ZONE}")],
        )
    )
    api.add(httproute("apps", "wiki", [], [("infra", "multi", "wiki")]))
    api.add(
        httproute(
            "apps",
            "jelly",
            [f"jellyfin.media.{ZONE}", f"other.{ZONE}"],
            [("infra", "multi", "media")],
        )
    )
    eventually(lambda: a_records(kdns, f"wiki.{ZONE}") == ["192.168.1.245"])
    eventually(lambda: a_records(kdns, f"jellyfin.media.{ZONE}") == ["192.168.1.245"])
    # other.home.example.com does not match the "media" listener's *.media.home.example.com.
    assert rcode(kdns, f"other.{ZONE}") == dns.rcode.NXDOMAIN


def test_detached_route_falls_back_to_the_wildcard_record(api: K8sApi, tmp_path: Path) -> None:
    """A local zone of the same name holds `* A 192.168.1.58`: a route's name wins while it
    is attached (a more specific name always wins), then falls back to the wildcard."""
    toml = f'[[zones]]\nname = "{ZONE}"\nrecords = ["* A {FALLBACK_IP}"]\n'
    with start(api, tmp_path, toml=toml) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        assert a_records(proc, GRAFANA) == [INTERNAL_IP]
        assert a_records(proc, f"unknown.{ZONE}") == [FALLBACK_IP]
        api.modify(httproute("apps", "grafana", [GRAFANA], []))
        eventually(lambda: a_records(proc, GRAFANA) == [FALLBACK_IP])
        api.modify(httproute("apps", "grafana", [GRAFANA], [("infra", "internal")]))
        eventually(lambda: a_records(proc, GRAFANA) == [INTERNAL_IP])


def test_filter_by_gateway(api: K8sApi, tmp_path: Path) -> None:
    """One kdns for the internal Gateway, one for the external: each answers only its own."""
    internal = '[gateway]\ngateways = ["infra/internal"]\n'
    external = '[gateway]\ngateways = ["infra/external"]\n'
    (tmp_path / "i").mkdir()
    (tmp_path / "e").mkdir()
    with (
        start(api, tmp_path / "i", toml=internal) as inner,
        start(api, tmp_path / "e", toml=external) as outer,
    ):
        eventually(lambda: inner.get("ready")[0] == 200 and outer.get("ready")[0] == 200)
        assert a_records(inner, GRAFANA) == [INTERNAL_IP]
        assert rcode(inner, f"blog.{ZONE}") == dns.rcode.NXDOMAIN
        assert a_records(outer, f"blog.{ZONE}") == [EXTERNAL_IP]
        assert rcode(outer, GRAFANA) == dns.rcode.NXDOMAIN
        # A route on both Gateways: each kdns answers its own Gateway's address.
        api.add(
            httproute(
                "apps", "both", [f"both.{ZONE}"], [("infra", "internal"), ("infra", "external")]
            )
        )
        eventually(lambda: a_records(inner, f"both.{ZONE}") == [INTERNAL_IP])
        eventually(lambda: a_records(outer, f"both.{ZONE}") == [EXTERNAL_IP])


def test_filter_by_label(api: K8sApi, tmp_path: Path) -> None:
    api.add(
        httproute(
            "apps", "lan", [f"lan-only.{ZONE}"], [("infra", "internal")], labels={"dns": "lan"}
        )
    )
    with start(api, tmp_path, toml='[gateway]\nlabel = "dns=lan"\n') as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        assert a_records(proc, f"lan-only.{ZONE}") == [INTERNAL_IP]
        assert rcode(proc, GRAFANA) == dns.rcode.NXDOMAIN  # unlabelled


def test_conflicting_routes_resolve_deterministically_and_log_once(api: K8sApi, kdns: Kdns) -> None:
    # The same hostname on the external Gateway, claimed by a route in a later namespace/name.
    api.add(httproute("zz", "grafana-copy", [GRAFANA], [("infra", "external")]))
    api.add(httproute("apps", "poke", [f"poke.{ZONE}"], [("infra", "external")]))
    eventually(lambda: a_records(kdns, f"poke.{ZONE}") == [EXTERNAL_IP])
    assert a_records(kdns, GRAFANA) == [INTERNAL_IP]  # apps/grafana sorts first: it wins
    api.modify(
        httproute("apps", "poke", [f"poke.{ZONE}", f"poke2.{ZONE}"], [("infra", "external")])
    )
    # The external Gateway changes (a listener more): its routes re-render, grafana included.
    listeners = [("https", f"*.{ZONE}"), ("http", f"*.{ZONE}")]
    api.modify(gateway("infra", "external", [EXTERNAL_IP], listeners))
    eventually(lambda: a_records(kdns, f"poke2.{ZONE}") == [EXTERNAL_IP])
    assert kdns.log.count(f"{GRAFANA}. is claimed with different addresses") == 1


def test_ingress_with_ip_and_with_hostname(api: K8sApi, kdns: Kdns) -> None:
    api.add(ingress("apps", "photos", [f"photos.{ZONE}", f"img.{ZONE}"], lb_ips=["192.168.1.230"]))
    api.add(ingress("apps", "cloud", [f"cloud.{ZONE}"], lb_hostnames=["lb.provider.example.net"]))
    eventually(lambda: a_records(kdns, f"photos.{ZONE}") == ["192.168.1.230"])
    assert a_records(kdns, f"img.{ZONE}") == ["192.168.1.230"]
    eventually(lambda: a_records(kdns, f"cloud.{ZONE}", "CNAME") == ["lb.provider.example.net."])
    resp = kdns.query(f"cloud.{ZONE}", "A")
    assert resp.rcode() == dns.rcode.NOERROR
    assert [rrset.rdtype for rrset in resp.answer][:1] == [dns.rdatatype.CNAME]
    api.modify(ingress("apps", "photos", [f"photos.{ZONE}"], lb_ips=["192.168.1.231"]))
    eventually(lambda: a_records(kdns, f"photos.{ZONE}") == ["192.168.1.231"])
    eventually(lambda: rcode(kdns, f"img.{ZONE}") == dns.rcode.NXDOMAIN)


def test_annotated_load_balancer_service(api: K8sApi, kdns: Kdns) -> None:
    annotations = {"external-dns.alpha.kubernetes.io/hostname": f"nas.{ZONE},files.{ZONE}"}
    svc = service(
        "apps",
        "nas",
        "10.96.5.5",
        [80],
        type="LoadBalancer",
        lb_ips=["192.168.1.220"],
        annotations=annotations,
    )
    api.add(svc)
    eventually(lambda: a_records(kdns, f"nas.{ZONE}") == ["192.168.1.220"])
    assert a_records(kdns, f"files.{ZONE}") == ["192.168.1.220"]
    assert a_records(kdns, "nas.apps.svc.cluster.local") == ["10.96.5.5"]  # the cluster name too
    api.add(
        service(
            "apps",
            "mqtt-broker",
            "10.96.5.6",
            [1883],
            type="LoadBalancer",
            lb_ips=["192.168.1.221"],
            annotations={"kdns.io/hostname": f"broker.{ZONE}"},
        )
    )
    eventually(lambda: a_records(kdns, f"broker.{ZONE}") == ["192.168.1.221"])
    api.delete("Service", "apps", "nas")
    eventually(lambda: rcode(kdns, f"nas.{ZONE}") == dns.rcode.NXDOMAIN)


def test_crds_absent_at_start_then_installed(tmp_path: Path) -> None:
    """No Gateway API CRDs: kdns is ready (Ingress and Services still answer), logs the
    absence once per kind, and serves the routes once the CRDs and objects appear."""
    objects = [
        namespace("apps"),
        ingress("apps", "photos", [f"photos.{ZONE}"], lb_ips=["192.168.1.230"]),
    ]
    with K8sApi(objects, bookmark_interval=0.5, installed=(*CORE, *INGRESS)) as api:
        with start(api, tmp_path) as proc:
            eventually(lambda: proc.get("ready")[0] == 200, timeout=10)
            assert a_records(proc, f"photos.{ZONE}") == ["192.168.1.230"]
            assert rcode(proc, GRAFANA) == dns.rcode.NXDOMAIN
            api.install(*GATEWAY_API)
            api.load([gateway("infra", "internal", [INTERNAL_IP], [("https", f"*.{ZONE}")])])
            api.load([httproute("apps", "grafana", [GRAFANA], [("infra", "internal")])])
            eventually(lambda: a_records(proc, GRAFANA) == [INTERNAL_IP], timeout=40)
            log = proc.log
            assert log.count("HTTPRoute: not served by the API server") == 1
            assert "HTTPRoute: now served by the API server" in log
            # The CRD removed again: its objects go, and the name with them.
            api.uninstall("httproutes")
            eventually(lambda: rcode(proc, GRAFANA) == dns.rcode.NXDOMAIN, timeout=40)
            assert proc.get("ready")[0] == 200


def test_watch_relists_gateway_api_after_410(api: K8sApi, kdns: Kdns) -> None:
    lists = api.count("list", "httproutes")
    api.cut_watches("httproutes")
    api.add(httproute("apps", "during", [f"during.{ZONE}"], [("infra", "internal")]))
    api.compact()
    eventually(lambda: api.count("list", "httproutes") > lists, timeout=10)
    eventually(lambda: a_records(kdns, f"during.{ZONE}") == [INTERNAL_IP])
    resumed = api.queries("watch", "httproutes")[-1]
    assert resumed.get("allowWatchBookmarks", "").lower() == "true"


def test_gateway_kinds_are_not_watched_without_a_gateway_zone(api: K8sApi, tmp_path: Path) -> None:
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    with Kdns("--kubeconfig", str(kubeconfig), "--lameduck", "0") as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        assert api.count("list", "httproutes") == api.count("list", "ingresses") == 0


def test_attachment_rules_of_the_gateway_api(api: K8sApi, kdns: Kdns) -> None:
    """Issue 20, "wrong today" 1-6 end to end: the API server serves Namespaces with labels and
    routes with the status.parents their controller wrote; each case used to be answered
    (or, for the wildcard, not) on main 6cf769f."""
    api.add(gatewayclass("eg"))  # the class the helpers' route statuses are written by
    api.add(namespace("lan-apps", labels={"dns": "lan"}))
    api.add(namespace("guest", labels={"dns": "guest"}))
    selector = {"from": "Selector", "selector": {"matchLabels": {"dns": "lan"}}}
    api.add(
        gateway(
            "infra",
            "rules",
            ["192.168.1.250"],
            [
                ("web", f"*.{ZONE}", selector, "HTTP", 80),
                ("tls", f"*.{ZONE}", "All", "TLS", 443),
                ("grpc-only", f"*.{ZONE}", "All", "HTTPS", 8443, ["GRPCRoute"]),
            ],
        )
    )
    gw = ("infra", "rules")
    ok = "192.168.1.250"
    api.add(httproute("lan-apps", "in-selector", [f"sel.{ZONE}"], [(*gw, "web")]))
    # 1. allowedRoutes.namespaces.from: Selector: a namespace the selector does not match.
    api.add(httproute("guest", "outside-selector", [f"guest.{ZONE}"], [(*gw, "web")]))
    # 2. route kind vs listener protocol: an HTTPRoute on the TLS listener, a TLSRoute on HTTP.
    api.add(httproute("lan-apps", "http-on-tls", [f"h-on-t.{ZONE}"], [(*gw, "tls")]))
    api.add(tlsroute("lan-apps", "tls-on-http", [f"t-on-h.{ZONE}"], [(*gw, "web")]))
    api.add(tlsroute("lan-apps", "tls-on-tls", [f"t-on-t.{ZONE}"], [(*gw, "tls")]))
    # 3. allowedRoutes.kinds: the grpc-only listener lists GRPCRoute alone.
    api.add(httproute("lan-apps", "http-on-grpc", [f"h-on-g.{ZONE}"], [(*gw, "grpc-only")]))
    api.add(grpcroute("lan-apps", "grpc-on-grpc", [f"g-on-g.{ZONE}"], [(*gw, "grpc-only")]))
    # 4. parentRef.port: 8080 is no listener's port.
    api.add(httproute("lan-apps", "port-8080", [f"p8080.{ZONE}"], [("infra", "rules", "", 8080)]))
    api.add(httproute("lan-apps", "port-80", [f"p80.{ZONE}"], [("infra", "rules", "", 80)]))
    # 5. status.parents: the Gateway rejected it.
    api.add(httproute("lan-apps", "rejected", [f"rejected.{ZONE}"], [(*gw, "web")], accepted=False))
    # 6. Gateway API wildcard below an existing name.
    api.add(httproute("lan-apps", "wild", [f"*.apps.{ZONE}"], [(*gw, "web")]))
    api.add(httproute("lan-apps", "deep", [f"deep.sub.apps.{ZONE}"], [(*gw, "web")]))
    eventually(lambda: a_records(kdns, f"deep.sub.apps.{ZONE}") == [ok])
    for name in ("sel", "t-on-t", "g-on-g", "p80", "other.sub.apps", "sub.apps", "x.apps"):
        assert a_records(kdns, f"{name}.{ZONE}") == [ok], name
    for name in ("guest", "h-on-t", "t-on-h", "h-on-g", "p8080", "rejected"):
        assert rcode(kdns, f"{name}.{ZONE}") == dns.rcode.NXDOMAIN, name
    # The namespace gets the label: its route attaches (Namespace watch -> re-render).
    api.modify(namespace("guest", labels={"dns": "lan"}))
    eventually(lambda: a_records(kdns, f"guest.{ZONE}") == [ok])
    # A new generation the controller has not accepted yet: stale status, not published.
    stale = httproute("lan-apps", "in-selector", [f"sel.{ZONE}"], [(*gw, "web")])
    stale["metadata"]["generation"] = 2
    api.modify(stale)
    eventually(lambda: rcode(kdns, f"sel.{ZONE}") == dns.rcode.NXDOMAIN)
    stale["status"] = route_status([(*gw, "web")], generation=2)
    api.modify(stale)
    eventually(lambda: a_records(kdns, f"sel.{ZONE}") == [ok])


def test_tcp_routes_listener_sets_and_annotations(api: K8sApi, kdns: Kdns) -> None:
    """external-dns annotation parity and ListenerSet parents, served by the API server."""
    api.add(
        gateway(
            "infra",
            "l4",
            ["192.168.1.251"],
            [("mqtt", None, "All", "TCP", 1883)],
            annotations={"external-dns.alpha.kubernetes.io/hostname": f"broker.{ZONE}"},
            allowed_listeners="All",
        )
    )
    api.add(
        tcproute(
            "apps",
            "mqtt",
            [("infra", "l4", "mqtt")],
            annotations={"external-dns.alpha.kubernetes.io/hostname": f"mqtt-tcp.{ZONE}"},
        )
    )
    api.add(
        listenerset(
            "apps", "team", ("infra", "l4"), [("team", f"team.{ZONE}", "Same", "HTTP", 8080)]
        )
    )
    api.add(httproute("apps", "team", [], [{"kind": "ListenerSet", "name": "team"}]))
    api.add(
        ingress(
            "apps",
            "annotated",
            [f"ing.{ZONE}"],
            ["192.168.1.230"],
            annotations={
                "external-dns.alpha.kubernetes.io/hostname": f"ing-extra.{ZONE}",
                "external-dns.alpha.kubernetes.io/ttl": "1m",
            },
        )
    )
    eventually(lambda: a_records(kdns, f"team.{ZONE}") == ["192.168.1.251"])
    assert a_records(kdns, f"broker.{ZONE}") == ["192.168.1.251"]  # the Gateway's annotation
    assert a_records(kdns, f"mqtt-tcp.{ZONE}") == ["192.168.1.251"]  # a TCPRoute's annotation
    assert a_records(kdns, f"ing-extra.{ZONE}") == ["192.168.1.230"]
    assert kdns.query(f"ing.{ZONE}", "A").answer[0].ttl == 60


def test_registry_objects_metric_counts_gateway_kinds(kdns: Kdns) -> None:
    # Issue 20 proof: kdns_registry_objects counts the Gateway API kinds and Ingresses too.
    body = kdns.get("metrics")[1]
    assert 'kdns_registry_objects{kind="HTTPRoute"} 2.0' in body
    assert 'kdns_registry_objects{kind="Gateway"} 2.0' in body
    assert 'kdns_registry_objects{kind="TLSRoute"} 1.0' in body
    assert 'kdns_registry_objects{kind="ListenerSet"} 0.0' in body


VIEWS_TOML = """
[[views]]
name = "lan"
networks = ["127.0.0.2/32"]
gateway_classes = ["eg"]

[[views]]
name = "wan"
networks = ["127.0.0.3/32"]
gateway_classes = ["eg-external"]
"""


def ask_from(proc: Kdns, source: str, name: str) -> tuple[int, list[str]]:
    import dns.message
    import dns.query

    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=proc.port, timeout=3, source=source)  # fmt: skip
    return reply.rcode(), sorted(r.to_text() for rrset in reply.answer for r in rrset)


@pytest.mark.parametrize("mode", ["standard", "killer"])
def test_view_class_filters_per_audience(api: K8sApi, tmp_path: Path, mode: str) -> None:
    # k8s_gateway answers the classes it is given (gatewayClasses), external-dns publishes
    # those of --gateway-class: one deployment per audience. [[views]] gateway_classes gives
    # each client network its own from one kdns. Killer mode's wire cache tags each reply with
    # the view it was made for: the same question bytes from another view never get it, and
    # a change that moves only one view's answer drops that view's copy.
    wiki = f"wiki.{ZONE}"
    api.modify(gateway("infra", "external", [EXTERNAL_IP], [("https", f"*.{ZONE}")], gateway_class="eg-external"))  # fmt: skip
    api.apply(httproute("apps", "wiki", [wiki], [("infra", "internal"), ("infra", "external")]))
    extra = ["--killer"] if mode == "killer" else []
    with start(api, tmp_path, *extra, toml=VIEWS_TOML) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: ask_from(proc, "127.0.0.3", wiki)[1] == [EXTERNAL_IP])
        for _ in range(3):  # asked again and again: served from the wire cache in killer mode
            assert ask_from(proc, "127.0.0.2", wiki) == (dns.rcode.NOERROR, [INTERNAL_IP])
            assert ask_from(proc, "127.0.0.3", wiki) == (dns.rcode.NOERROR, [EXTERNAL_IP])
            # no view: every class, so both Gateways' addresses (external-dns combines a
            # route's parents)
            assert ask_from(proc, "127.0.0.1", wiki) == (dns.rcode.NOERROR, sorted([EXTERNAL_IP, INTERNAL_IP]))  # fmt: skip
            # a name only the other audience's controller claims
            assert ask_from(proc, "127.0.0.2", f"blog.{ZONE}")[0] == dns.rcode.NXDOMAIN
            assert ask_from(proc, "127.0.0.3", f"blog.{ZONE}") == (dns.rcode.NOERROR, [EXTERNAL_IP])  # fmt: skip
            assert ask_from(proc, "127.0.0.3", GRAFANA)[0] == dns.rcode.NXDOMAIN
            assert ask_from(proc, "127.0.0.2", GRAFANA) == (dns.rcode.NOERROR, [INTERNAL_IP])
        # The internal Gateway moves: the LAN's answer and [gateway]'s move, the WAN's does not.
        api.modify(gateway("infra", "internal", ["192.168.1.250"], [("https", f"*.{ZONE}")]))
        eventually(lambda: ask_from(proc, "127.0.0.2", wiki)[1] == ["192.168.1.250"])
        assert ask_from(proc, "127.0.0.3", wiki)[1] == [EXTERNAL_IP]
        assert ask_from(proc, "127.0.0.1", wiki)[1] == sorted([EXTERNAL_IP, "192.168.1.250"])


def test_listenerset_status_and_hostname_source_through_the_api(api: K8sApi, kdns: Kdns) -> None:
    """A ListenerSet's routes answer once its Gateway's controller writes Accepted=True into
    its status (external-dns newListenerSetObject), and stop when a listener is found in
    conflict; gateway-hostname-source: defined-hosts-only keeps a hostless redirect route off
    its listener's hostname."""
    team = f"team.{ZONE}"
    api.add(gateway("infra", "shared", ["192.168.1.252"], [("https", f"*.{ZONE}")], allowed_listeners="All"))  # fmt: skip
    api.add(listenerset("apps", "team", ("infra", "shared"), [("team", team, "Same", "HTTPS")], accepted=None))  # fmt: skip
    api.add(httproute("apps", "team", [], [{"kind": "ListenerSet", "name": "team"}]))
    api.add(
        httproute(
            "apps",
            "redirect",
            [],
            [("infra", "shared")],
            annotations={
                "external-dns.alpha.kubernetes.io/gateway-hostname-source": "defined-hosts-only"
            },  # fmt: skip
        )
    )
    eventually(lambda: api.count("watch", "listenersets") > 0)
    assert rcode(kdns, team) == dns.rcode.NXDOMAIN  # not accepted yet
    api.modify(listenerset("apps", "team", ("infra", "shared"), [("team", team, "Same", "HTTPS")]))  # fmt: skip
    eventually(lambda: a_records(kdns, team) == ["192.168.1.252"])
    api.modify(listenerset("apps", "team", ("infra", "shared"), [("team", team, "Same", "HTTPS")], rejected=["team"]))  # fmt: skip
    eventually(lambda: rcode(kdns, team) == dns.rcode.NXDOMAIN)
    # The redirect route claimed nothing: its listener's *.home.example.com is no name of it.
    assert rcode(kdns, f"anything.{ZONE}") == dns.rcode.NXDOMAIN
