"""Lists by URL (issue 21 item 1) against a loopback HTTP server (tests/listserver.py): good,
slow, failing, cut short, huge, changed, shrunk and unchanged (304) downloads; the last good
copy kept in [blocking] cache_dir and loaded at start without network; the refresh metric.
Then a kdns process: a URL list blocks, and keeps blocking after a restart with the server
gone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import pytest

from kdns.app import fetch_settings
from kdns.authority.zones import ZoneSet
from kdns.config import Config, build_config
from kdns.dns import names
from kdns.metrics import BlockListMetrics
from kdns.policy.listfetch import FetchSettings, Lists, build_views
from tests.kdnsproc import Kdns
from tests.listserver import ListServer, Served

LISTS = Path(__file__).parent / "fixtures" / "lists"
HOSTS = (LISTS / "stevenblack.hosts").read_bytes()
OISD = (LISTS / "oisd-small.txt").read_bytes()


@pytest.fixture
def server() -> Iterator[ListServer]:
    with ListServer() as srv:
        yield srv


def config_for(tmp_path: Path, url: str, extra: str = "", refresh: str = "1h") -> Config:
    path = tmp_path / "kdns.toml"
    path.write_text(
        f'[blocking]\ncache_dir = "{tmp_path / "cache"}"\ndownload_timeout = 2\n'
        f"download_attempts = 2\nmax_download_size = 100000\n{extra}\n"
        f'[[blocklists]]\nname = "ads"\nurl = "{url}"\nrefresh = "{refresh}"\n'
        '[[views]]\nname = "lan"\nnetworks = ["192.168.0.0/16"]\nblocklists = ["ads"]\n'
    )
    return build_config(str(path), {})


def lists_for(config: Config) -> Lists:
    settings = fetch_settings(config)
    return Lists(FetchSettings(**{**settings.__dict__, "backoff": 0.05}))


def blocks(config: Config, lists: Lists, name: str) -> bool:
    views = build_views(config, lists, ZoneSet.build("cluster.local", (), 5), {})
    return views.views[0].blocked(names.to_wire(name)) is not None


def results(lists: Lists) -> dict[str, int]:
    (source,) = lists.sources.values()
    return source.results


async def test_download_keeps_a_copy_and_a_restart_without_network_uses_it(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    lists = lists_for(config)
    lists.load_now(config)  # nothing cached yet: nothing loaded, no network at start
    assert not blocks(config, lists, "ads.example.net") and server.requests == []
    assert await lists.refresh(urls=True)
    assert blocks(config, lists, "x.ads.example.net")
    assert results(lists) == {"ok": 1}
    cached = list((tmp_path / "cache").glob("*.txt"))
    assert len(cached) == 1 and cached[0].read_bytes() == HOSTS
    # A restart with the server down: the copy is loaded at start, before any download.
    server.paths.clear()
    again = lists_for(config)
    again.load_now(config)
    assert blocks(config, again, "ads.example.net")
    (source,) = again.sources.values()
    assert source.last_success > 0 and source.due > time.monotonic()  # not due: fresh copy


@pytest.mark.parametrize(
    ("served", "result"),
    [
        (Served(status=500), "error"),
        (Served(b"x" * 200_000), "too_large"),  # over max_download_size
        (Served(HOSTS, cut=5000), "error"),  # Content-Length says more than is sent
        (Served(HOSTS, delay=3.0), "error"),  # slower than download_timeout
        (Served(HOSTS * 4, trickle=0.5), "error"),  # trickles past download_timeout
        (Served(HOSTS[:200]), "shrunk"),  # below min_share of the last good size
    ],
    ids=["http-500", "huge", "cut-short", "slow", "trickle", "shrunk"],
)
async def test_a_bad_download_keeps_the_last_good_list(tmp_path: Path, server: ListServer, served: Served, result: str) -> None:  # fmt: skip
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    lists = lists_for(config)
    lists.load_now(config)
    assert await lists.refresh(urls=True)
    (source,) = lists.sources.values()
    good = source.loaded
    server.paths["/hosts"] = served
    source.due = 0.0  # due now
    assert not await lists.refresh(urls=True)
    assert source.loaded is good and blocks(config, lists, "ads.example.net")
    assert results(lists)[result] >= 1
    attempts = 1 if result in ("too_large", "shrunk") else 2  # download_attempts = 2
    assert server.count("/hosts") == 1 + attempts
    cached = list((tmp_path / "cache").glob("*.txt"))
    assert cached[0].read_bytes() == HOSTS  # the copy on disk is still the good one


async def test_a_changed_list_is_swapped_in_and_an_unchanged_one_costs_a_304(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/list"] = Served(HOSTS, etag='"v1"')
    config = config_for(tmp_path, server.url("/list"))
    lists = lists_for(config)
    lists.load_now(config)
    assert await lists.refresh(urls=True)
    (source,) = lists.sources.values()
    source.due = 0.0
    assert not await lists.refresh(urls=True)  # 304: nothing to parse
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    assert results(lists) == {"ok": 1, "not_modified": 1}
    server.paths["/list"] = Served(OISD + HOSTS, etag='"v2"')
    source.due = 0.0
    assert await lists.refresh(urls=True)
    assert blocks(config, lists, "analytics.example") and not blocks(config, lists, "good.ads.example.net")  # fmt: skip


async def test_refresh_waits_for_its_period(tmp_path: Path, server: ListServer) -> None:
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"), refresh="1h")
    lists = lists_for(config)
    lists.load_now(config)
    await lists.refresh(urls=True)
    await lists.refresh(urls=True)
    assert server.count("/hosts") == 1
    await lists.refresh(urls=True, now=time.monotonic() + 3601)
    assert server.count("/hosts") == 2


async def test_downloads_never_stall_the_event_loop(tmp_path: Path, server: ListServer) -> None:
    """A slow download runs in a thread: the loop keeps ticking every few ms meanwhile."""
    server.paths["/hosts"] = Served(HOSTS, delay=1.0)
    config = config_for(tmp_path, server.url("/hosts"))
    lists = lists_for(config)
    lists.load_now(config)
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        assert await lists.refresh(urls=True)
    finally:
        task.cancel()
    assert worst < 0.1, worst


async def test_refresh_metrics(tmp_path: Path, server: ListServer) -> None:
    server.paths["/hosts"] = Served(HOSTS)
    config = config_for(tmp_path, server.url("/hosts"))
    lists = lists_for(config)
    lists.load_now(config)
    await lists.refresh(urls=True)
    server.paths["/hosts"] = Served(status=503)
    next(iter(lists.sources.values())).due = 0.0
    await lists.refresh(urls=True)
    families = {f.name: f for f in BlockListMetrics(lambda: lists.rows(config)).collect()}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}  # fmt: skip
    assert samples[("kdns_blocklist_refresh_total", (("list", "ads"), ("result", "ok")))] == 1
    assert samples[("kdns_blocklist_refresh_total", (("list", "ads"), ("result", "error")))] == 1
    assert samples[("kdns_blocklist_entries", (("list", "ads"),))] == 9
    assert samples[("kdns_blocklist_skipped_rules", (("list", "ads"), ("reason", "invalid-name")))] == 2  # fmt: skip
    assert samples[("kdns_blocklist_last_success_timestamp_seconds", (("list", "ads"),))] > 0


def test_config_keys(tmp_path: Path) -> None:
    config = config_for(tmp_path, "https://lists.example/hosts", refresh="1h30m")
    (spec,) = config.blocklists
    assert (spec.url, spec.file, spec.refresh, spec.format) == ("https://lists.example/hosts", None, 5400.0, "auto")  # fmt: skip
    assert config.blocking_cache_dir == str(tmp_path / "cache")
    assert 'refresh = "1h30m"' in config.to_toml()
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml())
    assert build_config(str(again), {}).blocklists == config.blocklists


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('name = "a"\nfile = "x"\nurl = "https://x/y"', "either file"),
        ('name = "a"\nurl = "ftp://x/y"', "http:// or https://"),
        ('name = "a"\nurl = "https://x/y"\nrefresh = "soon"', "duration"),
        ('name = "a"\nfile = "x"\nschedule = { mon = "17:00-08:00" }', "start before end"),
        (
            'name = "a"\nfile = "x"\nschedule = { time_zone = "Mars/Olympus" }',
            "unknown time zone",
        ),  # fmt: skip
    ],
)
def test_bad_list_entries_are_named(tmp_path: Path, entry: str, problem: str) -> None:
    from kdns.config import ConfigError

    path = tmp_path / "kdns.toml"
    path.write_text(f"[[blocklists]]\n{entry}\n")
    with pytest.raises(ConfigError, match=problem) as caught:
        build_config(str(path), {})
    assert str(caught.value).startswith("config: blocklists[0]")


def test_a_view_names_only_existing_allowlists(tmp_path: Path) -> None:
    from kdns.config import ConfigError

    path = tmp_path / "kdns.toml"
    path.write_text('[[views]]\nname = "lan"\nnetworks = ["10.0.0.0/8"]\nallowlists = ["x"]\n')
    with pytest.raises(ConfigError, match=r"views\[0\]\.allowlists\[0\]: no \[\[allowlists\]\] named 'x'"):  # fmt: skip
        build_config(str(path), {})


# --- a kdns process ------------------------------------------------------------------------------


def test_kdns_blocks_with_a_url_list_and_after_a_restart_without_it(tmp_path: Path, server: ListServer) -> None:  # fmt: skip
    server.paths["/oisd"] = Served(OISD)
    path = tmp_path / "kdns.toml"
    path.write_text(
        f'[blocking]\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[[blocklists]]\nname = "oisd"\nurl = "{server.url("/oisd")}"\nanswer = "nxdomain"\n'
        '[[views]]\nname = "local"\nnetworks = ["127.0.0.0/8"]\nblocklists = ["oisd"]\n'
    )

    def blocked(proc: Kdns) -> dns.message.Message:
        return proc.query("x.ads.example.net", "A", use_edns=0)

    with Kdns("--demo", "--no-forward", "-c", str(path)) as proc:
        deadline = time.monotonic() + 10
        while dns.rcode.from_flags(*_flags(blocked(proc))) != dns.rcode.NXDOMAIN:
            assert time.monotonic() < deadline, proc.log
            time.sleep(0.1)
        reply = blocked(proc)
        assert [(o.code, o.text) for o in reply.options] == [(dns.edns.EDECode.BLOCKED, "blocked by oisd")]  # fmt: skip
        assert "downloaded" in proc.log
    server.paths.clear()  # the list server is gone
    with Kdns("--demo", "--no-forward", "-c", str(path)) as proc:
        assert blocked(proc).rcode() == dns.rcode.NXDOMAIN  # from the first answer on
        assert "from the copy in" in proc.log


def _flags(message: dns.message.Message) -> tuple[int, int]:
    return message.flags, message.ednsflags


def test_a_refresh_parses_in_a_forked_child_whose_hashes_are_this_process_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A refresh's parse runs in a forked child that sends the index back (the serving
    process never holds the GIL for it): the index equals a parse here, hash for hash, and
    blocks the same names; the thread fallback gives the same; an unreadable file is an
    OSError as before."""
    from kdns.policy import listsource
    from kdns.policy.views import View

    path = tmp_path / "mixed.txt"
    path.write_text("||ads.example^\n@@||ok.ads.example^\n/^track[0-9]+\\./\n0.0.0.0 h.example\n$$bad\n")  # fmt: skip
    source = listsource.Source(str(path), None, "auto")
    here = listsource.parse_source(source)
    assert listsource.FORK
    forked = asyncio.run(listsource.parse_off_loop(source))
    monkeypatch.setattr(listsource, "FORK", False)
    threaded = asyncio.run(listsource.parse_off_loop(source))
    for got in (forked, threaded):
        assert list(got.hashes) == list(here.hashes) and got.index == here.index
        assert (got.entries, got.skipped_by, got.exceptions) == (here.entries, here.skipped_by, here.exceptions)  # fmt: skip
        view = View("lan", ["192.168.1.0/24"], None, [got])
        verdicts = {n: view.blocked(names.to_wire(n).lower()) is not None
                    for n in ("x.ads.example", "ok.ads.example", "track7.example", "h.example", "example")}  # fmt: skip
        assert verdicts == {"x.ads.example": True, "ok.ads.example": False, "track7.example": True, "h.example": True, "example": False}  # fmt: skip
    monkeypatch.setattr(listsource, "FORK", True)
    with pytest.raises(OSError):
        asyncio.run(listsource.parse_off_loop(listsource.Source(str(tmp_path / "gone.txt"), None, "auto")))  # fmt: skip


