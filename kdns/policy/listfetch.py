"""Block lists and allowlists from files and URLs: downloaded, kept on disk, refreshed, and
swapped in without stalling DNS.

A URL list (``[[blocklists]] url = "https://..."``) is downloaded with the standard library's
HTTP client in a thread (TLS, redirects, proxies from the environment, chunked bodies; the
event loop never waits on it), within ``[blocking] download_timeout`` for the whole body and
``max_download_size`` bytes, ``download_attempts`` tries with exponential backoff (1 s, 2 s,
4 s... plus jitter), ``If-None-Match``/``If-Modified-Since`` so an unchanged list costs a 304.
A good download is written to ``[blocking] cache_dir`` (a temporary file renamed over the last
one) with its validators, and that copy is what a restart loads first: a restart without
network still blocks. A download that fails, is cut short (fewer bytes than Content-Length),
is too large, or is smaller than ``min_share`` of the last good one (a truncated mirror, an
error page served as 200) keeps the last good list, with one log line and
``kdns_blocklist_refresh_total{list,result}``.

Parsing runs in a child process forked for it (``parse_off_loop``): it returns the compact
index (8 MiB of hashes per 1M names) through a pipe, so the serving process never holds the
GIL for the parse; the new index is swapped in by the app in one step of the event loop (views
rebuilt, killer mode's wire cache invalidated with them). A file list is re-read
when its (inode, mtime, size) moves, as before.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
import os
import pickle
import random
import re
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kdns import __version__
from kdns.policy.blocklist import BlockList, file_stamp

log = logging.getLogger("kdns.blocklist")

RESULTS = ("ok", "not_modified", "error", "too_large", "shrunk")
_CHUNK = 1 << 16


class FetchError(Exception):
    """A download that did not give a usable list; ``result`` is its metric label."""

    def __init__(self, message: str, result: str = "error") -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class FetchSettings:
    cache_dir: str | None = None
    timeout: float = 60.0  # seconds for a whole download
    attempts: int = 3
    max_size: int = 64 << 20
    min_share: float = 0.5
    backoff: float = 1.0  # the first retry's delay; doubled each time


@dataclass
class Fetched:
    body: bytes | None  # None: not modified (HTTP 304)
    etag: str = ""
    last_modified: str = ""


def download(url: str, settings: FetchSettings, etag: str = "", last_modified: str = "") -> Fetched:  # fmt: skip
    """One GET of ``url`` (blocking: run it in a thread), bounded in time and size."""
    headers = {"User-Agent": f"kdns/{__version__}", "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + settings.timeout
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=min(settings.timeout, 30.0)) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > settings.max_size:
                raise FetchError(f"{length} bytes, more than max_download_size {settings.max_size}", "too_large")  # fmt: skip
            chunks = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"not complete after {settings.timeout:g} s")
                chunk = response.read1(_CHUNK)  # what has arrived: the deadline holds
                if not chunk:
                    break
                size += len(chunk)
                if size > settings.max_size:
                    raise FetchError(f"more than max_download_size {settings.max_size} bytes", "too_large")  # fmt: skip
                chunks.append(chunk)
            body = b"".join(chunks)
            if length is not None and length.isdigit() and len(body) < int(length):
                raise FetchError(f"cut short: {len(body)} of {length} bytes")
            return Fetched(
                body,
                response.headers.get("ETag", "") or "",
                response.headers.get("Last-Modified", "") or "",
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(None, etag, last_modified)
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchError(str(exc.reason)) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, IncompleteRead, bad URLs
        raise FetchError(str(exc) or exc.__class__.__name__) from None


@dataclass
class Source:
    """One list source (a file or a URL, read in one format), shared by the lists naming it."""

    file: str | None
    url: str | None
    format: str
    refresh: float = 0.0
    loaded: BlockList | None = None
    stamp: tuple[int, int, int] | None = None  # file lists: when last looked at
    due: float = 0.0  # URL lists: monotonic time of the next download
    last_success: float = 0.0  # wall-clock time of the last good load (0: never)
    size: int = 0  # bytes of the last good download (the shrink guard's reference)
    results: dict[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.file or self.url or "", self.format)

    @property
    def where(self) -> str:
        return self.file or self.url or ""

    def cache_path(self, cache_dir: str) -> str:
        digest = hashlib.sha256((self.url or "").encode()).hexdigest()[:16]
        tail = re.sub(r"[^A-Za-z0-9._-]", "_", (self.url or "").rsplit("/", 1)[-1])[:40]
        return os.path.join(cache_dir, f"{digest}-{tail or 'list'}.txt")

    def count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


def parse_source(source: Source, body: bytes | None = None) -> BlockList:
    """Parse a source's file, or ``body`` (a download or its cached copy)."""
    if body is None:
        assert source.file is not None
        return BlockList.load(source.where, source.file, source.format, "nxdomain")
    return BlockList.parse(source.where, source.where, source.format, "nxdomain", body.splitlines())  # fmt: skip


