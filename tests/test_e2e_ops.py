"""End to end, the operator's view: metrics, probes, lameduck shutdown, reload, logs.

Each case starts the real process and checks one rollout or observability story.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.kdnsproc import LOOPBACK, ROOT, Kdns, fixed_port, run_kdns

DEMO_NAME = "web.shop.svc.cluster.local"
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def scrape(proc: Kdns) -> dict[str, list[Sample]]:
    status, body = proc.get("metrics")
    assert status == 200
    return {family.name: family.samples for family in text_string_to_metric_families(body)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout}s")


@pytest.fixture(scope="module")
def demo() -> Iterator[Kdns]:
    with Kdns("--demo", "--metrics-compat", "coredns") as proc:
        yield proc


def test_metrics_count_queries_by_type_zone_rcode(demo: Kdns) -> None:
    before = scrape(demo)
    for _ in range(3):
        demo.query(DEMO_NAME, "A")
    demo.query("nope.shop.svc.cluster.local", "A")
    demo.query(DEMO_NAME, "A", tcp=True)
    after = scrape(demo)

    def delta(metric: str, sample: str, **labels: str) -> float:
        return value(after[metric], sample, **labels) - value(
            before.get(metric, []), sample, **labels
        )

    requests = "kdns_dns_requests_total"
    assert (
        delta(
            "kdns_dns_requests", requests, proto="udp", family="1", type="A", zone="cluster.local."
        )
        == 4
    )
    assert delta("kdns_dns_requests", requests, proto="tcp", type="A") == 1
    assert delta("kdns_dns_responses", "kdns_dns_responses_total", rcode="NXDOMAIN") == 1
    assert (
        delta("kdns_dns_request_duration_seconds", "kdns_dns_request_duration_seconds_count") == 5
    )
    assert delta("kdns_dns_response_size_bytes", "kdns_dns_response_size_bytes_sum") > 5 * 40
    assert value(after["kdns_registry_objects"], "kdns_registry_objects", kind="Service") == 7
    assert value(after["kdns_registry_synced"], "kdns_registry_synced") == 1


def test_metric_names_follow_prometheus_rules(demo: Kdns) -> None:
    """Prometheus naming: valid characters, a namespace prefix, counters end in _total,
    histograms of time in _seconds and of sizes in _bytes (base units)."""
    demo.query(DEMO_NAME, "A")
    status, body = demo.get("metrics")
    families = list(text_string_to_metric_families(body))
    assert families
    for family in families:
        assert METRIC_NAME.match(family.name), family.name
        # process_*: the standard process metrics (prometheus-client's ProcessCollector).
        assert family.name.startswith(("kdns_", "coredns_", "process_")), family.name
        assert family.name == family.name.lower()
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_bytes")), family.name


def test_coredns_compat_names_and_labels(demo: Kdns) -> None:
    """--metrics-compat coredns: the names and label sets CoreDNS dashboards query."""
    demo.query(DEMO_NAME, "A")
    metrics = scrape(demo)
    requests = metrics["coredns_dns_requests"]
    sample = next(s for s in requests if s.labels.get("type") == "A")
    assert set(sample.labels) == {"server", "zone", "view", "proto", "family", "type"}
    assert sample.labels["zone"] == "." and sample.labels["server"].startswith("dns://")
    responses = metrics["coredns_dns_responses"]
    assert {"server", "zone", "view", "rcode", "plugin"} == set(responses[0].labels)
    for name in (
        "coredns_dns_request_duration_seconds",
        "coredns_dns_request_size_bytes",
        "coredns_dns_response_size_bytes",
        "coredns_cache_entries",
        "coredns_cache_hits",
        "coredns_cache_misses",
        "coredns_build_info",
    ):
        assert name in metrics, name


def test_health_and_ready(demo: Kdns) -> None:
    assert demo.get("health") == (200, "OK\n")
    assert demo.get("ready") == (200, "OK\n")


def test_sigterm_lameduck_loses_no_query_and_exits_zero() -> None:
    """CoreDNS health lameduck: after SIGTERM kdns keeps answering while /ready is 503 (the
    Service drops the endpoint), then exits 0. A client streaming queries loses none."""
    # Waits are on what kdns shows (/ready 503, answers counted), not on fixed sleeps; the 8 s
    # lameduck is far longer than the test needs inside it.
    with Kdns("--demo", "--lameduck", "8") as proc:
        sent = answered = 0
        stop = threading.Event()

        def stream() -> None:
            nonlocal sent, answered
            while not stop.is_set():
                sent += 1
                resp = proc.query(DEMO_NAME, "A")
                if resp.answer:
                    answered += 1
                time.sleep(0.005)

        client = threading.Thread(target=stream)
        client.start()
        eventually(lambda: answered >= 20, timeout=30)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        eventually(lambda: proc.get("ready")[0] == 503, timeout=30)
        at_503 = answered
        assert proc.proc.poll() is None  # still in lameduck
        assert proc.get("health")[0] == 200  # liveness stays up in lameduck
        eventually(lambda: answered >= at_503 + 20, timeout=30)  # answering in lameduck
        stop.set()
        client.join()
        assert proc.proc.wait(60) == 0
    assert answered == sent
    assert "lameduck" in proc.log


def test_second_signal_exits_at_once() -> None:
    with Kdns("--demo", "--lameduck", "30") as proc:
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        eventually(lambda: proc.get("ready")[0] == 503, timeout=30)  # in its 30 s lameduck
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGINT)
        proc.proc.wait(25)
        assert time.monotonic() - started < 20  # far under the lameduck's 30 s


def _config(path: Path, ttl: int, extra: str = "") -> Path:
    path.write_text(
        f"""
