"""Corefile forms of the published corpus, each against the CoreDNS behaviour it encodes:

- log README: "the log plugin ... in a server block" logs the queries that block gets; a
  server block gets its zones' names only (CoreDNS server blocks: the most specific zone wins);
- forward README: "FROM is the base domain to match for the request to be forwarded": a
  forward whose FROM lies outside its block's zones handles nothing there;
- rewrite runs in its server block, so a zone block's rule never sees other zones' names;
- template README: each `answer`/`authority`/`additional` is one RR (an empty one is none);
- import README: a glob that matches nothing is no error (the coredns-custom dump decides).
"""

from __future__ import annotations

import logging
from pathlib import Path

import dns.rcode
import pytest

from kdns.config import Config, build_config
from kdns.corefile import import_corefile, import_text
from kdns.rules.rewrite import _Compiled
from kdns.server import querylog
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES as KDNS_FIXTURES
from tests.kdnsproc import Kdns

CORPUS = Path(__file__).resolve().parent / "fixtures" / "corefiles"
MAIN = """.:53 {
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa
    forward . 192.0.2.53
    cache 30
}
"""


def load(toml: str, tmp_path: Path) -> Config:
    path = tmp_path / "kdns.toml"
    path.write_text(toml)
    return build_config(str(path), {})


# --- log in one server block ----------------------------------------------------------------


def test_log_in_a_zone_block_logs_that_zone_only(tmp_path: Path) -> None:
    result = import_text(MAIN + "example.com {\n  log\n  forward . 192.0.2.1\n}\n")
    assert result.complete, result.problems
    config = load(result.toml, tmp_path)
    assert config.query_log and config.log_zones == ("example.com",)


def test_log_in_the_root_block_logs_every_name(tmp_path: Path) -> None:
    text = MAIN.replace("errors", "errors\n    log") + "example.com {\n  forward . 192.0.2.1\n}\n"
    result = import_text(text)
    config = load(result.toml, tmp_path)
    assert config.query_log and config.log_zones == (".",)
    assert "kdns also logs the queries of example.com" in result.toml  # said, not hidden


def test_log_names_narrow_the_block() -> None:
    result = import_text(MAIN.replace("errors", "errors\n    log example.org"))
    assert 'zones = ["example.org"]' in result.toml


def test_log_classes_that_differ_per_block_are_reported() -> None:
    text = MAIN.replace("errors", "errors\n    log . {\n class error\n }")
    text += "example.com {\n  log . {\n    class denial\n  }\n  forward . 192.0.2.1\n}\n"
    result = import_text(text)
    assert len(result.problems) == 1 and "class denial for this block" in result.problems[0]


def test_query_log_zones_filter(caplog: pytest.LogCaptureFixture) -> None:
    import dns.message

    def wire(name: str) -> tuple[bytes, bytes]:
        query = dns.message.make_query(name, "A")
        return query.to_wire(), dns.message.make_response(query).to_wire()

    querylog.set_zones(("example.com",))
    try:
        with caplog.at_level(logging.INFO, logger="kdns.query"):
            for name in ("www.example.com", "example.com", "www.notexample.com", "other.org"):
                querylog.log_query("udp", ("127.0.0.1", 5), *wire(name), 0.001)
    finally:
        querylog.set_zones((".",))
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "www.example.com." in logged and " example.com." in logged
    assert "notexample" not in logged and "other.org" not in logged


# --- forward FROM against its block ---------------------------------------------------------


def test_forward_from_outside_its_block_is_not_a_forward_zone(tmp_path: Path) -> None:
    """AKS docs' `contoso.com:53 { forward foo.com 1.1.1.1 }`: the block gets contoso.com's
    names, the forward takes foo.com's: nothing is forwarded there (CoreDNS: SERVFAIL)."""
    result = import_text(MAIN + "contoso.com:53 {\n  forward foo.com 1.1.1.1\n}\n")
    assert len(result.problems) == 1 and "forwards nothing" in result.problems[0]
    assert load(result.toml, tmp_path).forward_zones == ()


@pytest.mark.parametrize(
    ("block", "origin", "zone"),
    [
        ("example.com", "sub.example.com", "sub.example.com"),  # FROM inside: that subzone
        ("sub.example.com", "example.com", "sub.example.com"),  # FROM above: the whole block
    ],
)
def test_forward_from_meets_its_block(tmp_path: Path, block: str, origin: str, zone: str) -> None:
    result = import_text(MAIN + f"{block} {{\n  forward {origin} 192.0.2.7\n}}\n")
    # FROM inside the block leaves the block's other names to nothing (reported below)
    assert result.complete is (zone == block), result.problems
    assert [z for z, _ in load(result.toml, tmp_path).forward_zones] == [zone]


