"""Kubernetes manifests on disk -> slim objects (``--objects PATH`` and the demo cluster).

Accepts what people actually have lying around: ``kubectl get -o yaml`` / ``-o json`` output,
multi-document YAML as applied with ``kubectl apply -f``, ``kind: List`` and typed lists
(``ServiceList`` as the API returns it, whose items carry no ``kind``), and directories of those.
Every object goes through ``kdns.k8s.objects`` exactly like a watch event does.

Errors are ``SourceError`` with a one-line message naming the file and, when known, the line:
``objects: /etc/kdns/svc.yaml:12: mapping values are not allowed here``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import yaml

from kdns.k8s.objects import SLIMMERS, slimmer_for
from kdns.model import KubeObject

__all__ = ["SourceError", "iter_raw", "load_objects", "manifest_files"]

log = logging.getLogger("kdns.sources")

# The C loader is ~10x faster on big `kubectl get pods -o yaml` dumps; fall back when PyYAML
# was built without libyaml. Safe loaders only: manifests must never construct Python objects.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# Why a kind is skipped, for the one warning per kind; anything else gets the generic reason.
_SKIP_REASONS = {
    "Endpoints": "kdns reads EndpointSlices (discovery.k8s.io/v1), not core/v1 Endpoints",
}


class SourceError(Exception):
    """A manifest that cannot be loaded. ``str()`` is one line: ``objects: FILE[:LINE]: why``."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        self.path = path
        self.line = line  # 1-based, None when unknown
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"objects: {where}: {problem}")


class _Located(NamedTuple):
    """A raw object and where it came from, for error messages."""

    raw: dict[str, Any]
    path: str
    line: int | None  # line the object starts on (YAML only)
    where: str  # "document 3" or "document 1, item 4"

    def origin(self) -> str:
        """``objects: FILE[:LINE]: document N`` for log lines."""
        line = "" if self.line is None else f":{self.line}"
        return f"objects: {self.path}{line}: {self.where}"

    def error(self, problem: str) -> SourceError:
        return SourceError(self.path, f"{self.where}: {problem}", self.line)


# --- files -----------------------------------------------------------------------------------


def _walk(root: str) -> list[str]:
    """Manifest files under a directory, recursively, in sorted path order.

    Entries starting with "." are skipped: a ConfigMap mounted as a volume holds every file
    twice, once through the ``..data`` symlink and once in a ``..2024_01_01_...`` directory,
    and editors leave ``.x.yaml.swp`` files. Symlinked directories are not followed (no loops).
    """
    found: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        found.extend(
            (*parts, f)
            for f in filenames
            if not f.startswith(".") and f.lower().endswith(MANIFEST_SUFFIXES)
        )
    return [os.path.join(root, *p) for p in sorted(found)]


def manifest_files(paths: Iterable[str]) -> list[str]:
    """The files ``paths`` name: files as given (any extension), directories expanded."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = _walk(path)
            if not found:
                log.warning("objects: %s: no .yaml, .yml or .json files in directory", path)
            files.extend(found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise SourceError(path, "no such file or directory")
    return files


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise SourceError(path, (e.strerror or str(e)).lower()) from None


# --- documents -------------------------------------------------------------------------------


def _yaml_documents(path: str, data: bytes) -> Iterator[tuple[Any, yaml.Node | None]]:
    """(document, node) pairs; the node carries line numbers for error messages."""
    loader = _Loader(data)
    try:
        while loader.check_node():
            node = loader.get_node()
            yield loader.construct_document(node), node
    except yaml.MarkedYAMLError as e:
        problem = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            problem = f"{e.problem} ({e.context})"
        mark = e.problem_mark or e.context_mark
        raise SourceError(path, problem, None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as e:  # reader errors (bad bytes) carry no line mark
        raise SourceError(path, str(e).splitlines()[0]) from None
    finally:
        loader.dispose()


def _json_documents(path: str, data: bytes) -> Iterator[tuple[Any, yaml.Node | None]]:
    try:
        yield json.loads(data), None
    except json.JSONDecodeError as e:
        raise SourceError(path, f"invalid JSON: {e.msg}", e.lineno) from None
    except UnicodeDecodeError:
        raise SourceError(path, "not UTF-8 text") from None


def _line(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _item_nodes(node: yaml.Node | None) -> list[yaml.Node]:
    """The nodes of a list document's ``items``, to give each item its own line."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "items" and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    return []


