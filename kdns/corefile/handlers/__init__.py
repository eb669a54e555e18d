"""One handler per CoreDNS plugin: what each directive and option becomes in kdns's
settings, or why it cannot (docs/coredns-plugins.md is the same table for readers). The
handlers live by concern: cluster (kubernetes, k8s_external, autopath), forwarding (forward,
proxy, cache), gateway (k8s_gateway), localdata (hosts, file, chaos), rules (rewrite, template), access (acl,
transfer), server (everything server-wide)."""

from __future__ import annotations

from kdns.corefile.handlers.access import _acl, _transfer
from kdns.corefile.handlers.cluster import _autopath, _k8s_external, _kubernetes
from kdns.corefile.handlers.forwarding import _cache, _forward
from kdns.corefile.handlers.gateway import _k8s_gateway
from kdns.corefile.handlers.localdata import _chaos, _file, _hosts
from kdns.corefile.handlers.rules import _rewrite, _template
from kdns.corefile.handlers.server import (
    _bind,
    _bufsize,
    _cancel,
    _debug,
    _errors,
    _health,
    _loadbalance,
    _log,
    _loop,
    _minimal,
    _prometheus,
    _ready,
    _reload,
    _root,
    _timeouts,
    _workers,
)
from kdns.corefile.translator import Handler

HANDLERS: dict[str, Handler] = {
    "kubernetes": _kubernetes,
    "k8s_external": _k8s_external,
    "k8s_gateway": _k8s_gateway,
    "forward": _forward,
    "proxy": _forward,  # removed in CoreDNS 1.6; `proxy FROM TO...` is forward's syntax
    "hosts": _hosts,
    "file": _file,
    "chaos": _chaos,
    "autopath": _autopath,
    "rewrite": _rewrite,
    "template": _template,
    "cache": _cache,
    "health": _health,
    "ready": _ready,
    "prometheus": _prometheus,
    "errors": _errors,
    "log": _log,
    "loop": _loop,
    "reload": _reload,
    "loadbalance": _loadbalance,
    "bind": _bind,
    "bufsize": _bufsize,
    "timeouts": _timeouts,
    "acl": _acl,
    "transfer": _transfer,
    "debug": _debug,
    "root": _root,
    "cancel": _cancel,
    "minimal": _minimal,
    "multisocket": _workers,
    "reuseport": _workers,
}


# --- TOML ------------------------------------------------------------------------------------
