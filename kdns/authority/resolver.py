"""The slow path: every question the pre-rendered answers dict did not hold.

Decides, in order: not one of our zones (REFUSED until forwarding exists), under a forward zone
carved out of a local zone (forwarded), not synced yet (SERVFAIL: never a cacheable NXDOMAIN
before the first full list; local zones answer at once), a name that exists without the asked
type (NODATA), a pod name computed from its label (``pods insecure``), a wildcard (RFC 4592: the
closest encloser's ``*`` child answers for names that do not exist), else NXDOMAIN.
Negative answers carry the zone's SOA in authority (RFC 2308 3), its owner a pointer into the
question, so they cost a few bytes of concatenation.
"""

from __future__ import annotations

from kdns.authority.chaos import CLASS_CH, Chaos
from kdns.authority.hosts import Hosts
from kdns.authority.registry import MEMO_TYPES, WILDCARD, Registry, question_key
from kdns.authority.zones import CLUSTER, EXTERNAL, LOCAL, REVERSE, Zone
from kdns.dns import names
from kdns.dns.answer import FORWARD, TRANSFER, Answer, empty
from kdns.dns.records import (
    ANY,
    AXFR,
    CLASS_ANY,
    CLASS_IN,
    CNAME,
    IXFR,
    NOERROR,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    rdata_address,
)

REFUSED_ANSWER = empty(REFUSED, False)
MAX_NEGATIVE_PARENTS = 4096  # Resolver._negative_parents: about 0.6 MiB when full