# --- rewrite in a zone block ------------------------------------------------------------------


def test_zone_block_regex_rewrite_matches_that_zone_only(tmp_path: Path) -> None:
    result = import_corefile(str(CORPUS / "aks-rewrite" / "aks-rewrite.Corefile"), {})
    assert result.complete, result.problems
    rule = _Compiled(load(result.toml, tmp_path).rewrites[0])
    assert rule.request("web.contoso.com.", 1, 1) == ("web.default.svc.cluster.local.", 1, 1)
    assert rule.request("web.contoso.com.evil.org.", 1, 1) is None  # the . block's name
    assert rule.request("web.notcontoso.com.", 1, 1) is None


def test_zone_block_exact_rewrite_inside_the_zone_is_complete() -> None:
    text = MAIN + "lan.example {\n  rewrite name nas.lan.example nas.storage.svc.cluster.local\n  forward . 192.0.2.1\n}\n"  # fmt: skip
    assert import_text(text).complete


def test_zone_block_prefix_rewrite_is_still_reported() -> None:
    text = MAIN + "lan.example {\n  rewrite name prefix nas nas-1\n  forward . 192.0.2.1\n}\n"
    result = import_text(text)
    assert len(result.problems) == 1 and "as scoped" in result.problems[0]


# --- template, kubernetes zones, import globs -----------------------------------------------


def test_template_empty_authority_is_no_record(tmp_path: Path) -> None:
    text = MAIN.replace(
        "errors",
        'errors\n  template IN A empty.com {\n    answer "{{ .Name }} 0 IN A 0.0.0.0"\n    authority ""\n  }',
    )
    result = import_text(text)
    assert result.complete, result.problems
    assert len(load(result.toml, tmp_path).templates) == 1
    assert 'authority "" (line' in result.toml


def test_kubernetes_zone_written_twice_is_one(tmp_path: Path) -> None:
    """rke2-coredns renders `kubernetes cluster.local cluster.local in-addr.arpa ip6.arpa`."""
    result = import_corefile(str(CORPUS / "rke2.Corefile"), {})
    assert result.complete, result.problems
    assert load(result.toml, tmp_path).cluster_domain == "cluster.local"


def test_empty_glob_with_the_dump_folder_is_complete(tmp_path: Path) -> None:
    (tmp_path / "custom").mkdir()
    (tmp_path / "Corefile").write_text(MAIN.replace("cache 30", "cache 30\n    import custom/*.override"))  # fmt: skip
    result = import_corefile(str(tmp_path / "Corefile"), {})
    assert result.complete, result.problems
    assert "custom/ holds no *.override" in result.toml


def test_empty_glob_without_the_dump_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "Corefile").write_text(MAIN + "import custom/*.server\n")
    (problem,) = import_corefile(str(tmp_path / "Corefile"), {}).problems
    assert "dump the coredns-custom ConfigMap into custom/ beside the Corefile" in problem


def test_k3s_absolute_glob_is_read_beside_the_corefile(tmp_path: Path) -> None:
    """k3s mounts coredns-custom at /etc/coredns/custom: its dump beside the Corefile is read."""
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "lan.server").write_text("lan.example:53 {\n  forward . 192.0.2.9\n}\n")  # fmt: skip
    (tmp_path / "Corefile").write_text(MAIN + "import /nonexistent-kdns-test/custom/*.server\n")
    result = import_corefile(str(tmp_path / "Corefile"), {})
    assert result.complete, result.problems
    assert load(result.toml, tmp_path).forward_zones == (("lan.example", ("192.0.2.9",)),)


# --- served --------------------------------------------------------------------------------


def test_aks_rewrite_translation_serves_the_cluster_name_under_the_zone(tmp_path: Path) -> None:
    """The AKS docs' rewrite: kubernetes.contoso.com is the kubernetes Service, and the answer
    carries the name that was asked (answer name)."""
    path = tmp_path / "kdns.toml"
    path.write_text(import_corefile(str(CORPUS / "aks-rewrite" / "aks-rewrite.Corefile"), {}).toml)
    cluster = str(KDNS_FIXTURES / "cluster.yaml")
    with Kdns("-c", str(path), "--objects", cluster, "--no-forward") as proc:
        reply = proc.query("kubernetes.contoso.com")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [(rrset.name.to_text(), [r.to_text() for r in rrset]) for rrset in reply.answer] == [
        ("kubernetes.contoso.com.", ["10.0.0.1"])
    ]


