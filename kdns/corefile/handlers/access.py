"""Who may ask: acl, and zone transfers (transfer, the older allow_transfer options)."""

from __future__ import annotations

import ipaddress

from kdns.corefile.handlers.common import _own_zones
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _BY_TOML,
    _bad,
    _Block,
    _in_zone,
    _Translator,
    _zone,
)


def _acl(t: _Translator, d: Directive, b: _Block) -> None:
    zones = [z for arg in d.args for z in _zone(arg, d)] or b.zones
    rule_zones = [] if "." in zones else zones
    for o in d.block or []:
        if o.name not in ("allow", "block", "filter", "drop"):
            raise _bad(o, f"unknown action {o.name!r} (allow, block, filter, drop)")
        rule: dict[str, object] = {"action": o.name}
        current: list[str] | None = None
        parts: dict[str, list[str]] = {}
        for arg in o.args:
            if arg in ("type", "net"):
                current = parts.setdefault(arg, [])
            elif current is None:
                raise _bad(o, f"expected type or net, got {arg!r}")
            else:
                current.append(arg)
        for key in ("net", "type"):
            if key in parts:
                rule[key] = parts[key]
        if rule_zones:
            rule["zone"] = list(rule_zones)
        try:
            _BY_TOML["acl.rules"].kind.check([rule])
        except ValueError as exc:
            t.unsupported(d, f"{o.name} {' '.join(o.args)}", f"kdns cannot take this rule: {exc}")
            continue
        (t.acl_zoned if rule_zones else t.acl_root).append((rule, o))


def _allow_transfer(t: _Translator, d: Directive, addresses: list[str]) -> None:
    nets: list[str] = []
    for address in addresses:
        if address != "*":
            try:
                ipaddress.ip_network(address, strict=False)
            except ValueError:
                host = address.rsplit(":", 1)[0].strip("[]")  # IP:PORT, a notify target
                try:
                    address = str(ipaddress.ip_address(host))
                except ValueError:
                    raise _bad(d, f"to: {address!r} is not an address or network") from None
                t.note("transfer", d, "kdns sends no NOTIFY; the port is left out")
        nets.append(address)
    t.append("transfer.allow", list(nets), d, "to " + " ".join(addresses))


def _transfer(t: _Translator, d: Directive, b: _Block) -> None:
    for o in d.block or []:
        if o.name != "to" or not o.args:
            raise _bad(o, "takes: to ADDRESS...")
        _allow_transfer(t, o, o.args)
    zones = [z for arg in d.args for z in _zone(arg, d)] or b.zones

    def check() -> None:
        left = [z for z in _own_zones(t) if not any(_in_zone(z, given) for given in zones)]
        if left:
            t.unsupported(
                d,
                f"zones {' '.join(zones)}",
                f"kdns allows transfers of all its zones, {' '.join(left)} too",
            )

    t.finish_checks.append(check)
