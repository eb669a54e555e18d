"""docs/homelab.md and the README's homelab example, against the demo cluster extended with
Gateways, routes, an Ingress and an annotated LoadBalancer Service: every `dig` the page shows
answers as printed, the router's zone goes to the router, and every TOML block loads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdns.config import build_config
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import ROOT, Kdns
from tests.listserver import ListServer, Served

FIXTURES = Path(__file__).parent / "fixtures"

HOMELAB = ROOT / "docs" / "homelab.md"
README = ROOT / "README.md"
HEADING = "### Homelab: Gateway hostnames, the router's LAN zone, everything else over DNS over TLS"
ROUTER = "192.168.1.1"
_PROMPT = "$ dig @192.168.1.53 +short "


def readme_homelab_toml() -> str:
    text = README.read_text()
    assert text.count(HEADING) == 1
    match = re.search(r"```toml\n(.*?)```", text.split(HEADING, 1)[1], re.S)
    assert match is not None
    return match.group(1)


def homelab_digs() -> list[tuple[str, list[str]]]:
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", HOMELAB.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                assert line.startswith(_PROMPT), (
                    f"homelab.md example not in the tested form: {line}"
                )
                examples.append((line[len(_PROMPT) :], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


DIGS = homelab_digs()


@pytest.fixture(scope="module")
def router() -> Iterator[DnsUpstream]:
    records = {("printer.lan.home.example.com.", "A"): ["192.168.1.77"]}
    with DnsUpstream(records) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def list_server() -> Iterator[ListServer]:
    """The block list URL of the README, served on loopback (no internet here)."""
    with ListServer() as server:
        server.paths["/oisd"] = Served((FIXTURES / "lists" / "oisd-small.txt").read_bytes())
        yield server


@pytest.fixture(scope="module")
def homelab(router: DnsUpstream, list_server: ListServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdns]:  # fmt: skip
    # The README's config as is, but the router is the test's (no LAN here), the block list
    # comes from a loopback server, the list cache is a temporary directory, the view holds
    # the test's own address, and the DoT upstreams stay unreachable (no network):
    # out-of-zone names are not asked.
    folder = tmp_path_factory.mktemp("homelab")
    toml = readme_homelab_toml().replace(f"={ROUTER}", f"={router.upstream()}")
    toml = re.sub(r'url = "[^"]*"', f'url = "{list_server.url("/oisd")}"', toml)
    toml = toml.replace('"/var/cache/kdns"', f'"{folder / "cache"}"')
    toml = toml.replace('networks = ["192.168.0.0/16", "fd00::/8"]', 'networks = ["127.0.0.0/8"]')  # fmt: skip
    path = folder / "kdns.toml"
    path.write_text(toml)
    with Kdns("--demo", "-c", str(path)) as proc:
        yield proc


def test_homelab_md_has_examples() -> None:
    assert len(DIGS) >= 5


@pytest.mark.parametrize(("args", "expected"), DIGS, ids=[a for a, _ in DIGS])
def test_homelab_dig_example(homelab: Kdns, args: str, expected: list[str]) -> None:
    name, *rdtype = args.split()
    resp = homelab.query(name, rdtype[0] if rdtype else "A")
    assert sorted(r.to_text() for rrset in resp.answer for r in rrset) == sorted(expected)


def test_homelab_config_answers_the_gateway_zone_and_forwards_the_lan(
    homelab: Kdns, router: DnsUpstream
) -> None:
    # The README's [[zones]] wildcard answers the names nobody claims; specific names (routes,
    # the zone's own records) win.
    resp = homelab.query("nobody.home.example.com", "A")
    assert [r.to_text() for rrset in resp.answer for r in rrset] == ["192.168.1.58"]
    resp = homelab.query("nas.home.example.com", "A")
    assert [r.to_text() for rrset in resp.answer for r in rrset] == ["192.168.1.11"]
    assert homelab.query("home.example.com", "SOA").answer
    resp = homelab.query("printer.lan.home.example.com", "A")
    assert [r.to_text() for rrset in resp.answer for r in rrset] == ["192.168.1.77"]
    assert "printer.lan.home.example.com." in [n.lower() for n in router.names()]


def test_homelab_toml_blocks_load(tmp_path: Path) -> None:
    blocks = [readme_homelab_toml(), *re.findall(r"```toml\n(.*?)```", HOMELAB.read_text(), re.S)]
    for index, block in enumerate(blocks):
        path = tmp_path / f"homelab{index}.toml"
        path.write_text(block)
        config = build_config(str(path), {})
        if index == 0:
            assert config.gateway_zones == ("home.example.com",)
            assert any(u.startswith("tls://") for u in config.upstreams)  # DoT upstream
            assert dict(config.forward_zones)["lan.home.example.com"] == (ROUTER,)


def test_lan_configmap_agrees_with_the_readme_homelab_block() -> None:
    """manifests/lan/ runs the README's homelab settings (plus server, ACL, RRL, probes)."""
    import tomllib

    import yaml

    doc = yaml.safe_load((ROOT / "manifests" / "lan" / "configmap.yaml").read_text())
    lan = tomllib.loads(doc["data"]["kdns.toml"])
    readme = tomllib.loads(readme_homelab_toml())
    for section, values in readme.items():
        if not isinstance(values, dict):
            continue  # [[zones]], [[blocklists]], [[views]]: files the LAN kdns mounts itself
        for key, value in values.items():
            assert lan[section][key] == value, (section, key)


