"""Server-wide plugins: health, ready, prometheus, errors, log, loop, reload, loadbalance, bind,
bufsize, timeouts, debug, root, cancel, multisocket/reuseport."""

from __future__ import annotations

import ipaddress

from kdns.config import parse_hostport
from kdns.corefile.handlers.common import _options
from kdns.corefile.parse import Directive
from kdns.corefile.translator import (
    _bad,
    _Block,
    _duration,
    _integer,
    _loc,
    _seconds_value,
    _Translator,
    _zone,
)


def _health(t: _Translator, d: Directive, b: _Block) -> None:
    address = d.args[0] if d.args else ":8080"
    t.set("health.listen", address, d, "health " + " ".join(d.args))
    lameduck = 0.0  # CoreDNS: no lameduck unless asked

    def set_lameduck(o: Directive) -> None:
        nonlocal lameduck
        if len(o.args) != 1:
            raise _bad(o, "takes one duration")
        lameduck = _duration(o.args[0], o)

    _options(t, d, {"lameduck": set_lameduck})
    t.set(
        "health.lameduck",
        _seconds_value(lameduck),
        d,
        f"lameduck {_seconds_value(lameduck)}s" if lameduck else "no lameduck option",
    )


def _ready(t: _Translator, d: Directive, b: _Block) -> None:
    t.set("ready.listen", d.args[0] if d.args else ":8181", d, "ready " + " ".join(d.args))


def _prometheus(t: _Translator, d: Directive, b: _Block) -> None:
    address = d.args[0] if d.args else "localhost:9153"  # CoreDNS's default address
    if t.set("metrics.listen", address, d, "prometheus " + " ".join(d.args)):
        t.set("metrics.compat", "coredns", d, "coredns_* metric names, so dashboards keep working")


