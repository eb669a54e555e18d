"""The zones kdns is authoritative for, their SOA, and finding a name's zone.

Kinds, as CoreDNS's ``kubernetes cluster.local in-addr.arpa ip6.arpa`` + ``k8s_external``:
- ``cluster``: the cluster domain (svc, pod, dns-version, apex SOA/NS);
- ``reverse``: in-addr.arpa and ip6.arpa, PTRs for service and endpoint IPs;
- ``external``: k8s_external zones, LoadBalancer ingress and external IPs;
- ``gateway``: ``[gateway] zones``, the hostnames of Gateway API routes, Ingresses and
  annotated LoadBalancer Services (kdns.authority.gateway). A gateway zone may share its apex with a
  zone of another kind (a local zone): one Zone object, several owners; ``gateway_apexes``
  says which apexes take gateway hostnames;
- ``local``: ``[[zones]]`` / ``--zone-file``, records from the TOML or an RFC 1035 zone file
  (kdns.authority.localzones), owned by ("local", "", zone); SOA/NS from that data when it has them
  (``set_authority``), else synthesized like the others. Local zones are built before gateway
  zones, so a gateway zone of the same name shares the local Zone.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

from kdns.dns import names
from kdns.dns.answer import Answer, Sections
from kdns.dns.records import SOA, rdata_soa, rr

CLUSTER = "cluster"
REVERSE = "reverse"
EXTERNAL = "external"
GATEWAY = "gateway"
LOCAL = "local"

# CoreDNS plugin/backend_lookup.go SOA(): refresh 7200, retry 1800, expire 86400,
# minimum = the plugin's TTL; the record's own TTL is min(ttl, 300).
SOA_REFRESH = 7200
SOA_RETRY = 1800
SOA_EXPIRE = 86400

_POINTER = struct.Struct("!H")


class Zone:
    __slots__ = (
        "apex",
        "kind",
        "text",
        "serial",
        "ttl",
        "ns_name",
        "soa_rdata",
        "own_ns",
        "_soa_fields",
        "_soa_tail",
        "_negatives",
        "soa_moved",
        "mname",
    )

    def __init__(self, text: str, kind: str, ttl: int) -> None:
        self.text = text.rstrip(".").lower()
        self.apex = names.to_wire(self.text)
        self.kind = kind
        self.ttl = ttl
        # CoreDNS names the zone's nameserver ns.dns.<zone>; k8s_external uses ns1.dns.<zone>.
        self.ns_name = names.to_wire(("ns1.dns." if kind == EXTERNAL else "ns.dns.") + self.text)
        # The synthesized SOA's MNAME: the apex NS target (the DNS Service's name once the
        # registry knows it, ``set_mname``), else ns_name as CoreDNS's backend SOA.
        self.mname = self.ns_name
        self.serial = int(time.time())
        self.soa_rdata = b""
        # A local zone whose data has its own SOA/NS (kdns.authority.localzones): the SOA's fields
        # (mname, rname, refresh, retry, expire, minimum, record TTL) and whether the apex NS
        # comes from that data rather than being synthesized.
        self.own_ns = False
        self._soa_fields: tuple[bytes, bytes, int, int, int, int, int] | None = None
        self._soa_tail = b""
        # (rcode, SOA owner offset) -> the negative answer: one shared object per shape, not
        # per name (every NXDOMAIN for a name of the same length is the same bytes).
        self._negatives: dict[tuple[int, int], Answer] = {}
        # The SOA record negative answers carry changed since the registry last looked (set
        # here, read and reset by ``Registry.flush``, which tells its watchers the zone moved).
        self.soa_moved = False
        self._render_soa()

    def bump(self) -> None:
        """The zone's data changed: move the serial (RFC 1982 arithmetic, strictly up)."""
        self.serial = max(self.serial + 1, int(time.time())) & 0xFFFFFFFF
        self._render_soa()

    def set_ttl(self, ttl: int) -> None:
        self.ttl = ttl
        self._render_soa()

    def set_authority(
        self, soa: tuple[bytes, bytes, int, int, int, int, int, int] | None, own_ns: bool
    ) -> None:
        """A local zone's SOA from its data: (mname, rname, serial, refresh, retry, expire,
        minimum, TTL), or None for the synthesized one; ``own_ns``: its data has apex NS.
        The serial only moves up (a file's serial above ours is taken; kdns's own changes bump
        it as for every zone)."""
        self.own_ns = own_ns
        if soa is None:
            self._soa_fields = None
        else:
            mname, rname, serial, refresh, retry, expire, minimum, ttl = soa
            self._soa_fields = (mname, rname, refresh, retry, expire, minimum, ttl)
            if (serial - self.serial) & 0xFFFFFFFF < 0x80000000:  # RFC 1982: serial >= ours
                self.serial = serial
        self._render_soa()

    def set_mname(self, mname: bytes | None) -> None:
        """Name ``mname`` (None: ns_name) as the synthesized SOA's primary nameserver, the
        apex NS target; a change re-renders the SOA (and has the next flush report it)."""
        self.mname = mname or self.ns_name
        self._render_soa()

    def soa_ttl(self) -> int:
        """The SOA record's TTL in answers (CoreDNS: min(ttl, 300); a zone file's own)."""
        fields = self._soa_fields
        return min(self.ttl, 300) if fields is None else fields[6]

    def _render_soa(self) -> None:
        fields = self._soa_fields
        if fields is not None:
            mname, rname, refresh, retry, expire, minimum, ttl = fields
            self.soa_rdata = rdata_soa(mname, rname, self.serial, refresh, retry, expire, minimum)
            # RFC 2308 3: a negative answer's SOA carries min(SOA TTL, MINIMUM).
            negative_ttl = min(ttl, minimum)
        else:
            # k8s_external apex.go: hostmaster.dns.<zone>; kubernetes: hostmaster.<zone>.
            prefix = "hostmaster.dns." if self.kind == EXTERNAL else "hostmaster."
            hostmaster = names.to_wire(prefix + self.text)
            self.soa_rdata = rdata_soa(
                self.mname,
                hostmaster,
                self.serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                self.ttl,
            )
            negative_ttl = min(self.ttl, 300)
        # Everything of the SOA RR after its owner name, for negative answers.
        tail = rr(b"", SOA, negative_ttl, self.soa_rdata)
        if tail == self._soa_tail:
            return
        self._soa_tail = tail
        # Shared negative answers are refilled in place: whoever holds one (the resolver's
        # memo of derived answers) serves the new SOA without being told. Copies of their
        # bytes (killer mode's wire cache) cannot see that: ``soa_moved`` has the registry's
        # next flush report the zone to its watchers (a serial move, a new MINIMUM or SOA
        # TTL from a zone file, a TTL reload), so they drop the zone's negative replies.
        self.soa_moved = True
        for (_, offset), answer in self._negatives.items():
            answer.refill(self._negative_sections(offset))

    def _negative_sections(self, offset: int) -> Sections:
        soa = _POINTER.pack(0xC000 | offset) + self._soa_tail
        return ((), ((soa, 1),), ())

    def negative(self, qname: bytes, rcode: int) -> Answer:
        """NXDOMAIN or NODATA (NOERROR, no answer) for ``qname`` with the SOA in authority
        (RFC 2308 3), shared by every name of the same length."""
        offset = 12 + len(qname) - len(self.apex)
        answer = self._negatives.get((rcode, offset))
        if answer is None:
            answer = Answer(rcode, True, self._negative_sections(offset), self.text)
            self._negatives[(rcode, offset)] = answer
        return answer

    def soa_for(self, qname: bytes) -> bytes:
        """The zone's SOA RR for the authority section of a reply to ``qname``.

        The owner is a compression pointer to the apex inside the question (the apex is a
        suffix of the question name, which starts at offset 12), so it costs two bytes.
        """
        offset = 12 + len(qname) - len(self.apex)
        return _POINTER.pack(0xC000 | offset) + self._soa_tail

    def __repr__(self) -> str:
        return f"Zone({self.text!r}, {self.kind})"


