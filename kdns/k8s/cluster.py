"""The live cluster source: one Reflector per needed resource, and sync tracking.

Needed resources: Services, EndpointSlices, Namespaces always; Pods only under
``pods verified`` (insecure mode computes pod answers from the name and never looks pods up;
endpoint pod names come from EndpointSlice targetRefs); Gateways, HTTPRoutes, GRPCRoutes,
TLSRoutes and Ingresses only when gateway zones are configured (``gateway_kinds``), started and
stopped as a config reload turns them on and off.

Readiness: synced when every reflector is *settled*: listed once, or (an optional resource)
known to be absent from the API. A Gateway API CRD that is not installed does not keep /ready
at 503; its reflector keeps retrying, and its routes are served once the CRD appears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kdns.authority.registry import Registry
from kdns.k8s.kube import ApiClient
from kdns.k8s.reflector import RESOURCES, Histogram, Reflector

log = logging.getLogger("kdns.k8s")


def needed_kinds(pods_mode: str, autopath: bool = False) -> list[str]:
    kinds = ["Service", "EndpointSlice", "Namespace"]
    if pods_mode == "verified" or autopath:  # autopath: a client's namespace from its pod IP
        kinds.append("Pod")
    return kinds


class ClusterSource:
    def __init__(
        self,
        registry: Registry,
        api_client: ApiClient,
        *,
        pods_mode: str,
        page_size: int = 500,
        gateway_kinds: list[str] | None = None,
        autopath: bool = False,
    ) -> None:
        self.registry = registry
        self.api_client = api_client
        self.page_size = page_size
        self.programming: dict[str, Histogram] = {}  # service kind -> histogram
        self.reflectors = [
            self._reflector(kind)
            for kind in needed_kinds(pods_mode, autopath) + (gateway_kinds or [])
        ]
        self.tasks: list[asyncio.Task[None]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}  # kind -> its reflector's task
        self.synced = asyncio.Event()

    def _reflector(self, kind: str) -> Reflector:
        return Reflector(
            RESOURCES[kind],
            self.api_client,
            self.registry,
            page_size=self.page_size,
            programming=self.programming if kind == "EndpointSlice" else None,
        )

    def _run(self, reflector: Reflector) -> None:
        task = asyncio.get_running_loop().create_task(
            reflector.run(), name=f"reflector-{reflector.kind}"
        )
        self.tasks.append(task)
        self._runs[reflector.kind] = task

    def start(self) -> None:
        for reflector in self.reflectors:
            self._run(reflector)
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self._wait_synced(), name="cluster-sync"))

    def set_gateway_kinds(self, kinds: list[str]) -> None:
        """Watch exactly these gateway kinds from now on (a reload changed [gateway]): new
        reflectors start; the ones no longer needed stop and their objects leave."""
        for reflector in [r for r in self.reflectors if r.resource.optional]:
            if reflector.kind not in kinds:
                self.reflectors.remove(reflector)
                task = self._runs.pop(reflector.kind, None)
                if task is not None:
                    task.cancel()
                    self.tasks.remove(task)
                self.registry.replace(reflector.kind, [])
        have = {r.kind for r in self.reflectors}
        for kind in kinds:
            if kind not in have:
                reflector = self._reflector(kind)
                self.reflectors.append(reflector)
                self._run(reflector)

    async def _wait_synced(self) -> None:
        await asyncio.gather(*(r.settled.wait() for r in self.reflectors))
        self.registry.synced = True
        self.synced.set()
        from kdns.k8s.static import used_counts

        watched = [r.kind for r in self.reflectors]
        log.info("synced with the API server: %s", used_counts(self.registry.counts(), watched))

    def set_registry(self, registry: Registry) -> None:
        """Feed a new registry from now on (a reload that re-renders; objects already copied)."""
        self.registry = registry
        for reflector in self.reflectors:
            reflector.registry = registry

    def not_synced(self) -> list[str]:
        return [r.kind for r in self.reflectors if not r.settled.is_set()]

    def absent(self) -> list[str]:
        """Optional kinds the API server does not serve (yet)."""
        return [r.kind for r in self.reflectors if r.absent]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.api_client.close()
