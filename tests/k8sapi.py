"""A Kubernetes API server for tests that speaks the real HTTP list/watch protocol.

kdns learns the cluster through kubernetes_asyncio's real client. To test that path the way it
runs against a cluster, this server answers the same HTTP requests an API server answers, for
the resources kdns watches: core/v1 ``services``, ``pods``, ``namespaces`` and
discovery.k8s.io/v1 ``endpointslices``; and, when installed (``installed=`` / ``install()``,
as a CRD is), gateway.networking.k8s.io ``gateways``, ``httproutes``, ``grpcroutes`` (v1),
``tlsroutes`` (v1, v1alpha3, v1alpha2: ``serve()`` narrows the versions served, as an older
CRD does, and the others answer 404), ``tcproutes``/``udproutes`` (v1alpha2) and
networking.k8s.io/v1 ``ingresses``. A resource not installed
answers 404 on every path and is absent from discovery, as on a cluster without the CRD;
``uninstall()`` deletes its objects (DELETED events), ends its watches and turns it 404. The client gets a generated kubeconfig and cannot tell
the difference (within what is implemented here).

What it models, with the Kubernetes documentation's names ("API concepts" page):

- Resource versions: one global counter shared by every resource, like etcd's revision. Each
  add/modify/delete bumps it and stamps ``metadata.resourceVersion``; a list carries the counter
  at its snapshot.
- Efficient detection of changes: ``?watch=1`` streams one JSON event per line over a chunked
  response, replaying from ``resourceVersion`` and then live. A version older than the
  compaction point gets an ERROR event holding a 410 ``Expired`` Status, as the real watch does.
- Retrieving large results sets in chunks: ``limit``/``continue`` pages are served from one
  consistent snapshot; a continue token older than the compaction point gets HTTP 410.
- Watch bookmarks: with ``allowWatchBookmarks=true``, periodic and on-demand BOOKMARK events.
- Field and label selectors, including the watch rule that an object leaving the selector is
  sent as DELETED (how a pod moving to Succeeded disappears from a ``status.phase!=Succeeded``
  watch).

The server runs in its own thread with its own event loop, so it is independent of the test's
loop and can serve a ``kdns serve`` subprocess. Every hook is a plain method callable from any
other thread (including an async test's loop thread): it runs inside the server loop and waits
for completion.

    with K8sApi([namespace("default"), service("default", "web", "10.0.0.10")]) as api:
        kubeconfig = api.kubeconfig(tmp_path / "kubeconfig")
        api.add(pod("default", "web-1", "10.1.0.5"))
        api.compact()           # every resourceVersion so far is now too old
        api.cut_watches()       # drop every open watch mid-chunk
        api.count("list", "pods")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import concurrent.futures
import ipaddress
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "CORE",
    "GATEWAY_API",
    "INGRESS",
    "RESOURCES",
    "ApiError",
    "K8sApi",
    "RequestRecord",
    "Resource",
    "endpointslice",
    "gateway",
    "gatewayclass",
    "grpcroute",
    "httproute",
    "ingress",
    "listenerset",
    "namespace",
    "pod",
    "resource_for",
    "service",
    "route_status",
    "tcproute",
    "tlsroute",
]

JSON = dict[str, Any]
T = TypeVar("T")

# Query values the API server's boolean parameters accept (strconv.ParseBool).
_TRUE = frozenset(("1", "t", "T", "true", "TRUE", "True"))
# A real API server ends a watch without timeoutSeconds after a random 30-60 minutes
# (--min-request-timeout); tests that want an end pass timeoutSeconds.
DEFAULT_WATCH_TIMEOUT = 1800.0
_HOOK_TIMEOUT = 30.0


# --- resources -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One served resource: its URL plural, object kind and apiVersion."""

    plural: str
    kind: str
    api_version: str  # "v1" or "group/version", spelled as objects spell it: the stored one
    namespaced: bool = True
    # Every version of the group this resource can be served at (a CRD's spec.versions), the
    # stored one first; which of them are served is the server's choice (``serve()``).
    versions: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def all_versions(self) -> tuple[str, ...]:
        return self.versions or (self.api_version.rpartition("/")[2],)

    def group_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def key(self, namespace: str, name: str) -> str:
        # The etcd key suffix (/registry/<plural>/<ns>/<name>): lists and continue tokens are
        # ordered by it.
        return f"{namespace}/{name}" if self.namespaced else name


RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("services", "Service", "v1"),
        Resource("pods", "Pod", "v1"),
        Resource("namespaces", "Namespace", "v1", namespaced=False),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io/v1"),
        Resource(
            "gatewayclasses", "GatewayClass", "gateway.networking.k8s.io/v1", namespaced=False
        ),  # fmt: skip
        Resource("gateways", "Gateway", "gateway.networking.k8s.io/v1"),
        Resource("listenersets", "ListenerSet", "gateway.networking.k8s.io/v1"),
        Resource("httproutes", "HTTPRoute", "gateway.networking.k8s.io/v1"),
        Resource("grpcroutes", "GRPCRoute", "gateway.networking.k8s.io/v1"),
        # Gateway API v1.5: TLSRoute is v1 in the standard channel; the experimental channel
        # also serves v1alpha3 and v1alpha2, and older releases v1alpha2 (and v1alpha3) only.
        Resource(
            "tlsroutes",
            "TLSRoute",
            "gateway.networking.k8s.io/v1",
            versions=("v1", "v1alpha3", "v1alpha2"),
        ),
        Resource("tcproutes", "TCPRoute", "gateway.networking.k8s.io/v1alpha2"),
        Resource("udproutes", "UDPRoute", "gateway.networking.k8s.io/v1alpha2"),
        Resource("ingresses", "Ingress", "networking.k8s.io/v1"),
    )
}
# Installed by default: the four resources every cluster has that kdns always watches.
CORE = ("services", "pods", "namespaces", "endpointslices")
GATEWAY_API = (
    "gatewayclasses",
    "gateways",
    "listenersets",
    "httproutes",
    "grpcroutes",
    "tlsroutes",
    "tcproutes",
    "udproutes",
)
INGRESS = ("ingresses",)
_BY_NAME: dict[str, Resource] = {
    **RESOURCES,
    **{r.kind: r for r in RESOURCES.values()},
    **{r.kind.lower(): r for r in RESOURCES.values()},
}


def resource_for(kind_or_plural: str) -> Resource:
    """The resource for "Service", "service" or "services"; KeyError for anything else."""
    try:
        return _BY_NAME[kind_or_plural]
    except KeyError:
        raise KeyError(f"k8sapi serves no resource {kind_or_plural!r}") from None