PARSE_SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
_parsing = 0
FORK = hasattr(os, "fork")  # tests turn it off to exercise the thread fallback
# What crosses the pipe: a BlockList's slots but its answers (rebuilt from ``answer``).
_SLOTS = tuple(slot for slot in BlockList.__slots__ if slot != "_answers")
if sys.version_info >= (3, 12):  # the child only parses: it takes no lock but the GIL
    import warnings

    warnings.filterwarnings("ignore", r".*multi-threaded, use of fork\(\)", DeprecationWarning)


def _parse_forked(source: Source, body: bytes | None) -> BlockList:
    """``parse_source`` in a child forked from this thread; its result comes back pickled
    through a pipe. A forked child keeps this process's ``hash()`` secret, so the hashes it
    computes are the ones lookups here compute. Seconds of pure-Python parsing (1M rules:
    4.5 s) then never hold this process's GIL: what the event loop waits for is the fork and
    unpickling the index (about 2 ms each per 1M names), not the parse. The child runs at
    nice 19, so where it shares a core with this process the kernel runs this one first."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, write, exit without the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(number, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop
            os.nice(19)  # on a shared core the kernel runs the serving process first
            try:
                loaded = parse_source(source, body)
                payload: tuple[bool, Any] = (True, tuple(getattr(loaded, k) for k in _SLOTS))
            except OSError as exc:
                payload = (False, (exc.errno, exc.strerror, exc.filename))
            data = memoryview(pickle.dumps(payload, pickle.HIGHEST_PROTOCOL))
            while data:
                data = data[os.write(write_fd, data) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            received = pipe.read()
    finally:
        _, status = os.waitpid(pid, 0)
    if not received:
        raise RuntimeError(f"block list {source.where}: the parsing process failed (status {status})")  # fmt: skip
    ok, value = pickle.loads(received)
    if not ok:
        raise OSError(*value)
    loaded = BlockList(source.where, source.where, source.format, "nxdomain")
    for slot, got in zip(_SLOTS, value, strict=True):
        setattr(loaded, slot, got)
    return loaded


async def parse_off_loop(source: Source, body: bytes | None = None) -> BlockList:
    """``parse_source`` off the event loop: in a forked child (``_parse_forked``) where
    ``os.fork`` exists. Else in a thread, with the interpreter's thread switch interval
    lowered to 0.5 ms while it runs: parsing is pure Python holding the GIL, and at the
    default 5 ms the event loop waited for it (measured, 1M rules: 7 ms p99 and 379 ms worst
    loop stalls; at 0.5 ms: 4.3 ms p99, 12 ms worst; benchmarks/lan.py's refresh run)."""
    if FORK:
        return await asyncio.to_thread(_parse_forked, source, body)
    global _parsing
    if _parsing == 0:
        _parsing_restore.append(sys.getswitchinterval())
        sys.setswitchinterval(PARSE_SWITCH_INTERVAL)
    _parsing += 1
    try:
        return await asyncio.to_thread(parse_source, source, body)
    finally:
        _parsing -= 1
        if _parsing == 0:
            sys.setswitchinterval(_parsing_restore.pop())


_parsing_restore: list[float] = []


def describe(blocklist: BlockList) -> str:
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(blocklist.skipped_by.items()))
    return (
        f"{blocklist.entries} rules ({blocklist.skipped} lines skipped"
        + (f": {reasons}" if reasons else "")
        + f"), {blocklist.memory() / (1 << 20):.1f} MiB"
    )


