"""Published Corefiles, imported whole: each fixture in tests/fixtures/corefiles names the
repository and path it comes from. Every translation loads through ``build_config``; the ones
CoreDNS distributions ship import complete, and a few are started and asked a cluster name and
a forwarded name on loopback.

What each encodes, after the CoreDNS plugin READMEs: hosts ("fallthrough: if zone matches and
no record can be generated, pass request to the next plugin"), log ("class: ... success,
denial, error, all"), forward ("force_tcp: use TCP even when the request comes in over UDP";
"prefer_udp"), cache ("success CAPACITY [TTL]", "denial CAPACITY [TTL]"), import ("import
PATTERN ... glob"), bind, k8s_external.
"""

from __future__ import annotations

import re
from pathlib import Path

import dns.rcode
import pytest

from kdns.config import Config, build_config
from kdns.corefile import import_corefile
from kdns.corefile.parse import CorefileError
from kdns.values import ForwardZone
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES as KDNS_FIXTURES
from tests.kdnsproc import Kdns

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corefiles"
CLUSTER = str(KDNS_FIXTURES / "cluster.yaml")

# fixture (relative to CORPUS) -> the problems its import reports (none: complete), as
# patterns; None: CoreDNS refuses it too (exit 2). A fixture with coredns-custom entries sits in
# a folder of its own with them in custom/ (the import globs are relative to the Corefile).
EXPECTED: dict[str, list[str] | None] = {
    "kubeadm.Corefile": [],
    "kubeadm-1.12.Corefile": [],  # proxy, kubernetes upstream
    "kubeadm-1.14.Corefile": [],
    "addons-1.20.Corefile": [],
    "helm-chart.Corefile": [],
    "helm-log-class-error.Corefile": [],  # dns:// scheme, log { class error }
    "helm-local-ops.Corefile": None,  # cache prefetch 30%: CoreDNS's strconv.Atoi refuses it
    "k3s.Corefile": [],  # before k3s read coredns-custom
    "k3s-current.Corefile": [  # coredns-custom not dumped: both globs named
        r":22: import /etc/coredns/custom/\*\.override matched no file",
        r":24: import /etc/coredns/custom/\*\.server matched no file",
    ],
    "minikube.Corefile": [],
    "microk8s.Corefile": [],
    "talos.Corefile": [],
    "eks.Corefile": [],
    "rke1.Corefile": [],  # forward . "/etc/resolv.conf", quoted
    "rke2.Corefile": [],  # kubernetes cluster.local cluster.local ...: one zone
    "kops-upstream.Corefile": [],
    "openshift-dns-default.Corefile": [],
    "openshift-forwarding.Corefile": [],  # a forwarding block with its own log and cache
    # k8s_gateway ([gateway], service_names): the plugin's Helm chart, a homelab's, its README.
    "k8s-gateway-chart.Corefile": [],
    "k8s-gateway-chart-dns01.Corefile": [],  # dnsChallenge: a template CNAMEs _acme-challenge
    "homelab-k8s-gateway-blocklist.Corefile": [],  # resources HTTPRoute, zone "homelab"
    "k8s-gateway-readme.Corefile": [r":4: plugin k8s_gateway: secondary exdns-2-k8s-gateway"],
    "aks/aks.Corefile": [],  # with its coredns-custom entries dumped in custom/
    "aks-hosts/aks-hosts.Corefile": [],  # custom/ holds no *.server: the ConfigMap has none
    "aks-rewrite/aks-rewrite.Corefile": [],  # a zone block's rewrite, scoped to that zone
    # A stub domain inside the cluster domain: forwarded, as CoreDNS's more specific block.
    "aks-stub-domains/aks-stub-domains.Corefile": [],
    "aks-forward-server/aks-forward-server.Corefile": [
        r"test.server:4: plugin forward: foo.com is not supported by kdns: this forward sits "
        r"in the contoso.com block, which gets no name under foo.com"
    ],
    "scaleway/scaleway-kapsule.Corefile": [
        r":19: import custom/\*\.override matched no file, so the coredns-custom entries .* dump "
        r"the coredns-custom ConfigMap into custom/ beside the Corefile"
    ],
    "homelab-log-class-error.Corefile": [],
    "node-local-dns.Corefile": [],
    "legacy-proxy.Corefile": [],
    "cka-stubdomain.Corefile": [],
    "stubdomains.Corefile": [],
    "external-acl.Corefile": [],
    "homelab-nodehosts-ipv6.Corefile": [
        r":24: import /etc/coredns/custom/\*\.server matched no file \(nor custom/\*\.server "
        r"beside the Corefile\)"
    ],
    "homelab-rewrite-nodehosts.Corefile": [],
    "homelab-split-forward.Corefile": [],
    "terraform-stub-policy.Corefile": [],
    "template-blocks.Corefile": [],  # template README forms; authority "" is no record
    "kubespray.Corefile": [r":4: server block example.io:1053 on port 1053 is not supported"],
    "homelab-template.Corefile": [],  # template README: match, answer, fallthrough
    "homelab-templates.Corefile": [r":9: plugin any is not supported"],  # RFC 8482 HINFO
    "kubespray-nodelocaldns.Corefile": [],  # node-local shape, bind the link-local IP only
    "k0s.Corefile": [],
    "k8s-docs-kube-dns-equivalent.Corefile": [
        r":11: plugin federation is not supported",  # removed in CoreDNS 1.7
    ],
    "vcluster-rewrite.Corefile": [],  # rewrite README: name regex FROM TO
}