class Resolver:
    def __init__(
        self,
        registry: Registry,
        *,
        forward: bool = False,
        authoritative: bool = True,
        cuts: tuple[str, ...] = (),
        fallthrough: tuple[str, ...] = (),
    ) -> None:
        self.registry = registry
        # forward: names outside our zones (and unknown reverse names, CoreDNS's
        # `fallthrough in-addr.arpa ip6.arpa`) go to the forwarder instead of REFUSED.
        self.forward = forward
        # authoritative False: split-DNS sidecar mode, every name is forwarded.
        self.authoritative = authoritative
        self.zones = registry.zones
        cluster = registry.cluster
        self._pod_suffix = names.to_wire("pod." + cluster.text)
        # Local data of their own stages (kdns/server/stages.py), None when not configured:
        # [hosts] (kdns.authority.hosts, before the zones) and [chaos] (kdns.authority.chaos, class CH).
        self.hosts: Hosts | None = None
        self.chaos: Chaos | None = None
        self.misses = 0  # questions neither the answers dict nor the derived memo held
        self.derived = 0  # of those, answers derived and remembered (metrics)
        self._servfail = {zone.text: empty(SERVFAIL, False, zone.text) for zone in self.zones}
        # forward.zones strictly inside a zone of ours: their names without records of ours,
        # wildcard matches included, are forwarded. A local or gateway zone's
        # (lan.home.example.com -> the router, inside home.example.com), and a stub domain
        # inside the cluster domain (kube-dns stubDomains, CoreDNS's more specific server
        # block: my.cluster.local -> 10.150.0.1), except under svc.<zone> and pod.<zone>,
        # whose names are the cluster's and never leave kdns. Reverse and external zones
        # keep theirs.
        cluster_own = tuple(
            names.to_wire(f"{sub}.{zone.text}")
            for zone in self.zones
            if zone.kind == CLUSTER
            for sub in ("svc", "pod")
        )
        self._cuts = frozenset(
            wire
            for wire in map(names.to_wire, cuts)
            if (zone := self.zones.find(wire)) is not None
            and zone.kind not in (REVERSE, EXTERNAL)
            and wire != zone.apex
            and not (
                zone.kind == CLUSTER and any(names.is_subdomain(wire, own) for own in cluster_own)
            )
        )
        # Zones whose unclaimed names go upstream instead of NXDOMAIN (k8s_gateway's
        # fallthrough, split-brain DNS: [gateway] fallthrough, [[zones]] fallthrough).
        self._fallthrough = frozenset(
            wire for wire in map(names.to_wire, fallthrough) if wire in self.zones.by_apex
        )
        # Negative parents: a name P one of whose children the steps below answered NXDOMAIN
        # from the zone's SOA, where nothing fixed for this resolver's life could answer a
        # sibling otherwise (no zone apex, forward cut or insecure pod name among P's
        # children): P -> its zone. A later child of P that does not exist is NXDOMAIN at
        # once, while what can change is checked per question (the child appearing, a
        # wildcard made anywhere, [hosts] set, the registry still synced): a first sight of a
        # search-path name then skips the zone walk and the steps. Bounded; a reload builds a
        # new resolver, and with it a new table.
        self._negative_parents: dict[bytes, Zone] = {}
        self._odd_parents = frozenset(
            wire[wire[0] + 1 :] for wire in (*self.zones.by_apex, *self._cuts) if wire[0]
        )
        # What the UDP loop's splices (kdns.server.splices) ask besides ``sibling_answer``.
        self.exists = registry.exists
        self.remember = registry.remember

    def carry_counters(self, previous: Resolver) -> None:
        self.misses = previous.misses
        self.derived = previous.derived

    def resolve(self, qname: bytes, qtype: int, qclass: int = CLASS_IN, key: bytes = b"") -> Answer:
        """Answer a question; ``qname`` is the lowercased wire name, ``key`` its question key
        when the caller has it (the hot path does)."""
        self.misses += 1
        registry = self.registry
        answer = self.sibling_answer(qname, qtype, qclass)
        if answer is not None and not registry.exists(qname):
            self.derived += 1
            registry.remember(key or question_key(qname, qtype), answer)
            return answer
        if qclass == CLASS_ANY:
            # RFC 1035 3.2.5: QCLASS * matches IN, the only class we hold (once synced: the
            # hot path's answers dict is empty before, and so must this way round be).
            hit = registry.answers.get(question_key(qname, qtype)) if registry.synced else None
            if hit is not None:
                return hit
        elif qclass != CLASS_IN:
            if qclass == CLASS_CH and self.chaos is not None:
                hit = self.chaos.lookup(qname, qtype)
                if hit is not None:
                    return hit
            return REFUSED_ANSWER  # CHAOS/HESIOD are not our zones
        hosts = self.hosts
        if hosts is not None:
            hit = hosts.lookup(qname, qtype)
            if hit is not None:
                return hit
        zone = self.zones.find(qname)
        if zone is not None and not self.authoritative and zone.kind != LOCAL:
            zone = None  # forward-only and split modes serve their local zones only
        if zone is None:
            if hosts is not None and (closed := hosts.closes(qname)) is not None:
                return closed  # CoreDNS hosts without fallthrough: SERVFAIL
            return FORWARD if self.forward else REFUSED_ANSWER
        if qtype in (AXFR, IXFR):
            return TRANSFER if qname == zone.apex else REFUSED_ANSWER
        if self._cuts and self._under_cut(qname) and not registry.has_records(qname):
            return FORWARD if self.forward else REFUSED_ANSWER
        if not registry.synced:
            if zone.kind != LOCAL or zone.apex in self.zones.gateway_apexes:
                return self._servfail[zone.text]
            # A local zone's data is all here from the start: answered (not remembered: the
            # hot path's gated dict does not hold it yet).
            hit = registry.answers.get(question_key(qname, qtype))
            return hit if hit is not None else self._in_zone(qname, qtype, zone)
        answer = self._in_zone(qname, qtype, zone)
        if answer is not FORWARD and qclass == CLASS_IN and qtype in MEMO_TYPES:
            # Negative, computed and ANY answers are derived once per state of the registry:
            # the next asker of the same question is served by the hot path's second lookup.
            self.derived += 1
            registry.remember(key or question_key(qname, qtype), answer)
            if answer.rcode == NXDOMAIN and qname[0]:
                self._negative_parent(qname, zone)
        return answer

    def sibling_answer(self, qname: bytes, qtype: int, qclass: int) -> Answer | None:
        """The answer every child of ``qname``'s parent that does not exist gets now for this
        type and class, when the negative-parent rule gives it (``resolve``'s first branch):
        the zone's shared NXDOMAIN for names of ``qname``'s length; else None. Whether
        ``qname`` itself exists is the caller's to ask (``exists``): the UDP loop's splices
        (kdns.server.splices) ask per query, and this once per change the registry publishes
        (a wildcard made, a name made or gone)."""
        zone = self._negative_parents.get(qname[qname[0] + 1 :]) if qname[0] else None
        if (
            zone is None
            or qclass != CLASS_IN
            or qtype not in MEMO_TYPES
            or self.hosts is not None
            or not self.registry.synced
            or self.registry.wildcards
            or self.registry.gateway.wildcards
        ):
            return None
        return zone.negative(qname, NXDOMAIN)

    def _negative_parent(self, qname: bytes, zone: Zone) -> None:
        """``qname`` was answered NXDOMAIN by ``_in_zone``'s last step: its parent joins the
        negative parents unless one of its children could be answered by a step that looks
        at the child's own name (a zone apex, a forward cut, an insecure pod name) or by
        one that does not look at existence (forward fallthrough, [hosts])."""
        parent = qname[qname[0] + 1 :]
        if (
            parent in self._negative_parents
            or parent in self._odd_parents
            or self.hosts is not None
            or (self.forward and (zone.kind == REVERSE or zone.apex in self._fallthrough))
            or (self.registry.pods_mode == "insecure" and qname.endswith(self._pod_suffix))
        ):
            return
        if len(self._negative_parents) >= MAX_NEGATIVE_PARENTS:
            self._negative_parents.clear()
        self._negative_parents[parent] = zone

    def _in_zone(self, qname: bytes, qtype: int, zone: Zone) -> Answer:
        registry = self.registry
        if registry.exists(qname):
            if qtype == ANY:
                records = registry.records(qname)
                if records:  # RFC 8482 permits any subset; we give the name's RRsets
                    return registry.render_answer(qname, ANY, records)
            else:
                answer = registry.materialize(qname, qtype)  # a lazy name's first query
                if answer is None and zone.kind == LOCAL:
                    answer = self._local_cname(qname, qtype)
                if answer is not None:
                    return answer
            if not registry.has_records(qname) and qname != zone.apex:
                # An empty non-terminal: a route wildcard above it still matches it (Gateway
                # API hostnames match at any depth); else nobody claims it.
                if registry.gateway.wildcards:
                    synthesized = self._wildcard(qname, qtype, zone, gateway_only=True)
                    if synthesized is not None:
                        return synthesized
                if self.forward and zone.apex in self._fallthrough:
                    return FORWARD
            # NODATA. An ExternalName's CNAME is pre-rendered for A/AAAA/CNAME/ANY only;
            # other types get NODATA, as from CoreDNS.
            return zone.negative(qname, NOERROR)
        if (
            registry.pods_mode == "insecure"
            and zone.kind == CLUSTER
            and qname.endswith(self._pod_suffix)  # the rest of the zone skips the call
        ):
            pod = self._insecure_pod(qname, qtype, zone)
            if pod is not None:
                return pod
        if registry.wildcards:
            synthesized = self._wildcard(qname, qtype, zone)
            if synthesized is not None:
                return synthesized
        if self.forward and (zone.kind == REVERSE or zone.apex in self._fallthrough):
            # CoreDNS default Corefile: fallthrough in-addr.arpa ip6.arpa; a fallthrough
            # zone's unclaimed names go to its upstreams (the forwarder routes them).
            return FORWARD
        return zone.negative(qname, NXDOMAIN)

    def unclaimed(self, qname: bytes, zone: Zone, exists: bool) -> Answer:
        """What a name of ``zone`` without records of ours gets (a view's gateway answers
        ask, kdns.authority.gateway.ViewAnswers): forwarded under a forward zone cut out of it or
        in a fallthrough zone, else NODATA when names exist below it, else NXDOMAIN."""
        if self._cuts and self._under_cut(qname):
            return FORWARD if self.forward else REFUSED_ANSWER
        if self.forward and zone.apex in self._fallthrough:
            return FORWARD
        return zone.negative(qname, NOERROR if exists else NXDOMAIN)

    def _under_cut(self, qname: bytes) -> bool:
        cuts = self._cuts
        pos = 0
        end = len(qname) - 1
        while pos < end:
            if (qname[pos:] if pos else qname) in cuts:
                return True
            pos += qname[pos] + 1
        return False

    def _wildcard(
        self, qname: bytes, qtype: int, zone: Zone, *, gateway_only: bool = False
    ) -> Answer | None:
        """RFC 4592 for a name that does not exist: find its closest encloser (the longest
        existing ancestor, empty non-terminals included); when ``*.<encloser>`` exists, answer
        its records with the question's name as owner (pre-rendered answers own their records
        through a pointer to the question, so the wildcard's answer fits any name), NODATA
        when it has no such type. A wildcard never covers names below an existing name --
        except a route wildcard in a gateway zone, which matches by the Gateway API rule: any
        name one label or more below its suffix (``*.apps`` covers ``other.sub.apps`` even when
        ``deep.sub.apps`` makes ``sub.apps`` exist), the most specific one winning.
        ``gateway_only``: ``qname`` exists without records; only route wildcards match it."""
        registry = self.registry
        routes = registry.gateway.wildcards if zone.apex in self.zones.gateway_apexes else ()
        shortest = len(zone.apex)
        node = qname
        encloser = gateway_only  # past the closest encloser: only route wildcards match
        while True:
            node = node[node[0] + 1 :]
            if len(node) < shortest:
                return None
            source = WILDCARD + node
            if routes and source in routes:
                break
            if not encloser and registry.exists(node):
                if source in registry.wildcards:
                    break
                if not routes:
                    return None
                encloser = True
        registry.synthesized(node, qname)  # a name made under ``node`` forgets this answer
        if qtype == ANY:
            records = registry.records(source)
            if records:
                return registry.render_answer(source, ANY, records)
        else:
            answer = registry.answers.get(question_key(source, qtype))
            if answer is None:
                answer = registry.materialize(source, qtype)
            if answer is None and zone.kind == LOCAL:
                answer = self._local_cname(source, qtype)
            if answer is not None:
                return answer
        return zone.negative(qname, NOERROR)

    def _local_cname(self, name: bytes, qtype: int) -> Answer | None:
        """A local zone's CNAME answers every type (RFC 1034 3.6.2); only A/AAAA/CNAME are
        pre-rendered (an ExternalName's CNAME answers those alone, kdns deliberate (6))."""
        records = self.registry.records(name)
        if CNAME not in records:
            return None
        return self.registry.render_answer(name, qtype, records)

    @staticmethod
    def negative(qname: bytes, zone: Zone, rcode: int) -> Answer:
        """NXDOMAIN or NODATA (NOERROR, no answer) with the zone SOA in authority (RFC 2308)."""
        return zone.negative(qname, rcode)

    def _insecure_pod(self, qname: bytes, qtype: int, zone: Zone) -> Answer | None:
        """CoreDNS ``pods insecure``: a-b-c-d.<ns>.pod.<zone> answers the IP in its first label
        without checking that such a pod exists, as long as the namespace does."""
        if not names.is_subdomain(qname, self._pod_suffix):  # on a label boundary
            return None
        labels = names.split(qname[: len(qname) - len(self._pod_suffix)] + b"\x00")
        if len(labels) != 2:
            return None
        try:
            label, namespace = (x.decode("ascii") for x in labels)
        except UnicodeDecodeError:
            return None
        ip = names.parse_dashed_ip(label)
        if ip is None or not self.registry.namespace_exists(namespace):
            return None
        rtype, packed = rdata_address(ip)
        if qtype not in (rtype, ANY):
            return self.negative(qname, zone, NOERROR)
        records = {rtype: [packed]}
        return self.registry.render_answer(qname, rtype if qtype == ANY else qtype, records)
