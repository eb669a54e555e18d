"""One handler per CoreDNS plugin: what each directive and option becomes in kdns's
settings, or why it cannot (docs/coredns-plugins.md is the same table for readers)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from kdns.config import parse_hostport, parse_upstream
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _BY_TOML,
    _DEFAULTS,
    Handler,
    _bad,
    _Block,
    _duration,
    _in_zone,
    _integer,
    _is_reverse,
    _loc,
    _seconds_value,
    _Translator,
    _zone,
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


# --- plugins ---------------------------------------------------------------------------------


def _kubernetes(t: _Translator, d: Directive, b: _Block) -> None:
    zones = [z for arg in d.args for z in _zone(arg, d)] or b.zones
    cluster = [z for z in zones if not _is_reverse(z)]
    reverse = [z for z in zones if _is_reverse(z)]
    if not cluster or cluster[0] == ".":
        t.unsupported(d, None, "name the cluster domain (kubernetes cluster.local ...)")
    else:
        t.set("kubernetes.cluster_domain", cluster[0], d, "kubernetes " + " ".join(d.args))
        for extra in cluster[1:]:
            t.unsupported(d, f"zone {extra}", f"kdns serves one cluster domain ({cluster[0]})")
    if reverse:
        t.note("kubernetes", d, f"{' '.join(reverse)}: kdns always answers PTRs for cluster IPs")
    pods = "disabled"  # CoreDNS's default; kdns's own is insecure
    ttl: list[int] = []

    def set_pods(o: Directive) -> None:
        nonlocal pods
        if len(o.args) != 1:
            raise _bad(o, "takes one of disabled, insecure, verified")
        pods = o.args[0]

    def set_ttl(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "takes one number of seconds")
        ttl.append(_integer(o.args[0], o))
        t.set("kubernetes.ttl", ttl[0], o, f"ttl {o.args[0]}")

    def fallthrough(o: Directive) -> None:
        covered = [z for arg in o.args for z in _zone(arg, o)] or zones
        non_reverse = [z for z in covered if not _is_reverse(z)]
        if non_reverse:
            t.unsupported(
                d,
                f"fallthrough {' '.join(non_reverse)}",
                "names under the cluster domain that do not exist answer NXDOMAIN in kdns; "
                "they never go on to forward",
            )
        if len(non_reverse) < len(covered):
            t.note("forward", o, "kdns forwards reverse names it does not know (fallthrough)")

    def kubeconfig(o: Directive) -> None:
        if not 1 <= len(o.args) <= 2:
            raise _bad(o, "takes KUBECONFIG [CONTEXT]")
        t.set("kubernetes.kubeconfig", o.args[0], o, f"kubeconfig {o.args[0]}")
        if len(o.args) == 2:
            t.unsupported(d, "kubeconfig CONTEXT", "kdns uses the kubeconfig's current context")

    def transfer(o: Directive) -> None:
        if not o.args or o.args[0] != "to":
            raise _bad(o, "takes: to ADDRESS...")
        _allow_transfer(t, o, o.args[1:])

    def startup(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "takes one duration")
        value = _seconds_value(_duration(o.args[0], o))
        t.set("kubernetes.startup_timeout", value, o, f"startup_timeout {o.args[0]}")

    def ignored(why: str) -> Callable[[Directive], None]:
        return lambda o: t.note("kubernetes", o, why)

    def unsupported(advice: str) -> Callable[[Directive], None]:
        return lambda o: t.unsupported(d, o.name, advice)

    api = "use kubernetes.kubeconfig with a kubeconfig that names the API server and its TLS"
    _options(
        t,
        d,
        {
            "pods": set_pods,
            "ttl": set_ttl,
            "endpoint_pod_names": lambda o: t.set(
                "kubernetes.endpoint_pod_names", True, o, "endpoint_pod_names"
            ),
            "fallthrough": fallthrough,
            "kubeconfig": kubeconfig,
            "transfer": transfer,
            "startup_timeout": startup,
            "resyncperiod": ignored("CoreDNS ignores resyncperiod; kdns watches"),
            "upstream": ignored("kdns resolves ExternalName targets through forward"),
            "apiserver_qps": ignored("kdns does not rate-limit its API requests"),
            "apiserver_burst": ignored("kdns does not rate-limit its API requests"),
            "apiserver_max_inflight": ignored("kdns does not rate-limit its API requests"),
            "endpoint": unsupported(api),
            "tls": unsupported(api),
            "namespaces": unsupported("kdns serves every namespace"),
            "labels": unsupported("kdns serves every Service, whatever its labels"),
            "namespace_labels": unsupported("kdns serves every namespace"),
            "noendpoints": unsupported("kdns always serves endpoint names"),
            "ignore": unsupported("kdns answers NODATA for a Service with no ready endpoints"),
            "multicluster": unsupported("kdns serves one cluster"),
        },
    )
    t.set(
        "kubernetes.pods",
        pods,
        d,
        f"pods {pods}" if pods != "disabled" else "no pods option: CoreDNS's default, disabled",
    )


def _k8s_external(t: _Translator, d: Directive, b: _Block) -> None:
    zones = [z for arg in d.args for z in _zone(arg, d)] or [z for z in b.zones if z != "."]
    if not zones or "." in zones:
        t.unsupported(d, None, "name the external zone (k8s_external example.org)")
        return
    t.append("kubernetes.external_zones", list(zones), d, "k8s_external " + " ".join(d.args))

    def apex(o: Directive) -> None:
        if o.args != ["dns"]:
            t.unsupported(d, "apex", "kdns names the zone's nameserver ns1.dns.<zone>")

    def ttl(o: Directive) -> None:
        if len(o.args) != 1:
            raise _bad(o, "takes one number of seconds")
        t.external_ttl.append((_integer(o.args[0], o), o))

    _options(
        t,
        d,
        {
            "apex": apex,
            "ttl": ttl,
            "headless": lambda o: t.unsupported(
                d, "headless", "kdns serves external IPs and LoadBalancer addresses only"
            ),
            "fallthrough": lambda o: t.unsupported(
                d, "fallthrough", "names in the external zone that do not exist answer NXDOMAIN"
            ),
        },
    )

    def check_ttl() -> None:
        value = t.values.get("kubernetes.ttl")
        cluster_ttl = value.value if value else 5
        for external_ttl, _o in t.external_ttl:
            if external_ttl != cluster_ttl:
                t.unsupported(
                    d,
                    f"ttl {external_ttl}",
                    f"kdns answers every zone with kubernetes.ttl ({cluster_ttl})",
                )
        t.external_ttl.clear()

    t.finish_checks.append(check_ttl)


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
        if len(o.args) != 1:
            raise _bad(o, "takes random|round_robin|sequential")
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
            "except": unsupported("kdns forwards every name outside its own zones"),
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
        for zone in from_zones:
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


def _health(t: _Translator, d: Directive, b: _Block) -> None:
    address = d.args[0] if d.args else ":8080"
    t.set("health.listen", address, d, "health " + " ".join(d.args))
    lameduck = 0.0  # CoreDNS: no lameduck unless asked

    def set_lameduck(o: Directive) -> None:
        nonlocal lameduck
        if len(o.args) != 1:
            raise _bad(o, "takes one duration")
        lameduck = _duration(o.args[0], o)

    _options(t, d, {"lameduck": set_lameduck})
    t.set(
        "health.lameduck",
        _seconds_value(lameduck),
        d,
        f"lameduck {_seconds_value(lameduck)}s" if lameduck else "no lameduck option",
    )


def _ready(t: _Translator, d: Directive, b: _Block) -> None:
    t.set("ready.listen", d.args[0] if d.args else ":8181", d, "ready " + " ".join(d.args))


def _prometheus(t: _Translator, d: Directive, b: _Block) -> None:
    address = d.args[0] if d.args else "localhost:9153"  # CoreDNS's default address
    if t.set("metrics.listen", address, d, "prometheus " + " ".join(d.args)):
        t.set("metrics.compat", "coredns", d, "coredns_* metric names, so dashboards keep working")


def _errors(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("log", d, "kdns always logs errors")
    for o in d.block or []:
        t.note("log", o, f"{o.name}: no kdns equivalent; ignored")


def _log(t: _Translator, d: Directive, b: _Block) -> None:
    """log [NAMES...] [FORMAT] { class CLASSES... }: the query log, its classes as CoreDNS's
    (success, denial, error, all: log README)."""
    t.set("log.query_log", True, d, "log " + " ".join(d.args))
    classes: list[str] = []
    for o in d.block or []:
        if o.name != "class" or not o.args:
            raise _bad(o, "takes: class success|denial|error|all...")
        for name in o.args:
            if name not in ("success", "denial", "error", "all"):
                raise _bad(o, f"unknown class {name!r} (success, denial, error, all)")
            classes.append(name)
    if classes and "all" not in classes:
        t.set("log.classes", list(dict.fromkeys(classes)), d, "class " + " ".join(classes))
    zones = [a for a in d.args if not a.startswith("{")]
    if any(z for a in zones for z in _zone(a, d) if z != "." and z not in b.zones):
        t.note("log", d, "kdns logs the queries of every zone")
    if len(zones) < len(d.args):
        t.note("log", d, "kdns logs in its own format (client, name, type, rcode, duration)")


def _loop(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("forward", d, "kdns always checks its upstreams for a forwarding loop at start")


def _reload(t: _Translator, d: Directive, b: _Block) -> None:
    interval = _duration(d.args[0], d) if d.args else 30.0
    t.set("server.reload_interval", _seconds_value(interval), d, "reload " + " ".join(d.args))
    if len(d.args) > 1:
        t.note("server", d, "kdns checks without jitter")


def _loadbalance(t: _Translator, d: Directive, b: _Block) -> None:
    if d.args and d.args[0] != "round_robin":
        t.unsupported(d, " ".join(d.args), "kdns rotates answers round robin only")
    t.set("server.loadbalance", True, d, "loadbalance " + " ".join(d.args))


def _bind(t: _Translator, d: Directive, b: _Block) -> None:
    if d.env_args:
        # bind {$POD_IP}: each replica's own address. Never baked into the config (every
        # replica would bind one pod's address): kdns listens on every address of the pod.
        t.bind_env.append(d)
        names = sorted({n for v in d.env_args.values() for n in v})
        t.note(
            "server",
            d,
            f"bind {' '.join('{$' + n + '}' for n in names)}: kdns listens on every address of "
            "its pod; to bind the pod's own address, set KDNS_LISTEN from the Downward API "
            "(status.podIP) in the Deployment's env",
        )
    for index, address in enumerate(d.args):
        if index in d.env_args:
            continue
        try:
            host = str(ipaddress.ip_address(address))
        except ValueError:
            t.unsupported(d, f"interface {address}", "kdns binds IP addresses; write them")
            continue
        hostport = f"[{host}]:{b.port}" if ":" in host else f"{host}:{b.port}"
        parse_hostport(hostport)
        if hostport not in t.listen:
            t.listen.append(hostport)
    if d.block:
        t.unsupported(d, "except", "list only the addresses to bind")


def _bufsize(t: _Translator, d: Directive, b: _Block) -> None:
    size = _integer(d.args[0], d) if d.args else 1232
    t.set("server.udp_size", size, d, "bufsize " + " ".join(d.args))


def _timeouts(t: _Translator, d: Directive, b: _Block) -> None:
    for o in d.block or []:
        if o.name == "idle" and len(o.args) == 1:
            idle = _seconds_value(_duration(o.args[0], o))
            t.set("server.tcp_idle_timeout", idle, o, f"idle {o.args[0]}")
        else:
            t.note("server", o, f"timeouts {o.name}: no kdns equivalent; ignored")


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


def _debug(t: _Translator, d: Directive, b: _Block) -> None:
    t.set("log.level", "debug", d, "debug")


def _root(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("server", d, "kdns keeps zone and hosts file paths as written: make them absolute")


def _cancel(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("forward", d, "kdns gives up on an upstream after forward.timeout (2s)")


def _workers(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("server", d, "kdns scales with server.workers processes sharing the port")


def _hosts(t: _Translator, d: Directive, b: _Block) -> None:
    """hosts [FILE [ZONES...]] { [INLINE] ttl no_reverse reload fallthrough } -> [hosts]
    (hosts README; kdns.authority.hosts has the same semantics)."""
    zones = [z for arg in d.args[1:] for z in _zone(arg, d)] or b.zones
    t.set("hosts.zones", zones, d, "zones " + " ".join(zones))
    if d.args:
        t.set("hosts.file", d.args[0], d, "hosts " + d.args[0])
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
        entry["#"] = f"{_loc(d)} file {' '.join(d.args)}"
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
    if d.args:
        t.set("chaos.version", d.args[0], d, f"version {d.args[0]}")
    if d.args[1:]:
        t.set("chaos.authors", d.args[1:], d, "authors")


def _autopath(t: _Translator, d: Directive, b: _Block) -> None:
    """autopath @kubernetes -> kubernetes.autopath (autopath README)."""
    if not d.args or d.args[-1] != "@kubernetes" or "kubernetes.autopath" not in _BY_TOML:
        t.unsupported(
            d,
            " ".join(d.args),
            "kdns completes search paths for @kubernetes only (kubernetes.autopath); lower "
            "ndots in the pods' dnsConfig instead",
        )
        return

    def check() -> None:
        pods = t.values.get("kubernetes.pods")
        if pods is not None and pods.value == "disabled":
            t.unsupported(d, None, "autopath needs `pods verified` (or insecure) in kubernetes")
            return
        t.set("kubernetes.autopath", True, d, "autopath @kubernetes")

    t.finish_checks.append(check)


def _rewrite(t: _Translator, d: Directive, b: _Block) -> None:
    """rewrite [continue|stop] FIELD [MATCH] FROM TO [answer auto|name F T|value F T]..., or
    rewrite [continue|stop] { name ... / answer name F T / answer value F T } -> [[rewrite]]
    (rewrite README: "The default behaviour is stop"; "answers for rewrites of type exact are
    always rewritten"; the block form is strict: name first, then its answer rules)."""
    from kdns.rules.rewrite import MATCHES, RuleError, rule_from_table

    args = list(d.args)
    mode = args.pop(0) if args and args[0] in ("continue", "stop") else "stop"
    lines: list[list[str]] = []
    if d.block is not None:
        if args:
            raise _bad(d, "takes [continue|stop] { name ... } or a rule on one line, not both")
        for o in d.block:
            if o.name == "answer" and lines:
                lines[-1] += ["answer", *o.args]
            else:
                lines.append([o.name, *o.args])
    else:
        lines.append(args)
    for line in lines:
        if not line:
            raise _bad(d, "takes [continue|stop] FIELD FROM TO")
        field, rest = line[0], line[1:]
        if field not in ("name", "type", "class"):
            t.unsupported(d, field, "kdns rewrites the question's name, type and class only")
            continue
        table: dict[str, object] = {"field": field}
        if field == "name" and rest and rest[0] in MATCHES:
            table["match"] = rest.pop(0)
        if len(rest) < 2:
            raise _bad(d, f"{field}: takes FROM TO")
        table["from"], table["to"] = rest[0], rest[1]
        options = rest[2:]
        names: list[list[str]] = []
        values: list[list[str]] = []
        while options:
            word = options.pop(0)
            if word == "answer" and options:
                word = options.pop(0)
            if word == "auto":
                table["answer"] = "auto"
            elif word in ("name", "value") and len(options) >= 2:
                (names if word == "name" else values).append([options.pop(0), options.pop(0)])
            else:
                raise _bad(d, f"unexpected {word!r}: options are answer auto, answer name FROM TO, answer value FROM TO")  # fmt: skip
        if names:
            table["answer_name"] = names
        if values:
            table["answer_value"] = values
        if mode == "continue":
            table["continue"] = True
        try:
            rule_from_table(table)
        except RuleError as exc:
            t.unsupported(d, " ".join(line), f"kdns cannot take this rule: {exc.problem}")
            continue
        if not b.root:
            t.problem(
                d.where,
                f"plugin rewrite: a rule of the {' '.join(b.keys)} block is not supported by "
                "kdns as scoped: kdns applies [[rewrite]] rules to every question; written "
                "anyway (its FROM only matches names of that zone when it names them)",
            )
        table["#"] = f"{_loc(d)} rewrite {mode} {' '.join(line)}"
        t.tables.setdefault("rewrite", []).append(table)


def _template(t: _Translator, d: Directive, b: _Block) -> None:
    """template CLASS TYPE [ZONE...] { match REGEX... answer RR additional RR authority RR
    rcode CODE fallthrough [ZONE...] } -> [[template]] (template README: "ZONE ... Defaults
    to the server zones"; "Specifying no regex matches everything (default: .*)")."""
    from kdns.rules.template import TemplateError, template_from_table

    if len(d.args) < 2:
        raise _bad(d, "takes CLASS TYPE [ZONE...]")
    zones = [z for arg in d.args[2:] for z in _zone(arg, d)] or b.zones
    table: dict[str, object] = {"class": d.args[0].upper(), "type": d.args[1].upper(), "zones": zones}  # fmt: skip
    lists: dict[str, list[str]] = {}
    for o in d.block or []:
        if o.name in ("match", "answer", "additional", "authority"):
            if not o.args:
                raise _bad(o, f"{o.name} takes an argument")
            lists.setdefault(o.name, []).extend(o.args if o.name == "match" else [" ".join(o.args)])  # fmt: skip
        elif o.name == "rcode" and len(o.args) == 1:
            table["rcode"] = o.args[0].upper()
        elif o.name == "fallthrough":
            table["fallthrough"] = [z for arg in o.args for z in _zone(arg, o)] or True
        elif o.name == "ederror":
            t.unsupported(d, "ederror", "kdns adds no Extended DNS Error to template answers; leave it out")  # fmt: skip
        else:
            t.unsupported(d, o.name, "no kdns equivalent; leave it out")
    table.update(lists)
    try:
        template_from_table(table)
    except TemplateError as exc:
        t.unsupported(d, None, f"kdns cannot take this template: {exc.problem}")
        return
    table["#"] = f"{_loc(d)} template {' '.join(d.args)}"
    t.tables.setdefault("template", []).append(table)


HANDLERS: dict[str, Handler] = {
    "kubernetes": _kubernetes,
    "k8s_external": _k8s_external,
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
    "multisocket": _workers,
    "reuseport": _workers,
}


# --- TOML ------------------------------------------------------------------------------------