def load(toml: str, tmp_path: Path) -> Config:
    path = tmp_path / "kdns.toml"
    path.write_text(toml)
    return build_config(str(path), {})


def fixtures() -> list[str]:
    return sorted(
        str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.Corefile") if "custom" not in p.parts
    )


def test_every_fixture_is_in_the_table() -> None:
    assert fixtures() == sorted(EXPECTED)
    for name in fixtures():
        first = (CORPUS / name).read_text().splitlines()[0]
        if name not in ("kubeadm.Corefile", "external-acl.Corefile", "stubdomains.Corefile"):
            assert first.startswith("# source: "), name  # repository and path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_imports(name: str, tmp_path: Path) -> None:
    patterns = EXPECTED[name]
    if patterns is None:
        with pytest.raises(CorefileError):
            import_corefile(str(CORPUS / name), {})
        return
    result = import_corefile(str(CORPUS / name), {})
    load(result.toml, tmp_path)  # every output loads
    assert len(result.problems) == len(patterns), "\n".join(result.problems)
    for line, pattern in zip(result.problems, patterns, strict=True):
        assert re.search(pattern, line), line


def test_corpus_complete_count() -> None:
    """46 published Corefiles: 37 complete, 8 partial (each part reported on purpose), 1 that
    CoreDNS refuses as well."""
    complete = [n for n, p in EXPECTED.items() if p == [] and import_corefile(str(CORPUS / n), {}).complete]  # fmt: skip
    assert (len(complete), len(EXPECTED)) == (37, 46)


# --- what the translations say ------------------------------------------------------------


def config_of(name: str, tmp_path: Path) -> Config:
    return load(import_corefile(str(CORPUS / name), {}).toml, tmp_path)


def test_log_class_error_is_not_a_full_query_log(tmp_path: Path) -> None:
    """Issue 19 item 1: `log . { class error }` logs errors only."""
    config = config_of("homelab-log-class-error.Corefile", tmp_path)
    assert config.query_log and config.log_classes == ("error",)
    assert config.cluster_domain == "kube.skaia.cloud"
    assert config.forward_zones == (("tail.skaia.cloud", ("100.100.100.100",)),)


def test_ipv6_upstream_with_a_port(tmp_path: Path) -> None:
    """Issue 19 item 2: `[2603:...::1]:53` is an upstream, as check-config accepts it."""
    result = import_corefile(str(CORPUS / "homelab-nodehosts-ipv6.Corefile"), {})
    config = load(result.toml, tmp_path)
    assert config.upstreams == ("10.10.0.1:53", "[2603:6010:5300:ad0a::1]:53")
    assert not [p for p in result.problems if "IP addresses only" in p]


def test_node_local_dns_is_what_manifests_nodelocal_ships(tmp_path: Path) -> None:
    """Issue 19 item 3: no kubernetes plugin, no cluster; node-local's shape."""
    config = config_of("node-local-dns.Corefile", tmp_path)
    assert config.kubernetes_enabled is False
    assert config.listen == (("169.254.20.10", 53), ("10.96.0.10", 53))
    assert config.freebind is True
    assert config.forward_allow == ("0.0.0.0/0", "::/0")
    assert config.forward_zones == ()  # KDNS_FORWARD_ZONE in the DaemonSet names them
    assert (config.cache_success_ttl, config.cache_denial_ttl) == (30, 5)
    assert config.metrics_listen == ("", 9253)
    assert config.health_listen == ("169.254.20.10", 8080)


