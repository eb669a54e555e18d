"""Reload (CoreDNS reload): SIGHUP or a change of the config file's content. A reload is
applied whole or refused whole: listen addresses first, then what takes time (files read in
threads), then every swap in one step of the event loop. Settings that pick the cluster source
or the process shape need a restart (RESTART_ONLY), said and counted."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import InfoMetricFamily
from prometheus_client.registry import Collector

from kdns.config import Config, ConfigError
from kdns.k8s.static import copy_objects
from kdns.logs import setup_logging
from kdns.parts import (
    StartupError,
    build_chaos,
    build_forwarder,
    build_registry,
    gateway_settings,
    zone_shape,
)
from kdns.running.datafiles import DataFiles
from kdns.running.wiring import fetch_settings
from kdns.server import querylog
from kdns.server.sockets import set_freebind

log = logging.getLogger("kdns")

Reload = Callable[[], Config]

# Settings a reload cannot change in place: they pick the cluster source or the process shape.
RESTART_ONLY = (
    "demo",
    "objects",
    "kubeconfig",
    "kubernetes_enabled",
    "workers",
    "killer",
    "killer_cache_entries",
    "killer_cache_bytes",
    "killer_prefetch",
    "killer_prefetch_threshold",
    "killer_prefetch_share",
    "killer_prefetch_concurrency",
    "metrics_compat",  # the exporter is built once, at start
    "autopath",  # the Pod watch and the registry's client index are set up at start
    "startup_timeout",  # only the first sync waits on it
)
# Gateway zones and their filters: part of the registry's shape; with a cluster, they also pick
# which Gateway API / Ingress resources are watched (started or stopped on reload).
GATEWAY_SETTINGS = (
    "gateway_zones",
    "gateways",
    "gateway_label",
    "gateway_annotation",
    "gateway_resources",
    "gateway_classes",
    "ingress_classes",
    "gateway_require_accepted",
    "gateway_fallthrough",
    "gateway_service_names",
    "gateway_ttl",
    "gateway_nameserver",
    "gateway_nameserver_addresses",
)
# Settings baked into the registry's rendered answers: a change re-renders into a new registry.
REGISTRY_SHAPE = (
    "cluster_domain",
    "external_zones",
    "pods",
    "endpoint_pod_names",
    "dns_service",
    *GATEWAY_SETTINGS,
)
# Settings of the forwarder (routes, upstream groups, cache): a change builds a new one.
FORWARDING = (
    "forward",
    "upstreams",
    "split",
    "cluster_domains",
    "cluster_nameserver",
    "resolv_conf",
    "tls_ca_file",
)
FORWARDING_PREFIXES = ("forward_", "cache")


def config_hash(config: Config) -> str:
    """A short, stable hash of an effective config (every setting, whatever its source)."""

    text = json.dumps(_plain(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: object) -> object:
    """``value`` as JSON data, the same in every process (sets sorted, no object ids). Not
    dataclasses.asdict: it rebuilds tuple subclasses from their items, which ForwardZone (a
    (name, upstreams) pair carrying its own options) cannot be built from."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    options = getattr(value, "options", None)
    if isinstance(value, tuple) and isinstance(options, tuple):  # ForwardZone
        return [_plain(tuple(value)), _plain(options)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted(json.dumps(_plain(item), sort_keys=True) for item in value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return repr(value)


class ConfigHash(Collector):
    """kdns_config_last_applied_hash_info{hash}: the config the process runs."""

    def __init__(self, current: Callable[[], str]) -> None:
        self.current = current

    def collect(self) -> Iterator[InfoMetricFamily]:
        yield InfoMetricFamily(
            "kdns_config_last_applied_hash",
            "The effective config last applied (at start or by a reload), as a hash",
            value={"hash": self.current()},
        )


class Reloading(DataFiles):
    def _file_digest(self) -> bytes | None:
        if not self.config.config_file:
            return None
        try:
            with open(self.config.config_file, "rb") as handle:
                return hashlib.sha256(handle.read()).digest()
        except OSError:
            return None

    async def _watch_config_file(self) -> None:
        """CoreDNS reload: poll the file's content hash (a ConfigMap update swaps a symlink,
        so mtimes lie; the content does not)."""
        while True:
            await asyncio.sleep(self.config.reload_interval)
            digest = self._file_digest()
            if digest is not None and digest != self._config_digest:
                await self.reload("config file changed")

    async def reload(self, why: str) -> None:
        if self.reload_config is None:
            log.warning("reload (%s) ignored: started without a reloadable configuration", why)
            return
        async with self._reload_lock:
            self._config_digest = self._file_digest()
            try:
                new = self.reload_config()
            except ConfigError as exc:
                self._reject(why, exc)
                return
            try:
                await self._apply(new, why)
                await self._refresh_data_files(why)  # zone files and block lists that moved
            except Exception:
                log.exception("reload (%s) failed part-way; what was applied stays", why)

    def _reject(self, why: str, problem: object) -> None:
        """A reload refused whole: the running config stays as it was, counted
        (kdns_config_reloads_rejected_total) and logged with the reason."""
        self.stats.config_reloads_rejected += 1
        log.error("reload (%s) rejected, keeping the running config: %s", why, problem)

    async def apply(self, new: Config, why: str) -> None:
        """Run on ``new`` (a reloaded config), after any reload or objects-file apply under
        way has finished."""
        async with self._reload_lock:
            await self._apply(new, why)

    async def _apply(self, new: Config, why: str) -> None:
        old = self.config
        changed = [f for f in old.__dataclass_fields__ if getattr(old, f) != getattr(new, f)]
        if not changed:
            log.info("reload (%s): nothing changed", why)
            return
        kept = [f for f in changed if f in RESTART_ONLY]
        if kept:
            # Not applied: said so, and counted (kdns_config_reloads_restart_needed_total).
            self.stats.config_restart_needed += 1
            log.warning(
                "reload (%s): %s changed and needs a restart: not applied until kdns restarts",
                why,
                ", ".join(kept),
            )
            new = new.__class__(**{**{f: getattr(new, f) for f in new.__dataclass_fields__},
                                   **{f: getattr(old, f) for f in kept}})  # fmt: skip
        # The listen addresses before anything else, DNS then HTTP: a reload kdns cannot
        # listen for (":53" without the capability, an HTTP port taken) is refused whole, the
        # running config intact (DNS and HTTP back on the old addresses), instead of half
        # applied.
        http_moved = self._http_addresses(new) != self._http_addresses(old) and not self.in_worker
        if new.listen != old.listen:
            set_freebind(new.freebind)
            try:
                await self.listeners.sync(new.listen)
            except OSError as exc:  # "dns: cannot listen on ...: ..."
                await self._restore_listeners(old, dns=True, http=None)
                self._reject(why, exc)
                return
        if http_moved:
            bound = dict(self.http.bound)  # where ":0" addresses landed, to land there again
            await self.http.stop()
            try:
                await self.start_http(new)
            except OSError as exc:  # "metrics: cannot listen on ...: ..."
                await self._restore_listeners(old, dns=new.listen != old.listen, http=bound)
                self._reject(why, exc)
                return
        # First what takes time (files read in threads): nothing served changes yet.
        if (new.blocklists, new.allowlists, new.views) != (old.blocklists, old.allowlists, old.views) or fetch_settings(new) != fetch_settings(old):  # fmt: skip
            self.lists.settings = fetch_settings(new)
            await self.lists.load(new, why)
        hosts_changed = any(f.startswith(("hosts_", "chaos")) for f in changed)
        hosts = await self._load_hosts(new, why) if hosts_changed else self.hosts
        local_changed = new.local_zones != old.local_zones
        previous = self._zone_data
        zone_data = await self._reload_zone_data(new, why) if local_changed else previous
        # Then every swap in one step of the event loop, ending with the killer told: no
        # await from here to _answers_changed(), so no datagram is read in between.
        try:
            if hosts_changed:  # [hosts] / [chaos]: the resolver's own stages
                self.hosts = hosts
                self.resolver.hosts = hosts
                self.resolver.chaos = build_chaos(new)
                self.registry.derived.clear()  # negatives remembered before a name was listed
            if any(f.startswith(FORWARDING_PREFIXES) or f in FORWARDING for f in changed):
                self._swap_forwarder(new, why)
            self._zone_data = zone_data
            if any(f in REGISTRY_SHAPE for f in changed) or zone_shape(new) != zone_shape(old):
                self._swap_registry(new)
            else:
                if new.ttl != old.ttl:
                    self.registry.set_ttl(new.ttl)
                if local_changed:  # the same zones, other data: re-render what differs
                    for name, data in zone_data.items():
                        if data != previous.get(name):
                            self.registry.set_local(data)
            if new.log_level != old.log_level or new.log_format != old.log_format:
                setup_logging(new.log_level, new.log_format)
            self.listeners.set_query_log(new.query_log)
            querylog.noting = new.query_log
            querylog.set_classes(new.log_classes)
            querylog.set_zones(new.log_zones)
            self._configure_responder(new)
            self.responder.set_udp_size(new.udp_size)
            self._configure_tcp(new)
            self.config = new
        finally:  # even a swap that failed part-way: what was swapped in is what is served
            self._answers_changed()
        set_freebind(new.freebind)  # for addresses bound from now on
        self.config_hash = config_hash(self.config)
        log.info(
            "reloaded (%s): %s; config %s applied",
            why,
            ", ".join(f for f in changed if f not in kept) or "nothing",
            self.config_hash,
        )

    @staticmethod
    def _http_addresses(config: Config) -> tuple[tuple[str, int] | None, ...]:
        return (config.health_listen, config.ready_listen, config.metrics_listen)

    async def _restore_listeners(
        self, old: Config, *, dns: bool, http: dict[str, tuple[str, int]] | None
    ) -> None:
        """A refused reload: DNS and HTTP back on the running config's addresses (``http``:
        where each endpoint was bound, so a ":0" address gets its port back)."""
        if dns:
            with contextlib.suppress(OSError):
                await self.listeners.sync(old.listen)
            set_freebind(old.freebind)
        if http is not None:
            await self.http.stop()
            addresses = {}
            for endpoint, address in zip(("health", "ready", "metrics"), self._http_addresses(old), strict=True):  # fmt: skip
                if address is not None and address[1] == 0 and endpoint in http:
                    address = (address[0], http[endpoint][1])
                addresses[endpoint] = address
            try:
                await self.http.start(addresses)
            except OSError as exc:  # taken meanwhile: said, and retried by the next reload
                log.error("cannot serve HTTP on the running addresses again: %s", exc)

    def _swap_forwarder(self, config: Config, why: str) -> None:
        try:
            forwarder, split = build_forwarder(config)
        except StartupError as exc:
            log.error("reload (%s): forwarding unchanged: %s", why, exc)
            return
        old, self.forwarder, self.split = self.forwarder, forwarder, split
        self.resolver = self._resolver(self.registry, config)
        # Remembered answers came from the old routing (forward zones cut out of local zones).
        self.registry.derived.clear()
        self.responder.resolve = self.resolver.resolve
        self.responder.forwarder = forwarder
        if forwarder is not None:
            self._spawn(forwarder.check_loops())
        if old is not None:
            self._spawn(old.close())  # in-flight queries on the old one finish or time out

    def _swap_registry(self, config: Config) -> None:
        """Zones or naming changed: render every object into a fresh registry, then switch the
        readers over in one step (queries see the old answers or the new, never neither)."""
        gated = self.responder.answers is not self.registry.answers  # still before first sync
        fresh = build_registry(config, self._zone_data)
        copy_objects(self.registry, fresh)
        fresh.synced = self.registry.synced
        self.registry = fresh
        self.resolver = self._resolver(fresh, config)
        if not gated:
            self.responder.answers = fresh.answers
        self.responder.derived = fresh.derived
        self.responder.resolve = self.resolver.resolve
        for source in (self.source, self.cluster):
            if source is not None:
                source.set_registry(fresh)
        if self.cluster is not None:  # gateway zones turned on or off: watch what they need
            self.cluster.set_gateway_kinds(gateway_settings(config).watched_kinds())
