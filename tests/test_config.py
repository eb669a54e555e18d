"""kdns.config: precedence, validation messages, SDNS aliases, address syntax, TOML round trip."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from kdns.config import (
    SETTINGS,
    Config,
    ConfigError,
    Upstream,
    build_config,
    env_warnings,
    format_hostport,
    parse_hostport,
    parse_upstream,
)


@pytest.fixture
def write_toml(tmp_path: Path):
    def write(text: str) -> str:
        path = tmp_path / "kdns.toml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def build(
    tmp_path: Path,
    toml: str | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    file = None
    if toml is not None:
        file = tmp_path / "kdns.toml"
        file.write_text(toml, encoding="utf-8")
    return build_config(None if file is None else str(file), env or {}, flags or {})


# --- precedence: defaults < file < env < flags ------------------------------------------------

PRECEDENCE = [
    # (rule, toml, env, flags, field, expected)
    ("defaults_when_nothing_given", None, {}, {}, "ttl", 5),
    ("file_beats_default", "[kubernetes]\nttl = 10", {}, {}, "ttl", 10),
    ("env_beats_file", "[kubernetes]\nttl = 10", {"KDNS_TTL": "20"}, {}, "ttl", 20),
    ("flag_beats_env", "[kubernetes]\nttl = 10", {"KDNS_TTL": "20"}, {"ttl": "30"}, "ttl", 30),
    ("flag_none_is_not_given", "[kubernetes]\nttl = 10", {"KDNS_TTL": "20"}, {"ttl": None},
     "ttl", 20),
    ("empty_env_is_unset", "[kubernetes]\nttl = 10", {"KDNS_TTL": ""}, {}, "ttl", 10),
    ("blank_env_is_unset", "[kubernetes]\nttl = 10", {"KDNS_TTL": "  "}, {}, "ttl", 10),
    ("env_list_replaces_file_list", 'bind = ["1.2.3.4:53", "5.6.7.8:53"]',
     {"KDNS_LISTEN": "127.0.0.1:5353"}, {}, "listen", (("127.0.0.1", 5353),)),
    ("flag_list_replaces_env_list", None, {"KDNS_UPSTREAM": "1.1.1.1,8.8.8.8"},
     {"upstreams": ["9.9.9.9"]}, "upstreams", ("9.9.9.9",)),
    ("env_list_is_comma_separated", None, {"KDNS_EXTERNAL_ZONE": "a.example, b.example,"}, {},
     "external_zones", ("a.example", "b.example")),
    ("env_bool_can_turn_off_file_bool", "[log]\nquery_log = true", {"KDNS_QUERY_LOG": "off"},
     {}, "query_log", False),
    ("env_no_forward_negates", "[forward]\nenabled = true", {"KDNS_NO_FORWARD": "1"}, {},
     "forward", False),
    ("env_no_forward_false_keeps_forwarding", "[forward]\nenabled = false",
     {"KDNS_NO_FORWARD": "no"}, {}, "forward", True),
    ("flag_no_forward_is_field_false", None, {}, {"forward": False}, "forward", False),
    ("flag_typed_value_accepted", None, {}, {"ttl": 7}, "ttl", 7),
    ("unknown_kdns_env_ignored", None, {"KDNS_SERVICE_HOST": "10.0.0.10", "KDNS_PORT": "x"},
     {}, "ttl", 5),
    ("off_disables_metrics", None, {"KDNS_METRICS_LISTEN": "OFF"}, {}, "metrics_listen", None),
    ("names_lowercased_and_dot_stripped", None, {"KDNS_CLUSTER_DOMAIN": "Cluster.Example."},
     {}, "cluster_domain", "cluster.example"),
    ("choices_case_insensitive", None, {"KDNS_LOG_LEVEL": "DEBUG"}, {}, "log_level", "debug"),
    ("seconds_accept_toml_int", "[kubernetes]\nstartup_timeout = 0", {}, {},
     "startup_timeout", 0.0),
    ("repeated_list_items_deduplicated", None, {}, {"listen": [":53", "127.0.0.1:53", ":53"]},
     "listen", (("", 53), ("127.0.0.1", 53))),
    ("all_addresses_cover_both_any_addresses", None, {},
     {"listen": ["0.0.0.0:53", ":53", "[::]:53", "[::]:54"]}, "listen", (("", 53), ("::", 54))),
    ("ephemeral_ports_are_never_merged", None, {}, {"listen": [":0", "0.0.0.0:0"]}, "listen",
     (("", 0), ("0.0.0.0", 0))),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "env", "flags", "field", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in PRECEDENCE],
)
def test_precedence(tmp_path, toml, env, flags, field, expected):
    assert getattr(build(tmp_path, toml, env, flags), field) == expected


def test_defaults_match_the_dataclass():
    assert build_config() == Config()
    assert Config().listen == (("", 53),)  # ":53": IPv4 and IPv6, as CoreDNS's ".:53"
    assert Config().metrics_listen == ("", 9153)
    assert (Config().health_listen, Config().ready_listen) == (("", 8080), ("", 8181))


def test_kdns_config_env_names_the_file(write_toml):
    path = write_toml("[kubernetes]\nttl = 11")
    config = build_config(None, {"KDNS_CONFIG": path})
    assert (config.ttl, config.config_file) == (11, path)


def test_explicit_file_beats_kdns_config_env(write_toml, tmp_path):
    path = write_toml("[kubernetes]\nttl = 11")
    config = build_config(path, {"KDNS_CONFIG": str(tmp_path / "missing.toml")})
    assert config.ttl == 11


def test_every_flag_setting_has_an_env_var_of_the_same_name():
    for setting in SETTINGS:
        if setting.cli is not None:
            assert setting.env == "KDNS_" + setting.cli.upper().replace("-", "_")


def test_unknown_flag_field_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown flag field 'tll'"):
        build_config(flags={"tll": "5"})


# --- every validation error names the key ------------------------------------------------------

ERRORS = [
    # (rule, toml, env, flags, message)
    ("file_int_rejects_string", '[kubernetes]\nttl = "5"', {}, {},
     'config: kubernetes.ttl: expected an integer 0..3600, got "5"'),
    ("file_int_range", "[kubernetes]\nttl = 3601", {}, {},
     "config: kubernetes.ttl: expected an integer 0..3600, got 3601"),
    ("file_int_rejects_bool", "[server]\nworkers = true", {}, {},
     'config: server.workers: expected an integer 1..64 or "auto", got true'),
    ("env_int_not_a_number", None, {"KDNS_TTL": "x"}, {},
     'config: KDNS_TTL: expected an integer 0..3600, got "x"'),
    ("flag_int_not_a_number", None, {}, {"ttl": "x"},
     'config: --ttl: expected an integer 0..3600, got "x"'),
    ("flag_int_range", None, {}, {"ttl": "-1"},
     "config: --ttl: expected an integer 0..3600, got -1"),
    ("workers_range", None, {"KDNS_WORKERS": "65"}, {},
     'config: KDNS_WORKERS: expected an integer 1..64 or "auto", got 65'),
    ("udp_size_range", None, {}, {"udp_size": "511"},
     "config: --udp-size: expected an integer 512..65535, got 511"),
    ("tcp_max_connections_range", "[server]\ntcp_max_connections = 0", {}, {},
     "config: server.tcp_max_connections: expected an integer 1..1000000, got 0"),
    ("file_bool_must_be_toml_bool", '[kubernetes]\nkiller_mode = "yes"', {}, {},
     'config: kubernetes.killer_mode: expected true or false, got "yes"'),
    ("file_bool_rejects_int", "[kubernetes]\nenabled = 1", {}, {},
     "config: kubernetes.enabled: expected true or false, got 1"),
    ("env_bool_unknown_word", None, {"KDNS_KILLER": "maybe"}, {},
     'config: KDNS_KILLER: expected a boolean (1/0/true/false/yes/no/on/off), got "maybe"'),
    ("env_no_forward_named", None, {"KDNS_NO_FORWARD": "2"}, {},
     'config: KDNS_NO_FORWARD: expected a boolean (1/0/true/false/yes/no/on/off), got "2"'),
    ("file_choice", '[kubernetes]\npods = "yes"', {}, {},
     'config: kubernetes.pods: expected disabled|insecure|verified, got "yes"'),
    ("env_choice", None, {"KDNS_LOG_FORMAT": "xml"}, {},
     'config: KDNS_LOG_FORMAT: expected text|json, got "xml"'),
    ("flag_choice", None, {}, {"log_level": "trace"},
     'config: --log-level: expected debug|info|warning|error, got "trace"'),
    ("file_seconds_negative", "[kubernetes]\nstartup_timeout = -1.5", {}, {},
     "config: kubernetes.startup_timeout: expected a number of seconds >= 0, got -1.5"),
    ("file_seconds_zero_not_ok", "[server]\ntcp_idle_timeout = 0", {}, {},
     "config: server.tcp_idle_timeout: expected a number of seconds > 0, got 0"),
    ("env_seconds_nan", None, {"KDNS_STARTUP_TIMEOUT": "nan"}, {},
     "config: KDNS_STARTUP_TIMEOUT: expected a number of seconds >= 0, got nan"),
    ("env_seconds_word", None, {"KDNS_STARTUP_TIMEOUT": "soon"}, {},
     'config: KDNS_STARTUP_TIMEOUT: expected a number of seconds >= 0, got "soon"'),
    ("file_name", '[kubernetes]\ncluster_domain = "cluster..local"', {}, {},
     'config: kubernetes.cluster_domain: expected a DNS name like cluster.local, '
     'got "cluster..local"'),
    ("flag_name_empty", None, {}, {"cluster_domain": "."},
     'config: --cluster-domain: expected a DNS name like cluster.local, got "."'),
    # Underscores are fine in a zone (kubespray's k8s_external.local); empty labels are not.
    ("env_external_zone_item", None, {"KDNS_EXTERNAL_ZONE": "ok.example,bad..zone"}, {},
     'config: KDNS_EXTERNAL_ZONE: expected a DNS name like home.example.com, got "bad..zone"'),
    ("file_list_wrong_type", "[kubernetes]\nexternal_zones = 5", {}, {},
     "config: kubernetes.external_zones: expected a list of a DNS name like home.example.com, "
     "got 5"),
    ("file_listen_empty", "[server]\nlisten = []", {}, {},
     "config: server.listen: expected at least one HOST:PORT, got []"),
    ("flag_listen_bad", None, {}, {"listen": ["1.2.3.4"]},
     'config: --listen: expected HOST:PORT (HOST an IP address or localhost, IPv6 in '
     'brackets), got "1.2.3.4"'),
    ("file_listen_port_range", 'bind = ":65536"', {}, {},
     'config: bind: expected a port 0..65535, got ":65536"'),
    ("env_metrics_listen", None, {"KDNS_METRICS_LISTEN": "no"}, {},
     'config: KDNS_METRICS_LISTEN: expected HOST:PORT (HOST an IP address or localhost, '
     'IPv6 in brackets), got "no"'),
    ("file_health_listen_type", "[health]\nlisten = 8080", {}, {},
     "config: health.listen: expected HOST:PORT or off, got 8080"),
    ("flag_upstream", None, {}, {"upstreams": ["dns.google"]},
     'config: --upstream: expected an upstream [udp://|tcp://|tls://]IP[:PORT][@TLS_NAME], '
     'got "dns.google"'),
    ("file_path_empty", '[kubernetes]\nkubeconfig = ""', {}, {},
     'config: kubernetes.kubeconfig: expected a path, got ""'),
    ("file_objects_item", "[kubernetes]\nobjects = [1]", {}, {},
     "config: kubernetes.objects: expected a path, got 1"),
    ("file_dns_service", '[kubernetes]\ndns_service = "kube-dns"', {}, {},
     'config: kubernetes.dns_service: expected NAMESPACE/NAME of a Service, got "kube-dns"'),
    ("unknown_key_in_section", '[kubernetes]\nclusterdomain = "x"', {}, {},
     "config: kubernetes.clusterdomain: unknown key"),
    ("unknown_top_level_key", "nullroute = true", {}, {}, "config: nullroute: unknown key"),
    ("unknown_section", "[nosuch]\nsize = 1", {}, {}, "config: nosuch: unknown key"),
    ("unknown_key_in_new_section", "[cache]\nsize = 1", {}, {}, "config: cache.size: unknown key"),
    ("section_must_be_table", "kubernetes = true", {}, {},
     "config: kubernetes: expected a table [kubernetes], got true"),
    ("alias_and_key_conflict", 'bind = ":53"\n[server]\nlisten = ":54"', {}, {},
     "config: server.listen: given twice, also as bind"),
    ("value_with_newline_stays_one_line", None, {"KDNS_PODS": "a\nb"}, {},
     'config: KDNS_PODS: expected disabled|insecure|verified, got "a\\u000ab"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "env", "flags", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
def test_errors_name_the_key(tmp_path, toml, env, flags, message):
    with pytest.raises(ConfigError) as err:
        build(tmp_path, toml, env, flags)
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_config_error_has_key_and_problem():
    err = ConfigError("kubernetes.ttl", "expected\nsomething")
    assert (err.key, err.problem, str(err)) == (
        "kubernetes.ttl",
        "expected something",
        "config: kubernetes.ttl: expected something",
    )


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"^config: .*nope\.toml: cannot read: No such file"):
        build_config(path)


def test_invalid_toml_is_one_line(write_toml):
    path = write_toml("[kubernetes\nttl = 5\n")
    with pytest.raises(ConfigError) as err:
        build_config(path)
    assert str(err.value).startswith(f"config: {path}: invalid TOML: ")
    assert "\n" not in str(err.value)


# --- SDNS compatibility --------------------------------------------------------------------------

SDNS = [
    # (rule, toml, field, expected)
    ("bind_is_server_listen", 'bind = ":53"', "listen", (("", 53),)),
    ("bind_list", 'bind = ["127.0.0.1:53", "[::1]:53"]', "listen",
     (("127.0.0.1", 53), ("::1", 53))),
    ("loglevel_is_log_level", 'loglevel = "debug"', "log_level", "debug"),
    ("killer_mode_is_killer", "[kubernetes]\nkiller_mode = true", "killer", True),
    ("kubernetes_enabled", "[kubernetes]\nenabled = false", "kubernetes_enabled", False),
    ("kubeconfig_path", '[kubernetes]\nkubeconfig = "/etc/kube.conf"', "kubeconfig",
     "/etc/kube.conf"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "field", "expected"), [pytest.param(*case[1:], id=case[0]) for case in SDNS]
)
def test_sdns_keys(tmp_path, toml, field, expected):
    assert getattr(build(tmp_path, toml), field) == expected


def test_sdns_design_example_file(tmp_path):
    config = build(
        tmp_path,
        'bind = ":5353"\nloglevel = "warning"\n\n[kubernetes]\nenabled = true\n'
        'cluster_domain = "cluster.local"\nkiller_mode = false\n',
    )
    assert dataclasses.replace(config, config_file=None) == Config(
        listen=(("", 5353),), log_level="warning"
    )


# --- listen addresses ------------------------------------------------------------------------------

LISTEN_OK = [
    ("ipv4", "1.2.3.4:53", ("1.2.3.4", 53)),
    ("ipv6_bracketed", "[::1]:53", ("::1", 53)),
    ("ipv6_compressed", "[2001:db8:0:0::1]:5353", ("2001:db8::1", 5353)),
    ("empty_host_is_all_interfaces", ":53", ("", 53)),
    ("ipv4_any", "0.0.0.0:53", ("0.0.0.0", 53)),
    ("ipv6_any", "[::]:53", ("::", 53)),
    ("port_zero_is_ephemeral", "127.0.0.1:0", ("127.0.0.1", 0)),
    ("localhost", "LocalHost:8053", ("localhost", 8053)),
    ("whitespace_trimmed", " 10.0.0.1:53 ", ("10.0.0.1", 53)),
    ("highest_port", "[::1]:65535", ("::1", 65535)),
]

LISTEN_BAD = [
    ("no_port", "1.2.3.4"),
    ("ipv6_without_brackets", "::1:53"),
    ("hostname", "example.com:53"),
    ("port_too_big", "1.2.3.4:65536"),
    ("port_not_digits", "1.2.3.4:dns"),
    ("port_signed", "1.2.3.4:+53"),
    ("empty_port", "1.2.3.4:"),
    ("unclosed_bracket", "[::1:53"),
    ("junk_after_bracket", "[::1]x53"),
    ("empty_brackets", "[]:53"),
    ("ipv4_with_leading_zero", "01.2.3.4:53"),
    ("empty", ""),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(*case[1:], id=case[0]) for case in LISTEN_OK]
)
def test_listen_parses(text, expected):
    assert parse_hostport(text) == expected
    assert parse_hostport(format_hostport(expected)) == expected


@pytest.mark.parametrize("text", [pytest.param(case[1], id=case[0]) for case in LISTEN_BAD])
def test_listen_rejects(text):
    with pytest.raises(ValueError):
        parse_hostport(text)


# --- upstreams ------------------------------------------------------------------------------------

UPSTREAM_OK = [
    # (rule, text, stored as, parsed)
    ("bare_ipv4", "1.1.1.1", "1.1.1.1", Upstream("udp", "1.1.1.1", 53, None)),
    ("ipv4_port", "1.1.1.1:5353", "1.1.1.1:5353", Upstream("udp", "1.1.1.1", 5353, None)),
    ("bare_ipv6", "2606:4700::1111", "2606:4700::1111",
     Upstream("udp", "2606:4700::1111", 53, None)),
    ("ipv6_port", "[2606:4700:0::1111]:53", "[2606:4700::1111]:53",
     Upstream("udp", "2606:4700::1111", 53, None)),
    # Without brackets a trailing ":53" is part of the IPv6 address: write [IPv6]:PORT.
    ("unbracketed_ipv6_port_is_address", "2606:4700::1111:53", "2606:4700::1111:53",
     Upstream("udp", "2606:4700::1111:53", 53, None)),
    ("udp_scheme", "udp://8.8.8.8", "udp://8.8.8.8", Upstream("udp", "8.8.8.8", 53, None)),
    ("dns_scheme_is_plain", "dns://8.8.8.8:53", "dns://8.8.8.8:53",
     Upstream("udp", "8.8.8.8", 53, None)),
    ("tcp_scheme", "TCP://1.1.1.1:53", "tcp://1.1.1.1:53", Upstream("tcp", "1.1.1.1", 53, None)),
    ("tls_default_port", "tls://1.1.1.1@Cloudflare-DNS.com", "tls://1.1.1.1@cloudflare-dns.com",
     Upstream("tls", "1.1.1.1", 853, "cloudflare-dns.com")),
    ("tls_port_and_name", "tls://1.1.1.1:853@name", "tls://1.1.1.1:853@name",
     Upstream("tls", "1.1.1.1", 853, "name")),
    ("tls_brackets_dropped_without_port", "tls://[2606:4700::1111]", "tls://2606:4700::1111",
     Upstream("tls", "2606:4700::1111", 853, None)),
]  # fmt: skip

UPSTREAM_BAD = [
    ("hostname", "dns.google"),
    ("unknown_scheme", "https://1.1.1.1"),
    ("empty_scheme", "://1.1.1.1"),
    ("name_without_tls", "tcp://1.1.1.1@name"),
    ("bad_tls_name", "tls://1.1.1.1@bad..name"),
    ("port_zero", "1.1.1.1:0"),
    ("garbage_after_ipv6", "2606:4700::1111:53:x"),
    ("empty", ""),
]


@pytest.mark.parametrize(
    ("text", "stored", "parsed"), [pytest.param(*case[1:], id=case[0]) for case in UPSTREAM_OK]
)
def test_upstream_syntax(text, stored, parsed):
    assert build_config(flags={"upstreams": [text]}).upstreams == (stored,)
    assert parse_upstream(text) == parsed
    assert parse_upstream(stored) == parsed


@pytest.mark.parametrize("text", [pytest.param(case[1], id=case[0]) for case in UPSTREAM_BAD])
def test_upstream_rejects(text):
    with pytest.raises(ValueError):
        parse_upstream(text)
    with pytest.raises(ConfigError, match=r"^config: --upstream: expected an upstream"):
        build_config(flags={"upstreams": [text]})


# --- to_toml round trip -----------------------------------------------------------------------------

EVERYTHING = Config(
    listen=(("127.0.0.1", 0), ("::1", 5353), ("localhost", 53)),
    cluster_domain="k8s.example",
    external_zones=("ext.example", "lb.example"),
    pods="verified",
    ttl=0,
    endpoint_pod_names=True,
    objects=("/srv/manifests", 'odd "dir"\\with\ttab\x7fdel/ünïcode'),
    kubeconfig="/home/me/.kube/config",
    kubernetes_enabled=False,
    killer=True,
    upstreams=("1.1.1.1", "tls://[2606:4700::1111]:853@cloudflare-dns.com"),
    metrics_listen=None,
    health_listen=("::", 8080),
    ready_listen=None,
    workers=64,
    log_level="error",
    log_format="json",
    query_log=True,
    startup_timeout=0.25,
    udp_size=4096,
    tcp_idle_timeout=1e-3,
    tcp_max_connections=7,
    dns_service="dns/kdns",
)


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(Config(), id="defaults"),
        pytest.param(EVERYTHING, id="everything"),
        # What EVERYTHING cannot also hold: these conflict with its objects and upstreams.
        pytest.param(Config(demo=True, forward=False, listen=(("", 0),)), id="switches"),
    ],
)
def test_to_toml_round_trips(write_toml, config):
    text = config.to_toml()
    tomllib.loads(text)  # valid TOML on its own
    path = write_toml(text)
    # A relative path in a file names a file beside it (issue 22 item 11).
    here = os.path.dirname(os.path.abspath(path))
    objects = tuple(os.path.normpath(os.path.join(here, p)) for p in config.objects)
    assert build_config(path) == dataclasses.replace(config, config_file=path, objects=objects)


def test_to_toml_uses_canonical_keys_and_leaves_unset_out():
    text = Config(metrics_listen=None).to_toml()
    doc = tomllib.loads(text)
    assert doc["server"]["listen"] == [":53"]
    assert doc["metrics"]["listen"] == "off"
    assert "kubeconfig" not in doc["kubernetes"]
    assert "bind" not in doc and "loglevel" not in doc


# --- conflicting settings, across layers ----------------------------------------------------------

CONFLICTS = [
    # (rule, toml, env, flags, message)
    ("demo_flag_and_objects_flag", None, {}, {"demo": True, "objects": ["a.yaml"]},
     "config: --demo: conflicts with --objects: serve the demo cluster or manifest files, "
     "not both"),
    ("demo_in_file_objects_flag", "[kubernetes]\ndemo = true", {}, {"objects": ["a.yaml"]},
     "config: kubernetes.demo: conflicts with --objects: serve the demo cluster or manifest "
     "files, not both"),
    ("demo_env_objects_in_file", '[kubernetes]\nobjects = ["a.yaml"]', {"KDNS_DEMO": "1"}, {},
     "config: KDNS_DEMO: conflicts with kubernetes.objects: serve the demo cluster or manifest "
     "files, not both"),
    ("no_forward_and_upstream", None, {}, {"forward": False, "upstreams": ["1.1.1.1"]},
     "config: --no-forward: conflicts with --upstream: forwarding is off, so no upstream would "
     "be asked"),
    ("forward_disabled_in_file_upstream_env", "[forward]\nenabled = false",
     {"KDNS_UPSTREAM": "1.1.1.1"}, {},
     "config: forward.enabled: conflicts with KDNS_UPSTREAM: forwarding is off, so no upstream "
     "would be asked"),
    ("no_forward_and_forward_zones", '[forward]\nzones = ["lan.example=192.168.1.1"]', {},
     {"forward": False},
     "config: --no-forward: conflicts with forward.zones: forwarding is off, so no upstream "
     "would be asked"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "env", "flags", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CONFLICTS],
)
def test_conflicting_settings_name_both_keys(tmp_path, toml, env, flags, message):
    with pytest.raises(ConfigError) as err:
        build(tmp_path, toml, env, flags)
    assert str(err.value) == message


NO_CONFLICT = [
    # (rule, toml, env, flags): a later layer turned one side off, so nothing contradicts
    ("env_turns_file_demo_off", "[kubernetes]\ndemo = true", {"KDNS_DEMO": "0"},
     {"objects": ["a.yaml"]}),
    ("env_turns_forwarding_back_on", "[forward]\nenabled = false", {"KDNS_NO_FORWARD": "no"},
     {"upstreams": ["1.1.1.1"]}),
    ("empty_upstreams_with_no_forward", "[forward]\nupstreams = []", {}, {"forward": False}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("toml", "env", "flags"), [pytest.param(*case[1:], id=case[0]) for case in NO_CONFLICT]
)
def test_effective_values_decide_conflicts(tmp_path, toml, env, flags):
    build(tmp_path, toml, env, flags)


# --- misspelled KDNS_* variables: warnings, not errors -------------------------------------------

ENV_WARNINGS = [
    # (rule, env, warnings)
    ("typo_names_the_closest", {"KDNS_TLL": "5"},
     ["KDNS_TLL is not a kdns setting (did you mean KDNS_TTL?); ignored"]),
    ("missing_underscore", {"KDNS_NOFORWARD": "1"},
     ["KDNS_NOFORWARD is not a kdns setting (did you mean KDNS_NO_FORWARD?); ignored"]),
    ("plural", {"KDNS_UPSTREAMS": "1.1.1.1"},
     ["KDNS_UPSTREAMS is not a kdns setting (did you mean KDNS_UPSTREAM?); ignored"]),
    ("lowercase", {"kdns_ttl": "5"},
     ["kdns_ttl is not a kdns setting (did you mean KDNS_TTL?); ignored"]),
    ("nothing_close", {"KDNS_XYZZY": "1"}, ["KDNS_XYZZY is not a kdns setting; ignored"]),
    ("known_names_are_quiet", {"KDNS_TTL": "5", "KDNS_CONFIG": "", "KDNS_NO_FORWARD": "1"}, []),
    ("kubernetes_service_links_are_quiet",
     {"KDNS_SERVICE_HOST": "10.0.0.10", "KDNS_SERVICE_PORT": "53", "KDNS_SERVICE_PORT_DNS": "53",
      "KDNS_PORT": "udp://10.0.0.10:53", "KDNS_PORT_53_UDP": "udp://10.0.0.10:53",
      "KDNS_PORT_53_UDP_PROTO": "udp", "KDNS_PORT_53_UDP_PORT": "53",
      "KDNS_PORT_53_UDP_ADDR": "10.0.0.10", "KDNS_METRICS_SERVICE_HOST": "10.0.0.11"}, []),
    ("other_variables_are_quiet", {"PATH": "/bin", "HOME": "/root"}, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("env", "warnings"), [pytest.param(*case[1:], id=case[0]) for case in ENV_WARNINGS]
)
def test_env_warnings(env, warnings):
    assert env_warnings(env) == warnings
    build_config(None, env)  # never an error


# --- zones from every layer; paths beside the file (issue 22 items 10, 11) --------------------


def test_zone_file_flag_adds_to_the_files_zones(write_toml, tmp_path):
    """--zone-file adds a zone to the file's [[zones]]; it does not replace them."""
    path = write_toml('[[zones]]\nname = "home.example.com"\nrecords = ["nas A 192.0.2.1"]\n')
    lab = str(tmp_path / "lab.zone")
    config = build_config(path, {}, {"local_zones": [f"lab.example.com={lab}"]})
    assert [(z.name, z.file) for z in config.local_zones] == [
        ("home.example.com", None),
        ("lab.example.com", lab),
    ]
    env = build_config(path, {"KDNS_ZONE_FILE": f"lab.example.com={lab}"})
    assert [z.name for z in env.local_zones] == ["home.example.com", "lab.example.com"]


