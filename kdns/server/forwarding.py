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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kdns.dns import names
from kdns.dns.cache import ResponseCache
from kdns.dns.forward import ForwardError, ForwardGroup, Overloaded
from kdns.dns.records import REFUSED, SERVFAIL
from kdns.server.wire import MIN_UDP, Query, Replier

log = logging.getLogger("kdns.forward")

HINFO = 13


@dataclass
class Route:
    zone: str  # "." for the default route
    group: ForwardGroup
    apex: bytes = b""
    looping: bool = False

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
        do = b"\x01" if query.edns is not None and query.edns.do else b"\x00"
        cd = b"\x01" if query.data[3] & 0x10 else b"\x00"
        return query.key + do + cd

    def handle(self, query: Query, replier: Replier | None, peer: Any) -> bytes | None:
        route = self._probes.get(query.name)
        if route is not None:
            return self._loop_detected(route, query)
        cache = self.cache
        key = b""
        if cache is not None:
            key = self.cache_key(query)
            hit = cache.get(key, query.data[:2], query.data[12 : query.qend])
            if hit is not None:
                self.stats.cache_hits += 1
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

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forward(self, route: Route, query: Query, key: bytes, replier: Replier, peer: Any) -> None:
        self.stats.forwarded += 1
        self.stats.by_zone[route.zone] = self.stats.by_zone.get(route.zone, 0) + 1
        try:
            response = await route.group.query(query.data)
        except Overloaded:
            self.stats.servfail += 1
            response = query.error(SERVFAIL)
        except ForwardError as exc:
            stale = None
            if self.cache is not None:
                stale = self.cache.get_stale(key, query.data[:2], query.data[12 : query.qend])
            if stale is not None:
                self.stats.stale_served += 1
                response = stale
            else:
                self.stats.servfail += 1
                log.debug("forwarding %s failed: %s", names.to_text(query.name), exc)
                response = query.error(SERVFAIL)
        else:
            if self.cache is not None:
                self.cache.put(key, response)
        replier.send_reply(self._fit(query, response), peer)

    def _prefetch(self, query: Query, key: bytes) -> None:
        route = self.route(query.name)
        if route is None or route.looping or self.cache is None:
            return
        self.stats.prefetches += 1
        cache = self.cache

        async def refresh() -> None:
            try:
                cache.put(key, await route.group.query(query.data))
            except (ForwardError, Overloaded):
                pass

        self._spawn(refresh())

    @staticmethod
    def _fit(query: Query, response: bytes) -> bytes:
        """A UDP answer larger than the client can take becomes an empty TC reply."""
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
            except (ForwardError, Overloaded, asyncio.TimeoutError):
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
                ", ".join(route.group.describe()),
                route.zone,
            )
        return query.error(SERVFAIL)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for route in self.routes.values():
            await route.group.close()
