"""The effective configuration: defaults < TOML file < KDNS_* environment < command-line flags.

Every setting is described once, in ``SETTINGS``: its ``Config`` field, its TOML key, its
environment variable, its flag and its kind (how to parse and validate it). Each layer is
validated on its own, so an error names the key the user actually wrote::

    config: kubernetes.ttl: expected an integer 0..3600, got "5"
    config: KDNS_TTL: expected an integer 0..3600, got "x"
    config: --ttl: expected an integer 0..3600, got 9999

``build_config`` is the only way in; ``Config.to_toml`` renders the result back as a TOML file
that parses to the same ``Config`` (``kdns check-config`` prints it).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any, NoReturn

from kdns.config.effective import Config, ConfigError
from kdns.config.kinds import (
    _List,
    _Path,
)
from kdns.config.settings import (
    _ARRAYS,
    _BY_FIELD,
    _BY_TOML,
    _SECTIONS,
    CONFIG_ENV,
    SETTINGS,
    TOML_ALIASES,
    Setting,
)
from kdns.config.tables import (
    _LocalZone,
    _Tables,
)
from kdns.values import (
    LocalZoneSource,
    Upstream,
    _Invalid,
    _show,
    format_hostport,
    parse_hostport,
    parse_upstream,
    toml_string,
    toml_value,
)

__all__ = [
    "Config",
    "ConfigError",
    "LocalZoneSource",
    "SETTINGS",
    "Setting",
    "Upstream",
    "build_config",
    "env_warnings",
    "format_hostport",
    "parse_hostport",
    "parse_upstream",
    "toml_string",
    "toml_value",
]

# --- the layers ----------------------------------------------------------------------------


def build_config(
    file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """The effective configuration: defaults < TOML ``file`` < KDNS_* ``env`` < ``flags``.

    ``file`` None falls back to ``env["KDNS_CONFIG"]``. ``env`` None means no environment (pass
    ``os.environ`` explicitly). ``flags`` maps ``Config`` field names to a string (parsed like
    an env var), a list of strings for repeatable settings (one item each) or a typed value;
    ``None`` values mean "not given". Raises ``ConfigError``.
    """
    env = env or {}
    if file is None:
        file = env.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # field -> the key that set it last, for conflict messages
    layers: list[tuple[dict[str, Any], dict[str, str]]] = []
    if file is not None:
        layer: dict[str, str] = {}
        from_file = _file_layer(_read_toml(file), layer)
        layers.append((_relative_to(os.path.dirname(os.path.abspath(file)), from_file), layer))
    env_origins: dict[str, str] = {}
    flag_origins: dict[str, str] = {}
    layers.append((_env_layer(env, env_origins), env_origins))
    layers.append((_flag_layer(flags or {}, flag_origins), flag_origins))
    zones: list[tuple[str, str, Any]] = []  # (field, the key that gave it, zone), all layers
    for layer_values, layer_origins in layers:
        for field in _MERGED:
            if field in layer_values:
                key = layer_origins[field]
                zones += [(field, key, zone) for zone in layer_values.pop(field)]
                origins[field] = key
        values.update(layer_values)
        origins.update(layer_origins)
    if zones:
        values.update(_merge_zones(zones))
    if values.get("hosts_files"):  # --hosts-file ZONE=PATH is a [[zones]] format = "hosts"
        origins.setdefault("local_zones", origins["hosts_files"])
        values["local_zones"] = _Tables(_LocalZone()).check(
            [*values.get("local_zones", ()), *values.pop("hosts_files")]
        )
    _check_conflicts(values, origins)
    return Config(**values, config_file=file)


# [[zones]] of the file, KDNS_ZONE_FILE / KDNS_HOSTS_FILE and --zone-file / --hosts-file add up
# (a flag adds a zone to the file's, it does not replace them); one zone given twice is an error.
_MERGED = ("local_zones", "hosts_files")


def _merge_zones(zones: list[tuple[str, str, Any]]) -> dict[str, Any]:
    seen: dict[str, str] = {}
    out: dict[str, list[Any]] = {field: [] for field in _MERGED}
    for field, key, zone in zones:
        if zone.name in seen:
            raise ConfigError(key, f"zone {zone.name} is already defined by {seen[zone.name]}")
        seen[zone.name] = key
        out[field].append(zone)
    return {field: tuple(items) for field, items in out.items() if items}


def _relative_to(base: str, values: dict[str, Any]) -> dict[str, Any]:
    """A config file's relative paths name files beside it (as nginx, CoreDNS and systemd
    read theirs), whatever the working directory: every path setting and every table's
    ``file`` is made absolute against the file's directory."""

    def fix(path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))

    out = dict(values)
    for field, value in values.items():
        kind = _BY_FIELD[field].kind
        if isinstance(kind, _Path) and isinstance(value, str):
            out[field] = fix(value)
        elif isinstance(kind, _List) and isinstance(kind.item, _Path):
            out[field] = tuple(fix(item) for item in value)
        elif isinstance(value, tuple) and value and all(hasattr(v, "_replace") for v in value):
            out[field] = tuple(
                v._replace(file=fix(v.file)) if isinstance(getattr(v, "file", None), str) else v
                for v in value
            )
    return out


