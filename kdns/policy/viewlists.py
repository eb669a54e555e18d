"""[[views]] assembled with their loaded block lists and allowlists (what the responder asks per
query: kdns.policy.views), and ``kdns explain``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kdns.policy.schedules import active

if TYPE_CHECKING:
    from kdns.policy.listfetch import Lists
    from kdns.policy.listsource import Source


def build_views(config: Any, lists: Lists, zones: Any, counts: dict[tuple[str, str], int], now: float | None = None, registry: Any = None, resolver: Any = None) -> Any:  # fmt: skip
    """[[views]] with their loaded block lists and allowlists, as their schedules have them
    at ``now``; None (nothing on the hot path) without views. ``registry``/``resolver``: a
    view's gateway class filters answer from them (kdns.policy.views.gateway_answers)."""
    from kdns.policy.views import View, Views, gateway_answers

    if not config.views:
        return None
    blocking, allowing = {}, {}
    for spec in config.blocklists:
        loaded = lists.lookup(spec)
        if loaded is not None and active(spec.schedule, now):
            blocking[spec.name] = loaded.as_list(spec.name, spec.answer)
    for aspec in config.allowlists:
        loaded = lists.lookup(aspec)
        if loaded is not None:
            allowing[aspec.name] = loaded.as_list(aspec.name, "nxdomain")
    views = []
    gateway = gateway_answers(config.views, registry, resolver)
    for v, own in zip(config.views, gateway, strict=True):
        on = active(v.schedule, now)
        views.append(
            View(
                v.name,
                v.networks,
                v.zones,
                [blocking[n] for n in v.blocklists if n in blocking] if on else [],
                [allowing[n] for n in v.allowlists if n in allowing] if on else [],
                own,
                # Blocky's allowlist-only group (kdns.policy.views rule 1a), while it applies.
                only_allow=on and bool(v.allowlists) and not v.blocklists,
            )
        )
    return Views(views, zones, counts)


def explain(config: Any, name: str, view_name: str, lists: Lists) -> list[str]:
    """``kdns explain``: what the view's lists say about ``name``, with the lines of the
    lists that hold the matching rules."""
    from kdns.authority.zones import ZoneSet
    from kdns.dns import names
    from kdns.policy.blocklist import iter_rules

    views = build_views(config, lists, ZoneSet.build(config.cluster_domain, (), 5), {})
    chosen = next((v for v in views.views if v.name == view_name), None) if views else None
    if chosen is None:
        raise KeyError(view_name)
    wire = names.to_wire(name).lower()
    out = [f"{name} for view {view_name}:"]
    for line in chosen.explain(wire):
        out.append("  " + line)
    parents = {wire[i:] for i in _label_starts(wire)}
    for spec in [*config.blocklists, *config.allowlists]:
        if spec.name not in (*chosen_lists(config, view_name),):
            continue
        source = lists.sources.get((spec.file or spec.url or "", spec.format))
        body = _source_lines(source, lists) if source is not None else []
        for number, got in iter_rules(body, spec.format):
            if isinstance(got, str):
                continue
            if any(
                (rule.name is not None and rule.name in parents)
                or (rule.pattern is not None and chosen.explain_pattern(rule.pattern, wire))
                for rule in got
            ):
                text = body[number - 1].strip().decode("utf-8", "replace")
                out.append(f"  {spec.name} line {number}: {text}")
    return out


def chosen_lists(config: Any, view_name: str) -> list[str]:
    for v in config.views:
        if v.name == view_name:
            return [*v.blocklists, *v.allowlists]
    return []


def _label_starts(wire: bytes) -> list[int]:
    out, pos = [], 0
    while wire[pos]:
        out.append(pos)
        pos += wire[pos] + 1
    return out


def _source_lines(source: Source, lists: Lists) -> list[bytes]:
    try:
        if source.file is not None:
            with open(source.file, "rb") as handle:
                return handle.read().splitlines()
        cached = lists._cached(source)
        return cached[0].splitlines() if cached is not None else []
    except OSError:
        return []
