"""The live cluster source: one Reflector per needed resource, and sync tracking.

Needed resources: Services, EndpointSlices, Namespaces always; Pods only under
``pods verified`` (insecure mode computes pod answers from the name and never looks pods up;
endpoint pod names come from EndpointSlice targetRefs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kdns.dns.registry import Registry
from kdns.k8s.kube import ApiClient
from kdns.k8s.reflector import RESOURCES, Histogram, Reflector

log = logging.getLogger("kdns.k8s")


def needed_kinds(pods_mode: str) -> list[str]:
    kinds = ["Service", "EndpointSlice", "Namespace"]
    if pods_mode == "verified":
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
    ) -> None:
        self.registry = registry
        self.api_client = api_client
        self.programming: dict[str, Histogram] = {}  # service kind -> histogram
        self.reflectors = [
            Reflector(
                RESOURCES[kind],
                api_client,
                registry,
                page_size=page_size,
                programming=self.programming if kind == "EndpointSlice" else None,
            )
            for kind in needed_kinds(pods_mode)
        ]
        self.tasks: list[asyncio.Task[None]] = []
        self.synced = asyncio.Event()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(r.run(), name=f"reflector-{r.kind}") for r in self.reflectors
        ]
        self.tasks.append(loop.create_task(self._wait_synced(), name="cluster-sync"))

    async def _wait_synced(self) -> None:
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors))
        self.registry.synced = True
        self.synced.set()
        log.info("synced with the API server: %s", self.registry.counts())

    def set_registry(self, registry: Registry) -> None:
        """Feed a new registry from now on (a reload that re-renders; objects already copied)."""
        self.registry = registry
        for reflector in self.reflectors:
            reflector.registry = registry

    def not_synced(self) -> list[str]:
        return [r.kind for r in self.reflectors if not r.synced.is_set()]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.api_client.close()