[server]
reload_interval = 0.3
{extra}
[kubernetes]
demo = true
ttl = {ttl}
"""
    )
    return path


def ttl_of(proc: Kdns) -> int:
    return proc.query(DEMO_NAME, "A").answer[0].ttl


def test_sighup_reload_changes_ttl_without_restart(tmp_path: Path) -> None:
    config = _config(tmp_path / "kdns.toml", 5)
    config.write_text(config.read_text().replace("reload_interval = 0.3", "reload_interval = 0"))
    with Kdns("-c", str(config)) as proc:
        pid = proc.proc.pid if proc.proc else 0
        assert ttl_of(proc) == 5
        config.write_text(config.read_text().replace("ttl = 5", "ttl = 42"))
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        eventually(lambda: ttl_of(proc) == 42)
        assert proc.proc.pid == pid and proc.proc.poll() is None
        assert "reloaded (SIGHUP)" in proc.log


def test_config_file_change_is_picked_up(tmp_path: Path) -> None:
    """A ConfigMap update changes the file's content: kdns polls the content hash."""
    config = _config(tmp_path / "kdns.toml", 5)
    with Kdns("-c", str(config)) as proc:
        config.write_text(config.read_text().replace("ttl = 5", "ttl = 17"))
        eventually(lambda: ttl_of(proc) == 17)
        assert "reloaded (config file changed)" in proc.log


def test_broken_config_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    config = _config(tmp_path / "kdns.toml", 7)
    with Kdns("-c", str(config)) as proc:
        config.write_text(config.read_text().replace("ttl = 7", 'ttl = "soon"'))
        eventually(lambda: "reload (config file changed) rejected" in proc.log)
        assert ttl_of(proc) == 7
        assert "kubernetes.ttl" in proc.log  # the log line names the key
        config.write_text(config.read_text().replace('ttl = "soon"', "ttl = 9"))
        eventually(lambda: ttl_of(proc) == 9)