class Lists:
    """Every list source some view uses: loading, refreshing, what the metrics read."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self.sources: dict[tuple[str, str], Source] = {}

    # ------------------------------------------------------------------ which sources

    def wanted(self, config: Any) -> list[Source]:
        """The sources of the block lists and allowlists some view names, in config order."""
        used_block = {name for view in config.views for name in view.blocklists}
        used_allow = {name for view in config.views for name in view.allowlists}
        out: dict[tuple[str, str], Source] = {}
        for spec in [*(s for s in config.blocklists if s.name in used_block),
                     *(s for s in config.allowlists if s.name in used_allow)]:  # fmt: skip
            source = Source(spec.file, spec.url, spec.format, spec.refresh if spec.url else 0.0)
            key = source.key
            known = self.sources.get(key)
            if known is not None:
                known.refresh = min(known.refresh, source.refresh) if key in out else source.refresh  # fmt: skip
                source = known
            out.setdefault(key, source)
        return list(out.values())

    def set_wanted(self, sources: Iterable[Source]) -> None:
        """Keep only these sources (lists no view uses any more are let go)."""
        self.sources = {source.key: source for source in sources}

    def lookup(self, spec: Any) -> BlockList | None:
        source = self.sources.get((spec.file or spec.url or "", spec.format))
        return source.loaded if source is not None else None

    # ------------------------------------------------------------------ loading

    def load_now(self, config: Any) -> None:
        """At start, before serving: every file list and every URL list's cached copy (no
        network: a URL list without a copy is downloaded in the background right after)."""
        sources = self.wanted(config)
        for source in sources:
            self._load_blocking(source)
        self.set_wanted(sources)

    def _load_blocking(self, source: Source) -> bool:
        """Load a source from disk; True when ``loaded`` changed."""
        if source.file is not None:
            source.stamp = file_stamp(source.file)
            try:
                source.loaded = parse_source(source)
            except OSError as exc:
                log.error("block list %s: cannot read: %s; its views answer without it until it can be read", source.file, exc.strerror or exc)  # fmt: skip
                return False
            source.last_success = time.time()
            log.info("block list %s: %s", source.file, describe(source.loaded))
            return True
        cached = self._cached(source)
        if cached is not None:
            source.loaded = parse_source(source, cached[0])
            source.last_success = cached[1]
            source.size = len(cached[0])
            log.info("block list %s: %s, from the copy in %s", source.url, describe(source.loaded), self.settings.cache_dir)  # fmt: skip
            age = time.time() - cached[1]
            source.due = time.monotonic() + max(0.0, source.refresh - age) if source.refresh else time.monotonic()  # fmt: skip
            return True
        source.due = 0.0  # download as soon as the refresh loop runs
        return False

    async def load(self, config: Any, why: str) -> bool:
        """On reload: sources not loaded yet, read in a thread. True when a list changed."""
        sources = self.wanted(config)
        changed = False
        for source in sources:
            if source.loaded is None and source.key not in self.sources:
                changed |= await self._load_off_loop(source)
        before = set(self.sources)
        self.set_wanted(sources)
        return changed or before != set(self.sources)

    async def _load_off_loop(self, source: Source) -> bool:
        """``_load_blocking`` for a reload: the parse in another process."""
        if source.file is not None:
            source.stamp = file_stamp(source.file)
            try:
                source.loaded = await parse_off_loop(source)
            except OSError as exc:
                log.error("block list %s: cannot read: %s; its views answer without it until it can be read", source.file, exc.strerror or exc)  # fmt: skip
                return False
            source.last_success = time.time()
            log.info("block list %s: %s", source.file, describe(source.loaded))
            return True
        cached = await asyncio.to_thread(self._cached, source)
        if cached is None:
            source.due = 0.0
            return False
        source.loaded = await parse_off_loop(source, cached[0])
        source.last_success, source.size = cached[1], len(cached[0])
        source.due = time.monotonic() + max(0.0, source.refresh - (time.time() - cached[1])) if source.refresh else time.monotonic()  # fmt: skip
        return True

    async def refresh(self, urls: bool, now: float | None = None) -> bool:
        """Re-read the file lists whose files moved (``urls`` False) or download the URL
        lists that are due (``urls`` True), one at a time, parsing in a thread. True when a
        list changed."""
        changed = False
        for source in list(self.sources.values()):
            if (source.url is not None) != urls:
                continue
            if source.file is not None:
                stamp = file_stamp(source.file)
                if stamp == source.stamp:
                    continue
                source.stamp = stamp
                try:
                    fresh = await parse_off_loop(source)
                except OSError as exc:
                    log.error("block list %s unchanged: cannot read: %s", source.file, exc.strerror or exc)  # fmt: skip
                    continue
                log.info("block list %s reloaded: %s", source.file, describe(fresh))
            else:
                clock = time.monotonic() if now is None else now
                if source.due > clock or (source.loaded is not None and not source.refresh):
                    continue
                source.due = clock + (source.refresh or float("inf"))
                downloaded = await self._download(source)
                if downloaded is None:
                    continue
                fresh = downloaded
            if source.key in self.sources:  # still wanted after the wait
                source.loaded = fresh
                source.last_success = time.time()
                changed = True
        return changed

    async def _download(self, source: Source) -> BlockList | None:
        """Download (with retries), check, keep on disk, parse; None: keep what is loaded."""
        settings = self.settings
        assert source.url is not None
        meta = self._meta(source)
        last_size = source.size or int(meta.get("size", 0) or 0)
        delay = settings.backoff
        problem = FetchError("no attempt")
        fetched: Fetched | None = None
        for attempt in range(settings.attempts):
            if attempt:
                await asyncio.sleep(delay * (1 + random.random() / 2))
                delay *= 2
            try:
                fetched = await asyncio.to_thread(
                    download,
                    source.url,
                    settings,
                    meta.get("etag", ""),
                    meta.get("last_modified", ""),
                )
                break
            except FetchError as exc:
                problem = exc
                if exc.result == "too_large":
                    break  # the same bytes again would be too large again
        keeping = (
            "keeping the last good copy" if source.loaded is not None else "no copy to use yet"
        )
        if fetched is None:
            source.count(problem.result)
            log.error("block list %s: download failed (%s), %s", source.url, problem, keeping)
            return None
        if fetched.body is None:
            source.count("not_modified")
            log.info("block list %s: not modified", source.url)
            if source.loaded is not None:
                return None
            cached = self._cached(source)
            if cached is None:
                return None
            fetched.body = cached[0]
        elif last_size and len(fetched.body) < settings.min_share * last_size:
            source.count("shrunk")
            log.error("block list %s: download of %d bytes is below %g of the last good %d bytes (blocking.min_share), %s", source.url, len(fetched.body), settings.min_share, last_size, keeping)  # fmt: skip
            return None
        else:
            source.count("ok")
            source.size = len(fetched.body)
            await asyncio.to_thread(self._keep, source, fetched)
        body = fetched.body
        fresh = await parse_off_loop(source, body)
        log.info("block list %s downloaded: %d bytes, %s", source.url, len(body), describe(fresh))  # fmt: skip
        return fresh

    # ------------------------------------------------------------------ the cache dir

    def _meta(self, source: Source) -> dict[str, Any]:
        cache_dir = self.settings.cache_dir
        if not cache_dir:
            return {}
        try:
            with open(source.cache_path(cache_dir) + ".json") as handle:
                meta = json.load(handle)
            return meta if isinstance(meta, dict) and meta.get("url") == source.url else {}
        except (OSError, ValueError):
            return {}

    def _cached(self, source: Source) -> tuple[bytes, float] | None:
        """The last good copy of a URL list and when it was downloaded, if kept."""
        cache_dir = self.settings.cache_dir
        if not cache_dir:
            return None
        meta = self._meta(source)
        try:
            with open(source.cache_path(cache_dir), "rb") as handle:
                body = handle.read()
        except OSError:
            return None
        return body, float(meta.get("fetched", 0.0) or os.path.getmtime(source.cache_path(cache_dir)))  # fmt: skip

    def _keep(self, source: Source, fetched: Fetched) -> None:
        """Write a good download over the last one (a rename: never half a file)."""
        cache_dir = self.settings.cache_dir
        if not cache_dir or fetched.body is None:
            return
        path = source.cache_path(cache_dir)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            for target, data in (
                (path, fetched.body),
                (
                    path + ".json",
                    json.dumps(
                        {
                            "url": source.url,
                            "etag": fetched.etag,
                            "last_modified": fetched.last_modified,
                            "size": len(fetched.body),
                            "fetched": time.time(),
                        }
                    ).encode(),
                ),  # fmt: skip
            ):
                handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=".kdns-")
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(temporary, target)
        except OSError as exc:
            log.error("block list %s: cannot keep a copy in %s: %s", source.url, cache_dir, exc.strerror or exc)  # fmt: skip

    # ------------------------------------------------------------------ metrics

    def rows(self, config: Any) -> list[tuple[str, Source]]:
        """(list name, its source) for every configured list whose source is in use."""
        out = []
        for spec in [*config.blocklists, *config.allowlists]:
            source = self.sources.get((spec.file or spec.url or "", spec.format))
            if source is not None:
                out.append((spec.name, source))
        return out


# ---------------------------------------------------------------------- views


def build_views(config: Any, lists: Lists, zones: Any, counts: dict[tuple[str, str], int], now: float | None = None, registry: Any = None, resolver: Any = None) -> Any:  # fmt: skip
    """[[views]] with their loaded block lists and allowlists, as their schedules have them
    at ``now``; None (nothing on the hot path) without views. ``registry``/``resolver``: a
    view's gateway class filters answer from them (kdns.policy.views.gateway_answers)."""
    from kdns.policy.views import View, Views, gateway_answers

    if not config.views:
        return None
    blocking, allowing = {}, {}
    for spec in config.blocklists:
        loaded = lists.lookup(spec)
        if loaded is not None and active(spec.schedule, now):
            blocking[spec.name] = loaded.as_list(spec.name, spec.answer)
    for aspec in config.allowlists:
        loaded = lists.lookup(aspec)
        if loaded is not None:
            allowing[aspec.name] = loaded.as_list(aspec.name, "nxdomain")
    views = []
    gateway = gateway_answers(config.views, registry, resolver)
    for v, own in zip(config.views, gateway, strict=True):
        on = active(v.schedule, now)
        views.append(
            View(
                v.name,
                v.networks,
                v.zones,
                [blocking[n] for n in v.blocklists if n in blocking] if on else [],
                [allowing[n] for n in v.allowlists if n in allowing] if on else [],
                own,
            )
        )
    return Views(views, zones, counts)