def _errors(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("log", d, "kdns always logs errors")
    for o in d.block or []:
        t.note("log", o, f"{o.name}: no kdns equivalent; ignored")


def _log(t: _Translator, d: Directive, b: _Block) -> None:
    """log [NAMES...] [FORMAT] { class CLASSES... }: the query log, its classes as CoreDNS's
    (success, denial, error, all: log README). A log in one server block logs that block's
    queries only ("the log plugin ... in a server block"): kdns's ``log.zones``, resolved over
    every block once all are read."""
    classes: list[str] = []
    for o in d.block or []:
        if o.name != "class" or not o.args:
            raise _bad(o, "takes: class success|denial|error|all...")
        for name in o.args:
            if name not in ("success", "denial", "error", "all"):
                raise _bad(o, f"unknown class {name!r} (success, denial, error, all)")
            classes.append(name)
    # CoreDNS log setup: with two or more arguments, the last is the FORMAT when it holds a "{".
    names = list(d.args)
    if len(names) >= 2 and "{" in names[-1]:
        names.pop()
        t.note("log", d, "kdns logs in its own format (client, name, type, rcode, duration)")
    # NAMES narrow the block's zones ("." or none: all of them).
    zones = [z for a in names for z in _zone(a, d) if z != "."] or list(b.zones)
    kept = ("all",) if not classes or "all" in classes else tuple(dict.fromkeys(classes))
    if not t.log_entries:
        t.finish_checks.append(lambda: _finish_log(t))
    t.log_entries.append((d, b, zones, kept))


def _finish_log(t: _Translator) -> None:
    entries = t.log_entries
    first = entries[0][0]
    t.set("log.query_log", True, first, "log " + " ".join(first.args))
    everything = any("." in zones for _, _, zones, _ in entries)
    if not everything:
        zones = list(dict.fromkeys(z for _, _, block_zones, _ in entries for z in block_zones))
        where = ", ".join(dict.fromkeys(_loc(d) for d, _, _, _ in entries))
        t.set("log.zones", zones, first, f"log in the server blocks of {' '.join(zones)} ({where})")
    else:
        logged = {id(b) for _, b, _, _ in entries}
        quiet = [z for blk in t.blocks if id(blk) not in logged and blk.port == entries[0][1].port for z in blk.zones]  # fmt: skip
        if quiet:
            t.note("log", first, f"kdns also logs the queries of {' '.join(quiet)}, whose server blocks have no log")  # fmt: skip
    kinds = list(dict.fromkeys(kept for _, _, _, kept in entries))
    if kinds[0] != ("all",):
        t.set("log.classes", list(kinds[0]), first, "class " + " ".join(kinds[0]))
    for d, _, _, kept in entries:
        if kept != kinds[0]:
            t.problem(
                d.where,
                f"plugin log: class {' '.join(kept)} for this block is not supported by kdns: kdns "
                f"has one log.classes for every zone, kept {' '.join(kinds[0])} from {first.where}",
            )


def _minimal(t: _Translator, d: Directive, b: _Block) -> None:
    """minimal (strip the authority and additional sections of positive answers): kdns's
    positive answers carry no authority section; SRV answers keep their targets' addresses."""
    t.note("server", d, "kdns's positive answers carry no authority records already (SRV answers keep their targets' addresses)")  # fmt: skip


def _loop(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("forward", d, "kdns always checks its upstreams for a forwarding loop at start")


def _reload(t: _Translator, d: Directive, b: _Block) -> None:
    interval = _duration(d.args[0], d) if d.args else 30.0
    t.set("server.reload_interval", _seconds_value(interval), d, "reload " + " ".join(d.args))
    if len(d.args) > 1:
        t.note("server", d, "kdns checks without jitter")


def _loadbalance(t: _Translator, d: Directive, b: _Block) -> None:
    if d.args and d.args[0] != "round_robin":
        t.unsupported(d, " ".join(d.args), "kdns rotates answers round robin only")
    t.set("server.loadbalance", True, d, "loadbalance " + " ".join(d.args))


def _bind(t: _Translator, d: Directive, b: _Block) -> None:
    if d.env_args:
        # bind {$POD_IP}: each replica's own address. Never baked into the config (every
        # replica would bind one pod's address): kdns listens on every address of the pod.
        t.bind_env.append(d)
        names = sorted({n for v in d.env_args.values() for n in v})
        t.note(
            "server",
            d,
            f"bind {' '.join('{$' + n + '}' for n in names)}: kdns listens on every address of "
            "its pod; to bind the pod's own address, set KDNS_LISTEN from the Downward API "
            "(status.podIP) in the Deployment's env",
        )
    for index, address in enumerate(d.args):
        if index in d.env_args:
            continue
        try:
            host = str(ipaddress.ip_address(address))
        except ValueError:
            t.unsupported(d, f"interface {address}", "kdns binds IP addresses; write them")
            continue
        hostport = f"[{host}]:{b.port}" if ":" in host else f"{host}:{b.port}"
        parse_hostport(hostport)
        if hostport not in t.listen:
            t.listen.append(hostport)
    if d.block:
        t.unsupported(d, "except", "list only the addresses to bind")


def _bufsize(t: _Translator, d: Directive, b: _Block) -> None:
    size = _integer(d.args[0], d) if d.args else 1232
    t.set("server.udp_size", size, d, "bufsize " + " ".join(d.args))


def _timeouts(t: _Translator, d: Directive, b: _Block) -> None:
    for o in d.block or []:
        if o.name == "idle" and len(o.args) == 1:
            idle = _seconds_value(_duration(o.args[0], o))
            t.set("server.tcp_idle_timeout", idle, o, f"idle {o.args[0]}")
        else:
            t.note("server", o, f"timeouts {o.name}: no kdns equivalent; ignored")


def _debug(t: _Translator, d: Directive, b: _Block) -> None:
    t.set("log.level", "debug", d, "debug")


def _root(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("server", d, "kdns keeps zone and hosts file paths as written: make them absolute")


def _cancel(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("forward", d, "kdns gives up on an upstream after forward.timeout (2s)")


def _workers(t: _Translator, d: Directive, b: _Block) -> None:
    t.note("server", d, "kdns scales with server.workers processes sharing the port")
