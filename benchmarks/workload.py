"""The benchmark's cluster and its query mixes, all deterministic (seeded).

``cluster_objects()`` is the manifest kdns serves (and NSD's zone is transferred from): 1,050
Services and 3,400 endpoints across 30 namespaces: ClusterIP Services with named ports (a third
of them dual-stack, so AAAA has answers), headless Services whose endpoints have hostnames
(StatefulSet style), and a few ExternalName Services.

The mixes are dnsperf data files (``NAME TYPE`` per line):

- ``plain``: cluster names as pods ask them: Service A and AAAA, SRV of named ports, headless
  A, PTR of Service and endpoint IPs (``edns`` is the same file sent with ``dnsperf -e``);
- ``nxdomain``: a search-path mix: 90% NXDOMAIN names of ndots:5 walks
  (``x.<ns>.svc.cluster.local``, ``x.svc.cluster.local``, ``x.cluster.local``) over more than
  20,000 distinct names, 10% existing Service names.
"""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path
from typing import Any

ZONE = "cluster.local"
NAMESPACES = 30
SERVICES = 1050
ENDPOINTS = 3400
EXTERNAL_NAME = 20  # Services of type ExternalName
HEADLESS = 180  # headless Services, 5 endpoints each (900); the rest spread over ClusterIPs

MIXES = ("plain", "edns", "cookie", "nxdomain", "fresh", "trace")
EDNS_MIXES = {"edns", "cookie"}  # sent with dnsperf -e
# Sent with one client COOKIE option (RFC 7873 4.1) on every query, as a resolver that keeps its
# client cookie per server does (dnsperf -E code:hex-value).
COOKIE_OPTION = "10:0123456789abcdef"
OPTION_MIXES = {"cookie": COOKIE_OPTION}

JSON = dict[str, Any]


class Cluster:
    """The generated objects plus the names the mixes draw from."""

    def __init__(self) -> None:
        self.objects: list[JSON] = []
        self.a_names: list[str] = []  # ClusterIP Services (A)
        self.aaaa_names: list[str] = []  # dual-stack Services (AAAA)
        self.srv_names: list[str] = []  # _port._tcp.svc.ns.svc.cluster.local
        self.headless_names: list[str] = []  # headless Services (A: every endpoint)
        self.ptr_names: list[str] = []  # reverse names of Service and endpoint IPs
        self.namespaces: list[str] = []


def _ns(i: int) -> str:
    return f"team{i:02d}"


def _meta(ns: str | None, name: str, labels: dict[str, str] | None = None) -> JSON:
    meta: JSON = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    return meta


