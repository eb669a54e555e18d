"""What each owner contributes to the name table: a Service and its EndpointSlices, a
Namespace, a Pod (verified mode), a zone apex, a local zone, a Gateway API hostname.

The registry (kdns.authority.registry) calls ``_render_owner`` for every owner a change touched and
diffs the result against what the owner contributed before; this module only says what the
records are (Kubernetes DNS spec sections and CoreDNS behaviour cited where they decide).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from socket import AF_INET, inet_pton

from kdns.authority.gateway import GatewayTable
from kdns.authority.zones import CLUSTER, EXTERNAL, GATEWAY, LOCAL, Zone, ZoneSet
from kdns.dns import names
from kdns.dns.records import (
    CNAME,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    rdata_address,
    rdata_srv,
    rdata_txt,
)
from kdns.model import EndpointSlice, Service

log = logging.getLogger("kdns.registry")


Owner = tuple[str, str, str]  # (kind, namespace, name)

# While rendering, each type's rdatas are the keys of a dict: insertion order and a de-duplication
# check in O(1) (a list's ``in`` made a name with N records cost N^2).
Contribution = dict[bytes, dict[int, dict[bytes, None]]]  # name -> records; {}: no data
# A render in slices (a Service of thousands of endpoints): yields between slices of about
# STEP_ENDPOINTS endpoints (or SRV names), returns the contribution. Nothing it builds is seen
# by readers until the registry commits it.
Steps = Generator[None, None, Contribution]
STEP_ENDPOINTS = 128  # about 0.3 ms of work here: a slice's budget is a few of them

DNS_SCHEMA_VERSION = "1.1.0"  # Kubernetes DNS-Based Service Discovery spec 2.2

_IN_ADDR = names.to_wire("in-addr.arpa")
_IP6 = names.to_wire("ip6.arpa")
_NIBBLES = [bytes((1, c)) for c in b"0123456789abcdef"]
_PLAIN = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
_OCTETS = [bytes((len(str(i)),)) + str(i).encode() for i in range(256)]


def _address_rdata(ip: str) -> tuple[int, bytes]:
    """``rdata_address`` for an address already normalised at ingest (kdns.k8s.objects), at a
    tenth of the cost: the endpoint loop runs once per address of a 10,000-endpoint slice."""
    try:
        return A, inet_pton(AF_INET, ip)
    except OSError:
        return rdata_address(ip)


def _reverse_wire(packed: bytes) -> bytes:
    """The PTR owner of a packed address, in wire form (as ``names.reverse_name``)."""
    if len(packed) == 4:
        return b"".join(_OCTETS[b] for b in reversed(packed)) + _IN_ADDR
    return b"".join(_NIBBLES[b & 15] + _NIBBLES[b >> 4] for b in reversed(packed)) + _IP6


def _child(label: str, parent: bytes, parent_text: str) -> bytes:
    """``names.to_wire(f"{label}.{parent_text}")`` without re-encoding the parent."""
    raw = label.lower().encode("ascii", "replace")
    if 0 < len(raw) <= 63 and not raw.strip(_PLAIN) and len(raw) + len(parent) < 255:
        return bytes((len(raw),)) + raw + parent
    return names.to_wire(f"{label}.{parent_text}")  # the same checks and errors as before


# Pseudo record type marking a name as *lazy*: its answers are rendered on the first query after
# a change (then kept until the name changes again) instead of when the change arrives. Used for
# the long tail a cluster has one of per endpoint or pod (endpoint names, their PTRs, pod
# names): most are never asked, and rendering them all would double the registry's memory.
# Service names, port names and ClusterIP PTRs (what pods ask) are rendered eagerly.
LAZY = 0xFFFF  # a reserved type number (RFC 6895), never a real record


def _add(out: Contribution, name: bytes, rtype: int, rdata: bytes) -> None:
    out.setdefault(name, {}).setdefault(rtype, {})[rdata] = None


def _run(steps: Steps) -> Contribution:
    """Drive a render in slices to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class OwnerRendering:
    """Mixin of the Registry: rendering one owner into a ``Contribution``. It reads the
    registry's objects and settings, declared here for the type checker."""

    zones: ZoneSet
    cluster: Zone
    pods_mode: str
    endpoint_pod_names: bool
    dns_service: tuple[str, str]
    services: dict[tuple[str, str], Service]
    slices: dict[tuple[str, str], EndpointSlice]
    namespaces: set[str]
    gateway: GatewayTable
    _pod_ips: dict[Owner, tuple[str, ...]]
    _slices_of: dict[tuple[str, str], set[tuple[str, str]]]
    _local: dict[str, Contribution]
    _dns_version: bytes

    def _render_owner_steps(self, owner: Owner) -> Steps:
        """``_render_owner`` in slices: a Service yields every few hundred endpoints."""
        if owner[0] == "svc":
            return (yield from self._render_service_steps(owner[1], owner[2]))
        return self._render_owner(owner)

    def _render_owner(self, owner: Owner) -> Contribution:
        kind, namespace, name = owner
        if kind == "svc":
            return self._render_service(namespace, name)
        if kind == "pod":
            return self._render_pod(namespace, name)
        if kind == "ns":
            return self._render_namespace(name)
        if kind == "gw":
            return self._render_hostname(name)
        if kind == "local":
            return self._local.get(name, {})
        return self._render_zone(self.zones.by_apex[names.to_wire(name)])

    def _render_zone(self, zone: Zone) -> Contribution:
        if zone.kind == LOCAL:
            out = self._render_local_apex(zone)
            if zone.apex in self.zones.gateway_apexes and not zone.own_ns:
                self._gateway_nameserver(zone, out)
            return out
        if zone.kind == GATEWAY:
            out = {}
            _add(out, zone.apex, SOA, zone.soa_rdata)
            self._gateway_nameserver(zone, out)
            return out
        out = {zone.ns_name: {}}
        # CoreDNS (ns.go nsAddrs): the apex NS names the Service kdns is exposed through, its
        # ClusterIP as glue; ns.dns.<zone> when that Service is unknown. k8s_external zones
        # use ns1.dns.<zone>, glued to that Service's external IPs. The SOA's MNAME names the
        # same host (CoreDNS's SOA always says ns.dns.<zone>: README, differences); a move
        # re-renders the SOA, and the flush reports the zone (negative replies carry it).
        dns_service = self.services.get(self.dns_service)
        in_cluster = zone.kind != EXTERNAL
        ns_target = zone.ns_name
        if in_cluster and dns_service is not None and dns_service.cluster_ips:
            text = f"{dns_service.name}.{dns_service.namespace}.svc.{self.cluster.text}"
            ns_target = names.to_wire(text)
        zone.set_mname(ns_target)
        _add(out, zone.apex, SOA, zone.soa_rdata)
        _add(out, zone.apex, NS, ns_target)
        if zone.kind == CLUSTER:
            # Spec 2.2: dns-version.<zone> TXT carries the schema version.
            _add(out, self._dns_version, TXT, rdata_txt(DNS_SCHEMA_VERSION))
        return out

    def _gateway_nameserver(self, zone: Zone, out: Contribution) -> None:
        """A gateway zone's apex NS and its glue, so the delegation a router or a parent zone
        makes to kdns is not lame: the NS name ([gateway] nameserver, else ns.dns.<zone>)
        answers [gateway] nameserver_addresses, else the DNS Service's LoadBalancer and
        external IPs (where LAN clients reach kdns), with aa like every answer."""
        settings = self.gateway.settings
        target = names.to_wire(settings.nameserver) if settings.nameserver else zone.ns_name
        out.get(zone.apex, {}).pop(NS, None)  # the synthesized one, replaced
        _add(out, zone.apex, NS, target)
        addresses = settings.nameserver_addresses
        if not addresses:
            dns_service = self.services.get(self.dns_service)
            if dns_service is not None:
                addresses = tuple(dict.fromkeys(dns_service.lb_ips + dns_service.external_ips))
        if names.is_subdomain(target, zone.apex):  # glue only for a name of this zone
            out.setdefault(target, {})
            for ip in addresses:
                _add(out, target, *rdata_address(ip))

    @staticmethod
    def _render_local_apex(zone: Zone) -> Contribution:
        """A local zone's apex: its SOA (the data's, or synthesized), and the synthesized NS
        ns.dns.<zone> unless the data has apex NS records (no ns.dns name is made: on a LAN
        it would only shadow a wildcard)."""
        out: Contribution = {}
        _add(out, zone.apex, SOA, zone.soa_rdata)
        if not zone.own_ns:
            _add(out, zone.apex, NS, zone.ns_name)
        return out

    def _render_hostname(self, hostname: str) -> Contribution:
        """A gateway zone hostname: the records of the claim that wins it (kdns.authority.gateway)."""
        wire = names.to_wire(hostname)
        records = self.gateway.records(wire)
        if not records:
            return {}
        return {wire: {rtype: dict.fromkeys(rdatas) for rtype, rdatas in records.items()}}

    def _render_namespace(self, namespace: str) -> Contribution:
        if namespace not in self.namespaces:
            return {}
        zone = self.cluster.text
        out: Contribution = {names.to_wire(f"{namespace}.svc.{zone}"): {}}
        if self.pods_mode != "disabled":
            out[names.to_wire(f"{namespace}.pod.{zone}")] = {}
        for external in self.zones.of_kind(EXTERNAL):
            # k8s_external: <ns>.<zone> is NODATA for an existing namespace.
            out[names.to_wire(f"{namespace}.{external.text}")] = {}
        return out

    def _render_pod(self, namespace: str, name: str) -> Contribution:
        ips = self._pod_ips.get(("pod", namespace, name))
        if ips is None:
            return {}
        out: Contribution = {}
        for ip in ips:
            rtype, packed = rdata_address(ip)
            owner = names.to_wire(f"{names.dashed_ip(ip)}.{namespace}.pod.{self.cluster.text}")
            _add(out, owner, LAZY, b"")
            _add(out, owner, rtype, packed)
        return out

    def _endpoints(self, svc: Service) -> Iterator[tuple[str, str, EndpointSlice]]:
        """(address, endpoint label, slice) for each endpoint the service publishes.

        Spec 2.4.1: ready endpoints only, not-ready ones too under publishNotReadyAddresses.
        The same address in two slices (during a slice rollover) is listed twice: records are
        de-duplicated when added, and SRV weights count it twice, as CoreDNS does.

        Lazily: a render in slices pays for the endpoints of each slice in that slice (a list
        of 10,000 was one 5 ms step). A slice the owner loses meanwhile stops that render
        before it is read again (the registry's job token), so one gone here is skipped.
        """
        for key in sorted(self._slices_of.get(svc.key, ())):
            eps = self.slices.get(key)
            if eps is None:
                continue
            for ep in eps.endpoints:
                if not (ep.ready or svc.publish_not_ready):
                    continue
                for address in ep.addresses:
                    yield address, self._endpoint_label(ep.hostname, ep.pod_name, address), eps

    def _endpoint_label(self, hostname: str, pod_name: str, address: str) -> str:
        # Spec 2.4.1 uses the endpoint hostname; CoreDNS falls back to the pod name under
        # endpoint_pod_names, else to the dashed address (10-0-0-1).
        if hostname:
            return hostname
        if self.endpoint_pod_names and pod_name and len(pod_name) <= 63:
            return pod_name
        return names.dashed_ip(address)

    def _render_service(self, namespace: str, name: str) -> Contribution:
        return _run(self._render_service_steps(namespace, name))

    def _render_service_steps(self, namespace: str, name: str) -> Steps:
        svc = self.services.get((namespace, name))
        if svc is None:
            return {}
        base_text = f"{name}.{namespace}.svc.{self.cluster.text}"
        base = names.to_wire(base_text)
        out: Contribution = {base: {}}
        if svc.type == "ExternalName":
            # Spec 2.5: a CNAME to the external name (no SRV, no endpoints: CoreDNS alike).
            try:
                target = names.to_wire(svc.external_name) if svc.external_name else None
            except ValueError:
                target = None  # CoreDNS skips an externalName it cannot use: NODATA
                log.warning(
                    "%s/%s: externalName %r is not a usable DNS name",
                    namespace,
                    name,
                    svc.external_name,
                )
            if target is not None:
                _add(out, base, CNAME, target)
            return out
        srv: dict[bytes, list[tuple[int, bytes]]] = {}  # SRV name -> [(port, target)], pre-dedup
        port_names: dict[tuple[str, str], bytes] = {}  # once per port, not once per endpoint

        def add_port(
            port_name: str, protocol: str, port: int, target: bytes, rdata: tuple[int, bytes]
        ) -> None:
            # Spec 2.3.2 / 2.4.2: _<port>._<proto>.<svc> SRV for named ports. CoreDNS also
            # answers A/AAAA on that name (the addresses behind the port) and lists every
            # port, named or not, in an SRV query on the service name itself.
            if port_name:
                port_name_wire = port_names.get((port_name, protocol))
                if port_name_wire is None:
                    text = f"_{port_name}._{protocol.lower()}.{base_text}"
                    port_name_wire = port_names[(port_name, protocol)] = names.to_wire(text)
                srv.setdefault(port_name_wire, []).append((port, target))
                _add(out, port_name_wire, *rdata)
            srv.setdefault(base, []).append((port, target))

        if not svc.headless:
            # Spec 2.3.1: the ClusterIP(s), and their PTRs (2.3.3). SRV targets the service name
            # on the service port.
            for ip in svc.cluster_ips:
                _add(out, base, *rdata_address(ip))
                _add(out, names.to_wire(names.reverse_name(ip)), PTR, base)
            for index, port in enumerate(svc.ports):
                if index % STEP_ENDPOINTS == STEP_ENDPOINTS - 1:
                    yield  # a Service of 1,000 named ports: 5 ms in one step otherwise
                for ip in svc.cluster_ips:
                    add_port(port.name, port.protocol, port.port, base, rdata_address(ip))
        for index, (address, label, eps) in enumerate(self._endpoints(svc)):
            if index % STEP_ENDPOINTS == STEP_ENDPOINTS - 1:
                yield  # a slice of endpoints done: the registry may let queries in
            # Spec 2.4.1: <hostname>.<svc> A/AAAA and PTR per endpoint. CoreDNS serves these
            # endpoint names (and their PTRs) for ClusterIP services too.
            ep_name = _child(label, base, base_text)
            rdata = _address_rdata(address)
            ptr_name = _reverse_wire(rdata[1])
            _add(out, ep_name, LAZY, b"")
            _add(out, ptr_name, LAZY, b"")
            _add(out, ep_name, *rdata)
            _add(out, ptr_name, PTR, ep_name)
            for ep_port in eps.ports:
                srv.setdefault(ep_name, []).append((ep_port.port, ep_name))
            if svc.headless:
                # Spec 2.4.1: the service name answers every ready endpoint. SRV per endpoint,
                # on the endpoint's (target) port as CoreDNS does: it is the port that
                # answers on that address.
                _add(out, base, *rdata)
                for ep_port in eps.ports:
                    add_port(ep_port.name, ep_port.protocol, ep_port.port, ep_name, rdata)

        yield from self._render_srv_steps(out, srv)
        if svc.headless and not out[base]:
            # Spec 2.4.1: "If there are no ready endpoints for the headless Service, the
            # answer should be NXDOMAIN" (CoreDNS agrees): the name does not exist, and with
            # no endpoints there are no names below it either.
            del out[base]
        self._render_external(svc, out)
        if (namespace, name) == self.dns_service:
            for ip in svc.cluster_ips:
                _add(out, self.cluster.ns_name, *rdata_address(ip))
        return out

    @staticmethod
    def _render_srv(out: Contribution, srv: dict[bytes, list[tuple[int, bytes]]]) -> None:
        for _ in OwnerRendering._render_srv_steps(out, srv):
            pass

    @staticmethod
    def _render_srv_steps(
        out: Contribution, srv: dict[bytes, list[tuple[int, bytes]]]
    ) -> Generator[None, None, None]:
        # CoreDNS (plugin/backend_lookup.go): priority 0 for all, weight 100 split evenly
        # across the records of one answer.
        for index, (srv_name, entries) in enumerate(srv.items()):
            if index % STEP_ENDPOINTS == STEP_ENDPOINTS - 1:
                yield
            weight = max(1, 100 // len(entries))  # N counted before de-duplication, as CoreDNS
            for count, (port, target) in enumerate(dict.fromkeys(entries)):
                if count % STEP_ENDPOINTS == STEP_ENDPOINTS - 1:
                    yield
                _add(out, srv_name, SRV, rdata_srv(0, weight, port, target))

    def _render_external(self, svc: Service, out: Contribution) -> None:
        """k8s_external: <svc>.<ns>.<zone> answers spec.externalIPs then LoadBalancer ingress IPs."""
        ips = list(dict.fromkeys(svc.external_ips + svc.lb_ips))
        if not ips:
            return
        is_dns_service = (svc.namespace, svc.name) == self.dns_service
        for zone in self.zones.of_kind(EXTERNAL):
            base_text = f"{svc.name}.{svc.namespace}.{zone.text}"
            base = names.to_wire(base_text)
            srv: dict[bytes, list[tuple[int, bytes]]] = {}
            for ip in ips:
                rdata = rdata_address(ip)
                _add(out, base, *rdata)
                if is_dns_service:
                    _add(out, zone.ns_name, *rdata)
                for port in svc.ports:
                    srv.setdefault(base, []).append((port.port, base))
                    if port.name:
                        port_name = names.to_wire(
                            f"_{port.name}._{port.protocol.lower()}.{base_text}"
                        )
                        srv.setdefault(port_name, []).append((port.port, base))
                        _add(out, port_name, *rdata)
            self._render_srv(out, srv)
