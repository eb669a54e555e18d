"""End to end: each Gateway API kind is watched at the newest version the API server serves.

Gateway API v1.5 serves TLSRoute as gateway.networking.k8s.io/v1 in the standard channel (the
v1.5.0 release notes: "TLSRoute and ListenerSet have graduated to the Standard channel as v1";
"TLSRoute v1alpha2 is present only in the Experimental channel"); older releases serve
v1alpha3 and/or v1alpha2 only. kdns asks for v1 first and falls back version by version on a
404, as the API server answers for a version its CRD does not serve (tests/k8sapi.py
``serve()``), so each CRD release is watched, and an upgrade that drops the version being
watched moves the watch to the new one without the names going away.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.k8sapi import K8sApi, gateway, namespace, tcproute, tlsroute
from tests.kdnsproc import Kdns
from tests.test_e2e_gateway import EVERYTHING, ZONE, a_records, start
from tests.test_e2e_watch import eventually

IP = "192.168.1.240"
MQTT = f"mqtt.{ZONE}"
BROKER = f"broker.{ZONE}"
GW = "/apis/gateway.networking.k8s.io"


def objects() -> list[dict[str, object]]:
    return [
        namespace("infra"),
        namespace("apps"),
        gateway(
            "infra",
            "eg",
            [IP],
            [("tls", f"*.{ZONE}", "All", "TLS", 8883), ("tcp", None, "All", "TCP", 1883)],
        ),  # fmt: skip
        tlsroute("apps", "mqtt", [MQTT], [("infra", "eg", "tls")]),
        tcproute(
            "apps",
            "broker",
            [("infra", "eg", "tcp")],
            annotations={"external-dns.alpha.kubernetes.io/hostname": BROKER},
        ),  # fmt: skip
    ]


@pytest.fixture
def api() -> Iterator[K8sApi]:
    with K8sApi(objects(), bookmark_interval=0.5, installed=EVERYTHING) as server:
        yield server


def asked(api: K8sApi, plural: str) -> list[str]:
    """The versions kdns listed ``plural`` at, in order (404s included)."""
    out = []
    for record in api.requests():
        if record.path.endswith(f"/{plural}") and record.params.get("watch") is None:
            out.append(record.path.split("/")[3])
    return out


@pytest.mark.parametrize(
    ("served", "versions_asked"),
    [
        (("v1", "v1alpha3", "v1alpha2"), ["v1"]),  # v1.5 experimental channel
        (("v1",), ["v1"]),  # v1.5 standard channel
        (("v1alpha3", "v1alpha2"), ["v1", "v1alpha3"]),  # v1.3/v1.4 experimental
        (("v1alpha2",), ["v1", "v1alpha3", "v1alpha2"]),  # v1.0-v1.2 experimental
    ],
)
def test_tlsroute_newest_served_version(api: K8sApi, tmp_path: Path, served: tuple[str, ...], versions_asked: list[str]) -> None:  # fmt: skip
    api.serve("tlsroutes", *served)
    with start(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        eventually(lambda: a_records(proc, MQTT) == [IP])
        assert asked(api, "tlsroutes") == versions_asked
        # The watch runs at the version that was listed.
        watches = [r.path.split("/")[3] for r in api.requests("watch", "tlsroutes")]
        assert watches and set(watches) == {versions_asked[-1]}
        assert "TLSRoute: not served by the API server" not in proc.log


def test_tcproute_v1alpha2_after_v1(api: K8sApi, kdns_proc: Kdns) -> None:
    # TCPRoute is v1alpha2 only in v1.5 (experimental): v1 is asked first, then v1alpha2.
    eventually(lambda: a_records(kdns_proc, BROKER) == [IP])
    assert asked(api, "tcproutes") == ["v1", "v1alpha2"]


@pytest.fixture
def kdns_proc(api: K8sApi, tmp_path: Path) -> Iterator[Kdns]:
    with start(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        yield proc


def test_upgrade_that_drops_the_watched_version(api: K8sApi, tmp_path: Path) -> None:
    # Gateway API 1.4 experimental (v1alpha3, v1alpha2) upgraded to 1.5 standard (v1 only):
    # the v1alpha3 watch ends and its path turns 404; kdns moves to v1 at once (round to the
    # newest, no absent spell), and the TLSRoute's name answers throughout.
    api.serve("tlsroutes", "v1alpha3", "v1alpha2")
    with start(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        eventually(lambda: a_records(proc, MQTT) == [IP])
        misses: list[int] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                rcode = proc.query(MQTT, "A").rcode()
                if rcode != dns.rcode.NOERROR:
                    misses.append(rcode)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            before = len(api.requests("watch", "tlsroutes"))
            api.serve("tlsroutes", "v1")
            eventually(lambda: "v1" in [r.path.split("/")[3] for r in api.requests("watch", "tlsroutes")[before:]], timeout=15)  # fmt: skip
            api.add(tlsroute("apps", "late", [f"late.{ZONE}"], [("infra", "eg", "tls")]))
            eventually(lambda: a_records(proc, f"late.{ZONE}") == [IP])
        finally:
            stop.set()
            prober.join()
        assert misses == []
        assert "TLSRoute: not served by the API server" not in proc.log


def test_no_version_served_is_absent_once(api: K8sApi, tmp_path: Path) -> None:
    # The CRD not installed at all: every version 404, logged once as absent, ready anyway.
    api.uninstall("tlsroutes")
    with start(api, tmp_path) as proc:
        eventually(lambda: proc.get("ready")[0] == 200, timeout=15)
        eventually(lambda: a_records(proc, BROKER) == [IP])
        assert proc.query(MQTT, "A").rcode() == dns.rcode.NXDOMAIN
        eventually(lambda: asked(api, "tlsroutes")[:3] == ["v1", "v1alpha3", "v1alpha2"])
        assert proc.log.count("TLSRoute: not served by the API server") == 1
