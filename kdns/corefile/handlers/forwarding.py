"""Forwarding and caching: forward (and the legacy proxy), cache; per-zone settings of each
forwarding server block."""

from __future__ import annotations

from collections.abc import Callable

from kdns.config import parse_upstream
from kdns.corefile.handlers.common import _options, _own_zones
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _BY_TOML,
    _DEFAULTS,
    _bad,
    _Block,
    _duration,
    _in_zone,
    _integer,
    _loc,
    _seconds_value,
    _Translator,
    _zone,
)


def _upstreams(
    t: _Translator, d: Directive, targets: list[str], server_name: str | None, force_tcp: bool
) -> tuple[list[str], list[str]]:
    """(kdns upstreams, resolv.conf-style files) for forward's TO list."""
    ups: list[str] = []
    files: list[str] = []
    for to in targets:
        if to == "__PILLAR__UPSTREAM__SERVERS__":  # node-cache fills in the node's resolv.conf
            files.append("/etc/resolv.conf")
            continue
        scheme, sep, rest = to.partition("://")
        if not sep:
            scheme, rest = "dns", to
        scheme = scheme.lower()
        if scheme == "dns" and (rest.startswith("/") or rest.startswith(".")):
            files.append(rest)
            continue
        if scheme not in ("dns", "tls"):
            t.unsupported(d, f"{scheme}:// upstream {to}", "kdns forwards over UDP, TCP, tls://")
            continue
        name = server_name
        if "%" in rest:  # tls://9.9.9.9%dns.quad9.net[:PORT]
            address, _, name_port = rest.partition("%")
            name, colon, port = name_port.partition(":")
            rest = address + (f":{port}" if colon else "")
        try:  # 10.0.0.1, 10.0.0.1:53, 2001:db8::1, [2603:6010::1]:53, as kdns.config reads them
            parse_upstream(rest)
        except ValueError:
            t.unsupported(
                d, f"upstream {to}", "kdns forwards to IP addresses only; write the address"
            )
            continue
        if scheme == "tls":
            ups.append(f"tls://{rest}" + (f"@{name}" if name else ""))
            if not name:
                t.note(
                    "forward",
                    d,
                    f"{to}: no tls_servername; the certificate is checked against the address",
                )
        else:
            ups.append(("tcp://" if force_tcp else "") + rest)
    return ups, files


