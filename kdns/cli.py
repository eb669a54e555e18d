"""The ``kdns`` command: ``serve`` (the default), ``check-config FILE`` and ``version``.

Flags are parsed as plain strings and handed to ``kdns.config.build_config``, which validates
every layer the same way; so a bad ``--ttl`` reads like a bad ``KDNS_TTL`` or ``kubernetes.ttl``
(one line on stderr, exit 1) instead of an argparse usage dump. Flags not given are absent from
the namespace (``argparse.SUPPRESS``), so they never override the file or the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kdns import __version__
from kdns.config import SETTINGS, ConfigError, build_config

COMMANDS = ("serve", "check-config", "version")

_HELP: Mapping[str, tuple[str | None, str]] = {  # field -> (metavar, help)
    "demo": (None, "serve the built-in demo cluster, no API server"),
    "objects": ("PATH", "serve Kubernetes manifests (file or directory, repeatable)"),
    "kubeconfig": ("FILE", "else in-cluster config, else KUBECONFIG / ~/.kube/config"),
    "listen": ("HOST:PORT", "DNS on UDP and TCP, repeatable (default 0.0.0.0:53)"),
    "cluster_domain": ("ZONE", "default cluster.local"),
    "external_zones": ("ZONE", "k8s_external zone for LoadBalancer/external IPs, repeatable"),
    "pods": ("MODE", "disabled|insecure|verified (default insecure)"),
    "ttl": ("SECONDS", "TTL of cluster answers (default 5)"),
    "endpoint_pod_names": (None, "name endpoints after their pod (CoreDNS endpoint_pod_names)"),
    "upstreams": ("ADDR", "forwarder, repeatable: 1.1.1.1, tcp://1.1.1.1:53, tls://1.1.1.1@name"),
    "forward": (None, "answer REFUSED for names outside our zones"),
    "metrics_listen": ("HOST:PORT|off", "Prometheus metrics (default :9153)"),
    "health_listen": ("HOST:PORT|off", "/health (default :8080)"),
    "ready_listen": ("HOST:PORT|off", "/ready (default :8181)"),
    "killer": (None, "killer mode (wire cache + Markov prefetcher)"),
    "workers": ("N", "N processes sharing the port with SO_REUSEPORT (default 1)"),
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
        epilog="With no command, kdns serves: `kdns --demo` is `kdns serve --demo`.",
    )
    parser.add_argument("--version", action="version", version=f"kdns {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="answer DNS (the default)", argument_default=argparse.SUPPRESS
    )
    _add_serve_options(serve)
    check = commands.add_parser(
        "check-config", help="validate FILE and print the effective configuration as TOML"
    )
    check.add_argument("file", metavar="FILE")
    commands.add_parser("version", help="print the version")
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """``kdns --demo`` means ``kdns serve --demo``: serve unless a command comes first."""
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["serve", *argv]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command line; returns the exit status. ``env`` defaults to ``os.environ``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if env is None else env
    try:
        args = build_parser().parse_args(_with_default_command(args_list))
    except SystemExit as exc:  # argparse: --help/--version (0), usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1
    try:
        if args.command == "version":
            print(f"kdns {__version__}")
            return 0
        if args.command == "check-config":
            print(build_config(args.file, environ).to_toml(), end="")
            return 0
        return _serve(args, environ)
    except ConfigError as exc:
        print(f"kdns: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags: dict[str, Any] = {s.field: getattr(args, s.field, None) for s in SETTINGS}
    file = getattr(args, "config", None)
    env = dict(env)  # as at start: a reload re-reads the file, not the environment or flags
    config = build_config(file, env, flags)
    # Imported here: app pulls in the event loop, the Kubernetes client and the servers,
    # which `kdns version` and `kdns check-config` have no use for.
    from kdns.app import run

    try:
        return run(config, reload=lambda: build_config(file, env, flags))
    except KeyboardInterrupt:  # Ctrl-C before app installed its own handlers: no traceback
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