def explain(config: Any, name: str, view_name: str, lists: Lists) -> list[str]:
    """``kdns explain``: what the view's lists say about ``name``, with the lines of the
    lists that hold the matching rules."""
    from kdns.authority.zones import ZoneSet
    from kdns.dns import names
    from kdns.policy.blocklist import iter_rules

    views = build_views(config, lists, ZoneSet.build(config.cluster_domain, (), 5), {})
    chosen = next((v for v in views.views if v.name == view_name), None) if views else None
    if chosen is None:
        raise KeyError(view_name)
    wire = names.to_wire(name).lower()
    out = [f"{name} for view {view_name}:"]
    for line in chosen.explain(wire):
        out.append("  " + line)
    parents = {wire[i:] for i in _label_starts(wire)}
    for spec in [*config.blocklists, *config.allowlists]:
        if spec.name not in (*chosen_lists(config, view_name),):
            continue
        source = lists.sources.get((spec.file or spec.url or "", spec.format))
        body = _source_lines(source, lists) if source is not None else []
        for number, got in iter_rules(body, spec.format):
            if isinstance(got, str):
                continue
            if any(
                (rule.name is not None and rule.name in parents)
                or (rule.pattern is not None and chosen.explain_pattern(rule.pattern, wire))
                for rule in got
            ):
                text = body[number - 1].strip().decode("utf-8", "replace")
                out.append(f"  {spec.name} line {number}: {text}")
    return out


