"""Finding the API server: in-cluster service account, else --kubeconfig, else KUBECONFIG /
~/.kube/config (the order client-go and kubectl use). A kubeconfig that is named (by
--kubeconfig or $KUBECONFIG) and missing is an error; none of them at all is an error too
(the caller says so): kdns serves demo data only when --demo asks for it.

Importing this module costs nothing: kubernetes_asyncio (through ``kdns.k8s.kube``) is imported
when a cluster connection is made, so ``--demo`` and ``--objects`` never load it.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdns.k8s.kube import ApiClient

log = logging.getLogger("kdns.k8s")

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ClusterConfigError(Exception):
    """A cluster connection was configured (or we run in a cluster) but cannot be loaded."""


def in_cluster() -> bool:
    """Kubelet injects KUBERNETES_SERVICE_HOST into every pod; the token proves a service account."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def default_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use: the first file of $KUBECONFIG, else ~/.kube/config.
    A $KUBECONFIG none of whose files exists is an error (ClusterConfigError), never "no
    cluster": whoever set it meant a cluster."""
    env = os.environ.get("KUBECONFIG", "")
    named = [candidate for candidate in env.split(os.pathsep) if candidate]
    for candidate in named:
        if Path(candidate).is_file():
            return candidate
    if named:
        check_kubeconfig(named[0])  # the one-line reason: no such file, a directory, ...
        raise ClusterConfigError(f"KUBECONFIG={env}: no such file")
    home = Path.home() / ".kube" / "config"
    return str(home) if home.is_file() else None


async def api_client(kubeconfig: str | None) -> tuple[ApiClient, str] | None:
    """An ApiClient and a description of where it points, or None when there is no cluster."""
    from kdns.k8s.kube import (
        ApiClient,
        ConfigException,
        Configuration,
        load_incluster_config,
        load_kube_config,
    )

    configuration = Configuration()
    path = kubeconfig
    if not path and not in_cluster():
        path = default_kubeconfig()
        if path is None:
            return None
    if path:
        check_kubeconfig(path)  # unreadable, not YAML, not a mapping: one line naming the file
        try:
            await load_kube_config(config_file=path, client_configuration=configuration)
        except (ConfigException, *_SHAPE_ERRORS) as exc:
            # A kubeconfig of the wrong shape (contexts: "x") fails deep inside the loader.
            raise ClusterConfigError(f"kubeconfig {path}: {_loader_problem(exc, path)}") from None
        where = f"kubeconfig {path}"
    else:
        try:
            load_incluster_config(client_configuration=configuration)
        except (ConfigException, OSError, ValueError) as exc:
            raise ClusterConfigError(
                f"kubernetes: cannot load the in-cluster configuration: {_one_line(exc)}"
            ) from None
        where = "in-cluster service account"
    return ApiClient(configuration), f"{where} ({configuration.host})"


_SHAPE_ERRORS = (OSError, ValueError, LookupError, TypeError, AttributeError)


def check_kubeconfig(path: str) -> None:
    """Read and parse a kubeconfig file the way the loader will, so that a missing or unreadable
    file or a YAML syntax error is one line naming the file (``kubeconfig /path: YAML syntax
    error at line 3 column 5: ...``), not a traceback or the loader's "Expected key
    current-context". Raises ``ClusterConfigError``."""
    import yaml

    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as exc:
        raise ClusterConfigError(f"kubeconfig {path}: cannot read: {_os_reason(exc)}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = _one_line(exc.problem or exc.context or "invalid YAML")
        raise ClusterConfigError(
            f"kubeconfig {path}: YAML syntax error{where}: {problem}"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ClusterConfigError(f"kubeconfig {path}: not YAML: {_one_line(exc)}") from None
    if not isinstance(doc, dict):
        got = "an empty file" if doc is None else f"a YAML {type(doc).__name__}"
        raise ClusterConfigError(
            f"kubeconfig {path}: expected a kubeconfig (a mapping with clusters, contexts, "
            f"users), got {got}"
        )


def _os_reason(exc: OSError) -> str:
    """``no such file or directory (ENOENT)``."""
    if exc.errno is None:
        return _one_line(exc)
    text = os.strerror(exc.errno)
    return f"{text[:1].lower()}{text[1:]} ({errno.errorcode.get(exc.errno, exc.errno)})"


def _loader_problem(exc: Exception, path: str) -> str:
    """The loader's message without what the line already says: "Invalid kube-config file.
    Expected key current-context in /path" -> "expected key current-context"."""
    text = _one_line(exc).removeprefix("Invalid kube-config file.").strip()
    text = text.replace(f"{path}/", "").replace(f" in {path}", "")
    return text[:1].lower() + text[1:]


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())