def _object_key(resource: Resource, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return resource.key(meta.get("namespace") or "default", meta["name"])


@dataclass(frozen=True)
class Target:
    """What a resource URL addresses: a collection (name None) or one object."""

    resource: Resource
    namespace: str | None  # None: across all namespaces (or cluster-scoped)
    name: str | None
    api_version: str = ""  # the group/version the request named ("": the stored one)

    @property
    def version(self) -> str:
        return self.api_version or self.resource.api_version


def parse_target(path: str) -> Target | None:
    """Map /api/v1/[namespaces/NS/]PLURAL[/NAME] and /apis/G/V/... to a Target; else None."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group_version, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    ns: str | None = None
    # /api/v1/namespaces and /api/v1/namespaces/NAME are the Namespace resource itself.
    if len(rest) >= 3 and rest[0] == "namespaces":
        ns, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 2:
        return None
    res = RESOURCES.get(rest[0])
    if res is None or (ns is not None and not res.namespaced):
        return None
    if group_version not in {res.group_version(v) for v in res.all_versions}:
        return None
    return Target(res, ns, rest[1] if len(rest) == 2 else None, group_version)


# --- errors as the API server spells them ----------------------------------------------------

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(code: int, message: str, reason: str | None = None) -> JSON:
    """A metav1.Status, the body of every API error and of a watch ERROR event."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, ""),
        "code": code,
    }