def chosen_lists(config: Any, view_name: str) -> list[str]:
    for v in config.views:
        if v.name == view_name:
            return [*v.blocklists, *v.allowlists]
    return []


def _label_starts(wire: bytes) -> list[int]:
    out, pos = [], 0
    while wire[pos]:
        out.append(pos)
        pos += wire[pos] + 1
    return out


def _source_lines(source: Source, lists: Lists) -> list[bytes]:
    try:
        if source.file is not None:
            with open(source.file, "rb") as handle:
                return handle.read().splitlines()
        cached = lists._cached(source)
        return cached[0].splitlines() if cached is not None else []
    except OSError:
        return []


# ---------------------------------------------------------------------- schedules


def active(schedule: Any, now: float | None = None) -> bool:
    """Whether a view or list with ``schedule`` (kdns.config Schedule; None: always) blocks
    at ``now`` (epoch seconds)."""
    if schedule is None:
        return True
    when = _local(schedule.time_zone, time.time() if now is None else now)
    minute = when.hour * 60 + when.minute
    inside = any(start <= minute < end for start, end in schedule.days[when.weekday()])
    return inside != schedule.pause


def _local(zone: str, now: float) -> datetime.datetime:
    if zone == "Local":
        return datetime.datetime.fromtimestamp(now)
    return datetime.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(zone))


def schedule_state(config: Any, now: float | None = None) -> tuple[bool, ...]:
    """Every schedule's state now, in config order: views then lists (a change rebuilds)."""
    return tuple(
        active(item.schedule, now)
        for item in (*config.views, *config.blocklists)
        if item.schedule is not None
    )


def seconds_to_next_minute(now: Callable[[], float] = time.time) -> float:
    return 60.0 - now() % 60.0 + 0.05
