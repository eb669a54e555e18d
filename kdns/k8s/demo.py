"""The built-in demo cluster (``kdns serve --demo``, ``make demo``).

The cluster lives in ``demo.yaml`` next to this module, as ordinary manifests, and is loaded
through ``load_objects`` like ``--objects FILE``: the demo exercises the real ingest path
instead of being a second one that could drift from it.
"""

from __future__ import annotations

from importlib.resources import as_file, files

from kdns.k8s.sources import load_objects
from kdns.model import KubeObject

__all__ = ["DEMO_RESOURCE", "demo_objects"]

DEMO_RESOURCE = "demo.yaml"


def demo_objects() -> list[KubeObject]:
    """The demo cluster's slim objects (a fresh list on each call)."""
    # as_file: the package may be installed zipped; load_objects wants a real path.
    with as_file(files(__package__ or "kdns.k8s").joinpath(DEMO_RESOURCE)) as path:
        return load_objects([str(path)])
