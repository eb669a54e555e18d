"""/etc/resolv.conf (resolv.conf(5)): the default upstreams, and what split mode learns from a
pod's original resolver configuration (the cluster nameserver and search domains)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolvConf:
    conf = ResolvConf()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        words = line.split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            address = words[1].split("%", 1)[0]  # fe80::1%eth0: the zone id is not ours to use
            try:
                conf.nameservers.append(str(ipaddress.ip_address(address)))
            except ValueError:
                continue
        elif words[0] in ("search", "domain"):
            # The last search/domain line wins (resolv.conf(5)).
            conf.search = [w.rstrip(".").lower() for w in words[1:] if w.strip(".")]
    return conf


def read_resolv_conf(path: str = "/etc/resolv.conf") -> ResolvConf:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return parse_resolv_conf(handle.read())
    except OSError:
        return ResolvConf()
