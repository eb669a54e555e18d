"""What one query costs inside ``Responder.respond``, per query shape, metrics off and on.

No sockets: the demo cluster's registry, and the same query bytes answered many times (best of
7 rounds of CPU time), so the figures are the hot path alone. The search-path set answers 60,000
distinct NXDOMAIN names (20,000 walks of three steps), as pods with ndots:5 ask.

    .venv/bin/python benchmarks/hotpath.py
"""

from __future__ import annotations

import random
import time
from typing import Any

import dns.message

from kdns.authority.resolver import Resolver
from kdns.config import build_config
from kdns.k8s.static import StaticSource
from kdns.parts import build_registry
from kdns.server.meter import Meter
from kdns.server.wire import Responder

PEER = ("127.0.0.1", 5353)


def query(name: str, rdtype: str = "A", edns: bool = False) -> bytes:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    q.id = 1234
    return q.to_wire()


def walk_names(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        stem = "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 14)))
        for suffix in ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local"):
            out.append(query(f"{stem}.example.com.{suffix}"))
    rng.shuffle(out)
    return out


def cost(responder: Responder, queries: list[bytes], rounds: int = 7) -> float:
    """Best per-query CPU time (µs) over ``rounds`` passes (after one warming pass)."""
    for data in queries:
        responder.respond(data, 0, PEER, None)
    best = float("inf")
    repeat = max(1, 100_000 // len(queries))
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            for data in queries:
                responder.respond(data, 0, PEER, None)
        best = min(best, (time.process_time() - started) / (repeat * len(queries)))
    return best * 1e6


def main() -> None:
    config = build_config(None, {}, {"demo": True})
    registry = build_registry(config)
    StaticSource(registry, demo=True).load()
    resolver = Resolver(registry)
    shapes = {
        "positive A": [query("web.shop.svc.cluster.local")],
        "positive A, EDNS": [query("web.shop.svc.cluster.local", edns=True)],
        "NXDOMAIN": [query("web.shop.svc.cluster.local.shop.svc.cluster.local")],
        "NXDOMAIN, EDNS": [query("web.shop.svc.cluster.local.shop.svc.cluster.local", edns=True)],
        "NODATA": [query("web.shop.svc.cluster.local", "MX")],
        "pod name": [query("10-244-1-10.shop.pod.cluster.local")],
        "search-path walk, 60k names": walk_names(20_000),
    }
    print(f"{'query shape':32s} {'metrics off':>12s} {'metrics on':>12s}")
    for label, queries in shapes.items():
        row = []
        for meter in (None, Meter()):
            responder = Responder(registry.answers, resolver.resolve, 1232, meter)
            responder.derived = registry.derived
            row.append(cost(responder, queries))
        print(f"{label:32s} {row[0]:10.2f}µs {row[1]:10.2f}µs")
    first_sight(registry, resolver)


def first_sight(registry: Any, resolver: Resolver, names: int = 3000, rounds: int = 7) -> None:
    """Issue 23's "first-seen names at cached cost": a search-path name (EDNS, three steps of
    a walk) answered the first time it is asked, then from the derived memo (the reply memo
    emptied), then from the reply memo. Best of ``rounds`` passes over ``names`` new names
    each, metrics off: the ratio first / derived is the target (<= 1.3x)."""
    best = {"first sight": float("inf"), "derived memo": float("inf"), "reply memo": float("inf")}  # fmt: skip
    for round_ in range(rounds):
        stems = [f"r{round_}n{i}.example.com" for i in range(names // 3)]
        wires = [query(f"{stem}.{suffix}", edns=True) for stem in stems for suffix in ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")]  # fmt: skip
        responder = Responder(registry.answers, resolver.resolve, 1232, None)
        responder.derived = registry.derived
        for label in best:
            if label == "derived memo":
                responder.forget_replies()
            started = time.process_time()
            for data in wires:
                responder.respond(data, 0, PEER, None)
            best[label] = min(best[label], (time.process_time() - started) / len(wires) * 1e6)
    print(
        "search-path name, metrics off: "
        + ", ".join(f"{label} {cost:.2f}µs" for label, cost in best.items())
        + f"; first sight / derived memo = {best['first sight'] / best['derived memo']:.2f}x"
    )


if __name__ == "__main__":
    main()
