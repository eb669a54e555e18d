"""kdns import-corefile: the Corefile reader, the translation, exit codes, and the plugin doc.

Every translation is loaded back with ``kdns.config.build_config``: the output is a kdns config
file, not just text that looks like one. Table cases name the CoreDNS plugin README behaviour
they encode.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kdns.cli import main
from kdns.config import Config, build_config, parse_hostport
from kdns.corefile import CorefileError, import_corefile, import_text
from kdns.corefile.parse import parse_text
from kdns.corefile.plugins import PLUGINS
from kdns.values import ForwardZone

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "corefiles"
ANY = parse_hostport(":53")[0]  # how kdns spells ":53", CoreDNS's "every address"


def load(toml: str, tmp_path: Path) -> Config:
    path = tmp_path / "kdns.toml"
    path.write_text(toml)
    return build_config(str(path), {})


# --- the table: Corefile -> Config fields and reported lines ---------------------------------

KUBEADM_FIELDS: dict[str, Any] = {
    # .:53 becomes :5353 with JSON logs: the shipped non-root Deployment maps 53 to 5353
    "listen": ((ANY, 5353),),
    "log_format": "json",
    "cluster_domain": "cluster.local",
    "pods": "insecure",
    "ttl": 30,
    "upstreams": (),  # forward . /etc/resolv.conf: kdns's default
    "forward_max_concurrent": 1000,
    "cache": True,
    "cache_success_ttl": 30,  # cache README: "TTL max TTL in seconds" for both kinds
    "cache_denial_ttl": 30,
    "health_listen": (ANY, 8080),  # health README: default :8080
    "lameduck": 5.0,
    "ready_listen": (ANY, 8181),  # ready README: default :8181
    "metrics_listen": (ANY, 9153),
    "metrics_compat": "coredns",
    "reload_interval": 30.0,  # reload README: default 30s
    "loadbalance": True,
}

# (id, Corefile text or fixture name, environment, expected Config fields, stderr patterns)
CASES: list[tuple[str, str, dict[str, str], dict[str, Any], list[str]]] = [
    ("kubeadm", "kubeadm.Corefile", {}, KUBEADM_FIELDS, []),
    (
        "kubeadm_before_1_31_without_cache_disable",
        """.:53 {
            errors
            health {
               lameduck 5s
            }
            ready
            kubernetes cluster.local in-addr.arpa ip6.arpa {
               pods insecure
               fallthrough in-addr.arpa ip6.arpa
               ttl 30
            }
            prometheus :9153
            forward . /etc/resolv.conf {
               max_concurrent 1000
            }
            cache 30
            loop
            reload
            loadbalance
        }""",
        {},
        KUBEADM_FIELDS,
        [],
    ),
    (
        "stub_domain_block_becomes_a_forward_zone",  # forward README: "example.org { forward . IP }"
        "stubdomains.Corefile",
        {},
        {
            "upstreams": ("172.16.0.1",),
            "forward_zones": (("consul.local", ("10.150.0.1",)),),
            "cache_success_ttl": 30,
        },
        [],
    ),
    (
        "external_acl_transfer_hosts",
        "external-acl.Corefile",
        {},
        {
            "external_zones": ("example.org",),
            "pods": "verified",
            "endpoint_pod_names": True,
            "ttl": 5,  # kubernetes README: default TTL 5
            "transfer_allow": ("192.168.1.53/32", "10.0.0.0/8"),
            # acl README: first matching rule wins, `net`/`type` lists, bare action = all
            "acl": (
                {"action": "block", "net": ["192.168.2.0/24"], "type": ["AXFR", "IXFR"]},
                {"action": "allow", "net": ["10.0.0.0/8", "192.168.0.0/16"]},
                {"action": "block"},
            ),
            "upstreams": ("tls://1.1.1.1@cloudflare-dns.com", "tls://1.0.0.1@cloudflare-dns.com"),
            "forward_policy": "sequential",
            "forward_health_check": 5.0,
            "cache_success": 20000,
            "cache_denial": 5000,
            "cache_success_ttl": 300,
            "cache_denial_ttl": 60,  # `denial CAPACITY TTL` overrides `cache TTL`
            "cache_prefetch": 10,
            "cache_serve_stale": 3600.0,
            "query_log": True,  # from the imported (common) snippet
            "lameduck": 10.0,
            "reload_interval": 0.0,  # no reload plugin
            "metrics_listen": ("0.0.0.0", 9153),
        },
        [],
    ),
    (
        "absent_plugins_are_off_and_pods_disabled_by_default",  # kubernetes README: pods disabled
        """cluster.local:53 {
            kubernetes
        }
        .:53 {
            forward . 8.8.8.8 8.8.4.4:53
        }""",
        {},
        {
            "cluster_domain": "cluster.local",
            "pods": "disabled",
            "upstreams": ("8.8.8.8", "8.8.4.4:53"),
            "health_listen": None,
            "ready_listen": None,
            "metrics_listen": None,
            "lameduck": 0.0,
            "cache": False,
            "reload_interval": 0.0,
            "loadbalance": False,
        },
        [],
    ),
    (
        "prometheus_default_address_is_localhost",  # metrics README: default localhost:9153
        ". {\n kubernetes cluster.local\n prometheus\n forward . 1.1.1.1\n}",
        {},
        {
            "metrics_listen": ("localhost", 9153),
            "metrics_compat": "coredns",
            "listen": ((ANY, 5353),),
        },
        [],
    ),
    (
        "tls_servername_and_per_endpoint_name",  # forward README: tls_servername, tls://IP%NAME
        """. {
            kubernetes cluster.local
            forward . tls://9.9.9.9 tls://149.112.112.112%dns.quad9.net:10853 {
                tls_servername dns.quad9.net
                tls /etc/ssl/quad9.pem
            }
        }""",
        {},
        {
            "upstreams": (
                "tls://9.9.9.9@dns.quad9.net",
                "tls://149.112.112.112:10853@dns.quad9.net",
            ),
            "tls_ca_file": "/etc/ssl/quad9.pem",
        },
        [],
    ),
    (
        "force_tcp_and_zone_forwards_in_one_block",  # forward README: several forwards, force_tcp
        """. {
            kubernetes cluster.local
            forward lab.example.local 10.20.0.1
            forward example.local 10.0.0.1 {
                force_tcp
            }
            forward . /etc/resolv.conf
        }""",
        {},
        {
            "forward_zones": (
                ("lab.example.local", ("10.20.0.1",)),
                ("example.local", ("tcp://10.0.0.1",)),
            ),
            "upstreams": (),
        },
        [],
    ),
    (
        "reverse_cidr_server_key",  # corefile(5): reverse zones written as CIDR
        """.:53 {
            kubernetes cluster.local
            forward . 1.1.1.1
        }
        10.0.0.0/8:53 {
            forward . 10.0.0.2
        }""",
        {},
        {"forward_zones": (("10.in-addr.arpa", ("10.0.0.2",)),)},
        [],
    ),
    (
        "bind_addresses_take_the_block_port",  # bind README
        ".:5353 {\n bind 127.0.0.1 ::1\n kubernetes cluster.local\n forward . 1.1.1.1\n}",
        {},
        {"listen": (("127.0.0.1", 5353), ("::1", 5353))},
        [],
    ),
    (
        "transfer_to_star",  # transfer README: `*` permits transfers to all addresses
        ". {\n kubernetes cluster.local\n transfer {\n  to *\n }\n forward . 1.1.1.1\n}",
        {},
        {"transfer_allow": ("0.0.0.0/0", "::/0")},
        [],
    ),
    (
        "acl_in_a_zone_block_is_scoped_to_it",  # acl README: ZONES default to the block's
        """. {
            kubernetes cluster.local
            forward . 1.1.1.1
        }
        corp.example:53 {
            acl {
                drop net 192.168.0.0/16
            }
            forward . 10.1.1.1
        }""",
        {},
        {"acl": ({"action": "drop", "net": ["192.168.0.0/16"], "zone": ["corp.example"]},)},
        [],
    ),
    (
        "environment_substitution",  # corefile(5): {$ENV_VAR} and {%ENV_VAR%}
        ". {\n kubernetes {$DOMAIN}\n forward . {%UPSTREAM%}\n}",
        {"DOMAIN": "k8s.example", "UPSTREAM": "192.0.2.53"},
        {"cluster_domain": "k8s.example", "upstreams": ("192.0.2.53",)},
        [],
    ),
    (
        "unset_environment_variable_is_reported",
        ". {\n kubernetes cluster.local\n forward . 1.1.1.1 {$EXTRA}\n}",
        {},
        {"upstreams": ("1.1.1.1",)},
        [r"Corefile:3: environment variable EXTRA is not set"],
    ),
    (
        "unsupported_plugins_and_options_are_named",
        """. {
            kubernetes cluster.local {
                namespaces default
                fallthrough
            }
            rewrite edns0 local set 0xffee abcd
            forward . 1.1.1.1 {
                except internal.example
            }
            autopath @kubernetes
            acme
        }""",
        {},
        {"cluster_domain": "cluster.local", "upstreams": ("1.1.1.1",)},
        [
            r"Corefile:2: plugin kubernetes: namespaces is not supported by kdns: .*every namespace",
            r"Corefile:2: plugin kubernetes: fallthrough cluster.local is not supported by kdns",
            r"Corefile:6: plugin rewrite: edns0 is not supported by kdns: .*name, type and class",
            r"Corefile:11: plugin acme is not supported by kdns: not a CoreDNS built-in",
            # checked once every zone kdns answers is known (except cluster.local: a note)
            r"Corefile:7: plugin forward: except internal.example is not supported by kdns",
            # autopath with pods disabled: CoreDNS's AutoPath needs the pod cache (pods
            # verified) and does nothing without it, so kdns's stays off too (noted)
        ],
    ),
    (
        "a_block_on_another_port_is_left_out",
        ".:53 {\n kubernetes cluster.local\n forward . 1.1.1.1\n}\n.:5300 {\n whoami\n}",
        {},
        {"listen": ((ANY, 5353),)},
        [r"Corefile:5: server block .:5300 on port 5300 is not supported by kdns"],
    ),
    (
        # Each CoreDNS server block has its own forward and cache: a zone block's settings go
        # to its [forward] zones entry (forward README: policy, tls; cache README: TTL).
        "zone_blocks_keep_their_own_forward_and_cache_settings",
        """. {
            kubernetes cluster.local
            forward . 1.1.1.1 {
                policy round_robin
            }
            cache 30
        }
        example.net {
            forward . 10.0.0.1 {
                tls /etc/ssl/example-net-ca.pem
                prefer_udp
            }
            cache 60
        }""",
        {},
        {
            "forward_policy": "round_robin",
            "cache_success_ttl": 30,
            "tls_ca_file": None,  # the zone's CA is the zone's (issue 19 item 9)
            "forward_zones": (
                ForwardZone(
                    "example.net",
                    ("10.0.0.1",),
                    (
                        ("denial_ttl", 60),
                        ("policy", "random"),
                        ("prefer_udp", True),
                        ("success_ttl", 60),
                        ("tls_ca_file", "/etc/ssl/example-net-ca.pem"),
                    ),
                ),
            ),
        },
        [],
    ),
    (
        "differing_cache_capacities_are_reported",  # kdns has one cache: capacities are global
        """. {
            kubernetes cluster.local
            forward . 1.1.1.1
            cache 30
        }
        example.net {
            forward . 10.0.0.1
            cache 60 {
                success 5000
            }
        }""",
        {},
        {"cache_success": 9984},
        [r"Corefile:9: cache.success_capacity = 5000 for this block is not supported"],
    ),
    (
        "k8s_external_ttl_other_than_the_cluster_ttl",  # k8s_external README: ttl
        ". {\n kubernetes cluster.local\n k8s_external example.org {\n  ttl 60\n }\n}",
        {},
        {"external_zones": ("example.org",)},
        [r"Corefile:3: plugin k8s_external: ttl 60 is not supported by kdns"],
    ),
    (
        "cache_serve_stale_verified_and_keepttl",  # cache README: serve_stale REFRESH_MODE
        ". {\n kubernetes cluster.local\n cache {\n  serve_stale 10m verified\n  keepttl\n }\n}",
        {},
        {"cache_serve_stale": 600.0},
        [
            r"Corefile:3: plugin cache: serve_stale verified is not supported",
            r"Corefile:3: plugin cache: keepttl is not supported",
        ],
    ),
    (
        "forward_into_our_own_zone_is_reported",
        ". {\n kubernetes cluster.local\n forward svc.cluster.local 10.0.0.1\n}",
        {},
        {"forward_zones": ()},  # left out: it would do nothing (issue 19 item 4)
        [r"Corefile:3: plugin forward: forward svc.cluster.local is not supported.*left out"],
    ),
]


def _source(text_or_fixture: str) -> tuple[str, str]:
    """(Corefile text, file name for messages)."""
    if text_or_fixture.endswith(".Corefile"):
        path = FIXTURES / text_or_fixture
        return path.read_text(), str(path)
    return text_or_fixture, "Corefile"


@pytest.mark.parametrize(
    ("text", "env", "fields", "problems"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_translation(text, env, fields, problems, tmp_path):
    corefile, name = _source(text)
    result = import_text(corefile, name, env)
    config = load(result.toml, tmp_path)
    for field, expected in fields.items():
        got = getattr(config, field)
        if field == "acl":
            got = tuple(dict(rule) for rule in got)
        assert got == expected, f"{field}: {got!r}\n{result.toml}"
    assert len(result.problems) == len(problems), "\n".join(result.problems)
    for line, pattern in zip(result.problems, problems, strict=True):
        assert re.search(pattern, line), line
    assert result.complete == (not problems)


def test_every_setting_comes_with_its_corefile_line():
    result = import_corefile(str(FIXTURES / "kubeadm.Corefile"), {})
    assert "ttl = 30  # kubeadm.Corefile:10 ttl 30" in result.toml
    assert "loop (kubeadm.Corefile:20)" in result.toml


# --- the Corefile format ---------------------------------------------------------------------


def test_comments_quotes_and_several_keys():
    text = (
        "# a comment line\n.:53 example.org:53, example.net {  # after the opener\n"
        '    log "a quoted {arg} # not a comment" "say \\"hi\\""\n'
        "    forward . 1.1.1.1#trailing comment\n"
        "}\n"
    )
    (block,), _ = parse_text(text)
    assert block.keys == [".:53", "example.org:53", "example.net"]
    log, forward = block.directives
    assert log.args == ["a quoted {arg} # not a comment", 'say "hi"']
    assert (forward.name, forward.args, forward.line) == ("forward", [".", "1.1.1.1"], 4)


def test_nested_blocks_and_one_line_block():
    (block,), _ = parse_text(". {\n health { lameduck 5s }\n kubernetes {\n  pods verified\n }\n}")
    health, kubernetes = block.directives
    assert health.block is not None and health.block[0].args == ["5s"]
    assert kubernetes.block is not None and kubernetes.block[0].name == "pods"


def test_a_single_block_may_leave_out_braces():
    (block,), _ = parse_text(".:53\nkubernetes cluster.local\nforward . 1.1.1.1\n")
    assert [d.name for d in block.directives] == ["kubernetes", "forward"]


def test_snippets_and_file_imports(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("prometheus :9153\n")
    (tmp_path / "conf.d" / "b.conf").write_text("reload 10s\n")
    (tmp_path / "Corefile").write_text(
        "(base) {\n errors\n import conf.d/*.conf\n}\n"
        ".:53 {\n import base\n kubernetes cluster.local\n forward . 1.1.1.1\n}\n"
    )
    result = import_corefile(str(tmp_path / "Corefile"), {})
    config = load(result.toml, tmp_path)
    assert config.metrics_listen == (ANY, 9153)
    assert config.reload_interval == 10.0
    assert "a.conf:1 prometheus :9153" in result.toml  # comments name the imported file


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        pytest.param(".:53 {\n kubernetes\n", 1, "missing '}'", id="unclosed_block"),
        pytest.param(".:53 {\n}\n}\n", 3, "unexpected '}'", id="stray_brace"),
        pytest.param('.:53 {\n log "open\n}\n', 2, "unterminated quoted", id="open_quote"),
        pytest.param(".:53 {\n import nothing-here\n}\n", 2, "no such snippet", id="import"),
        pytest.param(".:53 {\n}\nexample.org\n", 3, "expected '{'", id="second_block_no_brace"),
        pytest.param(".:x {\n}\n", 1, "bad port", id="bad_port"),
        pytest.param(".:53 {\n health {\n  lameduck 5\n }\n}\n", 3, "duration", id="duration"),
        pytest.param(
            ".:53 {\n forward .\n}\n", 2, "forward: takes FROM TO", id="forward_without_to"
        ),
        pytest.param(".:53 {\n acl {\n  deny net *\n }\n}\n", 3, "unknown action", id="acl"),
        pytest.param(
            "(loop) {\n import loop\n}\n. {\n import loop\n}\n", 2, "too many", id="cycle"
        ),
    ],
)
def test_broken_corefiles_name_the_line(text, line, problem):
    with pytest.raises(CorefileError) as caught:
        import_text(text, "Corefile", {})
    assert caught.value.line == line, str(caught.value)
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"Corefile:{line}: ")


# --- the command ---------------------------------------------------------------------------------


def test_cli_complete_translation_exits_0(capsys, tmp_path):
    assert main(["import-corefile", str(FIXTURES / "kubeadm.Corefile")], env={}) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert load(out, tmp_path).ttl == 30


def test_cli_partial_translation_exits_1(capsys, tmp_path):
    corefile = tmp_path / "Corefile"
    corefile.write_text(". {\n kubernetes cluster.local\n dnssec\n forward . 1.1.1.1\n}\n")
    assert main(["import-corefile", str(corefile)], env={}) == 1
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1
    assert "plugin dnssec is not supported by kdns" in err
    assert load(out, tmp_path).upstreams == ("1.1.1.1",)


def test_cli_unreadable_or_broken_exits_2(capsys, tmp_path):
    assert main(["import-corefile", str(tmp_path / "missing")], env={}) == 2
    assert "cannot read" in capsys.readouterr().err
    broken = tmp_path / "Corefile"
    broken.write_text(".:53 {\n errors\n")
    assert main(["import-corefile", str(broken)], env={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"kdns: {broken}:1: missing '}}' for this '{{'\n"


def test_cli_uses_the_environment_for_substitution(capsys, tmp_path):
    corefile = tmp_path / "Corefile"
    corefile.write_text(". {\n kubernetes cluster.local\n forward . {$UP}\n}\n")
    assert main(["import-corefile", str(corefile)], env={"UP": "192.0.2.1"}) == 0
    assert load(capsys.readouterr().out, tmp_path).upstreams == ("192.0.2.1",)


# --- the reference doc -----------------------------------------------------------------------------


def test_plugin_doc_matches_the_table():
    doc = (REPO / "docs" / "coredns-plugins.md").read_text()
    rows = dict(re.findall(r"^\| ([a-z0-9_]+) \| (supported|partly|not) \|", doc, re.M))
    assert rows == {name: plugin.status for name, plugin in PLUGINS.items()}


# --- issue 19: translations that were wrong --------------------------------------------------


def test_a_zone_defined_twice_is_refused_as_coredns_does():
    """CoreDNS refuses to start with one zone twice on a port: exit 2, not a translation."""
    text = ".:53 {\n kubernetes cluster.local\n}\nexample.org {\n forward . 1.1.1.1\n}\n"
    text += "example.org:53 {\n forward . 1.0.0.1\n}\n"
    with pytest.raises(CorefileError, match="example.org on port 53 is defined twice"):
        import_text(text, "Corefile", {})


def test_import_glob_matching_nothing_is_reported(tmp_path):
    """import README: a glob; AKS's custom/*.override with no coredns-custom dump is named."""
    corefile = tmp_path / "Corefile"
    corefile.write_text(
        ".:53 {\n kubernetes cluster.local\n forward . 1.1.1.1\n import custom/*.override\n}\n"
        "import custom/*.server\n"
    )
    result = import_corefile(str(corefile), {})
    assert len(result.problems) == 2 and not result.complete
    assert "import custom/*.override matched no file" in result.problems[0]
    assert "coredns-custom" in result.problems[0]