def test_the_parse_helper_gives_the_same_index_and_its_loss_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """The parse helper (listsource.Helper, forked once while kdns is small) parses a body
    and a file to the index a parse here gives; a body of a list the size of the helper's
    socket buffer many times over goes through whole; when the helper dies, the next parse
    forks its own child (one warning) and gives the same index."""
    import os
    import signal

    from kdns.policy import listsource

    monkeypatch.setattr(listsource, "_helper", None)
    listsource.start_helper()
    helper = listsource._helper
    assert helper is not None
    try:
        body = b"".join(b"0.0.0.0 n%d.ads.example\n" % i for i in range(60_000)) + b"@@||n7.ads.example^\n"  # fmt: skip
        url = listsource.Source(None, "http://127.0.0.1/x", "auto")
        here = listsource.parse_source(url, body)
        got = asyncio.run(listsource.parse_off_loop(url, body))
        assert list(got.hashes) == list(here.hashes) and got.index == here.index
        assert got.exceptions == here.exceptions and got.entries == here.entries == 60_001
        path = tmp_path / "list.txt"
        path.write_bytes(body[:1000])
        file = listsource.Source(str(path), None, "hosts")
        assert list(asyncio.run(listsource.parse_off_loop(file)).hashes) == list(listsource.parse_source(file).hashes)  # fmt: skip
        with pytest.raises(OSError):  # an unreadable file: OSError through the helper too
            asyncio.run(listsource.parse_off_loop(listsource.Source(str(tmp_path / "gone"), None, "auto")))  # fmt: skip
        assert listsource._helper is helper  # still there after a failed job
        os.kill(helper.pid, signal.SIGKILL)
        os.waitpid(helper.pid, 0)
        with caplog.at_level("WARNING", logger="kdns.blocklist"):
            again = asyncio.run(listsource.parse_off_loop(url, body))
        assert list(again.hashes) == list(here.hashes)
        assert listsource._helper is None and "the parse helper is gone" in caplog.text
    finally:
        if listsource._helper is not None:
            listsource._helper.close()


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_a_download_is_read_line_by_line_as_splitlines_reads_it(end: bytes) -> None:
    """A body's lines are read one at a time (not all made at once): the same rules as a
    parse of ``body.splitlines()``, whatever the line ends, with or without a last one."""
    from kdns.policy.blocklist import BlockList
    from kdns.policy.listsource import Source, parse_source

    lines = [b"# list", b"0.0.0.0 a.example b.example", b"||c.example^", b"@@||ok.c.example^", b"/^d[0-9]+\\./", b"bad name!", b"e.example"]  # fmt: skip
    for body in (end.join(lines) + end, end.join(lines)):
        got = parse_source(Source(None, "http://127.0.0.1/x", "auto"), body)
        want = BlockList.parse("x", "x", "auto", "nxdomain", body.splitlines())
        assert list(got.hashes) == list(want.hashes) and got.entries == want.entries == 6
        assert got.skipped_by == want.skipped_by == {"invalid-name": 1}
        assert got.exceptions == want.exceptions


def test_a_helper_that_never_replies_counts_as_gone(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A parse child killed in the middle of its reply leaves the helper's socket quiet: past
    HELPER_TIMEOUT the helper is dropped (killed when it does not end) and the list parses in
    a child forked for it."""
    import contextlib
    import os
    import signal

    from kdns.policy import listsource

    monkeypatch.setattr(listsource, "_helper", None)
    monkeypatch.setattr(listsource, "HELPER_TIMEOUT", 0.5)
    listsource.start_helper()
    helper = listsource._helper
    assert helper is not None
    os.kill(helper.pid, signal.SIGSTOP)  # alive, holding its socket open, never answering
    try:
        source = listsource.Source(None, "http://127.0.0.1/x", "auto")
        body = b"0.0.0.0 a.example\n||b.example^\n"
        with caplog.at_level("WARNING", logger="kdns.blocklist"):
            got = asyncio.run(listsource.parse_off_loop(source, body))
        assert list(got.hashes) == list(listsource.parse_source(source, body).hashes)
        assert listsource._helper is None and "the parse helper is gone" in caplog.text
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(helper.pid, signal.SIGKILL)
            os.waitpid(helper.pid, 0)
