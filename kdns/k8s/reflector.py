"""List + watch one resource into the registry (client-go's Reflector, kopf's watcher).

- Paginated LIST (``limit``/``continue``), then WATCH from the list's resourceVersion with
  bookmarks; a normal end of the watch (``timeoutSeconds``) resumes from the last seen
  resourceVersion, so no event is missed and nothing is listed again.
- 410 Gone / ``Expired`` (the version was compacted away): LIST again and swap the resource's
  contents in one registry batch: names that exist throughout never disappear, and objects
  deleted during the gap go away.
- Connection errors, 5xx, 429: exponential backoff with jitter (honouring Retry-After), while
  the registry keeps serving the last good state.
- Optional resources (Gateway API CRDs, Ingress): a 404 (the CRD is not installed) or 403 (no
  RBAC rule for it) on LIST is logged once, the resource counts as *settled* (so /ready does not
  wait for a CRD that may never come) and is retried with a slower backoff (up to 30 s);
  once it is served, it is listed and watched like the others. A CRD removed later empties
  the kind.
- API versions: a resource is asked for at its newest version first, then at each older one
  the API server may still serve (``Resource.fallbacks``) on a 404 for the version, so a
  Gateway API CRD of an older release (TLSRoute v1alpha2 before v1.5) is watched too. Each
  retry of an absent resource starts again from the newest.
- A watch event is rendered before the next is read (events apply in order); a huge object
  (a Service of thousands of endpoints) in slices with the loop serving queries between them
  (``render``), its line parsed in a thread when over BIG_EVENT bytes. A relist applies its
  differences in one batch, to stay atomic for readers.
- Raw JSON all the way: requests go through kubernetes_asyncio's ``ApiClient`` (its
  authentication, TLS and aiohttp session) with ``_preload_content=False``, straight to the
  resource's path; no generated ``*Api`` class, no OpenAPI model object, per request or event.
"""

from __future__ import annotations

import asyncio
import bisect
import ctypes
import gc
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from kdns.authority.registry import Registry
from kdns.k8s.background import parsing
from kdns.k8s.kube import ApiClient
from kdns.k8s.objects import (
    slim_endpointslice,
    slim_gateway,
    slim_gatewayclass,
    slim_grpcroute,
    slim_httproute,
    slim_ingress,
    slim_listenerset,
    slim_namespace,
    slim_pod,
    slim_service,
    slim_tcproute,
    slim_tlsroute,
    slim_udproute,
)
from kdns.k8s.watchstream import BIG_EVENT, lines, render
from kdns.model import EndpointSlice, KubeObject

log = logging.getLogger("kdns.reflector")

Raw = dict[str, Any]

# EndpointSlice annotation the endpoints controller sets to the time of the change that
# triggered it (CoreDNS uses it for kubernetes_dns_programming_duration_seconds).
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


