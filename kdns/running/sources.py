"""Where the cluster's objects come from: the demo, manifests (--objects), the API server
(watched), or nothing (kubernetes.enabled = false: local zones and forwarding only); and
readiness, which waits for the first full sync."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kdns.k8s.client import api_client
from kdns.k8s.static import StaticSource
from kdns.parts import (
    StartupError,
    gateway_settings,
)
from kdns.running.wiring import Wiring

log = logging.getLogger("kdns")


class Sources(Wiring):
    def not_ready(self) -> str | None:
        if self.lameduck:
            return "shutting down (lameduck)"
        if self.registry.synced:
            return None
        if self.cluster is not None:
            return "waiting for the first list of " + ", ".join(self.cluster.not_synced())
        return "waiting for the first full sync of cluster objects"

    async def start_source(self) -> None:
        config = self.config
        if self.split and not (config.demo or config.objects):
            # Sidecar split DNS: the cluster's own DNS answers cluster names; kdns only routes.
            self.registry.synced = True
            return
        if config.demo:
            self._start_static(StaticSource(self.registry, demo=True))
        elif config.objects:
            self._start_static(StaticSource(self.registry, paths=config.objects))
        elif not config.kubernetes_enabled:
            if self.forwarder is None and not config.local_zones:
                raise StartupError(
                    "nothing to serve: kubernetes.enabled is false, no --demo or --objects, "
                    "and no forwarding (--no-forward, or no upstreams)"
                )
            log.info(
                "kubernetes.enabled is false: %s, no cluster zones",
                "forwarding only" if self.forwarder is not None else "local zones only",
            )
            self.registry.synced = True  # nothing to wait for: /ready is 200 at once
        else:
            found = await api_client(config.kubeconfig)
            if found is None:
                # Demo data only when asked for: a /ready 200 on made-up Services would hide
                # a missing cluster.
                raise StartupError(
                    "no Kubernetes cluster found (not in a pod, no --kubeconfig, no KUBECONFIG, "
                    "no ~/.kube/config): point kdns at one with --kubeconfig FILE, serve "
                    "manifests with --objects PATH, or the built-in demo cluster with --demo"
                )
            from kdns.k8s.cluster import ClusterSource

            client, where = found
            log.info("watching the API server through %s", where)
            self.cluster = ClusterSource(
                self.registry,
                client,
                pods_mode=config.pods,
                gateway_kinds=gateway_settings(config).watched_kinds(),
                autopath=config.autopath,
            )
            # Until the first list completes every cluster name answers SERVFAIL, even ones
            # already known: the hot path starts with an empty answers dict (no extra check).
            self.responder.answers = {}
            self.cluster.start()
            self._spawn(self._startup_timeout())

    def _start_static(self, source: StaticSource) -> None:
        self.source = source
        source.lock = self._reload_lock  # its reloads and registry rebuilds take turns
        source.stats = self.stats  # empty reads kept out: kdns_objects_reloads_kept_total
        source.load()
        source.start()

    async def _startup_timeout(self) -> None:
        """CoreDNS: wait up to startup_timeout for the first sync, then serve what is known;
        names not known yet keep answering SERVFAIL (never NXDOMAIN) until synced."""
        assert self.cluster is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.cluster.synced.wait(), self.config.startup_timeout)
        if not self.cluster.synced.is_set():
            log.warning(
                "not synced after %.1fs (%s pending): serving what is known",
                self.config.startup_timeout,
                ", ".join(self.cluster.not_synced()),
            )
        self.responder.answers = self.registry.answers
