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

Parsing runs in a child of the parse helper (``parse_off_loop``, kdns.policy.listsource): it
returns the compact index (8 MiB of hashes per 1M names), so the serving process never holds
the GIL for the parse; downloads and the copies on disk go through an idle-priority thread
(kdns.policy.listthread); the new index is swapped in by the app in one step of the event
loop (views rebuilt, killer mode's wire cache invalidated with them). A file list is re-read
when its (inode, mtime, size) moves, as before.

With ``--workers`` one process downloads: the first (kdns.server.workers calls
``share_downloads`` before forking and ``follow_downloads`` in each worker). The workers never
download; each second they look at the copy the first process keeps (in ``cache_dir``, or a
private directory made for the pod's processes when it is unset) and load it when it moves,
so N processes make one request per refresh to the list's server. A worker that finds no copy
within ``FOLLOW_GRACE`` (a ``cache_dir`` the first process cannot write) downloads its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from kdns.policy.blocklist import BlockList, file_stamp
from kdns.policy.download import Fetched, FetchError, FetchSettings, download
from kdns.policy.listsource import Source, describe, parse_off_loop, parse_source, start_helper
from kdns.policy.listthread import in_background, paced_write

# Imported from here by the app and the CLI (views and schedules live in modules of their own).
from kdns.policy.schedules import active, schedule_state, seconds_to_next_minute
from kdns.policy.viewlists import build_views, explain

log = logging.getLogger("kdns.blocklist")

# --workers: whether this process follows the first one's downloads, and where the copies go
# when [blocking] cache_dir is unset (made by the first process before it forks).
_follower = False
_shared_dir: str | None = None
FOLLOW_GRACE = 120.0  # seconds plus the download's own time before a worker downloads itself


def share_downloads() -> str | None:
    """In the first process, before ``--workers`` forks: a private directory for the list
    copies when ``[blocking] cache_dir`` is unset (the caller removes it at exit). None when
    it cannot be made (a read-only /tmp): every process then downloads its own lists."""
    global _shared_dir
    try:
        _shared_dir = tempfile.mkdtemp(prefix="kdns-lists-")
    except OSError as exc:
        log.warning("--workers: no directory to share downloaded lists in (%s): each process downloads its own", exc)  # fmt: skip
        _shared_dir = None
    return _shared_dir


def follow_downloads() -> None:
    """In a ``--workers`` worker: load the first process's copies, never download."""
    global _follower
    _follower = True


class Lists:
    """Every list source some view uses: loading, refreshing, what the metrics read."""

    def __init__(self, settings: FetchSettings) -> None:
        self.settings = settings
        self.sources: dict[tuple[str, str], Source] = {}
        self.follower = _follower  # a --workers worker: URL lists come from the copies
        self._looked = 0.0  # a follower's first look for a copy (monotonic)

    def copy_dir(self) -> str | None:
        """Where the copies of URL lists are kept: cache_dir, else the --workers directory."""
        return self.settings.cache_dir or _shared_dir

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
        if sources:
            start_helper()  # forked now, while this process is small (listsource.Helper)
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
            source.stamp = cached[2]
            log.info("block list %s: %s, from the copy in %s", source.url, describe(source.loaded), self.copy_dir())  # fmt: skip
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
        cached = await in_background(self._cached, source)
        if cached is None:
            source.due = 0.0
            return False
        source.loaded = await parse_off_loop(source, cached[0])
        source.last_success, source.size, source.stamp = cached[1], len(cached[0]), cached[2]
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
            elif self.follower and self.copy_dir() and not self._gave_up(now):
                followed = await self._follow(source)
                if followed is not None and source.key in self.sources:
                    source.loaded, source.last_success = followed
                    changed = True
                continue
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

    async def _follow(self, source: Source) -> tuple[BlockList, float] | None:
        """A --workers worker: the list from the first process's copy when the copy moved
        since this process loaded it (a stat a second), with when it was downloaded."""
        directory = self.copy_dir()
        assert directory is not None
        stamp = file_stamp(source.cache_path(directory))
        if stamp is None or stamp == source.stamp:
            return None
        cached = await in_background(self._cached, source)
        if cached is None:
            return None
        source.stamp, source.size = cached[2], len(cached[0])
        fresh = await parse_off_loop(source, cached[0])
        log.info("block list %s: %s, from the copy the first process downloaded", source.url, describe(fresh))  # fmt: skip
        return fresh, cached[1]

    def _gave_up(self, now: float | None) -> bool:
        """A follower with a URL list still missing its copy FOLLOW_GRACE (plus the
        downloads' own time) after it first looked: the first process cannot write the
        copies, so this process downloads its own from now on (one warning)."""
        clock = time.monotonic() if now is None else now
        if all(s.loaded is not None for s in self.sources.values() if s.url is not None):
            return False
        if not self._looked:
            self._looked = clock
            return False
        grace = FOLLOW_GRACE + self.settings.timeout * self.settings.attempts
        if clock - self._looked < grace:
            return False
        log.warning("--workers: no copy of the URL lists from the first process in %s after %.0f s: this process downloads its own", self.copy_dir(), grace)  # fmt: skip
        self.follower = False
        return True

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
                fetched = await in_background(
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
            await in_background(self._keep, source, fetched)
        body = fetched.body
        fresh = await parse_off_loop(source, body)
        log.info("block list %s downloaded: %d bytes, %s", source.url, len(body), describe(fresh))  # fmt: skip
        return fresh

    # ------------------------------------------------------------------ the cache dir

    def _meta(self, source: Source) -> dict[str, Any]:
        cache_dir = self.copy_dir()
        if not cache_dir:
            return {}
        try:
            with open(source.cache_path(cache_dir) + ".json") as handle:
                meta = json.load(handle)
            return meta if isinstance(meta, dict) and meta.get("url") == source.url else {}
        except (OSError, ValueError):
            return {}

    def _cached(self, source: Source) -> tuple[bytes, float, tuple[int, int, int]] | None:
        """The last good copy of a URL list, when it was downloaded and its file's stamp."""
        cache_dir = self.copy_dir()
        if not cache_dir:
            return None
        meta = self._meta(source)
        try:
            with open(source.cache_path(cache_dir), "rb") as handle:
                stamp = os.fstat(handle.fileno())
                body = handle.read()
        except OSError:
            return None
        fetched = float(meta.get("fetched", 0.0) or stamp.st_mtime)
        return body, fetched, (stamp.st_ino, stamp.st_mtime_ns, stamp.st_size)

    def _keep(self, source: Source, fetched: Fetched) -> None:
        """Write a good download over the last one (a rename: never half a file)."""
        cache_dir = self.copy_dir()
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
                    paced_write(out, data)
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


__all__ = ["FetchSettings", "Lists", "Source", "active", "build_views", "describe", "explain", "schedule_state", "seconds_to_next_minute"]  # fmt: skip
