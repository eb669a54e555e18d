"""Downloading a list by URL: the standard library's HTTP client (TLS, redirects, proxies from
the environment, chunked bodies), run in a thread so the event loop never waits on it, bounded
by ``[blocking] download_timeout`` for the whole body and ``max_download_size`` bytes, with
``If-None-Match``/``If-Modified-Since`` so an unchanged list costs a 304. Retries, the shrink
guard and the copy on disk are kdns.policy.listfetch's."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from kdns import __version__

RESULTS = ("ok", "not_modified", "error", "too_large", "shrunk")
_CHUNK = 1 << 16
# After each MiB a millisecond's pause: a loopback or LAN mirror delivers a 36 MB list in one
# burst of reads and copies, which kept the serving loop (same CPU) waiting several ms at a
# time (benchmarks/refresh_lag.py); the pause costs 36 ms per 36 MB.
PACE_BYTES = 1 << 20
PACE_PAUSE = 0.001


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
            size = paced = 0
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
                if size - paced >= PACE_BYTES:  # a fast mirror's burst, spread out (below)
                    paced = size
                    time.sleep(PACE_PAUSE)
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
