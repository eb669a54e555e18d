"""Schedules of views and lists (days and hours in a time zone, AdGuard Home's per-client
schedules): whether one blocks now."""

from __future__ import annotations

import datetime
import time
import zoneinfo
from collections.abc import Callable
from typing import Any


def active(schedule: Any, now: float | None = None) -> bool:
    """Whether a view or list with ``schedule`` (kdns.config Schedule; None: always) blocks
    at ``now`` (epoch seconds)."""
    if schedule is None:
        return True
    when = _local(schedule.time_zone, time.time() if now is None else now)
    minute = when.hour * 60 + when.minute
    inside = any(start <= minute < end for start, end in schedule.days[when.weekday()])
    return inside != schedule.pause


def _local(zone: str, now: float) -> datetime.datetime:
    if zone == "Local":
        return datetime.datetime.fromtimestamp(now)
    return datetime.datetime.fromtimestamp(now, zoneinfo.ZoneInfo(zone))


def schedule_state(config: Any, now: float | None = None) -> tuple[bool, ...]:
    """Every schedule's state now, in config order: views then lists (a change rebuilds)."""
    return tuple(
        active(item.schedule, now)
        for item in (*config.views, *config.blocklists)
        if item.schedule is not None
    )


def seconds_to_next_minute(now: Callable[[], float] = time.time) -> float:
    return 60.0 - now() % 60.0 + 0.05
