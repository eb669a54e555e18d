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
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from kdns.authority.gateway import GatewaySettings, GatewayTable
from kdns.authority.localzones import ZoneData
from kdns.authority.owners import LAZY, Contribution, Owner, OwnerRendering, Steps
from kdns.authority.zones import GATEWAY, LOCAL, Zone, ZoneSet
from kdns.dns import names
from kdns.dns.answer import Answer
from kdns.dns.records import (
    AAAA,
    ANY,
    CNAME,
    NOERROR,
    NS,
    PTR,
    QNAME_POINTER,
    SOA,
    SRV,
    TXT,
    A,
    rdata_target,
    rrset,
)
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

log = logging.getLogger("kdns.registry")

# An owner (a Service) with more names, or endpoints + ports, than this is rendered in slices
# by ``flush_steps`` (``flush`` renders everything at once, as before); a slice commits names
# worth about STEP_COST (one per name, one per 64 bytes of its records).
GRADUAL_NAMES = 512
STEP_COST = 512

_O = TypeVar("_O", Service, EndpointSlice, Pod)
Records = dict[int, list[bytes]]  # rtype -> rdatas, in insertion order, no duplicates
# Stored form of one owner's records for one name: one bytes object of (type, length, rdata)
# entries, grouped by type. A single bytes costs a fraction of a dict of lists (or a tuple of
# small bytes), compares fast for the change check, and there is one per name in the cluster.
Frozen = bytes
_ENTRY = struct.Struct("!HH")

SHARDS = 64
# Derived answers are kept for these query types (class IN), so a change drops a bounded set of
# keys per name; other types are computed per query (rare, and cheap).
MEMO_TYPES = frozenset((A, NS, CNAME, SOA, PTR, 15, TXT, AAAA, SRV, 35, 43, 48, 64, 65, 257, ANY))
MEMO_SUFFIXES = tuple(struct.pack("!HH", t, 1) for t in sorted(MEMO_TYPES))
MAX_DERIVED = 65536  # about 8.5 MiB when full (131 B per remembered question)
DNS_VERSION_TTL = 28800  # CoreDNS kubernetes.go: the dns-version TXT has a fixed TTL
_QSUFFIX = struct.Struct("!HH")
_ADDRESS_TYPES = (A, AAAA)


def _within(rdatas: list[bytes], overhead: int, room: int) -> list[bytes]:
    """The leading ``rdatas`` whose records (``overhead`` bytes each + rdata) fit ``room``."""
    for index, rdata in enumerate(rdatas):
        room -= overhead + len(rdata)
        if room < 0:
            return rdatas[:index]
    return rdatas


def question_key(name: bytes, qtype: int, qclass: int = 1) -> bytes:
    """The hot-path dict key: the question section as it appears on the wire, name lowercased."""
    return name + _QSUFFIX.pack(qtype, qclass)


def shard_of(owner: Owner) -> int:
    return zlib.crc32(f"{owner[1]}/{owner[2]}".encode()) % SHARDS


_QTYPES: dict[tuple[int, ...], tuple[int, ...]] = {}  # interned: few distinct type sets

_LAZY_MARK = _ENTRY.pack(LAZY, 0)
# Pseudo record type carrying a local zone name's TTLs (type, TTL pairs): part of the local
# owner's contribution so a TTL-only edit re-renders the name; never served. Types from here
# up are pseudo types.
TTLS = 0xFFFE
_TTL_PAIR = struct.Struct("!HI")
WILDCARD = b"\x01*"  # the leftmost label of a wildcard name (RFC 4592)


def _freeze(out: Contribution) -> dict[bytes, Frozen]:
    pack = _ENTRY.pack
    return {
        name: b"".join(
            pack(rtype, len(rdata)) + rdata for rtype, rdatas in records.items() for rdata in rdatas
        )
        for name, records in out.items()
    }


def _thaw(frozen: Frozen) -> Iterator[tuple[int, bytes]]:
    pos, end = 0, len(frozen)
    unpack = _ENTRY.unpack_from
    while pos < end:
        rtype, length = unpack(frozen, pos)
        pos += 4
        yield rtype, frozen[pos : pos + length]
        pos += length


