"""Data files read beside the config: zone files, the hosts file, block lists and allowlists
(files and URLs) and the views built from them; polled, re-read when they move, and swapped in
with killer mode's cached replies dropped in the same step."""

from __future__ import annotations

import asyncio
import logging

from kdns.authority.hosts import Hosts, HostsError
from kdns.authority.localzones import LocalZoneError, ZoneData
from kdns.config import Config
from kdns.parts import (
    build_hosts,
    load_local_zone,
)
from kdns.policy.blocklist import file_stamp
from kdns.policy.listfetch import schedule_state
from kdns.running.sources import Sources

log = logging.getLogger("kdns")


class DataFiles(Sources):
    def _swap_views(self) -> None:
        """New lists or a schedule's turn: the views rebuilt and killer mode's cached replies
        dropped, in one step of the event loop (no await in between)."""
        self.responder.views = self._views(self.config)
        self._answers_changed()

    async def _refresh_lists(self) -> None:
        """Download the URL lists that are due and follow the schedules (checked every
        second; downloads and parsing run in threads, outside the reload lock, so a slow
        list server holds up neither DNS nor a reload)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                changed = await self.lists.refresh(urls=True)
                if changed or schedule_state(self.config) != self._schedules:
                    self._swap_views()
            except Exception:
                log.exception("refreshing block lists failed")

    async def _reload_zone_data(self, config: Config, why: str) -> dict[str, ZoneData]:
        """Every local zone's data for ``config``; a zone that fails keeps what it served (or
        serves only its SOA/NS when new), with one error line."""
        out = {}
        for zone in config.local_zones:
            try:
                out[zone.name] = await asyncio.to_thread(load_local_zone, zone)
            except LocalZoneError as exc:
                log.error("reload (%s): zone %s unchanged: %s", why, zone.name, exc)
                out[zone.name] = self._zone_data.get(zone.name) or ZoneData(zone.name)
            if zone.file:
                self._zone_stamps[zone.name] = file_stamp(zone.file)
        return out

    async def _watch_data_files(self) -> None:
        """Zone files and block lists are re-read when they change (polled like the config
        file, every server.reload_interval; (inode, mtime, size) compared, so a ConfigMap's
        symlink swap is seen)."""
        while True:
            await asyncio.sleep(self.config.reload_interval or 30.0)
            if self.config.reload_interval > 0:
                try:
                    await self.refresh_data_files("file changed")
                except Exception:
                    log.exception("reloading zone files or block lists failed")

    async def refresh_data_files(self, why: str) -> None:
        """Re-read the zone files and block lists whose files moved, one reload at a time."""
        async with self._reload_lock:
            await self._refresh_data_files(why)

    async def _load_hosts(self, config: Config, why: str) -> Hosts | None:
        """[hosts] for ``config``, read in a thread; a file that cannot be used keeps what was
        served, with one error line."""
        try:
            hosts = await asyncio.to_thread(build_hosts, config)
        except HostsError as exc:
            log.error("reload (%s): hosts unchanged: %s", why, exc)
            return self.hosts
        self._hosts_stamp = file_stamp(config.hosts_file) if config.hosts_file else None
        return hosts

    async def _refresh_hosts(self, why: str) -> None:
        """The hosts file moved: re-read it and swap the stage in, killer mode's cached replies
        dropped in the same step (no await between the swap and _answers_changed)."""
        path = self.config.hosts_file
        if path is None or file_stamp(path) == self._hosts_stamp:
            return
        hosts = await self._load_hosts(self.config, why)
        if hosts is self.hosts:
            return
        self.hosts = hosts
        self.resolver.hosts = hosts
        self.registry.derived.clear()
        self._answers_changed()
        log.info("hosts %s reloaded (%s): %d names", path, why, len(hosts or ()))

    async def _refresh_data_files(self, why: str) -> None:
        await self._refresh_hosts(why)
        for zone in self.config.local_zones:
            if zone.file is None:
                continue
            stamp = file_stamp(zone.file)
            if stamp == self._zone_stamps.get(zone.name):
                continue
            self._zone_stamps[zone.name] = stamp
            try:
                data = await asyncio.to_thread(load_local_zone, zone)
            except LocalZoneError as exc:
                log.error("zone %s (%s) unchanged: %s", zone.name, why, exc)
                continue
            if data == self._zone_data.get(zone.name) or zone not in self.config.local_zones:
                continue
            self._zone_data[zone.name] = data
            self.registry.set_local(data)  # its flush tells the watchers what moved
            log.info("zone %s reloaded (%s): %d records", zone.name, why, len(data))
        if await self.lists.refresh(urls=False):  # block list files that moved
            self._swap_views()  # replies cached before the lists moved