def test_reload_rebinds_listeners_without_gap(tmp_path: Path) -> None:
    """A new listen address is bound before the old one closes; a kept one never stops."""
    first, second = fixed_port(), fixed_port()
    both = f'"{LOOPBACK}:{first}", "{LOOPBACK}:{second}"'
    config = _config(tmp_path / "kdns.toml", 5, f'listen = ["{LOOPBACK}:{first}"]')
    with Kdns("-c", str(config), listen=False) as proc:
        assert proc.port == first
        q = dns.message.make_query(DEMO_NAME, "A")

        def answers(port: int) -> bool:
            try:
                return bool(dns.query.udp(q, LOOPBACK, port=port, timeout=3).answer)
            except dns.exception.Timeout:
                return False

        config.write_text(config.read_text().replace(f'"{LOOPBACK}:{first}"', both))
        eventually(lambda: answers(second), timeout=30)
        assert answers(first)
        config.write_text(config.read_text().replace(f'"{LOOPBACK}:{first}", ', ""))
        eventually(lambda: not answers(first), timeout=30)
        assert answers(second)


def test_query_log_lines(tmp_path: Path) -> None:
    with Kdns("--demo", "--query-log") as proc:
        proc.query(DEMO_NAME, "A")
        proc.query("nope.shop.svc.cluster.local", "AAAA", tcp=True)
        eventually(lambda: "nope.shop.svc.cluster.local. AAAA NXDOMAIN" in proc.log)
        line = next(line for line in proc.lines if "web.shop.svc.cluster.local. A NOERROR" in line)
        assert re.search(
            r"udp 127\.0\.0\.1:\d+ web\.shop\.svc\.cluster\.local\. A NOERROR [\d.]+ms", line
        )


def test_no_query_log_by_default(demo: Kdns) -> None:
    demo.query(DEMO_NAME, "A")
    assert "kdns.query" not in demo.log


def test_json_logs() -> None:
    with Kdns("--demo", "--log-format", "json") as proc:
        records = [json.loads(line) for line in proc.lines if line.startswith("{")]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("dns listening" in r["msg"] for r in records)


def test_bad_flag_exits_one_line() -> None:
    result = run_kdns("serve", "--demo", "--pods", "yes")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        'kdns: config: --pods: expected disabled|insecure|verified, got "yes"'
    ]


def test_bad_config_file_exits_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[kubernetes]\npods = "yes"\n')
    result = run_kdns("serve", "-c", str(bad))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == 'kdns: config: kubernetes.pods: expected disabled|insecure|verified, got "yes"'
    )
    check = run_kdns("check-config", str(bad))
    assert check.returncode == 1 and "kubernetes.pods" in check.stderr


def test_bad_manifest_exits_with_file_and_line() -> None:
    bad = Path(__file__).parent / "fixtures" / "bad" / "malformed.yaml"
    result = run_kdns("serve", "--objects", str(bad), "--listen", f"{LOOPBACK}:0")
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert re.match(rf"kdns: objects: {re.escape(str(bad))}:\d+: ", line), line


def test_port_in_use_exits_clearly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        port = taken.getsockname()[1]
        result = run_kdns("serve", "--demo", "--listen", f"{LOOPBACK}:{port}", "--metrics-listen", "off",
                          "--health-listen", "off", "--ready-listen", "off")  # fmt: skip
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_workers_share_the_port_and_stop_together() -> None:
    """--workers N: N processes answer on one port (SO_REUSEPORT); SIGTERM stops them all."""
    port = fixed_port()
    with Kdns(
        "--demo", "--workers", "2", listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}"}
    ) as proc:
        assert proc.proc is not None
        workers = _children(proc.proc.pid)
        assert len(workers) == 1
        for _ in range(20):
            assert proc.query(DEMO_NAME, "A").answer
        assert proc.stop() == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        )


def test_ctrl_c_on_the_demo_stops_at_once_and_a_restart_binds() -> None:
    """Issue 22 item 14: Ctrl-C (SIGINT) on an interactive run (--demo, or a terminal) skips
    the lameduck, so `make demo` stops at once and started again binds the same ports."""
    port = fixed_port()
    args = ("--demo", "--listen", f"{LOOPBACK}:{port}", "--lameduck", "60")
    with Kdns(*args, listen=False) as first:
        assert first.proc is not None
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(30) == 0  # not the 60 s lameduck
        assert "lameduck" not in first.log
    with Kdns(*args, listen=False) as second:  # the same port, at once
        assert second.port == port and second.query(DEMO_NAME).answer


