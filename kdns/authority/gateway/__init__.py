"""Gateway zones: the hostnames of Gateway API routes, Ingresses and annotated Gateways and
Services, answered with the addresses that serve them (what the k8s_gateway CoreDNS plugin and
external-dns + a DNS server do, inside kdns).

Who claims a hostname:
- an HTTPRoute, GRPCRoute, TLSRoute, TCPRoute or UDPRoute, for each parent it is attached to
  (``spec.parentRefs``: a Gateway, or a ListenerSet the Gateway admits through
  ``spec.allowedListeners`` and, with ``require_accepted``, has accepted: the ListenerSet's
  ``status`` says ``Accepted=True``, and only its listeners whose ``status.listeners`` entry
  says so take routes). A route is attached to a listener only when everything the
  Gateway API says about attachment holds (gateway.networking.k8s.io/v1 Gateway and route
  types):

  - ``sectionName`` names the listener and ``port`` its port, when set;
  - the listener's protocol carries the route's kind, and ``allowedRoutes.kinds`` (when set)
    lists it: HTTP/HTTPS take HTTPRoute and GRPCRoute, TLS takes TLSRoute alone (GEP-2643;
    Gateway API v1.5 took TCPRoute off TLS listeners), TCP takes TCPRoute, UDP UDPRoute;
  - ``allowedRoutes.namespaces.from``: ``Same`` (the default: the namespace of the Gateway,
    or of the ListenerSet), ``All``, or ``Selector`` (the route's Namespace labels match the
    label selector);
  - the route's hostnames (``spec.hostnames``, the listener's ``hostname`` when it has none,
    plus its hostname annotation; external-dns's ``gateway-hostname-source`` picks
    ``annotation-only`` or ``defined-hosts-only``) intersect the listener's ``hostname`` (the
    more specific of the two is published); TCP and UDP listeners match no hostname, so a
    TCPRoute/UDPRoute publishes its hostname annotation only;
  - with ``require_accepted`` (the default), the route's ``status.parents`` entry for that
    parent, written by the controller of the Gateway's GatewayClass, says ``Accepted=True``
    at the route's current generation (external-dns since kubernetes-sigs/external-dns#5241);
  - the Gateway's class is in ``gateway_classes`` when that filter is set.

  The answer is the route's ``target`` annotation, else its ListenerSet's, else the Gateway's,
  else the Gateway's
  ``status.addresses`` (IPs as A/AAAA; a Hostname address as a CNAME when there is no IP);
- a Gateway's own hostname annotation (external-dns.alpha.kubernetes.io/hostname: the names
  of its TCPRoutes and UDPRoutes, which have no hostnames of their own), answered like a route;
- an Ingress of an allowed class (``ingress_classes``): each ``spec.rules[].host`` and
  ``spec.tls[].hosts`` entry (external-dns publishes both) and its
  hostname annotation (external-dns's ``ingress-hostname-source`` picks one of the two), answered with its ``target`` annotation, else its
  ``status.loadBalancer.ingress`` IPs (a CNAME to the ingress hostname when there is no IP);
- a Service: a LoadBalancer's hostname annotations (external-dns's, k8s_gateway's
  ``coredns.io/hostname``, ``kdns.io/hostname``) answered with its ``target`` annotation,
  else its ``spec.externalIPs`` (external-dns), else its ingress IPs, else a CNAME to its ingress hostname; any Service's external-dns
  ``internal-hostname`` answered with its ClusterIPs; with ``service_names`` (k8s_gateway's
  names), a LoadBalancer without a hostname annotation as ``<name>.<namespace>.<zone>`` in
  every zone, and an annotation name outside every zone under each zone. Objects labelled
  ``k8s-gateway.dns/ignore=true`` publish nothing.

A hostname is served only inside a configured gateway zone. Route wildcards
(``*.apps.home.example.com``) follow the Gateway API rule, not RFC 4592: they match names any
number of labels below their suffix, even below a name that exists (the resolver asks
``wildcard_for``); a more specific name or wildcard always wins.

One route attached through several parents answers the addresses of all of them (external-dns
combines and de-duplicates the targets of every parent Gateway; IPs over a CNAME).

Conflicts: claims that answer the same records agree (two routes behind one Gateway are the
normal case). When different claimants' answers differ, one claimant wins, deterministically: Gateway API routes before
Gateways before Ingresses before Services (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
Gateway, Ingress, Service), then by the claimant's namespace/name, then by the Gateway's
namespace/name; the others are logged once.

TTL: the winning claimant's ``ttl`` annotation, else ``[gateway] ttl``, else the zone's.

Modules: ``settings`` ([gateway]), ``attach`` (attachment rules, hostname matching),
``claims`` (who claims what, with which records), ``table`` (the objects and the hostnames they
claim), ``overlay`` (answers under a view's own class filters).
"""

from kdns.authority.gateway.attach import (
    COMPATIBLE,
    GROUP,
    intersect,
    kind_allowed,
    route_hostnames,
    selector_matches,
    set_listeners,
)
from kdns.authority.gateway.claims import Claim, Classes, passes
from kdns.authority.gateway.overlay import Overlay, ViewAnswers, wildcard_in
from kdns.authority.gateway.settings import RESOURCES, GatewaySettings, parse_filter
from kdns.authority.gateway.table import GatewayTable

__all__ = [
    "COMPATIBLE",
    "GROUP",
    "RESOURCES",
    "Claim",
    "Classes",
    "GatewaySettings",
    "GatewayTable",
    "Overlay",
    "ViewAnswers",
    "intersect",
    "kind_allowed",
    "parse_filter",
    "passes",
    "route_hostnames",
    "selector_matches",
    "set_listeners",
    "wildcard_in",
]