def _check_conflicts(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """Settings that contradict each other, whichever layers they come from (a file's
    ``kubernetes.demo = true`` and ``--objects`` conflict too); the error names both keys."""

    def conflict(first: str, second: str, why: str) -> NoReturn:
        raise ConfigError(origins[first], f"conflicts with {origins[second]}: {why}")

    if values.get("demo") and values.get("objects"):
        conflict("demo", "objects", "serve the demo cluster or manifest files, not both")
    taken = {values.get("cluster_domain", "cluster.local"), *values.get("external_zones", ())}
    for zone in values.get("gateway_zones", ()):
        if zone in taken:
            raise ConfigError(
                origins["gateway_zones"],
                f"{zone} is already the cluster domain or an external zone; "
                "gateway hostnames need a zone of their own",
            )
    # A forward zone named like a gateway zone names where the gateway zone's unclaimed names
    # go ([gateway] fallthrough); without fallthrough it would never be asked.
    local_fallthrough = {z.name for z in values.get("local_zones", ()) if z.fallthrough}
    for zone, _ in values.get("forward_zones", ()):
        if zone in values.get("gateway_zones", ()) and not values.get("gateway_fallthrough"):
            if zone in local_fallthrough:
                continue
            raise ConfigError(
                origins["forward_zones"],
                f"{zone} is also a gateway zone, so it would never be forwarded: set [gateway] "
                "fallthrough = true to send its unclaimed names there, or forward a zone below it",
            )
    _check_local_zones(values, origins)
    if values.get("autopath") and values.get("pods") == "disabled":
        conflict("autopath", "pods", "autopath needs the Pod watch (a client's namespace is that of the pod with its IP); set kubernetes.pods to insecure or verified")  # fmt: skip
    if values.get("autopath") and values.get("kubernetes_enabled") is False:
        conflict("autopath", "kubernetes_enabled", "autopath walks the cluster's search path")
    if values.get("forward") is False:
        for field in ("upstreams", "forward_zones"):
            if values.get(field):
                conflict("forward", field, "forwarding is off, so no upstream would be asked")


def _gateway_fallthrough(values: Mapping[str, Any], zone: str) -> bool:
    return bool(values.get("gateway_fallthrough")) and zone in values.get("gateway_zones", ())


def _check_local_zones(values: Mapping[str, Any], origins: Mapping[str, str]) -> None:
    """[[zones]], [[views]] and [[blocklists]] against each other and the other zones."""
    local = values.get("local_zones", ())
    cluster_domain = values.get("cluster_domain", "cluster.local")
    taken = {cluster_domain, *values.get("external_zones", ()), "in-addr.arpa", "ip6.arpa"}
    forwarded = {zone for zone, _ in values.get("forward_zones", ())}
    for index, zone in enumerate(local):
        key = origins.get("local_zones", "zones")
        if zone.name in taken:
            raise ConfigError(
                f"{key}[{index}].name",
                f"{zone.name} is already the cluster domain, an external or a reverse zone",
            )
        if zone.name in forwarded and not (zone.fallthrough or _gateway_fallthrough(values, zone.name)):  # fmt: skip
            raise ConfigError(
                f"{key}[{index}].name",
                f"{zone.name} is also in {origins['forward_zones']}: a zone is served or "
                "forwarded, not both (set fallthrough = true on the zone to send its names "
                "without records there, or forward a zone below it)",
            )
    # Zones a view may name: every zone kdns serves (gateway zones included).
    served = taken | {zone.name for zone in local} | set(values.get("gateway_zones", ()))
    lists = {blocklist.name for blocklist in values.get("blocklists", ())}
    for index, view in enumerate(values.get("views", ())):
        key = origins.get("views", "views")
        for at, zone_name in enumerate(view.zones or ()):
            if zone_name not in served:
                raise ConfigError(
                    f"{key}[{index}].zones[{at}]",
                    f"{zone_name} is not a zone kdns serves (cluster domain, external, reverse, "
                    "[[zones]] or gateway zones)",
                )
        if (view.gateway_classes is not None or view.ingress_classes is not None) and not values.get("gateway_zones"):  # fmt: skip
            field = "gateway_classes" if view.gateway_classes is not None else "ingress_classes"
            raise ConfigError(f"{key}[{index}].{field}", "class filters need [gateway] zones")
        for at, list_name in enumerate(view.blocklists):
            if list_name not in lists:
                raise ConfigError(
                    f"{key}[{index}].blocklists[{at}]", f"no [[blocklists]] named {list_name!r}"
                )
        allowed = {allowlist.name for allowlist in values.get("allowlists", ())}
        for at, list_name in enumerate(view.allowlists):
            if list_name not in allowed:
                raise ConfigError(
                    f"{key}[{index}].allowlists[{at}]", f"no [[allowlists]] named {list_name!r}"
                )


# Kubernetes injects service-link variables into pods for a Service named "kdns" (or
# "kdns-metrics", ...): KDNS_SERVICE_HOST, KDNS_SERVICE_PORT_DNS, KDNS_PORT_53_UDP_PROTO, ...
_SERVICE_LINK = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_\w+)?$|_PORT$|_PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?$"
)


