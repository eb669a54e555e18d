"""The parts of kubernetes_asyncio kdns uses, without the generated code it never runs.

kdns uses kubernetes_asyncio for what is hard to get right: loading a kubeconfig or the
in-cluster service account (exec and OIDC plugins, token refresh, client certificates) into a
``Configuration``, and the ``ApiClient`` that authenticates each request and owns the aiohttp
connection. It never builds an OpenAPI model object (the reflector reads raw JSON) and never
calls a generated ``*Api`` class (they only assemble a path and query parameters).

Yet ``import kubernetes_asyncio.<anything>`` runs the package ``__init__``, which imports every
API class and every model: ~800 modules, ~45 MB resident, 0.3-1.5 s of start time. So before
the first import, the three package ``__init__`` files on that path (``kubernetes_asyncio``,
``.client``, ``.client.models``) are registered as *lazy packages*: real packages (real
``__spec__`` and ``__path__``, so their submodules import as usual) whose own ``__init__``
runs on the first use of a name it would define. Nothing changes for other code in the same
process: ``from kubernetes_asyncio import client; client.CoreV1Api`` still works, it just
pays for the full import at that moment instead of at kdns's start.

Nothing is done when the packages are already imported (a process that loaded the whole
client before kdns): then everything is simply there.

The same goes for three third-party modules those few client modules import for code kdns
never runs: ``dateutil.parser`` (deserialising model dates), ``multiprocessing.pool`` (the
``async_req`` thread pool) and ``urllib3`` (a basic-auth header helper), ~3 MiB resident
together. While the client modules are imported they see *stand-ins*; once imported, the
stand-ins leave ``sys.modules`` (any later ``import urllib3`` gets the real module), and the
names the client bound to them load the real module on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

# Outermost first: a submodule's spec is found through its parent's __path__.
LAZY_PACKAGES = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.models",
)

_lock = threading.RLock()


class LazyPackage(ModuleType):
    """A package whose ``__init__`` has not run yet; the first unknown attribute runs it."""

    def __getattr__(self, attr: str) -> Any:
        # Dunder lookups (__path__ is set; __all__, __wrapped__... probed by tools) must not
        # trigger the load: only names the package's __init__ would define do.
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        with _lock:
            # ``from package import submodule`` asks for the attribute first: a submodule is
            # imported on its own, as it would be from an initialised package.
            qualified = f"{self.__name__}.{attr}"
            if qualified in sys.modules or importlib.util.find_spec(qualified) is not None:
                return importlib.import_module(qualified)
            load = self.__dict__.pop("_kdns_load_init", None)
            if load is not None:
                load()
        try:
            return self.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}") from None


def _install(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def load_init() -> None:
        module.__class__ = ModuleType  # from now on, a plain module
        loader.exec_module(module)

    module.__dict__["_kdns_load_init"] = load_init
    module.__class__ = LazyPackage
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        # Like the import system: a submodule is an attribute of its package.
        sys.modules[parent].__dict__[child] = module


def install() -> None:
    """Register the lazy packages unless the real ones are already imported (idempotent)."""
    with _lock:
        for name in LAZY_PACKAGES:
            if name not in sys.modules:
                _install(name)


# module -> the names the client modules import from it (``from module import name``)
DEFERRED_MODULES: dict[str, tuple[str, ...]] = {
    "dateutil.parser": ("parse",),  # client.api_client: model dates
    "multiprocessing.pool": ("ThreadPool",),  # client.api_client: async_req=True
    "urllib3": (),  # client.configuration: make_headers for basic auth
}


def _real(name: str) -> ModuleType:
    """The real module behind a stand-in (imported now if need be)."""
    with _lock:
        if isinstance(sys.modules.get(name), StandIn):
            del sys.modules[name]
        return importlib.import_module(name)


class StandIn(ModuleType):
    """A module imported for code kdns never runs: any attribute loads the real module."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(_real(self.__name__), attr)


def _forwarder(module: str, name: str) -> Callable[..., Any]:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(module), name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    return forward


@contextmanager
def stand_ins() -> Iterator[None]:
    """Stand-ins for DEFERRED_MODULES not imported yet, while the block runs."""
    with _lock:
        placed = []
        for module, names in DEFERRED_MODULES.items():
            if module in sys.modules:
                continue
            stand_in = StandIn(module)
            for name in names:
                setattr(stand_in, name, _forwarder(module, name))
            sys.modules[module] = stand_in
            placed.append(module)
        try:
            yield
        finally:
            for module in placed:
                if isinstance(sys.modules.get(module), StandIn):
                    del sys.modules[module]


install()

# Only what kdns uses, each from its own module: none of these imports a model or an *Api class.
with stand_ins():
    from kubernetes_asyncio.client.api_client import ApiClient
    from kubernetes_asyncio.client.configuration import Configuration

# The config loaders import these two from the package (``from kubernetes_asyncio.client
# import ApiClient, Configuration``): give the lazy package them, so that import stays cheap.
for _name, _value in (("ApiClient", ApiClient), ("Configuration", Configuration)):
    _client = sys.modules["kubernetes_asyncio.client"]
    if isinstance(_client, LazyPackage):
        _client.__dict__.setdefault(_name, _value)

from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: E402
from kubernetes_asyncio.config.incluster_config import load_incluster_config  # noqa: E402
from kubernetes_asyncio.config.kube_config import load_kube_config  # noqa: E402

__all__ = [
    "ApiClient",
    "ConfigException",
    "Configuration",
    "install",
    "load_incluster_config",
    "load_kube_config",
]
