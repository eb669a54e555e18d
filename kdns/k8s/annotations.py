"""DNS annotations and hostnames of the objects that publish gateway names: external-dns's
(``hostname``, ``internal-hostname``, ``target``, ``ttl``, the hostname-source annotations, under
either of its prefixes), k8s_gateway's ``coredns.io/hostname``, kdns's ``kdns.io/hostname``, and
the labels and annotations the ``[gateway]`` filters read."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from kdns.k8s.ingest import EMPTY, Raw, normalize_ip, skipped
from kdns.model import EMPTY_HINTS, EMPTY_META, Hints, Meta

_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")
# external-dns's annotations (what a migration keeps), k8s_gateway's, then kdns's own.
# external-dns reads its annotations under external-dns.kubernetes.io/ since v0.22.0 and under
# external-dns.alpha.kubernetes.io/ before (its annotations docs, "Annotation prefix"): both are
# read, the new prefix winning where an object carries both (as --enable-legacy-annotation-prefix
# merges them).
EXTERNAL_DNS = "external-dns.kubernetes.io/"
EXTERNAL_DNS_LEGACY = "external-dns.alpha.kubernetes.io/"
# external-dns's (under either prefix), k8s_gateway's, kdns's.
HOSTNAME_ANNOTATIONS = ("hostname", "coredns.io/hostname", "kdns.io/hostname")
INTERNAL_HOSTNAME = "internal-hostname"
TARGET = "target"
TTL = "ttl"
# Which hostnames a route / an Ingress publishes: "annotation-only" or "defined-hosts-only".
GATEWAY_HOSTNAME_SOURCE = "gateway-hostname-source"
INGRESS_HOSTNAME_SOURCE = "ingress-hostname-source"
_HOSTNAME_SOURCES = frozenset(("annotation-only", "defined-hosts-only"))
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_MAX_ANNOTATION = 1024  # longer values (JSON blobs) are no filter anyone writes
_DURATION = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_MAX_TTL = 2_147_483_647  # RFC 2181 8


def hostname_of(value: Any, single_label: bool = False) -> str | None:
    """A lowercased hostname without a trailing dot (``*.`` prefix allowed), or None."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        return None
    # A wildcard is a whole leftmost label (Gateway API and RFC 4592 alike).
    first = labels[0] == "*" or _HOST_LABEL.fullmatch(labels[0])
    if (len(labels) < 2 and (not single_label or name == "*")) or not first:
        return None
    if not all(_HOST_LABEL.fullmatch(x) for x in labels[1:]):
        return None
    return name


def valid_hostnames(
    values: Iterable[Any], kind: str, key: tuple[str, str], field: str, single_label: bool = False
) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        name = hostname_of(value, single_label)
        if name is None:
            if value not in (None, ""):
                skipped(kind, key, field, value, "not a DNS hostname")
        elif name not in out:
            out.append(name)
    return tuple(out)


def meta_filters(raw: Raw) -> Meta:
    meta = raw.get("metadata") or EMPTY
    labels = meta.get("labels") or EMPTY
    annotations = meta.get("annotations") or EMPTY
    if not labels and not annotations:
        return EMPTY_META
    return Meta(
        tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        tuple(
            sorted(
                (str(k), str(v))
                for k, v in annotations.items()
                if k != _LAST_APPLIED and len(str(v)) <= _MAX_ANNOTATION
            )
        ),
    )


def parse_ttl(value: str) -> int | None:
    """external-dns's ttl annotation: seconds ("60") or a Go duration of h/m/s ("1m30s")."""
    text = value.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            return None
        h, m, s = (int(x or 0) for x in match.groups())
        seconds = h * 3600 + m * 60 + s
    return seconds if 0 < seconds <= _MAX_TTL else None


def hints_of(raw: Raw, kind: str, key: tuple[str, str], source_key: str = "") -> Hints:
    """The DNS annotations of an object (``EMPTY_HINTS`` when it has none); ``source_key``:
    external-dns's hostname-source annotation the object's kind reads, if any."""
    annotations = (raw.get("metadata") or EMPTY).get("annotations") or EMPTY
    if not annotations:
        return EMPTY_HINTS

    def external(name: str) -> Any:
        value = annotations.get(EXTERNAL_DNS + name)
        return annotations.get(EXTERNAL_DNS_LEGACY + name) if value is None else value

    def listed(value: Any) -> list[str]:
        return [part for part in value.split(",")] if isinstance(value, str) else []

    field = "metadata.annotations"
    hostnames = valid_hostnames(
        listed(external("hostname"))
        + [
            h for name in HOSTNAME_ANNOTATIONS[1:] for h in listed(annotations.get(name))
        ],  # fmt: skip
        kind,
        key,
        f"{field}[hostname]",
        # k8s_gateway's annotation names may be relative to its zones ("nas": nas.<zone>,
        # [gateway] service_names); outside every zone a name answers nothing.
        single_label=True,
    )
    internal = valid_hostnames(
        listed(external(INTERNAL_HOSTNAME)), kind, key, f"{field}[internal-hostname]"
    )
    targets: list[str] = []
    for part in listed(external(TARGET)):
        text = part.strip()
        ip = normalize_ip(text)
        name = ip or hostname_of(text)
        if name is None or name.startswith("*"):
            if text:
                skipped(kind, key, f"{field}[target]", text, "not an IP address or hostname")
        elif name not in targets:
            targets.append(name)
    ttl = -1
    value = external(TTL)
    if isinstance(value, str):
        parsed = parse_ttl(value)
        if parsed is None:
            skipped(kind, key, f"{field}[ttl]", value, "not a TTL (seconds, or like 1m30s)")
        else:
            ttl = min(parsed, 3600 * 24 * 7)
    source = ""
    value = external(source_key) if source_key else None
    if isinstance(value, str):
        # external-dns compares the value case-insensitively and falls back to its default
        # (both sources of names) on anything else, with a warning.
        source = value.strip().lower()
        if source not in _HOSTNAME_SOURCES:
            why = "not annotation-only or defined-hosts-only: both sources are used"
            skipped(kind, key, f"{field}[{source_key}]", value, why)
            source = ""
    hints = Hints(hostnames, internal, tuple(targets), ttl, source)
    return EMPTY_HINTS if hints == EMPTY_HINTS else hints
