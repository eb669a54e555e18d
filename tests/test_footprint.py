"""Footprint regression guards: what kdns imports (not how long it takes; timings live in
benchmarks/cluster_scale.py).

kubernetes_asyncio's package ``__init__`` files import every generated API class and OpenAPI
model (~800 modules, ~45 MB resident); kdns.k8s.kube loads only the configuration, auth and
connection modules kdns uses. These tests fail when an import brings the models back.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(code: str) -> list[str]:
    """The sorted list a fresh interpreter prints after running ``code``."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    value = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert isinstance(value, list)
    return value


def test_kdns_app_imports_no_kubernetes_models() -> None:
    code = (
        "import kdns.app, sys; "
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio.client.models')))"
    )
    assert imported(code) == []


def test_demo_and_manifest_modes_import_no_kubernetes_client() -> None:
    # kdns.app, the CLI and the static sources never need the API client: it is imported when
    # kdns connects to a cluster.
    code = (
        "import kdns.app, kdns.cli, kdns.k8s.static, kdns.k8s.client, sys; "
        "print(sorted(m for m in sys.modules if m.startswith('kubernetes_asyncio')))"
    )
    assert imported(code) == []


def test_the_cluster_source_imports_no_models_and_no_generated_apis() -> None:
    code = (
        "import kdns.k8s.cluster, kdns.k8s.client, sys\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('kubernetes_asyncio.client.models.', 'kubernetes_asyncio.client.api.'))))"
    )
    assert imported(code) == []


def test_the_full_client_still_loads_after_kdns() -> None:
    # Other code in the same process (a plugin, a test) may use the whole client: the lazy
    # packages load their real __init__ on first use, and the classes are the very same.
    code = (
        "import kdns.k8s.kube as kube\n"
        "from kubernetes_asyncio import client, config, watch\n"
        "from kubernetes_asyncio.client.models import V1Service\n"
        "assert client.ApiClient is kube.ApiClient and client.Configuration is kube.Configuration\n"
        "assert client.CoreV1Api and client.V1Service is V1Service and watch.Watch\n"
        "assert config.load_kube_config is kube.load_kube_config\n"
        "import asyncio\n"
        "async def main():\n"
        "    async with client.ApiClient(client.Configuration()) as api:\n"
        "        return api._ApiClient__deserialize({'metadata': {'name': 'web'}}, 'V1Service')\n"
        "svc = asyncio.run(main())\n"
        "assert svc.metadata.name == 'web'\n"
        "print([type(svc).__name__])"
    )
    assert imported(code) == ["V1Service"]


def test_kdns_after_the_full_client_uses_it_as_is() -> None:
    # The full client imported first: nothing to make lazy, kdns uses the loaded modules.
    code = (
        "import kubernetes_asyncio.client as client, sys\n"
        "import kdns.k8s.kube as kube\n"
        "assert kube.ApiClient is client.ApiClient\n"
        "print([type(sys.modules['kubernetes_asyncio.client']).__name__])"
    )
    assert imported(code) == ["module"]


def test_the_cluster_client_loads_no_dateutil_urllib3_or_multiprocessing() -> None:
    # kubernetes_asyncio's api_client/configuration import them for code kdns never runs
    # (model dates, async_req's thread pool, a basic-auth header): ~3 MiB resident.
    code = (
        "import kdns.k8s.cluster, kdns.k8s.client, sys\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dateutil', 'urllib3', 'multiprocessing')))"
    )
    assert imported(code) == []


def test_the_deferred_modules_still_work_when_used() -> None:
    # The names kubernetes_asyncio bound to the stand-ins load the real modules on first use,
    # and later imports get the real modules, not the stand-ins.
    code = (
        "import kdns.k8s.kube as kube, sys\n"
        "from kubernetes_asyncio.client import api_client, configuration\n"
        "import urllib3, dateutil.parser, multiprocessing.pool\n"
        "assert not isinstance(urllib3, kube.StandIn) and urllib3.util.make_headers\n"
        "assert api_client.parse('2024-05-06T07:08:09Z').year == 2024\n"
        "pool = api_client.ThreadPool(1)\n"
        "assert pool.apply(len, ('abc',)) == 3\n"
        "pool.close()\n"
        "c = kube.Configuration(username='u', password='p')\n"
        "print([c.get_basic_auth_token()])"
    )
    assert imported(code) == ["Basic dTpw"]