def _reverse(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def cluster_objects() -> Cluster:
    """Namespaces, Services and EndpointSlices: 1,050 Services, 3,400 endpoints."""
    c = Cluster()
    c.namespaces = [_ns(i) for i in range(NAMESPACES)]
    c.objects += [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(None, n)} for n in c.namespaces
    ]
    cluster_ip = SERVICES - HEADLESS - EXTERNAL_NAME
    left = ENDPOINTS - HEADLESS * 5  # endpoints for ClusterIP Services
    per, extra = divmod(left, cluster_ip)  # the first `extra` Services get one more
    ep = 0
    for s in range(SERVICES):
        ns = c.namespaces[s % NAMESPACES]
        name = f"svc{s:04d}"
        fqdn = f"{name}.{ns}.svc.{ZONE}"
        if s < EXTERNAL_NAME:
            spec: JSON = {"type": "ExternalName", "externalName": f"db{s}.example.net"}
            c.objects.append(_service(ns, name, spec))
            continue
        headless = s < EXTERNAL_NAME + HEADLESS
        ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
        if s % 3 == 0:
            ports.append({"name": "metrics", "port": 9090, "protocol": "TCP"})
        spec = {"type": "ClusterIP", "ports": ports}
        if headless:
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            count = 5
            c.headless_names.append(fqdn)
        else:
            ip4 = str(ipaddress.ip_address("10.96.0.0") + 10 + s)
            ips = [ip4]
            if s % 3 == 1:  # dual-stack
                ips.append(str(ipaddress.ip_address("fd00:10:96::") + 10 + s))
                c.aaaa_names.append(fqdn)
                c.ptr_names.append(_reverse(ips[1]))
            spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
            spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in ips]
            count = per + (1 if s - EXTERNAL_NAME - HEADLESS < extra else 0)
            c.a_names.append(fqdn)
            c.ptr_names.append(_reverse(ip4))
        c.srv_names += [f"_{p['name']}._tcp.{fqdn}" for p in ports]
        c.objects.append(_service(ns, name, spec))
        endpoints = []
        for i in range(count):
            ip = str(ipaddress.ip_address("10.128.0.0") + 10 + ep)
            ep += 1
            endpoint: JSON = {"addresses": [ip], "conditions": {"ready": True}}
            endpoint["targetRef"] = {"kind": "Pod", "namespace": ns, "name": f"{name}-{i}"}
            if headless:
                endpoint["hostname"] = f"{name}-{i}"
            endpoints.append(endpoint)
            if ep % 4 == 0:
                c.ptr_names.append(_reverse(ip))
        c.objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": _meta(ns, f"{name}-abcde", {"kubernetes.io/service-name": name}),
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                + (
                    [{"name": "metrics", "port": 9090, "protocol": "TCP"}] if len(ports) > 1 else []
                ),
            }
        )
    assert ep == ENDPOINTS, ep
    return c


def _service(ns: str, name: str, spec: JSON) -> JSON:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ns, name), "spec": spec}


def write_objects(cluster: Cluster, path: Path) -> Path:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": cluster.objects}))
    return path


def plain_queries(cluster: Cluster, count: int = 20_000, seed: int = 1) -> list[str]:
    """Cluster names by weight: A 50%, AAAA 15%, SRV 15%, PTR 15%, headless A 5%."""
    rng = random.Random(seed)
    pools = [
        (cluster.a_names, "A", 50),
        (cluster.aaaa_names, "AAAA", 15),
        (cluster.srv_names, "SRV", 15),
        (cluster.ptr_names, "PTR", 15),
        (cluster.headless_names, "A", 5),
    ]
    lines = []
    for names, rdtype, weight in pools:
        lines += [f"{rng.choice(names)} {rdtype}" for _ in range(count * weight // 100)]
    rng.shuffle(lines)
    return lines


def walk_names(name: str, ns: str) -> list[str]:
    """What an ndots:5 resolver in namespace ``ns`` asks before ``name`` itself."""
    return [f"{name}.{ns}.svc.{ZONE}", f"{name}.svc.{ZONE}", f"{name}.{ZONE}"]


def nxdomain_queries(cluster: Cluster, distinct: int = 21_000, seed: int = 2) -> list[str]:
    """90% NXDOMAIN search-path names (``distinct`` of them, all different), 10% Service A."""
    rng = random.Random(seed)
    lines = []
    for i in range(distinct // 3):
        ns = rng.choice(cluster.namespaces)
        lines += [f"{n} A" for n in walk_names(f"api{i}.example.com", ns)]
    lines += [f"{rng.choice(cluster.a_names)} A" for _ in range(len(lines) // 9)]
    rng.shuffle(lines)
    return lines


FRESH_NAMES = (
    3_300_000  # (c2): enough for a max run of 8 s at 410k qps (faster than NSD), each once
)


def fresh_nxdomain_queries(cluster: Cluster, count: int = FRESH_NAMES, seed: int = 5) -> list[str]:
    """Search-path NXDOMAIN names never asked before: ``count`` distinct names, each asked
    once (walks of three steps, as pods send them), so every query is a first sight."""
    rng = random.Random(seed)
    lines = []
    for i in range(count // 3):
        ns = rng.choice(cluster.namespaces)
        lines += [f"{n} A" for n in walk_names(f"new{i}.example.com", ns)]
    return lines


def write_queries(lines: list[str], path: Path) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
