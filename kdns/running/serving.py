"""Serving: start (source, DNS listeners, HTTP, background tasks), signals, --workers, and the
stop (lameduck, then close). SIGTERM/SIGINT: lameduck (keep answering, /ready 503) -> stop
accepting -> finish TCP -> exit 0; a second signal exits at once."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from kdns import __version__
from kdns.k8s.static import used_counts, used_kinds
from kdns.metrics.pod import fold as fold_snapshot
from kdns.metrics.pod import parse_snapshot
from kdns.parts import (
    gateway_settings,
)
from kdns.running.reloading import Reloading

log = logging.getLogger("kdns")


class Serving(Reloading):
    async def serve(self) -> int:
        self.install_signals()
        self._start_workers()
        log.info(
            "kdns %s starting (cluster domain %s, config %s)",
            __version__,
            self.config.cluster_domain,
            self.config_hash,
        )
        await self.start_source()
        for address in self.config.listen:
            await self.listeners.bind(address)
        if self.killer is not None:
            self.killer.start()
        await self.start_http()
        if self.forwarder is not None:
            self._spawn(self.forwarder.check_loops())
        if self.config.reload_interval > 0:
            self._spawn(self._watch_data_files())
        self._spawn(self._refresh_lists())
        if self.config.config_file and self.config.reload_interval > 0:
            self._spawn(self._watch_config_file())
        if self.seat is not None and self.seat.restarted:
            # Forked with the configuration of the pod's start: catch up with the file, as
            # the first process did on its reloads (restart-only settings stay as they were).
            await self.reload("worker restarted")
        kinds = (
            [r.kind for r in self.cluster.reflectors]
            if self.cluster is not None
            else used_kinds(
                self.config.pods,
                gateway_settings(self.config).watched_kinds(),
                self.config.autopath,
            )
        )
        log.info("serving %s", used_counts(self.registry.counts(), kinds))
        await self.stopping.wait()
        await self.shutdown()
        log.info("stopped")
        return self.exit_code

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()

        def on_stop(signum: int) -> None:
            self._signal_workers(signum)
            if self.stopping.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received: shutting down", signal.Signals(signum).name)
            self.stop_signal = signum
            self.stopping.set()

        def on_hup() -> None:
            self._signal_workers(signal.SIGHUP)
            self._spawn(self.reload("SIGHUP"))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, on_hup)

    def _signal_workers(self, signum: int) -> None:
        """The first process passes signals on to the workers (--workers)."""
        if self.pool is not None:
            self.pool.signal(signum)

    def _worker_counts(self) -> tuple[int, int] | None:
        if self.seat is not None:
            return None  # the first process counts the workers
        if self.pool is None:
            return 1, 0
        return self.pool.processes, self.pool.restarts

    async def render_metrics(self) -> tuple[bytes, str]:
        """/metrics: this process's numbers, with --workers summed with every worker's."""
        if self.pool is None:
            return self.metrics.render()
        others = await self.pool.snapshots(parse_snapshot)
        others.append(self.metrics.process_snapshot(self.pool.spawner))
        return self.metrics.render(others)

    def _spawner_lost(self, why: str) -> None:
        """--workers: the spawner died (its workers with it). Count it, then stop (lameduck
        first, /ready 503) and exit 1 so Kubernetes restarts the pod with every process."""
        self.stats.spawner_deaths += 1
        self.exit_code = 1
        self.stopping.set()

    def _start_workers(self) -> None:
        self.metrics.process.share = self.pool is not None or self.seat is not None
        if self.pool is not None:
            self.pool.fold = fold_snapshot
            self.pool.on_spawner_lost = self._spawner_lost
            self.pool.attach()
        if self.seat is not None:
            self._spawn(self.seat.serve(self.metrics.snapshot_bytes, self._parent_gone))

    def _parent_gone(self) -> None:
        """The first process closed our channel: it is gone (or stopping, and so are we)."""
        if not self.stopping.is_set():
            log.error("the first process is gone: exiting")
            os._exit(1)

    def interactive_stop(self) -> bool:
        """Stopped by SIGINT (Ctrl-C) with a terminal on stdin, or serving the demo."""
        if self.stop_signal != signal.SIGINT:
            return False
        try:
            tty = sys.stdin is not None and sys.stdin.isatty()
        except (OSError, ValueError):
            tty = False
        return tty or self.config.demo

    async def shutdown(self) -> None:
        """Lameduck (CoreDNS health lameduck): keep answering while /ready fails, so the
        Service drops this endpoint before the sockets close; then stop accepting, let TCP
        connections finish, and release everything. Ctrl-C on an interactive run (a terminal,
        or --demo) skips the lameduck: nobody routes to it, and a restart must bind at once."""
        if self.config.lameduck > 0 and not self.interactive_stop():
            self.lameduck = True
            log.info("lameduck for %.1fs: answering, /ready reports 503", self.config.lameduck)
            await asyncio.sleep(self.config.lameduck)
        await self.listeners.close_all()
        if self.killer is not None:
            self.killer.stop()
        for task in self._tasks:
            task.cancel()
        if self.source is not None:
            await self.source.stop()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.forwarder is not None:
            await self.forwarder.close()
        await self.http.stop()
