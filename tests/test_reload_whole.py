"""A reload is applied whole or not at all, HTTP listeners included (issue 22 item 19), and the
config last applied is visible as a hash (metric and log line)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket

import pytest

from kdns.app import App, config_hash
from kdns.config import Config, build_config

LOOPBACK = "127.0.0.1"


def _config(**extra: object) -> Config:
    flags: dict[str, object] = {"demo": True, "forward": False, "listen": [f"{LOOPBACK}:0"], "metrics_listen": f"{LOOPBACK}:0", "health_listen": f"{LOOPBACK}:0", "ready_listen": f"{LOOPBACK}:0", "ttl": 7}  # fmt: skip
    flags.update(extra)
    return build_config(None, {}, flags)


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


def _hash_metric(text: str) -> str:
    match = re.search(r'^kdns_config_last_applied_hash_info\{hash="([0-9a-f]+)"\} 1', text, re.M)
    assert match, text[:500]
    return match.group(1)


def _rejected(text: str) -> float:
    match = re.search(r"^kdns_config_reloads_rejected_total (\S+)", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_a_reload_whose_http_address_is_taken_is_refused_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "kdns")
    config = _config()
    app = App(config)
    await app.start_source()
    await app.start_http()
    try:
        metrics = app.http.bound["metrics"][1]
        ready = app.http.bound["ready"][1]
        status, text = await _get(metrics, "metrics")
        assert status == 200
        started = _hash_metric(text)
        assert started == config_hash(config) == app.config_hash

        with socket.socket() as taken:  # a TCP port another socket holds
            taken.bind((LOOPBACK, 0))
            taken.listen()
            busy = taken.getsockname()[1]
            bad = dataclasses.replace(config, ready_listen=(LOOPBACK, busy), ttl=9)
            await app.apply(bad, "test")
        # Nothing of it applied: the TTL, the HTTP addresses, the hash; counted and logged.
        assert app.config.ttl == 7
        assert app.config.ready_listen == config.ready_listen
        assert "rejected, keeping the running config" in caplog.text
        assert app.http.bound["ready"][1] == ready
        assert (await _get(app.http.bound["ready"][1], "ready"))[0] in (200, 503)
        status, text = await _get(app.http.bound["metrics"][1], "metrics")
        assert _hash_metric(text) == started
        assert _rejected(text) >= 1

        # A reload that can be applied moves the hash, and says so.
        good = dataclasses.replace(config, ttl=9, ready_listen=(LOOPBACK, 0))
        await app.apply(good, "test")
        assert app.config.ttl == 9
        status, text = await _get(app.http.bound["metrics"][1], "metrics")
        assert _hash_metric(text) == app.config_hash != started
        assert f"config {app.config_hash} applied" in caplog.text
    finally:
        await app.http.stop()
        await app.listeners.close_all()


def test_the_config_hash_is_stable_and_follows_every_setting() -> None:
    assert config_hash(_config()) == config_hash(_config())
    assert config_hash(_config()) != config_hash(_config(ttl=8))


def test_the_config_hash_takes_forward_zones_with_their_own_settings() -> None:
    """A [forward] zones entry with its own settings (a ForwardZone) hashes, and its settings
    count: dataclasses.asdict could not rebuild one, so kdns failed to start with such a zone."""
    from kdns.values import ForwardZone

    plain = ForwardZone("corp.example", ("192.0.2.53",))
    tls = ForwardZone("corp.example", ("192.0.2.53",), (("force_tcp", True),))
    base = _config()
    first = config_hash(dataclasses.replace(base, forward_zones=(plain,)))
    assert first == config_hash(dataclasses.replace(base, forward_zones=(plain,)))
    assert first != config_hash(dataclasses.replace(base, forward_zones=(tls,)))
