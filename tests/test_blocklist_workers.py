"""--workers and URL lists (issue 21): one process downloads, the others load its copy.

In process: a downloading Lists and a following Lists (a --workers worker) on one cache
directory against a loopback HTTP server (tests/listserver.py): the follower never asks the
server, loads the copy when it moves (a new version, not a 304 or a refused download), and
downloads its own only when no copy ever comes. Then a real ``kdns --workers 2`` with no
cache_dir: one GET for both processes, both block, the shared directory removed at exit."""

from __future__ import annotations

import glob
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from kdns.app import fetch_settings
from kdns.authority.zones import ZoneSet
from kdns.config import Config, build_config
from kdns.dns import names
from kdns.policy import listfetch
from kdns.policy.listfetch import FetchSettings, Lists, build_views
from tests.kdnsproc import LOOPBACK, Kdns, fixed_port
from tests.listserver import ListServer, Served

LISTS = Path(__file__).parent / "fixtures" / "lists"
HOSTS = (LISTS / "stevenblack.hosts").read_bytes()


@pytest.fixture
def server() -> Iterator[ListServer]:
    with ListServer() as srv:
        yield srv


def config_for(tmp_path: Path, url: str, cache: bool = True) -> Config:
    path = tmp_path / "kdns.toml"
    path.write_text(
        (f'[blocking]\ncache_dir = "{tmp_path / "cache"}"\n' if cache else "")
        + f'[[blocklists]]\nname = "ads"\nurl = "{url}"\nrefresh = "1h"\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.0.0/16"]\nblocklists = ["ads"]\n'
    )
    return build_config(str(path), {})


def lists_for(config: Config, follower: bool) -> Lists:
    settings = fetch_settings(config)
    lists = Lists(FetchSettings(**{**settings.__dict__, "backoff": 0.05, "attempts": 1}))
    lists.follower = follower
    lists.load_now(config)
    return lists


def blocks(config: Config, lists: Lists, name: str) -> bool:
    views = build_views(config, lists, ZoneSet.build("cluster.local", (), 5), {})
    return views.views[0].blocked(names.to_wire(name)) is not None


async def test_a_follower_loads_the_downloaders_copy_and_never_asks_the_server(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    first, worker = lists_for(config, False), lists_for(config, True)
    # No copy yet: the worker waits for one (nothing loaded, nothing asked).
    assert not await worker.refresh(urls=True)
    assert server.requests == [] and not blocks(config, worker, "ads.example.net")
    assert await first.refresh(urls=True)
    assert len(server.requests) == 1
    assert await worker.refresh(urls=True)
    assert blocks(config, worker, "x.ads.example.net") and len(server.requests) == 1
    assert not await worker.refresh(urls=True)  # the copy did not move: nothing re-read
    # A new version: the first process downloads it, the worker follows the copy.
    server.paths["/hosts"] = Served(HOSTS + b"0.0.0.0 new.example.org\n")
    (source,) = first.sources.values()
    source.due = 0.0
    assert await first.refresh(urls=True)
    assert await worker.refresh(urls=True)
    assert blocks(config, worker, "new.example.org") and len(server.requests) == 2
    # A refused download (shrunk below min_share) leaves the copy, so the worker keeps its list.
    server.paths["/hosts"] = Served(HOSTS[:100])
    source.due = 0.0
    assert not await first.refresh(urls=True)
    assert not await worker.refresh(urls=True)
    assert blocks(config, worker, "new.example.org")
    # The counters are the downloading process's: summed over the pod, one per download.
    (followed,) = worker.sources.values()
    assert followed.results == {} and source.results == {"ok": 2, "shrunk": 1}
    assert followed.last_success == pytest.approx(source.last_success, abs=2)


async def test_a_worker_restarted_later_starts_from_the_copy(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    first = lists_for(config, False)
    assert await first.refresh(urls=True)
    worker = lists_for(config, True)  # load_now: the copy, before serving
    assert blocks(config, worker, "ads.example.net")
    assert not await worker.refresh(urls=True)  # the copy it started from: not read again
    assert len(server.requests) == 1


async def test_a_follower_downloads_itself_when_no_copy_ever_comes(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    worker = lists_for(config, True)
    start = time.monotonic()
    assert not await worker.refresh(urls=True, now=start)
    grace = listfetch.FOLLOW_GRACE + worker.settings.timeout * worker.settings.attempts
    assert not await worker.refresh(urls=True, now=start + grace - 1)
    assert server.requests == []
    assert await worker.refresh(urls=True, now=start + grace + 1)
    assert len(server.requests) == 1 and blocks(config, worker, "ads.example.net")
    assert not worker.follower


def test_without_cache_dir_the_workers_share_a_private_directory(tmp_path: Path, server: ListServer, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"), cache=False)
    single = lists_for(config, False)
    assert single.copy_dir() is None  # one process: nothing written anywhere
    shared = tempfile.mkdtemp(prefix="kdns-test-lists-", dir=tmp_path)
    monkeypatch.setattr(listfetch, "_shared_dir", shared)
    first, worker = lists_for(config, False), lists_for(config, True)
    assert first.copy_dir() == worker.copy_dir() == shared


def _blocked_from_many_ports(port: int, name: str, count: int = 24) -> list[str]:
    """The A answers to ``name`` asked from ``count`` source ports: SO_REUSEPORT spreads
    them over both processes (the chance that all go to one is 2^-23)."""
    out = []
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.bind((LOOPBACK, 0))
            sock.sendto(dns.message.make_query(name, "A").to_wire(), (LOOPBACK, port))
            reply = dns.message.from_wire(sock.recv(4096))
            out.append(reply.answer[0][0].to_text() if reply.answer else "-")
    return out


def test_kdns_with_two_workers_downloads_each_list_once(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = tmp_path / "kdns.toml"
    config.write_text(
        f'[[blocklists]]\nname = "ads"\nurl = "{server.url("/hosts")}"\nrefresh = "1h"\n'
        '[[views]]\nname = "lan"\nnetworks = ["127.0.0.0/8"]\nblocklists = ["ads"]\n'
    )
    scratch = tmp_path / "tmp"  # kdns's TMPDIR: the shared directory is made here
    scratch.mkdir()
    port = fixed_port()
    with Kdns(
        "--demo", "--config", str(config), "--workers", "2",
        listen=False, env={"KDNS_LISTEN": f"{LOOPBACK}:{port}", "TMPDIR": str(scratch)},
    ) as proc:  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.log.count("serving {") >= 2 and set(_blocked_from_many_ports(port, "ads.example.net")) == {"0.0.0.0"}:  # fmt: skip
                break
            time.sleep(0.2)
        assert set(_blocked_from_many_ports(port, "x.ads.example.net")) == {"0.0.0.0"}
        assert len(server.requests) == 1, server.requests
        assert "from the copy the first process downloaded" in proc.log
        created = glob.glob(f"{scratch}/kdns-lists-*")
        assert len(created) == 1 and glob.glob(f"{created[0]}/*.txt")  # the copy is there
    assert glob.glob(f"{scratch}/kdns-lists-*") == []  # removed at exit
