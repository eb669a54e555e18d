"""The ``kdns`` command: ``serve``, ``check-config FILE`` and ``version``.

A command is required: a bare ``kdns`` prints the help and exits 2, and so does ``kdns --demo``
(with a hint: ``did you mean `kdns serve --demo`?``), so nothing starts serving by accident.

Flags are parsed as plain strings and handed to ``kdns.config.build_config``, which validates
every layer the same way; so a bad ``--ttl`` reads like a bad ``KDNS_TTL`` or ``kubernetes.ttl``
(one line on stderr, exit 1) instead of an argparse usage dump. Flags not given are absent from
the namespace (``argparse.SUPPRESS``), so they never override the file or the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kdns import __version__
from kdns.config import SETTINGS, Config, ConfigError, build_config, env_warnings

COMMANDS = ("serve", "check-config", "import-corefile", "explain", "version")

_HELP: Mapping[str, tuple[str | None, str]] = {  # field -> (metavar, help)
    "demo": (None, "serve the built-in demo cluster, no API server"),
    "objects": ("PATH", "serve Kubernetes manifests (file or directory, repeatable)"),
    "kubeconfig": ("FILE", "else in-cluster config, else KUBECONFIG / ~/.kube/config"),
    "listen": ("HOST:PORT", "DNS on UDP and TCP, repeatable (default :53 = IPv4 and IPv6)"),
    "cluster_domain": ("ZONE", "default cluster.local"),
    "external_zones": ("ZONE", "k8s_external zone for LoadBalancer/external IPs, repeatable"),
    "pods": ("MODE", "disabled|insecure|verified (default insecure)"),
    "ttl": ("SECONDS", "TTL of cluster answers (default 5)"),
    "endpoint_pod_names": (None, "name endpoints after their pod (CoreDNS endpoint_pod_names)"),
    "autopath": (None, "answer a pod's search-path walk in one round trip (CoreDNS autopath)"),
    "autopath_search": ("DOMAIN", "autopath: the nodes' search domains (default: resolv.conf's)"),
    "upstreams": ("ADDR", "forwarder, repeatable: 1.1.1.1, tcp://1.1.1.1:53, tls://1.1.1.1@name"),
    "forward": (None, "answer REFUSED for names outside our zones"),
    "metrics_listen": ("HOST:PORT|off", "Prometheus metrics (default :9153)"),
    "health_listen": ("HOST:PORT|off", "/health (default :8080)"),
    "ready_listen": ("HOST:PORT|off", "/ready (default :8181)"),
    "killer": (None, "killer mode (wire cache + Markov prefetcher)"),
    "rrl": (None, "response rate limiting per client prefix (off by default; [rrl] tunes it)"),
    "workers": ("N|auto", "N processes sharing the port (SO_REUSEPORT); auto: one per CPU"),
    "freebind": (None, "bind listen addresses not (yet) on an interface (IP_FREEBIND)"),
    "log_level": ("LEVEL", "debug|info|warning|error (default info)"),
    "log_format": ("FORMAT", "text|json (default text)"),
    "query_log": (None, "log every query"),
    "startup_timeout": ("SECONDS", "wait this long for the first sync (default 5)"),
    "udp_size": ("BYTES", "largest UDP response (default 1232; the client's EDNS size caps it)"),
    "lameduck": (
        "SECONDS",
        "after SIGTERM keep answering this long with /ready failing (default 5)",
    ),
    "reload_interval": (
        "SECONDS",
        "re-read the config file when it changes, checked this often (default 30, 0 off)",
    ),
    "forward_zones": (
        "ZONE=UPSTREAM[+UPSTREAM]",
        "split horizon: send ZONE to these upstreams (repeatable)",
    ),
    "forward_policy": ("POLICY", "random|round_robin|sequential (default random)"),
    "split": ("MODE", "sidecar split DNS: off|auto|on (default off)"),
    "cluster_domains": ("ZONE", "split mode: extra cluster domains (repeatable)"),
    "cluster_nameserver": (
        "ADDR",
        "split mode: the cluster DNS server (default: from resolv.conf)",
    ),
    "resolv_conf": ("FILE", "resolv.conf to read default upstreams / split settings from"),
    "gateway_zones": (
        "ZONE",
        "serve Gateway API route, Ingress and annotated LoadBalancer hostnames under ZONE "
        "(repeatable; [gateway] in the TOML file filters them)",
    ),
    "local_zones": (
        "ZONE=PATH",
        "serve ZONE from an RFC 1035 zone file (repeatable; [[zones]] in the TOML file)",
    ),
    "hosts_files": (
        "ZONE=PATH",
        'serve ZONE\'s names from a hosts file (repeatable; [[zones]] format = "hosts")',
    ),
    "metrics_compat": ("MODE", "none|coredns: also export CoreDNS's metric names (default none)"),
}


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    precedence = "TOML file (precedence: defaults < file < KDNS_* env < flags)"
    parser.add_argument("-c", "--config", metavar="FILE", help=precedence)
    for setting in SETTINGS:
        if setting.flag is None:
            continue  # file-only settings
        metavar, text = _HELP[setting.field]
        if setting.switch:  # a switch turns its setting on; --no-forward turns it off
            action = "store_false" if setting.negated else "store_true"
            parser.add_argument(setting.flag, dest=setting.field, action=action, help=text)
        else:
            action = "append" if setting.repeated else "store"
            parser.add_argument(
                setting.flag, dest=setting.field, action=action, metavar=metavar, help=text
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdns",
        description="Kubernetes-aware authoritative DNS server.",
        epilog="To serve: `kdns serve --demo`, `kdns serve -c kdns.toml`.",
    )
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="answer DNS", argument_default=argparse.SUPPRESS)
    _add_serve_options(serve)
    check = commands.add_parser(
        "check-config", help="validate FILE and print the effective configuration as TOML"
    )
    check.add_argument("file", metavar="FILE")
    corefile = commands.add_parser(
        "import-corefile",
        help="print the kdns TOML for a CoreDNS Corefile; what does not translate goes to "
        "stderr (exit 0 complete, 1 partial, 2 unreadable)",
    )
    corefile.add_argument("file", metavar="FILE", help="the Corefile; - reads standard input")
    explain = commands.add_parser(
        "explain", help="which rules of which lists match NAME for the clients of a view"
    )
    explain.add_argument("name", metavar="NAME")
    explain.add_argument("--view", required=True, metavar="VIEW")
    explain.add_argument("-c", "--config", dest="file", metavar="FILE")
    commands.add_parser("version", help="print the version")
    return parser


def _require_command(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """A bare ``kdns`` prints the help; serve options without ``serve`` are a usage error with
    a hint. Both exit 2 (argparse's SystemExit)."""
    if not argv:
        parser.print_help(sys.stderr)
        raise SystemExit(2)
    first = argv[0].partition("=")[0]
    serve_options = {"-c", "--config", *(s.flag for s in SETTINGS if s.flag)}
    if first in serve_options:
        parser.error(f"a command is required: did you mean `kdns serve {shlex.join(argv)}`?")


def _unknown_flag(argv: list[str], unknown: list[str]) -> None:
    """An unknown option is named, with the closest option of its command (``--lisen``: did
    you mean ``--listen``?), in one line instead of the top-level usage. Exits 2."""
    import difflib

    command = next((word for word in argv if word in COMMANDS), None)
    parser = build_parser()
    sub = None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command is not None:
            sub = action.choices.get(command)
    target = sub or parser
    options = [o for a in target._actions for o in a.option_strings if o.startswith("--")]
    word = next((w for w in unknown if w.startswith("-")), unknown[0])
    name = word.partition("=")[0]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    hint = f": did you mean {close[0]}?" if close else ""
    what = f"unknown option {name}" if name.startswith("-") else f"unexpected argument {name!r}"
    print(f"{target.prog}: error: {what}{hint} ({target.prog} --help lists them)", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status. ``env`` defaults to ``os.environ``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    try:
        parser = build_parser()
        _require_command(parser, args_list)
        args, unknown = parser.parse_known_args(args_list)
        if unknown:
            _unknown_flag(args_list, unknown)
    except SystemExit as exc:  # argparse: --help/--version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1
    try:
        if args.command == "version":
            print(f"kdns {__version__}")
            return 0
        if args.command == "import-corefile":
            from kdns.corefile import run as import_corefile

            return import_corefile(args.file, environ)
        if args.command == "explain":
            return _explain(args, environ)
        if args.command == "check-config":
            config = build_config(args.file, environ)
            _warn_env(environ, config)
            problem = check_loads(config)
            if problem is not None:
                print(f"kdns: {problem}", file=sys.stderr)
                return 1
            print(config.to_toml(), end="")
            return 0
        return _serve(args, environ)
    except ConfigError as exc:
        print(f"kdns: {exc}", file=sys.stderr)
        return 1


def _explain(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """``kdns explain NAME --view V``: the lists of the config (files, and the cached copies
    of URL lists; a URL list without one is downloaded), and what they say about NAME."""
    import asyncio

    from kdns.app import fetch_settings
    from kdns.policy.listfetch import Lists, explain

    config = build_config(args.file, env)
    logging.basicConfig(level=logging.WARNING, format="kdns: %(message)s")
    lists = Lists(fetch_settings(config))
    lists.load_now(config)
    if any(s.url is not None and s.loaded is None for s in lists.sources.values()):
        asyncio.run(lists.refresh(urls=True))
    try:
        print("\n".join(explain(config, args.name, args.view, lists)))
    except KeyError:
        print(f"kdns: no [[views]] named {args.view!r}", file=sys.stderr)
        return 1
    return 0


def check_loads(config: Config) -> str | None:
    """Load what ``serve`` loads at start, serving nothing: local zone and hosts files, the
    block lists views use, ``--objects`` manifests, a named kubeconfig and the forwarding
    plan. The first problem as one line, or None. Stricter than ``serve`` in one place: a block
    list that cannot be read is a problem here (``serve`` starts without it and logs)."""
    from kdns.k8s.client import ClusterConfigError, check_kubeconfig
    from kdns.k8s.sources import SourceError, load_objects
    from kdns.parts import StartupError, build_forwarder, build_registry, load_list

    try:
        build_registry(config)  # loads every [[zones]] file (hosts files included)
        build_forwarder(config)
        used = {name for view in config.views for name in view.blocklists}
        for index, spec in enumerate(config.blocklists):
            if spec.name not in used or not spec.file:
                continue
            try:
                load_list(spec.file, spec.format)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                return f"blocklists[{index}] ({spec.name}): cannot read {spec.file}: {reason}"
        if config.objects:
            load_objects(config.objects)
        elif config.kubeconfig and not config.demo:
            check_kubeconfig(config.kubeconfig)
    except (StartupError, SourceError, ClusterConfigError) as exc:
        return str(exc)
    return None


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags: dict[str, Any] = {s.field: getattr(args, s.field, None) for s in SETTINGS}
    file = getattr(args, "config", None)
    env = dict(env)  # as at start: a reload re-reads the file, not the environment or flags
    config = build_config(file, env, flags)
    _warn_env(env, config)
    # Imported here: app pulls in the event loop, the Kubernetes client and the servers,
    # which `kdns version` and `kdns check-config` have no use for.
    from kdns.app import run

    try:
        return run(config, reload=lambda: build_config(file, env, flags))
    except KeyboardInterrupt:  # Ctrl-C before app installed its own handlers: no traceback
        return 130


def _warn_env(env: Mapping[str, str], config: Config) -> None:
    """Misspelled KDNS_* variables: one warning each, once, at start (not errors: Kubernetes
    and other tools set KDNS_* variables of their own). In the log's format, on stderr."""
    for text in env_warnings(env):
        if config.log_format == "json":
            from kdns.logs import JsonFormatter

            record = logging.LogRecord("kdns", logging.WARNING, __file__, 0, text, None, None)
            print(JsonFormatter().format(record), file=sys.stderr)
        else:
            print(f"kdns: warning: {text}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