def test_a_zone_defined_twice_is_one_line(write_toml, tmp_path):
    path = write_toml('[[zones]]\nname = "home.example.com"\nrecords = ["nas A 192.0.2.1"]\n')
    with pytest.raises(ConfigError) as caught:
        build_config(path, {}, {"local_zones": [f"home.example.com={tmp_path / 'z'}"]})
    assert str(caught.value) == (
        "config: --zone-file: zone home.example.com is already defined by zones"
    )
    with pytest.raises(ConfigError, match="--hosts-file: zone home.example.com is already"):
        build_config(path, {}, {"hosts_files": [f"home.example.com={tmp_path / 'h'}"]})


def test_relative_paths_in_a_file_name_files_beside_it(tmp_path, monkeypatch):
    """nginx, CoreDNS and systemd read a config file's relative paths against its directory,
    not the working directory; flags and the environment keep the working directory's."""
    folder = tmp_path / "etc" / "kdns"
    folder.mkdir(parents=True)
    path = folder / "kdns.toml"
    path.write_text(
        '[kubernetes]\nobjects = ["cluster.yaml", "/abs/other.yaml"]\nkubeconfig = "kc/config"\n'
        '[forward]\nresolv_conf = "../resolv.conf"\n'
        '[[zones]]\nname = "lab.example.com"\nfile = "zones/lab.zone"\n'
        '[[blocklists]]\nname = "ads"\nfile = "lists/ads.hosts"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = build_config("etc/kdns/kdns.toml", {}, {"tls_ca_file": "ca.pem"})
    assert config.objects == (str(folder / "cluster.yaml"), "/abs/other.yaml")
    assert config.kubeconfig == str(folder / "kc" / "config")
    assert config.resolv_conf == str(tmp_path / "etc" / "resolv.conf")
    assert config.local_zones[0].file == str(folder / "zones" / "lab.zone")
    assert config.blocklists[0].file == str(folder / "lists" / "ads.hosts")
    assert config.tls_ca_file == "ca.pem"  # a flag: the working directory's
