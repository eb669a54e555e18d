"""A forward zone's own settings from flags and the environment (``ZONE=UP[+UP...];KEY=VALUE``),
the same keys as a ``[forward] zones`` table: a CoreDNS server block's own forward options
(forward README: "force_tcp, use TCP even when the request comes in over UDP"; "policy") and
cache TTL caps (cache README: "success CAPACITY [TTL]"), settable where node-local-style
DaemonSets set their zones (KDNS_FORWARD_ZONE)."""

from __future__ import annotations

import pytest

from kdns.config import ConfigError, build_config
from tests.dnsupstream import DnsUpstream
from tests.kdnsproc import FIXTURES, Kdns


def test_flag_rule_with_settings_is_the_table() -> None:
    flag = build_config(None, {}, {"forward_zones": ["corp.example=10.0.0.1+10.0.0.2;policy=sequential;force_tcp=true;success_ttl=30;health_check=5"]})  # fmt: skip
    (zone,) = flag.forward_zones
    assert tuple(zone) == ("corp.example", ("10.0.0.1", "10.0.0.2"))
    assert dict(zone.options) == {"policy": "sequential", "force_tcp": True, "success_ttl": 30, "health_check": 5.0}  # fmt: skip
    # check-config writes it as a table, which reads back the same
    import tomllib

    table = tomllib.loads(flag.to_toml())["forward"]["zones"][0]
    assert table["policy"] == "sequential" and table["force_tcp"] is True


def test_env_rules_are_comma_separated_with_their_own_settings() -> None:
    env = {"KDNS_FORWARD_ZONE": "corp.example=10.0.0.1;tls_servername=dns.corp;max_concurrent=50,lan=192.168.1.1"}  # fmt: skip
    corp, lan = build_config(None, env, {}).forward_zones
    assert dict(corp.options) == {"tls_servername": "dns.corp", "max_concurrent": 50}
    assert tuple(lan) == ("lan", ("192.168.1.1",)) and not lan.options


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("a.test=10.0.0.1;bogus=1", "KEY=VALUE with KEY one of policy"),
        ("a.test=10.0.0.1;policy=weird", r"--forward-zone.policy: expected random"),
        ("a.test=10.0.0.1;policy", "KEY=VALUE"),
        ("a.test=10.0.0.1;force_tcp=true;prefer_udp=true", "exclude each other"),
        ("a.test=10.0.0.1;policy=random;policy=sequential", "given twice"),
    ],
)
def test_bad_settings_name_the_flag(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(None, {}, {"forward_zones": [rule]})


def test_force_tcp_from_the_environment_is_applied() -> None:
    """The zone's force_tcp, given in KDNS_FORWARD_ZONE, sends a UDP client's query over TCP;
    another zone keeps the client's transport."""
    records = {("host.corp.test.", "A"): ["192.0.2.5"], ("www.example.com.", "A"): ["192.0.2.1"]}
    with DnsUpstream(records) as up:
        env = {"KDNS_FORWARD_ZONE": f"corp.test={up.upstream('udp')};force_tcp=true"}
        cluster = str(FIXTURES / "cluster.yaml")
        with Kdns("--objects", cluster, "--upstream", up.upstream("udp"), env=env) as proc:
            assert [r.to_text() for s in proc.query("host.corp.test").answer for r in s] == ["192.0.2.5"]  # fmt: skip
            proc.query("www.example.com")
    by_name = {q.name.lower(): q.transport for q in up.queries}
    assert by_name["host.corp.test."] == "tcp" and by_name["www.example.com."] == "udp"
