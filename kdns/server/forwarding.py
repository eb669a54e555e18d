"""Names outside our zones: split-horizon routing to upstream groups, the response cache,
serve-stale, prefetch and loop detection (CoreDNS forward + cache + loop).

The hot path stays synchronous: a cache hit is answered on the spot. A miss schedules one task
that asks the upstream group and sends the answer through the protocol that received the query
(``Replier``); nothing else waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dnslib import DNSRecord

from kdns.dns import names
from kdns.dns.answer import Answer
from kdns.dns.records import REFUSED, SERVFAIL
from kdns.forward.cache import ResponseCache, cache_key
from kdns.forward.upstreams import ForwardError, ForwardGroup, Overloaded
from kdns.server.wire import MIN_UDP, Query, Replier

log = logging.getLogger("kdns.forward")

HINFO = 13
_QSUFFIX = struct.Struct("!HH")


@dataclass
class Route:
    zone: str  # "." for the default route
    group: ForwardGroup
    apex: bytes = b""
    looping: bool = False
    # This zone's own cache TTL caps (success, denial): [forward] zones' cache_success_ttl and
    # cache_denial_ttl, as a CoreDNS server block's own cache; None: the [cache] settings.
    caps: tuple[int | None, int | None] | None = None

    def __post_init__(self) -> None:
        self.apex = names.ROOT if self.zone == "." else names.to_wire(self.zone)


@dataclass
class ForwardStats:
    forwarded: int = 0
    cache_hits: int = 0
    stale_served: int = 0
    servfail: int = 0
    refused: int = 0
    prefetches: int = 0
    loops_detected: int = 0
    by_zone: dict[str, int] = field(default_factory=dict)


class Forwarder:
    def __init__(self, routes: Iterable[Route], cache: ResponseCache | None) -> None:
        # Most specific zone first; lookups walk the name's suffixes like ZoneSet.find.
        self.routes = {route.apex: route for route in routes}
        self.cache = cache
        self.stats = ForwardStats()
        self.tasks: set[asyncio.Task[None]] = set()
        self._probes: dict[bytes, Route] = {}
        # Upstream answers on their way for questions asked without a client (killer mode's
        # prefetcher): a client asking the same meanwhile waits for that answer instead of
        # sending a second query upstream.
        self.in_flight: dict[bytes, asyncio.Future[bytes | None]] = {}
        self.on_prefetched: Callable[[bytes, int, float], None] | None = None

    def route(self, qname: bytes) -> Route | None:
        routes = self.routes
        pos = 0
        while True:
            route = routes.get(qname[pos:] if pos else qname)
            if route is not None:
                return route
            if qname[pos] == 0:
                return None
            pos += qname[pos] + 1

    @staticmethod
    def cache_key(query: Query) -> bytes:
        """Question key + the DO and CD bits: answers differ with them (CoreDNS cache)."""
        return cache_key(
            query.key, query.edns is not None and query.edns.do, bool(query.data[3] & 0x10)
        )

    def handle(self, query: Query, replier: Replier | None, peer: Any) -> bytes | None:
        route = self._probes.get(query.name)
        if route is not None:
            return self._loop_detected(route, query)
        cache = self.cache
        key = b""
        if cache is not None:
            key = self.cache_key(query)
            hit = cache.get(key, query.data[:2], query.data[12 : query.qend], query.opt())
            if hit is not None:
                self.stats.cache_hits += 1
                query.responder.keep = cache.last_tick
                if cache.should_prefetch(key):
                    self._prefetch(query, key)
                return self._fit(query, hit)
        route = self.route(query.name)
        if route is None:
            self.stats.refused += 1
            return query.error(REFUSED)
        if route.looping or replier is None:
            self.stats.servfail += 1
            return query.error(SERVFAIL)
        self._spawn(self._forward(route, query, key, replier, peer))
        return None

    # ------------------------------------------------------------------ ExternalName

    def chase(
        self, query: Query, answer: Answer, replier: Replier | None, peer: Any
    ) -> bytes | None:
        """An ExternalName's CNAME to a name outside our zones, asked for A/AAAA: append the
        target's records from upstream (CoreDNS kubernetes does this upstream lookup), since a
        pod's stub resolver does not follow a CNAME by itself. Without an answer from upstream
        the CNAME goes out alone, NOERROR, as from CoreDNS."""
        cname_only = query.responder.reply(query.data, query.qend, query.edns, query.tcp, answer)
        target = answer.chase
        route = self.route(target) if target is not None else None
        if target is None or route is None or route.looping:
            return cname_only
        target_question = target + query.data[query.qend - 4 : query.qend]
        key = cache_key(target_question)
        if self.cache is not None:
            hit = self.cache.get(key, b"\x00\x00")
            if hit is not None:
                self.stats.cache_hits += 1
                return self._fit(query, _append_answers(cname_only, hit))
        if replier is None:
            return cname_only

        async def look_up() -> None:
            wire = (
                secrets.token_bytes(2)
                + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                + target_question
            )
            asked = self._asked()
            try:
                upstream = await route.group.query(wire, tcp=query.tcp)
            except ForwardError:
                query.deliver(replier, cname_only, peer)
                return
            if self.cache is not None:
                self.cache.put(key, upstream, asked, route.caps)
            query.deliver(replier, self._fit(query, _append_answers(cname_only, upstream)), peer)

        self._spawn(look_up())
        return None

    def _asked(self) -> float:
        """The cache's clock as a question leaves for upstream: what a cached answer's TTLs
        count down from (see ``kdns.forward.cache``, "When TTLs start")."""
        return self.cache.clock() if self.cache is not None else 0.0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forward(
        self, route: Route, query: Query, key: bytes, replier: Replier, peer: Any
    ) -> None:
        pending = self.in_flight.get(key)
        if pending is not None and self.cache is not None:
            await asyncio.shield(pending)  # a prefetch of this question is already upstream
            hit = self.cache.get(key, query.data[:2], query.data[12 : query.qend], query.opt())
            if hit is not None:
                self.stats.cache_hits += 1
                query.deliver(replier, self._fit(query, hit), peer)
                return
        self.stats.forwarded += 1
        self.stats.by_zone[route.zone] = self.stats.by_zone.get(route.zone, 0) + 1
        asked = self._asked()
        try:
            # The client's transport (CoreDNS forward): TCP in, TCP out, unless prefer_udp.
            response = await route.group.query(query.data, tcp=query.tcp)
        except Overloaded:
            self.stats.servfail += 1
            response = query.error(SERVFAIL)
        except ForwardError as exc:
            stale = None
            if self.cache is not None:
                stale = self.cache.get_stale(
                    key, query.data[:2], query.data[12 : query.qend], query.opt()
                )
            if stale is not None:
                self.stats.stale_served += 1
                response = stale
            else:
                self.stats.servfail += 1
                log.debug("forwarding %s failed: %s", names.to_text(query.name), exc)
                response = query.error(SERVFAIL)
        else:
            if self.cache is not None:
                self.cache.put(key, response, asked, route.caps)
            # Our OPT, not the upstream's, as the cache renders it for the next asker.
            response = _own_opt(response, query.opt())
        query.deliver(replier, self._fit(query, response), peer)

    def _prefetch(self, query: Query, key: bytes) -> None:
        route = self.route(query.name)
        if route is None or route.looping or self.cache is None:
            return
        self.stats.prefetches += 1
        cache = self.cache

        async def refresh() -> None:
            asked = cache.clock()
            try:
                cache.put(key, await route.group.query(query.data), asked, route.caps)
            except (ForwardError, Overloaded):
                pass

        self._spawn(refresh())

    # ------------------------------------------------------------------ prefetch (killer)

    def upstream_queries(self) -> int:
        """Queries sent upstream for clients and for prefetches (loop probes excluded)."""
        return self.stats.forwarded + self.stats.prefetches

    def expiry(self, name: bytes, qtype: int) -> float:
        """When the cached answer to ``name``/``qtype`` (no DO, no CD) stops being fresh."""
        if self.cache is None:
            return 0.0
        return self.cache.expires(cache_key(name + _QSUFFIX.pack(qtype, 1)))

    def prefetch(self, name: bytes, qtype: int) -> bool:
        """Ask upstream for ``name``/``qtype`` now and cache the answer, with no client
        waiting (killer mode's prefetcher). False when nothing was sent: no route, a loop,
        no cache to keep the answer in, or the same question already on its way."""
        if self.cache is None:
            return False
        route = self.route(name)
        key = cache_key(name + _QSUFFIX.pack(qtype, 1))
        if route is None or route.looping or key in self.in_flight:
            return False
        wire = secrets.token_bytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        wire += name + _QSUFFIX.pack(qtype, 1)
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self.in_flight[key] = future
        self.stats.prefetches += 1
        cache = self.cache

        async def fetch() -> None:
            response = None
            until = 0.0  # nothing cached: the prefetch failed or the answer was not cacheable
            asked = cache.clock()
            try:
                response = await route.group.query(wire)
                if cache.put(key, response, asked, route.caps):
                    until = cache.expires(key)
            except (ForwardError, Overloaded):
                pass
            finally:
                del self.in_flight[key]
                future.set_result(response)
                if self.on_prefetched is not None:
                    self.on_prefetched(name, qtype, until)

        self._spawn(fetch())
        return True

    @staticmethod
    def _fit(query: Query, response: bytes) -> bytes:
        """The client's RD and CD bits on the answer (it may come from the cache, asked by
        someone else); a UDP answer larger than the client can take becomes an empty TC reply."""
        data = query.data
        flags = (response[2] & 0xFE) | (data[2] & 0x01), (response[3] & 0xEF) | (data[3] & 0x10)
        response = response[:2] + bytes(flags) + response[4:]
        if query.tcp:
            return response
        limit = MIN_UDP if query.edns is None else min(query.edns.size, query.responder.udp_size)
        if len(response) <= limit:
            return response
        reply = query.error(0)
        return reply[:2] + bytes((reply[2] | 0x02, reply[3])) + reply[4:]

    # ------------------------------------------------------------------ loops

    async def check_loops(self, timeout: float = 2.0) -> None:
        """CoreDNS loop: send each upstream group a query for a random name nobody else could
        ask; if it arrives back here, that upstream forwards to us and forwarding to it would
        loop forever. Such a route is disabled (SERVFAIL) with a log line."""
        for route in list(self.routes.values()):
            probe = names.to_wire(f"{secrets.token_hex(8)}.{secrets.token_hex(4)}.kdns-loop-check")
            self._probes[probe] = route
            wire = secrets.token_bytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            wire += probe + HINFO.to_bytes(2, "big") + b"\x00\x01"
            try:
                await asyncio.wait_for(route.group.query(wire), timeout)
            except (TimeoutError, ForwardError, Overloaded):
                pass  # an upstream that does not answer is not a loop

    def _loop_detected(self, route: Route, query: Query) -> bytes:
        if not route.looping:
            route.looping = True
            self.stats.loops_detected += 1
            log.error(
                "forwarding loop detected: a query sent to the upstreams for %s (%s) came back to "
                "kdns itself (CoreDNS loop plugin); refusing to forward %s until restart. Point "
                "--upstream at a resolver that does not forward to kdns.",
                route.zone,
                ", ".join(str(upstream) for upstream in route.group.upstreams),
                route.zone,
            )
        return query.error(SERVFAIL)

    async def close(self) -> None:
        """Let queries in flight finish (up to the upstream deadline), then close."""
        if self.tasks:
            deadline = (
                max(route.group.timeout for route in self.routes.values()) if self.routes else 0
            )
            await asyncio.wait(list(self.tasks), timeout=deadline)
        for task in list(self.tasks):
            task.cancel()
        for route in self.routes.values():
            await route.group.close()


def _own_opt(response: bytes, opt: bytes) -> bytes:
    """``response`` with kdns's own OPT record (``opt``, empty when the client sent none) in
    place of the upstream's: the payload size, DO bit and options the client sees are ours
    (an upstream's server cookie or NSID is not the client's business), the same whether the
    answer came straight from upstream or from the cache. Unchanged when it does not parse."""
    if len(response) < 12:
        return response
    an, ns, ar = struct.unpack_from("!HHH", response, 6)
    if not ar and not opt:
        return response
    try:
        pos = names.name_end(response, 12) + 4
        for _ in range(an + ns):
            pos = names.name_end(response, pos)
            pos += 10 + _U16.unpack_from(response, pos + 8)[0]
        additional = pos
        kept = []
        for _ in range(ar):
            start = pos
            pos = names.name_end(response, pos)
            rtype = _U16.unpack_from(response, pos)[0]
            pos += 10 + _U16.unpack_from(response, pos + 8)[0]
            if rtype != 41:  # not the OPT record
                kept.append(response[start:pos])
    except (ValueError, struct.error):
        return response
    if pos != len(response):
        return response
    count = _U16.pack(len(kept) + (1 if opt else 0))
    return response[:10] + count + response[12:additional] + b"".join(kept) + opt


_U16 = struct.Struct("!H")


def _append_answers(reply: bytes, upstream: bytes) -> bytes:
    """``reply`` (our CNAME answer) with the answer records of ``upstream`` appended.

    Only here, on the rare ExternalName path, does a DNS library parse and pack: the upstream's
    records may hold compression pointers into its own message, so they are re-packed.
    """
    try:
        ours = DNSRecord.parse(reply)
        theirs = DNSRecord.parse(upstream)
        for record in theirs.rr:
            ours.add_answer(record)
        return bytes(ours.pack())
    except Exception:  # dnslib raises several types on input it cannot parse or re-pack
        return reply


# ---------------------------------------------------------------------- routing plan


class RoutePlanError(ValueError):
    """The forwarding configuration cannot work (e.g. split mode without a secure upstream)."""


@dataclass
class Plan:
    routes: list[tuple[str, tuple[str, ...]]]  # (zone, upstreams), "." the default
    split: bool  # sidecar split mode is on: kdns forwards everything, serves no zone itself
    cluster_domains: tuple[str, ...] = ()


def plan_routes(
    *,
    upstreams: tuple[str, ...],
    forward_zones: tuple[tuple[str, tuple[str, ...]], ...],
    split: str,
    in_pod: bool,
    cluster_domain: str,
    cluster_domains: tuple[str, ...],
    cluster_nameserver: str | None,
    resolv_nameservers: list[str],
    resolv_search: list[str],
) -> Plan:
    """Which upstreams answer which zone; the most specific zone wins at query time.

    Normal mode: ``forward.zones`` rules, then "." to ``upstreams`` (default: resolv.conf's
    nameservers). Split mode (``on``, or ``auto`` inside a pod: VPN-sidecar DNS): the cluster
    domain, resolv.conf's search domains and the configured extras go to the cluster nameserver
    over plain DNS; everything else to ``upstreams``, which must then be given (sending public
    names to the cluster nameserver is the leak split mode exists to prevent).
    """
    routes = list(forward_zones)
    active = split == "on" or (split == "auto" and in_pod)
    domains: tuple[str, ...] = ()
    if active:
        if not upstreams:
            raise RoutePlanError(
                "split mode needs --upstream: the resolver for every name outside the cluster"
            )
        nameserver = cluster_nameserver or (resolv_nameservers[0] if resolv_nameservers else None)
        if nameserver is None:
            raise RoutePlanError(
                "split mode needs the cluster nameserver: none in resolv.conf, set "
                "--cluster-nameserver (KDNS_CLUSTER_NAMESERVER)"
            )
        domains = tuple(dict.fromkeys([cluster_domain, *resolv_search, *cluster_domains]))
        taken = {zone for zone, _ in routes}
        routes += [(domain, (nameserver,)) for domain in domains if domain not in taken]
    default = upstreams or tuple(resolv_nameservers)
    if default and all(zone != "." for zone, _ in routes):
        routes.append((".", default))
    return Plan(routes, active, domains)
