"""The slow path: every question the pre-rendered answers dict did not hold.

Decides, in order: not one of our zones (REFUSED until forwarding exists), not synced yet
(SERVFAIL: never a cacheable NXDOMAIN before the first full list), a name that exists without the
asked type (NODATA), a pod name computed from its label (``pods insecure``), else NXDOMAIN.
Negative answers carry the zone's SOA in authority (RFC 2308 3), its owner a pointer into the
question, so they cost a few bytes of concatenation.
"""

from __future__ import annotations

from kdns.dns import names
from kdns.dns.answer import FORWARD, TRANSFER, Answer, empty
from kdns.dns.records import (
    ANY,
    AXFR,
    CLASS_ANY,
    CLASS_IN,
    IXFR,
    NOERROR,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    rdata_address,
)
from kdns.dns.registry import Registry, question_key
from kdns.dns.zones import CLUSTER, REVERSE, Zone

REFUSED_ANSWER = empty(REFUSED, False)


class Resolver:
    def __init__(
        self, registry: Registry, *, forward: bool = False, authoritative: bool = True
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
        self.pod_answers: dict[bytes, Answer] = {}
        self.misses = 0  # questions the pre-rendered dict did not hold (metrics)
        self.pod_hits = 0
        self.pod_misses = 0
        self.pod_evictions = 0
        self._servfail = {zone.text: empty(SERVFAIL, False, zone.text) for zone in self.zones}
        self._pod_generation = -1

    def carry_counters(self, previous: Resolver) -> None:
        self.misses = previous.misses
        self.pod_hits = previous.pod_hits
        self.pod_misses = previous.pod_misses
        self.pod_evictions = previous.pod_evictions

    def resolve(self, qname: bytes, qtype: int, qclass: int = CLASS_IN) -> Answer:
        """Answer a question; ``qname`` is the lowercased wire name."""
        self.misses += 1
        registry = self.registry
        if qclass == CLASS_ANY:
            # RFC 1035 3.2.5: QCLASS * matches IN, the only class we hold (once synced: the
            # hot path's answers dict is empty before, and so must this way round be).
            hit = registry.answers.get(question_key(qname, qtype)) if registry.synced else None
            if hit is not None:
                return hit
        elif qclass != CLASS_IN:
            return REFUSED_ANSWER  # CHAOS/HESIOD are not our zones
        zone = self.zones.find(qname) if self.authoritative else None
        if zone is None:
            return FORWARD if self.forward else REFUSED_ANSWER
        if qtype in (AXFR, IXFR):
            return TRANSFER if qname == zone.apex else REFUSED_ANSWER
        if not registry.synced:
            return self._servfail[zone.text]
        if registry.exists(qname):
            if qtype == ANY:
                records = registry.records(qname)
                if records:  # RFC 8482 permits any subset; we give the name's RRsets
                    return registry.render_answer(qname, ANY, records)
            else:
                answer = registry.materialize(qname, qtype)  # a lazy name's first query
                if answer is not None:
                    return answer
            # NODATA. An ExternalName's CNAME is pre-rendered for A/AAAA/CNAME/ANY only;
            # other types get NODATA, as from CoreDNS.
            return self.negative(qname, zone, NOERROR)
        if self.registry.pods_mode == "insecure" and zone.kind == CLUSTER:
            pod = self._insecure_pod_cached(qname, qtype, zone)
            if pod is not None:
                return pod
        if self.forward and zone.kind == REVERSE:
            return FORWARD  # CoreDNS default Corefile: fallthrough in-addr.arpa ip6.arpa
        return self.negative(qname, zone, NXDOMAIN)

    def _insecure_pod_cached(self, qname: bytes, qtype: int, zone: Zone) -> Answer | None:
        # Pod names are computed, not stored; a small cache keeps repeat askers off the
        # parse path. It is emptied when the registry changes (a namespace may have gone).
        if self._pod_generation != self.registry.generation or len(self.pod_answers) > 4096:
            self.pod_evictions += len(self.pod_answers)
            self.pod_answers.clear()
            self._pod_generation = self.registry.generation
        key = question_key(qname, qtype)
        answer = self.pod_answers.get(key)
        if answer is not None:
            self.pod_hits += 1
        else:
            self.pod_misses += 1
            answer = self._insecure_pod(qname, qtype, zone)
            if answer is not None:
                self.pod_answers[key] = answer
        return answer

    @staticmethod
    def negative(qname: bytes, zone: Zone, rcode: int) -> Answer:
        """NXDOMAIN or NODATA (NOERROR, no answer) with the zone SOA in authority (RFC 2308)."""
        soa = zone.soa_for(qname)
        return Answer(rcode, True, ((), ((soa, 1),), ()), zone.text)

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
