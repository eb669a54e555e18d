"""Static cluster sources: the built-in demo and manifest files (--objects).

Both go through the same slimming and the same ``Registry.replace`` as the API watch: one way
in. Manifest files are polled for changes (content hash, every ``poll_interval`` seconds) so a
homelab owner can edit them without a restart; a change that fails to load is logged and the
last good objects keep being served.

A reload that would *remove* objects (an empty or shrunken read) is not trusted at once: editors
and ``kubectl get > file`` rewrite a file by truncating it, then writing it, and a poll between
the two steps would empty the cluster (every name NXDOMAIN until the next poll). Such a read is
applied only when a second read, ``settle`` seconds later, finds the same content and nothing
wrote the files in between (inode, size and mtime unchanged); otherwise the file was still being
written, and the newer content is considered the same way. "Less" counts objects, endpoints and
ports: a file cut short mid-write can parse with every object and fewer endpoints. Reloads are parsed in a thread (kdns.k8s.background.parsing) and applied one object at a time,
a huge one in slices, with the event loop serving queries between slices of ~1 ms
(kdns.authority.slices.Pacer), so a large manifest does not stop DNS while it is rendered
(each name is swapped in whole: a query never sees half of a name's answers).

A read with no objects at all is never applied: ``kubectl get ... > file`` that fails (no
cluster, no credentials) leaves exactly an empty file, and applying it would empty the cluster.
It is logged and counted (``kdns_objects_reloads_kept_total``) and the last good objects keep
being served, unless the files say they are empty on purpose: a ``kind: List`` with
``items: []`` (what ``kubectl get -o yaml`` prints for nothing).

An apply holds ``lock`` (the app's reload lock): a config reload that rebuilds the registry
waits for it to finish, so it never swaps the registry out while the file is half applied into
the old one. Should the registry be swapped anyway (``set_registry`` by someone not holding the
lock), the file is applied again to the new one: a reload never loses part of an edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os

from kdns.authority.registry import Registry
from kdns.authority.slices import Pacer
from kdns.k8s.background import parsing, quiet_gc
from kdns.k8s.demo import demo_objects
from kdns.k8s.sources import SourceError, load_objects, manifest_files
from kdns.model import KINDS, EndpointSlice, KubeObject, Namespace, Service
from kdns.server.stats import Stats

log = logging.getLogger("kdns.sources")


def apply_all(registry: Registry, objects: list[KubeObject]) -> None:
    """Make the registry hold exactly ``objects``, every kind swapped in one batch."""
    with registry.batch():
        for kind in KINDS:
            registry.replace(kind, [obj for obj in objects if obj.kind == kind])


async def apply_gradually(
    registry: Registry, objects: list[KubeObject], pacer: Pacer | None = None
) -> None:
    """``apply_all`` without stalling the event loop: objects are upserted (then the missing
    ones deleted) one at a time, each rendered as it goes in (a huge one in slices of names,
    ``Registry.flush_steps``), in slices of work ``pacer`` cuts (kdns.authority.slices)."""
    pacer = pacer or Pacer()
    for kind in KINDS:
        keep: set[tuple[str, str]] = set()
        for obj in objects:
            if obj.kind != kind:
                continue
            keep.add(obj.key)
            with registry.deferred():
                registry.upsert(obj)
            # Rendered now, in slices for a huge object (each name swapped in whole).
            await pacer.run(registry.flush_steps())
        for key in [k for k in registry.keys(kind) if k not in keep]:
            with registry.deferred():
                registry.delete(kind, key)
            await pacer.run(registry.flush_steps())


def declares_empty(paths: tuple[str, ...]) -> bool:
    """True when a manifest says "no objects" on purpose: a ``kind: List`` with ``items: []``
    (kubectl's output for an empty result), as opposed to an empty or truncated file."""
    import yaml

    for path in manifest_files(paths):
        try:
            with open(path, "rb") as handle:
                documents = list(yaml.safe_load_all(handle))
        except (OSError, yaml.YAMLError):
            continue
        for doc in documents:
            if isinstance(doc, dict) and doc.get("kind") == "List" and doc.get("items") == []:
                return True
    return False


def used_counts(counts: dict[str, int], kinds: list[str] | set[str]) -> dict[str, int]:
    """The registry's counts for a log line, of the kinds kdns uses only: Gateway API kinds
    and Ingress only when gateway zones watch them, Pods only under ``pods verified``."""
    return {k: n for k, n in counts.items() if k in kinds or k not in KINDS}


def used_kinds(pods: str, gateway_kinds: list[str], autopath: bool = False) -> list[str]:
    """What a static source's objects are used for, by kind (see ``used_counts``)."""
    base = ["Service", "EndpointSlice", "Namespace"]
    return [*base, *(["Pod"] if pods == "verified" or autopath else []), *gateway_kinds]


def _weight(objects: list[KubeObject]) -> int:
    """How much a read holds: objects, endpoints and ports. A file cut short mid-rewrite can
    parse with as many objects and fewer endpoints."""
    weight = len(objects)
    for obj in objects:
        if isinstance(obj, EndpointSlice):
            weight += len(obj.endpoints) + len(obj.ports)
        elif isinstance(obj, Service):
            weight += len(obj.ports)
    return weight


def copy_objects(source: Registry, target: Registry) -> None:
    """Every object ``source`` holds, into ``target`` (a config reload re-rendering)."""
    objects: list[KubeObject] = [
        *source.services.values(),
        *source.slices.values(),
        *source.pods.values(),
        *source.gateway.objects(),
    ]
    # With their labels: Gateway listeners' namespace selectors read them.
    labels = source.gateway.ns_labels
    objects += [Namespace(name, labels.get(name, ())) for name in source.namespaces]
    apply_all(target, objects)


class StaticSource:
    def __init__(
        self,
        registry: Registry,
        *,
        demo: bool = False,
        paths: tuple[str, ...] = (),
        poll_interval: float = 5.0,
        settle: float = 1.0,
    ) -> None:
        self.registry = registry
        self.demo = demo
        self.paths = paths
        self.poll_interval = poll_interval
        self.settle = settle  # seconds before re-reading a read that would remove objects
        self._weight = 0  # size of the last good read (see _weight)
        self._digest = b""
        self._task: asyncio.Task[None] | None = None
        self.empty_kept = 0  # reloads that read no objects and kept the last good ones
        self.stats: Stats | None = None  # counts them for /metrics too
        self.lock: asyncio.Lock | None = None  # taken around each reload's apply (see above)

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
        self._weight = _weight(objects)
        with quiet_gc():
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
            await self.poll()

    def _stamp(self) -> tuple[tuple[str, int, int, int], ...]:
        """Each file's (path, inode, size, mtime): changes with every write, even one that
        leaves the content as it was."""
        stamps = []
        for path in manifest_files(self.paths):
            st = os.stat(path)
            stamps.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    async def poll(self) -> bool:
        """Reload when the manifests changed; True when new objects were applied."""
        try:
            stamp = await asyncio.to_thread(self._stamp)
            digest = await asyncio.to_thread(self._fingerprint)
            if digest == self._digest:
                return False
            # Parsed off the event loop: YAML of a 10,000-endpoint slice takes a second of
            # CPU; in a thread the loop still gets the interpreter every few milliseconds.
            with parsing():
                objects = await asyncio.to_thread(load_objects, self.paths)
            for _ in range(5):
                if _weight(objects) >= self._weight:
                    break
                # Less than is served (fewer objects, endpoints or ports): maybe a rewrite
                # caught between truncate and write. Believe it only if nothing wrote the
                # files for a moment and they still read the same.
                await asyncio.sleep(self.settle)
                again_stamp = await asyncio.to_thread(self._stamp)
                again = await asyncio.to_thread(self._fingerprint)
                if again == digest and again_stamp == stamp:
                    break
                log.info("manifests changed while being read; reading them again")
                stamp, digest = again_stamp, again
                with parsing():
                    objects = await asyncio.to_thread(load_objects, self.paths)
            else:
                log.warning("manifests keep changing; keeping the last good objects for now")
                return False
        except (SourceError, OSError) as exc:
            log.error("manifest reload failed, keeping the last good objects: %s", exc)
            return False
        if digest == self._digest:
            return False  # the rewrite ended where it started
        if not objects and self._weight and not await asyncio.to_thread(declares_empty, self.paths):  # fmt: skip
            # An empty file (a failed `kubectl get > file`) is not an empty cluster. Looked
            # at again on the next change of the files.
            self._digest = digest
            self.empty_kept += 1
            if self.stats is not None:
                self.stats.objects_kept += 1
            log.warning(
                "manifests %s hold no objects: keeping the last good objects (write a "
                "`kind: List` with `items: []` to serve an empty cluster)",
                ", ".join(self.paths),
            )
            return False
        self._digest = digest
        self._weight = _weight(objects)
        async with self.lock or contextlib.nullcontext():
            while True:
                target = self.registry
                with quiet_gc():
                    await apply_gradually(target, objects)
                if self.registry is target:
                    break
                log.info("the registry was rebuilt during the manifest reload: applying again")
        log.info("manifests changed: reloaded %d objects", len(objects))
        return True