class Gone(Exception):
    """The resourceVersion we hold is too old (HTTP 410 / Status reason Expired)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Resource:
    kind: str
    path: str  # the collection across all namespaces, as the generated list_*_for_all_namespaces
    slim: Callable[[Raw], KubeObject | None]
    field_selector: str | None = None
    optional: bool = False  # may be absent from the API (a CRD not installed): see above
    rbac: str = ""  # where the RBAC rule for an optional resource lives, for the 403 message
    # The collection at older API versions, newest first: asked for when the API server
    # answers 404 for the newer one (a CRD of an older release). See above.
    fallbacks: tuple[str, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, *self.fallbacks)


_GW = "/apis/gateway.networking.k8s.io"

RESOURCES = {
    "Service": Resource("Service", "/api/v1/services", slim_service),
    "EndpointSlice": Resource(
        "EndpointSlice", "/apis/discovery.k8s.io/v1/endpointslices", slim_endpointslice
    ),
    "Namespace": Resource("Namespace", "/api/v1/namespaces", slim_namespace),
    # CoreDNS (controller.go podListFunc): finished pods never answer, so never list them.
    "Pod": Resource(
        "Pod",
        "/api/v1/pods",
        slim_pod,
        field_selector="status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown",
    ),
    # Gateway zones ([gateway] zones): watched only when configured, each at the newest
    # version the API server serves. Gateway API v1.5: GatewayClass, Gateway, HTTPRoute v1
    # (standard since v1.0; v1beta1 before), GRPCRoute v1 (since v1.1; v1alpha2 before),
    # ListenerSet v1 (new in v1.5: earlier releases had only the experimental XListenerSet of
    # another group), TLSRoute v1 (standard since v1.5; the experimental channel also serves
    # v1alpha3 and v1alpha2, older releases only those), TCPRoute/UDPRoute v1alpha2 (experimental;
    # v1 asked first so a release that promotes them is followed without a kdns change).
    **{
        kind: Resource(
            kind,
            f"{_GW}/{versions[0]}/{plural}",
            slim,
            optional=True,
            rbac="manifests/gateway/",
            fallbacks=tuple(f"{_GW}/{version}/{plural}" for version in versions[1:]),
        )
        for kind, plural, versions, slim in (
            ("GatewayClass", "gatewayclasses", ("v1", "v1beta1"), slim_gatewayclass),
            ("Gateway", "gateways", ("v1", "v1beta1"), slim_gateway),
            ("ListenerSet", "listenersets", ("v1",), slim_listenerset),
            ("HTTPRoute", "httproutes", ("v1", "v1beta1"), slim_httproute),
            ("GRPCRoute", "grpcroutes", ("v1", "v1alpha2"), slim_grpcroute),
            ("TLSRoute", "tlsroutes", ("v1", "v1alpha3", "v1alpha2"), slim_tlsroute),
            ("TCPRoute", "tcproutes", ("v1", "v1alpha2"), slim_tcproute),
            ("UDPRoute", "udproutes", ("v1", "v1alpha2"), slim_udproute),
        )
    },
    "Ingress": Resource(
        "Ingress",
        "/apis/networking.k8s.io/v1/ingresses",
        slim_ingress,
        optional=True,
        rbac="manifests/gateway/",
    ),
}

Query = list[tuple[str, str]]


class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped."""

    def __init__(self, base: float = 0.5, cap: float = 10.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


# CoreDNS's dns_programming_duration buckets: 1 ms doubling up to ~16 s... kept simple here.
PROGRAMMING_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
                       1.024, 2.048, 4.096, 8.192, 16.384, 32.768)  # fmt: skip