def _forward(t: _Translator, d: Directive, b: _Block) -> None:
    """forward FROM TO... { options }: the . block's go to [forward]; a zone's (a stub domain
    block, `forward ZONE TO`) to its own [forward] zones entry, as each CoreDNS server block
    has its own forward (policy, tls_servername, tls, force_tcp, prefer_udp, ...)."""
    if len(d.args) < 2:
        raise _bad(d, "takes FROM TO...")
    server_name: str | None = None
    force_tcp = False
    own: dict[str, object] = {}  # this forward's settings, [forward] zones keys
    ca: list[tuple[str, Directive]] = []

    for option in d.block or []:
        if option.name == "tls_servername":
            if len(option.args) != 1:
                raise _bad(option, "takes one NAME")
            server_name = option.args[0]
        elif option.name == "force_tcp" or (option.name == "protocol" and "force_tcp" in option.args):  # fmt: skip
            force_tcp = True

    def policy(o: Directive) -> None:
        if len(o.args) != 1 or o.args[0] not in ("random", "round_robin", "sequential"):
            raise _bad(o, "takes random|round_robin|sequential")  # CoreDNS refuses others
        own["policy"] = o.args[0]

    def max_fails(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "takes one integer")
        own["max_fails"] = _integer(o.args[0], o)

    def max_concurrent(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "takes one integer")
        own["max_concurrent"] = _integer(o.args[0], o, 1)
        t.note("forward", o, "beyond max_concurrent kdns answers SERVFAIL (CoreDNS: REFUSED)")

    def health_check(o: Directive) -> None:
        if not o.args:
            raise _bad(o, "takes DURATION [no_rec] [domain FQDN]")
        own["health_check"] = _seconds_value(_duration(o.args[0], o))
        if o.args[1:]:
            t.unsupported(
                d,
                f"health_check {' '.join(o.args[1:])}",
                "kdns probes upstreams with `. NS`, recursion desired",
            )

    def tls(o: Directive) -> None:
        if len(o.args) == 1:
            ca.append((o.args[0], o))
        elif len(o.args) in (2, 3):
            t.unsupported(d, "tls CERT KEY", "kdns presents no client certificate")
            if len(o.args) == 3:
                ca.append((o.args[2], o))
        elif o.args:
            raise _bad(o, "takes [CERT KEY] [CA]")

    def protocol(o: Directive) -> None:  # proxy's `protocol dns [force_tcp]`
        if not o.args or o.args[0] != "dns":
            t.unsupported(d, f"protocol {' '.join(o.args)}", "kdns forwards plain DNS and DNS over TLS")  # fmt: skip

    def note(why: str) -> Callable[[Directive], None]:
        return lambda o: t.note("forward", o, f"{o.name}: {why}")

    def unsupported(advice: str) -> Callable[[Directive], None]:
        return lambda o: t.unsupported(d, o.name, advice)

    def except_(o: Directive) -> None:
        """except ZONE...: names kdns answers itself never reach its forwarder anyway (the
        cluster domain, external and local zones: `forward . X { except cluster.local }`)."""
        if not o.args:
            raise _bad(o, "takes ZONE...")
        excepted = [z for a in o.args for z in _zone(a, o)]

        def check() -> None:
            ours = _own_zones(t) + [str(z["name"]) for z in t.tables.get("zones", [])]
            outside = [z for z in excepted if not any(_in_zone(z, own) for own in ours)]
            if outside:
                t.unsupported(d, f"except {' '.join(outside)}", "kdns forwards every name outside its own zones")  # fmt: skip
            else:
                t.note("forward", o, f"except {' '.join(excepted)}: kdns answers those names itself, never forwards them")  # fmt: skip

        t.finish_checks.append(check)

    _options(
        t,
        d,
        {
            "tls_servername": lambda o: None,
            "force_tcp": lambda o: None,
            "prefer_udp": lambda o: own.__setitem__("prefer_udp", True),
            "policy": policy,
            "max_fails": max_fails,
            "max_concurrent": max_concurrent,
            "health_check": health_check,
            "tls": tls,
            "protocol": protocol,
            "expire": note("kdns keeps its own idle timeout for upstream connections"),
            "max_idle_conns": note("kdns keeps one pipelined connection per upstream"),
            "fail_timeout": note("kdns marks an upstream down after max_fails failures"),
            "spray": note("when every upstream is down kdns tries them all"),
            "except": except_,
            "next": unsupported("kdns returns the upstream's answer as it is"),
            "next_on_nodata": unsupported("kdns returns the upstream's answer as it is"),
            "failover": unsupported("kdns tries the next upstream only on a timeout or error"),
            "failfast_all_unhealthy_upstreams": unsupported(
                "when every upstream is down kdns still tries one"
            ),
            "max_connect_attempts": unsupported("no kdns equivalent"),
            "resolver": unsupported("kdns forwards to IP addresses only"),
            "doh_method": unsupported("kdns does not forward over HTTPS"),
        },
    )
    if force_tcp and own.get("prefer_udp"):
        own.pop("prefer_udp")  # forward README: force_tcp wins
    if len(ca) > 1:
        t.unsupported(d, f"tls {ca[1][0]}", f"one CA bundle per forward, kept {ca[0][0]}")
    if ca:
        own["tls_ca_file"] = ca[0][0]
    if "max_concurrent" not in own:
        t.note("forward", d, "no max_concurrent (CoreDNS: no limit); kdns's limit is 1000")
    targets = d.args[1:]
    from_zones = _zone(d.args[0], d)
    if from_zones == ["."]:
        from_zones = b.zones
    else:
        # The block gets its zones' names only, and forward takes FROM's only (forward README:
        # "FROM is the base domain to match for the request to be forwarded"): what this
        # forward handles is where the two meet.
        meet = [z if _in_zone(z, bz) else bz for z in from_zones for bz in b.zones if _in_zone(z, bz) or _in_zone(bz, z)]  # fmt: skip
        if not meet:
            t.unsupported(
                d,
                d.args[0],
                f"this forward sits in the {' '.join(b.zones)} block, which gets no name under "
                f"{d.args[0]}: it forwards nothing, and CoreDNS answers that block's names "
                "SERVFAIL (no next plugin); left out (kdns sends those names to its upstreams); "
                f"write forward . {' '.join(d.args[1:])} to forward the block's names",
            )
            return
        from_zones = list(dict.fromkeys(meet))
    t.block_forwards.setdefault(id(b), []).extend(from_zones)
    text = "forward " + " ".join(d.args)
    if "__PILLAR__CLUSTER__DNS__" in targets and "." not in from_zones:
        # node-local-dns: node-cache fills in the kube-dns-upstream Service's ClusterIP at run
        # time; manifests/nodelocal passes it in KDNS_FORWARD_ZONE from the Service's variables.
        t.note(
            "forward",
            d,
            f"{' '.join(from_zones)} go to __PILLAR__CLUSTER__DNS__ (kube-dns-upstream, filled "
            "in at run time): set KDNS_FORWARD_ZONE=ZONE=tcp://$(KUBE_DNS_UPSTREAM_SERVICE_HOST):"
            "$(KUBE_DNS_UPSTREAM_SERVICE_PORT_DNS_TCP) in the DaemonSet, as "
            "manifests/nodelocal/daemonset.yaml does",
        )
        t.pillar_blocks.append(b)
        return
    ups, files = _upstreams(t, d, targets, server_name, force_tcp)
    if "." in from_zones:
        t.root_forward = True
        for key, default in (("policy", "random"), ("max_fails", 2), ("health_check", 0.5)):
            # CoreDNS's defaults, which are kdns's: a forward without the option asks for these
            t.share(f"forward.{key}", own.get(key, default), d, f"{key} {own[key]}" if key in own else "")  # fmt: skip
        if "max_concurrent" in own:
            t.share("forward.max_concurrent", own["max_concurrent"], d, f"max_concurrent {own['max_concurrent']}")  # fmt: skip
        if ca:
            t.share("forward.tls_ca_file", ca[0][0], ca[0][1], f"tls {ca[0][0]}")
        if own.get("prefer_udp"):
            t.set("forward.prefer_udp", True, d, "prefer_udp")
        if files and ups:
            t.unsupported(
                d,
                f"{files[0]} with addresses",
                "kdns uses forward.upstreams or resolv.conf, not both; list them all",
            )
        if len(files) > 1:
            t.unsupported(d, " ".join(files), "kdns reads one resolv.conf (forward.resolv_conf)")
        if ups:
            t.set("forward.upstreams", ups, d, text)
        elif files and files[0] != "/etc/resolv.conf":
            t.set("forward.resolv_conf", files[0], d, text)
        elif files:
            t.note("forward", d, "upstreams from /etc/resolv.conf, kdns's default")
        return
    if files and not ups and files == ["/etc/resolv.conf"]:

        def same_as_default() -> None:
            # kubespray's external zones: the zone goes where every other name goes already
            if "forward.upstreams" in t.values or "forward.resolv_conf" in t.values:
                t.unsupported(d, files[0], "forward.zones take addresses: list that file's nameservers")  # fmt: skip
            else:
                t.note("forward", d, f"{' '.join(from_zones)}: /etc/resolv.conf, as every name")

        t.finish_checks.append(same_as_default)
        return
    if files:
        t.unsupported(d, files[0], "forward.zones take addresses: list that file's nameservers")
    if not ups:
        return
    for key, default in (("policy", "random"), ("max_fails", 2), ("health_check", 0.5)):
        own.setdefault(key, default)  # CoreDNS's defaults for this block, whatever . has
    for zone in from_zones:
        if zone in t.forward_zones:
            t.unsupported(
                d, f"second forward for {zone}", f"kept the one from {t.forward_zones[zone][1]}"
            )
            continue
        t.forward_zones[zone] = (ups, f"{_loc(d)} {text} in {' '.join(b.keys)}", dict(own))
        t.zone_blocks[zone] = b

    def inside_our_zones() -> None:
        cluster = t.values["kubernetes.cluster_domain"].value if "kubernetes.cluster_domain" in t.values else None  # fmt: skip
        for zone in from_zones:
            if (
                isinstance(cluster, str)
                and _in_zone(zone, cluster)
                and zone != cluster
                and not any(_in_zone(zone, f"{sub}.{cluster}") for sub in ("svc", "pod"))
            ):
                # A stub domain inside the cluster domain (kube-dns stubDomains): kdns
                # forwards its names as CoreDNS's more specific server block does.
                continue
            for own_zone in _own_zones(t):
                if _in_zone(zone, own_zone) and zone in t.forward_zones:
                    del t.forward_zones[zone]
                    t.unsupported(
                        d,
                        f"forward {zone}",
                        f"names under {own_zone} are answered by kdns, never forwarded: left out "
                        "of forward.zones (serve those names as Services, or keep CoreDNS for "
                        "them)",
                    )

    t.finish_checks.append(inside_our_zones)


