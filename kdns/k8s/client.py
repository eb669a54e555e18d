"""Finding the API server: in-cluster service account, else --kubeconfig, else KUBECONFIG /
~/.kube/config (the order client-go and kubectl use). None of them: the caller falls back to
the demo cluster, loudly; inside a cluster it never does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

log = logging.getLogger("kdns.k8s")

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ClusterConfigError(Exception):
    """A cluster connection was configured (or we run in a cluster) but cannot be loaded."""


def in_cluster() -> bool:
    """Kubelet injects KUBERNETES_SERVICE_HOST into every pod; the token proves a service account."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def default_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use: the first file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    for candidate in env.split(os.pathsep):
        if candidate and Path(candidate).is_file():
            return candidate
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


async def api_client(kubeconfig: str | None) -> tuple[client.ApiClient, str] | None:
    """An ApiClient and a description of where it points, or None when there is no cluster."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
            where = f"kubeconfig {kubeconfig}"
        elif in_cluster():
            config.load_incluster_config(client_configuration=configuration)
            where = "in-cluster service account"
        else:
            found = default_kubeconfig()
            if found is None:
                return None
            await config.load_kube_config(config_file=found, client_configuration=configuration)
            where = f"kubeconfig {found}"
    except (ConfigException, OSError, ValueError) as exc:
        raise ClusterConfigError(
            f"kubernetes: cannot load the cluster configuration: {exc}"
        ) from None
    return client.ApiClient(configuration), f"{where} ({configuration.host})"
