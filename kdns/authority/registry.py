"""The registry: cluster objects in, pre-rendered answers out.

Write side (used by every source: API watch, manifest files, demo): ``upsert``, ``delete``,
``replace`` (an atomic relist), grouped by ``batch()``. Each object belongs to an *owner*, the
unit that renders together: a Service and its EndpointSlices, a Namespace, a Pod (verified
mode), a zone apex. When an owner changes, only its names are re-rendered: the owner's new
contribution (name -> type -> rdata) is diffed against its previous one, the merged records of
each changed name are rebuilt from every owner contributing to it (two Services can share a PTR
name), and that name's answers are packed into wire bytes.

Read side (used by the resolver and the server, never importing Kubernetes code):
``answers`` (question bytes -> Answer: the hot-path dict), ``exists``, ``records``,
``namespace_exists``, ``synced``, ``generation`` / ``shard_generation``.

The Registry is this module's object store and write side on top of its concerns, one module
each: what each owner contributes (kdns.authority.owners), how records are stored
(kdns.authority.frozen), the name table and ``flush`` (kdns.authority.nametable), answers
from records (kdns.authority.answering), the derived-answer memo (kdns.authority.memo) and the
flush in slices (kdns.authority.slices).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from kdns.authority.answering import DNS_VERSION_TTL
from kdns.authority.frozen import (
    SHARDS,
    TTL_PAIR,
    TTLS,
    WILDCARD,
    Frozen,
    Records,
    question_key,
    shard_of,
)
from kdns.authority.gateway import GatewaySettings, GatewayTable
from kdns.authority.localzones import ZoneData
from kdns.authority.memo import MEMO_TYPES
from kdns.authority.owners import Contribution, Owner
from kdns.authority.slices import GRADUAL_NAMES, STEP_COST, GradualFlush
from kdns.authority.zones import GATEWAY, LOCAL, ZoneSet
from kdns.dns import names
from kdns.dns.answer import Answer, StampedAnswers
from kdns.dns.records import NS, SOA
from kdns.model import (
    GATEWAY_KINDS,
    EndpointSlice,
    Gateway,
    GatewayClass,
    Ingress,
    KubeObject,
    ListenerSet,
    Namespace,
    Pod,
    Route,
    Service,
)

# Imported from here by the resolver, the transfer code and tests.
__all__ = [
    "DNS_VERSION_TTL",
    "GRADUAL_NAMES",
    "MEMO_TYPES",
    "SHARDS",
    "STEP_COST",
    "WILDCARD",
    "Records",
    "Registry",
    "question_key",
    "shard_of",
]

_O = TypeVar("_O", Service, EndpointSlice, Pod)


class _PodView(Mapping[tuple[str, str], Pod]):
    """owner -> IPs shown as (namespace, name) -> Pod (read-only)."""

    __slots__ = ("_ips",)

    def __init__(self, ips: dict[Owner, tuple[str, ...]]) -> None:
        self._ips = ips

    def __getitem__(self, key: tuple[str, str]) -> Pod:
        return Pod(key[0], key[1], self._ips[("pod", *key)])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((namespace, name) for _, namespace, name in self._ips)

    def __len__(self) -> int:
        return len(self._ips)


class Registry(GradualFlush):
    def __init__(
        self,
        zones: ZoneSet,
        *,
        ttl: int = 5,
        pods: str = "insecure",
        endpoint_pod_names: bool = False,
        dns_service: str = "kube-system/kube-dns",
        gateway: GatewaySettings | None = None,
        client_index: bool = False,
    ) -> None:
        self.zones = zones
        self.cluster = zones.cluster
        self.ttl = ttl
        self.pods_mode = pods
        self.endpoint_pod_names = endpoint_pod_names
        ns, _, svc = dns_service.partition("/")
        self.dns_service: tuple[str, str] = (ns, svc)
        self.synced = False
        self.generation = 0
        self.shard_generation = [0] * SHARDS
        # Called with the monotonic time of each flush that changed answers (programming latency).
        self.on_change: Callable[[float], None] | None = None

        # Objects as the sources gave them.
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], EndpointSlice] = {}
        # Pods (verified mode) as owner ("pod", namespace, name) -> IPs: the owner tuple is the
        # one the pod's name table entries hold, and a Pod tuple per pod would cost 64 bytes
        # more (as would a (namespace, name) key). ``pods`` shows them as Pod objects.
        self._pod_ips: dict[Owner, tuple[str, ...]] = {}
        self.namespaces: set[str] = set()
        # Autopath ([kubernetes] autopath): client IP -> the wire label of the namespace of the
        # pod holding it; None when not asked for. Pods are then held in every pods mode (only
        # ``verified`` renders names for them). An IP that pods of several namespaces hold
        # (hostNetwork pods share their node's) maps to none: its namespace is not known.
        self.client_namespaces: dict[str, bytes] | None = {} if client_index else None
        self._ip_pods: dict[str, tuple[Owner, ...]] = {}  # IP -> the pods holding it
        # Gateway API objects, Ingresses and the hostnames they claim (kdns.authority.gateway): one
        # owner ("gw", "", hostname) per hostname in a gateway zone.
        self.gateway = GatewayTable(gateway or GatewaySettings(), zones, self.services)
        self._slices_of: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._ns_refs: Counter[str] = (
            Counter()
        )  # objects per namespace (manifests may omit Namespaces)

        # Name table. The answers dict's stamp is new after every published change
        # (``_publish``): the standard path's reply memo trusts an entry it checked under the
        # current stamp.
        self.answers = StampedAnswers()
        self._rendered: dict[bytes, tuple[int, ...]] = {}
        # name -> the owner contributing to it, or a list when several do (a shared PTR).
        self._names: dict[bytes, Owner | list[Owner]] = {}
        self._ents: Counter[bytes] = Counter()  # empty non-terminals, refcounted by descendants
        # owner -> its names and records; an owner of one name (a pod) keeps a (name, records)
        # pair instead of a dict: a dict costs 100+ bytes more, once per pod.
        self._contrib: dict[Owner, dict[bytes, Frozen] | tuple[bytes, Frozen]] = {}
        self._owners: dict[Owner, Owner] = {}  # one tuple per owner, shared by its names
        self._deps: dict[bytes, set[bytes]] = {}  # name -> names whose additional section uses it
        self._dep_targets: dict[bytes, tuple[bytes, ...]] = {}  # the reverse, for pruning
        self._dirty: set[Owner] = set()
        # Answers the resolver derived from this state (negative answers, computed pod names,
        # ANY), keyed like ``answers`` and read by the hot path right after it. Entries are
        # dropped exactly when a change could alter them (see ``_forget_derived``).
        self.derived: dict[bytes, Answer] = {}
        self.derived_evictions = 0
        # Told after each flush that changed answers: (names whose answers may differ, zones
        # whose SOA moved: serial, fields or TTL, so every negative answer of the zone
        # differs; everything-changed flag). Caches of rendered bytes (killer mode's wire
        # cache) drop exactly those entries before the next query is read.
        self.watchers: list[Callable[[set[bytes], set[str], bool], None]] = []
        self._existence: list[bytes] = []  # empty non-terminals made or gone since last flush
        self._namespaces_moved = False  # a namespace started or stopped existing
        # Local zones (kdns.authority.localzones): zone -> the local owner's contribution, and the
        # TTL of each local RRset (name -> type -> TTL; every other name has ``ttl``).
        self._local: dict[str, Contribution] = {}
        self._local_ttls: dict[bytes, dict[int, int]] = {}
        self._local_ttl_maps: dict[str, dict[bytes, dict[int, int]]] = {}  # per zone
        # Wildcard names (RFC 4592) that exist, with records or as empty non-terminals: the
        # resolver's closest-encloser walk runs only while there are any.
        self.wildcards: set[bytes] = set()
        # closest encloser -> names the resolver answered from the wildcard below it (kept in
        # ``derived``): a name made or gone under that encloser may change those answers.
        self._synth: dict[bytes, set[bytes]] = {}
        self._synth_count = 0
        self._synth_lost = False
        self._batch = 0
        self._glue: dict[bytes, Records] | None = None  # see flush()
        # Owners being rendered in slices (``flush_steps``) -> their job's token; a synchronous
        # apply of the owner meanwhile drops it, and the job stops (that apply was complete).
        self._gradual: dict[Owner, object] = {}
        self.render_steps = 0  # slices committed by ``flush_steps`` (kdns_registry_... later)
        self._dns_version = names.to_wire("dns-version." + self.cluster.text)
        for zone in zones:
            self._dirty.add(("zone", "", zone.text))
        self.flush()

    # ----------------------------------------------------------------- read side

    @property
    def pods(self) -> Mapping[tuple[str, str], Pod]:
        """The pods held (verified mode), as Pod objects made on access."""
        return _PodView(self._pod_ips)

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces or self._ns_refs[namespace] > 0

    def counts(self) -> dict[str, int]:
        return {
            "Service": len(self.services),
            "EndpointSlice": len(self.slices),
            "Pod": len(self._pod_ips),
            "Namespace": len(self.namespaces),
            **self.gateway.counts(),
            "names": len(self._names),
            "answers": len(self.answers),
        }

    # ---------------------------------------------------------------- write side

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group changes; answers are rendered once when the outermost batch ends."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            if not self._batch:
                self.flush()

    def upsert(self, obj: KubeObject) -> bool:
        """Add or replace an object. False (and nothing re-rendered) when nothing DNS-visible changed."""
        if isinstance(obj, GatewayClass | Gateway | ListenerSet | Route | Ingress):
            return self._touch_hostnames(self.gateway.upsert(obj))
        if isinstance(obj, Service):
            changed = self._put(self.services, obj, obj.namespace)
            if changed:
                self._touch_service(obj.namespace, obj.name)
        elif isinstance(obj, EndpointSlice):
            old = self.slices.get(obj.key)
            changed = self._put(self.slices, obj, obj.namespace)
            if changed:
                if old is not None and old.service != obj.service:
                    self._unlink_slice(old)
                self._slices_of.setdefault((obj.namespace, obj.service), set()).add(obj.key)
                self._touch(("svc", obj.namespace, obj.service))
        elif isinstance(obj, Pod):
            if self.pods_mode != "verified" and self.client_namespaces is None:
                return False  # insecure/disabled modes never look pods up: don't hold them
            owner = ("pod", obj.namespace, obj.name)
            old_ips = self._pod_ips.get(owner)
            changed = old_ips != obj.ips
            if changed and self.client_namespaces is not None:
                self._index_pod(owner, old_ips, obj.ips)
                if self.pods_mode != "verified":
                    self._pod_ips[owner] = obj.ips
                    return False  # held for the client index only: no answer changed
            if changed:
                if old_ips is None:
                    self._ref_namespace(obj.namespace, +1)
                self._pod_ips[owner] = obj.ips
                self._touch(owner)
        elif isinstance(obj, Namespace):
            # Its labels decide which Gateway listeners take its routes (from: Selector).
            moved = self.gateway.namespace_changed(obj.name, obj.labels)
            changed = obj.name not in self.namespaces
            if changed:
                self._namespaces_moved = True
                self.namespaces.add(obj.name)
                self._dirty.update(self._hostname_owners(moved))
                self._touch(("ns", "", obj.name))
            elif moved:
                return self._touch_hostnames(moved)
            else:
                changed = False
        else:  # pragma: no cover - the type union is closed
            raise TypeError(f"not a kdns object: {obj!r}")
        return changed

    def delete(self, kind: str, key: tuple[str, str]) -> bool:
        namespace, name = key
        if kind in GATEWAY_KINDS:
            return self._touch_hostnames(self.gateway.delete(kind, key))
        if kind == "Service":
            if self.services.pop(key, None) is None:
                return False
            self._ref_namespace(namespace, -1)
            self._touch_service(namespace, name)
        elif kind == "EndpointSlice":
            old = self.slices.pop(key, None)
            if old is None:
                return False
            self._ref_namespace(namespace, -1)
            self._unlink_slice(old)
        elif kind == "Pod":
            ips = self._pod_ips.pop(("pod", namespace, name), None)
            if ips is None:
                return False
            if self.client_namespaces is not None:
                self._index_pod(("pod", namespace, name), ips, ())
                if self.pods_mode != "verified":
                    return False  # held for the client index only: no answer changed
            self._ref_namespace(namespace, -1)
            self._touch(("pod", namespace, name))
        elif kind == "Namespace":
            if name not in self.namespaces:
                return False
            self._namespaces_moved = True
            self.namespaces.discard(name)
            self._dirty.update(self._hostname_owners(self.gateway.namespace_changed(name, None)))
            self._touch(("ns", "", name))
        else:
            raise ValueError(f"unknown kind {kind!r}")
        return True

    def replace(self, kind: str, objects: Iterable[KubeObject]) -> None:
        """Make ``kind``'s contents exactly ``objects`` (a relist), atomically for readers.

        Everything happens inside one batch: queries (served on the same loop) see either the
        old set or the new one, never a gap; objects deleted while the watch was down go away.
        """
        with self.batch():
            keep: set[tuple[str, str]] = set()
            for obj in objects:
                if obj.kind != kind:
                    raise ValueError(f"replace({kind}) got a {obj.kind}")
                keep.add(obj.key)
                self.upsert(obj)
            for key in [k for k in self._keys_of(kind) if k not in keep]:
                self.delete(kind, key)

    def current(self, kind: str, key: tuple[str, str]) -> KubeObject | None:
        """The object of ``kind`` held under ``key`` (None when absent)."""
        if kind == "Service":
            return self.services.get(key)
        if kind == "EndpointSlice":
            return self.slices.get(key)
        if kind == "Pod":
            ips = self._pod_ips.get(("pod", *key))
            return None if ips is None else Pod(key[0], key[1], ips)
        if kind in GATEWAY_KINDS:
            return self.gateway.current(kind, key)
        if key[1] not in self.namespaces:
            return None
        return Namespace(key[1], self.gateway.ns_labels.get(key[1], ()))

    def keys(self, kind: str) -> list[tuple[str, str]]:
        return self._keys_of(kind)

    def set_ttl(self, ttl: int) -> None:
        """Re-render everything with a new TTL (config reload)."""
        self.ttl = ttl
        self.derived.clear()  # computed pod answers carry the TTL
        self._synth.clear()
        self._synth_count = 0
        for watcher in self.watchers:
            watcher(set(), {zone.text for zone in self.zones}, True)
        own_ttl = self.gateway.settings.ttl is not None  # [gateway] ttl: the gateway zones'
        for zone in self.zones:
            if zone.kind != LOCAL and not (own_ttl and zone.kind == GATEWAY):
                zone.set_ttl(ttl)  # a local zone's TTLs are its own
        with self.batch():
            # The apex SOA's MINIMUM is the TTL: re-render the zone owners too.
            self._dirty.update(("zone", "", zone.text) for zone in self.zones)
            for name in list(self._names):
                self._render_name(name)

    def set_local(self, data: ZoneData) -> None:
        """Serve ``data`` (kdns.authority.localzones) as its local zone's records, replacing what
        the zone held: only names whose records or TTLs differ are re-rendered."""
        zone = self.zones.by_apex[names.to_wire(data.name)]
        zone.set_authority(data.soa, data.own_ns)
        out: Contribution = {}
        for name, types in data.records.items():
            out[name] = {rtype: dict.fromkeys(rdatas) for rtype, rdatas in types.items()}
        ttls = {name: dict(by_type) for name, by_type in data.ttls.items()}
        apex_ttls = ttls.setdefault(zone.apex, {})
        apex_ttls[SOA] = zone.soa_ttl()
        if not data.own_ns:
            apex_ttls[NS] = zone.ttl  # the synthesized NS
        for name, by_type in ttls.items():
            # TTLs ride along as a pseudo record, so a TTL-only edit re-renders the name.
            pairs = b"".join(TTL_PAIR.pack(t, by_type[t]) for t in sorted(by_type))
            out.setdefault(name, {})[TTLS] = {pairs: None}
        self._local[zone.text] = out
        self._local_ttl_maps[zone.text] = ttls
        merged: dict[bytes, dict[int, int]] = {}
        for zone_ttls in self._local_ttl_maps.values():
            for name, by_type in zone_ttls.items():
                merged.setdefault(name, {}).update(by_type)
        self._local_ttls = merged
        with self.batch():
            self._dirty.add(("zone", "", zone.text))  # SOA fields, apex NS
            self._dirty.add(("local", "", zone.text))

    def local_zones(self) -> list[str]:
        return list(self._local)

    # ------------------------------------------------------------- internals

    def _put(self, store: dict[tuple[str, str], _O], obj: _O, namespace: str) -> bool:
        old = store.get(obj.key)
        if old == obj:
            return False
        if old is None:
            self._ref_namespace(namespace, +1)
        store[obj.key] = obj
        return True

    def _ref_namespace(self, namespace: str, delta: int) -> None:
        """Count an object in ``namespace`` (manifests may omit the Namespace itself)."""
        before = self.namespace_exists(namespace)
        self._ns_refs[namespace] += delta
        if self.namespace_exists(namespace) != before:
            self._namespaces_moved = True

    def _index_pod(self, owner: Owner, old: tuple[str, ...] | None, new: tuple[str, ...]) -> None:
        """Move ``owner`` (a pod) from its ``old`` IPs to its ``new`` ones in the client index."""
        index = self._ip_pods
        clients = self.client_namespaces
        assert clients is not None
        for ip in {*(old or ()), *new}:
            held = tuple(o for o in index.get(ip, ()) if o != owner)
            if ip in new:
                held += (owner,)
            if not held:
                index.pop(ip, None)
                clients.pop(ip, None)
                continue
            index[ip] = held
            namespace = held[0][1]
            if all(o[1] == namespace for o in held):
                label = namespace.encode()
                clients[ip] = bytes((len(label),)) + label
            else:
                clients.pop(ip, None)

    def _keys_of(self, kind: str) -> list[tuple[str, str]]:
        if kind == "Namespace":
            return [("", n) for n in self.namespaces]
        if kind == "Service":
            return list(self.services)
        if kind == "EndpointSlice":
            return list(self.slices)
        if kind in GATEWAY_KINDS:
            return self.gateway.keys(kind)
        return [(namespace, name) for _, namespace, name in self._pod_ips]

    def _unlink_slice(self, old: EndpointSlice) -> None:
        key = (old.namespace, old.service)
        members = self._slices_of.get(key)
        if members is not None:
            members.discard(old.key)
            if not members:
                del self._slices_of[key]
        self._touch(("svc", old.namespace, old.service))

    def _touch_service(self, namespace: str, name: str) -> None:
        if (namespace, name) == self.dns_service:
            self._dirty.update(("zone", "", zone.text) for zone in self.zones)  # apex NS target
        if self.gateway.enabled:  # its hostname annotation, in gateway zones
            self._dirty.update(
                self._hostname_owners(self.gateway.service_changed((namespace, name)))
            )
        self._touch(("svc", namespace, name))

    @staticmethod
    def _hostname_owners(hostnames: Iterable[bytes]) -> Iterator[Owner]:
        return (("gw", "", names.to_text(name)) for name in hostnames)

    def _touch_hostnames(self, hostnames: set[bytes] | None) -> bool:
        """Re-render the gateway hostnames a Gateway, route or Ingress change moved; False
        when the object changed nothing DNS-visible."""
        if hostnames is None:
            return False
        self._dirty.update(self._hostname_owners(hostnames))
        if not self._batch:
            self.flush()
        return True

    def _touch(self, owner: Owner) -> None:
        self._dirty.add(owner)
        if not self._batch:
            self.flush()
