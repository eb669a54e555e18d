"""The gateway side of the registry: the Gateway API objects, Ingresses and annotated Services,
the claims they make on hostnames (kdns.authority.gateway.claims), and one hostname's records:
the winning claim's under [gateway]'s class filters. A view with class filters of its own gets an
overlay of the names it answers otherwise (kdns.authority.gateway.overlay).

Each hostname is one registry owner (``("gw", "", hostname)``): whatever changes (a route, a
Gateway's address, a namespace's labels, a filter), only the hostnames whose claims moved are
re-rendered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kdns.authority.gateway.attach import NAMESPACE_NAME_LABEL
from kdns.authority.gateway.claims import Claim, Classes, Source, claims_of, passes, winning
from kdns.authority.gateway.overlay import WILDCARD, Overlay, wildcard_in
from kdns.authority.gateway.settings import GatewaySettings
from kdns.authority.zones import ZoneSet
from kdns.dns import names
from kdns.model import (
    ROUTE_KINDS,
    Gateway,
    GatewayClass,
    Ingress,
    ListenerSet,
    Route,
    Service,
)

log = logging.getLogger("kdns.gateway")

GatewayKey = tuple[str, str]
Records = dict[int, list[bytes]]
GatewayObject = GatewayClass | Gateway | ListenerSet | Route | Ingress
# Conflicts already logged (hostname, claimants), per process: a reload's fresh registry or a
# re-render does not log the same conflict again.
_LOGGED: set[tuple[bytes, tuple[str, ...]]] = set()
_LOGGED_MAX = 10_000


class GatewayTable:
    """The Gateway API, Ingress and Service-hostname side of the registry: objects, the claims
    they make on hostnames, and rendering one hostname's records."""

    def __init__(
        self,
        settings: GatewaySettings,
        zones: ZoneSet,
        services: Mapping[tuple[str, str], Service],
    ) -> None:
        self.settings = settings
        self.zones = zones
        self.apexes = zones.gateway_apexes
        self.enabled = bool(self.apexes)
        self.services = services
        self.classes: dict[str, GatewayClass] = {}
        self.gateways: dict[GatewayKey, Gateway] = {}
        self.listenersets: dict[GatewayKey, ListenerSet] = {}
        self.routes: dict[Source, Route] = {}
        self.ingresses: dict[tuple[str, str], Ingress] = {}
        self.ns_labels: dict[str, tuple[tuple[str, str], ...]] = {}  # Namespace -> labels
        # (parent kind, namespace, name) -> routes naming it; Gateway -> its ListenerSets.
        self.routes_of: dict[Source, set[Source]] = {}
        self.sets_of: dict[GatewayKey, set[GatewayKey]] = {}
        self.claims: dict[bytes, set[Source]] = {}  # hostname -> who claims it
        self.names_of: dict[Source, tuple[bytes, ...]] = {}  # the reverse
        # Claimed wildcard names whose claims [gateway]'s class filters let answer (Gateway
        # API matching, asked by the resolver).
        self.wildcards: set[bytes] = set()
        self.ttls: dict[bytes, int] = {}  # hostname -> its TTL, when not the zone's
        # Claims are kept whatever their class; the filters pick among them when a name is
        # rendered: [gateway]'s for the registry's answers, a view's own for its overlay.
        self.filters: Classes = (settings.gateway_classes, settings.ingress_classes)
        # Views with class filters of their own: one overlay per distinct filter set, holding
        # only the names whose answer differs from [gateway]'s (kdns.policy.views asks them).
        self.overlays: dict[Classes, Overlay] = {}
        self.moved: set[bytes] = set()  # names an overlay's answer moved for (next flush tells)
        self.moves = 0  # counts overlay moves: a view's memo of answers is dropped on change

    # --------------------------------------------------------------- objects

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in ROUTE_KINDS}
        for kind, _, _ in self.routes:
            counts[kind] += 1
        return {
            "GatewayClass": len(self.classes),
            "Gateway": len(self.gateways),
            "ListenerSet": len(self.listenersets),
            **counts,
            "Ingress": len(self.ingresses),
        }

    def current(self, kind: str, key: tuple[str, str]) -> GatewayObject | None:
        if kind == "GatewayClass":
            return self.classes.get(key[1])
        if kind == "Gateway":
            return self.gateways.get(key)
        if kind == "ListenerSet":
            return self.listenersets.get(key)
        if kind == "Ingress":
            return self.ingresses.get(key)
        return self.routes.get((kind, *key))

    def keys(self, kind: str) -> list[tuple[str, str]]:
        if kind == "GatewayClass":
            return [("", name) for name in self.classes]
        if kind == "Gateway":
            return list(self.gateways)
        if kind == "ListenerSet":
            return list(self.listenersets)
        if kind == "Ingress":
            return list(self.ingresses)
        return [(ns, name) for k, ns, name in self.routes if k == kind]

    def objects(self) -> list[GatewayObject]:
        return [
            *self.classes.values(),
            *self.gateways.values(),
            *self.listenersets.values(),
            *self.routes.values(),
            *self.ingresses.values(),
        ]

    def upsert(self, obj: GatewayObject) -> set[bytes] | None:
        """Store ``obj``; the hostnames whose claims may have changed, None when nothing
        DNS-visible changed."""
        if isinstance(obj, GatewayClass):
            if self.classes.get(obj.name) == obj:
                return None
            self.classes[obj.name] = obj
            return self._refresh(self._of_class(obj.name))
        if isinstance(obj, Gateway):
            if self.gateways.get(obj.key) == obj:
                return None
            self.gateways[obj.key] = obj
            return self._refresh(self._of_gateway(obj.key))
        if isinstance(obj, ListenerSet):
            old_set = self.listenersets.get(obj.key)
            if old_set == obj:
                return None
            self._link_set(obj.key, old_set, obj)
            self.listenersets[obj.key] = obj
            return self._refresh(self.routes_of.get(("ListenerSet", *obj.key), ()))
        if isinstance(obj, Ingress):
            if self.ingresses.get(obj.key) == obj:
                return None
            self.ingresses[obj.key] = obj
            return self._refresh((("Ingress", *obj.key),))
        source = (obj.kind, obj.namespace, obj.name)
        old = self.routes.get(source)
        if old == obj:
            return None
        self._link_route(source, old, obj)
        self.routes[source] = obj
        return self._refresh((source,))

    def delete(self, kind: str, key: tuple[str, str]) -> set[bytes] | None:
        if kind == "GatewayClass":
            if self.classes.pop(key[1], None) is None:
                return None
            return self._refresh(self._of_class(key[1]))
        if kind == "Gateway":
            if self.gateways.pop(key, None) is None:
                return None
            return self._refresh(self._of_gateway(key))
        if kind == "ListenerSet":
            old_set = self.listenersets.pop(key, None)
            if old_set is None:
                return None
            self._link_set(key, old_set, None)
            return self._refresh(self.routes_of.get(("ListenerSet", *key), ()))
        if kind == "Ingress":
            if self.ingresses.pop(key, None) is None:
                return None
            return self._refresh((("Ingress", *key),))
        source = (kind, *key)
        old = self.routes.pop(source, None)
        if old is None:
            return None
        self._link_route(source, old, None)
        return self._refresh((source,))

    def namespace_changed(self, name: str, labels: tuple[tuple[str, str], ...] | None) -> set[bytes]:  # fmt: skip
        """A Namespace's labels changed (None: it went away): routes in it, and routes of
        ListenerSets in it, may attach differently (``from: Selector``)."""
        if labels is None:
            if self.ns_labels.pop(name, None) is None:
                return set()
        elif self.ns_labels.get(name) == labels:
            return set()
        else:
            self.ns_labels[name] = labels
        sources: set[Source] = {s for s in self.routes if s[1] == name}
        for ns, set_name in self.listenersets:
            if ns == name:
                sources |= self.routes_of.get(("ListenerSet", ns, set_name), set())
        return self._refresh(sources) if self.enabled else set()

    def service_changed(self, key: tuple[str, str]) -> set[bytes]:
        """A Service changed or went away (the registry's ``services`` already shows it)."""
        source = ("Service", *key)
        svc = self.services.get(key)
        if source not in self.names_of and (svc is None or svc.meta is None):
            # The common case: a Service that published no name and can publish none (meta
            # is set only for LoadBalancers and internal-hostname Services: k8s/objects.py).
            return set()
        return self._refresh((source,))

    def _of_gateway(self, key: GatewayKey) -> set[Source]:
        sources = set(self.routes_of.get(("Gateway", *key), ()))
        for set_key in self.sets_of.get(key, ()):
            sources |= self.routes_of.get(("ListenerSet", *set_key), set())
        sources.add(("Gateway", *key))  # its hostname annotation
        return sources

    def _of_class(self, name: str) -> set[Source]:
        sources: set[Source] = set()
        for key, gateway in self.gateways.items():
            if gateway.gateway_class == name:
                sources |= self._of_gateway(key)
        return sources

    def _link_set(self, key: GatewayKey, old: ListenerSet | None, new: ListenerSet | None) -> None:
        if old is not None:
            members = self.sets_of.get(old.gateway)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.sets_of[old.gateway]
        if new is not None:
            self.sets_of.setdefault(new.gateway, set()).add(key)

    def _link_route(self, source: Source, old: Route | None, new: Route | None) -> None:
        before = {(p.kind, p.namespace, p.name) for p in old.parents} if old else set()
        after = {(p.kind, p.namespace, p.name) for p in new.parents} if new else set()
        for parent in before - after:
            routes = self.routes_of.get(parent)
            if routes is not None:
                routes.discard(source)
                if not routes:
                    del self.routes_of[parent]
        for parent in after - before:
            self.routes_of.setdefault(parent, set()).add(source)

    # ---------------------------------------------------------------- claims

    def _refresh(self, sources: Iterable[Source]) -> set[bytes]:
        changed: set[bytes] = set()
        for source in list(sources):
            old = self.names_of.pop(source, ())
            new = tuple(claims_of(self, source)) if self.enabled else ()
            if new:
                self.names_of[source] = new
            for name in old:
                claimants = self.claims.get(name)
                if claimants is not None:
                    claimants.discard(source)
                    if not claimants:
                        del self.claims[name]
            for name in new:
                self.claims.setdefault(name, set()).add(source)
            # Every name the source claimed or claims: its records may have changed even when
            # the set of names did not (a Gateway's new address).
            changed.update(old)
            changed.update(new)
        self._settle(changed)
        return changed

    def _settle(self, hostnames: Iterable[bytes]) -> None:
        """After claims moved: which wildcards [gateway]'s filters let answer, and each
        overlay's names that answer otherwise than [gateway]'s."""
        overlays = self.overlays
        for name in hostnames:
            wild = name.startswith(WILDCARD)
            if not (wild or overlays):
                continue
            claims = self.candidates(name)
            winner = self._first(claims, self.filters)
            if wild:
                if winner is None:
                    self.wildcards.discard(name)
                else:
                    self.wildcards.add(name)
            for overlay in overlays.values():
                if overlay.settle(name, winner, self._first(claims, overlay.classes)):
                    self.moved.add(name)
                    self.moves += 1

    def overlay(self, classes: Classes) -> Overlay | None:
        """The overlay of a view whose class filters are ``classes`` (None: they are
        [gateway]'s, the registry's answers are the view's)."""
        if classes == self.filters or not self.enabled:
            return None
        overlay = self.overlays.get(classes)
        if overlay is None:
            overlay = self.overlays[classes] = Overlay(classes, self.settings.ttl)
            self._settle(list(self.claims))
        return overlay

    def retain(self, wanted: Iterable[Classes]) -> None:
        """Forget the overlays of filter sets no view has any more (a reload)."""
        keep = set(wanted)
        for classes in [c for c in self.overlays if c not in keep]:
            del self.overlays[classes]

    def take_moved(self) -> set[bytes]:
        """Names whose overlay answers moved since the last call (the registry's flush
        reports them to its watchers: killer mode's wire cache)."""
        moved, self.moved = self.moved, set()
        return moved

    def candidates(self, name: bytes) -> list[Claim]:
        """Every claim on ``name``, whatever its class, in the order that picks a winner."""
        claims: list[Claim] = []
        for source in self.claims.get(name, ()):
            claims.extend(claims_of(self, source).get(name, ()))
        claims.sort()
        return claims

    @staticmethod
    def _first(claims: list[Claim], classes: Classes) -> Claim | None:
        return winning(claims, classes)

    def winner(self, name: bytes) -> Claim | None:
        """The claim that answers ``name`` under [gateway]'s class filters."""
        return self._first(self.candidates(name), self.filters)

    def ours(self, hostname: str) -> bytes | None:
        """The wire name of ``hostname`` when its most specific zone is a gateway zone (not
        a more specific zone of another kind below it), else None."""
        try:
            wire = names.to_wire(hostname)
        except ValueError:
            return None
        zone = self.zones.find(wire)
        return wire if zone is not None and zone.apex in self.apexes else None

    def labels(self, namespace: str) -> dict[str, str]:
        labels = dict(self.ns_labels.get(namespace, ()))
        labels.setdefault(NAMESPACE_NAME_LABEL, namespace)  # what the API server sets
        return labels

    def gateway_selected(self, gateway: Gateway) -> bool:
        # Class filters are applied per audience when a name is rendered (``passes``).
        return self.settings.selects_gateway(gateway.namespace, gateway.name)

    def controller_of(self, gateway: Gateway) -> str | None:
        """The controller of the Gateway's class (whose route status entries count); None
        while the GatewayClass is unknown."""
        gateway_class = self.classes.get(gateway.gateway_class)
        return gateway_class.controller if gateway_class is not None else None

    # -------------------------------------------------------------- rendering

    def records(self, name: bytes) -> Records:
        """The records ``name`` answers: the winning claim's (see the module docstring)."""
        filters = self.filters
        claims = [c for c in self.candidates(name) if passes(c, filters)]
        winner = winning(claims, filters)
        if winner is None:
            self.ttls.pop(name, None)
            return {}
        # The winner's claimant's other parents are in its answer: not conflicts.
        losers = [c for c in claims if c.order[:2] != winner.order[:2] and c.answer != winner.answer]  # fmt: skip
        if losers:
            self._log_conflict(name, winner, losers)
        ttl = winner.ttl if winner.ttl >= 0 else self.settings.ttl
        if ttl is None:
            self.ttls.pop(name, None)
        else:
            self.ttls[name] = ttl
        records: Records = {}
        for rtype, rdata in winner.answer:
            records.setdefault(rtype, []).append(rdata)
        return records

    def wildcard_for(self, name: bytes, apex: bytes) -> bytes | None:
        """The most specific route wildcard matching ``name`` by the Gateway API rule (its
        suffix, one label below or more), None when none does."""
        return wildcard_in(self.wildcards, name, apex)

    def _log_conflict(self, name: bytes, winner: Claim, losers: list[Claim]) -> None:
        seen = (name, (winner.what, *(c.what for c in losers)))
        if seen in _LOGGED:
            return
        if len(_LOGGED) >= _LOGGED_MAX:
            _LOGGED.clear()
        _LOGGED.add(seen)
        log.warning(
            "gateway: %s is claimed with different addresses by %s; answering %s's "
            "(set [gateway] gateway_classes, ingress_classes, gateways, label or annotation "
            "to pick one)",
            names.to_text(name),
            ", ".join(c.what for c in [winner, *losers]),
            winner.what,
        )
