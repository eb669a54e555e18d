"""Shared readers of the handlers: the zones kdns answers itself, and option blocks."""

from __future__ import annotations

from collections.abc import Callable

from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _Translator,
)


def _own_zones(t: _Translator) -> list[str]:
    """The cluster domain and external zones: kdns answers them, never forwards them."""
    out = []
    for key in ("kubernetes.cluster_domain", "kubernetes.external_zones"):
        value = t.values[key].value if key in t.values else None
        out += [value] if isinstance(value, str) else list(value) if isinstance(value, list) else []
    return [str(zone) for zone in out]


def _options(t: _Translator, d: Directive, known: dict[str, Callable[[Directive], object]]) -> None:
    for option in d.block or []:
        handler = known.get(option.name)
        if handler is None:
            t.unsupported(d, option.name, "no kdns equivalent; leave it out or keep CoreDNS")
        else:
            handler(option)
