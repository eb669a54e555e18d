"""Route attachment against an independent reading of external-dns: random Gateways (listener
protocols, ports, hostnames, allowedRoutes namespaces and kinds) and a random HTTPRoute or
TLSRoute (parentRefs with and without sectionName and port, spec hostnames, a hostname
annotation, each parent's Accepted condition) go through kdns's registry and through a small
model of external-dns's source/gateway.go (gatewayRouteResolver.resolve, resolveParentRef,
matchRouteToListener, routeIsAllowed, gwMatchingHost, gwProtocolMatches): every hostname in the
zone, and the addresses it answers, must be the same. The model is written here from that code,
not from kdns's; TCPRoute is left out on purpose (external-dns still lets it onto TLS listeners,
which Gateway API v1.5 no longer does, and kdns follows v1.5)."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from kdns.dns import names
from tests.test_gateway import ZONE, load, registry
from tests.test_gateway_controllers import EG, condition, gatewayclass, parent_status

JSON = dict[str, Any]
GROUP = "gateway.networking.k8s.io"
LISTENER_HOSTS = [None, f"*.{ZONE}", f"a.{ZONE}", f"*.x.{ZONE}", f"b.x.{ZONE}"]
ROUTE_HOSTS = [f"a.{ZONE}", f"b.x.{ZONE}", f"*.x.{ZONE}", f"c.{ZONE}", f"*.{ZONE}", f"d.b.x.{ZONE}"]
ANNOTATION = "external-dns.alpha.kubernetes.io/hostname"


def generate(rnd: random.Random) -> tuple[list[JSON], JSON]:
    gateways = []
    for i in range(3):
        listeners = []
        for j in range(rnd.randint(1, 3)):
            protocol = rnd.choice(["HTTP", "HTTPS", "TLS", "TCP"])
            listener: JSON = {"name": f"l{j}", "protocol": protocol, "port": rnd.choice([80, 443, 8443])}  # fmt: skip
            hostname = rnd.choice(LISTENER_HOSTS)
            if hostname and protocol != "TCP":
                listener["hostname"] = hostname
            allowed: JSON = {"namespaces": {"from": rnd.choice(["All", "Same"])}}
            if rnd.random() < 0.2:
                allowed["kinds"] = [{"kind": rnd.choice(["HTTPRoute", "TLSRoute"])}]
            listener["allowedRoutes"] = allowed
            listeners.append(listener)
        gateways.append(
            {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Gateway",
                "metadata": {
                    "namespace": rnd.choice(["infra", "apps"]),
                    "name": f"g{i}",
                    "generation": 1,
                },  # fmt: skip
                "spec": {"gatewayClassName": "eg", "listeners": listeners},
                "status": {"addresses": [{"type": "IPAddress", "value": f"192.168.7.{i + 1}"}]},
            }
        )
    refs = []
    for gw in rnd.sample(gateways, rnd.randint(1, 2)):
        ref: JSON = {"name": gw["metadata"]["name"], "namespace": gw["metadata"]["namespace"]}
        if rnd.random() < 0.4:
            ref["sectionName"] = rnd.choice(gw["spec"]["listeners"])["name"]
        if rnd.random() < 0.2:
            ref["port"] = rnd.choice([80, 443, 8443])
        refs.append(ref)
    hostnames = rnd.sample(ROUTE_HOSTS, rnd.randint(0, 2))
    annotations = {ANNOTATION: rnd.choice(ROUTE_HOSTS)} if rnd.random() < 0.25 else {}
    route: JSON = {
        "apiVersion": f"{GROUP}/v1",
        "kind": rnd.choice(["HTTPRoute", "TLSRoute"]),
        "metadata": {
            "namespace": rnd.choice(["infra", "apps"]),
            "name": "r",
            "generation": 1,
            "annotations": annotations,
        },  # fmt: skip
        "spec": {"parentRefs": refs, **({"hostnames": hostnames} if hostnames else {})},
        "status": {
            "parents": [
                parent_status(EG, r, condition("Accepted", rnd.random() < 0.85)) for r in refs
            ]
        },  # fmt: skip
    }
    return gateways, route


def matching_host(a: str, b: str) -> str | None:
    """gwMatchingHost: the more specific of two overlapping hosts ("" matches anything)."""
    if a == "":
        return b
    if b == "" or a == b:
        return a
    if len(b) < len(a) or (len(a) == len(b) and b.startswith("*.")):
        a, b = b, a
    return b if a.startswith("*.") and b.endswith(a[1:]) else None


def external_dns(gateways: list[JSON], route: JSON) -> dict[str, list[str]]:
    """hostname -> targets, as external-dns's gateway source computes them for one route."""
    meta, spec = route["metadata"], route["spec"]
    hosts = list(spec.get("hostnames") or [""])  # no spec hostnames: the listeners'
    if ANNOTATION in meta["annotations"]:
        hosts.append(meta["annotations"][ANNOTATION])
    by_key = {(g["metadata"]["namespace"], g["metadata"]["name"]): g for g in gateways}
    out: dict[str, set[str]] = {}
    for rps in route["status"]["parents"]:
        ref = rps["parentRef"]
        ns = ref.get("namespace") or meta["namespace"]
        if not any(r["name"] == ref["name"] and (r.get("namespace") or meta["namespace"]) == ns for r in spec["parentRefs"]):  # fmt: skip
            continue
        gw = by_key.get((ns, ref["name"]))
        accepted = [c["status"] == "True" for c in rps["conditions"] if c["type"] == "Accepted"]
        if gw is None or not accepted[:1] == [True]:
            continue
        section = ref.get("sectionName", "")
        for listener in gw["spec"]["listeners"]:
            if section and listener["name"] != section:
                continue
            protocol = "HTTP" if listener["protocol"] == "HTTPS" else listener["protocol"]
            if protocol != {"HTTPRoute": "HTTP", "TLSRoute": "TLS"}[route["kind"]]:
                continue
            if ref.get("port") and ref["port"] != listener["port"]:
                continue
            allowed = listener["allowedRoutes"]
            if allowed["namespaces"]["from"] == "Same" and gw["metadata"]["namespace"] != meta["namespace"]:  # fmt: skip
                continue
            if allowed.get("kinds") and not any(k["kind"] == route["kind"] for k in allowed["kinds"]):  # fmt: skip
                continue
            for host in hosts:
                if not listener.get("hostname") and host == "":
                    continue
                match = matching_host(listener.get("hostname", ""), host)
                if match is not None:
                    out.setdefault(match, set()).add(gw["status"]["addresses"][0]["value"])
    return {h: sorted(v) for h, v in out.items() if h == ZONE or h.endswith("." + ZONE)}


def kdns(gateways: list[JSON], route: JSON) -> dict[str, list[str]]:
    reg = registry()
    load(reg, gatewayclass("eg"), *gateways, route)
    out = {}
    for wire in reg.gateway.names_of.get((route["kind"], route["metadata"]["namespace"], "r"), ()):
        records = reg.records(wire).get(1, ())
        out[names.to_text(wire).rstrip(".")] = sorted(str(ipaddress.ip_address(r)) for r in records)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_route_names_and_addresses_match_external_dns(seed: int) -> None:
    rnd = random.Random(seed)
    published = combined = 0
    for _ in range(1500):
        gateways, route = generate(rnd)
        want = external_dns(gateways, route)
        assert kdns(gateways, route) == want, (route, gateways)
        published += bool(want)
        combined += any(len(v) > 1 for v in want.values())
    # Not vacuous: many routes publish names, some through several Gateways at once.
    assert published > 300 and combined > 10, (published, combined)
