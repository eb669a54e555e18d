"""The operator's HTTP endpoints: /health, /ready, /metrics (aiohttp).

Each endpoint listens where the config says (CoreDNS defaults :8080 health, :8181 ready,
:9153 metrics); endpoints configured on the same address share one listener. Addresses bind
as the DNS ones do (kdns.server.sockets): ``:8080`` is 0.0.0.0:8080 and [::]:8080.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from kdns.config import format_hostport
from kdns.server.sockets import TCP, bind_address

log = logging.getLogger("kdns.http")

ReadyCheck = Callable[[], str | None]  # None when ready, else what is not ready
# (body, content type); a coroutine when /metrics gathers the workers' numbers (--workers)
MetricsRender = Callable[[], tuple[bytes, str] | Awaitable[tuple[bytes, str]]]


class HttpEndpoints:
    def __init__(self, ready: ReadyCheck, metrics: MetricsRender) -> None:
        self.ready = ready
        self.metrics = metrics
        self.runners: list[web.AppRunner] = []
        self.bound: dict[str, tuple[str, int]] = {}

    async def _health(self, request: web.Request) -> web.Response:
        # Liveness: the process and its loop answer. Stays 200 during lameduck (CoreDNS health).
        return web.Response(text="OK\n")

    async def _ready(self, request: web.Request) -> web.Response:
        problem = self.ready()
        if problem is None:
            return web.Response(text="OK\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        result = self.metrics()
        body, content_type = result if isinstance(result, tuple) else await result
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, listeners: dict[str, tuple[str, int] | None]) -> None:
        """Serve each endpoint ("health", "ready", "metrics") on its address (None = off)."""
        handlers = {"health": self._health, "ready": self._ready, "metrics": self._metrics}
        by_address: dict[tuple[str, int], list[str]] = {}
        for endpoint, address in listeners.items():
            if address is not None:
                by_address.setdefault(address, []).append(endpoint)
        for address, endpoints in by_address.items():
            # Raises ListenError naming the endpoints: "health: cannot listen on ...".
            groups = bind_address("+".join(endpoints), address, (TCP,))
            app = web.Application()
            for endpoint in endpoints:
                app.router.add_get("/" + endpoint, handlers[endpoint])
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            self.runners.append(runner)  # stop() cleans it up whatever happens next
            try:
                await runner.setup()
                while groups:
                    group = groups[0]
                    await web.SockSite(runner, group.sockets[TCP]).start()
                    groups.pop(0)
                    for endpoint in endpoints:
                        self.bound.setdefault(endpoint, (group.host, group.port))
                        where = format_hostport((group.host, group.port))
                        log.info("%s listening on http://%s/%s", endpoint, where, endpoint)
            finally:
                for group in groups:  # not handed to a site: still ours to close
                    group.close()

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()
        self.bound.clear()
