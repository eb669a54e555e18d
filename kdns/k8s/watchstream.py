"""A watch response read as events, each applied without stalling the loop that serves queries.

kdns.k8s.reflector reads each line of a watch (one JSON event), parses it (in a thread when it
is over BIG_EVENT bytes: kdns.k8s.background.parsing) and applies it with ``render`` before
reading the next, so events still apply in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp

from kdns.authority.registry import Registry
from kdns.authority.slices import Pacer
from kdns.k8s.background import quiet_gc

# A watch line (one object) longer than this is parsed and slimmed in a thread: a 10,000-endpoint
# EndpointSlice is 0.6 MB of JSON, 30-50 ms of parsing; a normal object is a few hundred bytes.
BIG_EVENT = 64 * 1024


_DONE = object()
MAX_LINE = 64 << 20  # one watch event; etcd stores objects of 1.5 MiB at most by default


async def lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The watch stream's lines (one JSON event each), joined once from the chunks they came
    in: aiohttp's readline appends each chunk to what it has (``chunk += data``), quadratic in
    the chunks of a line: 10-14 ms of one loop turn for a 0.6 MB event."""
    parts: list[bytes] = []
    size = 0
    async for data in content.iter_any():
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            parts.append(data[start:end])
            yield b"".join(parts)
            parts, size = [], 0
            start = end + 1
        if start < len(data):
            parts.append(data[start:])
            size += len(data) - start
            if size > MAX_LINE:
                raise ValueError(f"a watch event longer than {MAX_LINE} bytes")
    if parts:
        yield b"".join(parts)


async def render(registry: Registry) -> None:
    """Render what changed: small owners at once (as ``flush``), a huge one (a Service of
    thousands of endpoints) in slices with the loop serving queries between them, instead of
    one step of 0.2-0.9 s. The next event waits for it: events still apply in order. GC paused
    meanwhile (kdns.k8s.background.quiet_gc)."""
    steps = registry.flush_steps()
    if next(steps, _DONE) is _DONE:
        return  # nothing big: flushed at once
    with quiet_gc():
        try:
            await Pacer().run(steps)
        except asyncio.CancelledError:
            for _ in steps:  # stopped mid-render: finish at once, never half committed
                pass
            raise