# --- no forward for the . block ---------------------------------------------------------------


def test_no_forward_at_all_is_no_forwarding(tmp_path: Path) -> None:
    """A Corefile without forward: CoreDNS answers names outside its zones with an error,
    never from an upstream; kdns's default (resolv.conf's nameservers) is switched off."""
    result = import_text(".:53 {\n    kubernetes cluster.local\n    cache 30\n}\n")
    assert result.complete, result.problems
    assert load(result.toml, tmp_path).forward is False


def test_forward_zones_without_a_root_forward_refuse_other_names(tmp_path: Path) -> None:
    """Only a stub domain forwards (CoreDNS: `.` has no forward, so other names get an
    error): kdns forwards that zone and refuses the rest instead of asking resolv.conf's
    nameservers."""
    records = {("www.example.org.", "A"): ["192.0.2.8"], ("www.other.test.", "A"): ["192.0.2.9"]}
    with DnsUpstream(records) as up:
        text = f".:53 {{\n    kubernetes cluster.local\n}}\nexample.org {{\n    forward . 127.0.0.1:{up.port}\n}}\n"  # fmt: skip
        result = import_text(text)
        assert result.complete, result.problems
        path = tmp_path / "kdns.toml"
        path.write_text(result.toml)
        cluster = str(KDNS_FIXTURES / "cluster.yaml")
        with Kdns("-c", str(path), "--objects", cluster) as proc:
            assert [r.to_text() for s in proc.query("www.example.org").answer for r in s] == ["192.0.2.8"]  # fmt: skip
            assert proc.query("www.other.test").rcode() == dns.rcode.REFUSED
            assert proc.query("kubernetes.default.svc.cluster.local").answer
    assert "www.other.test." not in {q.name.lower() for q in up.queries}


def test_a_cache_only_in_a_zone_block_is_reported() -> None:
    text = ".:53 {\n    kubernetes cluster.local\n    forward . 192.0.2.53\n}\n"
    text += "consul.local {\n    cache 30\n    forward . 10.150.0.1\n}\n"
    (problem,) = import_text(text).problems
    assert "a cache in the consul.local block only" in problem


# --- forward except, bind with kubernetes ---------------------------------------------------


def test_forward_except_of_our_own_zones_changes_nothing() -> None:
    """forward README: "except IGNORED_NAMES... will not be forwarded": names kdns answers
    itself (the cluster domain) are never forwarded anyway; other names are reported."""
    own = MAIN.replace("forward . 192.0.2.53", "forward . 192.0.2.53 {\n        except cluster.local\n    }")  # fmt: skip
    assert import_text(own).complete
    other = MAIN.replace("forward . 192.0.2.53", "forward . 192.0.2.53 {\n        except corp.example\n    }")  # fmt: skip
    (problem,) = import_text(other).problems
    assert "except corp.example is not supported" in problem


def test_bind_with_kubernetes_on_53_is_the_deployments_5353(tmp_path: Path) -> None:
    """The shipped Deployment cannot bind port 53 (non-root, its Services map 53 to 5353):
    `bind 0.0.0.0` keeps its address, on 5353."""
    result = import_text(MAIN.replace("errors", "errors\n    bind 0.0.0.0"))
    assert load(result.toml, tmp_path).listen == (("0.0.0.0", 5353),)


# --- k3s NodeHosts before it is mounted -----------------------------------------------------


