"""The translator's state and readers: what has been set from which Corefile line, what is
reported, and rendering the result as kdns TOML. The plugins' handlers are in
kdns.corefile.handlers; kdns.corefile.translate puts the two together."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kdns.config import SETTINGS, Config, toml_value
from kdns.corefile.parse import CorefileError, Directive, ServerBlock
from kdns.corefile.plugins import NOT, PLUGINS, UNKNOWN_ADVICE

_BY_TOML = {s.toml: s for s in SETTINGS}
_DEFAULTS = Config()
_SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))
_REVERSE = ("in-addr.arpa", "ip6.arpa")
_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DEFAULT_PORTS = {"dns": 53, "tls": 853, "https": 443, "grpc": 443, "quic": 853}


@dataclass(slots=True)
class Translation:
    toml: str
    problems: list[str]  # one line each: "FILE:LINE: plugin X is not supported by kdns: ..."

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(slots=True)
class _Block:
    keys: list[str]
    zones: list[str]  # normalised, "." for the root
    port: int
    file: str
    line: int
    directives: list[Directive]

    @property
    def root(self) -> bool:
        return "." in self.zones


@dataclass(slots=True)
class _Value:
    value: object
    source: str  # "Corefile:LINE text" for the comment
    where: str  # FILE:LINE for messages
    explicit: bool = True  # written in the Corefile (not a plugin's default)


# --- small readers -----------------------------------------------------------------------


def _loc(d: Directive) -> str:
    """Where a directive is, for a comment: ``Corefile:12`` (the file's base name)."""
    return f"{os.path.basename(d.file)}:{d.line}"


def _bad(d: Directive, problem: str) -> CorefileError:
    return CorefileError(d.file, d.line, f"{d.name}: {problem}")


def _duration(text: str, d: Directive) -> float:
    """A Go duration (``5s``, ``1m30s``, ``500ms``), as CoreDNS's plugins read them."""
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if match is None:
            raise _bad(d, f"expected a duration like 5s or 1m, got {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise _bad(d, "expected a duration like 5s or 1m, got ''")
    return total


def _seconds_value(seconds: float) -> int | float:
    return int(seconds) if seconds == int(seconds) else seconds


def _integer(text: str, d: Directive, lowest: int = 0) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < lowest:
        raise _bad(d, f"expected an integer >= {lowest}, got {text!r}")
    return int(text)


def _zone(text: str, d: Directive | None = None, where: tuple[str, int] = ("", 0)) -> list[str]:
    """A zone as CoreDNS reads one: a name (``.`` the root) or a CIDR for its reverse zones."""
    name = text.strip().lower()
    if name.startswith("dns://"):
        name = name[len("dns://") :]
    if "/" in name:
        try:
            net = ipaddress.ip_network(name, strict=False)
        except ValueError:
            problem = f"{text!r} is neither a zone nor a network"
            if d is not None:
                raise _bad(d, problem) from None
            raise CorefileError(where[0], where[1], problem) from None
        step = 8 if net.version == 4 else 4
        prefix = -(-net.prefixlen // step) * step  # round up to a label boundary
        # At most 2**7 zones: a /9 is 128 /16s.
        return [_reverse_name(sub, step) for sub in net.subnets(new_prefix=prefix)]
    name = name.rstrip(".")
    return [name or "."]


def _reverse_name(net: ipaddress.IPv4Network | ipaddress.IPv6Network, step: int) -> str:
    labels = net.network_address.reverse_pointer.split(".")
    keep = net.prefixlen // step
    suffix = 2  # in-addr.arpa / ip6.arpa
    host_labels = labels[: len(labels) - suffix]
    return ".".join(host_labels[len(host_labels) - keep :] + labels[-suffix:])


def _in_zone(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


def _is_reverse(zone: str) -> bool:
    return any(_in_zone(zone, r) for r in _REVERSE)


def _server_key(key: str, file: str, line: int) -> tuple[str, list[str], int]:
    """``[SCHEME://]ZONE[:PORT]`` -> (scheme, zones, port)."""
    scheme, sep, rest = key.partition("://")
    if not sep:
        scheme, rest = "dns", key
    scheme = scheme.lower()
    port = _DEFAULT_PORTS.get(scheme, 53)
    zone = rest
    head, colon, tail = rest.rpartition(":")
    if colon and tail.isdigit():
        zone, port = head, int(tail)
    elif colon and "/" not in rest:
        raise CorefileError(file, line, f"server block key {key!r}: bad port {tail!r}")
    if not 0 < port <= 65535:
        raise CorefileError(file, line, f"server block key {key!r}: port out of range")
    return scheme, _zone(zone or ".", where=(file, line)), port


# --- the translator ------------------------------------------------------------------------


Handler = Callable[["_Translator", Directive, "_Block"], None]


class _Translator:
    def __init__(self, blocks: list[ServerBlock], handlers: Mapping[str, Handler]) -> None:
        self.handlers = handlers  # plugin name -> what it becomes (kdns.corefile.handlers)
        self.values: dict[str, _Value] = {}
        self.notes: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.blocks: list[_Block] = []
        # zone -> (upstreams, where, the zone's own settings: its block's forward and cache)
        self.forward_zones: dict[str, tuple[list[str], str, dict[str, object]]] = {}
        self.zone_blocks: dict[str, _Block] = {}  # forward zone -> the block it came from
        self.block_ttls: dict[int, dict[str, int]] = {}  # id(block) -> its cache's TTL caps
        self.tables: dict[str, list[dict[str, object]]] = {}  # [[zones]] entries
        self.bind_env: list[Directive] = []  # bind {$POD_IP}: every address instead
        self.pillar_blocks: list[_Block] = []  # node-local-dns's __PILLAR__CLUSTER__DNS__
        self.shared: dict[str, list[_Value]] = {}  # once-only settings asked for per block
        self.listen: list[str] = []
        self.root_forward = False  # a forward (or proxy) for the . block's names
        self.block_forwards: dict[int, list[str]] = {}  # id(block) -> the zones it forwards
        self.finish_checks: list[Callable[[], None]] = []
        self.seen: set[str] = set()
        self.external_ttl: list[tuple[int, Directive]] = []
        self.acl_root: list[tuple[dict[str, object], Directive]] = []
        self.acl_zoned: list[tuple[dict[str, object], Directive]] = []
        # log directives: (directive, its block, the zones it logs, its classes)
        self.log_entries: list[tuple[Directive, _Block, list[str], tuple[str, ...]]] = []
        taken: dict[tuple[str, int], str] = {}
        for block in blocks:
            by_port: dict[int, list[str]] = {}
            keys: dict[int, list[str]] = {}
            schemes = set()
            for key in block.keys:
                scheme, key_zones, port = _server_key(key, block.file, block.line)
                by_port.setdefault(port, []).extend(key_zones)
                keys.setdefault(port, []).append(key)
                schemes.add(scheme)
                for zone in key_zones:
                    if (zone, port) in taken:  # CoreDNS: "cannot serve ... multiple times"
                        raise CorefileError(
                            block.file,
                            block.line,
                            f"zone {zone} on port {port} is defined twice (also at "
                            f"{taken[zone, port]}): CoreDNS refuses to start",
                        )
                    taken[zone, port] = f"{block.file}:{block.line}"
            for scheme in sorted(schemes - {"dns"}):
                self.problem(
                    f"{block.file}:{block.line}",
                    f"server block {' '.join(block.keys)}: {scheme}:// servers are not supported "
                    "by kdns: it serves plain DNS over UDP and TCP; terminate "
                    f"{scheme} in front of it",
                )
            # Keys on several ports (`example.com example.io:1053 {`, kubespray's example): one
            # block per port with the same directives, as CoreDNS serves them.
            for port, zones in by_port.items():
                self.blocks.append(
                    _Block(
                        keys[port],
                        list(dict.fromkeys(zones)),
                        port,
                        block.file,
                        block.line,
                        block.directives,
                    )
                )

    # output helpers

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def unsupported(self, d: Directive, option: str | None, advice: str) -> None:
        what = f"plugin {d.name}" + (f": {option}" if option else "")
        self.problem(d.where, f"{what} is not supported by kdns: {advice}")

    def note(self, section: str, d: Directive | None, text: str) -> None:
        prefix = f"{d.name} ({_loc(d)}): " if d is not None else ""
        self.notes.setdefault(section, []).append(prefix + text)

    def set(self, key: str, value: object, d: Directive | None, text: str = "") -> bool:
        """Set ``key`` (checked as kdns.config will) unless it is set already to another value,
        which is reported. Returns whether the value is the one in the output."""
        setting = _BY_TOML[key]  # a KeyError here is a bug: only SETTINGS keys are written
        try:
            setting.kind.check(value)
        except ValueError as exc:
            if d is None:
                raise
            self.unsupported(d, text or None, f"kdns cannot take {key} = {value!r}: {exc}")
            return False
        where = d.where if d is not None else ""
        source = f"{_loc(d)} {text}".strip() if d is not None else text
        old = self.values.get(key)
        if old is not None and old.value != value:
            if d is not None:
                self.problem(
                    d.where,
                    f"plugin {d.name}: {text or key} is not supported by kdns: kdns has one "
                    f"{key}, kept as {old.value!r} from {old.where}",
                )
            return False
        if old is None:
            self.values[key] = _Value(value, source, where)
        return True

    def share(self, key: str, value: object, d: Directive, text: str) -> None:
        """A setting kdns has once but each forward/cache asks for: resolved in ``finish``."""
        ask = _Value(value, f"{_loc(d)} {text}".strip(), d.where, explicit=bool(text))
        self.shared.setdefault(key, []).append(ask)

    def append(self, key: str, items: list[object], d: Directive, text: str) -> None:
        """Add ``items`` to the list setting ``key``; a list kdns would not take is reported."""
        old = self.values.get(key)
        before = list(old.value) if old is not None and isinstance(old.value, list) else []
        now = list(dict.fromkeys(before + items))
        try:
            _BY_TOML[key].kind.check(now)
        except ValueError as exc:
            self.unsupported(d, text, f"kdns cannot take {key} = {toml_value(items)}: {exc}")
            return
        source = f"{_loc(d)} {text}" if old is None else f"{old.source}; {_loc(d)}"
        self.values[key] = _Value(now, source, old.where if old is not None else d.where)

    # the walk

    def run(self) -> None:
        from kdns.corefile import checks  # it reads this module's state helpers

        main = next((b for b in self.blocks if _has(b, "kubernetes")), None)
        main = main or next((b for b in self.blocks if b.root), self.blocks[0])
        # The main block first: where kdns has one setting, its value wins.
        for block in sorted(self.blocks, key=lambda b: b is not main):
            if block.port != main.port:
                self.problem(f"{block.file}:{block.line}", checks.other_port(self, block, main))
                continue
            for d in block.directives:
                self.directive(d, block)
        self.finish(main)

    def directive(self, d: Directive, block: _Block) -> None:
        self.seen.add(d.name)
        handler = self.handlers.get(d.name)
        if handler is not None:
            handler(self, d, block)
            return
        plugin = PLUGINS.get(d.name)
        if plugin is not None and plugin.status != NOT:
            raise AssertionError(f"no handler for supported plugin {d.name}")
        self.unsupported(d, None, plugin.advice if plugin else UNKNOWN_ADVICE)

    def forward_blocks(self) -> list[_Block]:
        return [b for b in self.blocks if _has(b, "forward")]

    def finish(self, main: _Block) -> None:
        from kdns.corefile import checks

        cluster = "kubernetes" in self.seen
        # k8s_gateway reads the API server too: kdns keeps its watch, and runs as the shipped
        # LAN Deployment (manifests/lan/, non-root, :5353).
        watching = cluster or "k8s_gateway" in self.seen
        if watching and main.port == 53:
            # The shipped Deployments run kdns as non-root with no capabilities: their Services
            # map port 53 to 5353 (manifests/, manifests/lan/), so the Corefile's :53 is :5353
            # there, on the addresses of `bind` if any (`bind 0.0.0.0` is 0.0.0.0:5353).
            hosts = [address.rsplit(":", 1)[0] for address in self.listen] or [""]
            self.set("server.listen", [f"{host}:5353" for host in hosts], None, "the Corefile's :53; the kdns Services map 53 to it (non-root)")  # fmt: skip
            self.set("log.format", "json", None, "as manifests/configmap.yaml: one JSON object a line")  # fmt: skip
        else:
            self.set(
                "server.listen",
                self.listen or [f":{main.port}"],
                None,
                f"server block port {main.port}" if not self.bind_env else
                f"bind {{$...}} ({_loc(self.bind_env[0])}): every address of the pod, whatever its IP",
            )  # fmt: skip
        for plugin, key, off in (
            ("health", "health.listen", "off"),
            ("ready", "ready.listen", "off"),
            ("prometheus", "metrics.listen", "off"),
            ("reload", "server.reload_interval", 0),
            ("loadbalance", "server.loadbalance", False),
        ):
            if plugin not in self.seen:
                self.set(key, off, None, f"no {plugin} plugin in the Corefile")
        if "health" not in self.seen:
            self.set("health.lameduck", 0, None, "no health plugin: no lameduck")
        if "cache" not in self.seen:
            self.set("cache.enabled", False, None, "no cache plugin in the Corefile")
        if not cluster and watching:
            self.set("kubernetes.pods", "disabled", None, "k8s_gateway answers no pod names")
            self.note("kubernetes", None, "k8s_gateway without kubernetes: kdns keeps the API watch for [gateway] and also answers cluster.local (the k8s_gateway Helm chart's forward . /etc/resolv.conf sent those names to the cluster DNS); block it for LAN clients with [acl] as manifests/lan/ does")  # fmt: skip
        if not watching:
            self.set("kubernetes.enabled", False, None, "no kubernetes plugin: no cluster domain, no API watch")  # fmt: skip
            if self.listen:
                # node-local-dns's shape: `bind` addresses put on a dummy interface by the pod
                # itself, reachable only from its node (manifests/nodelocal does the same).
                self.set("server.freebind", True, None, "bind without kubernetes (node-local-dns): bind the addresses before they are on an interface")  # fmt: skip
                self.set("forward.allow", ["*"], None, "node-local: only the node's pods reach these addresses")  # fmt: skip
        for check in self.finish_checks:
            check()
        for key, asks in self.shared.items():
            first = asks[0]
            for other in asks[1:]:
                if other.value != first.value:
                    self.problem(
                        other.where,
                        f"{key} = {toml_value(other.value)} for this block is not supported by kdns: "
                        f"kdns has one {key} for every zone, kept {toml_value(first.value)} from "
                        f"{first.where}",
                    )
            default = getattr(_DEFAULTS, _BY_TOML[key].field)
            if not first.explicit and first.value == default:
                continue  # left at a CoreDNS default that is kdns's too
            try:
                _BY_TOML[key].kind.check(first.value)
            except ValueError as exc:  # `prefetch 5000`: CoreDNS takes it, kdns's range not
                what = first.source.split(" ", 1)[-1]  # the Corefile text, without its place
                self.problem(first.where, f"{what} is not supported by kdns: kdns cannot take {key} = {toml_value(first.value)}: {exc}")  # fmt: skip
                continue
            self.values.setdefault(key, first)
        checks.acl_order(self)
        for block in self.pillar_blocks:  # their zones come from KDNS_FORWARD_ZONE: the lower
            for key, value in self.block_ttls.get(id(block), {}).items():  # cap for everything
                current = self.values.get(f"cache.{key}")
                if current is None or value < current.value:  # type: ignore[operator]
                    self.values[f"cache.{key}"] = _Value(value, f"cache of {' '.join(block.keys)} ({block.file}:{block.line}), the lower", "")  # fmt: skip
        checks.default_route(self, main)
        if self.forward_zones:
            entries = []
            for zone, (ups, _, own) in self.forward_zones.items():
                entry: dict[str, object] = {"name": zone, "upstreams": ups}
                ttls = self.block_ttls.get(id(self.zone_blocks[zone]), {})
                for key, value in ttls.items():  # the zone block's own cache, if it differs
                    current = self.values.get(f"cache.{key}")
                    if value != (current.value if current else getattr(_DEFAULTS, _BY_TOML[f"cache.{key}"].field)):  # fmt: skip
                        entry[key] = value
                for key, setting in own.items():
                    current = self.values.get(f"forward.{key}")
                    default = getattr(_DEFAULTS, _BY_TOML[f"forward.{key}"].field) if f"forward.{key}" in _BY_TOML else None  # fmt: skip
                    if setting != (current.value if current else default):
                        entry[key] = setting
                entries.append(entry)
            where = ", ".join(sorted({w for _, w, _ in self.forward_zones.values()}))
            kept = []
            for entry in entries:  # a zone kdns cannot take is named, not a traceback
                try:
                    _BY_TOML["forward.zones"].kind.check([entry])
                except ValueError as exc:
                    block = self.zone_blocks[str(entry["name"])]
                    self.problem(f"{block.file}:{block.line}", f"forward zone {entry['name']} is not supported by kdns: {exc}")  # fmt: skip
                    continue
                kept.append(entry)
            if kept:
                self.values["forward.zones"] = _Value(kept, where, "")

    def render(self, source: str) -> str:
        lines = [
            f"# kdns configuration translated from {source} by `kdns import-corefile`.",
            "# Comments name the Corefile line each setting comes from.",
        ]
        for section in _SECTIONS:
            keys = [s for s in SETTINGS if s.section == section and s.toml in self.values]
            notes = self.notes.get(section, [])
            if not keys and not notes:
                continue
            lines += ["", f"[{section}]"]
            lines += [f"# {note}" for note in notes]
            for setting in keys:
                v = self.values[setting.toml]
                text = f"{setting.key} = {toml_value(v.value)}"
                lines.append(f"{text}  # {v.source}" if v.source else text)
        for array, tables in self.tables.items():  # after every [section], as TOML needs
            for table in tables:
                source = str(table.pop("#", ""))
                lines += ["", f"[[{array}]]" + (f"  # {source}" if source else "")]
                lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
        return "\n".join(lines) + "\n"


def _has(block: _Block, name: str) -> bool:
    return any(d.name == name for d in block.directives)
