"""The operator's HTTP endpoints: /health, /ready, /metrics (aiohttp).

Each endpoint listens where the config says (CoreDNS defaults :8080 health, :8181 ready,
:9153 metrics); endpoints configured on the same address share one listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger("kdns.http")

ReadyCheck = Callable[[], str | None]  # None when ready, else what is not ready
MetricsRender = Callable[[], tuple[bytes, str]]  # (body, content type)


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
        body, content_type = self.metrics()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def start(self, listeners: dict[str, tuple[str, int] | None]) -> None:
        """Serve each endpoint ("health", "ready", "metrics") on its address (None = off)."""
        handlers = {"health": self._health, "ready": self._ready, "metrics": self._metrics}
        by_address: dict[tuple[str, int], list[str]] = {}
        for endpoint, address in listeners.items():
            if address is not None:
                by_address.setdefault(address, []).append(endpoint)
        for (host, port), endpoints in by_address.items():
            app = web.Application()
            for endpoint in endpoints:
                app.router.add_get("/" + endpoint, handlers[endpoint])
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, host, port, reuse_address=True)
            await site.start()
            self.runners.append(runner)
            # The bound socket tells the real port when the config asked for port 0.
            sockets = getattr(site._server, "sockets", None) or ()
            sockname = sockets[0].getsockname() if sockets else (host, port)
            for endpoint in endpoints:
                self.bound[endpoint] = (sockname[0], sockname[1])
                log.info(
                    "%s listening on http://%s:%d/%s", endpoint, sockname[0], sockname[1], endpoint
                )

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        self.runners.clear()