def test_sigint_without_a_terminal_keeps_the_lameduck(tmp_path: Path) -> None:
    """Not interactive (no terminal, not the demo): SIGINT drains like SIGTERM."""
    objects = tmp_path / "cluster.yaml"
    objects.write_text((ROOT / "kdns" / "k8s" / "demo.yaml").read_text())
    with Kdns("--objects", str(objects), "--lameduck", "30") as proc:
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGINT)
        eventually(lambda: proc.get("ready")[0] == 503, timeout=30)
        assert proc.proc.poll() is None  # in its lameduck
        proc.proc.send_signal(signal.SIGINT)  # a second one exits
        proc.proc.wait(30)


def test_start_up_log_counts_only_the_kinds_kdns_uses() -> None:
    """Issue 22 item 24: without gateway zones the Gateway API kinds and Ingress are not
    watched, and Pods are used only under `pods verified`: the start-up line leaves them out."""
    with Kdns("--demo") as proc:
        eventually(lambda: "serving {" in proc.log)
        line = next(x for x in proc.log.splitlines() if "serving {" in x)
        for kind in ("Gateway", "HTTPRoute", "Ingress", "Pod"):
            assert f"'{kind}'" not in line, line
        assert "'Service': 7" in line
    with Kdns("--demo", "--pods", "verified", "--gateway-zone", "example.net") as proc:
        eventually(lambda: "serving {" in proc.log)
        line = next(x for x in proc.log.splitlines() if "serving {" in x)
        assert "'Pod'" in line and "'HTTPRoute'" in line and "'Ingress'" in line, line


def _reload_counters(proc: Kdns) -> tuple[float, float]:
    _, text = proc.get("metrics")
    found = dict.fromkeys(("kdns_config_reloads_rejected_total", "kdns_config_reloads_restart_needed_total"), 0.0)  # fmt: skip
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["kdns_config_reloads_rejected_total"], found["kdns_config_reloads_restart_needed_total"]  # fmt: skip


def test_a_reload_that_cannot_listen_is_refused_whole(tmp_path: Path) -> None:
    """Issue 22 item 19: a reload whose listen address cannot be bound (":53" without the
    capability; here a port another socket holds) was half applied (log format switched, TTL
    changed, DNS still on the old port). Now nothing of it is applied, and it is counted."""
    port = fixed_port()
    config = _config(tmp_path / "kdns.toml", 7, f'listen = ["{LOOPBACK}:{port}"]\n[log]\nformat = "json"\n')  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, 0))
        busy = taken.getsockname()[1]
        with Kdns("-c", str(config), listen=False) as proc:
            assert ttl_of(proc) == 7
            text = config.read_text().replace(f"{LOOPBACK}:{port}", f"{LOOPBACK}:{busy}")
            config.write_text(text.replace("ttl = 7", "ttl = 9").replace('"json"', '"text"'))
            eventually(lambda: "rejected, keeping the running config" in proc.log, timeout=30)
            assert "cannot listen" in proc.log
            assert ttl_of(proc) == 7  # nothing of it applied
            assert _reload_counters(proc)[0] >= 1
            last = proc.log.strip().splitlines()[-1]
            assert last.startswith("{"), last  # still JSON logs


def test_a_restart_only_change_says_it_needs_a_restart(tmp_path: Path) -> None:
    """Issue 22 item 20: metrics.compat changed by a reload was logged as reloaded and did
    nothing; now the log says it needs a restart, and it is counted."""
    config = _config(tmp_path / "kdns.toml", 5)
    with Kdns("-c", str(config)) as proc:
        config.write_text(config.read_text() + '\n[metrics]\ncompat = "coredns"\n')
        eventually(lambda: "needs a restart" in proc.log, timeout=30)
        assert "metrics_compat changed and needs a restart" in proc.log
        assert _reload_counters(proc)[1] >= 1
        _, text = proc.get("metrics")
        assert "coredns_dns_requests_total" not in text  # as the log says: not applied