@dataclass
class Histogram:
    """Plain bucket counts; exported by kdns.metrics at scrape time."""

    buckets: tuple[float, ...] = PROGRAMMING_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(PROGRAMMING_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


@dataclass
class ReflectorStats:
    events: dict[str, int] = field(default_factory=dict)  # by event type
    lists: int = 0
    relists: int = 0  # after 410 Gone
    restarts: int = 0  # watch restarts after errors
    errors: int = 0


def _trigger_time(raw: Raw) -> float | None:
    stamp = (raw.get("metadata") or {}).get("annotations", {}).get(TRIGGER_TIME)
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _release_freed_memory() -> None:
    """Hand the page buffers a LIST freed back to the OS (glibc keeps freed heap otherwise,
    and the resident size would show every past LIST's peak). A no-op where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Listing:
    """One LIST's pages into the registry, each page consumed as it arrives: its slim objects
    are dropped (a Pod's IPs kept, the Pod tuple not) before the next page is parsed, and the
    memory they leave is reused by that page instead of staying as holes among what the
    registry keeps (at 50,000 pods, ~3 MiB after the first list and ~20 MiB after a relist,
    when every page was held until the end).

    - First list: nothing to be atomic with (the zone answers SERVFAIL until synced), so each
      page goes into the registry in its own batch.
    - Relist (after 410 Gone): each page is compared with what the registry holds (nothing else
      writes this kind while its watch is down; a reload's fresh registry is a copy) and only
      the differences are kept, then applied in one batch, so readers see the old set or the
      new one, never a gap.

    Either way, objects held before and not listed now are deleted at the end.
    """

    def __init__(self, registry: Registry, kind: str, *, relist: bool) -> None:
        self.kind = kind
        self.relist = relist
        self.unlisted = set(registry.keys(kind))  # held before, not listed (yet)
        self.changed: list[KubeObject] = []
        self.count = 0

    def page(self, registry: Registry, objects: list[KubeObject]) -> None:
        self.count += len(objects)
        kind, unlisted = self.kind, self.unlisted
        if self.relist:
            for obj in objects:
                key = obj.key
                unlisted.discard(key)
                if registry.current(kind, key) != obj:
                    self.changed.append(obj)
            return
        with registry.batch():
            for obj in objects:
                registry.upsert(obj)
                if unlisted:
                    unlisted.discard(obj.key)

    def finish(self, registry: Registry) -> None:
        changed, gone = self.changed, self.unlisted
        with registry.batch():
            for obj in changed:
                registry.upsert(obj)
            for key in gone:
                registry.delete(self.kind, key)
        if self.relist and (changed or gone):
            log.info(
                "%s: relist applied %d changes, %d deletions", self.kind, len(changed), len(gone)
            )


class Reflector:
    def __init__(
        self,
        resource: Resource,
        api_client: ApiClient,
        registry: Registry,
        *,
        page_size: int = 500,
        watch_timeout: int = 300,
        programming: dict[str, Histogram] | None = None,
    ) -> None:
        self.resource = resource
        self.kind = resource.kind
        self.path = resource.path  # the version asked for now (Resource.fallbacks)
        self._misses = 0  # versions answered 404 in a row
        self.api_client = api_client
        self.registry = registry
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.programming = programming
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        # Synced, or known to be absent (an optional resource the API does not serve).
        self.settled = asyncio.Event()
        self.absent = False
        self.stats = ReflectorStats()
        self.backoff = Backoff()
        self.absent_backoff = Backoff(base=1.0, cap=30.0)

    def _call(self, query: Query, timeout: aiohttp.ClientTimeout | None) -> Any:
        """GET the resource's collection: the request the generated list method would send
        (same path, query names and Accept), authenticated by the ApiClient (bearer token,
        refreshed by its exec/OIDC providers; client certificates through its session)."""
        if self.resource.field_selector:
            query.append(("fieldSelector", self.resource.field_selector))
        return self.api_client.call_api(
            self.path,
            "GET",
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )

    async def run(self) -> None:
        """Forever: list when needed, watch, recover. Cancel the task to stop."""
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
            except Gone:
                log.info(
                    "%s: resourceVersion %s expired (410): relisting",
                    self.kind,
                    self.resource_version,
                )
                self.stats.relists += 1
                self.resource_version = None
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if self.resource.optional and exc.status == 404 and self._older_version():
                    continue
                if self.resource.optional and exc.status in (403, 404):
                    await self._absent(exc)
                else:
                    await self._retry(exc)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                await self._retry(exc)

    async def _retry(self, exc: Exception) -> None:
        """Connection errors, 5xx, 429, a bad response: back off, keep serving."""
        self.stats.errors += 1
        self.stats.restarts += 1
        delay = self.backoff.next()
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.warning(
            "%s: %s: retrying in %.1fs (serving the last known state)",
            self.kind,
            exc or type(exc).__name__,
            delay,
        )
        await asyncio.sleep(delay)

    def _older_version(self) -> bool:
        """After a 404: ask for another version, True; every version missed in a row, False
        (absent; the next attempt starts from the newest). From the newest down, then round
        to the newest: a watch on an old version whose CRD upgrade dropped it (1.4's v1alpha2
        under 1.5's standard channel) moves to the new one at once instead of emptying the
        kind. A version change lists again (a relist swaps the objects in one batch)."""
        paths = self.resource.paths
        self._misses += 1
        if self._misses >= len(paths):
            self._misses = 0
            self.path = paths[0]
            return False
        index = paths.index(self.path) if self.path in paths else -1
        self.path = paths[(index + 1) % len(paths)]
        log.debug("%s: version not served; asking for %s", self.kind, self.path)
        self.resource_version = None
        return True

    async def _absent(self, exc: ApiError) -> None:
        """An optional resource the API does not serve (404: CRD not installed) or will not
        show us (403: no RBAC rule). Logged once per absence; objects held (the CRD was
        removed) go; settled, so readiness does not wait; retried with a slow backoff."""
        self.stats.errors += 1
        self.resource_version = None  # list again once it is back
        self._misses = 0  # (a 403 on an older version) the next round asks every version
        if not self.absent:
            self.absent = True
            if exc.status == 404:
                why = "not served by the API server (its CRD is not installed?)"
            else:
                why = f"forbidden (no RBAC rule: apply {self.resource.rbac or 'its RBAC'})"
            log.warning(
                "%s: %s; serving without it, retrying up to every %.0fs",
                self.kind,
                why,
                self.absent_backoff.cap,
            )
            if self.registry.keys(self.kind):
                self.registry.replace(self.kind, [])
        self.settled.set()
        await asyncio.sleep(self.absent_backoff.next())

    async def _request(
        self, query: Query, timeout: aiohttp.ClientTimeout | None = None
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._call(query, timeout)
        if response.status == 410:
            response.release()
            raise Gone()
        if response.status >= 300:
            body = (await response.text())[:200]
            retry = response.headers.get("Retry-After")
            response.release()
            raise ApiError(
                response.status, body.strip(), float(retry) if retry and retry.isdigit() else None
            )
        return response

    async def _list(self) -> None:
        """LIST every page into the registry (``_Listing``: page by page on the first list; a
        relist's differences in one batch), then let the allocator return what it freed.

        The cyclic GC is paused meanwhile: a LIST allocates hundreds of thousands of objects
        (parsed JSON, slim objects), which would trigger full collections that walk the whole
        heap while queries wait. What the list keeps lives as long as the process and is moved
        out of the collector's generations afterwards (CPython's gc.freeze recipe for
        pre-loaded state); what it drops is freed by reference counting, no cycles involved.
        """
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._list_pages()
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
            _release_freed_memory()

    async def _list_pages(self) -> None:
        started = time.monotonic()
        listing = _Listing(self.registry, self.kind, relist=self.synced.is_set())
        token: str | None = None
        while True:
            query: Query = [("limit", str(self.page_size))]
            if token:
                query.append(("continue", token))
            try:
                response = await self._request(query)
            except Gone:
                # The continue token expired mid-list: start over (client-go does the same).
                listing = _Listing(self.registry, self.kind, relist=listing.relist)
                token = None
                continue
            page = json.loads(await response.read())
            items = [o for raw in page.get("items") or () if (o := self._slim(raw)) is not None]
            meta = page.get("metadata") or {}
            del page
            listing.page(self.registry, items)
            del items
            token = meta.get("continue") or None
            if token is None:
                version = meta.get("resourceVersion")
                break
            await asyncio.sleep(0)  # let queries in between pages
        listing.finish(self.registry)
        self._misses = 0
        if self.path != self.resource.path:
            log.info("%s: watching %s (the API server serves no newer version)", self.kind, self.path)  # fmt: skip
        if self.absent:
            log.info("%s: now served by the API server", self.kind)
            self.absent = False
            self.absent_backoff.reset()
        # Only now: a LIST that failed to apply must be listed again, not resumed by a WATCH.
        self.resource_version = version
        self.stats.lists += 1
        self.backoff.reset()
        log.info(
            "%s: listed %d objects at resourceVersion %s in %.0f ms",
            self.kind,
            listing.count,
            self.resource_version,
            (time.monotonic() - started) * 1000,
        )
        self.synced.set()
        self.settled.set()

    async def _watch(self) -> None:
        """WATCH from resource_version until the server ends the stream."""
        timeout = int(self.watch_timeout * random.uniform(1.0, 1.5))  # spread reconnects
        query: Query = [("watch", "true")]
        if self.resource_version is not None:
            query.append(("resourceVersion", self.resource_version))
        query += [("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout))]
        response = await self._request(
            query, aiohttp.ClientTimeout(total=timeout + 30, sock_connect=10)
        )
        started = time.monotonic()
        events = 0
        try:
            async for line in lines(response.content):
                if line.strip():
                    if len(line) > BIG_EVENT:
                        with parsing():
                            event, obj = await asyncio.to_thread(self._read, line)
                    else:
                        event, obj = self._read(line)
                    await self._event(event, obj)
                    events += 1
                    self.backoff.reset()
        finally:
            response.release()
        if not events and time.monotonic() - started < 1.0:
            # A watch that ends at once without an event (a proxy closing streams, a server
            # ending early): back off rather than reconnect in a tight loop (client-go's
            # "very short watch" guard).
            await asyncio.sleep(self.backoff.next())

    def _read(self, line: bytes) -> tuple[Raw, KubeObject | None | ValueError]:
        """A watch line: the event, and the slim object of an ADDED/MODIFIED one (None: an
        object DNS does not serve, e.g. a pod that just finished; a ValueError: one the API
        accepted and kdns cannot use)."""
        event = json.loads(line)
        if event.get("type") not in ("ADDED", "MODIFIED"):
            return event, None
        try:
            return event, self.resource.slim(event.get("object") or {})
        except ValueError as exc:
            return event, exc

    async def _event(self, event: Raw, obj: KubeObject | None | ValueError) -> None:
        kind = event.get("type")
        raw = event.get("object") or {}
        self.stats.events[str(kind)] = self.stats.events.get(str(kind), 0) + 1
        if kind == "ERROR":
            if raw.get("code") == 410 or raw.get("reason") in ("Expired", "Gone"):
                raise Gone()
            raise ApiError(int(raw.get("code") or 500), str(raw.get("message") or raw))
        meta = raw.get("metadata") or {}
        version = meta.get("resourceVersion")
        if kind == "BOOKMARK":
            if version:
                self.resource_version = version
            return
        key = (meta.get("namespace") or "", meta.get("name") or "")
        registry = self.registry
        changed = False
        with registry.deferred():
            if kind == "DELETED":
                registry.delete(self.kind, key)
            elif kind in ("ADDED", "MODIFIED"):
                if isinstance(obj, ValueError):
                    log.warning("%s: ignoring an object the API sent: %s", self.kind, obj)
                    return  # nothing changed: the deferred block has nothing to render
                if obj is None:
                    registry.delete(self.kind, key)  # e.g. a pod that just finished
                else:
                    changed = registry.upsert(obj)
        await render(registry)
        if changed and obj is not None and not isinstance(obj, ValueError):
            self._record_programming(raw, obj)
        if version:
            self.resource_version = version

    def _slim(self, raw: Raw) -> KubeObject | None:
        try:
            return self.resource.slim(raw)
        except ValueError as exc:
            log.warning("%s: ignoring an object the API sent: %s", self.kind, exc)
            return None

    def _record_programming(self, raw: Raw, obj: KubeObject) -> None:
        if self.programming is None:
            return
        triggered = _trigger_time(raw)
        if triggered is None:
            return
        # CoreDNS's service_kind label: endpoint changes reprogram DNS of headless services;
        # for ClusterIP services only the endpoint names and PTRs move.
        service = None
        if isinstance(obj, EndpointSlice):
            service = self.registry.services.get((obj.namespace, obj.service))
        kind = (
            "headless_with_selector" if service is not None and service.headless else "cluster_ip"
        )
        histogram = self.programming.setdefault(kind, Histogram())
        # Rendered (a huge Service in slices) before this is called: served from now.
        histogram.observe(max(0.0, time.time() - triggered))
