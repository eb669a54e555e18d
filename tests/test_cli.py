"""kdns.cli: commands, flags into Config, exit codes and the one-line error contract."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import kdns
from kdns.cli import main
from kdns.config import SETTINGS, Config, build_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def served(monkeypatch):
    """Stand in for kdns.app (the lifecycle) and record the Config that serve hands it."""
    calls: list[Config] = []

    def run(config: Config, reload: Callable[[], Config] | None = None) -> int:
        calls.append(config)
        assert reload is not None and reload() == config  # a reload rebuilds the same config
        return 0

    monkeypatch.setitem(sys.modules, "kdns.app", types.SimpleNamespace(run=run))
    return calls


def serve(argv: list[str], served: list[Config], env: dict[str, str] | None = None) -> Config:
    """``kdns serve ARGV...``: the Config handed to the lifecycle."""
    assert main(["serve", *argv], env=env or {}) == 0
    assert len(served) == 1
    return served[0]


# --- serve: flags become Config fields ----------------------------------------------------------

FLAGS = [
    # (rule, argv, field, expected)
    ("listen_ipv4", ["--demo", "--listen", "127.0.0.1:5353"], "listen", (("127.0.0.1", 5353),)),
    ("listen_ipv6", ["--listen", "[::1]:0"], "listen", (("::1", 0),)),
    ("listen_all_addresses_both_families", ["--listen", ":53"], "listen", (("", 53),)),
    ("listen_repeats", ["--listen", "127.0.0.1:0", "--listen", "[::1]:0"], "listen",
     (("127.0.0.1", 0), ("::1", 0))),
    ("demo", ["--demo"], "demo", True),
    ("objects_repeat", ["--objects", "a.yaml", "--objects", "dir"], "objects", ("a.yaml", "dir")),
    ("kubeconfig", ["--kubeconfig", "/k"], "kubeconfig", "/k"),
    ("cluster_domain", ["--cluster-domain", "Example.ORG."], "cluster_domain", "example.org"),
    ("external_zone_repeats", ["--external-zone", "a.example", "--external-zone", "b.example"],
     "external_zones", ("a.example", "b.example")),
    ("pods", ["--pods", "verified"], "pods", "verified"),
    ("ttl", ["--ttl", "30"], "ttl", 30),
    ("endpoint_pod_names", ["--endpoint-pod-names"], "endpoint_pod_names", True),
    ("upstream_repeats", ["--upstream", "1.1.1.1", "--upstream", "tls://1.1.1.1@one.one"],
     "upstreams", ("1.1.1.1", "tls://1.1.1.1@one.one")),
    ("no_forward", ["--no-forward"], "forward", False),
    ("metrics_listen_off", ["--metrics-listen", "off"], "metrics_listen", None),
    ("health_listen", ["--health-listen", "127.0.0.1:0"], "health_listen", ("127.0.0.1", 0)),
    ("ready_listen", ["--ready-listen", ":8181"], "ready_listen", ("", 8181)),
    ("killer", ["--killer"], "killer", True),
    ("workers", ["--workers", "4"], "workers", 4),
    ("log_level", ["--log-level", "debug"], "log_level", "debug"),
    ("log_format", ["--log-format", "json"], "log_format", "json"),
    ("query_log", ["--query-log"], "query_log", True),
    ("startup_timeout", ["--startup-timeout", "0.5"], "startup_timeout", 0.5),
    ("udp_size", ["--udp-size", "4096"], "udp_size", 4096),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "field", "expected"), [pytest.param(*case[1:], id=case[0]) for case in FLAGS]
)
def test_flag_sets_field(served, argv, field, expected):
    assert getattr(serve(argv, served), field) == expected


def test_every_flag_setting_is_a_serve_option(capsys):
    assert main(["serve", "--help"], env={}) == 0
    usage = capsys.readouterr().out
    for flag in ["-c", "--config", *(s.flag for s in SETTINGS if s.flag)]:
        assert f"{flag} " in usage or f"{flag}]" in usage, flag


def test_no_flags_gives_defaults(served):
    assert serve([], served) == Config()


def test_flags_not_given_keep_env_and_file(served, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text('[kubernetes]\nttl = 10\npods = "disabled"\n[log]\nquery_log = true\n')
    config = serve(["-c", str(path), "--demo"], served, env={"KDNS_TTL": "20"})
    assert (config.ttl, config.pods, config.query_log) == (20, "disabled", True)
    assert config.config_file == str(path)


def test_flag_beats_env_and_file(served, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nttl = 10\n")
    config = serve(["--config", str(path), "--ttl", "30"], served, env={"KDNS_TTL": "20"})
    assert config.ttl == 30


def test_kdns_config_env_is_read_by_serve(served, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nttl = 10\n")
    assert serve([], served, env={"KDNS_CONFIG": str(path)}).ttl == 10


def test_serve_returns_run_status(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "kdns.app", types.SimpleNamespace(run=lambda config, reload=None: 3)
    )
    assert main(["serve", "--demo"], env={}) == 3


# --- errors: exit 1 and exactly one line on stderr --------------------------------------------------

BAD = [
    # (rule, argv, env, stderr line)
    ("bad_flag_value", ["serve", "--ttl", "x"], {},
     'kdns: config: --ttl: expected an integer 0..3600, got "x"'),
    ("bad_flag_value_after_serve", ["serve", "--pods", "yes"], {},
     'kdns: config: --pods: expected disabled|insecure|verified, got "yes"'),
    ("bad_env_value", ["serve"], {"KDNS_WORKERS": "0"},
     'kdns: config: KDNS_WORKERS: expected an integer 1..64 or "auto", got 0'),
    ("bad_listen", ["serve", "--listen", "::1:53"], {},
     'kdns: config: --listen: expected HOST:PORT (HOST an IP address or localhost, IPv6 in '
     'brackets), got "::1:53"'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "env", "line"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_value_exits_1_with_one_line(served, capsys, argv, env, line):
    assert main(argv, env=env) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", line + "\n")
    assert served == []  # nothing started


def test_bad_config_file_exits_1_with_one_line(served, capsys, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text('[kubernetes]\nclusterdomain = "x"\n')
    assert main(["serve", "-c", str(path)], env={}) == 1
    assert capsys.readouterr().err == "kdns: config: kubernetes.clusterdomain: unknown key\n"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--no-such-flag"], id="unknown_flag"),
        pytest.param(["serve", "--no-such-flag"], id="unknown_serve_flag"),
        pytest.param(["serve", "--ttl"], id="flag_missing_value"),
        pytest.param(["check-config"], id="check_config_needs_file"),
        pytest.param(["--demo", "version"], id="command_after_flags"),
    ],
)
def test_usage_errors_keep_argparse_exit_2(served, capsys, argv):
    assert main(argv, env={}) == 2
    err = capsys.readouterr().err
    if "--no-such-flag" in argv:  # one line naming it (issue 22 item 13)
        assert "error: unknown option --no-such-flag" in err
    else:
        assert "usage: kdns" in err
    assert served == []


# --- version and check-config ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["version"], ["--version"]])
def test_version(capsys, argv):
    assert main(argv, env={}) == 0
    assert capsys.readouterr().out == f"kdns {kdns.__version__}\n" == "kdns 0.1.0\n"


def test_help_exits_0(capsys):
    assert main(["--help"], env={}) == 0
    assert "check-config" in capsys.readouterr().out


def test_check_config_prints_toml_that_round_trips(capsys, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text(
        'bind = ["[::1]:0", ":5353"]\nloglevel = "debug"\n'
        '[kubernetes]\nkiller_mode = true\nttl = 9\nexternal_zones = ["Ext.Example."]\n'
        '[forward]\nupstreams = ["tls://1.1.1.1@cloudflare-dns.com"]\n[metrics]\nlisten = "off"\n'
    )
    assert main(["check-config", str(path)], env={}) == 0
    out, err = capsys.readouterr()
    assert err == ""
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    original = build_config(str(path))
    assert build_config(str(printed)) == dataclasses.replace(original, config_file=str(printed))
    assert original.external_zones == ("ext.example",) and original.metrics_listen is None


def test_check_config_applies_environment(capsys, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nttl = 9\n")
    assert main(["check-config", str(path)], env={"KDNS_TTL": "12"}) == 0
    assert "\nttl = 12\n" in capsys.readouterr().out


def test_check_config_bad_file_exits_1(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[kubernetes]\npods = "yes"\n')
    assert main(["check-config", str(path)], env={}) == 1
    assert capsys.readouterr() == (
        "",
        'kdns: config: kubernetes.pods: expected disabled|insecure|verified, got "yes"\n',
    )


def test_check_config_subprocess(tmp_path):
    """The real entry point: exit status and stderr as a shell script would see them."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[kubernetes]\nttl = 99999\n")
    script = Path(sys.executable).with_name("kdns")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kdns.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    env["PYTHONPATH"] = str(REPO)  # works before `pip install -e .` too
    done = subprocess.run(
        [*command, "check-config", str(bad)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "kdns: config: kubernetes.ttl: expected an integer 0..3600, got 99999\n"


# --- a command is required: nothing serves by accident --------------------------------------------


def test_bare_kdns_prints_help_and_exits_2(served, capsys):
    assert main([], env={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: kdns") and "serve" in err and "check-config" in err
    assert "kdns serve --demo" in err  # the epilog says how to serve
    assert served == []


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--demo"], "kdns serve --demo"),
        (["--listen=127.0.0.1:5353", "--demo"], "kdns serve --listen=127.0.0.1:5353 --demo"),
        (["-c", "my file.toml"], "kdns serve -c 'my file.toml'"),
        (["--no-forward"], "kdns serve --no-forward"),
    ],
)
def test_serve_options_without_serve_are_a_usage_error_with_a_hint(served, capsys, argv, hint):
    assert main(argv, env={}) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: kdns")
    assert err.splitlines()[-1] == f"kdns: error: a command is required: did you mean `{hint}`?"
    assert served == []


def test_bare_kdns_as_a_process_serves_nothing():
    from tests.kdnsproc import run_kdns

    result = run_kdns()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: kdns")
    assert "listening" not in result.stderr


# --- conflicts and misspelled environment variables --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "line"),
    [
        (["serve", "--demo", "--objects", "a.yaml"], {},
         "kdns: config: --demo: conflicts with --objects: serve the demo cluster or manifest "
         "files, not both"),
        (["serve", "--no-forward", "--upstream", "1.1.1.1"], {},
         "kdns: config: --no-forward: conflicts with --upstream: forwarding is off, so no "
         "upstream would be asked"),
        (["serve", "--objects", "a.yaml"], {"KDNS_DEMO": "true"},
         "kdns: config: KDNS_DEMO: conflicts with --objects: serve the demo cluster or manifest "
         "files, not both"),
    ],
)  # fmt: skip
def test_conflicting_options_exit_1_with_one_line(served, capsys, argv, env, line):
    assert main(argv, env=env) == 1
    assert capsys.readouterr() == ("", line + "\n")
    assert served == []


def test_conflict_between_file_and_flag_names_both(served, capsys, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\ndemo = true\n")
    assert main(["serve", "-c", str(path), "--objects", "a.yaml"], env={}) == 1
    assert capsys.readouterr().err.startswith(
        "kdns: config: kubernetes.demo: conflicts with --objects: "
    )


def test_misspelled_env_var_warns_once_and_serves(served, capsys):
    config = serve(["--demo"], served, env={"KDNS_TLL": "30", "KDNS_SERVICE_HOST": "10.0.0.10"})
    assert config.ttl == 5  # ignored, not an error
    assert capsys.readouterr().err == (
        "kdns: warning: KDNS_TLL is not a kdns setting (did you mean KDNS_TTL?); ignored\n"
    )


def test_misspelled_env_var_warning_follows_the_log_format(served, capsys):
    serve(["--log-format", "json"], served, env={"KDNS_UPSTREAMS": "1.1.1.1"})
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert (record["level"], record["logger"]) == ("warning", "kdns")
    assert record["msg"] == (
        "KDNS_UPSTREAMS is not a kdns setting (did you mean KDNS_UPSTREAM?); ignored"
    )


def test_check_config_warns_about_misspelled_env_vars(capsys, tmp_path):
    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nttl = 9\n")
    assert main(["check-config", str(path)], env={"KDNS_NOFORWARD": "1"}) == 0
    out, err = capsys.readouterr()
    assert "\nttl = 9\n" in out
    assert err == (
        "kdns: warning: KDNS_NOFORWARD is not a kdns setting (did you mean KDNS_NO_FORWARD?); "
        "ignored\n"
    )


# --- kubernetes.enabled = false: a plain forwarder (CoreDNS without its kubernetes plugin) ---------


def test_kubernetes_disabled_is_a_plain_forwarder(tmp_path):
    """The README's homelab setup: no cluster, no demo; every name goes upstream, cluster.local
    included (no zone is claimed), and /ready is 200 at once."""
    import dns.message
    import dns.query

    from tests.dnsupstream import DnsUpstream
    from tests.kdnsproc import LOOPBACK, Kdns

    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nenabled = false\n")
    records = {
        ("www.example.com.", "A"): ["192.0.2.1"],
        ("web.shop.svc.cluster.local.", "A"): ["192.0.2.2"],
    }
    with DnsUpstream(records) as up, Kdns("-c", str(path), "--upstream", up.upstream()) as proc:
        assert "forwarding only" in proc.log and "DEMO" not in proc.log
        for name, address in [("www.example.com", "192.0.2.1"), ("web.shop.svc.cluster.local",
                                                                 "192.0.2.2")]:  # fmt: skip
            q = dns.message.make_query(name, "A")
            for resp in (proc.query(name), dns.query.tcp(q, LOOPBACK, port=proc.port, timeout=3)):
                assert [r.to_text() for rrset in resp.answer for r in rrset] == [address]
        assert "web.shop.svc.cluster.local." in [n.lower() for n in up.names()]
        assert proc.get("ready")[0] == 200


def test_kubernetes_disabled_without_forwarding_has_nothing_to_serve(tmp_path):
    from tests.kdnsproc import LOOPBACK, run_kdns

    path = tmp_path / "kdns.toml"
    path.write_text("[kubernetes]\nenabled = false\n[forward]\nenabled = false\n")
    result = run_kdns("serve", "-c", str(path), "--listen", f"{LOOPBACK}:0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "kdns: nothing to serve: kubernetes.enabled is false, no --demo or --objects, and no "
        "forwarding (--no-forward, or no upstreams)"
    )


# --- check-config loads what serve loads (issue 22 item 9) ------------------------------------


def _checked(tmp_path, text, capsys):
    path = tmp_path / "kdns.toml"
    path.write_text(text)
    code = main(["check-config", str(path)], env={})
    return code, capsys.readouterr()


def test_check_config_refuses_a_missing_zone_file(capsys, tmp_path):
    missing = tmp_path / "gone.zone"
    code, out = _checked(
        tmp_path, f'[[zones]]\nname = "lab.example.com"\nfile = "{missing}"\n', capsys
    )
    assert code == 1 and out.out == ""
    assert out.err.startswith("kdns: zones[0] (lab.example.com): ") and str(missing) in out.err


def test_check_config_refuses_a_broken_zone_file(capsys, tmp_path):
    zone = tmp_path / "lab.zone"
    zone.write_text(
        "$ORIGIN lab.example.com.\n@ 300 IN SOA ns hostmaster 1 2 3 4 5\nwww A not-an-ip\n"
    )
    code, out = _checked(
        tmp_path, f'[[zones]]\nname = "lab.example.com"\nfile = "{zone}"\n', capsys
    )
    assert code == 1 and out.err.startswith("kdns: zones[0] (lab.example.com): ")


def test_check_config_refuses_an_unreadable_block_list(capsys, tmp_path):
    missing = tmp_path / "ads.hosts"
    text = (
        f'[[blocklists]]\nname = "ads"\nfile = "{missing}"\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.1.0/24"]\nblocklists = ["ads"]\n'
    )
    code, out = _checked(tmp_path, text, capsys)
    assert code == 1
    assert out.err.startswith(f"kdns: blocklists[0] (ads): cannot read {missing}: "), out.err
    missing.write_text("0.0.0.0 ads.example.com\n")
    code, out = _checked(tmp_path, text, capsys)
    assert code == 0, out.err


def test_check_config_loads_objects_files(capsys, tmp_path):
    objects = tmp_path / "cluster.yaml"
    objects.write_text("kind: Service\nmetadata: [\n")
    code, out = _checked(tmp_path, f'[kubernetes]\nobjects = ["{objects}"]\n', capsys)
    assert code == 1 and out.err.startswith(f"kdns: objects: {objects}"), out.err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["serve", "--lisen", "127.0.0.1:53"],
         "kdns serve: error: unknown option --lisen: did you mean --listen? (kdns serve --help lists them)"),
        (["serve", "--demo", "--kubconfig=x"],
         "kdns serve: error: unknown option --kubconfig: did you mean --kubeconfig? (kdns serve --help lists them)"),
        (["serve", "--zzzzzz"], "kdns serve: error: unknown option --zzzzzz (kdns serve --help lists them)"),
        (["version", "extra"], "kdns version: error: unexpected argument 'extra' (kdns version --help lists them)"),
    ],
)  # fmt: skip
def test_a_typod_flag_names_the_closest_one(capsys, argv, line):
    """Issue 22 item 13: one line naming the closest option, not the top-level usage."""
    assert main(argv, env={}) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [line]