def test_k3s_translation_starts_before_nodehosts_exists(tmp_path: Path) -> None:
    """CoreDNS hosts: a FILE that does not exist is a warning ("File does not exist"), and it
    is read once it appears; the k3s translation names /etc/coredns/NodeHosts, which the kdns
    Deployment mounts from k3s's coredns ConfigMap: kdns starts without it, then serves it."""
    import re
    import time

    nodehosts = tmp_path / "NodeHosts"
    toml = import_corefile(str(CORPUS / "k3s.Corefile"), {}).toml
    (tmp_path / "kdns.toml").write_text(re.sub(r'^file = "[^"]*"', f'file = "{nodehosts}"', toml, flags=re.M))  # fmt: skip
    cluster = str(KDNS_FIXTURES / "cluster.yaml")
    with Kdns("-c", str(tmp_path / "kdns.toml"), "--objects", cluster, "--no-forward", "--reload-interval", "0.2") as proc:  # fmt: skip
        assert proc.query("kubernetes.default.svc.cluster.local").answer
        nodehosts.write_text("192.0.2.31 agent-1\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            answer = proc.query("agent-1").answer
            if answer:
                break
            time.sleep(0.1)
        assert [r.to_text() for rrset in answer for r in rrset] == ["192.0.2.31"]


@pytest.mark.parametrize(("pods", "on"), [("verified", True), ("insecure", False), ("disabled", False)])  # fmt: skip
def test_autopath_follows_corednss_pod_cache(tmp_path: Path, pods: str, on: bool) -> None:
    """CoreDNS's kubernetes AutoPath looks the client up in its pod cache, which only `pods
    verified` keeps: with insecure or disabled pods `autopath @kubernetes` does nothing."""
    text = MAIN.replace("kubernetes cluster.local in-addr.arpa ip6.arpa", f"kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        pods {pods}\n    }}\n    autopath @kubernetes")  # fmt: skip
    result = import_text(text)
    assert result.complete, result.problems
    assert load(result.toml, tmp_path).autopath is on


def test_a_zone_block_forwarding_only_a_subzone_is_reported() -> None:
    """`example.com { forward sub.example.com X }`: the block's other names reach the end of
    CoreDNS's plugin chain (SERVFAIL); kdns would send them to its default upstreams."""
    (problem,) = import_text(
        MAIN + "example.com {\n    forward sub.example.com 10.0.0.1\n}\n"
    ).problems
    assert "names of example.com outside sub.example.com" in problem


@pytest.mark.parametrize(
    ("suffix", "scoped"),
    [(".lan.example", True), ("lan.example", False)],  # "lan.example" also ends "badlan.example"
)
def test_zone_block_suffix_rewrite_is_scoped_only_on_a_label_boundary(suffix: str, scoped: bool) -> None:  # fmt: skip
    text = MAIN + f"lan.example {{\n  rewrite name suffix {suffix} .svc.cluster.local\n  forward . 192.0.2.1\n}}\n"  # fmt: skip
    assert import_text(text).complete is scoped


# --- text oddities --------------------------------------------------------------------------


def test_a_byte_order_mark_and_crlf_lines_are_not_content(tmp_path: Path) -> None:
    """A Corefile saved by a Windows editor: BOM and CRLF line ends."""
    path = tmp_path / "Corefile"
    path.write_bytes(b"\xef\xbb\xbf" + MAIN.replace("\n", "\r\n").encode())
    result = import_corefile(str(path), {})
    assert result.complete, result.problems
    assert load(result.toml, tmp_path).upstreams == ("192.0.2.53",)


def test_a_zone_kdns_cannot_take_is_named_not_a_traceback() -> None:
    (problem,) = import_text(MAIN + "ex_ample!.com {\n  forward . 10.0.0.1\n}\n").problems
    assert problem.startswith("Corefile:7: forward zone ex_ample!.com is not supported")


@pytest.mark.parametrize(
    ("option", "exit_problem"),
    [
        ("policy endpoint_pod_names", None),  # CoreDNS refuses it: exit 2
        (
            "prefetch 5000",
            "prefetch 5000 is not supported by kdns: kdns cannot take cache.prefetch",
        ),
    ],
)
def test_values_kdns_or_coredns_refuse_never_reach_the_output(option: str, exit_problem: str | None, tmp_path: Path) -> None:  # fmt: skip
    """Found by mutating the corpus: every output loads, or the import names what it left out
    (a forward policy CoreDNS does not know is CoreDNS's own startup error)."""
    from kdns.corefile.parse import CorefileError

    block = "forward . 192.0.2.53 {\n        " + option + "\n    }" if option.startswith("policy") else "forward . 192.0.2.53"  # fmt: skip
    text = MAIN.replace("forward . 192.0.2.53", block)
    if not option.startswith("policy"):
        text = text.replace("cache 30", "cache 30 {\n        " + option + "\n    }")
    if exit_problem is None:
        with pytest.raises(CorefileError, match="takes random|round_robin|sequential"):
            import_text(text)
        return
    result = import_text(text)
    (problem,) = result.problems
    assert exit_problem in problem
    load(result.toml, tmp_path)


def test_import_corefile_reads_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """`kubectl ... -o jsonpath='{.data.Corefile}' | kdns import-corefile -`: globs are read
    from the current directory, where the coredns-custom dump is."""
    import io

    from kdns.corefile import run

    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "x.server").write_text("example.org:53 {\n  forward . 10.0.0.9\n}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(MAIN + "import custom/*.server\n"))
    assert run("-", {}) == 0
    out = capsys.readouterr().out
    assert "translated from <stdin>" in out
    assert load(out, tmp_path).forward_zones == (("example.org", ("10.0.0.9",)),)
