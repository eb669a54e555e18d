"""The stages a query meets, in order: the one place that lists them.

Each stage lives in a module of its own; a stage that is not configured costs the hot path an
attribute test at most, so a cluster name that no stage before local data touches stays one
dict lookup (``Responder.answers``) and an ID patch. The first stage that decides answers;
later stages are not asked.

``STAGES`` is plain data (tests and docs/architecture.md read it); the code that runs them is
``kdns.server.wire.Responder._respond`` (transport to local data, forward, reply) and
``kdns.authority.resolver.Resolver.resolve`` (the local data after the answers dict).

``rewrite`` and ``template`` (CoreDNS's plugins) are hooks of ``Responder._respond``: one
attribute test each when unset; with rules, a question no rewrite rule touches costs one set
lookup, and template is asked only where local data would forward, refuse or say NXDOMAIN.
"""

from __future__ import annotations

STAGES: tuple[tuple[str, str], ...] = (
    ("transport", "kdns/server/udp.py, tcp.py, listeners.py; killer/front.py"),
    (
        "reply memo",
        "kdns/server/replymemo.py (UDP, both modes: a repeated question answered from its "
        "kept reply, asked by the UDP loop itself, while no stage that judges the client or "
        "rewrites the question is configured)",
    ),
    (
        "splices",
        "kdns/server/splices.py (UDP in batches, with the reply memo: a first sight of a name "
        "under a negative parent answered NXDOMAIN from a sibling's reply, the question "
        "swapped in)",
    ),
    (
        "killer wire cache",
        "kdns/killer/wirecache.py (killer mode only: forwarded names, and registry answers the "
        "reply memo does not hold)",
    ),
    ("header checks", "kdns/server/wire.py (QR, opcode, QDCOUNT), server/edns.py (OPT)"),
    (
        "policy",
        "kdns/policy/acl.py, server/rrl.py, policy/views.py, policy/blocklist.py, dns/networks.py",
    ),
    (
        "rewrite",
        "kdns/rules/rewrite.py ([[rewrite]]: the question rewritten, the reply turned back)",
    ),
    (
        "local data",
        "kdns/authority/: the pre-rendered answers dict and derived memo (registry.py), then "
        "hosts.py ([hosts]), chaos.py ([chaos], class CH), local zones, gateway names, the "
        "cluster registry and reverse zones (resolver.py, with its negative parents; "
        "localzones.py, gateway/)",
    ),
    ("autopath", "kdns/authority/autopath.py (kubernetes.autopath)"),
    ("template", "kdns/rules/template.py ([[template]]: answers or an rcode from a pattern)"),
    (
        "forward",
        "kdns/server/forwarding.py, forward/upstreams.py, forward/cache.py (per-zone settings)",
    ),
    (
        "reply",
        "kdns/server/wire.py (EDNS, truncation), server/policyreplies.py (EDE), dns/answer.py",
    ),
)
