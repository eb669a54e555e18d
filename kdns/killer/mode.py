"""Killer mode, assembled: the wire cache, the batched UDP transport and the prefetcher.

The app hands this plain values and the parts it already has (responder, registry, resolver,
forwarder, meter); nothing here reads the config module or imports the Kubernetes client.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kdns.authority.registry import Registry
from kdns.authority.resolver import Resolver
from kdns.dns import names
from kdns.dns.resolvconf import read_resolv_conf
from kdns.killer.front import WireFront
from kdns.killer.markov import Prefetcher, valid_name
from kdns.killer.wirecache import WireCache
from kdns.policy.acl import ALLOW
from kdns.server.forwarding import Forwarder
from kdns.server.meter import Meter
from kdns.server.stats import Stats
from kdns.server.udp import UdpServer
from kdns.server.wire import Responder

log = logging.getLogger("kdns.killer")


@dataclass(frozen=True)
class Settings:
    cache_entries: int = 50_000
    cache_bytes: int = 32 << 20
    prefetch: bool = True
    threshold: float = 0.4
    share: float = 0.5
    concurrency: int = 16
    resolv_conf: str = "/etc/resolv.conf"  # its search domains: the walk steps not suffixes


class Killer:
    def __init__(
        self,
        settings: Settings,
        responder: Responder,
        stats: Stats,
        meter: Meter | None,
    ) -> None:
        self.settings = settings
        self.responder = responder
        self.stats = stats
        self.wire = WireCache(settings.cache_entries, settings.cache_bytes)
        self.wire.attach(meter)
        self.registry: Registry | None = None
        self.resolver: Resolver | None = None
        self.forwarder: Forwarder | None = None
        self.prefetcher: Prefetcher | None = None
        self.forward_allowed: Callable[[str], bool] | None = None
        self.fronts: list[WireFront] = []
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ wiring

    def attach(self, registry: Registry, resolver: Resolver, forwarder: Forwarder | None) -> None:
        """(Re)connect to the app's parts: at start and after a reload swapped any of them.
        Every cached reply is dropped then (TTL, zones, ACL or upstreams may have changed)."""
        if self.registry is not None and self.wire.registry_changed in self.registry.watchers:
            self.registry.watchers.remove(self.wire.registry_changed)
        self.registry, self.resolver, self.forwarder = registry, resolver, forwarder
        registry.watchers.append(self.wire.registry_changed)
        self.wire.clear()
        self.forward_allowed = self.responder.forward_allow
        for front in self.fronts:
            front.forward_allowed = self.forward_allowed
            front.allowed.clear()  # decisions of the old forward.allow
        if self.prefetcher is None and self.settings.prefetch:
            self.prefetcher = Prefetcher(
                is_ours=self._is_ours,
                render=self._render,
                fetch=self._fetch,
                expiry=self._expiry,
                upstream_queries=self._upstream_queries,
                admits=self._admits,
                allows=self._allows,
                search_domains=_search_domains(self.settings.resolv_conf),
                threshold=self.settings.threshold,
                share=self.settings.share,
                concurrency=self.settings.concurrency,
            )
        if forwarder is not None and self.prefetcher is not None:
            forwarder.on_prefetched = self.prefetcher.fetched

    def udp_front(self, udp: UdpServer) -> WireFront:
        """DnsListeners' hook: the wire cache in front of this UDP socket's standard path."""
        front = WireFront(udp, self.wire, self.prefetcher, self.forward_allowed)
        self.fronts = [f for f in self.fronts if not f.udp.is_closing()] + [front]
        return front

    def start(self) -> None:
        log.info(
            "killer mode: wire cache (%d entries, %d MiB)%s",
            self.settings.cache_entries,
            self.settings.cache_bytes >> 20,
            ", Markov prefetcher" if self.prefetcher is not None else "",
        )
        if self.prefetcher is not None:
            self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        assert self.prefetcher is not None
        self._timer = asyncio.get_running_loop().call_later(self.prefetcher.tick, self._tick)

    def _tick(self) -> None:
        assert self.prefetcher is not None
        try:
            self.prefetcher.run()
        except Exception:  # a bug here must not stop prefetching for good
            log.exception("prefetcher tick failed")
        self._schedule()

    # ------------------------------------------------------------------ prefetcher's hands

    def _is_ours(self, name: bytes) -> bool:
        resolver = self.resolver
        return (
            resolver is not None
            and resolver.authoritative
            and resolver.zones.find(name) is not None
        )

    def _render(self, name: bytes, qtype: int) -> None:
        """Render a predicted name of ours now (a lazily rendered name; a negative answer
        into the registry's memo), so its first query is a dict hit."""
        if self.resolver is not None and self.registry is not None:
            key = name + qtype.to_bytes(2, "big") + b"\x00\x01"
            if key not in self.registry.answers and key not in self.registry.derived:
                self.resolver.resolve(name, qtype)

    def _fetch(self, name: bytes, qtype: int) -> bool:
        return self.forwarder is not None and self.forwarder.prefetch(name, qtype)

    def _expiry(self, name: bytes, qtype: int) -> float:
        return self.forwarder.expiry(name, qtype) if self.forwarder is not None else float("inf")

    def _upstream_queries(self) -> int:
        return self.forwarder.upstream_queries() if self.forwarder is not None else 0

    def _admits(self, client: bytes) -> bool:
        """Whether the prefetcher may learn from this client and prefetch for it: what the
        standard path would do for it is what the prefetcher assumes. So forward.allow admits
        it (a client that may not forward could otherwise steer upstream queries), and it is
        in no view, or in one that changes nothing (no block lists, every zone): a view's
        block list answers names before forwarding and its zone list sends our names
        upstream, which a prefetch made for the default path would get wrong. Read at every
        call: a reload or a block list swap changes them without telling the prefetcher."""
        responder = self.responder
        allow = responder.forward_allow
        if allow is not None:
            ip = _ip(client)
            if ip is None or not allow(ip):
                return False
        views = responder.views
        if views is not None:
            view = views.view_of_packed(client)
            if view is not None and (view.lists or view.zones is not None):
                return False
        return True

    def _allows(self, client: bytes, name: bytes, qtype: int) -> bool:
        """The ACL lets this client ask this name (what it would be answered, not REFUSED)."""
        acl = self.responder.acl
        if acl is None:
            return True
        ip = _ip(client)
        return ip is not None and acl.decide(ip, name, qtype) == ALLOW

    # ------------------------------------------------------------------ metrics

    def collector(self) -> Collector:
        return _KillerCollector(self)


def _ip(client: bytes) -> str | None:
    """A packed client address as text (the form forward.allow and the ACL take)."""
    try:
        return socket.inet_ntop(socket.AF_INET6 if len(client) == 16 else socket.AF_INET, client)
    except (OSError, ValueError):
        return None


def _search_domains(resolv_conf: str) -> tuple[bytes, ...]:
    """The host's resolv.conf search domains (wire): the node domains kubelet appends to each
    pod's search path, the one walk step that is not a suffix of the step before."""
    found = []
    for domain in read_resolv_conf(resolv_conf).search:
        try:
            wire = names.to_wire(domain)
        except ValueError:
            continue
        if valid_name(wire):
            found.append(wire)
    return tuple(found)


class _KillerCollector(Collector):
    def __init__(self, killer: Killer) -> None:
        self.killer = killer

    def collect(self) -> Iterator[Any]:
        wire = self.killer.wire.counters()
        for name, help_text in (
            ("hits", "Queries answered from the wire cache"),
            ("misses", "Queries the wire cache did not hold (answered by the standard path)"),
            ("inserts", "Replies stored in the wire cache"),
            ("deferred", "Negative replies not stored on their first miss (stored on a second)"),
            ("evictions", "Wire cache entries dropped to stay within its bounds"),
            ("invalidations", "Wire cache entries dropped because the answer changed"),
        ):
            yield CounterMetricFamily(f"kdns_killer_wirecache_{name}", help_text, value=wire[name])
        yield GaugeMetricFamily(
            "kdns_killer_wirecache_entries", "Replies held in the wire cache", value=wire["entries"]
        )
        yield GaugeMetricFamily(
            "kdns_killer_wirecache_bytes",
            "Bytes the wire cache accounts for (keys, replies, per-entry overhead)",
            value=wire["bytes"],
        )
        prefetcher = self.killer.prefetcher
        if prefetcher is None:
            return
        numbers = prefetcher.counters()
        outcomes = CounterMetricFamily(
            "kdns_killer_prefetch",
            "Prefetches by outcome: issued (sent upstream), used (a client asked before it "
            "expired), wasted (expired unasked), skipped (over the concurrency or share limit, "
            "or the client's own budget)",
            labels=["outcome"],
        )
        for outcome in ("issued", "used", "wasted", "skipped"):
            outcomes.add_metric([outcome], numbers[outcome])
        yield outcomes
        yield GaugeMetricFamily(
            "kdns_killer_prefetch_precision",
            "used / (used + wasted) prefetches (with --workers, the largest of the workers')",
            value=numbers["precision"],
        )
        yield CounterMetricFamily(
            "kdns_killer_predictions",
            "Successor questions predicted by the Markov model",
            value=numbers["predictions"],
        )
        observed = CounterMetricFamily(
            "kdns_killer_observations",
            "Queries seen by the prefetcher: learned from, dropped over its per-tick budget, "
            "or ignored (not answered, or a client forward.allow or a view keeps out)",
            labels=["outcome"],
        )
        observed.add_metric(["learned"], numbers["observed"])
        observed.add_metric(["dropped"], numbers["dropped"])
        observed.add_metric(["ignored"], numbers["ignored"])
        yield observed
        entries = GaugeMetricFamily(
            "kdns_killer_prefetch_entries",
            "Entries in the prefetcher's tables (each bounded): names, shapes, clients, "
            "periods (repeating names), schedule (refreshes), pending (prefetched answers)",
            labels=["table"],
        )
        for table in ("names", "shapes", "clients", "periods", "schedule", "pending"):
            entries.add_metric([table], numbers[table])
        yield entries
