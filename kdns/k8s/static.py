"""Static cluster sources: the built-in demo and manifest files (--objects).

Both go through the same slimming and the same ``Registry.replace`` as the API watch: one way
in. Manifest files are polled for changes (content hash, every ``poll_interval`` seconds) so a
homelab owner can edit them without a restart; a change that fails to load is logged and the
last good objects keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from kdns.dns.registry import Registry
from kdns.k8s.demo import demo_objects
from kdns.k8s.sources import SourceError, load_objects, manifest_files
from kdns.model import KINDS, KubeObject, Namespace

log = logging.getLogger("kdns.sources")


def apply_all(registry: Registry, objects: list[KubeObject]) -> None:
    """Make the registry hold exactly ``objects``, every kind swapped in one batch."""
    with registry.batch():
        for kind in KINDS:
            registry.replace(kind, [obj for obj in objects if obj.kind == kind])


def copy_objects(source: Registry, target: Registry) -> None:
    """Every object ``source`` holds, into ``target`` (a config reload re-rendering)."""
    objects: list[KubeObject] = [
        *source.services.values(),
        *source.slices.values(),
        *source.pods.values(),
    ]
    objects += [Namespace(name) for name in source.namespaces]
    apply_all(target, objects)


class StaticSource:
    def __init__(
        self,
        registry: Registry,
        *,
        demo: bool = False,
        paths: tuple[str, ...] = (),
        poll_interval: float = 5.0,
    ) -> None:
        self.registry = registry
        self.demo = demo
        self.paths = paths
        self.poll_interval = poll_interval
        self._digest = b""
        self._task: asyncio.Task[None] | None = None

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry

    def _fingerprint(self) -> bytes:
        digest = hashlib.sha256()
        for path in manifest_files(self.paths):
            digest.update(path.encode())
            with open(path, "rb") as handle:
                digest.update(handle.read())
        return digest.digest()

    def load(self) -> None:
        """Load once; raises SourceError (bad manifest) for the caller to report and exit."""
        if self.demo:
            objects = demo_objects()
            what = "demo cluster"
        else:
            self._digest = self._fingerprint()
            objects = load_objects(self.paths)
            what = ", ".join(self.paths)
        apply_all(self.registry, objects)
        self.registry.synced = True
        log.info("loaded %d objects from %s", len(objects), what)

    def start(self) -> None:
        if self.paths and self.poll_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                digest = self._fingerprint()
                if digest == self._digest:
                    continue
                objects = load_objects(self.paths)
            except (SourceError, OSError) as exc:
                log.error("manifest reload failed, keeping the last good objects: %s", exc)
                continue
            self._digest = digest
            apply_all(self.registry, objects)
            log.info("manifests changed: reloaded %d objects", len(objects))