# Owner kinds whose names can never be wildcards (Services, pods, namespaces, zone apexes):
# their changes skip the wildcard scan.
_NO_WILDCARDS = frozenset(("svc", "pod", "ns", "zone"))


def _wildcards_in(changed: Iterable[bytes]) -> Iterator[bytes]:
    """Wildcard names among ``changed`` and their ancestors (``a.*.x`` makes ``*.x`` exist)."""
    for name in changed:
        if WILDCARD not in name:
            continue
        node = name
        while node[0]:
            if node.startswith(WILDCARD):
                yield node
            node = node[node[0] + 1 :]


# The most a rendered answer holds beyond the 12-byte header and the question: a TCP message is
# at most 65535 bytes (RFC 1035 4.2.2), so records past that can never be sent. ANY answers and
# additional sections (glue) stop there instead of rendering megabytes every reply would drop.
# A named RRset stays whole: a reply keeps what fits with TC, and loadbalance rotates all of it.
MAX_BODY = 65535 - 12 - 5


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


class Registry(OwnerRendering):
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

        # Name table.
        self.answers: dict[bytes, Answer] = {}
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

    def exists(self, name: bytes) -> bool:
        """True for names with records and for empty non-terminals (RFC 8020: not NXDOMAIN)."""
        return name in self._names or name in self._ents

    def records(self, name: bytes) -> Records:
        """The merged records of a name across every owner contributing to it."""
        entry = self._names.get(name)
        if entry is None:
            return {}
        merged: Records = {}
        if not isinstance(entry, list):
            # One owner: its records are unique already (de-duplicated when rendered).
            for rtype, rdata in _thaw(self._frozen(entry, name)):
                if rtype < TTLS:  # not LAZY or TTLS
                    merged.setdefault(rtype, []).append(rdata)
            return merged
        seen: set[tuple[int, bytes]] = set()  # linear in the records, however many owners
        for owner in sorted(entry):  # history-independent order
            for rtype, rdata in _thaw(self._frozen(owner, name)):
                if rtype >= TTLS or (rtype, rdata) in seen:
                    continue
                seen.add((rtype, rdata))
                merged.setdefault(rtype, []).append(rdata)
        return merged

    def names(self) -> Iterator[bytes]:
        """Every name that has records (empty non-terminals excluded), for zone transfers."""
        return iter(list(self._names))

    def is_lazy(self, name: bytes) -> bool:
        """Every owner of the name marked it lazy (one eager owner renders it eagerly)."""
        entry = self._names.get(name)
        if entry is None:
            return False
        owners = entry if isinstance(entry, list) else (entry,)
        return all(self._frozen(owner, name)[:4] == _LAZY_MARK for owner in owners)

    def _frozen(self, owner: Owner, name: bytes) -> Frozen:
        contribution = self._contrib[owner]
        if isinstance(contribution, tuple):
            return contribution[1]
        return contribution[name]

    def materialize(self, name: bytes, qtype: int) -> Answer | None:
        """Render, keep and return the answer of a lazy name (None: no such RRset here)."""
        records = self.records(name)
        if qtype not in records and not (CNAME in records and qtype in _ADDRESS_TYPES):
            return None
        answer = self.render_answer(name, qtype, records)
        self.answers[question_key(name, qtype)] = answer
        rendered = self._rendered.get(name, ()) + (qtype,)
        self._rendered[name] = _QTYPES.setdefault(rendered, rendered)
        return answer

    @property
    def pods(self) -> Mapping[tuple[str, str], Pod]:
        """The pods held (verified mode), as Pod objects made on access."""
        return _PodView(self._pod_ips)

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces or self._ns_refs[namespace] > 0

    def remember(self, key: bytes, answer: Answer) -> None:
        """Keep an answer the resolver derived (``key`` as in ``answers``) until the state it
        was derived from changes. Bounded: when full it starts over (no per-hit bookkeeping)."""
        derived = self.derived
        if len(derived) >= MAX_DERIVED:
            self.derived_evictions += len(derived)
            derived.clear()
        derived[key] = answer

    def synthesized(self, encloser: bytes, name: bytes) -> None:
        """The resolver answered ``name`` from the wildcard below ``encloser`` (RFC 4592)."""
        if self._synth_count >= MAX_DERIVED:
            # Bounded: forget the index, and have the next change drop every derived answer
            # (and cached reply) rather than miss one.
            self._synth.clear()
            self._synth_count = 0
            self._synth_lost = True
        names_here = self._synth.setdefault(encloser, set())
        if name not in names_here:
            names_here.add(name)
            self._synth_count += 1

    def _synthesized_under(self, changed: Iterable[bytes]) -> set[bytes]:
        """Names answered from a wildcard whose closest encloser is a changed name or one of
        its ancestors (a name made or gone there may change which node encloses them): they
        are forgotten with the changed names. Drops those index entries."""
        synth = self._synth
        out: set[bytes] = set()
        shortest = min(map(len, synth))
        for name in changed:
            node = name
            while len(node) >= shortest:
                found = synth.pop(node, None)
                if found is not None:
                    self._synth_count -= len(found)
                    out |= found
                    if not synth:
                        return out
                node = node[node[0] + 1 :] if node[0] else node[:0]
        return out

    def _forget_derived(self, changed: Iterable[bytes], everything: bool) -> None:
        """Drop the derived answers a flush may have changed: every memoizable type of each
        changed name (records, dependents' glue, empty non-terminals made or gone), or all of
        them when a namespace came or went (computed pod names depend on it)."""
        derived = self.derived
        if everything:
            self.derived_evictions += len(derived)
            derived.clear()
            self._synth.clear()
            self._synth_count = 0
            return
        pop = derived.pop
        for name in changed:
            for suffix in MEMO_SUFFIXES:
                pop(name + suffix, None)

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
            pairs = b"".join(_TTL_PAIR.pack(t, by_type[t]) for t in sorted(by_type))
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

    def ttl_of(self, name: bytes, rtype: int) -> int:
        """The TTL ``name``'s ``rtype`` RRset is served with (zone transfers)."""
        return self._ttl(name, rtype)

    def has_records(self, name: bytes) -> bool:
        """The name has records (not only an empty non-terminal)."""
        return name in self._names

    def has_descendants(self, name: bytes) -> bool:
        """Names exist below ``name`` (it exists without records of its own: RFC 8020)."""
        return name in self._ents

    def flush(self) -> None:
        """Render the answers of every owner changed since the last flush."""
        if not self._dirty:
            return
        dirty_names: set[bytes] = set()
        touched: set[Zone] = set()
        bumped: set[str] = set()
        wild: set[bytes] = set()  # wildcard names whose records or existence may have moved
        while self._dirty:
            owners, self._dirty = self._dirty, set()
            for owner in owners:
                changed = self._apply_owner(owner)
                if changed:
                    self.shard_generation[shard_of(owner)] += 1
                    dirty_names.update(changed)
                    if owner[0] not in _NO_WILDCARDS:
                        wild.update(_wildcards_in(changed))
                    if owner[0] != "zone":
                        touched.update(z for z in map(self.zones.find, changed) if z is not None)
            # A zone whose data changed gets a new SOA serial, which re-renders its apex.
            for zone in touched:
                zone.bump()
                bumped.add(zone.text)
                self._dirty.add(("zone", "", zone.text))
            touched = set()
        rendered = self._with_dependents(dirty_names)
        self._render_names(rendered)
        self._publish(rendered, wild, bumped, bool(dirty_names))

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Group changes like ``batch``, leaving them for ``flush_steps`` or
        ``flush_gradually`` (or the next flush) instead of rendering them at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1

    async def flush_gradually(self, budget: float = 0.005) -> None:
        """``flush_steps`` on the event loop: a yield to the loop whenever ``budget`` seconds
        of slices have run, so one huge object never stalls the queries served beside it."""
        clock = time.perf_counter
        started = clock()
        for _ in self.flush_steps():
            if clock() - started > budget:
                await asyncio.sleep(0)
                started = clock()

    def flush_steps(self) -> Iterator[None]:
        """``flush`` in slices, for a driver that lets queries in between (``flush_gradually``).

        Small owners are flushed at once, as by ``flush``. An owner of more than GRADUAL_NAMES
        names or endpoints (a Service with thousands of endpoints) is rendered in slices (the
        render itself yields every few hundred endpoints; nothing is visible until committed),
        then committed a slice of names at a time: each name's records, existence and every
        answer swap together, so between two slices a query sees each name's old answers or
        its new ones, never a mix. Lazy names (endpoint names, their PTRs) go first, then the
        names others point at, then the names that point (SRV, CNAME) with their glue. After
        every slice the watchers are told exactly the names it changed (before the driver
        yields, so before the next datagram is read); the zone's serial moves in the last.
        """
        if not self._dirty:
            return
        big = {owner for owner in self._dirty if self._is_big(owner)}
        self._dirty -= big
        self.flush()
        for owner in big:
            yield
            yield from self._apply_gradually(owner)

    def _is_big(self, owner: Owner) -> bool:
        if owner[0] != "svc":
            return False
        stored = self._contrib.get(self._owners.get(owner, owner))
        if isinstance(stored, dict) and len(stored) > GRADUAL_NAMES:
            return True
        weight = 0
        svc = self.services.get((owner[1], owner[2]))
        if svc is not None:
            weight += len(svc.ports)
        for key in self._slices_of.get((owner[1], owner[2]), ()):
            eps = self.slices[key]
            weight += len(eps.endpoints) + len(eps.ports)
        return weight > GRADUAL_NAMES

    def _apply_gradually(self, owner: Owner) -> Iterator[None]:
        """``_apply_owner`` in slices (see ``flush_steps``)."""
        owner = self._owners.get(owner, owner)
        token = object()
        self._gradual[owner] = token
        try:
            yield from self._apply_slices(owner, token)
        finally:
            if self._gradual.get(owner) is token:
                del self._gradual[owner]

    def _apply_slices(self, owner: Owner, token: object) -> Iterator[None]:
        steps: Steps = self._render_owner_steps(owner)
        try:
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    out: Contribution = done.value
                    break
                yield
                if self._gradual.get(owner) is not token:
                    return  # applied whole meanwhile
        except ValueError as exc:
            log.warning("cannot render %s %s/%s, keeping its previous answers: %s", *owner, exc)
            return
        new: dict[bytes, Frozen] = {}
        pack = _ENTRY.pack
        for index, (name, records) in enumerate(out.items()):
            new[name] = b"".join(
                pack(rtype, len(rdata)) + rdata
                for rtype, rdatas in records.items()
                for rdata in rdatas  # fmt: skip
            )
            if index % 1024 == 1023:
                yield
                if self._gradual.get(owner) is not token:
                    return
        del out
        # The owner's stored names become a dict edited in place, a name at a time.
        stored = self._contrib.get(owner)
        if isinstance(stored, tuple):
            stored = dict((stored,))
        elif stored is None:
            stored = {}
        self._contrib[owner] = stored
        self._owners[owner] = owner
        old = stored.copy()
        lazy: list[bytes] = []
        eager: list[bytes] = []
        for index, name in enumerate((*new, *(name for name in old if name not in new))):
            if index % 4096 == 4095:
                yield  # nothing committed yet: readers see the old names
                if self._gradual.get(owner) is not token:
                    return
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            either = after if after is not None else before
            assert either is not None
            (lazy if either[:4] == _LAZY_MARK else eager).append(name)
        # Eager names others point at (an SRV's target, with its glue) before those pointing.
        pointed: set[bytes] = set()
        for name in eager:
            for index, (rtype, rdata) in enumerate(_thaw(new.get(name, b""))):
                if index % 4096 == 4095:
                    yield
                    if self._gradual.get(owner) is not token:
                        return
                if rtype in (SRV, CNAME, NS, 15):
                    target = rdata_target(rtype, rdata)
                    if target is not None and target != name:
                        pointed.add(target)
        eager.sort(key=lambda name: name not in pointed)
        pending = set(lazy)
        pending.update(eager)
        touched: set[Zone] = set()
        chunk: list[bytes] = []
        cost = 0
        for name in (*lazy, *eager):
            chunk.append(name)
            cost += 1 + (len(new.get(name, b"")) + len(old.get(name, b""))) // 64
            if cost >= STEP_COST:
                self._commit(owner, stored, new, chunk, pending, touched)
                chunk, cost = [], 0
                yield
                if self._gradual.get(owner) is not token:
                    return
        if chunk:
            self._commit(owner, stored, new, chunk, pending, touched)
        # Back to the compact storage of a small owner, then the serial of every zone moved.
        if len(stored) <= 1:
            del self._contrib[owner]
            if stored:
                self._contrib[owner] = next(iter(stored.items()))
            self._owners.pop(owner, None)
        for zone in touched:
            zone.bump()
            self._dirty.add(("zone", "", zone.text))
        self.flush()

    def _commit(
        self,
        owner: Owner,
        stored: dict[bytes, Frozen],
        new: dict[bytes, Frozen],
        chunk: list[bytes],
        pending: set[bytes],
        touched: set[Zone],
    ) -> None:
        """Swap in ``chunk``'s records (each name whole), render them and their dependents
        not still pending, and tell the watchers."""
        pending.difference_update(chunk)
        for name in chunk:
            after = new.get(name)
            if after is None:
                del stored[name]
                self._unlink(name, owner)
            else:
                linked = name in stored
                stored[name] = after
                if not linked:
                    self._link(name, owner)
        self.shard_generation[shard_of(owner)] += 1
        touched.update(z for z in map(self.zones.find, chunk) if z is not None)
        rendered = self._with_dependents(set(chunk))
        rendered -= pending
        self._render_names(rendered)
        self.render_steps += 1
        self._publish(rendered, set(), set(), False)
        self.generation += 1

    def _render_names(self, rendered: Iterable[bytes]) -> None:
        self._glue = {}  # records of additional-section targets, shared by this flush's names
        try:
            for name in rendered:
                self._render_name(name)
        finally:
            self._glue = None

    def _publish(
        self, rendered: set[bytes], wild: set[bytes], bumped: set[str], changed: bool
    ) -> None:
        """After names were re-rendered: wildcards, derived answers and the watchers."""
        # Every zone whose negative answers' SOA moved (its serial, or a local zone's SOA
        # fields from its data, or a TTL reload): refilled in place for the resolver,
        # reported to the watchers, whose copies of those replies carry the old SOA.
        for zone in self.zones:
            if zone.soa_moved:
                zone.soa_moved = False
                bumped.add(zone.text)
        for name in wild:
            if self.exists(name):
                self.wildcards.add(name)
            else:
                self.wildcards.discard(name)
        affected = rendered.union(self._existence)
        moved = self.gateway.take_moved() if self.gateway.overlays else ()
        if moved:  # names a view's class filters answer otherwise moved (kdns.authority.gateway)
            affected |= moved
            self._synth_lost |= any(name.startswith(WILDCARD) for name in moved)
        # A wildcard made, changed or gone changes the answers of names nobody listed (every
        # name it covers): drop every derived answer, as for a namespace. A name made or gone
        # under the closest encloser of names answered from a wildcard drops exactly those.
        everything = self._namespaces_moved or bool(wild) or self._synth_lost
        if everything:
            self._synth_lost = False
            self._synth.clear()
            self._synth_count = 0
        elif self._synth:
            affected |= self._synthesized_under(affected)
        if self.derived:
            self._forget_derived(affected, everything)
        self._existence.clear()
        self._namespaces_moved = False
        for watcher in self.watchers:
            watcher(affected, bumped, everything)
        if changed:
            self.generation += 1
            if self.on_change is not None:
                self.on_change(time.monotonic())

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

    def _apply_owner(self, owner: Owner) -> list[bytes]:
        """Swap in the owner's new contribution; return the names whose records changed."""
        owner = self._owners.get(owner, owner)
        self._gradual.pop(owner, None)  # a job rendering it in slices is overtaken
        try:
            new = _freeze(self._render_owner(owner))
        except ValueError as exc:
            # One object the API accepted but DNS cannot carry (an externalName label over 63
            # bytes, a non-ASCII name) must not stop every other owner in the batch: keep
            # what this owner answered before, and say which object it is.
            log.warning("cannot render %s %s/%s, keeping its previous answers: %s", *owner, exc)
            return []
        stored = self._contrib.pop(owner, {})
        old = dict((stored,)) if isinstance(stored, tuple) else stored
        if len(new) > 1:
            self._contrib[owner] = new
            self._owners.setdefault(owner, owner)  # one tuple shared by the owner's names
        else:
            if new:
                self._contrib[owner] = next(iter(new.items()))
            # One name (a pod) or none: no tuple to share, no entry (~50 bytes per pod).
            self._owners.pop(owner, None)
        changed = []
        for name in old.keys() | new.keys():
            before, after = old.get(name), new.get(name)
            if before == after:
                continue
            changed.append(name)
            if before is None:
                self._link(name, owner)
            elif after is None:
                self._unlink(name, owner)
        return changed

    def _link(self, name: bytes, owner: Owner) -> None:
        entry = self._names.get(name)
        if entry is None:
            self._names[name] = owner
            self._adjust_ents(name, +1)
        elif isinstance(entry, list):
            entry.append(owner)
        else:
            self._names[name] = [entry, owner]

    def _unlink(self, name: bytes, owner: Owner) -> None:
        entry = self._names.get(name)
        if isinstance(entry, list):
            entry.remove(owner)
            if len(entry) == 1:
                self._names[name] = entry[0]
        elif entry is not None:
            del self._names[name]
            self._adjust_ents(name, -1)

    def _adjust_ents(self, name: bytes, delta: int) -> None:
        zone = self.zones.find(name)
        if zone is None:
            return
        node = names.parent(name)
        while len(node) > len(zone.apex):
            count = self._ents[node] + delta
            if count <= 0:
                del self._ents[node]
                self._existence.append(node)
            else:
                self._ents[node] = count
                if count == delta:
                    self._existence.append(node)  # a new empty non-terminal
            node = names.parent(node)

    def _with_dependents(self, dirty: set[bytes]) -> set[bytes]:
        out = set(dirty)
        for name in dirty:
            out.update(self._deps.get(name, ()))
        return out

    def _forget_deps(self, name: bytes) -> None:
        """Drop ``name`` from the dependents of the targets its last answers used."""
        for target in self._dep_targets.pop(name, ()):
            dependents = self._deps.get(target)
            if dependents is not None:
                dependents.discard(name)
                if not dependents:
                    del self._deps[target]

    def _render_name(self, name: bytes) -> None:
        self._forget_deps(name)
        answers = self.answers
        for qtype in self._rendered.pop(name, ()):
            answers.pop(question_key(name, qtype), None)
        if self.is_lazy(name):
            return  # rendered by materialize() on its first query
        records = self.records(name)
        if not records:
            return  # absent, or exists without data: the resolver answers NODATA/NXDOMAIN
        qtypes = list(records)
        if CNAME in records:
            # RFC 1034 3.6.2: a CNAME answers every type; A and AAAA are by far the most asked.
            qtypes += [t for t in _ADDRESS_TYPES if t not in records]
        # ANY is rare (RFC 8482): the resolver renders it on demand rather than for every name.
        for qtype in qtypes:
            answers[question_key(name, qtype)] = self.render_answer(name, qtype, records)
        key = tuple(qtypes)
        self._rendered[name] = _QTYPES.setdefault(key, key)

    def _ttl(self, name: bytes, rtype: int) -> int:
        if self._local_ttls:
            ttls = self._local_ttls.get(name)
            if ttls is not None and rtype in ttls:
                return ttls[rtype]
        if self.gateway.ttls:  # [gateway] ttl, or a claimant's ttl annotation
            ttl = self.gateway.ttls.get(name)
            if ttl is not None and rtype != SOA:
                return ttl
        if rtype == SOA:
            zone = self.zones.by_apex.get(name)
            if zone is not None and zone.kind == GATEWAY:
                return zone.soa_ttl()  # min([gateway] ttl, 300), as its negative answers
            return min(self.ttl, 300)  # CoreDNS backend_lookup.go SOA()
        if rtype == TXT and name == self._dns_version:
            return DNS_VERSION_TTL
        return self.ttl

    def render_answer(self, name: bytes, qtype: int, records: Records, ttls: Mapping[int, int] | None = None) -> Answer:  # fmt: skip
        """A positive answer for ``name``/``qtype`` from its merged records (``ttls``: TTLs of
        its own per type, for a view's gateway answers; kdns.authority.gateway.ViewAnswers)."""
        if qtype == ANY:
            rtypes = list(records)
        elif qtype in records:
            rtypes = [qtype]
        else:
            rtypes = [CNAME]
        # Linear in the records rendered, and bounded: ANY (RFC 8482: any subset will do) and
        # the additional section stop at what a 64 KiB message can carry. A named RRset is
        # rendered whole: a reply that cannot carry all of it keeps what fits and sets TC.
        room = MAX_BODY
        answer: list[tuple[bytes, int]] = []
        used: dict[int, list[bytes]] = {}  # the rdatas that made it into the answer
        for t in rtypes:
            rdatas = records[t]
            if qtype == ANY:
                rdatas = _within(rdatas, 12, room)
                if not rdatas:
                    break
            room -= sum(12 + len(rdata) for rdata in rdatas)
            used[t] = rdatas
            ttl = ttls.get(t) if ttls else None
            answer.append(rrset(QNAME_POINTER, t, self._ttl(name, t) if ttl is None else ttl, rdatas))  # fmt: skip
        room = max(room, 0)  # what is left for glue
        additional = []
        chase = None
        seen: set[bytes] = set()
        targets: list[bytes] = []
        glue = self._glue
        for rtype, rdatas in used.items():
            if rtype == PTR:
                continue
            for rdata in rdatas:
                if room <= 0 and rtype != CNAME:
                    # The message is full: no later target can add glue, and a change to one
                    # cannot alter this answer unless an earlier one (a dependency) changes.
                    break
                target = rdata_target(rtype, rdata)
                if target is None or target in seen:
                    continue
                if rtype == CNAME and target == name:
                    continue  # a CNAME to itself: nothing to chase
                seen.add(target)
                if self.zones.find(target) is None:
                    if rtype == CNAME and qtype in _ADDRESS_TYPES:
                        chase = target  # CoreDNS asks upstream for it (when forwarding)
                    continue
                if target != name:
                    self._deps.setdefault(target, set()).add(name)
                    targets.append(target)
                found = glue.get(target) if glue is not None else None
                if found is None:
                    found = self.records(target)
                    if glue is not None:
                        glue[target] = found
                if rtype == CNAME:
                    # CoreDNS chases an in-zone ExternalName target: CNAME + the target's RRset.
                    if qtype in _ADDRESS_TYPES and qtype in found:
                        answer.append(rrset(target, qtype, self._ttl(target, qtype), found[qtype]))  # fmt: skip
                    continue
                # RFC 1035 3.3.9 / RFC 2782: addresses of NS and SRV targets as glue.
                for glue_type in _ADDRESS_TYPES:
                    if glue_type in found and room > 0:
                        extra = _within(found[glue_type], 10 + len(target), room)
                        if not extra:
                            room = 0  # full: no more glue
                            continue
                        room -= sum(10 + len(target) + len(rdata) for rdata in extra)
                        additional.append(rrset(target, glue_type, self._ttl(target, glue_type), extra))  # fmt: skip
        if targets:
            known = self._dep_targets.get(name, ())
            # ANY re-renders: never grow the index twice (and never quadratically).
            merged = tuple(dict.fromkeys((*known, *targets)))
            if len(merged) != len(known):
                self._dep_targets[name] = merged
        zone = self.zones.find(name)
        zone_text = zone.text if zone is not None else "."
        rendered = Answer(NOERROR, True, (tuple(answer), (), tuple(additional)), zone_text)
        rendered.chase = chase
        return rendered
