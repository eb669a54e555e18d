"""`kdns import-corefile` for the k8s_gateway plugin: each option of its README ("Configure":
resources, ingressClasses, gatewayClasses, ttl, apex, secondary, kubeconfig, fallthrough) and
its setup.go ``parse`` becomes the [gateway] key that does the same, or is reported; every
output loads through build_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdns.config import Config, build_config
from kdns.corefile import import_text
from kdns.corefile.parse import CorefileError


def imported(body: str, tmp_path: Path, keys: str = ".:1053") -> tuple[Config, list[str]]:
    text = f"{keys} {{\n{body}\n    forward . 192.0.2.53\n}}\n"
    result = import_text(text, str(tmp_path / "Corefile"), {})
    path = tmp_path / "kdns.toml"
    path.write_text(result.toml)
    return build_config(str(path), {}), result.problems


def test_zones_and_defaults(tmp_path: Path) -> None:
    config, problems = imported("    k8s_gateway home.example.com lab.example.org", tmp_path)
    assert problems == []
    assert config.gateway_zones == ("home.example.com", "lab.example.org")
    # ori-edge/k8s_gateway watches the route kinds, Ingress and Service (gateway.go
    # staticResources); its default TTL is 60 s (ttlDefault); Services as name.namespace.
    assert config.gateway_resources == ("HTTPRoute", "TLSRoute", "GRPCRoute", "Ingress", "Service")  # fmt: skip
    assert config.gateway_ttl == 60 and config.gateway_service_names is True
    # It reads the API server: the watch stays on without a kubernetes plugin.
    assert config.kubernetes_enabled is True and config.pods == "disabled"
    assert not config.gateway_fallthrough


def test_zones_from_the_server_block(tmp_path: Path) -> None:
    # setup.go: "if len(gw.Zones) == 0 { ... copy(gw.Zones, c.ServerBlockKeys) }".
    config, problems = imported("    k8s_gateway", tmp_path, keys="home.example.com:1053")
    assert problems == [] and config.gateway_zones == ("home.example.com",)
    _, problems = imported("    k8s_gateway", tmp_path)
    assert len(problems) == 1 and "name the zone" in problems[0]


def test_every_option(tmp_path: Path) -> None:
    body = """    k8s_gateway home.example.com {
        resources Ingress Service HTTPRoute
        ingressClasses nginx-internal
        gatewayClasses eg-internal cilium
        ttl 30
        apex exdns-k8s-gateway.kube-system
        fallthrough
        kubeconfig /etc/kdns/remote.kubeconfig
    }"""
    config, problems = imported(body, tmp_path)
    assert problems == []
    assert config.gateway_resources == ("Ingress", "Service", "HTTPRoute")
    assert config.ingress_classes == ("nginx-internal",)
    assert config.gateway_classes == ("eg-internal", "cilium")
    assert config.gateway_ttl == 30 and config.gateway_fallthrough
    # apex.go ns1: NS "apex.zone"; SelfAddress: the apex Service's LoadBalancer address.
    assert config.gateway_nameserver == "exdns-k8s-gateway.kube-system.home.example.com"
    assert config.dns_service == "kube-system/exdns-k8s-gateway"
    assert config.kubeconfig == "/etc/kdns/remote.kubeconfig"


def test_resources_without_service_publish_no_service_names(tmp_path: Path) -> None:
    config, problems = imported("    k8s_gateway homelab {\n resources HTTPRoute\n }", tmp_path)
    assert problems == [] and config.gateway_resources == ("HTTPRoute",)
    assert config.gateway_service_names is False


@pytest.mark.parametrize(
    ("option", "reported"),
    [
        ("secondary exdns-2.kube-system", "secondary exdns-2.kube-system is not supported"),
        ("soa 3600 600 86400", "soa 3600 600 86400 is not supported"),
        ("kubeconfig /k.conf remote", "kubeconfig context remote is not supported"),
        ("resources Ingress DNSEndpoint", "resources DNSEndpoint is not supported"),
        ("fallthrough in-addr.arpa", "fallthrough in-addr.arpa is not supported"),
        ("unknownoption x", "plugin k8s_gateway: unknownoption is not supported"),
    ],
)
def test_what_does_not_map_is_reported(option: str, reported: str, tmp_path: Path) -> None:
    body = f"    k8s_gateway home.example.com {{\n        {option}\n    }}"
    _, problems = imported(body, tmp_path)
    assert len(problems) == 1 and reported in problems[0], problems


def test_only_kinds_kdns_cannot_read_leave_the_block_out(tmp_path: Path) -> None:
    body = "    k8s_gateway home.example.com {\n        resources DNSEndpoint\n    }"
    config, problems = imported(body, tmp_path)
    assert config.gateway_zones == () and len(problems) == 1
    assert "the block is left out" in problems[0]


def test_apex_with_several_zones_is_reported_for_the_others(tmp_path: Path) -> None:
    body = "    k8s_gateway a.example.com b.example.com {\n        apex dns1.kube-system\n    }"
    config, problems = imported(body, tmp_path)
    assert config.gateway_nameserver == "dns1.kube-system.a.example.com"
    assert len(problems) == 1 and "apex dns1.kube-system for b.example.com" in problems[0]


def test_ttl_out_of_range_is_refused_as_k8s_gateway_does(tmp_path: Path) -> None:
    # setup.go: "ttl must be in range [0, 3600]".
    with pytest.raises(CorefileError, match="ttl must be in range"):
        imported("    k8s_gateway home.example.com {\n ttl 3601\n }", tmp_path)


def test_a_forward_for_a_gateway_zone(tmp_path: Path) -> None:
    # Without fallthrough k8s_gateway answers (NXDOMAIN) every name of its zone: a forward of
    # that zone in a later block is never asked; with fallthrough it is where unclaimed names
    # go (kdns's split-brain: a forward zone named like the gateway zone).
    gateway = "home.example.com:1053 {\n    k8s_gateway%s\n    forward . 192.0.2.1\n}\n"
    for fall, forwarded in (("", ()), (" {\n fallthrough\n }", ("home.example.com",))):
        text = ".:1053 {\n    forward . 192.0.2.53\n}\n" + gateway % fall
        result = import_text(text, str(tmp_path / "Corefile"), {})
        assert result.problems == []
        path = tmp_path / "kdns.toml"
        path.write_text(result.toml)
        config = build_config(str(path), {})
        assert tuple(z[0] for z in config.forward_zones) == forwarded


def test_beside_the_kubernetes_plugin(tmp_path: Path) -> None:
    # Some homelabs build k8s_gateway into the cluster CoreDNS: both plugins in one block. The
    # kubernetes plugin's settings stand (pods insecure), the gateway zone is added.
    body = """    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    k8s_gateway home.example.com"""
    config, problems = imported(body, tmp_path)
    assert problems == []
    assert config.pods == "insecure" and config.gateway_zones == ("home.example.com",)