def _cache(t: _Translator, d: Directive, b: _Block) -> None:
    # What this cache asks for, CoreDNS's defaults first (kdns's too); later wins, as in CoreDNS.
    asks: dict[str, tuple[object, Directive, str]] = {
        key: (getattr(_DEFAULTS, _BY_TOML[key].field), d, "")
        for key in (
            "cache.success_capacity",
            "cache.denial_capacity",
            "cache.success_ttl",
            "cache.denial_ttl",
            "cache.min_ttl",
            "cache.serve_stale",
            "cache.prefetch",
        )
    }
    asks["cache.enabled"] = (True, d, "cache")
    args = list(d.args)
    if args and args[0].isdigit():
        ttl = _integer(args.pop(0), d, 1)
        asks["cache.success_ttl"] = asks["cache.denial_ttl"] = (ttl, d, f"cache {ttl}")
    if args and [z for a in args for z in _zone(a, d)] != ["."]:
        t.unsupported(d, f"zones {' '.join(args)}", "kdns caches every forwarded answer")

    def kind(name: str) -> Callable[[Directive], None]:
        def apply(o: Directive) -> None:
            if not 1 <= len(o.args) <= 3:
                raise _bad(o, "takes CAPACITY [TTL] [MINTTL]")
            values = [_integer(a, o) for a in o.args]
            asks[f"cache.{name}_capacity"] = (values[0], o, f"{name} {o.args[0]}")
            if len(values) > 1:
                asks[f"cache.{name}_ttl"] = (values[1], o, f"{name} {' '.join(o.args[:2])}")
            if len(values) > 2:
                old, at, _ = asks["cache.min_ttl"]
                if at.name in ("success", "denial") and old != values[2]:
                    t.unsupported(
                        d,
                        f"{name} MINTTL {values[2]}",
                        f"kdns has one cache.min_ttl, kept {old} from {at.where}",
                    )
                else:
                    asks["cache.min_ttl"] = (values[2], o, f"{name} {' '.join(o.args)}")

        return apply

    def prefetch(o: Directive) -> None:
        if not 1 <= len(o.args) <= 3:
            raise _bad(o, "takes AMOUNT [[DURATION] [PERCENTAGE%]]")
        asks["cache.prefetch"] = (_integer(o.args[0], o, 1), o, f"prefetch {o.args[0]}")
        rest = o.args[1:]
        if rest and not rest[0].endswith("%"):
            if _duration(rest.pop(0), o) != 60:
                t.unsupported(d, "prefetch DURATION", "kdns counts popularity over 1m")
        if rest and rest[0] != "10%":
            t.unsupported(d, "prefetch PERCENTAGE", "kdns prefetches in the last 10% of the TTL")

    def serve_stale(o: Directive) -> None:
        seconds = _duration(o.args[0], o) if o.args else 3600.0
        asks["cache.serve_stale"] = (_seconds_value(seconds), o, "serve_stale " + " ".join(o.args))
        if o.args[1:] and o.args[1] != "immediate":
            t.unsupported(d, f"serve_stale {o.args[1]}", "kdns serves stale answers immediately")

    def disable(o: Directive) -> None:
        if not o.args or o.args[0] not in ("success", "denial"):
            raise _bad(o, "takes success|denial [ZONES...]")

        def check() -> None:
            zones = [z for a in o.args[1:] for z in _zone(a, o)] or b.zones
            ours = _own_zones(t)
            outside = [z for z in zones if not any(_in_zone(z, own) for own in ours)]
            if outside:
                t.unsupported(
                    d,
                    f"disable {o.args[0]} {' '.join(outside)}",
                    "kdns caches every forwarded answer",
                )
            else:
                t.note("cache", o, "kdns never caches its own zones' answers in this cache")

        t.finish_checks.append(check)

    def servfail(o: Directive) -> None:
        t.note("cache", o, "kdns never caches SERVFAIL")

    _options(
        t,
        d,
        {
            "success": kind("success"),
            "denial": kind("denial"),
            "prefetch": prefetch,
            "serve_stale": serve_stale,
            "disable": disable,
            "servfail": servfail,
            "keepttl": lambda o: t.unsupported(d, "keepttl", "kdns counts cached TTLs down"),
        },
    )
    if not b.root:
        # A zone block's own cache: its TTL caps go to its forward zone's entry (CoreDNS: each
        # server block has its own cache); kdns never caches its own zones' answers.
        ttls = t.block_ttls.setdefault(id(b), {})
        for key in ("success_ttl", "denial_ttl"):
            value, _, text = asks.pop(f"cache.{key}")
            if text:
                ttls[key] = int(value)  # type: ignore[call-overload]
    for key, (value, at, text) in asks.items():
        t.share(key, value, at, text)