def _expand(
    doc: dict[str, Any], node: yaml.Node | None, path: str, where: str
) -> Iterator[_Located]:
    """One object, or the items of a list object (``kind: List``, ``ServiceList``, ...)."""
    kind = doc.get("kind")
    items = doc.get("items")
    if not (isinstance(kind, str) and kind.endswith("List") and isinstance(items, list)):
        if not kind:
            raise SourceError(path, f"{where}: object has no kind", _line(node))
        yield _Located(doc, path, _line(node), where)
        return
    # Items of a typed list (ServiceList from the API) omit kind and apiVersion: inherit them.
    item_kind = kind[: -len("List")] if kind != "List" else None
    nodes = _item_nodes(node)
    for i, item in enumerate(items):
        item_node = nodes[i] if i < len(nodes) else node
        item_where = f"{where}, item {i + 1}"
        if not isinstance(item, dict):
            raise SourceError(path, f"{item_where}: expected an object", _line(item_node))
        if item_kind and not item.get("kind"):
            item = {**item, "kind": item_kind, "apiVersion": doc.get("apiVersion")}
        yield from _expand(item, item_node, path, item_where)


def _iter_located(paths: Iterable[str]) -> Iterator[_Located]:
    for path in manifest_files(paths):
        data = _read(path)
        docs = _json_documents if path.lower().endswith(".json") else _yaml_documents
        for n, (doc, node) in enumerate(docs(path, data), start=1):
            where = f"document {n}"
            if doc is None:
                continue  # an empty document, e.g. a trailing "---"
            if not isinstance(doc, dict):
                kind = type(doc).__name__
                raise SourceError(
                    path, f"{where}: expected a Kubernetes object, found a {kind}", _line(node)
                )
            yield from _expand(doc, node, path, where)


def iter_raw(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Every raw object in ``paths``, lists flattened, before slimming. Raises SourceError."""
    for located in _iter_located(paths):
        yield located.raw


# --- objects ---------------------------------------------------------------------------------


def _slim(located: _Located) -> KubeObject | None | str:
    """The slim object, None when not served, or the label of a kind DNS does not use."""
    raw = located.raw
    kind, api_version = raw.get("kind"), raw.get("apiVersion")
    slimmer = slimmer_for(kind, api_version)
    if slimmer is None:
        # Name the group when a kind we know comes from another one (Knative's Service).
        return f"{api_version} {kind}" if kind in SLIMMERS else str(kind)
    try:
        return slimmer(raw)
    except ValueError as e:
        raise located.error(str(e)) from None
    except (AttributeError, TypeError, KeyError) as e:  # a field of the wrong shape
        raise located.error(f"malformed {kind}: {type(e).__name__}: {e}") from None


def _warn_skipped(skipped: Counter[str]) -> None:
    for label, count in sorted(skipped.items()):
        reason = _SKIP_REASONS.get(label, "DNS does not use this kind")
        noun = "object" if count == 1 else "objects"
        log.warning("objects: skipped %d %s %s: %s", count, label, noun, reason)


def load_objects(paths: Iterable[str]) -> list[KubeObject]:
    """Slim objects from manifest files and directories, in file order.

    Kinds DNS does not use are skipped with one warning per kind. An object defined twice
    (same kind, namespace and name) keeps its first position and its last definition, like
    applying the files in order. Raises SourceError.
    """
    objects: dict[tuple[str, str, str], KubeObject] = {}
    skipped: Counter[str] = Counter()
    for located in _iter_located(paths):
        obj = _slim(located)
        if isinstance(obj, str):
            skipped[obj] += 1
        elif obj is not None:  # None: finished pod, FQDN slice... exists but not served
            key = (obj.kind, *obj.key)
            if key in objects:
                log.warning(
                    "%s: %s is defined again; the last definition wins",
                    located.origin(),
                    "/".join(p for p in key if p),
                )
            objects[key] = obj
    _warn_skipped(skipped)
    return list(objects.values())
