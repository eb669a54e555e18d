"""End to end: k8s_gateway's LoadBalancer Service names through a real kdns process.

kdns watches the Kubernetes API test server (tests/k8sapi.py) and dnspython asks over UDP on
loopback, as a LAN device asks k8s_gateway: ``<name>.<namespace>.<zone>`` answers the
Service's ``.status.loadBalancer.ingress`` (k8s_gateway README, "Service | name.namespace + any
of the configured zones | .status.loadBalancer.ingress"; "Only resolves service of type
LoadBalancer"). The second half starts kdns on what ``kdns import-corefile`` makes of the
k8s_gateway Helm chart's Corefile (tests/fixtures/corefiles/k8s-gateway-chart.Corefile), with
no edit but the test's ports.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import pytest

from kdns.corefile import import_corefile
from tests.dnsupstream import DnsUpstream
from tests.k8sapi import (
    CORE,
    GATEWAY_API,
    INGRESS,
    K8sApi,
    gateway,
    gatewayclass,
    httproute,
    namespace,
    service,
)
from tests.kdnsproc import Kdns
from tests.test_e2e_gateway import a_records, rcode
from tests.test_e2e_watch import eventually

ZONE = "home.example.com"
CORPUS = Path(__file__).resolve().parent / "fixtures" / "corefiles"
CHART = CORPUS / "k8s-gateway-chart.Corefile"


def jellyfin(lb_ips: list[str]) -> dict[str, object]:
    return service("media", "jellyfin", "10.96.7.7", [8096], type="LoadBalancer", lb_ips=lb_ips)


@pytest.fixture
def api() -> Iterator[K8sApi]:
    objects = [namespace("default"), namespace("media"), namespace("infra"), namespace("apps")]
    with K8sApi(
        objects, bookmark_interval=0.5, installed=(*CORE, *GATEWAY_API, *INGRESS)
    ) as server:
        yield server


def start(api: K8sApi, tmp_path: Path, toml: str, upstream: str = "127.0.0.1:9") -> Kdns:
    """kdns on ``toml``; forwarding (the chart's ``forward . /etc/resolv.conf``) goes to a
    loopback upstream, never off the machine."""
    path = tmp_path / "kdns.toml"
    path.write_text(toml)
    kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
    return Kdns(
        "-c", str(path), "--kubeconfig", str(kubeconfig), "--lameduck", "0",
        "--upstream", upstream,
    )  # fmt: skip


def test_service_name_namespace_zone_answers_follows_and_goes(api: K8sApi, tmp_path: Path) -> None:
    toml = f'[gateway]\nzones = ["{ZONE}"]\nservice_names = true\n'
    with start(api, tmp_path, toml) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        name = f"jellyfin.media.{ZONE}"
        # A LoadBalancer the load balancer has not given an address yet: no name (NXDOMAIN,
        # as k8s_gateway: nothing matched in the zone).
        api.add(jellyfin([]))
        eventually(lambda: a_records(proc, "jellyfin.media.svc.cluster.local") == ["10.96.7.7"])
        assert rcode(proc, name) == dns.rcode.NXDOMAIN
        # MetalLB/Cilium writes the address: the name answers it.
        api.modify(jellyfin(["192.168.1.230"]))
        eventually(lambda: a_records(proc, name) == ["192.168.1.230"])
        resp = proc.query(name, "A")
        assert resp.flags & dns.flags.AA
        # A ClusterIP Service has no name (README: LoadBalancer only).
        api.add(service("media", "web", "10.96.7.8", [80]))
        eventually(lambda: a_records(proc, "web.media.svc.cluster.local") == ["10.96.7.8"])
        assert rcode(proc, f"web.media.{ZONE}") == dns.rcode.NXDOMAIN
        # The address moves, then the Service goes: the name follows, then is gone.
        api.modify(jellyfin(["192.168.1.231"]))
        eventually(lambda: a_records(proc, name) == ["192.168.1.231"])
        api.delete("Service", "media", "jellyfin")
        eventually(lambda: rcode(proc, name) == dns.rcode.NXDOMAIN)


def test_service_names_turned_on_and_off_by_a_reload(api: K8sApi, tmp_path: Path) -> None:
    # docs/configuration.md: every [gateway] key reloads live (a new registry is rendered).
    api.add(jellyfin(["192.168.1.230"]))
    toml = f'[gateway]\nzones = ["{ZONE}"]\nservice_names = false\n'
    with start(api, tmp_path, toml) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        name = f"jellyfin.media.{ZONE}"
        eventually(lambda: a_records(proc, "jellyfin.media.svc.cluster.local") == ["10.96.7.7"])
        assert rcode(proc, name) == dns.rcode.NXDOMAIN
        path = tmp_path / "kdns.toml"
        assert proc.proc is not None
        path.write_text(toml.replace("false", "true"))
        proc.proc.send_signal(signal.SIGHUP)
        eventually(lambda: a_records(proc, name) == ["192.168.1.230"])
        path.write_text(toml)
        proc.proc.send_signal(signal.SIGHUP)
        eventually(lambda: rcode(proc, name) == dns.rcode.NXDOMAIN)


def test_without_service_names_the_name_is_not_published(api: K8sApi, tmp_path: Path) -> None:
    api.add(jellyfin(["192.168.1.230"]))
    with start(api, tmp_path, f'[gateway]\nzones = ["{ZONE}"]\n') as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: a_records(proc, "jellyfin.media.svc.cluster.local") == ["10.96.7.7"])
        assert rcode(proc, f"jellyfin.media.{ZONE}") == dns.rcode.NXDOMAIN


def test_the_imported_k8s_gateway_chart_corefile_serves_its_names(
    api: K8sApi, tmp_path: Path
) -> None:
    result = import_corefile(str(CHART), {})
    assert result.complete, result.problems
    # The chart's own LoadBalancer Service (its apex, exdns-k8s-gateway.kube-system), an app's
    # LoadBalancer, an HTTPRoute (resources Ingress Service HTTPRoute).
    api.add(namespace("kube-system"))
    api.add(
        service(
            "kube-system", "exdns-k8s-gateway", "10.96.0.53", [53],
            type="LoadBalancer", lb_ips=["192.168.1.53"],
        )
    )  # fmt: skip
    api.add(jellyfin(["192.168.1.230"]))
    api.add(gatewayclass("eg"))  # the controller the helpers' route statuses name
    api.add(gateway("infra", "eg", ["192.168.1.240"], ["http"]))
    api.add(httproute("apps", "grafana", [f"grafana.{ZONE}"], [("infra", "eg")]))
    with start(api, tmp_path, result.toml) as proc:
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: a_records(proc, f"jellyfin.media.{ZONE}") == ["192.168.1.230"])
        assert a_records(proc, f"grafana.{ZONE}") == ["192.168.1.240"]
        # The apex: NS APEX.ZONE, whose address is the chart Service's (k8s_gateway's glue).
        ns = proc.query(ZONE, "NS")
        assert [r.to_text() for rrset in ns.answer for r in rrset] == [
            f"exdns-k8s-gateway.kube-system.{ZONE}."
        ]
        assert a_records(proc, f"exdns-k8s-gateway.kube-system.{ZONE}") == ["192.168.1.53"]
        # ttl 300 (the chart's default value) on the names.
        resp = proc.query(f"jellyfin.media.{ZONE}", "A")
        assert [rrset.ttl for rrset in resp.answer] == [300]


def test_the_imported_chart_with_dns_challenge_answers_acme_cnames(
    api: K8sApi, tmp_path: Path
) -> None:
    # The chart's dnsChallenge: a template (CoreDNS template README, "match", "answer",
    # "fallthrough") CNAMEs _acme-challenge.<host> to the DNS-01 domain; names the cluster
    # claims still answer their addresses.
    result = import_corefile(str(CORPUS / "k8s-gateway-chart-dns01.Corefile"), {})
    assert result.complete, result.problems
    api.add(jellyfin(["192.168.1.230"]))
    with (
        DnsUpstream({("grafana.dns01.clouddns.com.", "TXT"): ['"dns01-token"']}) as up,
        start(api, tmp_path, result.toml, up.upstream()) as proc,
    ):
        eventually(lambda: proc.get("ready")[0] == 200)
        eventually(lambda: a_records(proc, f"jellyfin.media.{ZONE}") == ["192.168.1.230"])
        resp = proc.query(f"_acme-challenge.grafana.{ZONE}", "TXT")
        answer = [r.to_text() for rrset in resp.answer for r in rrset]
        # The template's CNAME alone, as CoreDNS's template answers it: cert-manager's
        # resolver follows it to the DNS-01 zone itself.
        assert answer == ["grafana.dns01.clouddns.com."], answer
        asked = [q.name for q in up.queries if "kdns-loop-check" not in q.name]
        assert asked == []  # nothing forwarded for it (only the start's loop check went out)
        assert rcode(proc, f"nothing.{ZONE}") == dns.rcode.NXDOMAIN
