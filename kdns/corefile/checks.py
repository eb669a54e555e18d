"""Checks across server blocks, run once every block is read: a block on another port, no
default route (no forward for the . block), a cache or a forward that covers only part of what
CoreDNS's blocks cover, and the order of acl rules (a zone's own before the . block's)."""

from __future__ import annotations

from kdns.corefile.translator import _Block, _has, _in_zone, _loc, _Translator, _Value

# Plugins that answer names themselves: a block with one of them is not only its forward.
_ANSWERING = ("kubernetes", "k8s_external", "hosts", "file", "auto", "template", "chaos", "etcd")


def other_port(t: _Translator, block: _Block, main: _Block) -> str:
    """Why a block on another port does not translate, and what the user can do: kdns has
    one set of names for every listen address, so it cannot run a second server on that
    port answering only these zones (CoreDNS refuses other names there)."""
    zones = " ".join(block.zones)
    here = []
    for zone in block.zones:
        covering = [b for b in t.blocks if b.port == main.port and any(_in_zone(zone, z) for z in b.zones)]  # fmt: skip
        best = max(covering, key=lambda b: max(len(z) for z in b.zones if _in_zone(zone, z)), default=None)  # fmt: skip
        here.append(f"{zone} as the {' '.join(best.keys)} block does" if best else f"no {zone}")  # fmt: skip
    return (
        f"server block {' '.join(block.keys)} on port {block.port} is not supported by kdns: "
        f"kdns answers one set of names on every listen address, so it has no server of its "
        f"own for {zones} on port {block.port} (CoreDNS answers only {zones} there, with "
        f"this block's plugins); on port {main.port} kdns answers {', '.join(here)}. To "
        f'answer on port {block.port} too, add ":{block.port}" to server.listen (every zone '
        f"is then answered there), or keep CoreDNS for this block"
    )


def default_route(t: _Translator, main: _Block) -> None:
    """No forward for the . block: CoreDNS answers names outside its blocks' zones with an
    error (REFUSED outside every block; SERVFAIL, "no next plugin", in a . block without
    forward), where kdns would send them to resolv.conf's nameservers. And a cache only in
    zone blocks: CoreDNS caches those zones' names only, kdns every forwarded name."""
    if not t.root_forward:
        if not t.forward_zones and not t.pillar_blocks:
            t.set("forward.enabled", False, None, "no forward for the . block: names outside kdns's zones are refused, not forwarded")  # fmt: skip
        else:
            # No default route: an empty resolv.conf and no forward.upstreams leave only the
            # zones' routes, and kdns refuses what none of them takes.
            t.set("forward.resolv_conf", "/dev/null", None, "no forward for the . block: only the forward zones are forwarded, other names refused")  # fmt: skip
    for block in t.blocks:
        forwarded = t.block_forwards.get(id(block))
        if block.root or forwarded is None or any(_has(block, p) for p in _ANSWERING):
            continue
        # CoreDNS: a name of this block that its forward does not take reaches the end of
        # the plugin chain (SERVFAIL, "no next plugin found"); kdns would forward it.
        rest = [z for z in block.zones if not any(_in_zone(z, f) for f in forwarded)]
        if rest:
            t.problem(
                f"{block.file}:{block.line}",
                f"server block {' '.join(block.keys)}: names of {' '.join(rest)} outside "
                f"{' '.join(forwarded)} are not supported by kdns: this block forwards only "
                f"{' '.join(forwarded)}, so CoreDNS answers the rest SERVFAIL; kdns sends them "
                "to its default upstreams",
            )
    root = [b for b in t.blocks if b.root and b.port == main.port]
    cached = [b for b in t.blocks if b.port == main.port and not b.root and _has(b, "cache") and _has(b, "forward")]  # fmt: skip
    if root and cached and not any(_has(b, "cache") for b in root) and t.root_forward:
        block = cached[0]
        t.problem(
            f"{block.file}:{block.line}",
            f"plugin cache: a cache in the {' '.join(block.keys)} block only is not supported "
            f"by kdns: kdns's cache holds every forwarded answer, and the . block has no "
            "cache (CoreDNS caches only this block's names); add cache to the . block, or "
            "set cache.enabled = false",
        )
    for zone, (_, where, _) in t.forward_zones.items():
        own = t.zone_blocks.get(zone)
        if own is not None and not own.root and not _has(own, "cache") and any(_has(b, "cache") for b in root):  # fmt: skip
            t.note("cache", None, f"{zone}: its block ({where}) has no cache; kdns caches its answers as every forwarded name's")  # fmt: skip


def acl_order(t: _Translator) -> None:
    # Rules of a zone's own server block first: CoreDNS sends a query to the most specific
    # block, so they come before the . block's rules (which kdns applies to every zone).
    rules = t.acl_zoned + t.acl_root
    if not rules:
        return
    t.values["acl.rules"] = _Value(
        [rule for rule, _ in rules],
        ", ".join(dict.fromkeys(_loc(d) for _, d in rules)),
        rules[0][1].where,
    )
    others = [b for b in t.blocks if not b.root and not _has(b, "acl")]
    if t.acl_root and others:
        zones = " ".join(z for b in others for z in b.zones)
        t.problem(
            t.acl_root[0][1].where,
            f"plugin acl: the . block's rules reaching {zones} is not supported by kdns: "
            "those zones' server blocks have no acl, but kdns applies these rules to every "
            "zone; add allow rules for them first if that matters",
        )
