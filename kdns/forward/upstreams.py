"""Forwarding to upstream resolvers: CoreDNS's ``forward`` plugin, asyncio, in wire bytes.

A ``ForwardGroup`` is one CoreDNS ``forward`` block: a list of ``Upstream`` servers, a policy
that orders them per query (``random``, ``round_robin``, ``sequential``), a limit on queries in
flight (``max_concurrent``) and a deadline per client query. ``query(wire)`` sends the client's
query bytes upstream with a fresh random ID and hands back the upstream's response bytes with
the client's ID and question restored, otherwise untouched (so the question keeps the client's
letter case and the records are exactly what the upstream said).

Per upstream:

- ``udp`` (plain DNS): one connected UDP socket per query. The kernel picks a random ephemeral
  source port for each, so a spoofer has to guess port and ID (RFC 5452 4, 9.2), the kernel
  drops datagrams from any other address, and an ICMP port unreachable fails the query at once
  instead of after a timeout. The price is CPU: about 10k forwarded queries per second on one
  core with uvloop against a loopback upstream, where one shared socket would allow roughly
  twice that; answers worth that rate come from the cache in front, and a poisoned cluster
  resolver is worse than a busy one. Each query in flight holds a file descriptor (up to
  ``max_concurrent``). A reply with TC set is asked again over TCP of the same server
  (RFC 7766 5).
- ``tcp`` and ``tls`` (DNS over TLS, RFC 7858): a small pool (``pool_size``, default 2) of
  persistent connections, each carrying many queries at once (pipelining, RFC 7766 6.2.1.1)
  with replies matched by ID in any order; a connection idle for ``expire`` seconds is closed
  (CoreDNS's ``expire``, 10 s); one the server closed is replaced, and a query lost because the
  server closed a reused connection under it is sent once more on a fresh one (CoreDNS's
  ``ErrCachedClosed`` retry). TLS verifies the certificate against the system CAs or
  ``tls_ca_file`` with SNI and name check on ``server_name`` (the IP when none is given).
- Replies are accepted only with our ID, the QR bit and our question (name compared without
  regard to case, RFC 5452 9.1); anything else is ignored and counted in ``stats.mismatched``.
- Health, as CoreDNS: ``max_fails`` consecutive failed attempts (timeouts, connection errors;
  an answer of any RCODE, SERVFAIL included, is a success) mark the upstream down; a background
  task then sends ``. IN NS`` every ``health_check`` seconds until one is answered. A down
  upstream is skipped, unless every upstream is down: then they are all tried, in random order
  (CoreDNS picks a random one: "healthcheck broken").

Timeouts: a client query has ``timeout`` (2 s) in total and each attempt ``attempt_timeout``
(1 s, including a TC retry over TCP and any connection setup). CoreDNS allows 5 s in total and
2 s per read, but a stub resolver (glibc, musl) resends after 1 to 5 s, so a SERVFAIL it can
act on after 2 s beats an answer it stopped waiting for; 1 s per attempt leaves time for one
failover after a dead upstream that is not yet marked down. On failure the next upstream in
the policy's order is tried, and the list is walked at most twice (CoreDNS walks it until its
deadline), so a query to refusing upstreams fails fast instead of spinning. SERVFAIL answers
are returned, not failed over (CoreDNS's default; its ``next`` option is not implemented).

Where: this module holds ``ForwardGroup`` (policy, limits, failover); ``kdns.forward.upstream``
holds ``Upstream`` (transports, pool, health, counters) and ``kdns.forward.connections`` the
wire checks and the pipelined streams.

Nothing blocks: every wait is a coroutine bounded by its own timeout, so a slow upstream only
delays the queries sent to it. Statistics are plain ints on ``Upstream.stats`` and
``ForwardGroup.stats`` for a Prometheus collector to read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from kdns.forward.connections import (
    _RANDOM,
    LATENCY_BUCKETS,
    ForwardError,
    Overloaded,
    question_end,
)
from kdns.forward.upstream import Upstream, UpstreamStats, _adjust
from kdns.values import Upstream as UpstreamSpec
from kdns.values import parse_upstream

__all__ = [
    "LATENCY_BUCKETS",
    "POLICIES",
    "ForwardError",
    "ForwardGroup",
    "GroupStats",
    "Overloaded",
    "Upstream",
    "UpstreamSpec",
    "UpstreamStats",
    "parse_upstream",
    "question_end",
]

POLICIES = ("random", "round_robin", "sequential")


_PASSES = 2  # times the upstream list is walked per client query


@dataclass(slots=True, eq=False)
class GroupStats:
    overloaded: int = 0  # rejected by max_concurrent (CoreDNS max_concurrent_rejects_total)
    all_down: int = 0  # queries sent while every upstream was down (healthcheck_broken_total)
    failed: int = 0  # queries that raised ForwardError after trying


class ForwardGroup:
    """One CoreDNS ``forward`` block: upstreams, a policy, a concurrency limit and a deadline.

    ``upstreams`` are ``Upstream`` objects (used as they are) or specs (``"1.1.1.1"``,
    ``"tcp://10.0.0.2:53"``, ``"tls://1.1.1.1@cloudflare-dns.com"``, or a parsed
    ``kdns.config.Upstream``) built with the per-upstream settings given here.
    """

    def __init__(
        self,
        upstreams: Iterable[Upstream | UpstreamSpec | str],
        *,
        policy: str = "random",
        max_concurrent: int = 1000,
        timeout: float = 2.0,
        attempt_timeout: float = 1.0,
        max_fails: int = 2,
        health_check: float = 0.5,
        expire: float = 10.0,
        tls_ca_file: str | None = None,
        pool_size: int = 2,
        force_tcp: bool = False,
        prefer_udp: bool = False,
        tls_servername: str | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if max_concurrent < 1 or timeout <= 0 or attempt_timeout <= 0:
            raise ValueError("max_concurrent, timeout and attempt_timeout must be positive")
        upstreams = [_adjust(u, force_tcp, tls_servername) for u in upstreams]
        self.upstreams: tuple[Upstream, ...] = tuple(
            u
            if isinstance(u, Upstream)
            else Upstream(
                u,
                max_fails=max_fails,
                health_check=health_check,
                expire=expire,
                tls_ca_file=tls_ca_file,
                pool_size=pool_size,
                connect_timeout=attempt_timeout,
                health_timeout=attempt_timeout,
            )
            for u in upstreams
        )
        if not self.upstreams:
            raise ValueError("a forward group needs at least one upstream")
        self.policy = policy
        # CoreDNS forward: a query goes upstream over the transport it came in on (TCP in, TCP
        # out) unless ``prefer_udp``; ``force_tcp`` (upstreams turned tcp:// above) always TCP.
        self.prefer_udp = prefer_udp
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.stats = GroupStats()
        self.inflight = 0
        self._robin = 0
        self._closed = False

    def healthy(self) -> bool:
        """At least one upstream is not marked down."""
        return any(not u.down for u in self.upstreams)

    async def query(self, wire: bytes, *, tcp: bool = False) -> bytes:
        """Forward a client query (wire bytes, any ID) and return the upstream's response with
        the client's ID and question bytes restored.

        ``tcp``: the client asked over TCP, so plain-DNS upstreams are asked over TCP directly
        (CoreDNS uses the client's protocol). The response may be larger than the client's UDP
        limit after a TC retry: fitting it is the caller's job. Raises ``ValueError`` for a
        message that is not a one-question query, ``Overloaded`` beyond ``max_concurrent``,
        ``ForwardError`` when no upstream answered within ``timeout``.
        """
        if self._closed:
            raise ForwardError("forwarder is closed")
        if self.prefer_udp:
            tcp = False
        qend = question_end(wire)
        if self.inflight >= self.max_concurrent:
            self.stats.overloaded += 1
            raise Overloaded(f"{self.inflight} queries in flight (max_concurrent)")
        self.inflight += 1
        try:
            return await self._forward(wire, qend, tcp)
        finally:
            self.inflight -= 1

    async def close(self) -> None:
        self._closed = True
        await asyncio.gather(*(u.close() for u in self.upstreams))

    async def __aenter__(self) -> ForwardGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _order(self) -> list[Upstream]:
        """The upstreams in this query's policy order (CoreDNS policy.go)."""
        upstreams = self.upstreams
        if self.policy == "sequential" or len(upstreams) == 1:
            return list(upstreams)
        if self.policy == "round_robin":
            start = self._robin % len(upstreams)
            self._robin += 1
            return list(upstreams[start:] + upstreams[:start])
        return _RANDOM.sample(upstreams, len(upstreams))

    async def _forward(self, wire: bytes, qend: int, tcp: bool) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        order = self._order()
        errors: list[str] = []
        counted = False
        for _ in range(_PASSES):
            candidates = [u for u in order if not u.down]
            broken = not candidates
            if broken:
                # Every upstream is down: assume the health checks are what is broken and try
                # them all anyway, in random order.
                candidates = _RANDOM.sample(order, len(order))
            for upstream in candidates:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if broken and not counted:
                    self.stats.all_down += 1  # once per query that had to
                    counted = True
                try:
                    return await upstream.attempt(
                        wire, qend, min(remaining, self.attempt_timeout), tcp
                    )
                except OSError as exc:
                    errors.append(str(exc) or f"{upstream}: {type(exc).__name__}")
        self.stats.failed += 1
        raise ForwardError("no upstream answered: " + "; ".join(errors or ["timed out"]))