def test_homelab_blocks_with_the_url_list(homelab: Kdns, list_server: ListServer) -> None:
    """The README's block list, downloaded at start: a listed name answers 0.0.0.0 with an
    Extended DNS Error naming the list; the gateway names are untouched."""
    import time

    import dns.edns

    deadline = time.monotonic() + 10
    while True:
        resp = homelab.query("x.ads.example.net", "A", use_edns=0)
        if [r.to_text() for rrset in resp.answer for r in rrset] == ["0.0.0.0"]:
            break
        assert time.monotonic() < deadline, homelab.log
        time.sleep(0.1)
    assert [(o.code, o.text) for o in resp.options] == [(dns.edns.EDECode.BLOCKED, "blocked by oisd")]  # fmt: skip
    assert list_server.count("/oisd") == 1
    resp = homelab.query("grafana.home.example.com", "A")
    assert [r.to_text() for rrset in resp.answer for r in rrset] == ["192.168.1.240"]


def test_lan_manifests_keep_the_lists_on_a_volume() -> None:
    """manifests/lan/ blocks with a URL list out of the box: its cache_dir is a mounted
    volume (the root filesystem is read-only)."""
    import tomllib

    import yaml

    doc = yaml.safe_load((ROOT / "manifests" / "lan" / "configmap.yaml").read_text())
    lan = tomllib.loads(doc["data"]["kdns.toml"])
    assert lan["blocklists"][0]["url"].startswith("https://")
    assert lan["views"][0]["blocklists"] == [lan["blocklists"][0]["name"]]
    deployment = yaml.safe_load((ROOT / "manifests" / "lan" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = mounts[lan["blocking"]["cache_dir"]]
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == volume)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def lan_figures() -> dict[str, str]:
    """The block list figures of benchmarks/results/lan.json, as the README writes them."""
    import json

    results = json.loads((ROOT / "benchmarks" / "results" / "lan.json").read_text())
    lists, refresh = results["in_process"], results["refresh"]
    steady, during = refresh["no_refresh"]["dnsperf"], refresh["refresh"]

    def ms(value: float) -> str:
        return f"{value:.1f}" if value >= 1 else f"{value:.2f}"

    return {
        "HOSTS_LOAD": f"{lists['hosts']['load_seconds']:.1f}",
        "HOSTS_MIB": f"{lists['hosts']['index_mib']:.1f}",
        "ADBLOCK_LOAD": f"{lists['adblock']['load_seconds']:.1f}",
        "ADBLOCK_MIB": f"{lists['adblock']['index_mib']:.1f}",
        "HOSTS_HIT": f"{lists['hosts']['lookup_hit_us']:.1f}",
        "HOSTS_MISS": f"{lists['hosts']['lookup_miss_us']:.1f}",
        "ADBLOCK_HIT": f"{lists['adblock']['lookup_hit_us']:.1f}",
        "ADBLOCK_MISS": f"{lists['adblock']['lookup_miss_us']:.1f}",
        "REGEX_HIT": f"{lists['hosts+regex']['lookup_hit_us']:.1f}",
        "REGEX_REGEX": f"{lists['hosts+regex']['lookup_regex_hit_us']:.1f}",
        "REGEX_MISS": f"{lists['hosts+regex']['lookup_miss_us']:.1f}",
        "REBUILD_STEP": f"{results['loop_stalls']['rebuild_step_max_ms']:.1f}",
        "REBUILD_MS": f"{results['loop_stalls']['rebuild_ms']:.1f}",
        "NR_P50": ms(steady["p50_ms"]),
        "NR_P99": ms(steady["p99_ms"]),
        "NR_MAX": ms(steady["max_ms"]),
        "REFRESH_S": f"{during['refresh_seconds']:.1f}",
        "R_P50": ms(during["dnsperf"]["p50_ms"]),
        "R_P99": ms(during["dnsperf"]["p99_ms"]),
        "R_MAX": ms(during["dnsperf"]["max_ms"]),
        "PR_P50": ms(during["probe_during_refresh"]["p50_ms"]),
        "PR_P99": ms(during["probe_during_refresh"]["p99_ms"]),
        "PR_MAX": ms(during["probe_during_refresh"]["max_ms"]),
    }


def test_readme_block_list_cost_is_benchmarks_results_lan_json() -> None:
    """Issue 21's Proof: the README's block list figures (load time, index size, lookup cost
    with and without regexes, DNS latency with and without a refresh of a 1M list) are those
    of benchmarks/results/lan.json, and whether the 5 ms target was met is said as measured."""
    import json

    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("What lists cost") :].split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    figures = lan_figures()
    expected = (
        "a 1M-line hosts list loads in {HOSTS_LOAD} s into a {HOSTS_MIB} MiB index, a 1M-rule"
        " adblock list (1% exceptions, 0.1% `$important`) in {ADBLOCK_LOAD} s into"
        " {ADBLOCK_MIB} MiB. A lookup costs {HOSTS_HIT} µs for a listed name and {HOSTS_MISS} µs"
        " for a miss (adblock list: {ADBLOCK_HIT} / {ADBLOCK_MISS} µs); beside 14 regexes,"
        " {REGEX_HIT} µs, {REGEX_REGEX} µs for a regex match and {REGEX_MISS} µs for a miss;"
    ).format(**figures)
    assert expected in text, (expected, text)
    assert f"512 KiB steps (the longest measured {figures['REBUILD_STEP']} ms, {figures['REBUILD_MS']} ms in all per 1M names" in text  # fmt: skip
    lag = json.loads((ROOT / "benchmarks" / "results" / "refresh_lag.json").read_text())

    def ms(value: float) -> str:
        return f"{value:.1f}" if value >= 1 else f"{value:.2f}"

    def trio(values: list[float]) -> str:
        return " / ".join(ms(v) for v in values)

    seconds = [run["refresh_seconds"] for run in lag["runs"]]
    assert (
        f"three runs): during the refresh ({min(seconds):.1f}-{max(seconds):.1f} s) the loop woke p99"
        f" {trio(lag['during_p99_ms'])} ms and at worst {trio(lag['during_max_ms'])} ms late,"
        f" against p99 {trio(lag['outside_p99_ms'])} ms and at worst {trio(lag['outside_max_ms'])}"
        " ms outside it in the same runs"
    ) in text
    assert len(lag["runs"]) == 3 and lag["during_max_ms"] == [r["during_refresh"]["max_ms"] for r in lag["runs"]]  # fmt: skip
    assert lag["entries"] == 1_000_000 and lag["qps"] == 10_000
    assert (
        f"with no refresh, dnsperf p50 / p99 / max {figures['NR_P50']} / {figures['NR_P99']} /"
        f" {figures['NR_MAX']} ms; while the 1M list is downloaded, parsed and swapped in"
        f" ({figures['REFRESH_S']} s), {figures['R_P50']} / {figures['R_P99']} /"
        f" {figures['R_MAX']} ms, and the probe during the refresh itself {figures['PR_P50']} /"
        f" {figures['PR_P99']} / {figures['PR_MAX']} ms"
    ) in text
    results = json.loads((ROOT / "benchmarks" / "results" / "lan.json").read_text())
    refresh = results["refresh"]
    assert refresh["target_ms"] == 5.0 and refresh["rate_qps"] == 10_000
    assert results["in_process"]["hosts"]["lines"] == 1_000_000
    if refresh["target_met"]:
        assert "the issue's target, no query waiting more than 5 ms for a refresh, is met" in text.lower()  # fmt: skip
    else:
        assert "target, no query waiting more than 5 ms for a refresh, is not demonstrated" in text  # fmt: skip
        # ...and the README's reason holds: without a refresh the worst wait is above 5 ms.
        assert refresh["no_refresh"]["dnsperf"]["max_ms"] > refresh["target_ms"]