class ZoneSet:
    """All our zones, keyed by apex wire name; lookups walk the query name's suffixes."""

    def __init__(self, zones: list[Zone]) -> None:
        self.by_apex: dict[bytes, Zone] = {z.apex: z for z in zones}
        self._lengths = frozenset(map(len, self.by_apex))  # find() looks up these suffixes only
        # Apexes that take gateway hostnames (a gateway zone, or a zone of another kind with
        # the same apex that also serves them).
        self.gateway_apexes: frozenset[bytes] = frozenset(
            z.apex for z in zones if z.kind == GATEWAY
        )

    @classmethod
    def build(
        cls,
        cluster_domain: str,
        external_zones: tuple[str, ...],
        ttl: int,
        *,
        gateway_zones: tuple[str, ...] = (),
        local_zones: tuple[tuple[str, int], ...] = (),
        gateway_ttl: int | None = None,
    ) -> ZoneSet:
        zones = [Zone(cluster_domain, CLUSTER, ttl)]
        zones += [Zone(z, REVERSE, ttl) for z in ("in-addr.arpa", "ip6.arpa")]
        zones += [Zone(z, EXTERNAL, ttl) for z in external_zones]
        # Local zones, (name, default TTL): before gateway zones, which join one of the same
        # name (the config refuses a local zone named like the cluster domain or an external
        # zone, so a Zone is never shadowed).
        zones += [Zone(z, LOCAL, zone_ttl) for z, zone_ttl in local_zones]
        zone_set = cls(zones)
        # A gateway zone's SOA MINIMUM (its negative-answer TTL) is [gateway] ttl when set.
        zone_set.add_gateway_zones(gateway_zones, ttl if gateway_ttl is None else gateway_ttl)
        return zone_set

    def add_gateway_zones(self, gateway_zones: tuple[str, ...], ttl: int) -> None:
        """Gateway zones; an apex that is already a zone (a local zone of the same name)
        keeps its Zone and takes gateway hostnames too."""
        apexes = set(self.gateway_apexes)
        for text in gateway_zones:
            zone = Zone(text, GATEWAY, ttl)
            self.by_apex.setdefault(zone.apex, zone)
            apexes.add(zone.apex)
        self._lengths = frozenset(map(len, self.by_apex))
        self.gateway_apexes = frozenset(apexes)

    @property
    def cluster(self) -> Zone:
        return next(z for z in self.by_apex.values() if z.kind == CLUSTER)

    def of_kind(self, kind: str) -> list[Zone]:
        return [z for z in self.by_apex.values() if z.kind == kind]

    def find(self, qname: bytes) -> Zone | None:
        """The most specific zone containing ``qname`` (longest suffix on a label boundary)."""
        by_apex = self.by_apex
        lengths = self._lengths
        size = len(qname)
        pos = 0
        while pos < size - 1:
            if size - pos in lengths:  # a suffix no apex is as long as cannot be one
                zone = by_apex.get(qname[pos:] if pos else qname)
                if zone is not None:
                    return zone
            pos += qname[pos] + 1
        return None

    def __iter__(self) -> Iterator[Zone]:
        return iter(self.by_apex.values())