class ApiError(Exception):
    """An error answer: HTTP status + Status body."""

    def __init__(self, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status_object(code, message, reason)

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        return _json_response(self.status, self.code, headers)


def _json_response(
    doc: Any, code: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_dumps(doc), status=code, content_type="application/json", headers=headers
    )


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _too_old(rv: int, oldest: int) -> ApiError:
    # The watch cache's wording (k8s.io/apiserver storage/cacher): clients match on reason
    # Expired / code 410, people read the message.
    return ApiError(410, f"too old resource version: {rv} ({oldest})", "Expired")


# --- selectors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldTerm:
    path: tuple[str, ...]
    value: str
    equal: bool


def parse_field_selector(text: str) -> tuple[FieldTerm, ...]:
    """``a.b=x,c!=y`` (also ``==``): terms ANDed. Any dotted path is accepted.

    The real API server only supports a few fields per resource (pods: status.phase,
    spec.nodeName, ...); accepting any keeps this server small and never rejects what kdns sends.
    """
    terms = []
    for raw in filter(None, (t.strip() for t in text.split(","))):
        for op in ("!=", "==", "="):
            name, found, value = raw.partition(op)
            if found:
                terms.append(FieldTerm(tuple(name.strip().split(".")), value.strip(), op != "!="))
                break
        else:
            raise ApiError(400, f'invalid field selector: "{raw}": no operator')
    return tuple(terms)


def _field_value(obj: Mapping[str, Any], path: Sequence[str]) -> str:
    # Fields are compared as strings; an absent field is "" (so phase!=Failed matches a pod
    # without status yet), booleans are "true"/"false" like Go's strconv.FormatBool.
    value: Any = obj
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class LabelTerm:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        return present if self.op == "exists" else not present


_SET_TERM = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def parse_label_selector(text: str) -> tuple[LabelTerm, ...]:
    """Equality (``k=v``, ``k==v``, ``k!=v``), set (``k in (a,b)``, ``k notin (a)``) and
    existence (``k``, ``!k``) terms, comma-separated and ANDed."""
    terms = []
    # Commas inside "in (a,b)" do not separate terms.
    for raw in filter(None, (t.strip() for t in re.split(r",(?![^()]*\))", text))):
        if m := _SET_TERM.match(raw):
            values = frozenset(v.strip() for v in m[3].split(",") if v.strip())
            terms.append(LabelTerm(m[1], m[2], values))
        elif "!=" in raw or "=" in raw:
            op = "!=" if "!=" in raw else "="
            key, _, value = raw.replace("==", "=").partition(op)
            terms.append(LabelTerm(key.strip(), op, frozenset((value.strip(),))))
        elif raw.startswith("!"):
            terms.append(LabelTerm(raw[1:].strip(), "!exists"))
        elif re.fullmatch(r"[^\s!=,()]+", raw):
            terms.append(LabelTerm(raw, "exists"))
        else:
            raise ApiError(400, f'unable to parse requirement: "{raw}"')
    return tuple(terms)


@dataclass(frozen=True)
class Filter:
    """Which objects a list or watch wants: a namespace and selectors."""

    namespace: str | None = None
    fields: tuple[FieldTerm, ...] = ()
    labels: tuple[LabelTerm, ...] = ()

    @classmethod
    def from_request(cls, target: Target, params: Mapping[str, str]) -> Filter:
        return cls(
            target.namespace,
            parse_field_selector(params.get("fieldSelector", "")),
            parse_label_selector(params.get("labelSelector", "")),
        )

    @property
    def everything(self) -> bool:
        return self.namespace is None and not self.fields and not self.labels

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not all((_field_value(obj, t.path) == t.value) == t.equal for t in self.fields):
            return False
        labels = meta.get("labels") or {}
        return all(t.matches(labels) for t in self.labels)


# --- store: objects, history, watchers -------------------------------------------------------


def _event_line(event_type: str, obj: Mapping[str, Any]) -> bytes:
    # One event per line: the "JSON stream" framing kubernetes clients split on.
    return _dumps({"type": event_type, "object": obj}) + b"\n"


def _with_rv(obj: JSON, rv: int) -> JSON:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def _strip_type(obj: Mapping[str, Any]) -> JSON:
    # Items of a typed list (ServiceList) carry no kind/apiVersion of their own; watch events do.
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


@dataclass(eq=False)
class Event:
    """One change in a resource's history: what a watch from an older version replays."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    obj: JSON  # DELETED: the last state, stamped with the deletion's resourceVersion
    prev: JSON | None  # the state before: selector transitions need it

    @cached_property
    def line(self) -> bytes:
        # Serialised once, shared by every watcher that receives the event unchanged.
        return _event_line(self.type, self.obj)


# Queued to a watcher instead of an event line: drop the connection, or end the stream cleanly.
CUT = None
END = b""


class Watcher:
    """One open watch stream: a filter and a queue of event lines for its handler to write."""

    def __init__(self, resource: Resource, flt: Filter, bookmarks: bool, api_version: str = "") -> None:  # fmt: skip
        self.resource = resource
        self.filter = flt
        self.bookmarks = bookmarks
        # The version the watch asked for: objects are converted to it (apiVersion), as the
        # API server converts a CRD's stored version for the request.
        self.api_version = api_version or resource.api_version
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        line = self._convert(event)
        if line is not None:
            self.queue.put_nowait(self._as_version(line))

    def _as_version(self, line: bytes) -> bytes:
        if self.api_version == self.resource.api_version:
            return line
        doc = json.loads(line)
        doc["object"]["apiVersion"] = self.api_version
        return _dumps(doc) + b"\n"

    def _convert(self, event: Event) -> bytes | None:
        # Selector transitions, as the watch cache does (cacheWatcher.convertToWatchEvent): an
        # object entering the selector is ADDED, one leaving it is DELETED with its previous
        # content and the event's resourceVersion.
        cur = event.type != "DELETED" and self.filter(event.obj)
        old = event.prev is not None and self.filter(event.prev)
        if cur and not old:
            return event.line if event.type == "ADDED" else _event_line("ADDED", event.obj)
        if cur and old:
            return event.line
        if old:
            if event.type == "DELETED":
                return event.line
            assert event.prev is not None
            return _event_line("DELETED", _with_rv(event.prev, event.rv))
        return None

    def added(self, obj: JSON) -> None:
        if self.filter(obj):
            self.queue.put_nowait(self._as_version(_event_line("ADDED", obj)))

    def bookmark(self, rv: int) -> None:
        # Watch bookmarks: "all events up to rv were sent", an object with only kind,
        # apiVersion and metadata.resourceVersion. Only for watches that asked
        # (allowWatchBookmarks); clients resume from it without relisting.
        if self.bookmarks:
            obj = {
                "kind": self.resource.kind,
                "apiVersion": self.api_version,
                "metadata": {"resourceVersion": str(rv)},
            }
            self.queue.put_nowait(_event_line("BOOKMARK", obj))

    def stop(self, abruptly: bool) -> None:
        self.queue.put_nowait(CUT if abruptly else END)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp(resource: Resource, obj: Mapping[str, Any], rv: int, prev: JSON | None) -> JSON:
    """A private copy of obj as the API server would store it."""
    stored: JSON = json.loads(json.dumps(obj))  # deep copy; proves it is plain JSON
    stored["kind"], stored["apiVersion"] = resource.kind, resource.api_version
    meta = stored.setdefault("metadata", {})
    if resource.namespaced:
        meta["namespace"] = meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    prev_meta = (prev or {}).get("metadata") or {}
    meta["uid"] = meta.get("uid") or prev_meta.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = (
        meta.get("creationTimestamp") or prev_meta.get("creationTimestamp") or _now()
    )
    meta["resourceVersion"] = str(rv)
    return stored


class Store:
    """Objects and their history, like etcd behind the API server. Used only in the server loop.

    History is a base state (as of the last compaction) plus an event log per resource, so a
    list page can be served as of any resourceVersion since the compaction point.
    """

    def __init__(self) -> None:
        self.rv = 1
        # Versions below this are compacted: watches from them and continue tokens made at them
        # get 410 Expired.
        self.compacted = 0
        self._live: dict[str, dict[str, JSON]] = {p: {} for p in RESOURCES}
        self._base: dict[str, dict[str, JSON]] = {p: {} for p in RESOURCES}
        self._log: dict[str, list[Event]] = {p: [] for p in RESOURCES}
        self._watchers: dict[str, set[Watcher]] = {p: set() for p in RESOURCES}
        self._snapshots: dict[tuple[str, int], list[tuple[str, JSON]]] = {}

    # changes

    def put(self, obj: Mapping[str, Any], create: bool | None = None) -> JSON:
        """Add (create=True), modify (False) or either (None); returns the stored object."""
        resource = resource_for(str(obj.get("kind")))
        live = self._live[resource.plural]
        key = _object_key(resource, obj)
        prev = live.get(key)
        if create is True and prev is not None:
            raise ValueError(f"{resource.kind} {key} already exists")
        if create is False and prev is None:
            raise KeyError(f"{resource.kind} {key} does not exist")
        self.rv += 1
        live[key] = stored = _stamp(resource, obj, self.rv, prev)
        self._publish(resource, Event(self.rv, "MODIFIED" if prev else "ADDED", key, stored, prev))
        return stored

    def remove(self, resource: Resource, namespace: str, name: str) -> JSON:
        key = resource.key(namespace or "default", name)
        prev = self._live[resource.plural].pop(key, None)
        if prev is None:
            raise KeyError(f"{resource.kind} {key} does not exist")
        self.rv += 1
        final = _with_rv(prev, self.rv)
        self._publish(resource, Event(self.rv, "DELETED", key, final, prev))
        return final

    def _publish(self, resource: Resource, event: Event) -> None:
        self._log[resource.plural].append(event)
        for watcher in self._watchers[resource.plural]:
            watcher.offer(event)

    def compact(self) -> int:
        """Forget history: every resourceVersion so far becomes too old.

        The bump models kube-apiserver's compactor, which writes a key (compact_rev_key) and so
        moves the global revision: a list after compaction returns a version a watch can start
        from, instead of one that is already expired.
        """
        self.rv += 1
        self.compacted = self.rv
        for plural, live in self._live.items():
            self._base[plural] = dict(live)
            self._log[plural] = []
        self._snapshots.clear()
        return self.compacted

    # reads

    def get(self, resource: Resource, namespace: str, name: str) -> JSON | None:
        return self._live[resource.plural].get(resource.key(namespace or "default", name))

    def snapshot(self, resource: Resource, rv: int) -> list[tuple[str, JSON]]:
        """(key, object) pairs as of rv, sorted by key; ApiError 410 when rv is compacted."""
        if rv < self.compacted:
            raise _too_old(rv, self.compacted)
        rv = min(rv, self.rv)
        cached = self._snapshots.get((resource.plural, rv))
        if cached is not None:
            return cached
        if rv == self.rv:
            state = self._live[resource.plural]
        else:
            state = dict(self._base[resource.plural])
            for event in self._log[resource.plural]:
                if event.rv > rv:
                    break
                if event.type == "DELETED":
                    state.pop(event.key, None)
                else:
                    state[event.key] = event.obj
        items = sorted(state.items())
        # A snapshot at a given rv never changes (every change bumps rv), so caching is safe;
        # the cache serves the pages of a paginated list without re-sorting.
        if len(self._snapshots) >= 16:
            del self._snapshots[next(iter(self._snapshots))]
        self._snapshots[(resource.plural, rv)] = items
        return items

    def since(self, resource: Resource, rv: int) -> list[Event]:
        log = self._log[resource.plural]
        return log[bisect.bisect_right(log, rv, key=lambda e: e.rv) :]

    # watchers

    def subscribe(self, watcher: Watcher, start: int | None) -> None:
        """Queue the replay for a watch starting at ``start``, then deliver live events.

        Synchronous on purpose: nothing can change between the replay and the subscription.
        """
        if start is None:
            # resourceVersion unset or "0": "Get State and Start at Most Recent": synthetic
            # ADDED events for every object that exists now, then changes.
            for _, obj in self.snapshot(watcher.resource, self.rv):
                watcher.added(obj)
        else:
            for event in self.since(watcher.resource, start):
                watcher.offer(event)
        self._watchers[watcher.resource.plural].add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers[watcher.resource.plural].discard(watcher)

    def watchers(self, resource: Resource | None = None) -> list[Watcher]:
        groups = [self._watchers[resource.plural]] if resource else self._watchers.values()
        return [w for group in groups for w in group]


# --- list and watch parameters ---------------------------------------------------------------


def _parse_int(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name, "")
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name}: invalid value {text!r}: not an integer") from None


def encode_continue(rv: int, start: str) -> str:
    # The real token's shape (storage/etcd3): base64url of {"v", "rv", "start"}, where start is
    # the key after the last one returned. Opaque to clients.
    doc = {"v": "meta.k8s.io/v1", "rv": rv, "start": start}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(doc["rv"]), str(doc["start"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ApiError(400, "continue key is not valid: incorrect encoded start") from None


_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, for tests to assert on (relists, parameters, auth)."""

    verb: str  # list | watch | get | discovery | other
    resource: str | None  # plural, None for non-resource paths
    namespace: str | None
    name: str | None
    path: str
    params: dict[str, str]
    authorization: str | None
    time: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    verb: str | None
    resource: str | None

    def applies(self, record: RequestRecord) -> bool:
        return (self.verb is None or self.verb == record.verb) and (
            self.resource is None or self.resource == record.resource
        )


def _verb(method: str, target: Target | None, params: Mapping[str, str]) -> str:
    if method != "GET":
        return "other"
    if target is None:
        return "discovery"
    if target.name is not None:
        return "get"
    return "watch" if params.get("watch") in _TRUE else "list"


# --- discovery -------------------------------------------------------------------------------


def _discovery(
    path: str,
    server_address: str,
    installed: Iterable[str] = CORE,
    versions_served: Mapping[str, Sequence[str]] | None = None,
) -> JSON | None:
    """Minimal /version, /api, /apis and group-version documents (kubectl and clients that
    discover need them; kubernetes_asyncio's generated API calls do not). Only installed
    resources are listed, at the versions served (``versions_served``: plural -> versions;
    default every version of the resource)."""
    served = [RESOURCES[plural] for plural in RESOURCES if plural in set(installed)]

    def versions_of(r: Resource) -> Sequence[str]:
        return (versions_served or {}).get(r.plural, r.all_versions)

    group_versions: dict[str, list[str]] = {}
    for r in served:
        if r.group:
            versions = group_versions.setdefault(r.group, [])
            for version in versions_of(r):
                if version not in versions:
                    versions.append(version)
    groups = [
        {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }
        for group, versions in group_versions.items()
    ]
    docs: dict[str, JSON] = {
        # Every field the client's VersionInfo model requires.
        "/version": {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-k8sapi",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        },
        "/api": {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        },
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups},
    }
    for gv in {r.group_version(v) for r in served for v in versions_of(r)}:
        docs["/api/v1" if gv == "v1" else f"/apis/{gv}"] = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "list", "watch"],
                }
                for r in served
                if gv in {r.group_version(v) for v in versions_of(r)}
            ],
        }
    return docs.get(path.rstrip("/") or "/")


