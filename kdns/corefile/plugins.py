"""What kdns makes of each CoreDNS plugin: supported, partly, or not, with the kdns key.

``docs/coredns-plugins.md`` is the readable form of this table (a test keeps the two in step);
``kdns import-corefile`` names the ``advice`` of a plugin it cannot translate on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SUPPORTED = "supported"
PARTLY = "partly"
NOT = "not"


@dataclass(frozen=True, slots=True)
class Plugin:
    name: str
    status: str  # SUPPORTED | PARTLY | NOT
    keys: str  # the kdns keys or flags it maps to ("" when none)
    advice: str  # for NOT (and unsupported options): what to do instead


_ZONE_ELSEWHERE = (
    "serve the zone from CoreDNS (or NSD, BIND) beside kdns and send it there with forward.zones"
)

_TABLE = (
    # Translated.
    Plugin("kubernetes", PARTLY, "[kubernetes] cluster_domain, pods, ttl, ...", ""),
    Plugin("k8s_external", PARTLY, "kubernetes.external_zones", ""),
    # An external plugin (ori-edge/k8s_gateway), common in homelabs: [gateway] does its job.
    Plugin(
        "k8s_gateway",
        PARTLY,
        "[gateway] zones, resources, ttl, nameserver, fallthrough, ingress_classes, "
        "gateway_classes, service_names",
        "",
    ),
    Plugin("forward", PARTLY, "[forward] upstreams, zones, policy, max_fails, ...", ""),
    Plugin("cache", PARTLY, "[cache]", ""),
    Plugin("prometheus", SUPPORTED, "metrics.listen, metrics.compat", ""),
    Plugin("health", SUPPORTED, "health.listen, health.lameduck", ""),
    Plugin("ready", SUPPORTED, "ready.listen", ""),
    Plugin("errors", SUPPORTED, "(always on)", ""),
    Plugin("log", SUPPORTED, "log.query_log, log.classes, log.zones", ""),
    Plugin("hosts", SUPPORTED, "[hosts] file, entries, zones, ttl, fallthrough, no_reverse", ""),
    Plugin("file", PARTLY, "[[zones]] name, file", ""),
    Plugin("chaos", SUPPORTED, "[chaos] enabled, version, authors", ""),
    Plugin("autopath", PARTLY, "kubernetes.autopath (@kubernetes only)", ""),
    Plugin("proxy", PARTLY, "[forward] (as forward)", ""),
    Plugin("rewrite", PARTLY, "[[rewrite]] (name, type, class; answer auto/name/value)", ""),
    Plugin("template", PARTLY, "[[template]] (a Go-template subset; no ederror)", ""),
    Plugin("loop", SUPPORTED, "(always on)", ""),
    Plugin("reload", SUPPORTED, "server.reload_interval", ""),
    Plugin("loadbalance", PARTLY, "server.loadbalance", ""),
    Plugin("acl", SUPPORTED, "acl.rules", ""),
    Plugin("transfer", PARTLY, "transfer.allow", ""),
    Plugin("bind", PARTLY, "server.listen", ""),
    Plugin("bufsize", SUPPORTED, "server.udp_size", ""),
    Plugin("timeouts", PARTLY, "server.tcp_idle_timeout", ""),
    Plugin("debug", PARTLY, "log.level", ""),
    Plugin("import", SUPPORTED, "(read by the importer)", ""),
    Plugin("root", PARTLY, "(nothing: zone file paths are kept as written)", ""),
    Plugin("cancel", PARTLY, "forward.timeout", ""),
    Plugin("multisocket", PARTLY, "server.workers", ""),
    Plugin("reuseport", PARTLY, "server.workers", ""),
    # Not translated.
    Plugin("auto", NOT, "", f"kdns serves named zone files ([[zones]]); {_ZONE_ELSEWHERE}"),
    Plugin("secondary", NOT, "", f"kdns is no secondary server; {_ZONE_ELSEWHERE}"),
    Plugin("etcd", NOT, "", f"kdns reads only Kubernetes; {_ZONE_ELSEWHERE}"),
    Plugin("route53", NOT, "", f"kdns reads only Kubernetes; {_ZONE_ELSEWHERE}"),
    Plugin("clouddns", NOT, "", f"kdns reads only Kubernetes; {_ZONE_ELSEWHERE}"),
    Plugin("azure", NOT, "", f"kdns reads only Kubernetes; {_ZONE_ELSEWHERE}"),
    Plugin("dnssec", NOT, "", "kdns does not sign answers; sign on a server in front of it"),
    Plugin("sign", NOT, "", "kdns does not sign zones"),
    Plugin("whoami", NOT, "", "kdns has no whoami answers; drop it"),
    Plugin("nsid", NOT, "", "kdns does not add NSID (RFC 5001); drop it"),
    Plugin(
        "any",
        NOT,
        "",
        "kdns answers ANY with the name's RRsets (RFC 8482 allows it); use acl.rules with "
        'type = ["ANY"] and action "filter" or "block" to refuse ANY instead',
    ),
    # kdns's positive answers already carry no authority section: noted, not reported.
    Plugin("minimal", PARTLY, "(nothing: kdns's answers are minimal already)", ""),
    Plugin(
        "local",
        NOT,
        "",
        "kdns forwards localhost and 0.in-addr.arpa like other names; the upstream answers them",
    ),
    Plugin("metadata", NOT, "", "kdns has no plugin metadata; drop it"),
    Plugin(
        "view",
        NOT,
        "",
        "kdns's [[views]] choose zones and block lists by client network, not by CoreDNS "
        "expressions: write the view as a [[views]] entry, or keep CoreDNS for it",
    ),
    Plugin("tls", NOT, "", "kdns serves plain DNS only; terminate DNS over TLS in front of it"),
    Plugin("grpc", NOT, "", "kdns forwards over UDP, TCP and TLS only; use forward with tls://"),
    Plugin("dns64", NOT, "", "kdns does not synthesize AAAA records; keep CoreDNS for DNS64"),
    Plugin("geoip", NOT, "", "kdns has no GeoIP data; drop it"),
    Plugin("header", NOT, "", "kdns sets the header flags itself; drop it"),
    Plugin("dnstap", NOT, "", "kdns has no dnstap output; use log.query_log"),
    Plugin("pprof", NOT, "", "kdns is Python: profile it with py-spy; drop it"),
    Plugin("trace", NOT, "", "kdns has no tracing; use metrics and log.query_log"),
    Plugin("erratic", NOT, "", "a test plugin; drop it"),
    Plugin("federation", NOT, "", "removed from CoreDNS; use forward.zones"),
    Plugin("tsig", NOT, "", "kdns checks no TSIG; limit transfers with transfer.allow"),
    Plugin("dnsproxy", NOT, "", "use forward"),
)

PLUGINS: Mapping[str, Plugin] = {p.name: p for p in _TABLE}

UNKNOWN_ADVICE = (
    "not a CoreDNS built-in plugin kdns knows of; keep CoreDNS for what it does, or drop it"
)
