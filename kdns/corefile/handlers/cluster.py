"""The cluster's plugins: kubernetes, k8s_external, autopath."""

from __future__ import annotations

from collections.abc import Callable

from kdns.corefile.handlers.access import _allow_transfer
from kdns.corefile.handlers.common import _options
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _BY_TOML,
    _bad,
    _Block,
    _duration,
    _integer,
    _is_reverse,
    _seconds_value,
    _Translator,
    _zone,
)


def _kubernetes(t: _Translator, d: Directive, b: _Block) -> None:
    # A zone written twice (rke2-coredns renders `kubernetes cluster.local cluster.local ...`
    # from its values) is one zone to CoreDNS too.
    zones = list(dict.fromkeys(z for arg in d.args for z in _zone(arg, d))) or b.zones
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
        # CoreDNS's kubernetes plugin completes search paths only with `pods verified` (its
        # AutoPath returns nothing without the pod cache): otherwise autopath does nothing,
        # and so kdns leaves it off.
        pods = t.values.get("kubernetes.pods")
        if pods is None or pods.value != "verified":
            mode = pods.value if pods is not None else "disabled"
            t.note("kubernetes", d, f"autopath @kubernetes does nothing in CoreDNS with pods {mode} (it needs pods verified): left off; kubernetes.autopath = true turns kdns's on")  # fmt: skip
            return
        t.set("kubernetes.autopath", True, d, "autopath @kubernetes")

    t.finish_checks.append(check)