def test_bind_pod_ip_listens_on_every_address(tmp_path):
    """`bind {$POD_IP}` is each replica's own address: never baked into the config."""
    text = ".:53 {\n bind {$POD_IP}\n kubernetes cluster.local\n forward . 1.1.1.1\n}\n"
    for env in ({}, {"POD_IP": "10.244.1.7"}):
        result = import_text(text, "Corefile", env)
        config = load(result.toml, tmp_path)
        assert config.listen == ((ANY, 5353),), result.toml
        assert "10.244.1.7" not in result.toml
        assert result.complete, result.problems
        assert "KDNS_LISTEN" in result.toml


def test_a_forward_zones_tls_ca_is_its_own(tmp_path):
    """Issue 19 item 9: one zone's `tls CA` is that zone's, not every TLS upstream's."""
    text = (
        ". {\n kubernetes cluster.local\n forward . tls://1.1.1.1 {\n  tls_servername one.one.one.one\n }\n}\n"
        "corp.example {\n forward . tls://10.0.0.53 {\n  tls_servername dns.corp.example\n"
        "  tls /etc/ssl/corp-ca.pem\n }\n}\n"
    )
    result = import_text(text, "Corefile", {})
    config = load(result.toml, tmp_path)
    assert config.tls_ca_file is None
    (zone,) = config.forward_zones
    assert zone.option("tls_ca_file") == "/etc/ssl/corp-ca.pem"
    assert zone[1] == ("tls://10.0.0.53@dns.corp.example",)
    assert result.complete, result.problems


def test_no_kubernetes_plugin_is_a_forwarder_not_a_cluster(tmp_path):
    """Issue 19 item 3: a standalone Corefile serves no (demo) cluster."""
    text = ".:53 {\n forward . 192.168.1.1\n cache 300\n}\nlan:53 {\n file /etc/coredns/lan.db\n}\n"
    result = import_text(text, "Corefile", {})
    config = load(result.toml, tmp_path)
    assert config.kubernetes_enabled is False and config.listen == ((ANY, 53),)
    assert [(z.name, z.file) for z in config.local_zones] == [("lan", "/etc/coredns/lan.db")]
    assert result.complete, result.problems