def test_k3s_nodehosts_and_minikube_inline_hosts(tmp_path: Path) -> None:
    k3s = config_of("k3s.Corefile", tmp_path)
    assert k3s.hosts_file == "/etc/coredns/NodeHosts"
    assert (k3s.hosts_ttl, k3s.hosts_fallthrough, k3s.hosts_zones) == (60, True, (".",))
    minikube = config_of("minikube.Corefile", tmp_path)
    assert minikube.hosts_entries == ("192.168.49.1 host.minikube.internal",)
    assert minikube.hosts_file is None and minikube.hosts_fallthrough


def test_kubespray_several_ports_and_underscore_zone(tmp_path: Path) -> None:
    """Issue 19 items 5 and 8: `example.com example.io:1053 {` imports (the 1053 block is
    reported); k8s_external.local is a zone."""
    config = config_of("kubespray.Corefile", tmp_path)
    assert config.external_zones == ("k8s_external.local",)
    assert config.forward_prefer_udp is True


def test_aks_custom_entries_are_imported(tmp_path: Path) -> None:
    """Issue 19 item 6: the coredns-custom entries, dumped beside the Corefile, import."""
    config = config_of("aks/aks.Corefile", tmp_path)
    assert config.query_log is True  # custom/log.override
    assert config.forward_zones == (ForwardZone("puglife.local", ("192.11.0.1",)),)


def test_legacy_proxy_is_forward(tmp_path: Path) -> None:
    config = config_of("legacy-proxy.Corefile", tmp_path)
    assert config.upstreams == () and config.forward is True


# --- started on loopback ---------------------------------------------------------------------

UPSTREAM = {
    ("www.example.com.", "A"): ["192.0.2.1"],
    ("web.shop.svc.cluster.local.", "A"): ["10.96.10.20"],
}


@pytest.mark.parametrize("name", sorted(n for n, p in EXPECTED.items() if p is not None))
def test_every_translation_serves(name: str, tmp_path: Path) -> None:
    """Each translation, started on loopback with the test cluster's objects: a cluster name
    answers, and a name outside every zone goes to the upstream (or, when the Corefile
    forwards nothing, is refused). A hosts file the Corefile names is one of the test's."""
    toml = import_corefile(str(CORPUS / name), {}).toml
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 nodehost.corpus.test\n")
    toml = re.sub(r'^file = "/etc/[^"]*"', f'file = "{hosts}"', toml, flags=re.M)
    config = load(toml, tmp_path)
    records = {("www.forwarded.test.", "A"): ["192.0.2.1"]}
    with DnsUpstream(records) as up:
        flags = ["--upstream", up.upstream()] if config.forward else []
        with Kdns("-c", str(tmp_path / "kdns.toml"), "--objects", CLUSTER, *flags) as proc:
            cluster = proc.query(f"kubernetes.default.svc.{config.cluster_domain}")
            if name == "external-acl.Corefile":  # acl: 10/8 and 192.168/16 only, then block
                assert cluster.rcode() == dns.rcode.REFUSED  # CoreDNS acl README: block
                return
            assert cluster.rcode() == dns.rcode.NOERROR and cluster.answer
            forwarded = proc.query("www.forwarded.test")
            if config.forward:
                assert [r.to_text() for rrset in forwarded.answer for r in rrset] == ["192.0.2.1"]
            else:
                assert forwarded.rcode() == dns.rcode.REFUSED
            if config.hosts_file:
                host = proc.query("nodehost.corpus.test")
                assert [r.to_text() for rrset in host.answer for r in rrset] == ["192.0.2.77"]
            if name == "minikube.Corefile":
                host = proc.query("host.minikube.internal")
                assert [r.to_text() for rrset in host.answer for r in rrset] == ["192.168.49.1"]


def test_node_local_dns_serves(tmp_path: Path) -> None:
    """The node-local translation, its cluster zone named as the DaemonSet names it: cluster
    names go to the cluster DNS over TCP (force_tcp), other names over the client's UDP."""
    path = tmp_path / "kdns.toml"
    path.write_text(import_corefile(str(CORPUS / "node-local-dns.Corefile"), {}).toml)
    with DnsUpstream(UPSTREAM) as up:
        env = {"KDNS_FORWARD_ZONE": f"cluster.local=tcp://127.0.0.1:{up.port}"}
        with Kdns("-c", str(path), "--upstream", up.upstream(), env=env) as proc:
            cluster = proc.query("web.shop.svc.cluster.local")
            assert [r.to_text() for rrset in cluster.answer for r in rrset] == ["10.96.10.20"]
            forwarded = proc.query("www.example.com")
            assert [r.to_text() for rrset in forwarded.answer for r in rrset] == ["192.0.2.1"]
        by_name = {q.name.lower(): q.transport for q in up.queries}
        assert by_name["web.shop.svc.cluster.local."] == "tcp"
        assert by_name["www.example.com."] == "udp"