# --- the HTTP server (lives in the server loop) ------------------------------------------------


class _Server:
    def __init__(self, host: str, bookmark_interval: float | None, watch_timeout: float) -> None:
        self.host = host
        self.port = 0
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.store = Store()
        self.installed: set[str] = set(CORE)
        # plural -> the versions served (a CRD of an older release serves fewer); absent:
        # every version of the resource.
        self.served: dict[str, tuple[str, ...]] = {}
        self.records: list[RequestRecord] = []
        self.delay = 0.0
        self.faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._ticker: asyncio.Task[None] | None = None

    # lifecycle

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that goes away cancels its watch handler at once, so
        # open-watch counts are exact. access_log=None: no line per request.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self.listen(port)
        if self.bookmark_interval:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_bookmarks())

    async def listen(self, port: int) -> None:
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Re-listening on the same port right after closing it must not hit TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        self.port = sock.getsockname()[1]
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.cut_watches(None)
        if self._runner is not None:
            await self._runner.cleanup()

    async def refuse_connections(self, refuse: bool) -> None:
        if refuse and self._site is not None:
            # An API server that went away: the port refuses connects and every established
            # connection (pooled keep-alive ones included) is reset.
            await self._site.stop()
            self._site = None
            self.cut_watches(None)
            assert self._runner is not None and self._runner.server is not None
            for conn in self._runner.server.connections:
                if conn.transport is not None:
                    conn.transport.abort()
        elif not refuse and self._site is None:
            await self.listen(self.port)

    # hooks

    def cut_watches(self, resource: Resource | None, abruptly: bool = True) -> int:
        watchers = self.store.watchers(resource)
        for watcher in watchers:
            self.store.unsubscribe(watcher)
            watcher.stop(abruptly)
        return len(watchers)

    def install(self, plurals: Iterable[str]) -> None:
        self.installed.update(resource_for(p).plural for p in plurals)

    def serve(self, plural: str, versions: Sequence[str]) -> None:
        """The CRD now serves only ``versions`` (an older or newer release applied): the other
        versions' paths answer 404 and their open watches end."""
        resource = resource_for(plural)
        unknown = set(versions) - set(resource.all_versions)
        if unknown:
            raise ValueError(f"{resource.plural} has no version {sorted(unknown)}")
        self.served[resource.plural] = tuple(versions)
        gone = {resource.group_version(v) for v in resource.all_versions if v not in versions}
        for watcher in self.store.watchers(resource):
            if watcher.api_version in gone:
                self.store.unsubscribe(watcher)
                watcher.stop(abruptly=False)

    def uninstall(self, plurals: Iterable[str]) -> None:
        """A CRD deleted: its objects go (DELETED events), its watches end, paths turn 404."""
        for plural in plurals:
            resource = resource_for(plural)
            for _, obj in list(self.store.snapshot(resource, self.store.rv)):
                meta = obj["metadata"]
                self.store.remove(resource, meta.get("namespace") or "", meta["name"])
            self.cut_watches(resource, abruptly=False)
            self.installed.discard(resource.plural)

    def send_bookmark(self, resource: Resource | None) -> int:
        watchers = self.store.watchers(resource)
        for watcher in watchers:
            watcher.bookmark(self.store.rv)
        return sum(w.bookmarks for w in watchers)

    async def _tick_bookmarks(self) -> None:
        assert self.bookmark_interval
        while True:
            await asyncio.sleep(self.bookmark_interval)
            self.send_bookmark(None)

    # requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.rel_url.query)
        target = parse_target(request.path)
        record = RequestRecord(
            verb=_verb(request.method, target, params),
            resource=target.resource.plural if target else None,
            namespace=target.namespace if target else None,
            name=target.name if target else None,
            path=request.path,
            params=params,
            authorization=request.headers.get("Authorization"),
        )
        self.records.append(record)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        try:
            if fault := self._take_fault(record):
                return fault
            if request.method != "GET":
                raise ApiError(405, f"the server does not allow this method: {request.method}")
            if target is not None and target.resource.plural not in self.installed:
                raise ApiError(404, "the server could not find the requested resource")
            if target is not None and not self.serves(target):
                # A version the CRD does not serve: the API server has no such path.
                raise ApiError(404, "the server could not find the requested resource")
            if target is None:
                doc = _discovery(
                    request.path, f"{self.host}:{self.port}", self.installed, self.served
                )
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json_response(doc)
            if target.name is not None:
                return self._get(target)
            if record.verb == "watch":
                return await self._watch(request, target, params)
            return self._list(target, params)
        except ApiError as err:
            return err.response()

    def _take_fault(self, record: RequestRecord) -> web.Response | None:
        for fault in self.faults:
            if fault.applies(record):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                message = f"k8sapi: injected failure {fault.status}"
                return ApiError(fault.status, message).response(headers)
        return None

    def serves(self, target: Target) -> bool:
        """The version ``target`` names is one the resource is served at."""
        resource = target.resource
        served = self.served.get(resource.plural, resource.all_versions)
        return target.version in {resource.group_version(v) for v in served}

    def _get(self, target: Target) -> web.Response:
        assert target.name is not None
        obj = self.store.get(target.resource, target.namespace or "", target.name)
        if obj is None:
            raise ApiError(404, f'{target.resource.plural} "{target.name}" not found')
        return _json_response({**obj, "apiVersion": target.version})

    def _list_rv(self, params: Mapping[str, str]) -> int:
        """The snapshot a list without continue is served from ("Resource versions")."""
        rv = _parse_int(params, "resourceVersion")
        current = self.store.rv
        if not rv:  # unset: most recent; "0": any version, and the newest is one
            return current
        if rv > current:
            raise ApiError(504, f"Too large resource version: {rv}, current: {current}")
        if params.get("resourceVersionMatch") == "Exact":
            if rv < self.store.compacted:
                raise ApiError(410, "The resourceVersion for the provided list is too old.")
            return rv
        return current  # NotOlderThan (the default for a set version): the newest qualifies

    def _list(self, target: Target, params: Mapping[str, str]) -> web.Response:
        flt = Filter.from_request(target, params)
        limit = _parse_int(params, "limit") or 0
        token = params.get("continue", "")
        if token:
            if params.get("resourceVersion"):
                raise ApiError(
                    400, "specifying resource version is not allowed when using continue"
                )
            rv, start = decode_continue(token)
            if rv < self.store.compacted:
                raise ApiError(410, _CONTINUE_EXPIRED, "Expired")
        else:
            rv, start = self._list_rv(params), ""
        page, more, remaining = _page(self.store.snapshot(target.resource, rv), flt, start, limit)
        meta: JSON = {"resourceVersion": str(rv)}
        if more:
            # The next page starts just after the last key returned, at the same snapshot.
            meta["continue"] = encode_continue(rv, page[-1][0] + "\x00")
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        return _json_response(
            {
                "kind": target.resource.list_kind,
                "apiVersion": target.version,
                "metadata": meta,
                "items": [_strip_type(obj) for _, obj in page],
            }
        )

    async def _watch(
        self, request: web.Request, target: Target, params: Mapping[str, str]
    ) -> web.StreamResponse:
        flt = Filter.from_request(target, params)
        start = _parse_int(params, "resourceVersion") or None  # "0" and unset: current state
        timeout = float(_parse_int(params, "timeoutSeconds") or self.watch_timeout)
        bookmarks = params.get("allowWatchBookmarks") in _TRUE
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)  # headers go out now, as the API server's do
        if start is not None and start < self.store.compacted:
            # Efficient detection of changes: a watch from a compacted version is answered
            # 200 + one ERROR event holding a 410 Expired Status, then the end of the stream.
            error = _too_old(start, self.store.compacted).status
            await response.write(_event_line("ERROR", error))
            await response.write_eof()
            return response
        watcher = Watcher(target.resource, flt, bookmarks, target.version)
        self.store.subscribe(watcher, start)
        try:
            cut = await self._pump(watcher, response, timeout)
        except ConnectionError:
            return response  # the client went away
        finally:
            self.store.unsubscribe(watcher)
        if cut:
            _reset_mid_chunk(request)
        else:
            await response.write_eof()  # timeoutSeconds elapsed: a clean end, like the API
        return response

    async def _pump(self, watcher: Watcher, response: web.StreamResponse, timeout: float) -> bool:
        """Write queued event lines, one chunk each, until the timeout. True when cut."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                line = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                break
            if line is CUT:
                return True
            if line == END:
                break
            await response.write(line)
        return False


Items = list[tuple[str, JSON]]


def _page(items: Items, flt: Filter, start: str, limit: int) -> tuple[Items, bool, int | None]:
    """One page of a sorted snapshot: up to ``limit`` matches from the first key >= start.

    Returns (page, more, remainingItemCount). Like etcd3 pagination it seeks to the key and scans
    only as far as the page needs. remainingItemCount is known only without selectors (the real
    API leaves it unset when a selector is given).
    """
    first = bisect.bisect_left(items, start, key=itemgetter(0))
    if flt.everything:
        end = first + limit if limit > 0 else len(items)
        remaining = len(items) - end
        return items[first:end], remaining > 0, remaining if remaining > 0 else None
    page: Items = []
    for item in itertools.islice(items, first, None):
        if flt(item[1]):
            if 0 < limit == len(page):
                return page, True, None
            page.append(item)
    return page, False, None


def _reset_mid_chunk(request: web.Request) -> None:
    """End a watch the hard way: a chunk header promising more than follows, then a reset.

    This is what a client sees when the API server or a proxy in between dies mid-write.
    """
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.write(b"400\r\n" + b'{"type":"MODIFIED","object":{"kind":')
        transport.abort()


# --- the public handle (any thread) ----------------------------------------------------------


class K8sApi:
    """A Kubernetes API test server on 127.0.0.1, in a background thread; a context manager.

    All methods are safe to call from any thread except the server's own; each runs in the
    server loop and returns when done.
    """

    def __init__(
        self,
        objects: Iterable[Mapping[str, Any]] = (),
        *,
        bookmark_interval: float | None = 1.0,
        watch_timeout: float = DEFAULT_WATCH_TIMEOUT,
        token: str = "k8sapi-test-token",
        host: str = "127.0.0.1",
        installed: Iterable[str] = CORE,
    ) -> None:
        self.token = token
        self._initial = list(objects)
        self._server = _Server(host, bookmark_interval, watch_timeout)
        self._server.installed = {resource_for(p).plural for p in installed}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> K8sApi:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="k8sapi", daemon=True)
        self._thread.start()
        self._await(self._server.start())
        self.load(self._initial)
        return self

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            self._await(self._server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_HOOK_TIMEOUT)
            self._loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> K8sApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for this server (plain HTTP, a bearer token user); return path."""
        path = Path(path)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "k8sapi", "cluster": {"server": self.url}}],
            "users": [{"name": "k8sapi", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "k8sapi",
                    "context": {"cluster": "k8sapi", "user": "k8sapi", "namespace": "default"},
                }
            ],
            "current-context": "k8sapi",
        }
        path.write_text(json.dumps(doc, indent=2))  # JSON is YAML: any kubeconfig loader reads it
        return path

    # marshalling into the server loop

    def _check_thread(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("K8sApi is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("K8sApi hooks block; do not call them from the server loop")
        return self._loop

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._check_thread()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(_HOOK_TIMEOUT)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = self._check_thread()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller's thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(_HOOK_TIMEOUT)

    # objects

    def add(self, obj: Mapping[str, Any]) -> JSON:
        """Create obj (ValueError if it exists); returns the stored copy with its
        resourceVersion, uid and creationTimestamp."""
        return self._call(self._server.store.put, obj, True)

    def modify(self, obj: Mapping[str, Any]) -> JSON:
        """Replace the object with obj's kind/namespace/name (KeyError if missing)."""
        return self._call(self._server.store.put, obj, False)

    def apply(self, obj: Mapping[str, Any]) -> JSON:
        """Add or modify."""
        return self._call(self._server.store.put, obj, None)

    def load(self, objs: Iterable[Mapping[str, Any]]) -> int:
        """Add-or-modify many objects in one call to the server loop (fast for big clusters);
        returns the resourceVersion after the last."""
        items = list(objs)

        def put_all() -> int:
            for obj in items:
                self._server.store.put(obj)
            return self._server.store.rv

        return self._call(put_all)

    def install(self, *kinds: str) -> None:
        """Install resources (a CRD applied): from now on they are listed, watched and in
        discovery."""
        self._call(self._server.install, kinds)

    def uninstall(self, *kinds: str) -> None:
        """Remove resources (a CRD deleted): objects deleted, watches ended, paths 404."""
        self._call(self._server.uninstall, kinds)

    def serve(self, kind: str, *versions: str) -> None:
        """Serve ``kind`` at these versions only (its CRD from another Gateway API release:
        ``serve("tlsroutes", "v1alpha2")`` is TLSRoute before v1.5); every other version of it
        answers 404 and its watches end. Objects stay (one storage, as a CRD's)."""
        self._call(self._server.serve, kind, versions)

    def delete(self, kind: str, namespace: str, name: str) -> JSON:
        """Delete (KeyError if missing); returns the final object with the deletion's
        resourceVersion. kind is "Service", "service" or "services"; namespace is ignored for
        namespaces."""
        return self._call(self._server.store.remove, resource_for(kind), namespace, name)

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self._call(self._server.store.get, resource_for(kind), namespace, name)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self._call(lambda: self._server.store.rv)

    # protocol hooks

    def compact(self) -> int:
        """Make every resourceVersion so far too old (watch: ERROR 410; continue: HTTP 410).
        Returns the new oldest valid version, which is also the current one."""
        return self._call(self._server.store.compact)

    def cut_watches(self, kind: str | None = None) -> int:
        """Drop open watch streams (all, or one resource's) mid-chunk; returns how many."""
        resource = resource_for(kind) if kind else None
        return self._call(self._server.cut_watches, resource)

    def end_watches(self, kind: str | None = None) -> int:
        """End open watch streams cleanly, as when timeoutSeconds elapses (a client should
        re-watch from its last version without relisting); returns how many."""
        resource = resource_for(kind) if kind else None
        return self._call(self._server.cut_watches, resource, False)

    def send_bookmark(self, kind: str | None = None) -> int:
        """A BOOKMARK at the current version now, to watches that allow bookmarks; returns how
        many got one."""
        resource = resource_for(kind) if kind else None
        return self._call(self._server.send_bookmark, resource)

    def refuse_connections(self, refuse: bool = True) -> None:
        """True: close the listener and reset every connection, so connects fail
        (ECONNREFUSED). False: listen again on the same port."""
        self._await(self._server.refuse_connections(refuse))

    def delay(self, seconds: float) -> None:
        """Hold every later request (watches: before their headers) this long; 0 to stop."""
        self._call(setattr, self._server, "delay", float(seconds))

    def fail_next(
        self,
        status: int,
        n: int = 1,
        *,
        retry_after: float | None = None,
        verb: str | None = None,
        kind: str | None = None,
    ) -> None:
        """The next n requests (optionally only this verb and/or resource) get HTTP ``status``
        with a Status body. 429 gets ``Retry-After: 1`` unless retry_after says otherwise, like
        API Priority and Fairness."""
        if retry_after is None and status == 429:
            retry_after = 1
        resource = resource_for(kind).plural if kind else None
        fault = _Fault(status, n, retry_after, verb, resource)
        self._call(self._server.faults.append, fault)

    # observations

    def requests(self, verb: str | None = None, kind: str | None = None) -> list[RequestRecord]:
        """Requests so far, oldest first, optionally only one verb and/or resource."""
        plural = resource_for(kind).plural if kind else None
        records: list[RequestRecord] = self._call(list, self._server.records)
        return [
            r
            for r in records
            if (verb is None or r.verb == verb) and (plural is None or r.resource == plural)
        ]

    def queries(self, verb: str | None = None, kind: str | None = None) -> list[dict[str, str]]:
        """The query parameters of each request (same filters as requests())."""
        return [r.params for r in self.requests(verb, kind)]

    def count(self, verb: str, kind: str | None = None) -> int:
        """How many requests of this verb (list, watch, get, ...) for this resource."""
        return len(self.requests(verb, kind))

    def counts(self) -> Counter[tuple[str, str | None]]:
        """Requests per (verb, resource plural)."""
        return Counter((r.verb, r.resource) for r in self.requests())

    def clear_requests(self) -> None:
        self._call(self._server.records.clear)

    def watching(self, kind: str | None = None) -> int:
        """Open watch streams now (all, or one resource's)."""
        resource = resource_for(kind) if kind else None
        return self._call(lambda: len(self._server.store.watchers(resource)))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll predicate (e.g. ``lambda: api.watching("pods") == 1``) without blocking the
        caller's loop; TimeoutError when it stays false."""
        deadline = time.monotonic() + timeout
        while not predicate():
            _check_deadline(deadline, timeout)
            await asyncio.sleep(0.02)

    def wait_until_sync(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """wait_until for synchronous tests (e.g. with kdns running as a subprocess); it blocks,
        so never call it from a loop that runs the client being waited for."""
        deadline = time.monotonic() + timeout
        while not predicate():
            _check_deadline(deadline, timeout)
            time.sleep(0.02)


def _check_deadline(deadline: float, timeout: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"condition not met within {timeout}s")


# --- object factories (raw API dicts, camelCase, as the API server returns them) --------------

PortSpec = int | tuple[str, int] | tuple[str, int, str] | Mapping[str, Any]


def _port(spec: PortSpec) -> JSON:
    """80 -> {"port": 80, "protocol": "TCP"}; ("http", 80[, "UDP"]) adds name and protocol."""
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, int):
        return {"port": spec, "protocol": "TCP"}
    name, number, *protocol = spec
    return {"name": name, "port": number, "protocol": protocol[0] if protocol else "TCP"}


def _metadata(ns: str | None, name: str, labels: Mapping[str, str] | None) -> JSON:
    meta: JSON = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = dict(labels)
    return meta


def namespace(name: str, labels: Mapping[str, str] | None = None) -> JSON:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": _metadata(None, name, labels),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def service(
    ns: str,
    name: str,
    cluster_ip: str | Sequence[str] | None = None,
    ports: Iterable[PortSpec] = (),
    *,
    headless: bool = False,
    type: str = "ClusterIP",
    external_name: str | None = None,
    external_ips: Sequence[str] = (),
    lb_ips: Sequence[str] = (),
    publish_not_ready: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JSON:
    """A Service. cluster_ip may be a list (dual-stack: spec.clusterIPs); headless sets
    clusterIP "None"; type="ExternalName" with external_name makes a CNAME service."""
    spec: JSON = {"type": type, "ports": [_port(p) for p in ports]}
    if headless:
        spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
    elif cluster_ip:
        ips = [cluster_ip] if isinstance(cluster_ip, str) else list(cluster_ip)
        spec["clusterIP"], spec["clusterIPs"] = ips[0], ips
        spec["ipFamilies"] = [_family(ip) for ip in ips]
    if external_name is not None:
        spec["externalName"] = external_name
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    status: JSON = {"loadBalancer": {}}
    if lb_ips:
        status["loadBalancer"]["ingress"] = [{"ip": ip} for ip in lb_ips]
    metadata = _metadata(ns, name, labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }


def _family(ip: str) -> str:
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


# (ip,), (ip, ready), (ip, ready, hostname) or (ip, ready, hostname, pod name); or just "ip".
AddressSpec = str | tuple[Any, ...]


def _endpoint(spec: AddressSpec, ns: str) -> JSON:
    fields = (spec,) if isinstance(spec, str) else tuple(spec)
    ip, ready, hostname, pod_name = fields + (None,) * (4 - len(fields))
    endpoint: JSON = {
        "addresses": [ip],
        "conditions": {"ready": True if ready is None else bool(ready)},
    }
    if hostname:
        endpoint["hostname"] = hostname
    if pod_name:
        endpoint["targetRef"] = {"kind": "Pod", "namespace": ns, "name": pod_name}
    return endpoint


def endpointslice(
    ns: str,
    name: str,
    service: str,
    addresses: Iterable[AddressSpec] = (),
    ports: Iterable[PortSpec] = (),
    *,
    address_type: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> JSON:
    """An EndpointSlice of ``service`` (label kubernetes.io/service-name). address_type
    defaults from the first address (IPv4 when there is none)."""
    endpoints = [_endpoint(a, ns) for a in addresses]
    if address_type is None:
        first = endpoints[0]["addresses"][0] if endpoints else "0.0.0.0"
        address_type = _family(first)
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": _metadata(ns, name, {"kubernetes.io/service-name": service, **(labels or {})}),
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [_port(p) for p in ports],
    }


def pod(
    ns: str,
    name: str,
    ip: str | Sequence[str] | None,
    phase: str = "Running",
    *,
    hostname: str | None = None,
    subdomain: str | None = None,
    host_network: bool = False,
    node: str = "node-1",
    labels: Mapping[str, str] | None = None,
) -> JSON:
    """A Pod; ip may be a list (dual-stack status.podIPs) or None (not started yet)."""
    spec: JSON = {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    if host_network:
        spec["hostNetwork"] = True
    status: JSON = {"phase": phase}
    if ip:
        ips = [ip] if isinstance(ip, str) else list(ip)
        status["podIP"], status["podIPs"] = ips[0], [{"ip": i} for i in ips]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": _metadata(ns, name, labels),
        "spec": spec,
        "status": status,
    }


# --- Gateway API and Ingress ---------------------------------------------------------------------

# (name, hostname or None[, allowedRoutes namespaces "from"]) or just a listener name.
ListenerSpec = str | tuple[Any, ...]
# A listener's port when the spec does not give one.
_PORTS = {"HTTP": 80, "HTTPS": 443, "TLS": 443, "TCP": 1883, "UDP": 53}
# The controller the route helpers write status.parents entries as (GatewayClass "eg" runs it).
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"


def _listener(spec: ListenerSpec) -> JSON:
    """ "name" or (name, hostname, allowedRoutes from, protocol, port, kinds): HTTPS on 443
    from All namespaces unless given."""
    fields = (spec,) if isinstance(spec, str) else tuple(spec)
    name, hostname, allowed, protocol, port, kinds = fields + (None,) * (6 - len(fields))
    protocol = protocol or "HTTPS"
    listener: JSON = {"name": name, "port": port or _PORTS.get(protocol, 443), "protocol": protocol}
    if hostname:
        listener["hostname"] = hostname
    if isinstance(allowed, Mapping):  # {"from": "Selector", "selector": {...}}
        listener["allowedRoutes"] = {"namespaces": dict(allowed)}
    else:
        listener["allowedRoutes"] = {"namespaces": {"from": allowed or "All"}}
    if kinds:
        listener["allowedRoutes"]["kinds"] = [{"kind": kind} for kind in kinds]
    return listener


def gateway(
    ns: str,
    name: str,
    addresses: Sequence[str] = (),
    listeners: Iterable[ListenerSpec] = ("https",),
    *,
    hostnames: Sequence[str] = (),
    gateway_class: str = "eg",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    allowed_listeners: str | None = None,
) -> JSON:
    """A gateway.networking.k8s.io/v1 Gateway with status.addresses (IPs, then Hostname
    entries). Listeners allow routes from every namespace unless the spec says otherwise."""
    status_addresses = [{"type": "IPAddress", "value": ip} for ip in addresses]
    status_addresses += [{"type": "Hostname", "value": h} for h in hostnames]
    metadata = _metadata(ns, name, labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: JSON = {"gatewayClassName": gateway_class, "listeners": [_listener(x) for x in listeners]}
    if allowed_listeners:
        spec["allowedListeners"] = {"namespaces": {"from": allowed_listeners}}
    return {
        "kind": "Gateway",
        "apiVersion": "gateway.networking.k8s.io/v1",
        "metadata": metadata,
        "spec": spec,
        "status": {"addresses": status_addresses},
    }


def gatewayclass(name: str = "eg", controller: str = CONTROLLER) -> JSON:
    return {
        "kind": "GatewayClass",
        "apiVersion": "gateway.networking.k8s.io/v1",
        "metadata": _metadata(None, name, None),
        "spec": {"controllerName": controller},
    }


def _condition(kind: str, ok: bool, reason: str, generation: int) -> JSON:
    return {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "observedGeneration": generation,
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def listenerset(
    ns: str,
    name: str,
    parent: tuple[str, str],
    listeners: Iterable[ListenerSpec],
    *,
    accepted: bool | None = True,
    rejected: Iterable[str] = (),
    generation: int = 1,
    observed: int | None = None,
    annotations: Mapping[str, str] | None = None,
) -> JSON:
    """A gateway.networking.k8s.io/v1 ListenerSet (Gateway API 1.5) of ``parent`` (ns, name),
    with the status its Gateway's controller writes (ListenerSetStatus): Accepted and
    Programmed conditions (``accepted=False``: NotAllowed; None: no status at all) observed at
    ``observed`` (default: ``generation``), and one ListenerEntryStatus per listener, Accepted
    unless its name is in ``rejected`` (then Conflicted, as a listener clashing with one of the
    Gateway's)."""
    specs = [_listener(x) for x in listeners]
    metadata = _metadata(ns, name, None)
    metadata["generation"] = generation
    if annotations:
        metadata["annotations"] = dict(annotations)
    obj: JSON = {
        "kind": "ListenerSet",
        "apiVersion": "gateway.networking.k8s.io/v1",
        "metadata": metadata,
        "spec": {"parentRef": {"namespace": parent[0], "name": parent[1]}, "listeners": specs},
    }
    if accepted is None:
        return obj
    seen = generation if observed is None else observed
    refused = set(rejected)
    obj["status"] = {
        "conditions": [
            _condition("Accepted", accepted, "Accepted" if accepted else "NotAllowed", seen),
            _condition("Programmed", accepted, "Programmed" if accepted else "Invalid", seen),
        ],
        "listeners": [
            {
                "name": spec["name"],
                "port": spec["port"],
                "attachedRoutes": 0,
                "supportedKinds": [],
                "conditions": [
                    _condition("Accepted", spec["name"] not in refused, "Accepted", seen),
                    _condition("Conflicted", spec["name"] in refused, "HostnameConflict", seen),
                ],
            }
            for spec in specs
        ]
        if accepted
        else [],
    }
    return obj


# "name", ("ns", "name"), ("ns", "name", "sectionName") or ("ns", "name", "sectionName", port);
# a dict is used as the parentRef itself.
ParentSpec = str | tuple[Any, ...] | Mapping[str, Any]


def _parent(spec: ParentSpec) -> JSON:
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, str):
        return {"name": spec}
    ref: JSON = {"namespace": spec[0], "name": spec[1]}
    if len(spec) > 2 and spec[2]:
        ref["sectionName"] = spec[2]
    if len(spec) > 3 and spec[3]:
        ref["port"] = spec[3]
    return ref


def route_status(
    parents: Iterable[ParentSpec],
    *,
    accepted: bool = True,
    generation: int = 1,
    controller: str = CONTROLLER,
) -> JSON:
    """status.parents as a Gateway controller writes it: one entry per parent, Accepted and
    ResolvedRefs conditions observed at ``generation``."""
    status = "True" if accepted else "False"
    reason = "Accepted" if accepted else "NotAllowedByListeners"
    return {
        "parents": [
            {
                "parentRef": _parent(p),
                "controllerName": controller,
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": status,
                        "reason": reason,
                        "observedGeneration": generation,
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    },
                    {
                        "type": "ResolvedRefs",
                        "status": "True",
                        "reason": "ResolvedRefs",
                        "observedGeneration": generation,
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    },
                ],
            }  # fmt: skip
            for p in parents
        ]
    }


def _route(
    kind: str,
    api_version: str,
    ns: str,
    name: str,
    hostnames: Sequence[str],
    parents: Iterable[ParentSpec],
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    accepted: bool | None = True,
) -> JSON:
    """A route, with status.parents saying each parent accepted it (``accepted=False``: each
    rejected it; None: no status, as from a controller that never writes one)."""
    parents = list(parents)
    metadata = _metadata(ns, name, labels)
    metadata["generation"] = 1
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: JSON = {"parentRefs": [_parent(p) for p in parents]}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    route: JSON = {"kind": kind, "apiVersion": api_version, "metadata": metadata, "spec": spec}
    if accepted is not None:
        route["status"] = route_status(parents, accepted=accepted)
    return route


def httproute(
    ns: str,
    name: str,
    hostnames: Sequence[str] = (),
    parents: Iterable[ParentSpec] = (),
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    accepted: bool | None = True,
) -> JSON:
    route = _route(
        "HTTPRoute", "gateway.networking.k8s.io/v1", ns, name, hostnames, parents, labels,
        annotations, accepted,
    )  # fmt: skip
    route["spec"]["rules"] = [{"backendRefs": [{"name": name, "port": 80}]}]
    return route


def grpcroute(
    ns: str,
    name: str,
    hostnames: Sequence[str] = (),
    parents: Iterable[ParentSpec] = (),
    *,
    accepted: bool | None = True,
) -> JSON:
    return _route(
        "GRPCRoute", "gateway.networking.k8s.io/v1", ns, name, hostnames, parents, None, None,
        accepted,
    )  # fmt: skip


def tlsroute(
    ns: str,
    name: str,
    hostnames: Sequence[str] = (),
    parents: Iterable[ParentSpec] = (),
    *,
    accepted: bool | None = True,
) -> JSON:
    return _route(
        "TLSRoute", "gateway.networking.k8s.io/v1alpha2", ns, name, hostnames, parents, None,
        None, accepted,
    )  # fmt: skip


def tcproute(
    ns: str,
    name: str,
    parents: Iterable[ParentSpec] = (),
    *,
    annotations: Mapping[str, str] | None = None,
    kind: str = "TCPRoute",
    accepted: bool | None = True,
) -> JSON:
    """A TCPRoute (``kind="UDPRoute"``: a UDPRoute): no hostnames of its own."""
    return _route(
        kind, "gateway.networking.k8s.io/v1alpha2", ns, name, (), parents, None, annotations,
        accepted,
    )  # fmt: skip


def ingress(
    ns: str,
    name: str,
    hosts: Sequence[str],
    lb_ips: Sequence[str] = (),
    lb_hostnames: Sequence[str] = (),
    *,
    labels: Mapping[str, str] | None = None,
    ingress_class: str = "nginx",
    annotations: Mapping[str, str] | None = None,
) -> JSON:
    """A networking.k8s.io/v1 Ingress, one rule per host, with its load balancer status."""
    entries: list[JSON] = [{"ip": ip} for ip in lb_ips]
    entries += [{"hostname": h} for h in lb_hostnames]
    backend = {"service": {"name": name, "port": {"number": 80}}}
    return {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {
            **_metadata(ns, name, labels),
            **({"annotations": dict(annotations)} if annotations else {}),
        },
        "spec": {
            "ingressClassName": ingress_class,
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
                for host in hosts
            ],
        },
        "status": {"loadBalancer": {"ingress": entries}},
    }