def env_warnings(env: Mapping[str, str]) -> list[str]:
    """One line per ``KDNS_*`` variable that is not a kdns setting (most likely a typo, which
    would otherwise be silently ignored), naming the closest known one. Not errors: unknown
    variables never stop kdns. Kubernetes service-link variables are left alone."""
    known = [s.env for s in SETTINGS if s.env is not None] + [CONFIG_ENV]
    suffixes = [name.removeprefix("KDNS_") for name in known]  # the shared prefix is no clue
    lines = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith("KDNS_") or name in known or _SERVICE_LINK.search(upper):
            continue
        close = difflib.get_close_matches(upper.removeprefix("KDNS_"), suffixes, n=1, cutoff=0.6)
        hint = f" (did you mean KDNS_{close[0]}?)" if close else ""
        lines.append(f"{name} is not a kdns setting{hint}; ignored")
    return lines


def _validate(setting: Setting, key: str, value: object, *, text: bool) -> Any:
    kind = setting.kind
    try:
        return kind.check(kind.from_text(value) if text and isinstance(value, str) else value)
    except _Invalid as exc:
        raise ConfigError(key + exc.key_suffix, str(exc)) from None


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"invalid TOML: {exc}") from None


def _file_layer(doc: Mapping[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    written: dict[str, str] = {}  # canonical "section.key" -> the name the file used
    values: dict[str, Any] = {}
    for name, path, value in _file_entries(doc):
        if path in written:
            raise ConfigError(name, f"given twice, also as {written[path]}")
        written[path] = name
        setting = _BY_TOML[path]
        values[setting.field] = _validate(setting, name, value, text=False)
        origins[setting.field] = name
    return values


def _file_entries(doc: Mapping[str, Any]) -> list[tuple[str, str, object]]:
    """(name as written, canonical path, value) for every key; unknown keys are errors."""
    entries: list[tuple[str, str, object]] = []
    for top, value in doc.items():
        if top in TOML_ALIASES:
            entries.append((top, TOML_ALIASES[top], value))
        elif top in _ARRAYS:
            if not isinstance(value, list):
                raise ConfigError(top, f"expected an array of tables [[{top}]], got {_show(value)}")  # fmt: skip
            entries.append((top, top, value))
        elif top in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(top, f"expected a table [{top}], got {_show(value)}")
            for key, item in value.items():
                path = f"{top}.{key}"
                if path not in _BY_TOML:
                    raise ConfigError(path, "unknown key")
                entries.append((path, path, item))
        else:
            raise ConfigError(top, "unknown key")
    return entries


def _env_layer(env: Mapping[str, str], origins: dict[str, str]) -> dict[str, Any]:
    # Only our names are read. Kubernetes injects KDNS_SERVICE_HOST, KDNS_PORT, ... into pods
    # when a Service is named "kdns", so unknown KDNS_* variables must not be errors.
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env is None or not env.get(setting.env, "").strip():
            continue  # unset or empty: manifests often template "" for "not set"
        value = _validate(setting, setting.env, env[setting.env], text=True)
        values[setting.field] = (not value) if setting.negated else value
        origins[setting.field] = setting.env
    return values


def _flag_layer(flags: Mapping[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, value in flags.items():
        setting = _BY_FIELD.get(field)
        if setting is None:
            raise ValueError(f"build_config: unknown flag field {field!r}")
        if value is not None:
            key = setting.flag or field
            values[field] = _validate(setting, key, value, text=True)
            origins[field] = key
    return values
