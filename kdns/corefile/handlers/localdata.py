"""Local data: hosts, file (zone files), chaos."""

from __future__ import annotations

import ipaddress

from kdns.corefile.handlers.common import _own_zones
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _BY_TOML,
    _bad,
    _Block,
    _integer,
    _loc,
    _Translator,
    _zone,
)


def _hosts(t: _Translator, d: Directive, b: _Block) -> None:
    """hosts [FILE [ZONES...]] { [INLINE] ttl no_reverse reload fallthrough } -> [hosts]
    (hosts README; kdns.authority.hosts has the same semantics)."""
    zones = [z for arg in d.args[1:] for z in _zone(arg, d)] or b.zones
    t.set("hosts.zones", zones, d, "zones " + " ".join(zones))
    if d.args:
        t.set("hosts.file", d.args[0], d, "hosts " + d.args[0])
        if d.args[0].endswith("/NodeHosts"):  # k3s writes it into its coredns ConfigMap
            t.note("hosts", d, f"mount k3s's coredns ConfigMap key NodeHosts at {d.args[0]} in the kdns Deployment (docs/migrating-from-coredns.md); until then kdns serves without it, as CoreDNS does")  # fmt: skip
        elif d.args[0] != "/etc/hosts":
            t.note("hosts", d, f"{d.args[0]} is read in the kdns pod: mount it there; until then kdns serves without it, as CoreDNS does")  # fmt: skip
    else:
        t.note("hosts", d, "no FILE: CoreDNS reads /etc/hosts too; set hosts.file to serve it")
    entries: list[object] = []
    for o in d.block or []:
        try:
            ipaddress.ip_address(o.name.split("%", 1)[0])
        except ValueError:
            pass
        else:
            if not o.args:
                raise _bad(o, "an inline entry is IP NAME [ALIAS...]")
            entries.append(" ".join([o.name, *o.args]))
            continue
        if o.name == "ttl" and len(o.args) == 1:
            t.set("hosts.ttl", _integer(o.args[0], o), o, f"ttl {o.args[0]}")
        elif o.name == "no_reverse":
            t.set("hosts.no_reverse", True, o, "no_reverse")
        elif o.name == "reload":
            t.note("hosts", o, "kdns re-reads the file every server.reload_interval")
        elif o.name == "fallthrough":
            covered = [z for arg in o.args for z in _zone(arg, o)]
            if covered and set(covered) != set(zones):
                t.unsupported(d, f"fallthrough {' '.join(o.args)}", "kdns's fallthrough covers every zone of [hosts]")  # fmt: skip
            t.set("hosts.fallthrough", True, o, "fallthrough")
        else:
            t.unsupported(d, o.name, "no kdns equivalent; leave it out")
    if entries:
        t.append("hosts.entries", entries, d, "inline entries")


def _file(t: _Translator, d: Directive, b: _Block) -> None:
    """file DBFILE [ZONES...] -> [[zones]] with that zone file (file README)."""
    if not d.args:
        raise _bad(d, "takes DBFILE [ZONES...]")
    zones = [z for arg in d.args[1:] for z in _zone(arg, d)] or b.zones
    for o in d.block or []:
        if o.name == "reload":
            t.note("zones", o, "kdns re-reads zone files every server.reload_interval")
        elif o.name == "upstream":
            t.note("zones", o, "kdns resolves out-of-zone CNAME targets through forward")
        else:
            t.unsupported(d, o.name, "no kdns equivalent; leave it out")
    for zone in zones:
        if zone == ".":
            t.unsupported(d, "zone .", "kdns serves zone files for named zones; name the zone")
            continue
        entry: dict[str, object] = {"name": zone, "file": d.args[0]}
        try:
            _BY_TOML["zones"].kind.check([entry])
        except ValueError as exc:
            t.unsupported(d, f"zone {zone}", f"kdns cannot take this zone: {exc}")
            continue
        entry["#"] = f"{_loc(d)} file {' '.join(d.args)}; read in the kdns pod: mount it there"
        t.tables.setdefault("zones", []).append(entry)

    def check() -> None:
        for entry in list(t.tables.get("zones", [])):
            name = str(entry["name"])
            if name in _own_zones(t) or name in t.forward_zones:
                t.tables["zones"].remove(entry)
                t.unsupported(d, f"zone {name}", "kdns serves it otherwise (cluster, external or forward zone)")  # fmt: skip

    t.finish_checks.append(check)


def _chaos(t: _Translator, d: Directive, b: _Block) -> None:
    """chaos [VERSION] [AUTHORS...] -> [chaos] (chaos README)."""
    t.set("chaos.enabled", True, d, "chaos " + " ".join(d.args))
    if not b.root:  # OpenShift's `hostname.bind:5353 { chaos }`
        t.note("chaos", d, f"kdns answers every CH name it knows (version.bind, hostname.bind, ...), not only {' '.join(b.zones)}")  # fmt: skip
    if d.args:
        t.set("chaos.version", d.args[0], d, f"version {d.args[0]}")
    if d.args[1:]:
        t.set("chaos.authors", d.args[1:], d, "authors")
